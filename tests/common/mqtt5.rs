//! A real MQTT 5 client (rumqttc's `v5`) with the helpers of
//! [`super::mqtt`], which are written once for both versions: this module
//! names MQTT 5's rumqttc types ([`V5`]) and connects.

use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, Publish, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use std::net::SocketAddr;
use std::time::Duration;

use super::mqtt::impl_version;

/// MQTT 5.
pub struct V5;

impl_version!(V5: AsyncClient, EventLoop, Event, Packet, Publish, ConnectionError, ConnectReturnCode, SubscribeReasonCode, QoS);

/// A connected MQTT 5 client whose event loop runs in the background.
pub type Client = super::mqtt::Client<V5>;

/// What an MQTT 5 CONNECT led to.
pub type Outcome = super::mqtt::Outcome<Client, ConnectReturnCode>;

/// Connects with clean start, a 30 s keepalive and the given login.
pub async fn connect(
    addr: SocketAddr,
    client_id: &str,
    credentials: Option<(&str, &str)>,
) -> Outcome {
    let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_start(true);
    if let Some((user, password)) = credentials {
        options.set_credentials(user, password);
    }
    let (client, eventloop) = AsyncClient::new(options, 1000);
    super::mqtt::start(client, eventloop).await
}
