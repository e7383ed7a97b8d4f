//! A real MQTT 5 client (rumqttc's `v5`) with helpers that wait for what a
//! user would observe, as [`super::mqtt`] does for MQTT 3.1.1.

use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, Publish, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use super::mqtt::TIMEOUT;

/// What an MQTT 5 CONNECT led to.
pub type Outcome = super::mqtt::Outcome<Client, ConnectReturnCode>;

/// A connected MQTT 5 client whose event loop runs in the background.
pub struct Client {
    pub client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Event, String>>,
    /// Messages that arrived while a helper waited for something else.
    pending: VecDeque<Publish>,
    driver: JoinHandle<()>,
}

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
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    let connack = tokio::time::timeout(TIMEOUT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => continue,
                Err(ConnectionError::ConnectionRefused(code)) => {
                    return Err(Outcome::Refused(code))
                }
                Err(e) => return Err(Outcome::Closed(e.to_string())),
            }
        }
    })
    .await
    .expect("CONNACK or close within the timeout");
    if let Err(outcome) = connack {
        return outcome;
    }
    let (tx, events) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            let event = eventloop.poll().await.map_err(|e| e.to_string());
            let closed = event.is_err();
            if tx.send(event).is_err() || closed {
                return;
            }
        }
    });
    Outcome::Connected(Client {
        client,
        events,
        pending: VecDeque::new(),
        driver,
    })
}

impl Client {
    /// Subscribes and returns the SUBACK's reason codes.
    pub async fn subscribe(&mut self, filter: &str) -> Vec<SubscribeReasonCode> {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queue SUBSCRIBE");
        loop {
            match self.next_event(TIMEOUT).await {
                Some(Ok(Event::Incoming(Packet::SubAck(ack)))) => return ack.return_codes,
                Some(Ok(Event::Incoming(Packet::Publish(p)))) => self.pending.push_back(p),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("connection closed while subscribing to {filter}: {e}"),
                None => panic!("no SUBACK for {filter}"),
            }
        }
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .expect("queue PUBLISH");
    }

    /// The next message, if one arrives within `timeout`.
    pub async fn next_message(&mut self, timeout: Duration) -> Option<Publish> {
        if let Some(p) = self.pending.pop_front() {
            return Some(p);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Some(Ok(Event::Incoming(Packet::Publish(p)))) => return Some(p),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// The next inbox event as JSON, skipping other messages, as
    /// [`super::mqtt::Client::next_inbox_event`].
    pub async fn next_inbox_event(&mut self) -> serde_json::Value {
        loop {
            let message = self
                .next_message(TIMEOUT)
                .await
                .expect("an inbox event in time");
            if message.topic.ends_with(b"/inbox") {
                return serde_json::from_slice(&message.payload).expect("inbox event is JSON");
            }
        }
    }

    /// Waits until the server closes the connection; true if it did.
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Some(Err(_)) => return true,
                Some(Ok(_)) => {}
                None => return self.driver.is_finished(),
            }
        }
    }

    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.driver).await;
    }

    async fn next_event(&mut self, timeout: Duration) -> Option<Result<Event, String>> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()
            .flatten()
    }
}
