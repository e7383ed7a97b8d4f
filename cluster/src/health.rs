//! Whether this node reaches NATS, for `/readyz` and `/metrics`.
//!
//! Unreachable NATS does not make a node unready: it still serves its own
//! users, and events for devices on other nodes arrive by sync. `/readyz`
//! says so in its detail, and `bluetick_cluster_nats_connected` (0 or 1)
//! lets an operator alert on it.

use std::sync::atomic::{AtomicBool, Ordering};

/// The NATS connection's state, as its client reports it.
#[derive(Debug, Default)]
pub struct Health {
    /// `true` while the client holds a connection to a NATS server.
    connected: AtomicBool,
}

impl Health {
    /// Is NATS reachable right now?
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Follows the client's connection events.
    pub(crate) fn on_event(&self, event: &async_nats::Event) {
        match event {
            async_nats::Event::Connected => {
                tracing::info!("cluster: connected to NATS");
                self.set(true);
            }
            async_nats::Event::Disconnected | async_nats::Event::Closed => {
                metrics::counter!("bluetick_cluster_nats_disconnects_total").increment(1);
                tracing::warn!(
                    "cluster: NATS unreachable; serving local users, others catch up by sync"
                );
                self.set(false);
            }
            async_nats::Event::SlowConsumer(_) => {
                metrics::counter!("bluetick_cluster_events_dropped_total", "where" => "slow_consumer")
                    .increment(1);
            }
            // Every failed reconnect attempt is a client error: the
            // disconnect above already said NATS is away.
            async_nats::Event::ClientError(e) => {
                tracing::debug!(error = %e, "cluster: NATS client error")
            }
            other => tracing::info!(event = %other, "cluster: NATS event"),
        }
    }

    fn set(&self, connected: bool) {
        self.connected.store(connected, Ordering::SeqCst);
        metrics::gauge!("bluetick_cluster_nats_connected").set(if connected { 1.0 } else { 0.0 });
    }
}
