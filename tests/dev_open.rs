//! `--dev-open`: anonymous clients for conformance tools, still protected
//! from the client ids that would wedge rumqttd.

mod common;

use common::mqtt::{self, Outcome, TIMEOUT};
use common::{Backend, Options, Server};
use store::on_both_backends;

fn dev_open_server(backend: Backend) -> Server {
    Server::start_with(backend, Options::default().arg("--dev-open"))
}

on_both_backends! {
    async fn dev_open_accepts_anonymous_clients_on_any_topic(backend) {
        let server = dev_open_server(backend);
        assert!(server.log().contains("DEV-OPEN MODE"), "dev-open must warn loudly");
        let mut listener = mqtt::connect(server.mqtt, "conformance-1", None).await.expect_connected();
        listener.subscribe_ok("any/topic/#").await;
        let talker = mqtt::connect(server.mqtt, "conformance-2", None).await.expect_connected();
        talker.publish("any/topic/here", "hi").await;
        assert_eq!(&listener.next_message(TIMEOUT).await.expect("message").payload[..], b"hi");
    }

    /// DESIGN.md "Lockup bug", with the ACL off: the guard alone keeps a
    /// client id with `/` away from the router, however often it retries.
    async fn dev_open_still_refuses_client_ids_that_would_lock_up_the_broker(backend) {
        let server = dev_open_server(backend);
        for id in ["a/b", "a/b", "x+y", "x+y"] {
            assert!(matches!(mqtt::connect(server.mqtt, id, None).await, Outcome::Refused(_)), "{id}");
        }
        let mut fresh = mqtt::connect(server.mqtt, "fresh", None).await.expect_connected();
        assert!(fresh.is_alive("fresh/x").await);
    }
}
