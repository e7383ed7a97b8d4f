//! Issue 14: MQTT 5 clients connect through the same guard as MQTT 3.1.1
//! ones: token login, the per-user ACL (SUBACK 0x87), the connection cap,
//! and the chat topics.

mod common;

use common::mqtt5::{self, TIMEOUT};
use common::{Backend, Options, Server};
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, SubscribeReasonCode};

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
        let ack = alice.next_inbox_event("u/alice/inbox").await;
        assert_eq!((ack["type"].as_str(), ack["client_id"].as_str()), (Some("ack"), Some("v5-1")), "{ack}");
        let message = bob.next_inbox_event("u/bob/inbox").await;
        assert_eq!((message["type"].as_str(), message["body"].as_str()), (Some("message"), Some("hello over v5")), "{message}");

        // Bob stores it and acks his inbox: Alice sees two ticks.
        let seq = message["seq"].as_i64().expect("a seq");
        bob.publish("u/bob/ack", format!(r#"{{"up_to":{seq},"device":"v5"}}"#)).await;
        let receipt = alice.next_inbox_event("u/alice/inbox").await;
        assert_eq!((receipt["type"].as_str(), receipt["status"].as_str()), (Some("receipt"), Some("delivered")), "{receipt}");
        assert_eq!(receipt["up_to"], message["id"], "{receipt}");
    }
}

#[tokio::test]
async fn an_mqtt5_client_gets_mqtt5_connack_codes_for_bad_logins_and_the_cap() {
    let server = Server::start_with(Backend::Sqlite, Options::default().env("BLUETICK_MQTT__MAX_CONNECTIONS", "1"));
    let token = server.register("alice");
    let wrong = mqtt5::connect(server.mqtt, "alice.v5", Some(("alice", "bt_not_a_token"))).await;
    assert_eq!(wrong.refusal(), ConnectReturnCode::BadUserNamePassword);
    let bad_id = mqtt5::connect(server.mqtt, "bob/x", Some(("alice", &token))).await;
    assert_eq!(bad_id.refusal(), ConnectReturnCode::ClientIdentifierNotValid);
    let anonymous = mqtt5::connect(server.mqtt, "alice", None).await;
    assert_eq!(anonymous.refusal(), ConnectReturnCode::BadUserNamePassword);

    let first = mqtt5::connect(server.mqtt, "alice.one", Some(("alice", &token))).await.expect_connected();
    let over = mqtt5::connect(server.mqtt, "alice.two", Some(("alice", &token))).await;
    assert_eq!(over.refusal(), ConnectReturnCode::ServerBusy);
    assert_eq!(server.metric(r#"bluetick_mqtt_refusals_total{reason="over_capacity"}"#), 1.0);
    first.disconnect().await;
}

#[tokio::test]
async fn an_mqtt5_client_publishing_outside_its_subtree_is_disconnected() {
    let server = Server::start(Backend::Sqlite);
    let token = server.register("alice");
    server.register("bob");
    let mut alice = mqtt5::connect(server.mqtt, "alice.v5", Some(("alice", &token))).await.expect_connected();
    alice.publish("u/bob/send", r#"{"id":"x","to":"alice","body":"forged"}"#).await;
    assert!(alice.closed_within(TIMEOUT).await, "a forbidden publish closes the connection");
    assert_eq!(server.metric(r#"bluetick_mqtt_refusals_total{reason="forbidden_publish"}"#), 1.0);
}
