//! A real MQTT 3.1.1 client (rumqttc) with helpers that wait for what a
//! user would observe: CONNACK codes, SUBACK codes, messages, a closed
//! connection.

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, Publish, QoS,
    SubscribeReasonCode,
};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// What a CONNECT led to (for MQTT 5 too: [`super::mqtt5::Outcome`]).
pub enum Outcome<C = Client, R = ConnectReturnCode> {
    Connected(C),
    Refused(R),
    /// The server closed the socket without a CONNACK.
    Closed(String),
}

impl<C, R: std::fmt::Debug> Outcome<C, R> {
    pub fn expect_connected(self) -> C {
        match self {
            Outcome::Connected(client) => client,
            Outcome::Refused(code) => panic!("expected a connection, got CONNACK {code:?}"),
            Outcome::Closed(e) => panic!("expected a connection, got closed socket: {e}"),
        }
    }

    pub fn refusal(self) -> R {
        match self {
            Outcome::Connected(_) => panic!("expected a refusal, got a connection"),
            Outcome::Refused(code) => code,
            Outcome::Closed(e) => panic!("expected a CONNACK refusal, got closed socket: {e}"),
        }
    }
}

/// A connected client whose event loop runs in the background.
pub struct Client {
    pub client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Event, String>>,
    /// Messages that arrived while a helper waited for something else.
    pending: VecDeque<Publish>,
    driver: JoinHandle<()>,
}

pub fn options(
    addr: SocketAddr,
    client_id: &str,
    credentials: Option<(&str, &str)>,
) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_session(true);
    // rumqttc's default (10 KiB) is below the server's body limit.
    options.set_max_packet_size(1 << 20, 1 << 20);
    if let Some((user, password)) = credentials {
        options.set_credentials(user, password);
    }
    options
}

pub async fn connect(
    addr: SocketAddr,
    client_id: &str,
    credentials: Option<(&str, &str)>,
) -> Outcome {
    connect_with(options(addr, client_id, credentials)).await
}

pub async fn connect_with(options: MqttOptions) -> Outcome {
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
            match eventloop.poll().await {
                Ok(event) => {
                    if tx.send(Ok(event)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
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

/// Connects, retrying (as clients do) every 100 ms up to `attempts`
/// times; the client once one gets CONNACK 0.
pub async fn connect_retrying(
    addr: SocketAddr,
    client_id: &str,
    credentials: Option<(&str, &str)>,
    attempts: usize,
) -> Option<Client> {
    for _ in 0..attempts {
        if let Outcome::Connected(client) = connect(addr, client_id, credentials).await {
            return Some(client);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

impl Client {
    /// Subscribes and returns the SUBACK's return codes.
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

    /// Subscribes and asserts the subscription was granted.
    pub async fn subscribe_ok(&mut self, filter: &str) {
        let codes = self.subscribe(filter).await;
        assert!(
            matches!(codes.as_slice(), [SubscribeReasonCode::Success(_)]),
            "subscription to {filter} refused: {codes:?}"
        );
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .expect("queue PUBLISH");
    }

    /// Inbox events (as JSON) arriving until the client has been quiet
    /// for `quiet`; other messages are skipped.
    pub async fn inbox_events(&mut self, quiet: Duration) -> Vec<serde_json::Value> {
        let mut events = Vec::new();
        while let Some(p) = self.next_message(quiet).await {
            if p.topic.ends_with("/inbox") {
                events.push(serde_json::from_slice(&p.payload).expect("inbox events are JSON"));
            }
        }
        events
    }

    /// The next inbox event as JSON, skipping other messages; fails the
    /// test if none arrives within [`TIMEOUT`].
    pub async fn next_inbox_event(&mut self) -> serde_json::Value {
        loop {
            let message = self
                .next_message(TIMEOUT)
                .await
                .expect("an inbox event in time");
            if message.topic.ends_with("/inbox") {
                return serde_json::from_slice(&message.payload).expect("inbox events are JSON");
            }
        }
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

    /// Waits until the server closes the connection; true if it did.
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Some(Err(_)) => return true,
                Some(Ok(_)) => {}
                None => return false,
            }
        }
    }

    /// Whether the connection still serves requests: a SUBSCRIBE to
    /// `filter` gets its SUBACK.
    pub async fn is_alive(&mut self, filter: &str) -> bool {
        if self.driver.is_finished()
            || self
                .client
                .subscribe(filter, QoS::AtMostOnce)
                .await
                .is_err()
        {
            return false;
        }
        loop {
            match self.next_event(TIMEOUT).await {
                Some(Ok(Event::Incoming(Packet::SubAck(_)))) => return true,
                Some(Ok(Event::Incoming(Packet::Publish(p)))) => self.pending.push_back(p),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return false,
            }
        }
    }

    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.driver).await;
    }

    /// Drops the connection without DISCONNECT, as a lost socket would.
    pub fn abort(self) {
        self.driver.abort();
    }

    async fn next_event(&mut self, timeout: Duration) -> Option<Result<Event, String>> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()
            .flatten()
    }
}

/// An MQTT 3.1.1 CONNECT with clean session, user name and password, and a
/// 30 s keepalive.
pub fn connect_packet(client_id: &str, user: &str, password: &str) -> Vec<u8> {
    connect_packet_with_keepalive(client_id, user, password, 30)
}

/// An MQTT 3.1.1 CONNECT with clean session, user name, password and the
/// given keepalive in seconds.
pub fn connect_packet_with_keepalive(
    client_id: &str,
    user: &str,
    password: &str,
    keepalive: u16,
) -> Vec<u8> {
    let mut connect = rumqttc::Connect::new(client_id);
    connect.keep_alive = keepalive;
    connect.set_login(user, password);
    let mut packet = bytes::BytesMut::new();
    connect.write(&mut packet).expect("encode CONNECT");
    packet.to_vec()
}

/// Connects and cleanly disconnects `user`, so they have a last seen.
pub async fn visit(server: &super::Server, user: &str, token: &str) {
    let client = connect(server.mqtt, &format!("{user}.visit"), Some((user, token)))
        .await
        .expect_connected();
    let store = server.store();
    assert!(super::eventually(TIMEOUT, || store.is_online(user).unwrap()).await);
    client.disconnect().await;
    assert!(
        super::eventually(TIMEOUT, || !store.is_online(user).unwrap()
            && store.presence_of(user).unwrap().1.is_some())
        .await
    );
}
