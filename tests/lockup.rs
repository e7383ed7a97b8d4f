//! Regression tests for rumqttd's listener lockup (DESIGN.md, "Lockup
//! bug"): a connection that dies between CONNECT and CONNACK left a dead
//! last-will handler behind, and the next CONNECT with the same client id
//! panicked on it while holding a lock, locking every later client out of
//! the listener until restart.
//!
//! Two doors lead there. The guard closes the first (clients the router
//! would refuse never reach it); the vendored rumqttd patch
//! (third_party/rumqttd/PATCHES.md) closes the second (a client that resets
//! its socket before the CONNACK is written).

mod common;

use common::mqtt::{self, Outcome};
use common::{Options, Server};
use rumqttc::ConnectReturnCode;
use std::time::Duration;
use store::on_both_backends;
use tokio::io::AsyncWriteExt;

on_both_backends! {
    /// DESIGN.md "Lockup bug": a client the router rejects that reconnects
    /// used to poison a lock and lock everyone out until restart.
    async fn rejected_clients_reconnecting_never_lock_out_others(backend) {
        let server = Server::start_with(backend, Options::default().env("BLUETICK_MQTT__MAX_CONNECTIONS", "2"));
        let token = server.register("alice");
        let creds = Some(("alice", token.as_str()));
        for _ in 0..2 {
            assert!(matches!(mqtt::connect(server.mqtt, "a/b", creds).await, Outcome::Refused(_)));
        }
        let first = mqtt::connect(server.mqtt, "alice.one", creds).await.expect_connected();
        let second = mqtt::connect(server.mqtt, "alice.two", creds).await.expect_connected();
        for _ in 0..2 {
            let over = mqtt::connect(server.mqtt, "alice.three", creds).await;
            assert_eq!(over.refusal(), ConnectReturnCode::ServiceUnavailable);
        }
        assert_eq!(server.metric(r#"bluetick_mqtt_refusals_total{reason="over_capacity"}"#), 2.0);
        first.disconnect().await;
        // A slot frees up once the first client has gone.
        let mut fresh = mqtt::connect_retrying(server.mqtt, "alice.fresh", creds, 50)
            .await
            .expect("a fresh valid client connects after the refusals");
        assert!(fresh.is_alive("u/alice/inbox").await);
        drop(second);
    }

    async fn a_client_resetting_during_connect_never_locks_out_others(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        for round in 0..20 {
            let mut socket = tokio::net::TcpStream::connect(server.mqtt).await.unwrap();
            socket.write_all(&mqtt::connect_packet("alice.flaky", "alice", &token)).await.unwrap();
            // Reset (not close) the socket before the CONNACK can be written.
            // A zero linger is the point here, and it never blocks on drop.
            #[allow(deprecated)]
            socket.set_linger(Some(Duration::ZERO)).unwrap();
            drop(socket);
            if round % 2 == 1 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let mut fresh = mqtt::connect(server.mqtt, "alice.fresh", Some(("alice", &token)))
            .await
            .expect_connected();
        assert!(fresh.is_alive("u/alice/inbox").await);
        let flaky = mqtt::connect(server.mqtt, "alice.flaky", Some(("alice", &token))).await.expect_connected();
        drop(flaky);
    }
}
