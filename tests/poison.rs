//! A request the database refuses every time (a poison request) is
//! dead-lettered with an error event to its sender, while the rest of its
//! batch commits and messaging goes on.

mod common;

use common::mqtt;
use common::{eventually, rows, Backend, Server};
use serde_json::Value;
use std::time::Duration;
use store::on_both_backends;

/// Makes the database refuse, with a CHECK violation, any message whose
/// client id starts with `poison`: a real constraint, on either backend,
/// that the server knows nothing about.
fn refuse_poison_messages(server: &Server) {
    let statements: &[&str] = match server.database.backend() {
        Backend::Sqlite => &[
            "CREATE TABLE poison_guard (x TEXT CHECK (x <> 'poison'))",
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON messages \
             WHEN NEW.client_id LIKE 'poison%' \
             BEGIN INSERT INTO poison_guard VALUES ('poison'); END",
        ],
        Backend::Postgres => &[
            "ALTER TABLE messages ADD CONSTRAINT refuse_poison \
             CHECK (client_id NOT LIKE 'poison%') NOT VALID",
        ],
    };
    rows::execute(server, statements);
}

on_both_backends! {
    async fn a_poison_send_is_dead_lettered_while_the_rest_of_its_batch_commits(backend) {
        let server = Server::start(backend);
        let (alice_token, bob_token) = (server.register("alice"), server.register("bob"));
        refuse_poison_messages(&server);
        let mut alice = mqtt::connect(server.mqtt, "alice.phone", Some(("alice", &alice_token))).await.expect_connected();
        alice.subscribe_ok("u/alice/inbox").await;
        let mut bob = mqtt::connect(server.mqtt, "bob.phone", Some(("bob", &bob_token))).await.expect_connected();
        bob.subscribe_ok("u/bob/inbox").await;

        // One burst, so the poison send shares its batch with good ones.
        for i in 0..60 {
            let id = if i == 30 { "poison-1".to_owned() } else { format!("good-{i}") };
            alice.publish("u/alice/send", format!(r#"{{"id":"{id}","to":"bob","body":"m{i}"}}"#)).await;
        }
        let to_alice = alice.inbox_events(Duration::from_secs(3)).await;
        let to_bob = bob.inbox_events(Duration::from_secs(1)).await;

        let acked: Vec<&str> = to_alice.iter().filter(|e| e["type"] == "ack").map(|e| e["client_id"].as_str().unwrap()).collect();
        assert_eq!(acked.len(), 59, "every good send is stored: {to_alice:?}");
        assert!(!acked.contains(&"poison-1"));
        let errors: Vec<&Value> = to_alice.iter().filter(|e| e["type"] == "error").collect();
        assert_eq!(errors.len(), 1, "{to_alice:?}");
        assert_eq!((errors[0]["code"].as_str(), errors[0]["client_id"].as_str(), errors[0]["on"].as_str()),
                   (Some("unprocessable"), Some("poison-1"), Some("send")));
        let bodies: Vec<&str> = to_bob.iter().filter(|e| e["type"] == "message").map(|e| e["body"].as_str().unwrap()).collect();
        let expected: Vec<String> = (0..60).filter(|&i| i != 30).map(|i| format!("m{i}")).collect();
        assert_eq!(bodies, expected, "bob gets every good message once, in order");

        // Operators find the payload in the dead letters.
        assert_eq!(rows::count(&server, "dead_letters WHERE code = 'unprocessable'"), 1);
        let listed = server.operator(&["dlq", "list"]);
        assert!(String::from_utf8_lossy(&listed.stdout).contains("poison-1"));
        assert_eq!(server.metric("bluetick_bridge_poison_requests_total"), 1.0);

        // And messaging goes on.
        alice.publish("u/alice/send", r#"{"id":"after","to":"bob","body":"still here"}"#).await;
        let mut arrived = false;
        for _ in 0..3 {
            if bob.inbox_events(Duration::from_secs(2)).await.iter().any(|e| e["body"] == "still here") {
                arrived = true;
                break;
            }
        }
        assert!(arrived, "a send after the poison one is delivered");
        assert!(eventually(Duration::from_secs(10), || rows::count(&server, "messages WHERE client_id = 'after'") == 1).await);
    }
}
