//! The vendored router's takeover, driven directly through rumqttd's local
//! links (third_party/rumqttd/PATCHES.md, "Reconnect race").
//!
//! When a client reconnects with the same client id, the router replaces
//! the old link and the new one usually takes the old one's connection id
//! (a reused slab slot). If the old link's task notices its closed socket
//! only afterwards, its "link ended" event carried just that id, and the
//! router dropped the *new* link, often before its CONNACK went out.
//! Over real sockets the window is narrow and timing-dependent
//! (tests/hardening_mqtt.rs replays it many times); here it is forced.

use rumqttd::local::{LinkBuilder, LinkRx, LinkTx};
use rumqttd::{Notification, Router, RouterConfig};
use std::time::{Duration, Instant};

/// A started router with explicit, small settings.
fn router() -> Router {
    Router::new(
        0,
        RouterConfig {
            max_connections: 16,
            max_outgoing_packet_count: 100,
            max_segment_size: 64 * 1024,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
    )
}

/// Subscribes, publishes to the same topic and waits for the message to
/// come back: true if the link still works.
fn round_trip(tx: &mut LinkTx, rx: &mut LinkRx) -> bool {
    if tx.subscribe("probe").is_err() || tx.publish("probe", "hello").is_err() {
        return false;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rx.recv_deadline(deadline) {
            Ok(Some(Notification::Forward(forward))) => return forward.publish.payload == "hello",
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

#[test]
fn the_end_of_a_replaced_link_never_drops_the_link_that_replaced_it() {
    let router_tx = router().spawn();
    let link = || {
        LinkBuilder::new("alice.phone", router_tx.clone())
            .dynamic_filters(true)
            .build()
            .expect("the router accepts the link")
    };
    let (_old_tx, old_rx, _) = link();
    // The same client id again: the router replaces the old link, and the
    // new one takes the freed slot.
    let (mut new_tx, mut new_rx, _) = link();
    assert_eq!(
        new_rx.id(),
        old_rx.id(),
        "the slot is reused (else this test proves nothing)"
    );
    // Only now does the old link's task report that its socket closed.
    router_tx
        .send((old_rx.id(), old_rx.closed_event()))
        .expect("the router runs");
    assert!(
        round_trip(&mut new_tx, &mut new_rx),
        "the new link survived the old one's end"
    );

    // The new link's own end still disconnects it.
    router_tx
        .send((new_rx.id(), new_rx.closed_event()))
        .expect("the router runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    while new_rx.recv_deadline(deadline).is_ok() {}
    assert!(Instant::now() < deadline, "its own end closes the link");
}
