//! Issue 14: MQTT 5 clients connect through the same guard as MQTT 3.1.1
//! ones: token login, the per-user ACL (SUBACK 0x87), the connection cap,
//! and the chat topics.

mod common;

use common::mqtt::TIMEOUT;
use common::mqtt5;
use common::{Backend, Options, Server};
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, SubscribeReasonCode};
use store::on_both_backends;

on_both_backends! {
    async fn an_mqtt5_client_is_refused_a_forbidden_filter_with_0x87_and_chats(backend) {
        let server = Server::start(backend);
        let (alice_token, bob_token) = (server.register("alice"), server.register("bob"));
        let mut alice = mqtt5::connect(server.mqtt, "alice.v5", Some(("alice", &alice_token))).await.expect_connected();
        let mut bob = mqtt5::connect(server.mqtt, "bob.v5", Some(("bob", &bob_token))).await.expect_connected();

        for forbidden in ["u/bob/inbox", "#", "$share/g/u/bob/inbox"] {
            assert_eq!(alice.subscribe(forbidden).await, [SubscribeReasonCode::NotAuthorized], "{forbidden}");
        }
        assert!(matches!(alice.subscribe("u/alice/inbox").await.as_slice(), [SubscribeReasonCode::Success(_)]));
        assert!(matches!(bob.subscribe("u/bob/inbox").await.as_slice(), [SubscribeReasonCode::Success(_)]));
        assert_eq!(server.metric(r#"bluetick_mqtt_refusals_total{reason="forbidden_subscribe"}"#), 3.0);

        alice.publish("u/alice/send", r#"{"id":"v5-1","to":"bob","body":"hello over v5"}"#).await;
        let ack = alice.next_inbox_event().await;
        assert_eq!((ack["type"].as_str(), ack["client_id"].as_str()), (Some("ack"), Some("v5-1")), "{ack}");
        let message = bob.next_inbox_event().await;
        assert_eq!((message["type"].as_str(), message["body"].as_str()), (Some("message"), Some("hello over v5")), "{message}");

        // Bob stores it and acks his inbox: Alice sees two ticks.
        let seq = message["seq"].as_i64().expect("a seq");
        bob.publish("u/bob/ack", format!(r#"{{"up_to":{seq},"device":"v5"}}"#)).await;
        let receipt = alice.next_inbox_event().await;
        assert_eq!((receipt["type"].as_str(), receipt["status"].as_str()), (Some("receipt"), Some("delivered")), "{receipt}");
        assert_eq!(receipt["up_to"], message["id"], "{receipt}");
    }
}

#[tokio::test]
async fn an_mqtt5_client_gets_mqtt5_connack_codes_for_bad_logins_and_the_cap() {
    let server = Server::start_with(
        Backend::Sqlite,
        Options::default().env("BLUETICK_MQTT__MAX_CONNECTIONS", "1"),
    );
    let token = server.register("alice");
    let wrong = mqtt5::connect(server.mqtt, "alice.v5", Some(("alice", "bt_not_a_token"))).await;
    assert_eq!(wrong.refusal(), ConnectReturnCode::BadUserNamePassword);
    let bad_id = mqtt5::connect(server.mqtt, "bob/x", Some(("alice", &token))).await;
    assert_eq!(
        bad_id.refusal(),
        ConnectReturnCode::ClientIdentifierNotValid
    );
    let anonymous = mqtt5::connect(server.mqtt, "alice", None).await;
    assert_eq!(anonymous.refusal(), ConnectReturnCode::BadUserNamePassword);

    let first = mqtt5::connect(server.mqtt, "alice.one", Some(("alice", &token)))
        .await
        .expect_connected();
    let over = mqtt5::connect(server.mqtt, "alice.two", Some(("alice", &token))).await;
    assert_eq!(over.refusal(), ConnectReturnCode::ServerBusy);
    assert_eq!(
        server.metric(r#"bluetick_mqtt_refusals_total{reason="over_capacity"}"#),
        1.0
    );
    first.disconnect().await;
}

#[tokio::test]
async fn an_mqtt5_client_publishing_outside_its_subtree_is_disconnected() {
    let server = Server::start(Backend::Sqlite);
    let token = server.register("alice");
    server.register("bob");
    let mut alice = mqtt5::connect(server.mqtt, "alice.v5", Some(("alice", &token)))
        .await
        .expect_connected();
    alice
        .publish("u/bob/send", r#"{"id":"x","to":"alice","body":"forged"}"#)
        .await;
    assert!(
        alice.closed_within(TIMEOUT).await,
        "a forbidden publish closes the connection"
    );
    assert_eq!(
        server.metric(r#"bluetick_mqtt_refusals_total{reason="forbidden_publish"}"#),
        1.0
    );
}

/// An MQTT 5 CONNECT with clean start, keep-alive 60, no properties, and
/// a user name and password.
fn raw_connect(client_id: &str, user: &str, password: &str) -> Vec<u8> {
    let mut body = b"\x00\x04MQTT\x05\xc2\x00\x3c\x00".to_vec();
    for field in [client_id, user, password] {
        body.extend_from_slice(&(field.len() as u16).to_be_bytes());
        body.extend_from_slice(field.as_bytes());
    }
    framed(0x10, &body)
}

/// A packet: its first byte, the remaining length, `body`.
fn framed(first: u8, body: &[u8]) -> Vec<u8> {
    let mut packet = vec![first];
    let mut length = body.len();
    loop {
        let byte = (length % 128) as u8;
        length /= 128;
        packet.push(if length > 0 { byte | 0x80 } else { byte });
        if length == 0 {
            break;
        }
    }
    packet.extend_from_slice(body);
    packet
}

/// Logs in over a raw socket, checks the CONNACK, sends `packet`, and
/// returns whether the server then closed the socket.
async fn closes_after(server: &Server, token: &str, device: &str, packet: &[u8]) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(server.mqtt)
        .await
        .expect("connect");
    socket
        .write_all(&raw_connect(&format!("alice.{device}"), "alice", token))
        .await
        .unwrap();
    let mut connack = [0u8; 5];
    tokio::time::timeout(TIMEOUT, socket.read_exact(&mut connack))
        .await
        .expect("CONNACK in time")
        .unwrap();
    // Reason code 0 and an empty property list: no topic alias allowed.
    assert_eq!(connack, [0x20, 0x03, 0x00, 0x00, 0x00]);
    socket.write_all(packet).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, socket.read_to_end(&mut rest)).await;
    matches!(read, Ok(Ok(0)) | Ok(Err(_)))
}

#[tokio::test]
async fn an_mqtt5_client_sending_a_topic_alias_or_a_server_packet_is_closed_and_others_still_connect(
) {
    let server = Server::start(Backend::Sqlite);
    let token = server.register("alice");
    // PUBLISH QoS 0 to u/alice/typing with property 0x23 (topic alias) = 1.
    let mut aliased = b"\x00\x0eu/alice/typing\x03\x23\x00\x01".to_vec();
    aliased.extend_from_slice(b"{}");
    assert!(
        closes_after(&server, &token, "alias", &framed(0x30, &aliased)).await,
        "a topic alias closes"
    );
    // A CONNACK with a body (only a server sends one); rumqttd's v5 reader
    // would panic on it.
    assert!(
        closes_after(&server, &token, "connack", &[0x20, 0x03, 0x00, 0x00, 0x00]).await,
        "a CONNACK closes"
    );
    assert_eq!(
        server.metric(r#"bluetick_mqtt_refusals_total{reason="malformed"}"#),
        2.0
    );
    assert!(
        !server.log().contains("panicked"),
        "no connection task panicked"
    );
    mqtt5::connect(server.mqtt, "alice.after", Some(("alice", &token)))
        .await
        .expect_connected()
        .disconnect()
        .await;
}

#[tokio::test]
async fn an_mqtt5_watcher_gets_hidden_presence_when_privacy_says_so() {
    let server = Server::start(Backend::Sqlite);
    let (alice_token, bob_token) = (server.register("alice"), server.register("bob"));
    let privacy = common::http::request(
        server.http,
        "PUT",
        "/v1/me/privacy",
        Some(r#"{"last_seen":"nobody"}"#),
        Some(&alice_token),
    );
    assert_eq!(privacy.status, 200, "{}", privacy.body);
    common::mqtt::visit(&server, "alice", &alice_token).await;
    let mut bob = mqtt5::connect(server.mqtt, "bob.v5", Some(("bob", &bob_token)))
        .await
        .expect_connected();
    assert!(matches!(
        bob.subscribe("presence/alice").await.as_slice(),
        [SubscribeReasonCode::Success(_)]
    ));
    let retained = bob
        .next_message(TIMEOUT)
        .await
        .expect("the retained presence");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&retained.payload).unwrap(),
        serde_json::json!({"hidden": true})
    );
}
