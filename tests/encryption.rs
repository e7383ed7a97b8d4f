//! Message bodies are encrypted at rest: a plaintext body never appears in
//! the SQLite file (nor its WAL) or anywhere in the PostgreSQL database,
//! including the inbox and the dead letters.

mod common;

use common::at_rest::assert_not_stored;
use common::mqtt::{self, TIMEOUT};
use common::{Backend, Server};

const SECRET_BODY: &str = "the vault code is xylophone-4242";
const SECRET_IN_DEAD_LETTER: &str = "zebra-crossing-9911";

/// Sends a stored message and a refused one, and waits until both are in.
async fn send_secrets(server: &Server) {
    let alice_token = server.register("alice");
    let bob_token = server.register("bob");
    let mut alice = mqtt::connect(server.mqtt, "alice", Some(("alice", &alice_token)))
        .await
        .expect_connected();
    let mut bob = mqtt::connect(server.mqtt, "bob", Some(("bob", &bob_token)))
        .await
        .expect_connected();
    alice.subscribe_ok("u/alice/inbox").await;
    bob.subscribe_ok("u/bob/inbox").await;
    alice
        .publish(
            "u/alice/send",
            format!(r#"{{"id":"s-1","to":"bob","body":"{SECRET_BODY}"}}"#),
        )
        .await;
    alice
        .publish(
            "u/alice/send",
            format!(r#"{{"id":"s-2","to":"nobody","body":"{SECRET_IN_DEAD_LETTER}"}}"#),
        )
        .await;
    let delivered = bob
        .next_message(TIMEOUT)
        .await
        .expect("Bob gets the message");
    assert!(
        String::from_utf8_lossy(&delivered.payload).contains(SECRET_BODY),
        "the recipient reads plaintext"
    );
    for _ in 0..2 {
        alice
            .next_message(TIMEOUT)
            .await
            .expect("Alice's ack and error");
    }
    // The plaintext is readable through the store with the key...
    let inbox = server.store().inbox_after("bob", 0, 10).unwrap();
    assert!(serde_json::to_string(&inbox).unwrap().contains(SECRET_BODY));
}

const SECRETS: [&str; 4] = [
    SECRET_BODY,
    SECRET_IN_DEAD_LETTER,
    "xylophone",
    "zebra-crossing",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_body_in_the_sqlite_files() {
    let mut server = Server::start(Backend::Sqlite);
    send_secrets(&server).await;
    assert_not_stored(&server, &SECRETS, "while running, WAL included");
    assert!(server.terminate().success());
    assert_not_stored(&server, &SECRETS, "after a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_body_in_the_postgres_database() {
    let server = Server::start(Backend::Postgres);
    send_secrets(&server).await;
    assert_not_stored(&server, &SECRETS, "all rows");
}
