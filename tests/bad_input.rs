//! Bad sends: each gets an error event in the sender's inbox naming the
//! client message id where there is one, and a dead letter for operators;
//! nothing is stored and the server keeps serving.

mod common;

use common::mqtt::{self, TIMEOUT};
use common::rows::count;
use common::{eventually, Options, Server};
use serde_json::json;
use store::on_both_backends;

on_both_backends! {
    async fn each_bad_send_gets_an_error_event_and_a_dead_letter(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        server.register("bob");
        let mut alice = mqtt::connect(server.mqtt, "alice", Some(("alice", &token))).await.expect_connected();
        alice.subscribe_ok("u/alice/inbox").await;
        let oversize = format!(r#"{{"id":"big-1","to":"bob","body":"{}"}}"#, "x".repeat(64 * 1024 + 1));
        let cases: Vec<(String, &str, Option<&str>)> = vec![
            (r#"{"id":"who-1","to":"carol","body":"hi"}"#.into(), "unknown_recipient", Some("who-1")),
            (r#"{"id":"empty-1","to":"bob","body":""}"#.into(), "empty_body", Some("empty-1")),
            (oversize.clone(), "body_too_large", Some("big-1")),
            (r#"{"id":"json-1","to":"bob","body":"#.into(), "malformed_json", None),
            (r#"{"to":"bob","body":"no id"}"#.into(), "missing_id", None),
            // JSON, but not the object a send is: its shape is the fault.
            ("[1,2]".into(), "malformed_json", None),
        ];
        for (seq, (payload, code, client_id)) in cases.iter().enumerate() {
            alice.publish("u/alice/send", payload.clone()).await;
            let event = alice.next_inbox_event().await;
            assert_eq!(event["type"], "error", "{event}");
            assert_eq!(event["code"].as_str(), Some(*code), "{event}");
            assert_eq!(event["client_id"].as_str(), *client_id, "{event}");
            assert_eq!(event["on"], "send");
            assert_eq!(event["seq"].as_i64(), Some(seq as i64 + 1), "errors are ordinary inbox events");
            assert!(event["message"].as_str().is_some_and(|m| !m.is_empty()));
        }

        let store = server.store();
        let letters = store.dead_letters(100).unwrap();
        assert_eq!(letters.len(), cases.len());
        for (payload, code, _) in &cases {
            let letter = letters.iter().find(|l| l.code == *code && l.size == payload.len() as u64).unwrap_or_else(|| panic!("no dead letter for {code}: {payload:.40}"));
            assert_eq!(letter.user, "alice");
            assert_eq!(letter.topic, "u/alice/send");
            if *code != "unknown_recipient" {
                // Up to the kept prefix (1 KiB by default), and its length.
                let kept = &payload.as_bytes()[..payload.len().min(1024)];
                assert_eq!(letter.payload, kept, "{code}: the raw payload's prefix is kept");
                assert_eq!(letter.size, payload.len() as u64, "{code}");
            }
            assert!(!letter.reason.is_empty());
        }
        // Nothing was stored for Bob, and the server still works.
        assert_eq!(store.inbox_head("bob").unwrap(), 0);
        alice.publish("u/alice/send", r#"{"id":"ok-1","to":"bob","body":"fine"}"#).await;
        let ack = alice.next_inbox_event().await;
        assert_eq!((ack["type"].as_str(), ack["client_id"].as_str()), (Some("ack"), Some("ok-1")));
    }

    async fn operators_list_and_replay_dead_letters(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        let mut alice = mqtt::connect(server.mqtt, "alice", Some(("alice", &token))).await.expect_connected();
        alice.subscribe_ok("u/alice/inbox").await;
        alice.publish("u/alice/send", r#"{"id":"late-1","to":"carol","body":"are you there?"}"#).await;
        assert_eq!(alice.next_inbox_event().await["code"], "unknown_recipient");

        let listed = server.operator(&["dlq", "list"]);
        assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
        let listing = String::from_utf8_lossy(&listed.stdout).to_string();
        assert!(listing.contains("unknown_recipient") && listing.contains("u/alice/send"), "{listing}");
        let id = server.store().dead_letters(1).unwrap()[0].id;

        // Carol signs up; the operator replays the letter and it goes through.
        server.register("carol");
        let replayed = server.operator(&["dlq", "replay", &id.to_string()]);
        assert!(replayed.status.success(), "{}", String::from_utf8_lossy(&replayed.stderr));
        assert!(String::from_utf8_lossy(&replayed.stdout).contains("stored"));
        let store = server.store();
        assert!(eventually(TIMEOUT, || store.inbox_head("carol").unwrap() == 1).await);
        let carol_inbox = store.inbox_after("carol", 0, 10).unwrap();
        assert_eq!(serde_json::to_value(&carol_inbox[0]).unwrap()["body"], "are you there?");
        assert!(store.dead_letter(id).unwrap().unwrap().replayed_at.is_some());
        let again = server.operator(&["dlq", "replay", "999999"]);
        assert!(!again.status.success());
        assert!(String::from_utf8_lossy(&again.stderr).contains("no dead letter"));
    }

    async fn a_flood_of_refused_payloads_keeps_a_bounded_prefix_within_the_senders_budget(backend) {
        const BUDGET: usize = 16 * 1024;
        let options = Options::default().env("BLUETICK_DEAD_LETTERS__BYTES_PER_USER", &BUDGET.to_string());
        let server = Server::start_with(backend, options);
        let token = server.register("mallory");
        let bob_token = server.register("bob");
        let mut mallory = mqtt::connect(server.mqtt, "mallory", Some(("mallory", &token))).await.expect_connected();
        mallory.subscribe_ok("u/mallory/inbox").await;
        // 200 KB that never parses: each one is refused.
        let flood = format!(r#"{{"id":"big","to":"bob","body":"{}"#, "x".repeat(200_000));
        const FLOOD: usize = 60;
        for _ in 0..FLOOD {
            mallory.publish("u/mallory/send", flood.clone()).await;
        }
        for _ in 0..FLOOD {
            assert_eq!(mallory.next_inbox_event().await["code"], "malformed_json");
        }

        let letters = server.store().dead_letters(1000).unwrap();
        assert_eq!(letters.len(), FLOOD, "every refusal is recorded");
        assert!(letters.iter().all(|l| l.size == flood.len() as u64), "with the length received");
        let kept: Vec<&[u8]> = letters.iter().map(|l| l.payload.as_slice()).filter(|p| !p.is_empty()).collect();
        assert!(!kept.is_empty() && kept.len() < FLOOD, "kept {} payloads of {FLOOD}", kept.len());
        assert!(kept.iter().all(|p| *p == &flood.as_bytes()[..1024]), "a 1 KiB prefix of each");
        let stored = count(&server, "dead_letters WHERE LENGTH(payload) > 0");
        assert_eq!(stored as usize, kept.len());
        assert!(kept.len() * 1024 <= BUDGET, "{} prefixes kept over a {BUDGET}-byte budget", kept.len());

        // A cut payload is not replayed as if it were whole.
        let cut = letters.iter().find(|l| l.truncated()).unwrap().id;
        let replay = server.operator(&["dlq", "replay", &cut.to_string()]);
        assert!(!replay.status.success());
        assert!(String::from_utf8_lossy(&replay.stderr).contains("cannot be replayed"));

        // Bob's budget is his own, and the server serves him as before.
        let mut bob = mqtt::connect(server.mqtt, "bob", Some(("bob", &bob_token))).await.expect_connected();
        bob.subscribe_ok("u/bob/inbox").await;
        bob.publish("u/bob/send", r#"{"id":"b-1","to":"mallory","body":""}"#).await;
        assert_eq!(bob.next_inbox_event().await["code"], "empty_body");
        let bobs = server.store().dead_letters(1).unwrap().remove(0);
        assert_eq!((bobs.user.as_str(), bobs.truncated()), ("bob", false));
        bob.publish("u/bob/send", r#"{"id":"b-2","to":"mallory","body":"fine"}"#).await;
        assert_eq!(bob.next_inbox_event().await["type"], "ack");
    }

    async fn an_ack_with_an_overlong_device_name_is_refused_and_stores_nothing(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        let mut alice = mqtt::connect(server.mqtt, "alice", Some(("alice", &token))).await.expect_connected();
        alice.subscribe_ok("u/alice/inbox").await;
        let ack = json!({ "up_to": 0, "device": "d".repeat(100_000) }).to_string();
        alice.publish("u/alice/ack", ack).await;
        let refused = alice.next_inbox_event().await;
        assert_eq!((refused["type"].as_str(), refused["on"].as_str()), (Some("error"), Some("ack")), "{refused}");
        assert_eq!(refused["code"], "malformed_json");
        assert!(refused["message"].as_str().unwrap().contains("device"), "{refused}");
        assert_eq!(count(&server, "devices"), 0, "no device row for the refused ack");

        // A device name within the client-id rule is accepted.
        alice.publish("u/alice/ack", json!({ "up_to": 1, "device": "phone-2" }).to_string()).await;
        assert!(eventually(TIMEOUT, || count(&server, "devices WHERE device = 'phone-2'") == 1).await);
    }

    async fn an_ack_without_a_device_is_refused_and_stores_nothing(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        let mut alice = mqtt::connect(server.mqtt, "alice.phone", Some(("alice", &token))).await.expect_connected();
        alice.subscribe_ok("u/alice/inbox").await;
        alice.publish("u/alice/ack", json!({ "up_to": 1 }).to_string()).await;
        let refused = alice.next_inbox_event().await;
        assert_eq!((refused["type"].as_str(), refused["on"].as_str()), (Some("error"), Some("ack")), "{refused}");
        assert_eq!(refused["code"], "malformed_json");
        assert!(refused["message"].as_str().unwrap().contains("device"), "{refused}");
        assert_eq!(server.store().dead_letters(10).unwrap().len(), 1, "kept for operators");
        assert_eq!(count(&server, "devices"), 0, "no device row for the refused ack");
    }

    async fn a_sync_limit_outside_1_to_500_is_refused_as_bad_request(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        let mut alice = mqtt::connect(server.mqtt, "alice", Some(("alice", &token))).await.expect_connected();
        alice.subscribe_ok("u/alice/inbox").await;
        for limit in [0, 501] {
            alice.publish("u/alice/sync", json!({ "after": 0, "limit": limit }).to_string()).await;
            let refused = alice.next_inbox_event().await;
            assert_eq!((refused["type"].as_str(), refused["on"].as_str()), (Some("error"), Some("sync")), "{refused}");
            assert_eq!(refused["code"], "bad_request", "limit {limit}: {refused}");
            assert!(refused["message"].as_str().unwrap().contains("1-500"), "{refused}");
        }
        // Both refusals are inbox events 1 and 2; the largest limit syncs them.
        alice.publish("u/alice/sync", json!({ "after": 0, "limit": 500 }).to_string()).await;
        let replayed = alice.inbox_events(std::time::Duration::from_secs(2)).await;
        let synced = replayed.last().expect("a synced event");
        assert_eq!((synced["type"].as_str(), synced["through"].as_i64(), synced["more"].as_bool()), (Some("synced"), Some(2), Some(false)), "{replayed:?}");
    }
}
