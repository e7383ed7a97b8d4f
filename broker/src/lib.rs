//! The embedded MQTT broker of bluetick: rumqttd behind a guard.
//!
//! # Layout
//! - [`guard`]: a `Protocol` wrapper that rumqttd clones per connection. It
//!   authenticates CONNECT, enforces which topics a user may touch, caps
//!   connections, and reports connects and disconnects. This is the only
//!   place that decides who may do what on MQTT.
//! - [`auth`]: token checks for CONNECT against the store, briefly cached.
//! - [`config`]: the `[mqtt]` section of the server's configuration.
//! - [`privacy`]: who may see whose presence; the guard applies it to every
//!   presence message it writes to a client.
//! - [`events`]: the connected/disconnected events, the bounded queue that
//!   carries them without ever blocking the broker, and how they keep the
//!   `sessions` table true.
//! - `ws`: MQTT over WebSocket, terminated here with a handshake timeout
//!   and relayed to the guarded TCP listener.
//! - [`tls`]: MQTT over TLS, terminated and relayed the same way.
//! - [`prelogin`]: the caps and deadline on connections that have not
//!   logged in yet, per listener and per source address.
//! - [`metrics`]: counters and gauges for `/metrics`.
//! - [`ratelog`]: log lines a flood cannot multiply (rate-limited, client
//!   text cut short).
//! - [`wellformed`]: the MQTT well-formedness rules the guard adds to
//!   rumqttd's codec (topics, filters, strings).
//!
//! A packet's path: a client's bytes reach rumqttd's TCP listener (directly,
//! or through the WebSocket or TLS relay, which dial a second, loopback-only
//! listener so their clients are not counted twice against the TCP
//! listener's caps); rumqttd frames them with the guard; the
//! guard admits, rewrites or refuses; admitted packets reach rumqttd's
//! router, which fans them out to subscribers.
//!
//! The broker knows nothing about chat: messages, inboxes and receipts are
//! the bridge's. Everything rumqttd gets configured explicitly, because its
//! defaults panic or grow without bound (DESIGN.md).

pub mod auth;
pub mod config;
pub mod events;
pub mod guard;
pub mod metrics;
pub mod prelogin;
pub mod privacy;
pub mod ratelog;
mod relay;
pub mod tls;
pub mod wellformed;
mod ws;

use rumqttd::{ConnectionSettings, Router, RouterConfig, SegmentConfig, Server, ServerSettings};
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

use prelogin::{Listener, LoginGate};

pub use auth::{Authenticator, CacheCapacity};
pub use events::{ConnectionEvent, EventKind, EventReceiver};
pub use guard::Guard;
pub use prelogin::LoginLimits;
pub use privacy::PresencePolicy;
pub use ws::WS_PATH;

/// How the broker listens and what it allows.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// MQTT 3.1.1 over TCP. Port 0 picks a free port.
    pub mqtt_addr: SocketAddr,
    /// MQTT over WebSocket at [`WS_PATH`], if wanted. Port 0 picks a free port.
    pub ws_addr: Option<SocketAddr>,
    /// Most client connections at once, enforced by the guard.
    pub max_connections: usize,
    /// Largest MQTT packet accepted, in bytes.
    pub max_packet_size: usize,
    /// Most unacknowledged QoS 1 messages in flight to one client.
    pub max_inflight: usize,
    /// How long a new connection may take to send CONNECT.
    pub connect_timeout: Duration,
    /// How long a WebSocket client may take to finish its handshake.
    pub ws_handshake_timeout: Duration,
    /// MQTT over TLS, if wanted: where, and the certificate to present.
    /// Port 0 picks a free port. Its handshake is bounded by
    /// `ws_handshake_timeout` too.
    pub tls: Option<(SocketAddr, tls::TlsFiles)>,
    /// Bytes per segment of each topic filter's in-memory log.
    pub segment_size: usize,
    /// Segments kept per filter; older ones are dropped (with a warning).
    pub segment_count: usize,
    /// How long a token check is trusted before asking the store again.
    pub auth_cache_ttl: Duration,
    /// How many token answers are kept (valid and invalid separately).
    pub auth_cache_capacity: CacheCapacity,
    /// Accept anyone and skip the ACL. For conformance tools only.
    pub dev_open: bool,
    /// This server's name in `sessions.node`; unique among servers that
    /// share a database.
    pub node: String,
    /// Password of the server's own MQTT clients ([`guard::SERVICE_USER`]).
    pub service_secret: Option<String>,
    /// Topic filters that get their own, larger in-memory log: the ones the
    /// bridge subscribes to, so a busy bridge is not skipped past
    /// (DESIGN.md, "rumqttd acks, then may drop").
    pub service_filters: Vec<String>,
    /// Bytes per segment for [`BrokerConfig::service_filters`].
    pub service_segment_size: usize,
    /// Segments kept for [`BrokerConfig::service_filters`].
    pub service_segment_count: usize,
    /// Caps and deadline for connections that have not logged in, applied
    /// to each listener.
    pub login: LoginLimits,
    /// Connection events queued for the sessions writer before connects
    /// are dropped (see [`events`]).
    pub event_queue_capacity: usize,

    // --- Lean connections (issue 14) ---
    /// Listen backlog of every MQTT listener (TCP, WebSocket, TLS): TCP
    /// handshakes done and waiting to be accepted. A connect storm
    /// overflows a small one, and each dropped handshake costs its client
    /// a one-second retry. The kernel caps it at `net.core.somaxconn`.
    pub listen_backlog: u32,
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsConfigError),
    #[error("cannot link to the router: {0}")]
    Link(String),
}

/// A running broker.
pub struct Broker {
    /// Where MQTT over TCP is served.
    pub mqtt_addr: SocketAddr,
    /// Where MQTT over WebSocket is served, if enabled.
    pub ws_addr: Option<SocketAddr>,
    /// Where MQTT over TLS is served, if enabled.
    pub tls_addr: Option<SocketAddr>,
    shared: Arc<guard::Shared>,
    /// The accept loops; aborted to stop taking new connections.
    listeners: Vec<JoinHandle<()>>,
    /// Follows logouts on every node (see [`Authenticator::follow_revocations`]).
    revocations: JoinHandle<()>,
    /// Builds in-process links to the router ([`Broker::local_link`]).
    linker: Arc<Linker>,
}

/// Builds a local link to the router for a client id (holds the router's
/// event channel, whose type rumqttd does not name).
type Linker = dyn Fn(&str) -> Result<(rumqttd::local::LinkTx, rumqttd::local::LinkRx), String>
    + Send
    + Sync;

impl Drop for Broker {
    fn drop(&mut self) {
        self.revocations.abort();
    }
}

/// Connections the broker holds at most beyond the client cap, for the
/// server's own links, so the router itself never refuses a client (its
/// refusal is what triggers rumqttd's lockup).
const ROUTER_HEADROOM: usize = 1024;

/// How often each node reads the logouts recorded by every node.
const REVOCATION_POLL: Duration = Duration::from_secs(2);

impl Broker {
    /// Starts the router thread and the listeners on the current runtime,
    /// and returns the events the guard reports.
    pub async fn start(
        config: BrokerConfig,
        store: store::Store,
    ) -> Result<(Broker, EventReceiver), BrokerError> {
        if config.dev_open {
            tracing::warn!("DEV-OPEN MODE: MQTT accepts anonymous clients and enforces no topic ACL. Never use this in production.");
        }
        // Unusable certificate files stop the start before anything listens.
        let tls_acceptor = match &config.tls {
            Some((_, files)) => Some(tls::acceptor(files)?),
            None => None,
        };
        let (events_tx, events_rx) = events::queue(config.event_queue_capacity);
        let shared = Arc::new(guard::Shared {
            authenticator: Arc::new(Authenticator::with_capacity(
                store.clone(),
                config.auth_cache_ttl,
                config.auth_cache_capacity,
            )),
            presence: Arc::new(PresencePolicy::new(store, config.auth_cache_ttl)),
            dev_open: config.dev_open,
            max_connections: config.max_connections,
            admitted: AtomicUsize::new(0),
            next_connection: AtomicU64::new(1),
            node: config.node.clone(),
            events: events_tx,
            service_secret: config.service_secret.clone(),
            refused_subscribe_log: Default::default(),
            refused_publish_log: Default::default(),
        });

        let router = Router::new(0, router_config(&config));
        let router_tx = router.spawn();

        let mut listeners = Vec::new();
        let tcp_gate = LoginGate::new(Listener::Tcp, config.login);
        let server = |gate: Option<Arc<LoginGate>>| {
            let (shared, router_tx, config) = (shared.clone(), router_tx.clone(), &config);
            move |listen| {
                let guard = Guard::new(shared.clone(), gate.clone());
                Server::new(server_settings(config, listen), router_tx.clone(), guard)
            }
        };
        let (mqtt_addr, mqtt_task) =
            spawn_mqtt_listener(config.mqtt_addr, server(Some(tcp_gate))).await?;
        listeners.push(mqtt_task);
        // The relays dial their own listener, on loopback only: their
        // clients already passed the relay's gate, and would otherwise all
        // count against 127.0.0.1 on the public TCP listener.
        let relayed_addr = if config.ws_addr.is_some() || config.tls.is_some() {
            let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
            let (addr, task) = spawn_mqtt_listener(loopback, server(None)).await?;
            listeners.push(task);
            addr
        } else {
            loopback_of(mqtt_addr)
        };

        let ws_addr = match config.ws_addr {
            Some(addr) => {
                let listener = rumqttd::listen(addr, config.listen_backlog)
                    .map_err(|source| BrokerError::Bind { addr, source })?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| BrokerError::Bind { addr, source })?;
                let relay = ws::WsRelay {
                    mqtt: relayed_addr,
                    handshake_timeout: config.ws_handshake_timeout,
                    max_packet_size: config.max_packet_size,
                    gate: LoginGate::new(Listener::WebSocket, config.login),
                };
                listeners.push(tokio::spawn(ws::serve(listener, relay)));
                Some(bound)
            }
            None => None,
        };

        let tls_addr = match (&config.tls, tls_acceptor) {
            (Some((addr, _)), Some(acceptor)) => {
                let listener = rumqttd::listen(*addr, config.listen_backlog).map_err(|source| {
                    BrokerError::Bind {
                        addr: *addr,
                        source,
                    }
                })?;
                let bound = listener.local_addr().map_err(|source| BrokerError::Bind {
                    addr: *addr,
                    source,
                })?;
                listeners.push(tokio::spawn(tls::serve(
                    listener,
                    acceptor,
                    relayed_addr,
                    config.ws_handshake_timeout,
                    LoginGate::new(Listener::Tls, config.login),
                )));
                Some(bound)
            }
            _ => None,
        };

        let linker: Arc<Linker> = Arc::new(move |client_id: &str| {
            rumqttd::local::LinkBuilder::new(client_id, router_tx.clone())
                .dynamic_filters(true)
                .build()
                .map(|(tx, rx, _connack)| (tx, rx))
                .map_err(|e| e.to_string())
        });
        let revocations = tokio::spawn(
            shared
                .authenticator
                .clone()
                .follow_revocations(REVOCATION_POLL),
        );
        Ok((
            Broker {
                mqtt_addr,
                ws_addr,
                tls_addr,
                shared,
                listeners,
                revocations,
                linker,
            },
            events_rx,
        ))
    }

    /// A link to the router in this process, for the server's own client
    /// (the bridge): no socket, no codec, and no guard, which admits only
    /// what comes over the listeners. Dynamic filters, as for clients.
    pub async fn local_link(
        &self,
        client_id: &str,
    ) -> Result<(rumqttd::local::LinkTx, rumqttd::local::LinkRx), BrokerError> {
        let (linker, client_id) = (self.linker.clone(), client_id.to_owned());
        // Building a link waits for the router's CONNACK on a blocking
        // channel; the router answers at once.
        let built = tokio::task::spawn_blocking(move || linker(&client_id))
            .await
        .map_err(|e| e.to_string())
        .and_then(|built| built);
        built.map_err(BrokerError::Link)
    }

    /// Client connections admitted right now.
    pub fn connections(&self) -> usize {
        self.shared.admitted.load(Ordering::SeqCst)
    }

    /// The authenticator, so logout can drop a token from its cache.
    pub fn authenticator(&self) -> Arc<Authenticator> {
        self.shared.authenticator.clone()
    }

    /// The presence policy, so a settings change takes effect at once.
    pub fn presence_policy(&self) -> Arc<PresencePolicy> {
        self.shared.presence.clone()
    }

    /// Stops accepting new connections. Established ones keep running until
    /// the process exits.
    pub fn stop_accepting(&self) {
        for listener in &self.listeners {
            listener.abort();
        }
    }
}

/// Starts a guarded rumqttd listener on `addr` (port 0: any free port),
/// built by `server` for the address it gets, and returns that address.
async fn spawn_mqtt_listener(
    addr: SocketAddr,
    server: impl Fn(SocketAddr) -> Server<Guard>,
) -> Result<(SocketAddr, JoinHandle<()>), BrokerError> {
    let mut last_error = None;
    // rumqttd binds its own listener and cannot report the port it got, so
    // a free port is found first. Another process may take it in between;
    // then the bind fails at once and we try again.
    for _ in 0..5 {
        let listen = resolve_port(addr)?;
        let mut server = server(listen);
        let task = tokio::spawn(async move {
            if let Err(e) = server.start(rumqttd::LinkType::Remote).await {
                tracing::error!(error = %e, "MQTT listener stopped");
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        if !task.is_finished() {
            return Ok((listen, task));
        }
        last_error = Some(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "listener exited at start",
        ));
        if addr.port() != 0 {
            break;
        }
    }
    Err(BrokerError::Bind {
        addr,
        source: last_error.unwrap_or_else(|| std::io::Error::other("unknown")),
    })
}

fn router_config(config: &BrokerConfig) -> RouterConfig {
    RouterConfig {
        max_connections: config.max_connections + ROUTER_HEADROOM,
        max_outgoing_packet_count: config.max_inflight as u64,
        max_segment_size: config.segment_size,
        max_segment_count: config.segment_count,
        custom_segment: Some(
            config
                .service_filters
                .iter()
                .map(|filter| {
                    let segment = SegmentConfig {
                        max_segment_size: config.service_segment_size,
                        max_segment_count: config.service_segment_count,
                    };
                    (filter.clone(), segment)
                })
                .collect(),
        ),
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    }
}

fn server_settings(config: &BrokerConfig, listen: SocketAddr) -> ServerSettings {
    ServerSettings {
        name: "mqtt".to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        listen_backlog: config.listen_backlog,
        connections: ConnectionSettings {
            connection_timeout_ms: config.connect_timeout.as_millis().min(u16::MAX as u128) as u16,
            max_payload_size: config.max_packet_size,
            max_inflight_count: config.max_inflight,
            auth: None,
            external_auth: None,
            // Clients may only publish to a closed set of leaves under their
            // own subtree (see protocol::topics), so the filters this
            // creates are bounded by the number of users.
            dynamic_filters: true,
        },
    }
}

/// Turns port 0 into a concrete free port.
fn resolve_port(addr: SocketAddr) -> Result<SocketAddr, BrokerError> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let probe = StdTcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr, source })?;
    probe
        .local_addr()
        .map_err(|source| BrokerError::Bind { addr, source })
}

/// The address to dial to reach a listener bound to `addr` from this host
/// (the server's own clients of its broker: the bridge over MQTT, the
/// cluster relay).
pub fn loopback_of(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        }
        ip if ip.is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port())),
        _ => addr,
    }
}

/// Runs blocking store work from inside a runtime worker without stalling
/// the other tasks on it (the guard's codec calls are synchronous).
pub(crate) fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}
