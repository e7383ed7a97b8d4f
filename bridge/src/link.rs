//! How the bridge reaches the broker, behind one small interface: what it
//! receives ([`Delivery`]) and what it sends ([`Outbox`]).
//!
//! - **In process** ([`Endpoint::Local`]), the embedded broker's default:
//!   the bridge is a local link of rumqttd's router. No loopback socket, no
//!   MQTT codec, no rumqttc, and no guard check per packet for the bridge's
//!   own traffic (the guard still admits every client). The bridge
//!   subscribes at QoS 0: the router lives and dies with the bridge, so a
//!   PUBACK would protect nothing a client's resend does not (the ✓ is the
//!   ack inbox event, sent after the commit), and nothing is in flight, so
//!   rumqttd's limit of 100 unacknowledged deliveries never applies. The
//!   router stops forwarding while the link's buffer is full and the bridge
//!   stops reading while its queue is full: back-pressure, never a drop
//!   between router and bridge. The router never waits on a link, so the
//!   bridge's publishes (which wait for room in the router's channel) and
//!   its deliveries cannot wait on each other.
//! - **As an MQTT client** ([`Endpoint::Mqtt`]) of an external broker (or
//!   of the embedded one, `bridge.in_process = false`): rumqttc over TCP,
//!   QoS 1 subscriptions with manual PUBACKs ([`crate::AckPolicy`]).

use bytes::Bytes;
use rumqttc::{AsyncClient, QoS};
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::{Packet, Publish};

/// Where the bridge's broker is.
pub enum Endpoint {
    /// The embedded broker's router, in this process: the two halves of a
    /// local link (see `broker::Broker::local_link`).
    Local { tx: LinkTx, rx: LinkRx },
    /// A broker reached over MQTT.
    Mqtt(MqttEndpoint),
}

/// An MQTT broker and the bridge's service identity on it.
#[derive(Debug, Clone)]
pub struct MqttEndpoint {
    pub host: String,
    pub port: u16,
    /// Credentials of the bridge's service identity.
    pub username: String,
    pub password: String,
    /// MQTT client id; unique per bridge.
    pub client_id: String,
}

/// A publish the broker delivered to the bridge.
pub(crate) struct Delivery {
    pub topic: String,
    pub payload: Bytes,
    /// The MQTT publish whose PUBACK the bridge owes; `None` in process and
    /// for QoS 0.
    pub owed: Option<rumqttc::Publish>,
}

impl Delivery {
    pub fn from_mqtt(publish: rumqttc::Publish) -> Delivery {
        Delivery {
            topic: publish.topic.clone(),
            payload: publish.payload.clone(),
            owed: (publish.qos != QoS::AtMostOnce).then_some(publish),
        }
    }

    /// A delivery from the router; `None` if its topic is not UTF-8 (the
    /// guard admits no such topic, so this is only defensive).
    pub fn from_local(publish: Publish) -> Option<Delivery> {
        let topic = String::from_utf8(publish.topic.to_vec()).ok()?;
        Some(Delivery {
            topic,
            payload: publish.payload,
            owed: None,
        })
    }
}

/// What the bridge sends to the broker: inbox events and presence (QoS 1),
/// typing (QoS 0), and PUBACKs for the MQTT endpoint.
#[derive(Clone)]
pub(crate) enum Outbox {
    Local(LinkTx),
    Mqtt(AsyncClient),
}

impl Outbox {
    /// Publishes at QoS 1, in order; waits for room.
    pub async fn publish(&self, topic: String, payload: Vec<u8>, retain: bool) {
        match self {
            Outbox::Local(tx) => {
                let publish = Publish::at_least_once(topic, payload, retain);
                if let Err(e) = tx.clone().send_all([Packet::Publish(publish, None)]).await {
                    tracing::warn!(error = %e, "bridge could not hand a publish to the router");
                }
            }
            Outbox::Mqtt(client) => {
                if let Err(e) = client.publish(topic, QoS::AtLeastOnce, retain, payload).await {
                    tracing::warn!(error = %e, "bridge could not queue a publish; the client will sync");
                }
            }
        }
    }

    /// Publishes many messages at QoS 1, in order: in process with one
    /// wakeup of the router for all of them.
    pub async fn publish_all(&self, messages: Vec<(String, Vec<u8>)>) {
        match self {
            Outbox::Local(tx) => {
                let packets = messages.into_iter().map(|(topic, payload)| {
                    Packet::Publish(Publish::at_least_once(topic, payload, false), None)
                });
                if let Err(e) = tx.clone().send_all(packets).await {
                    tracing::warn!(error = %e, "bridge could not hand publishes to the router");
                }
            }
            Outbox::Mqtt(_) => {
                for (topic, payload) in messages {
                    self.publish(topic, payload, false).await;
                }
            }
        }
    }

    /// Publishes at QoS 0 without waiting; false if there is no room now.
    pub fn try_publish_fleeting(&self, topic: String, payload: Vec<u8>) -> bool {
        match self {
            Outbox::Local(tx) => tx.clone().try_publish(topic, payload).is_ok(),
            Outbox::Mqtt(client) => client
                .try_publish(topic, QoS::AtMostOnce, false, payload)
                .is_ok(),
        }
    }

    /// Acknowledges a delivery to the broker, if a PUBACK is owed.
    pub async fn ack(&self, delivery: &Delivery) {
        if let (Outbox::Mqtt(client), Some(publish)) = (self, &delivery.owed) {
            if let Err(e) = client.ack(publish).await {
                tracing::warn!(error = %e, "bridge could not queue a PUBACK");
            }
        }
    }
}
