//! The database connection goes away under a running server and comes
//! back: nothing sent meanwhile is lost or shown twice, and every caller
//! gets a clear answer while it is away. PostgreSQL only: SQLite is a file
//! in the server's own process, with no connection to lose.

mod common;

use common::chat::App;
use common::http::request;
use common::mqtt;
use common::{eventually, Backend, Server};
use rumqttc::ConnectReturnCode;
use std::time::{Duration, Instant};

const DURING_OUTAGE: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_while_the_database_is_away_arrive_once_in_order_after_it_returns() {
    let server = Server::start(Backend::Postgres);
    let dir = tempfile::tempdir().unwrap();
    let (alice_token, bob_token) = (server.register("alice"), server.register("bob"));
    let carol_token = server.register("carol");
    let mut alice = App::connect(&server, "alice", &alice_token, "phone", dir.path()).await;
    let mut bob = App::connect(&server, "bob", &bob_token, "phone", dir.path()).await;
    let before = alice.client.send("bob", "before").await.unwrap();
    alice.sent(&before).await;
    bob.message_from("alice", "before").await;

    server.database.refuse_connections();
    let ready = || request(server.http, "GET", "/readyz", None, None).status;
    assert!(
        eventually(Duration::from_secs(20), || ready() == 503).await,
        "/readyz reports the database gone"
    );

    // Alice keeps writing over MQTT; her app holds each send in its outbox.
    let mut client_ids = Vec::new();
    for i in 0..DURING_OUTAGE {
        client_ids.push(
            alice
                .client
                .send("bob", &format!("during {i}"))
                .await
                .unwrap(),
        );
    }
    // An HTTP send gets a 503 with the shared error shape, not a hang.
    let send_over_http = || {
        request(
            server.http,
            "POST",
            "/v1/messages",
            Some(r#"{"id":"http-during","to":"bob","body":"over http"}"#),
            Some(&alice_token),
        )
    };
    let started = Instant::now();
    let refused = send_over_http();
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.error_code(), "unavailable");
    assert!(started.elapsed() < Duration::from_secs(20));
    // A device whose token the server has not seen yet is told the
    // service is unavailable, rather than that its password is wrong.
    let refusal = mqtt::connect(server.mqtt, "carol.phone", Some(("carol", &carol_token)))
        .await
        .refusal();
    assert_eq!(refusal, ConnectReturnCode::ServiceUnavailable);
    // Nothing of Alice's outage sends was acknowledged: the bridge keeps
    // retrying the batch rather than dropping it.
    alice.settle(Duration::from_secs(2)).await;
    for client_id in &client_ids {
        assert!(
            !alice.seen.iter().any(
                |e| matches!(e, client::AppEvent::Sent { ack, .. } if &ack.client_id == client_id)
            ),
            "{client_id} was acknowledged while nothing could store it"
        );
    }
    assert!(server.metric("bluetick_bridge_commit_failures_total") > 0.0);

    // Operators are told, once in a while rather than per retry.
    let log = server.log();
    let reports = log.matches("cannot connect to the database").count();
    assert!(
        (1..=3).contains(&reports),
        "{reports} reports in {:?}",
        started.elapsed()
    );
    assert!(
        !log.contains("r2d2"),
        "r2d2's per-attempt errors are not logged"
    );

    server.database.accept_connections();
    for (i, client_id) in client_ids.iter().enumerate() {
        alice.sent(client_id).await;
        bob.message_from("alice", &format!("during {i}")).await;
    }
    assert!(
        eventually(Duration::from_secs(20), || ready() == 200).await,
        "/readyz recovers"
    );
    bob.settle(Duration::from_millis(500)).await;
    let bodies: Vec<&str> = bob.messages().iter().map(|m| m.body.as_str()).collect();
    let expected: Vec<String> = std::iter::once("before".to_owned())
        .chain((0..DURING_OUTAGE).map(|i| format!("during {i}")))
        .collect();
    assert_eq!(bodies, expected, "every message once, in order");
    // The HTTP send was refused, not half-done: retrying it now works once.
    let retried = send_over_http();
    assert_eq!(retried.status / 100, 2, "{}", retried.body);
    bob.message_from("alice", "over http").await;
}
