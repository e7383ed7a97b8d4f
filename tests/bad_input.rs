//! Bad sends: each gets an error event in the sender's inbox naming the
//! client message id where there is one, and a dead letter for operators;
//! nothing is stored and the server keeps serving.

mod common;

use common::mqtt::{self, Client, TIMEOUT};
use common::{eventually, Backend, Server};
use serde_json::Value;

async fn next_event(client: &mut Client) -> Value {
    let publish = client.next_message(TIMEOUT).await.expect("an inbox event");
    serde_json::from_slice(&publish.payload).expect("inbox events are JSON")
}

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
        ];
        for (seq, (payload, code, client_id)) in cases.iter().enumerate() {
            alice.publish("u/alice/send", payload.clone()).await;
            let event = next_event(&mut alice).await;
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
            let letter = letters.iter().find(|l| l.code == *code).unwrap_or_else(|| panic!("no dead letter for {code}"));
            assert_eq!(letter.user, "alice");
            assert_eq!(letter.topic, "u/alice/send");
            if *code != "unknown_recipient" {
                assert_eq!(letter.payload, payload.as_bytes(), "{code}: the raw payload is kept");
            }
            assert!(!letter.reason.is_empty());
        }
        // Nothing was stored for Bob, and the server still works.
        assert_eq!(store.inbox_head("bob").unwrap(), 0);
        alice.publish("u/alice/send", r#"{"id":"ok-1","to":"bob","body":"fine"}"#).await;
        let ack = next_event(&mut alice).await;
        assert_eq!((ack["type"].as_str(), ack["client_id"].as_str()), (Some("ack"), Some("ok-1")));
    }

    async fn operators_list_and_replay_dead_letters(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        let mut alice = mqtt::connect(server.mqtt, "alice", Some(("alice", &token))).await.expect_connected();
        alice.subscribe_ok("u/alice/inbox").await;
        alice.publish("u/alice/send", r#"{"id":"late-1","to":"carol","body":"are you there?"}"#).await;
        assert_eq!(next_event(&mut alice).await["code"], "unknown_recipient");

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
}
