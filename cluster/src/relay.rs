//! The two directions of the relay: committed events out to NATS, and
//! other nodes' events into this node's broker.
//!
//! Both keep order: one task each way, so a user's events leave and arrive
//! in commit (seq) order. Neither ever makes the bridge wait (see the
//! crate's invariant).

use bytes::Bytes;
use protocol::topics;
use rumqttc::{AsyncClient, QoS};
use std::sync::Arc;
use tokio::sync::mpsc;

use crate::interest::Arrival;
use crate::{subjects, CommittedEvents, Health};

/// Publishes the local broker client may have queued before it waits.
pub(crate) const LOCAL_QUEUE: usize = 10_000;

/// Out: each committed batch's inbox events to `bt.inbox.{user}`, stamped
/// with this node's name. While NATS is unreachable they are dropped
/// (counted), not buffered: the devices elsewhere replay them by sync, and
/// a buffer would only replay them late and in a burst.
pub(crate) async fn publish(
    nats: async_nats::Client,
    node: String,
    health: Arc<Health>,
    mut committed: mpsc::Receiver<CommittedEvents>,
) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(subjects::ORIGIN_HEADER, node.as_str());
    while let Some(events) = committed.recv().await {
        if !health.connected() {
            metrics::counter!("bluetick_cluster_events_dropped_total", "where" => "nats_unreachable")
                .increment(events.len() as u64);
            continue;
        }
        for (user, event) in events {
            let payload = match serde_json::to_vec(&event) {
                Ok(payload) => Bytes::from(payload),
                Err(e) => {
                    tracing::error!(error = %e, "inbox event does not serialize");
                    continue;
                }
            };
            match nats
                .publish_with_headers(subjects::inbox(&user), headers.clone(), payload)
                .await
            {
                Ok(()) => {
                    metrics::counter!("bluetick_cluster_events_total", "way" => "out").increment(1)
                }
                Err(e) => {
                    metrics::counter!("bluetick_cluster_events_dropped_total", "where" => "outbound")
                        .increment(1);
                    tracing::debug!(error = %e, "cluster: publish failed; the device will sync");
                }
            }
        }
    }
}

/// In: other nodes' events into this node's broker on `u/{user}/inbox` at
/// QoS 1, where the guard and the broker treat them as local ones.
pub(crate) async fn republish(local: AsyncClient, mut arrivals: mpsc::Receiver<Arrival>) {
    while let Some(Arrival { user, payload }) = arrivals.recv().await {
        let topic = format!("{}{user}/inbox", topics::USER_PREFIX);
        match local
            .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
            .await
        {
            Ok(()) => {
                metrics::counter!("bluetick_cluster_events_total", "way" => "in").increment(1)
            }
            Err(e) => {
                metrics::counter!("bluetick_cluster_events_dropped_total", "where" => "local_broker")
                    .increment(1);
                tracing::warn!(error = %e, "cluster: cannot republish locally; the device will sync");
            }
        }
    }
}
