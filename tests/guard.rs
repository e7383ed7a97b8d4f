//! The guard, seen from MQTT clients of a real server: who may connect,
//! which topics they may touch, and that refusals never wedge the broker.

mod common;

use common::mqtt::{self, Outcome, TIMEOUT};
use common::{eventually, Server};
use rumqttc::{ConnectReturnCode, SubscribeReasonCode};
use std::time::Duration;
use store::on_both_backends;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

on_both_backends! {
    async fn wrong_token_unknown_user_and_missing_credentials_are_refused(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");

        let wrong = mqtt::connect(server.mqtt, "alice", Some(("alice", "bt_not_a_token"))).await;
        assert_eq!(wrong.refusal(), ConnectReturnCode::BadUserNamePassword);
        let unknown = mqtt::connect(server.mqtt, "mallory", Some(("mallory", &token))).await;
        assert_eq!(unknown.refusal(), ConnectReturnCode::BadUserNamePassword);
        let anonymous = mqtt::connect(server.mqtt, "alice", None).await;
        assert_eq!(anonymous.refusal(), ConnectReturnCode::BadUserNamePassword);
        let someone_elses = mqtt::connect(server.mqtt, "alice", Some(("bob", &token))).await;
        assert_eq!(someone_elses.refusal(), ConnectReturnCode::BadUserNamePassword);

        // The right token still works after all that.
        mqtt::connect(server.mqtt, "alice.phone", Some(("alice", &token))).await.expect_connected();
        assert_eq!(server.metric(r#"bluetick_mqtt_refusals_total{reason="bad_credentials"}"#), 3.0);
        assert_eq!(server.metric(r#"bluetick_mqtt_refusals_total{reason="no_credentials"}"#), 1.0);
    }

    async fn expired_token_is_refused(backend) {
        let server = Server::start(backend);
        server.register("alice");
        let output = common::bluetick()
            .args(["user", "token", "alice", "--ttl-days", "0", "--database-url", &server.database.url])
            .output()
            .expect("bluetick user token");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let expired = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        let outcome = mqtt::connect(server.mqtt, "alice", Some(("alice", &expired))).await;
        assert_eq!(outcome.refusal(), ConnectReturnCode::BadUserNamePassword);
    }

    async fn client_ids_must_be_name_or_name_dot_device(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        for bad in ["a/b", "alice/phone", "alice.+", "alice.#", "alice.", "bob", "alice.a.b", "$alice"] {
            let outcome = mqtt::connect(server.mqtt, bad, Some(("alice", &token))).await;
            match outcome {
                Outcome::Refused(code) => assert!(
                    matches!(code, ConnectReturnCode::BadClientId | ConnectReturnCode::BadUserNamePassword),
                    "{bad}: {code:?}"
                ),
                _ => panic!("client id {bad:?} was not refused"),
            }
        }
        mqtt::connect(server.mqtt, "alice.laptop-2", Some(("alice", &token))).await.expect_connected();
    }

    async fn stranger_cannot_subscribe_to_or_publish_on_another_users_topics(backend) {
        let server = Server::start(backend);
        let alice_token = server.register("alice");
        let bob_token = server.register("bob");
        let mut bob = mqtt::connect(server.mqtt, "bob", Some(("bob", &bob_token))).await.expect_connected();
        bob.subscribe_ok("u/bob/#").await;
        let mut alice = mqtt::connect(server.mqtt, "alice", Some(("alice", &alice_token))).await.expect_connected();

        // presence/nobody: the broker keeps a log per filter for good, so
        // filters for names that do not exist are refused.
        for forbidden in ["u/bob/#", "#", "+/+/inbox", "u/+/send", "$share/g/u/bob/send", "presence/+", "presence/nobody"] {
            let codes = alice.subscribe(forbidden).await;
            assert_eq!(codes, vec![SubscribeReasonCode::Failure], "{forbidden}");
        }
        // Alice's own subtree and an exact presence topic are fine.
        alice.subscribe_ok("u/alice/#").await;
        alice.subscribe_ok("presence/bob").await;

        // A publish into Bob's subtree closes Alice's connection and never
        // reaches Bob.
        alice.publish("u/bob/send", "forged").await;
        assert!(alice.closed_within(TIMEOUT).await, "forbidden publish must close the connection");
        assert!(bob.next_message(Duration::from_millis(500)).await.is_none(), "Bob must not see the forged message");

        // Bob's session was undisturbed throughout.
        assert!(bob.is_alive("u/bob/inbox").await);
        let bob_phone = mqtt::connect(server.mqtt, "bob.phone", Some(("bob", &bob_token))).await.expect_connected();
        bob_phone.publish("u/bob/send", "hello me").await;
        // Bob's subtree also carries his inbox (the server answers a raw
        // "hello me" with an error event there); his own publish arrives too.
        let got = loop {
            let got = bob.next_message(TIMEOUT).await.expect("Bob's own message");
            if got.topic == "u/bob/send" {
                break got;
            }
            assert_eq!(got.topic, "u/bob/inbox", "nothing from outside Bob's subtree");
        };
        assert_eq!(&got.payload[..], b"hello me");
        assert_eq!(server.metric(r#"bluetick_mqtt_refusals_total{reason="forbidden_subscribe"}"#), 7.0);
        assert_eq!(server.metric(r#"bluetick_mqtt_refusals_total{reason="forbidden_publish"}"#), 1.0);
    }

    async fn last_will_outside_the_users_subtree_is_refused(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        let mut options = mqtt::options(server.mqtt, "alice", Some(("alice", &token)));
        options.set_last_will(rumqttc::LastWill::new("u/bob/presence", "offline", rumqttc::QoS::AtLeastOnce, false));
        assert_eq!(mqtt::connect_with(options).await.refusal(), ConnectReturnCode::NotAuthorized);
        let mut options = mqtt::options(server.mqtt, "alice", Some(("alice", &token)));
        options.set_last_will(rumqttc::LastWill::new("u/alice/presence", "offline", rumqttc::QoS::AtLeastOnce, false));
        mqtt::connect_with(options).await.expect_connected();
    }

    async fn sessions_table_follows_connects_and_lost_sockets(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        let store = server.store();
        let phone = mqtt::connect(server.mqtt, "alice.phone", Some(("alice", &token))).await.expect_connected();
        let laptop = mqtt::connect(server.mqtt, "alice.laptop", Some(("alice", &token))).await.expect_connected();
        assert!(eventually(TIMEOUT, || store.user_sessions("alice").unwrap().len() == 2).await);
        let clients: Vec<String> = store.user_sessions("alice").unwrap().into_iter().map(|s| s.client_id).collect();
        assert!(clients.contains(&"alice.phone".to_owned()) && clients.contains(&"alice.laptop".to_owned()));

        phone.disconnect().await;
        assert!(eventually(TIMEOUT, || store.user_sessions("alice").unwrap().len() == 1).await);
        // A socket dropped without DISCONNECT is noticed too.
        laptop.abort();
        assert!(eventually(TIMEOUT, || store.user_sessions("alice").unwrap().is_empty()).await);
        assert!(eventually(TIMEOUT, || server.metric("bluetick_mqtt_connected_clients") == 0.0).await);
        assert_eq!(server.metric("bluetick_mqtt_connects_total"), 2.0);
    }

    async fn malformed_packets_and_a_second_connect_close_only_that_connection(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        let mut alice = mqtt::connect(server.mqtt, "alice", Some(("alice", &token))).await.expect_connected();

        // Garbage instead of CONNECT: a reserved packet type, and a
        // PUBLISH before any CONNECT.
        for bytes in [&b"\xF0\x00garbage"[..], &b"\x30\x05\x00\x01ahi"[..]] {
            let mut garbage = tokio::net::TcpStream::connect(server.mqtt).await.unwrap();
            garbage.write_all(bytes).await.unwrap();
            assert!(read_until_closed(&mut garbage).await, "garbage {bytes:?} must be closed");
        }

        // A valid CONNECT followed by a second CONNECT.
        let mut twice = tokio::net::TcpStream::connect(server.mqtt).await.unwrap();
        twice.write_all(&mqtt::connect_packet("alice.twice", "alice", &token)).await.unwrap();
        let mut connack = [0u8; 4];
        twice.read_exact(&mut connack).await.unwrap();
        assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "first CONNECT accepted");
        twice.write_all(&mqtt::connect_packet("alice.twice", "alice", &token)).await.unwrap();
        assert!(read_until_closed(&mut twice).await, "a second CONNECT must close the connection");
        assert!(eventually(TIMEOUT, || server.metric(r#"bluetick_mqtt_refusals_total{reason="duplicate_connect"}"#) == 1.0).await);

        // Everyone else is unaffected.
        assert!(alice.is_alive("u/alice/inbox").await);
        mqtt::connect(server.mqtt, "alice.later", Some(("alice", &token))).await.expect_connected();
    }
}

/// Reads until the server closes the socket; false if it stays open.
async fn read_until_closed(socket: &mut tokio::net::TcpStream) -> bool {
    let mut buffer = [0u8; 256];
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}
