//! A minimal client written from docs/protocol.md alone: raw MQTT and
//! untyped JSON, none of our crates. It completes send, ack, deliver, read
//! and sync, which is the proof that the document is enough.

mod common;

use common::mqtt::{self, Client};
use common::Server;
use serde_json::{json, Value};
use store::on_both_backends;

async fn publish(client: &Client, topic: &str, payload: Value) {
    client.publish(topic, payload.to_string()).await;
}

on_both_backends! {
    async fn a_client_built_from_the_protocol_doc_completes_every_flow(backend) {
        let server = Server::start(backend);
        let alice_token = server.register("alice");
        let bob_token = server.register("bob");
        let mut alice = mqtt::connect(server.mqtt, "alice.doc", Some(("alice", &alice_token))).await.expect_connected();
        let mut bob = mqtt::connect(server.mqtt, "bob.doc", Some(("bob", &bob_token))).await.expect_connected();
        alice.subscribe_ok("u/alice/inbox").await;
        bob.subscribe_ok("u/bob/inbox").await;

        // Send: one tick.
        publish(&alice, "u/alice/send", json!({"id": "doc-1", "to": "bob", "body": "lunch?"})).await;
        let ack = alice.next_inbox_event().await;
        assert_eq!((ack["type"].as_str(), ack["client_id"].as_str(), ack["seq"].as_i64()), (Some("ack"), Some("doc-1"), Some(1)));
        let message_id = ack["id"].as_i64().expect("server id");

        // Deliver: Bob gets the message, stores it, acks his inbox.
        let message = bob.next_inbox_event().await;
        assert_eq!(message["type"], "message");
        assert_eq!((message["from"].as_str(), message["body"].as_str()), (Some("alice"), Some("lunch?")));
        assert_eq!((message["id"].as_i64(), message["seq"].as_i64()), (Some(message_id), Some(1)));
        publish(&bob, "u/bob/ack", json!({"up_to": 1, "device": "doc"})).await;
        let delivered = alice.next_inbox_event().await;
        assert_eq!(delivered["type"], "receipt");
        assert_eq!((delivered["status"].as_str(), delivered["peer"].as_str()), (Some("delivered"), Some("bob")));
        assert_eq!((delivered["up_to"].as_i64(), delivered["seq"].as_i64()), (Some(message_id), Some(2)));

        // Read: blue ticks.
        publish(&bob, "u/bob/read", json!({"peer": "alice", "up_to": message_id})).await;
        let read = alice.next_inbox_event().await;
        assert_eq!((read["status"].as_str(), read["up_to"].as_i64(), read["seq"].as_i64()), (Some("read"), Some(message_id), Some(3)));

        // Sync: Alice replays her unacked inbox in order, then the marker.
        publish(&alice, "u/alice/sync", json!({"after": 0})).await;
        let replayed: Vec<Value> = [alice.next_inbox_event().await, alice.next_inbox_event().await, alice.next_inbox_event().await].into();
        let kinds: Vec<(&str, i64)> = replayed.iter().map(|e| (e["type"].as_str().unwrap(), e["seq"].as_i64().unwrap())).collect();
        assert_eq!(kinds, [("ack", 1), ("receipt", 2), ("receipt", 3)]);
        let synced = alice.next_inbox_event().await;
        assert_eq!(synced, json!({"type": "synced", "through": 3, "more": false}));

        // After Alice acks, her inbox is empty: a sync replays nothing.
        publish(&alice, "u/alice/ack", json!({"up_to": 3, "device": "doc"})).await;
        publish(&alice, "u/alice/sync", json!({"after": 3})).await;
        assert_eq!(alice.next_inbox_event().await, json!({"type": "synced", "through": 3, "more": false}));
        // A device that asks for what every device already stored hears that
        // it was pruned, and where to continue.
        publish(&alice, "u/alice/sync", json!({"after": 0})).await;
        assert_eq!(alice.next_inbox_event().await, json!({"type": "synced", "through": 3, "more": false, "pruned_through": 3}));
    }
}
