//! Floods from one device or one user: the bridge stays connected,
//! everyone else's messages keep flowing, watchers see a bounded number of
//! presence changes, and a sender over its quota is told to retry.

mod common;

use common::chat::App;
use common::mqtt::{self, Client, TIMEOUT};
use client::AppEvent;
use common::http::request;
use common::{rows, Options, Server};
use protocol::ErrorCode;
use rumqttc::QoS;
use serde_json::Value;
use std::time::{Duration, Instant};
use store::on_both_backends;

const BRIDGE_DISCONNECTS: &str = "bluetick_bridge_disconnects_total";

/// Presence messages (`presence/…`) arriving on `client` until it has been
/// quiet for `quiet`; at most `within` in all.
async fn presence_changes(client: &mut Client, quiet: Duration, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    let mut seen = 0;
    while Instant::now() < deadline {
        match client.next_message(quiet).await {
            Some(p) if p.topic.starts_with("presence/") => seen += 1,
            Some(_) => {}
            None => break,
        }
    }
    seen
}

on_both_backends! {
    async fn a_presence_and_typing_flood_from_one_device_does_not_stop_messaging(backend) {
        let server = Server::start(backend);
        let (alice_token, bob_token, mallory_token, carol_token) = (
            server.register("alice"),
            server.register("bob"),
            server.register("mallory"),
            server.register("carol"),
        );
        let dir = tempfile::tempdir().unwrap();
        let alice = App::connect(&server, "alice", &alice_token, "phone", dir.path()).await;
        let mut bob = App::connect(&server, "bob", &bob_token, "phone", dir.path()).await;
        let mut carol = mqtt::connect(server.mqtt, "carol.watch", Some(("carol", &carol_token))).await.expect_connected();
        carol.subscribe_ok("presence/mallory").await;
        let mallory = mqtt::connect(server.mqtt, "mallory.phone", Some(("mallory", &mallory_token))).await.expect_connected();
        alice.client.send("bob", "before the flood").await.unwrap();
        bob.message_from("alice", "before the flood").await;
        let before = presence_changes(&mut carol, Duration::from_millis(500), TIMEOUT).await;
        assert!(before >= 1, "carol sees mallory come online");

        // 2,000 QoS 1 presence flips and 2,000 typing events, as fast as the
        // client can publish them, while alice keeps writing to bob.
        let flood = {
            let client = mallory.client.clone();
            tokio::spawn(async move {
                for i in 0..2_000 {
                    let state = if i % 2 == 0 { "offline" } else { "online" };
                    let presence = format!(r#"{{"state":"{state}","device":"phone"}}"#);
                    client.publish("u/mallory/presence", QoS::AtLeastOnce, false, presence).await.unwrap();
                    client.publish("u/mallory/typing", QoS::AtLeastOnce, false, r#"{"to":"bob","state":"typing"}"#).await.unwrap();
                }
            })
        };
        for i in 0..20 {
            alice.client.send("bob", &format!("during {i}")).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        flood.await.unwrap();
        for i in 0..20 {
            bob.message_from("alice", &format!("during {i}")).await;
        }
        let changes = presence_changes(&mut carol, Duration::from_secs(3), Duration::from_secs(60)).await;
        alice.client.send("bob", "after the flood").await.unwrap();
        bob.message_from("alice", "after the flood").await;

        assert_eq!(server.metric(BRIDGE_DISCONNECTS), 0.0, "the bridge never lost the broker; log:\n{}", server.log());
        // The flood lasted seconds; presence is applied at most once a second
        // per user, so a watcher sees a handful of changes, not thousands.
        assert!(changes <= 30, "carol saw {changes} presence changes from one burst");
        assert!(server.metric(r#"bluetick_presence_coalesced_total"#) > 1_000.0);
        // The last word was "online": mallory is shown online once it settles.
        let store = server.store();
        assert!(common::eventually(TIMEOUT, || store.is_online("mallory").unwrap()).await);
    }

    async fn a_sender_over_its_quota_gets_retryable_refusals_and_others_are_not_delayed(backend) {
        let options = Options::default()
            .env("BLUETICK_QUOTAS__SENDS_PER_SECOND", "1")
            .env("BLUETICK_QUOTAS__SEND_BURST", "3");
        let server = Server::start_with(backend, options);
        let alice_token = server.register("alice");
        let mallory_token = server.register("mallory");
        let peers = ["bob", "carol", "dave", "erin", "frank", "grace"];
        let peer_tokens: Vec<String> = peers.iter().map(|p| server.register(p)).collect();
        let dir = tempfile::tempdir().unwrap();
        let mut alice = App::connect(&server, "alice", &alice_token, "phone", dir.path()).await;
        let mut bob = App::connect(&server, "bob", &peer_tokens[0], "phone", dir.path()).await;
        let mut mallory = mqtt::connect(server.mqtt, "mallory.phone", Some(("mallory", &mallory_token))).await.expect_connected();
        mallory.subscribe_ok("u/mallory/inbox").await;

        for i in 0..100 {
            mallory.publish("u/mallory/send", format!(r#"{{"id":"m-{i}","to":"bob","body":"spam {i}"}}"#)).await;
        }
        // Alice, meanwhile, is not held up by mallory's burst.
        let started = Instant::now();
        let id = alice.client.send("bob", "hello bob").await.unwrap();
        alice.sent(&id).await;
        bob.message_from("alice", "hello bob").await;
        eprintln!("alice's ✓ during mallory's burst took {:?}", started.elapsed());

        let events = mallory.inbox_events(Duration::from_secs(2)).await;
        let acks = events.iter().filter(|e| e["type"] == "ack").count();
        let refusals: Vec<&Value> = events.iter().filter(|e| e["type"] == "error").collect();
        assert!((3..=15).contains(&acks), "about the burst of 3 is stored, got {acks}");
        assert_eq!(acks + refusals.len(), 100, "every send is answered: {events:?}");
        for refusal in &refusals {
            assert_eq!(refusal["code"], "rate_limited", "{refusal}");
            assert_eq!(refusal["on"], "send");
            assert!(refusal["client_id"].as_str().unwrap().starts_with("m-"));
        }
        assert!(server.metric("bluetick_sends_rate_limited_total") >= 85.0);
        // Over HTTP the same quota answers 429 (after the few tokens that
        // came back while we looked).
        let refused = (0..10)
            .map(|i| request(server.http, "POST", "/v1/messages", Some(&format!(r#"{{"id":"m-http-{i}","to":"bob","body":"more"}}"#)), Some(&mallory_token)))
            .find(|response| response.status != 200 && response.status != 201)
            .expect("a refusal within ten quick sends");
        assert_eq!((refused.status, refused.error_code().as_str()), (429, "rate_limited"), "{}", refused.body);

        // The SDK treats rate_limited as retryable: six sends at once (one
        // per peer, so none waits behind another) all get their ✓ in the end.
        let mut ids = Vec::new();
        for peer in peers {
            ids.push(alice.client.send(peer, &format!("hi {peer}")).await.unwrap());
        }
        for id in &ids {
            alice.sent(id).await;
        }
        let retried = alice.seen.iter().filter(|e| matches!(e, AppEvent::Rejected(r) if r.code == ErrorCode::RateLimited)).count();
        assert!(retried >= 1, "some of the six were over the quota at first: {:#?}", alice.seen);
        bob.message_from("alice", "hi bob").await;
        assert_eq!(alice.client.pending().unwrap(), 0);
    }

    async fn a_bridge_that_is_behind_sheds_typing_first_and_still_delivers_every_message(backend) {
        let server = Server::start_with(backend, Options::default().env("BLUETICK_BRIDGE__SHED_ABOVE", "20"));
        let (alice_token, bob_token) = (server.register("alice"), server.register("bob"));
        let mut bob = mqtt::connect(server.mqtt, "bob.phone", Some(("bob", &bob_token))).await.expect_connected();
        bob.subscribe_ok("u/bob/#").await;
        let alice = mqtt::connect(server.mqtt, "alice.phone", Some(("alice", &alice_token))).await.expect_connected();
        let store = server.store();
        assert!(common::eventually(TIMEOUT, || store.is_online("bob").unwrap()).await);
        let typing = r#"{"to":"bob","state":"typing"}"#;

        // The database is held: every commit waits and requests pile up.
        let lock = rows::WriteLock::hold(&server);
        for i in 0..100 {
            alice.publish("u/alice/send", format!(r#"{{"id":"s-{i}","to":"bob","body":"m{i}"}}"#)).await;
            if i == 0 {
                // The first is taken into a batch whose commit now waits;
                // the rest queue up behind it.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        let shed = r#"bluetick_bridge_shed_total{class="typing"}"#;
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.metric(shed) == 0.0 && Instant::now() < deadline {
            alice.client.publish("u/alice/typing", QoS::AtMostOnce, false, typing).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(server.metric(shed) >= 1.0, "typing is shed while the bridge is behind");
        lock.release();

        // Every message still arrives, once, in order.
        let mut bodies = Vec::new();
        while bodies.len() < 100 {
            let Some(p) = bob.next_message(Duration::from_secs(20)).await else { break };
            if p.topic == "u/bob/inbox" {
                let event: Value = serde_json::from_slice(&p.payload).unwrap();
                if event["type"] == "message" {
                    bodies.push(event["body"].as_str().unwrap().to_owned());
                }
            }
        }
        let expected: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
        assert_eq!(bodies, expected);
        // Caught up, typing flows again.
        let mut delivered = false;
        for _ in 0..20 {
            alice.client.publish("u/alice/typing", QoS::AtMostOnce, false, typing).await.unwrap();
            if let Some(p) = bob.next_message(Duration::from_millis(500)).await {
                if p.topic == "u/bob/live" {
                    delivered = true;
                    break;
                }
            }
        }
        assert!(delivered, "typing reaches bob once the bridge has caught up");
    }
}
