//! One-to-one messaging with the three ticks, between SDK clients of a
//! real server: ✓ stored, ✓✓ delivered, blue read; online and offline.

mod common;

use client::AppEvent;
use common::chat::App;
use common::mqtt::{self, TIMEOUT};
use common::{Options, Server};
use protocol::messages::ReceiptStatus;
use std::time::Duration;
use store::on_both_backends;

/// Position of the first event matching `wanted` in what the app saw.
fn position(app: &App, wanted: impl Fn(&AppEvent) -> bool) -> usize {
    app.seen.iter().position(wanted).expect("event was seen")
}

on_both_backends! {
    async fn both_online_sender_sees_sent_then_delivered_then_read(backend) {
        let server = Server::start(backend);
        let dir = tempfile::tempdir().unwrap();
        let (alice_token, bob_token) = (server.register("alice"), server.register("bob"));
        let mut alice = App::connect(&server, "alice", &alice_token, "phone", dir.path()).await;
        let mut bob = App::connect(&server, "bob", &bob_token, "phone", dir.path()).await;

        let client_id = alice.client.send("bob", "hi bob").await.unwrap();
        let id = alice.sent(&client_id).await;
        let message = bob.message_from("alice", "hi bob").await;
        assert_eq!((message.id, message.client_id.as_str()), (id, client_id.as_str()));
        alice.receipt("bob", ReceiptStatus::Delivered, id).await;
        bob.client.read("alice", id).await.unwrap();
        alice.receipt("bob", ReceiptStatus::Read, id).await;

        let sent = position(&alice, |e| matches!(e, AppEvent::Sent { .. }));
        let delivered = position(&alice, |e| matches!(e, AppEvent::Receipt(r) if r.status == ReceiptStatus::Delivered));
        let read = position(&alice, |e| matches!(e, AppEvent::Receipt(r) if r.status == ReceiptStatus::Read));
        assert!(sent < delivered && delivered < read, "✓ then ✓✓ then read: {:#?}", alice.seen);
        bob.settle(Duration::from_millis(300)).await;
        assert_eq!(bob.messages().len(), 1, "delivered exactly once");
    }

    async fn a_bridge_reaching_the_broker_over_mqtt_still_gives_all_three_ticks(backend) {
        // `bridge.in_process = false`: the bridge is an MQTT client of the
        // broker over loopback TCP (the path kept for an external broker),
        // not a local link of the router.
        let options = Options::default().env("BLUETICK_BRIDGE__IN_PROCESS", "false");
        let server = Server::start_with(backend, options);
        let dir = tempfile::tempdir().unwrap();
        let (alice_token, bob_token) = (server.register("alice"), server.register("bob"));
        let mut alice = App::connect(&server, "alice", &alice_token, "phone", dir.path()).await;
        let client_id = alice.client.send("bob", "over the wire").await.unwrap();
        let id = alice.sent(&client_id).await;
        // Bob was offline: his sync is answered over the same path.
        let mut bob = App::connect(&server, "bob", &bob_token, "phone", dir.path()).await;
        assert_eq!(bob.message_from("alice", "over the wire").await.id, id);
        alice.receipt("bob", ReceiptStatus::Delivered, id).await;
        bob.client.read("alice", id).await.unwrap();
        alice.receipt("bob", ReceiptStatus::Read, id).await;
        bob.settle(Duration::from_millis(300)).await;
        assert_eq!(bob.messages().len(), 1, "delivered exactly once");
    }

    async fn offline_recipient_gets_the_message_once_when_it_connects(backend) {
        let server = Server::start(backend);
        let dir = tempfile::tempdir().unwrap();
        let (alice_token, bob_token) = (server.register("alice"), server.register("bob"));
        let mut alice = App::connect(&server, "alice", &alice_token, "phone", dir.path()).await;

        let client_id = alice.client.send("bob", "are you there?").await.unwrap();
        let id = alice.sent(&client_id).await;
        alice.settle(Duration::from_millis(500)).await;
        assert!(alice.receipts().is_empty(), "no ✓✓ while Bob is offline");

        let mut bob = App::connect(&server, "bob", &bob_token, "phone", dir.path()).await;
        bob.message_from("alice", "are you there?").await;
        alice.receipt("bob", ReceiptStatus::Delivered, id).await;
        bob.client.read("alice", id).await.unwrap();
        alice.receipt("bob", ReceiptStatus::Read, id).await;
        bob.settle(Duration::from_millis(300)).await;
        assert_eq!(bob.messages().len(), 1);
    }

    async fn offline_sender_gets_its_receipts_when_it_comes_back(backend) {
        let server = Server::start(backend);
        let dir = tempfile::tempdir().unwrap();
        let (alice_token, bob_token) = (server.register("alice"), server.register("bob"));
        let mut alice = App::connect(&server, "alice", &alice_token, "phone", dir.path()).await;
        let client_id = alice.client.send("bob", "call me").await.unwrap();
        let id = alice.sent(&client_id).await;
        alice.client.close().await;

        let mut bob = App::connect(&server, "bob", &bob_token, "phone", dir.path()).await;
        bob.message_from("alice", "call me").await;
        bob.client.read("alice", id).await.unwrap();
        bob.settle(Duration::from_millis(300)).await;

        let mut alice = App::connect(&server, "alice", &alice_token, "phone", dir.path()).await;
        alice.receipt("bob", ReceiptStatus::Delivered, id).await;
        alice.receipt("bob", ReceiptStatus::Read, id).await;
    }

    async fn resending_a_client_id_stores_and_delivers_once(backend) {
        let server = Server::start(backend);
        let dir = tempfile::tempdir().unwrap();
        let (alice_token, bob_token) = (server.register("alice"), server.register("bob"));
        // Alice's app lost the ack and sends the same message again, over
        // MQTT twice and once over HTTP.
        let mut alice = mqtt::connect(server.mqtt, "alice.raw", Some(("alice", &alice_token))).await.expect_connected();
        alice.subscribe_ok("u/alice/inbox").await;
        let payload = r#"{"id":"once-1","to":"bob","body":"only once"}"#;
        alice.publish("u/alice/send", payload).await;
        alice.publish("u/alice/send", payload).await;
        let http = common::http::request(server.http, "POST", "/v1/messages", Some(payload), Some(&alice_token));
        assert_eq!(http.status, 201, "{}", http.body);
        let mut ids = Vec::new();
        for _ in 0..2 {
            let ack: serde_json::Value = serde_json::from_slice(&alice.next_message(TIMEOUT).await.unwrap().payload).unwrap();
            assert_eq!((ack["type"].as_str(), ack["client_id"].as_str()), (Some("ack"), Some("once-1")));
            ids.push(ack["id"].as_i64().unwrap());
        }
        ids.push(http.json()["id"].as_i64().unwrap());
        assert!(ids.iter().all(|id| *id == ids[0]), "one stored message: {ids:?}");

        let mut bob = App::connect(&server, "bob", &bob_token, "phone", dir.path()).await;
        bob.message_from("alice", "only once").await;
        bob.settle(Duration::from_millis(500)).await;
        assert_eq!(bob.messages().len(), 1, "one delivery");
        assert_eq!(server.store().inbox_head("bob").unwrap(), 1, "one inbox event");
    }

    async fn messages_arrive_in_the_order_they_were_sent(backend) {
        let server = Server::start(backend);
        let dir = tempfile::tempdir().unwrap();
        let (alice_token, bob_token) = (server.register("alice"), server.register("bob"));
        let alice = App::connect(&server, "alice", &alice_token, "phone", dir.path()).await;
        let mut bob = App::connect(&server, "bob", &bob_token, "phone", dir.path()).await;
        for n in 0..50 {
            alice.client.send("bob", &format!("n{n}")).await.unwrap();
        }
        bob.message_from("alice", "n49").await;
        let bodies: Vec<String> = bob.messages().iter().map(|m| m.body.clone()).collect();
        let expected: Vec<String> = (0..50).map(|n| format!("n{n}")).collect();
        assert_eq!(bodies, expected);
    }

    async fn http_sends_go_through_the_same_pipeline(backend) {
        let server = Server::start(backend);
        let dir = tempfile::tempdir().unwrap();
        let (alice_token, bob_token) = (server.register("alice"), server.register("bob"));
        let mut bob = App::connect(&server, "bob", &bob_token, "phone", dir.path()).await;
        let mut alice = App::connect(&server, "alice", &alice_token, "phone", dir.path()).await;
        let post = |body: &str| common::http::request(server.http, "POST", "/v1/messages", Some(body), Some(&alice_token));

        let stored = post(r#"{"id":"bot-1","to":"bob","body":"deploy finished"}"#);
        assert_eq!(stored.status, 201, "{}", stored.body);
        let id = stored.json()["id"].as_i64().unwrap();
        let message = bob.message_from("alice", "deploy finished").await;
        assert_eq!(message.id, id);
        // Alice's devices see the ack like any send of hers, and the receipt.
        alice.wait_for("the HTTP send's ack", |e| match e {
            AppEvent::Sent { ack, own: false } if ack.client_id == "bot-1" => Some(()),
            _ => None,
        }).await;
        alice.receipt("bob", ReceiptStatus::Delivered, id).await;

        for (body, status, code) in [
            (r#"{"id":"bot-2","to":"nobody","body":"x"}"#, 404, "unknown_recipient"),
            (r#"{"to":"bob","body":"x"}"#, 400, "missing_id"),
            (r#"{"id":"bot-3","to":"bob","body":""}"#, 400, "empty_body"),
            ("{nope", 400, "malformed_json"),
        ] {
            let refused = post(body);
            assert_eq!((refused.status, refused.error_code().as_str()), (status, code), "{body}");
        }
        let big = format!(r#"{{"id":"bot-4","to":"bob","body":"{}"}}"#, "x".repeat(64 * 1024 + 1));
        let refused = post(&big);
        assert_eq!((refused.status, refused.error_code().as_str()), (413, "body_too_large"));
        let anonymous = common::http::request(server.http, "POST", "/v1/messages", Some("{}"), None);
        assert_eq!(anonymous.status, 401);
        bob.settle(Duration::from_millis(300)).await;
        assert_eq!(bob.messages().len(), 1, "refused sends deliver nothing");
    }
}
