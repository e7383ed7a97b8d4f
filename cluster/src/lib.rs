//! bluetick across nodes: the live events a node's bridge commits reach the
//! devices connected to other nodes, through a NATS cluster.
//!
//! Each node stays a full bluetick (guarded broker, bridge, HTTP, jobs) on
//! one shared database. Without this crate a message committed on node A
//! reaches bob on node B only on his next sync: A's bridge publishes into
//! A's own broker. This crate owns the copy between nodes and nothing else;
//! it knows no chat rules and never touches the store.
//!
//! # Layout
//! - [`subjects`]: the NATS subjects and headers, stated once.
//! - `interest`: which users have a device on this node; a node follows a
//!   user's subjects (`bt.u.{user}.*`) only while it does.
//! - `relay`: the two directions. *Out*: the bridge hands over each
//!   committed batch's inbox events and each typing event
//!   ([`Cluster::taps`]), and they are published to `bt.u.{user}.inbox` and
//!   `bt.u.{user}.live`, stamped with this node's name; a connect publishes
//!   `bt.u.{user}.takeover`. *In*: what arrives from another node is
//!   republished into this node's own broker (`u/{user}/inbox` at QoS 1,
//!   `u/{user}/live` at QoS 0), so the guard and the broker deliver it
//!   exactly as a local event; a takeover closes the local connection with
//!   that client id, and a logout (`bt.u.{user}.logout`) revokes the token
//!   and closes the connections that used it.
//! - [`presence`]: retained `presence/{user}` mirrored through a replicated
//!   JetStream key-value bucket, so every node's broker holds the same.
//! - [`health`]: whether NATS is reachable, for `/readyz` and `/metrics`.
//! - [`config`]: the `[cluster]` section of the configuration.
//!
//! # Invariant: the bus is never the truth
//! Every event relayed here is already committed with its inbox seq, and
//! the node that committed it has already published it locally. A relay
//! that is lost, late or dropped (NATS unreachable, a queue full) costs
//! only liveness: the device sees a seq gap, or its idle sync fires, and
//! replays from the store. So nothing here waits for NATS on the commit
//! path, and every queue is bounded and sheds rather than blocks.
//!
//! # Use
//! ```ignore
//! let cluster = cluster::Cluster::start(config, revoke).await?;
//! let taps = cluster.taps();
//! let taps = bridge::Taps { committed: taps.committed, live: taps.live };
//! let bridge = bridge::Bridge::start_tapped(.., Some(taps)).await?;
//! // For every connection event of the broker:
//! cluster.device_connected("bob", "bob.phone", &token_hash); // or device_disconnected
//! ```

pub mod config;
pub mod health;
mod interest;
pub mod presence;
mod relay;
pub mod subjects;

use protocol::messages::InboxEvent;
use protocol::topics;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use health::Health;

/// One committed batch's inbox events, in commit order: (user, event).
pub type CommittedEvents = Vec<(String, InboxEvent)>;

/// Revokes a token, given its SHA-256, in this node's broker (its
/// authenticator): it admits it no more, and closes connections using it.
pub type Revoke = Arc<dyn Fn(String) + Send + Sync>;

/// How a node joins the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// NATS servers to connect to (`nats://host:port`); the client learns
    /// the rest of the cluster from them.
    pub nats_urls: Vec<String>,
    /// This node's name on the bus: events it committed carry it, and it
    /// skips them when they come back.
    pub node: String,
    /// The node's own broker, where relayed events are republished.
    pub broker: LocalBroker,
    /// Committed batches waiting to go out, and relayed events waiting to
    /// be republished, at most; more are dropped (counted) and recovered
    /// by sync.
    pub queue: usize,
    /// Replicas of the presence bucket, when this node creates it.
    pub presence_replicas: usize,
}

/// The node's own embedded broker and the service identity to log in with.
#[derive(Debug, Clone)]
pub struct LocalBroker {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    /// Largest MQTT packet, in bytes (an inbox event carries a whole body).
    pub max_packet_size: usize,
}

/// Why the cluster link could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster.nats_urls is empty")]
    NoServers,
    #[error("cannot set up the NATS client: {0}")]
    Nats(String),
}

/// A node's link to the cluster.
pub struct Cluster {
    /// Users with a device here, and their subscriptions.
    interest: Arc<interest::Interest>,
    /// The bridge's ends of the outbound queues.
    taps: Taps,
    /// Takeover notices waiting to go out: (user, client id).
    takeovers: mpsc::Sender<(String, Vec<u8>)>,
    /// Logout notices waiting to go out: (user, token SHA-256).
    logouts: mpsc::Sender<(String, Vec<u8>)>,
    /// This node's broker, to close connections in.
    broker: LocalBroker,
    /// Revokes a token in this node's broker.
    revoke: Revoke,
    /// Whether NATS is reachable.
    health: Arc<Health>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the bridge hands the cluster (see `bridge::Taps`, which wraps the
/// same two queues).
#[derive(Clone)]
pub struct Taps {
    /// Each committed batch's inbox events, once published locally.
    pub committed: mpsc::Sender<CommittedEvents>,
    /// Typing: (recipient, `u/{recipient}/live` payload).
    pub live: mpsc::Sender<(String, Vec<u8>)>,
}

/// Longest a starting node waits for its first NATS connection.
pub const JOIN_WAIT: Duration = Duration::from_secs(3);

impl Cluster {
    /// Starts the link. It waits for NATS at most [`JOIN_WAIT`]: a node
    /// whose NATS is unreachable starts and serves its own users, and the
    /// client keeps reconnecting in the background.
    pub async fn start(config: ClusterConfig, revoke: Revoke) -> Result<Cluster, ClusterError> {
        if config.nats_urls.is_empty() {
            return Err(ClusterError::NoServers);
        }
        let health = Arc::new(Health::default());
        let nats = connect_nats(&config, health.clone()).await?;
        // Until the client is connected, events for other nodes are dropped
        // (a takeover notice among them), so a node that reaches NATS joins
        // before it accepts its first client.
        let joined = tokio::time::timeout(JOIN_WAIT, async {
            while !health.connected() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        if joined.await.is_err() {
            tracing::warn!(
                seconds = JOIN_WAIT.as_secs(),
                "cluster: NATS not reachable yet; starting without it"
            );
        }
        let queue = config.queue.max(1);
        let (presence_tx, presence_rx) = mpsc::channel(queue);
        let (local, driver) = connect_broker(&config, presence_tx);
        let mirror = Arc::new(presence::PresenceMirror::new(
            nats.clone(),
            local.clone(),
            config.presence_replicas,
        ));
        let presence_out = tokio::spawn({
            let mirror = mirror.clone();
            async move { mirror.export(presence_rx).await }
        });
        let presence_in = tokio::spawn(async move { mirror.import().await });
        let (arrivals_tx, arrivals_rx) = mpsc::channel(queue);
        let interest = Arc::new(interest::Interest::new(
            nats.clone(),
            config.node.clone(),
            arrivals_tx,
        ));
        let outbound = Arc::new(relay::Outbound::new(nats, &config.node, health.clone()));
        let (committed_tx, committed_rx) = mpsc::channel(queue);
        let (live_tx, live_rx) = mpsc::channel(queue);
        let (takeovers_tx, takeovers_rx) = mpsc::channel(queue);
        let (logouts_tx, logouts_rx) = mpsc::channel(queue);
        let tasks = vec![
            driver,
            presence_out,
            presence_in,
            tokio::spawn(outbound.clone().committed(committed_rx)),
            tokio::spawn(outbound.clone().forward(subjects::Leaf::Live, live_rx)),
            tokio::spawn(
                outbound
                    .clone()
                    .forward(subjects::Leaf::Takeover, takeovers_rx),
            ),
            tokio::spawn(outbound.forward(subjects::Leaf::Logout, logouts_rx)),
            tokio::spawn(relay::republish(
                local,
                config.broker.clone(),
                interest.clone(),
                revoke.clone(),
                arrivals_rx,
            )),
        ];
        Ok(Cluster {
            interest,
            taps: Taps {
                committed: committed_tx,
                live: live_tx,
            },
            takeovers: takeovers_tx,
            logouts: logouts_tx,
            broker: config.broker,
            revoke,
            health,
            tasks,
        })
    }

    /// The queues the bridge hands what it published locally to. The
    /// bridge must `try_send`: a full queue drops (the bus is not the
    /// truth).
    pub fn taps(&self) -> Taps {
        self.taps.clone()
    }

    /// A device of `user` connected to this node with `client_id` and the
    /// token of SHA-256 `token_hash`: follow the user, and close any
    /// connection with that client id on another node.
    pub fn device_connected(&self, user: &str, client_id: &str, token_hash: &str) {
        self.interest.connected(user, client_id, token_hash);
        let notice = (user.to_owned(), client_id.as_bytes().to_vec());
        if self.takeovers.try_send(notice).is_err() {
            metrics::counter!("bluetick_cluster_events_dropped_total", "where" => "takeover")
                .increment(1);
        }
    }

    /// `user` logged out the token of SHA-256 `token_hash` on this node:
    /// close its connections here and on every other node now. (The
    /// database's revocation record, which every node polls, remains the
    /// fallback when the notice is lost.)
    pub fn logged_out(&self, user: &str, token_hash: &str) {
        let hash = token_hash.to_owned();
        relay::close_token(&self.broker, &self.interest, &self.revoke, user, hash);
        let notice = (user.to_owned(), token_hash.as_bytes().to_vec());
        if self.logouts.try_send(notice).is_err() {
            metrics::counter!("bluetick_cluster_events_dropped_total", "where" => "logout")
                .increment(1);
        }
    }

    /// A device of `user` with `client_id` left this node.
    pub fn device_disconnected(&self, user: &str, client_id: &str) {
        self.interest.disconnected(user, client_id);
    }

    /// Whether NATS is reachable, for `/readyz`.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Stops every task and drops every subscription.
    pub fn stop(&self) {
        self.interest.clear();
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A NATS client that reconnects for ever and reports its state.
async fn connect_nats(
    config: &ClusterConfig,
    health: Arc<Health>,
) -> Result<async_nats::Client, ClusterError> {
    let servers = config
        .nats_urls
        .iter()
        .map(|url| url.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClusterError::Nats(e.to_string()))?;
    async_nats::ConnectOptions::new()
        .name(format!("bluetick-{}", config.node))
        // Starting must not depend on NATS: the node serves its own users
        // meanwhile and the client keeps trying.
        .retry_on_initial_connect()
        .max_reconnects(None)
        // Short enough that a NATS node's death is noticed within seconds.
        .ping_interval(Duration::from_secs(5))
        .connection_timeout(Duration::from_secs(2))
        // A reconnect attempt at most every 2 s, not the default backoff
        // that grows to minutes: catching up when NATS returns is prompt.
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((attempts as u64 * 100).min(2_000))
        })
        .event_callback(move |event| {
            let health = health.clone();
            async move { health.on_event(&event) }
        })
        .connect(servers)
        .await
        .map_err(|e| ClusterError::Nats(e.to_string()))
}

/// A service client of the node's own broker, driven by a task that
/// reconnects for ever: relayed events are published through it, and the
/// presence changes it sees on `presence/+` go to `presence`.
fn connect_broker(
    config: &ClusterConfig,
    presence: mpsc::Sender<Publish>,
) -> (AsyncClient, JoinHandle<()>) {
    let broker = &config.broker;
    let mut options = MqttOptions::new(
        format!("bluetick-cluster-{}", config.node),
        &broker.host,
        broker.port,
    );
    options
        .set_credentials(&broker.username, &broker.password)
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_inflight(u16::MAX)
        .set_max_packet_size(broker.max_packet_size, broker.max_packet_size);
    let (client, mut eventloop) = AsyncClient::new(options, relay::LOCAL_QUEUE);
    let subscriber = client.clone();
    let driver = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let filter = topics::presence_topic("+");
                    if let Err(e) = subscriber.try_subscribe(filter, QoS::AtLeastOnce) {
                        tracing::error!(error = %e, "cluster: cannot follow local presence");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    if presence.try_send(publish).is_err() {
                        metrics::counter!("bluetick_cluster_events_dropped_total", "where" => "presence_out")
                            .increment(1);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cluster relay lost the local broker; reconnecting");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    });
    (client, driver)
}
