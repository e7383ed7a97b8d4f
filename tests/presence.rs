//! Presence and last seen with privacy, read-receipt privacy, and typing,
//! as clients of a real server see them.

mod common;

use common::chat::App;
use common::http::request;
use common::mqtt::{self, Client, TIMEOUT};
use common::rows::count;
use common::{eventually, run_job, Options, Server};
use protocol::messages::ReceiptStatus;
use rumqttc::SubscribeReasonCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use store::on_both_backends;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The next presence message on `client`.
async fn next_presence(client: &mut Client, within: Duration) -> Option<Value> {
    loop {
        let publish = client.next_message(within).await?;
        if publish.topic.starts_with("presence/") {
            return Some(serde_json::from_slice(&publish.payload).expect("presence is JSON"));
        }
    }
}

/// Waits for a presence message with `online` = `online`.
async fn until_online_is(client: &mut Client, online: bool) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        if let Some(presence) = next_presence(client, TIMEOUT).await {
            if presence["online"] == online {
                return presence;
            }
        }
    }
    panic!("no presence with online = {online}");
}

async fn watcher(server: &Server, name: &str, token: &str, target: &str) -> Client {
    let mut client = mqtt::connect(server.mqtt, &format!("{name}.watch"), Some((name, token)))
        .await
        .expect_connected();
    client.subscribe_ok(&format!("presence/{target}")).await;
    client
}

fn set_privacy(server: &Server, token: &str, change: Value) -> Value {
    let response = request(
        server.http,
        "PUT",
        "/v1/me/privacy",
        Some(&change.to_string()),
        Some(token),
    );
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()
}

on_both_backends! {
    async fn watchers_see_online_then_offline_with_last_seen_on_a_clean_disconnect(backend) {
        let server = Server::start(backend);
        let (alice_token, bob_token) = (server.register("alice"), server.register("bob"));
        let mut bob = watcher(&server, "bob", &bob_token, "alice").await;
        let alice = mqtt::connect(server.mqtt, "alice.phone", Some(("alice", &alice_token))).await.expect_connected();
        until_online_is(&mut bob, true).await;

        let left_at = store::clock::now_ms();
        alice.disconnect().await;
        let offline = until_online_is(&mut bob, false).await;
        let last_seen = offline["last_seen"].as_i64().expect("last_seen");
        assert!((last_seen - left_at).abs() <= 1_000, "last_seen {last_seen} is within 1 s of the disconnect at {left_at}");
        let http = request(server.http, "GET", "/v1/users/alice/presence", None, Some(&bob_token)).json();
        assert_eq!(http, json!({"online": false, "last_seen": last_seen}));
    }

    async fn a_silent_socket_goes_offline_within_one_and_a_half_keepalives(backend) {
        let server = Server::start(backend);
        let (alice_token, bob_token) = (server.register("alice"), server.register("bob"));
        let mut bob = watcher(&server, "bob", &bob_token, "alice").await;
        // Alice's phone loses its network: no DISCONNECT, no FIN, nothing.
        let keepalive = 2;
        let mut socket = tokio::net::TcpStream::connect(server.mqtt).await.unwrap();
        socket.write_all(&mqtt::connect_packet_with_keepalive("alice.phone", "alice", &alice_token, keepalive)).await.unwrap();
        let mut connack = [0u8; 4];
        socket.read_exact(&mut connack).await.unwrap();
        assert_eq!(connack[3], 0, "connected");
        let silent_since = Instant::now();
        until_online_is(&mut bob, true).await;
        until_online_is(&mut bob, false).await;
        let took = silent_since.elapsed();
        eprintln!("offline after {took:?} of silence with a {keepalive} s keepalive");
        assert!(took <= Duration::from_millis(1_500 * keepalive as u64 + 500), "offline after {took:?}");
        drop(socket);
    }

    async fn a_user_with_two_devices_goes_offline_after_both(backend) {
        let server = Server::start(backend);
        let (alice_token, bob_token) = (server.register("alice"), server.register("bob"));
        let mut bob = watcher(&server, "bob", &bob_token, "alice").await;
        let phone = mqtt::connect(server.mqtt, "alice.phone", Some(("alice", &alice_token))).await.expect_connected();
        let laptop = mqtt::connect(server.mqtt, "alice.laptop", Some(("alice", &alice_token))).await.expect_connected();
        until_online_is(&mut bob, true).await;
        phone.disconnect().await;
        assert!(next_presence(&mut bob, Duration::from_millis(1_000)).await.is_none(), "still online on the laptop");
        assert!(server.store().is_online("alice").unwrap());
        laptop.abort();
        until_online_is(&mut bob, false).await;
    }

    async fn a_device_that_says_offline_counts_as_gone(backend) {
        let server = Server::start(backend);
        let (alice_token, bob_token) = (server.register("alice"), server.register("bob"));
        let mut bob = watcher(&server, "bob", &bob_token, "alice").await;
        let alice = mqtt::connect(server.mqtt, "alice.phone", Some(("alice", &alice_token))).await.expect_connected();
        until_online_is(&mut bob, true).await;
        alice.publish("u/alice/presence", r#"{"state":"offline","device":"phone"}"#).await;
        let offline = until_online_is(&mut bob, false).await;
        assert!(offline["last_seen"].is_i64());
        alice.publish("u/alice/presence", r#"{"state":"online","device":"phone"}"#).await;
        until_online_is(&mut bob, true).await;
    }

    async fn privacy_settings_and_reciprocity_decide_who_sees_last_seen(backend) {
        let server = Server::start(backend);
        let (alice_token, bob_token, carol_token) = (server.register("alice"), server.register("bob"), server.register("carol"));
        mqtt::visit(&server, "alice", &alice_token).await;
        // Bob and Alice are contacts (each wrote to the other); Carol is a stranger.
        let sent = request(server.http, "POST", "/v1/messages", Some(r#"{"id":"hi-1","to":"alice","body":"hi"}"#), Some(&bob_token));
        assert_eq!(sent.status, 201);
        let sent = request(server.http, "POST", "/v1/messages", Some(r#"{"id":"hi-2","to":"bob","body":"hi bob"}"#), Some(&alice_token));
        assert_eq!(sent.status, 201);

        // (Alice's setting, the viewer's setting, viewer, may see?)
        let cases = [
            ("everyone", "everyone", "carol", true),
            ("contacts", "everyone", "bob", true),
            ("contacts", "everyone", "carol", false),
            ("nobody", "everyone", "bob", false),
            // Reciprocity: a viewer who hides theirs sees no one's.
            ("everyone", "nobody", "bob", false),
            ("everyone", "contacts", "carol", false),
            ("everyone", "contacts", "bob", true),
        ];
        for (alice_setting, viewer_setting, viewer, visible) in cases {
            let viewer_token = if viewer == "bob" { &bob_token } else { &carol_token };
            set_privacy(&server, &alice_token, json!({"last_seen": alice_setting}));
            set_privacy(&server, viewer_token, json!({"last_seen": viewer_setting}));
            let case = format!("alice {alice_setting}, {viewer} {viewer_setting}");

            // An exact subscription gets the retained presence.
            let mut client = watcher(&server, viewer, viewer_token, "alice").await;
            let retained = next_presence(&mut client, TIMEOUT).await.expect("the retained presence");
            assert_eq!(retained["last_seen"].is_i64(), visible, "{case}: retained {retained}");
            assert_eq!(retained["hidden"].as_bool().unwrap_or(false), !visible, "{case}: {retained}");

            // Wildcards over presence are refused and deliver nothing.
            for filter in ["presence/+", "#", "presence/#"] {
                assert_eq!(client.subscribe(filter).await, vec![SubscribeReasonCode::Failure], "{case}: {filter}");
            }
            // HTTP applies the same rule.
            let http = request(server.http, "GET", "/v1/users/alice/presence", None, Some(viewer_token)).json();
            assert_eq!(http["last_seen"].is_i64(), visible, "{case}: HTTP {http}");
            client.disconnect().await;
        }
    }

    async fn writing_to_someone_does_not_show_their_presence_but_their_reply_does_even_archived(backend) {
        // Visibility answers are cached for auth.cache_ttl_secs; 1 s keeps the test short.
        let server = Server::start_with(backend, Options::default().env("BLUETICK_AUTH__CACHE_TTL_SECS", "1"));
        let dir = tempfile::tempdir().unwrap();
        let (bob_token, mallory_token) = (server.register("bob"), server.register("mallory"));
        set_privacy(&server, &bob_token, json!({"last_seen": "contacts"}));
        let mut bob = App::connect(&server, "bob", &bob_token, "phone", dir.path()).await;
        let mut mallory = App::connect(&server, "mallory", &mallory_token, "phone", dir.path()).await;
        let sees_bob_online = || {
            let presence = request(server.http, "GET", "/v1/users/bob/presence", None, Some(&mallory_token)).json();
            presence["online"] == true
        };

        mallory.client.send("bob", "hi bob, remember me?").await.unwrap();
        bob.message_from("mallory", "hi bob, remember me?").await;
        // Well past the cache's lifetime, Bob is still hidden from her.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!sees_bob_online(), "an unsolicited message made mallory a contact");
        let mut watch = watcher(&server, "mallory", &mallory_token, "bob").await;
        assert_eq!(next_presence(&mut watch, TIMEOUT).await.expect("retained"), json!({"hidden": true}));
        watch.disconnect().await;

        // Bob replies: now she is one of his contacts.
        bob.client.send("mallory", "yes, hello").await.unwrap();
        mallory.message_from("bob", "yes, hello").await;
        assert!(eventually(Duration::from_secs(30), sees_bob_online).await, "bob wrote to mallory");

        // Once every message has moved to the archive, the reply still counts.
        assert!(eventually(Duration::from_secs(30), || {
            count(&server, "inbox WHERE message_id IS NOT NULL") == 0
        }).await, "devices acked their inboxes");
        run_job(&server, "archival", 8 * 86_400);
        assert_eq!((count(&server, "messages"), count(&server, "messages_archive")), (0, 2));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(sees_bob_online(), "archived messages still make contacts");
        let mut watch = watcher(&server, "mallory", &mallory_token, "bob").await;
        let retained = next_presence(&mut watch, TIMEOUT).await.expect("retained");
        assert_eq!(retained["online"], true, "{retained}");
    }

    async fn a_viewer_who_loses_permission_gets_no_new_last_seen(backend) {
        let server = Server::start(backend);
        let (alice_token, bob_token) = (server.register("alice"), server.register("bob"));
        mqtt::visit(&server, "alice", &alice_token).await;
        // Bob watches while permitted and receives the retained presence.
        let mut bob = watcher(&server, "bob", &bob_token, "alice").await;
        assert!(next_presence(&mut bob, TIMEOUT).await.unwrap()["last_seen"].is_i64());
        // Alice hides hers; her next visit must not reach Bob's open
        // subscription with a time, nor a fresh subscription's retained copy.
        set_privacy(&server, &alice_token, json!({"last_seen": "nobody"}));
        let phone = mqtt::connect(server.mqtt, "alice.phone", Some(("alice", &alice_token))).await.expect_connected();
        let live = next_presence(&mut bob, TIMEOUT).await.expect("a live update");
        assert_eq!(live, json!({"hidden": true}));
        phone.disconnect().await;
        let live = next_presence(&mut bob, TIMEOUT).await.expect("a live update");
        assert_eq!(live, json!({"hidden": true}));
        let mut again = watcher(&server, "bob", &bob_token, "alice").await;
        assert_eq!(next_presence(&mut again, TIMEOUT).await.unwrap(), json!({"hidden": true}));
        // Alice herself still sees her own.
        let mut own = watcher(&server, "alice", &alice_token, "alice").await;
        assert!(next_presence(&mut own, TIMEOUT).await.unwrap()["last_seen"].is_i64());
    }

    async fn with_read_receipts_off_no_read_receipt_flows_but_delivered_does(backend) {
        let server = Server::start(backend);
        let dir = tempfile::tempdir().unwrap();
        let (alice_token, bob_token) = (server.register("alice"), server.register("bob"));
        set_privacy(&server, &bob_token, json!({"read_receipts": false}));
        let mut alice = App::connect(&server, "alice", &alice_token, "phone", dir.path()).await;
        let mut bob = App::connect(&server, "bob", &bob_token, "phone", dir.path()).await;

        // Bob reads Alice's message: she sees ✓✓ but never blue.
        let client_id = alice.client.send("bob", "did you read this?").await.unwrap();
        let id = alice.sent(&client_id).await;
        bob.message_from("alice", "did you read this?").await;
        bob.client.read("alice", id).await.unwrap();
        let delivered = alice.receipt("bob", ReceiptStatus::Delivered, id).await;
        assert_eq!(delivered.status, ReceiptStatus::Delivered);
        // Alice reads Bob's reply: Bob (receipts off) gets no read receipt either.
        let reply = bob.client.send("alice", "yes").await.unwrap();
        let reply_id = bob.sent(&reply).await;
        alice.message_from("bob", "yes").await;
        alice.client.read("bob", reply_id).await.unwrap();
        bob.receipt("alice", ReceiptStatus::Delivered, reply_id).await;
        alice.settle(Duration::from_millis(700)).await;
        bob.settle(Duration::from_millis(700)).await;
        assert!(alice.receipts().iter().all(|r| r.status == ReceiptStatus::Delivered), "{:?}", alice.receipts());
        assert!(bob.receipts().iter().all(|r| r.status == ReceiptStatus::Delivered), "{:?}", bob.receipts());
        // The reads were still recorded.
        let settings = request(server.http, "GET", "/v1/me/privacy", None, Some(&bob_token)).json();
        assert_eq!(settings, json!({"last_seen": "everyone", "read_receipts": false}));
    }

    async fn typing_reaches_an_online_peer_fast_and_is_never_stored(backend) {
        let server = Server::start(backend);
        let (alice_token, bob_token, _) = (server.register("alice"), server.register("bob"), server.register("carol"));
        let mut bob = mqtt::connect(server.mqtt, "bob.phone", Some(("bob", &bob_token))).await.expect_connected();
        bob.subscribe_ok("u/bob/#").await;
        let alice = mqtt::connect(server.mqtt, "alice.phone", Some(("alice", &alice_token))).await.expect_connected();
        let store = server.store();
        assert!(eventually(TIMEOUT, || store.is_online("bob").unwrap()).await);
        tokio::time::sleep(Duration::from_millis(200)).await;

        let mut latencies = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            alice.client.publish("u/alice/typing", rumqttc::QoS::AtMostOnce, false, r#"{"to":"bob","state":"typing"}"#).await.unwrap();
            let live = loop {
                let publish = bob.next_message(TIMEOUT).await.expect("typing arrives");
                if publish.topic == "u/bob/live" {
                    break publish;
                }
            };
            latencies.push(started.elapsed());
            let event: Value = serde_json::from_slice(&live.payload).unwrap();
            assert_eq!(event, json!({"type": "typing", "from": "alice", "state": "typing"}));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        eprintln!("typing latencies: {latencies:?}");
        assert!(latencies.iter().all(|l| *l < Duration::from_millis(100)), "{latencies:?}");

        // Never stored, never replayed.
        assert_eq!(store.inbox_head("bob").unwrap(), 0);
        bob.publish("u/bob/sync", r#"{"after":0}"#).await;
        let replay = loop {
            let publish = bob.next_message(TIMEOUT).await.expect("the sync answer");
            if publish.topic == "u/bob/inbox" {
                break publish;
            }
        };
        let synced: Value = serde_json::from_slice(&replay.payload).unwrap();
        assert_eq!(synced["type"], "synced", "only the marker: {synced}");
        assert_eq!(synced["through"], 0);

        // To an offline peer it is dropped, and no counter says so (that
        // would tell carol's presence); a flood is cut to the limit.
        let typing_samples = || common::http::request(server.metrics, "GET", "/metrics", None, None)
            .body.lines().filter(|l| l.starts_with("bluetick_typing")).map(str::to_owned).collect::<Vec<_>>();
        let before = typing_samples();
        alice.client.publish("u/alice/typing", rumqttc::QoS::AtMostOnce, false, r#"{"to":"carol","state":"typing"}"#).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(typing_samples(), before);
        for _ in 0..30 {
            alice.client.publish("u/alice/typing", rumqttc::QoS::AtMostOnce, false, r#"{"to":"bob","state":"paused"}"#).await.unwrap();
        }
        let mut delivered = 0;
        while let Some(publish) = bob.next_message(Duration::from_millis(500)).await {
            if publish.topic == "u/bob/live" {
                delivered += 1;
            }
        }
        assert!((1..=11).contains(&delivered), "rate limit lets a burst of about 10 through, got {delivered}");
        assert!(server.metric(r#"bluetick_typing_dropped_total{reason="rate_limited"}"#) >= 19.0);
    }

    async fn nothing_but_presence_writes_last_seen(backend) {
        let server = Server::start(backend);
        let alice_token = server.register("alice");
        mqtt::visit(&server, "alice", &alice_token).await;
        let store = server.store();
        let before = store.presence_of("alice").unwrap().1.expect("alice has a last seen");
        tokio::time::sleep(Duration::from_millis(20)).await;

        // Every HTTP route that touches users.
        let other = server.register("dave");
        let token = server.login("alice", "alice-password");
        for (method, path, body) in [
            ("GET", "/v1/users/alice/presence", None),
            ("GET", "/v1/me/privacy", None),
            ("PUT", "/v1/me/privacy", Some(r#"{"last_seen":"contacts","read_receipts":true}"#)),
            ("POST", "/v1/messages", Some(r#"{"id":"x-1","to":"dave","body":"hello"}"#)),
            ("DELETE", "/v1/tokens/current", None),
        ] {
            let response = request(server.http, method, path, body, Some(&token));
            assert!(response.status < 300, "{method} {path}: {}", response.body);
        }
        let _ = request(server.http, "GET", "/v1/users/alice/presence", None, Some(&other));
        // Every operator command that touches users.
        for args in [
            vec!["user", "add", "erin", "--password", "correct horse"],
            vec!["user", "token", "alice"],
            vec!["user", "privacy", "alice", "--last-seen", "nobody", "--read-receipts", "off"],
            vec!["dlq", "list"],
            vec!["migrate"],
        ] {
            let output = server.operator(&args);
            assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        }
        assert_eq!(store.presence_of("alice").unwrap().1, Some(before), "last seen unchanged");
    }
}
