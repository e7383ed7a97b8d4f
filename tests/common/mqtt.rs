//! A real MQTT 3.1.1 client (rumqttc) with helpers that wait for what a
//! user would observe: CONNACK codes, SUBACK codes, messages, a closed
//! connection.
//!
//! The machinery is written once for both MQTT versions: [`Client`] is
//! generic over a [`Version`] (3.1.1 here, [`super::mqtt5::V5`] for MQTT 5),
//! which says how to poll that version's event loop and what its events
//! are. Only the calls whose rumqttc signatures differ (subscribe, publish,
//! disconnect) are written per version.

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet,
    Publish, QoS, SubscribeReasonCode,
};
use std::collections::VecDeque;
use std::future::Future;
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

/// What an event meant to the helpers.
pub enum Seen<P, G> {
    ConnAck,
    Publish(P),
    /// A SUBACK's codes, one per filter.
    SubAck(Vec<G>),
    Other,
}

/// How a poll of the event loop failed.
pub enum PollError<R> {
    /// A CONNACK that refused the connection.
    Refused(R),
    /// Any other end of the connection.
    Closed(String),
}

/// One MQTT version's rumqttc API, as far as the shared helpers need it.
pub trait Version: Sized + 'static {
    type Client;
    type EventLoop: Send + 'static;
    type Event: Send + 'static;
    type Publish: Send + 'static;
    /// A refusing CONNACK's code.
    type Refusal;
    /// A SUBACK's code for one filter.
    type Granted;

    /// The event loop's next event.
    fn poll(
        events: &mut Self::EventLoop,
    ) -> impl Future<Output = Result<Self::Event, PollError<Self::Refusal>>> + Send;
    fn sort(event: Self::Event) -> Seen<Self::Publish, Self::Granted>;
    fn topic(publish: &Self::Publish) -> &[u8];
    fn payload(publish: &Self::Publish) -> &[u8];
    /// Queues a SUBSCRIBE at QoS 1 (or 0); false if the client is gone.
    fn subscribe(
        client: &Self::Client,
        filter: &str,
        qos1: bool,
    ) -> impl Future<Output = bool> + Send;
    /// Queues a QoS 1 PUBLISH.
    fn publish(
        client: &Self::Client,
        topic: &str,
        payload: Vec<u8>,
    ) -> impl Future<Output = ()> + Send;
    /// Queues a DISCONNECT, if the client is still there.
    fn disconnect(client: &Self::Client) -> impl Future<Output = ()> + Send;
}

/// Implements [`Version`] for one rumqttc API. Both versions spell their
/// event loop, events and packets alike, as different types in different
/// modules; the names given must be in scope where this is used.
macro_rules! impl_version {
    ($version:ty: $client:ty, $eventloop:ty, $event:ident, $packet:ident, $publish:ty, $error:ident, $refusal:ty, $granted:ty, $qos:ident) => {
        impl super::mqtt::Version for $version {
            type Client = $client;
            type EventLoop = $eventloop;
            type Event = $event;
            type Publish = $publish;
            type Refusal = $refusal;
            type Granted = $granted;

            async fn poll(
                events: &mut $eventloop,
            ) -> Result<$event, super::mqtt::PollError<$refusal>> {
                events.poll().await.map_err(|e| match e {
                    $error::ConnectionRefused(code) => super::mqtt::PollError::Refused(code),
                    e => super::mqtt::PollError::Closed(e.to_string()),
                })
            }

            fn sort(event: $event) -> super::mqtt::Seen<$publish, $granted> {
                use super::mqtt::Seen;
                match event {
                    $event::Incoming($packet::ConnAck(_)) => Seen::ConnAck,
                    $event::Incoming($packet::Publish(p)) => Seen::Publish(p),
                    $event::Incoming($packet::SubAck(ack)) => Seen::SubAck(ack.return_codes),
                    _ => Seen::Other,
                }
            }

            fn topic(publish: &$publish) -> &[u8] {
                publish.topic.as_ref()
            }

            fn payload(publish: &$publish) -> &[u8] {
                &publish.payload
            }

            async fn subscribe(client: &$client, filter: &str, qos1: bool) -> bool {
                let qos = if qos1 {
                    $qos::AtLeastOnce
                } else {
                    $qos::AtMostOnce
                };
                client.subscribe(filter, qos).await.is_ok()
            }

            async fn publish(client: &$client, topic: &str, payload: Vec<u8>) {
                client
                    .publish(topic, $qos::AtLeastOnce, false, payload)
                    .await
                    .expect("queue PUBLISH");
            }

            async fn disconnect(client: &$client) {
                // The client may be gone already: nothing to tell the server.
                let _ = client.disconnect().await;
            }
        }
    };
}
pub(super) use impl_version;

/// MQTT 3.1.1.
pub struct V311;

impl_version!(V311: AsyncClient, EventLoop, Event, Packet, Publish, ConnectionError, ConnectReturnCode, SubscribeReasonCode, QoS);

/// A connected client whose event loop runs in the background.
pub struct Client<V: Version = V311> {
    pub client: V::Client,
    events: mpsc::UnboundedReceiver<Result<V::Event, String>>,
    /// Messages that arrived while a helper waited for something else.
    pending: VecDeque<V::Publish>,
    driver: JoinHandle<()>,
}

/// Waits (up to [`TIMEOUT`]) for the CONNACK on `eventloop`; once
/// connected, runs the loop in the background for the returned client.
pub async fn start<V: Version>(
    client: V::Client,
    mut eventloop: V::EventLoop,
) -> Outcome<Client<V>, V::Refusal> {
    let connack = tokio::time::timeout(TIMEOUT, async {
        loop {
            match V::poll(&mut eventloop).await {
                Ok(event) => {
                    if let Seen::ConnAck = V::sort(event) {
                        return Ok(());
                    }
                }
                Err(PollError::Refused(code)) => return Err(Outcome::Refused(code)),
                Err(PollError::Closed(e)) => return Err(Outcome::Closed(e)),
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
            let event = V::poll(&mut eventloop).await.map_err(|e| match e {
                PollError::Refused(_) => "refused".to_owned(),
                PollError::Closed(e) => e,
            });
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
    let (client, eventloop) = AsyncClient::new(options, 1000);
    start(client, eventloop).await
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

/// What every version's client does the same way.
impl<V: Version> Client<V> {
    /// Subscribes (QoS 1) and returns the SUBACK's codes.
    pub async fn subscribe(&mut self, filter: &str) -> Vec<V::Granted> {
        assert!(
            V::subscribe(&self.client, filter, true).await,
            "queue SUBSCRIBE"
        );
        self.suback(filter).await
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        V::publish(&self.client, topic, payload.into()).await;
    }

    /// Whether the connection still serves requests: a SUBSCRIBE to
    /// `filter` gets its SUBACK.
    pub async fn is_alive(&mut self, filter: &str) -> bool {
        if self.driver.is_finished() || !V::subscribe(&self.client, filter, false).await {
            return false;
        }
        loop {
            match self.next_event(TIMEOUT).await {
                Some(Ok(event)) => match V::sort(event) {
                    Seen::SubAck(_) => return true,
                    Seen::Publish(p) => self.pending.push_back(p),
                    _ => {}
                },
                Some(Err(_)) | None => return false,
            }
        }
    }

    pub async fn disconnect(self) {
        V::disconnect(&self.client).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.driver).await;
    }

    /// Waits for the SUBACK of a SUBSCRIBE to `filter` just queued,
    /// keeping messages that arrive meanwhile.
    async fn suback(&mut self, filter: &str) -> Vec<V::Granted> {
        loop {
            match self.next_event(TIMEOUT).await {
                Some(Ok(event)) => match V::sort(event) {
                    Seen::SubAck(codes) => return codes,
                    Seen::Publish(p) => self.pending.push_back(p),
                    _ => {}
                },
                Some(Err(e)) => panic!("connection closed while subscribing to {filter}: {e}"),
                None => panic!("no SUBACK for {filter}"),
            }
        }
    }

    /// Inbox events (as JSON) arriving until the client has been quiet
    /// for `quiet`; other messages are skipped.
    pub async fn inbox_events(&mut self, quiet: Duration) -> Vec<serde_json::Value> {
        let mut events = Vec::new();
        while let Some(p) = self.next_message(quiet).await {
            if V::topic(&p).ends_with(b"/inbox") {
                events.push(serde_json::from_slice(V::payload(&p)).expect("inbox events are JSON"));
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
            if V::topic(&message).ends_with(b"/inbox") {
                return serde_json::from_slice(V::payload(&message))
                    .expect("inbox events are JSON");
            }
        }
    }

    /// The next message, if one arrives within `timeout`.
    pub async fn next_message(&mut self, timeout: Duration) -> Option<V::Publish> {
        if let Some(p) = self.pending.pop_front() {
            return Some(p);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Some(Ok(event)) => {
                    if let Seen::Publish(p) = V::sort(event) {
                        return Some(p);
                    }
                }
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
                None => return self.driver.is_finished(),
            }
        }
    }

    /// Drops the connection without DISCONNECT, as a lost socket would.
    pub fn abort(self) {
        self.driver.abort();
    }

    async fn next_event(&mut self, timeout: Duration) -> Option<Result<V::Event, String>> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Client {
    /// Subscribes and asserts the subscription was granted.
    pub async fn subscribe_ok(&mut self, filter: &str) {
        let codes = self.subscribe(filter).await;
        assert!(
            matches!(codes.as_slice(), [SubscribeReasonCode::Success(_)]),
            "subscription to {filter} refused: {codes:?}"
        );
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
