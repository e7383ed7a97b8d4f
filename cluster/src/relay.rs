//! The two directions of the relay: what this node publishes out to NATS,
//! and what other nodes sent into this node's broker.
//!
//! Both keep order: one task per kind each way out, one task in, so a
//! user's inbox events leave and arrive in commit (seq) order. Neither
//! ever makes the bridge wait (see the crate's invariant).

use bytes::Bytes;
use protocol::topics;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use crate::interest::{Arrival, Interest};
use crate::subjects::{self, Leaf};
use crate::{CommittedEvents, Health, LocalBroker, Revoke};

/// Publishes the local broker client may have queued before it waits.
pub(crate) const LOCAL_QUEUE: usize = 10_000;

/// Longest a takeover waits for the local broker.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes to the bus, stamped with this node's name. While NATS is
/// unreachable nothing is buffered: what is lost is recovered by sync (and
/// a buffer would only deliver it late, in a burst).
pub(crate) struct Outbound {
    pub nats: async_nats::Client,
    pub health: Arc<Health>,
    pub headers: async_nats::HeaderMap,
}

impl Outbound {
    pub fn new(nats: async_nats::Client, node: &str, health: Arc<Health>) -> Outbound {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(subjects::ORIGIN_HEADER, node);
        Outbound {
            nats,
            health,
            headers,
        }
    }

    async fn send(&self, user: &str, leaf: Leaf, payload: Bytes) {
        if !self.health.connected() {
            metrics::counter!("bluetick_cluster_events_dropped_total", "where" => "nats_unreachable")
                .increment(1);
            return;
        }
        let subject = subjects::user(user, leaf);
        let published = self
            .nats
            .publish_with_headers(subject, self.headers.clone(), payload)
            .await;
        if let Err(e) = counted(published, "out", "outbound") {
            tracing::debug!(error = %e, "cluster: publish failed; the device will sync");
        }
    }

    /// Out: each committed batch's inbox events to `bt.u.{user}.inbox`.
    pub async fn committed(self: Arc<Self>, mut batches: mpsc::Receiver<CommittedEvents>) {
        while let Some(events) = batches.recv().await {
            for (user, event) in events {
                match serde_json::to_vec(&event) {
                    Ok(payload) => self.send(&user, Leaf::Inbox, Bytes::from(payload)).await,
                    Err(e) => tracing::error!(error = %e, "inbox event does not serialize"),
                }
            }
        }
    }

    /// Out: (user, payload) pairs to `bt.u.{user}.{leaf}` (typing, takeovers).
    pub async fn forward(
        self: Arc<Self>,
        leaf: Leaf,
        mut items: mpsc::Receiver<(String, Vec<u8>)>,
    ) {
        while let Some((user, payload)) = items.recv().await {
            self.send(&user, leaf, Bytes::from(payload)).await;
        }
    }
}

/// In: other nodes' events into this node's broker, where the guard and
/// the broker treat them as local ones: inbox events on `u/{user}/inbox`
/// at QoS 1, typing on `u/{user}/live` at QoS 0; a takeover closes this
/// node's connection with that client id, if it holds one; a logout
/// revokes the token here and closes the connections that used it.
pub(crate) async fn republish(
    local: AsyncClient,
    broker: LocalBroker,
    interest: Arc<Interest>,
    revoke: Revoke,
    mut arrivals: mpsc::Receiver<Arrival>,
) {
    while let Some(Arrival {
        user,
        leaf,
        payload,
    }) = arrivals.recv().await
    {
        let published = match leaf {
            Leaf::Inbox => {
                let topic = format!("{}{user}/inbox", topics::USER_PREFIX);
                local
                    .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
                    .await
            }
            Leaf::Live => {
                let topic = format!("{}{user}/live", topics::USER_PREFIX);
                local.try_publish(topic, QoS::AtMostOnce, false, payload.to_vec())
            }
            Leaf::Takeover => {
                let client_id = String::from_utf8_lossy(&payload).into_owned();
                if interest.holds(&user, &client_id) {
                    tokio::spawn(take_over(broker.clone(), client_id));
                }
                continue;
            }
            Leaf::Logout => {
                let token_hash = String::from_utf8_lossy(&payload).into_owned();
                close_token(&broker, &interest, &revoke, &user, token_hash);
                continue;
            }
        };
        if let Err(e) = counted(published, "in", "local_broker") {
            tracing::warn!(error = %e, "cluster: cannot republish locally; the device will sync");
        }
    }
}

/// Counts a relayed event (`way`: `out` or `in`), or its drop and where;
/// hands the result back for the caller to log.
fn counted<E>(result: Result<(), E>, way: &'static str, dropped_at: &'static str) -> Result<(), E> {
    match &result {
        Ok(()) => metrics::counter!("bluetick_cluster_events_total", "way" => way).increment(1),
        Err(_) => metrics::counter!("bluetick_cluster_events_dropped_total", "where" => dropped_at)
            .increment(1),
    }
    result
}

/// Revokes a logged-out token on this node and closes the connections of
/// `user` that used it at once (the guard alone would close each only at
/// its next packet).
pub(crate) fn close_token(
    broker: &LocalBroker,
    interest: &Interest,
    revoke: &Revoke,
    user: &str,
    token_hash: String,
) {
    for client_id in interest.using_token(user, &token_hash) {
        tokio::spawn(take_over(broker.clone(), client_id));
    }
    revoke(token_hash);
}

/// Closes this node's connection with `client_id` the way MQTT does: by
/// connecting with the same client id (rumqttd drops the older
/// connection), as the service identity, then leaving at once.
async fn take_over(broker: LocalBroker, client_id: String) {
    let mut options = MqttOptions::new(&client_id, &broker.host, broker.port);
    options
        .set_credentials(&broker.username, &broker.password)
        .set_keep_alive(Duration::from_secs(5))
        .set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let done = tokio::time::timeout(TAKEOVER_TIMEOUT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    // The queue has room: nothing else was ever queued.
                    let _ = client.try_disconnect();
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await;
    if matches!(done, Ok(true)) {
        metrics::counter!("bluetick_cluster_takeovers_total").increment(1);
        tracing::info!(
            client_id,
            "cluster: client id connected on another node; closed here"
        );
    } else {
        tracing::warn!(
            client_id,
            "cluster: could not close a connection taken over elsewhere"
        );
    }
}
