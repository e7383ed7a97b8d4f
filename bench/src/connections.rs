//! `bluetick bench connections`: many idle connections held open at once,
//! each one a real client: its own user, logged in with that user's token,
//! a persistent session, and the inbox subscription the SDK makes after
//! every CONNACK. Reports the connect rate, connect-time percentiles, what
//! failed and why, and the server's memory per connection.
//!
//! Connects are either a burst (as fast as they go, at most [`BURST_IN_FLIGHT`]
//! at once) or a storm at a fixed rate (`--rate`: connect `i` starts at
//! `i / rate` seconds, whether or not earlier ones have finished, as
//! independent clients would).
//!
//! Clients come from many addresses, as real ones do: connection `i` is
//! bound to 127.0.0.(1 + i mod 250) (all loopback on Linux). That keeps the
//! server's per-address cap on connections that have not logged in yet
//! (`mqtt.max_pending_logins_per_address`) from counting the whole bench as
//! one client, and gives each address its own ~28k ephemeral ports.

use rumqttc::{Connect, QoS, Subscribe};
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout_at;

use super::stats::{Percentiles, Samples};

/// Loopback source addresses the clients are spread over.
const SOURCES: usize = 250;
/// Connects in flight at once in a burst (no `--rate`).
const BURST_IN_FLIGHT: usize = 256;
/// How long one connect may take, from TCP SYN to SUBACK.
const CONNECT_DEADLINE: Duration = Duration::from_secs(30);

/// What the bench asks for.
pub struct Plan {
    /// Connects per second, or `None` for a burst.
    pub rate: Option<f64>,
    /// Keepalive the connections announce (they stay silent).
    pub keepalive: u16,
    /// How long to hold the connections before measuring memory.
    pub hold: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionsResult {
    pub requested: usize,
    pub connected: usize,
    pub failed: usize,
    /// Failures by kind: `reset` (refused or reset by the server),
    /// `timeout`, `connack` (a refusal code), `suback` (subscription
    /// refused), `other`.
    pub failures: Vec<(String, usize)>,
    /// Connects per second asked for (`None`: a burst).
    pub rate: Option<f64>,
    pub connects_per_second: f64,
    /// TCP connect start → CONNACK 0.
    pub connect_time: Percentiles,
    /// TCP connect start → SUBACK of the inbox subscription.
    pub subscribed_time: Percentiles,
    pub server_rss_before_bytes: u64,
    pub server_rss_after_bytes: u64,
    pub rss_per_connection_bytes: f64,
}

impl ConnectionsResult {
    pub fn table(&self) -> String {
        let mode = match self.rate {
            Some(rate) => format!("a storm at {rate:.0}/s"),
            None => format!("a burst ({BURST_IN_FLIGHT} in flight)"),
        };
        let failures = if self.failures.is_empty() {
            String::new()
        } else {
            let kinds: Vec<String> = self
                .failures
                .iter()
                .map(|(kind, n)| format!("{n} {kind}"))
                .collect();
            format!(" ({})", kinds.join(", "))
        };
        let (c, s) = (&self.connect_time, &self.subscribed_time);
        format!(
            "bluetick bench connections, {mode}: {} of {} connected and subscribed, {} failed{failures}, at {:.0} connects/s\n\
             connect → CONNACK ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}\n\
             connect → SUBACK  ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}\n\
             server RSS {:.1} MiB idle → {:.1} MiB with them: {:.1} KiB per connection\n",
            self.connected,
            self.requested,
            self.failed,
            self.connects_per_second,
            c.p50_ms,
            c.p90_ms,
            c.p99_ms,
            c.max_ms,
            s.p50_ms,
            s.p90_ms,
            s.p99_ms,
            s.max_ms,
            self.server_rss_before_bytes as f64 / 1048576.0,
            self.server_rss_after_bytes as f64 / 1048576.0,
            self.rss_per_connection_bytes / 1024.0
        )
    }
}

/// One connection held open, with how long it took.
struct Opened {
    stream: TcpStream,
    connacked: Duration,
    subscribed: Duration,
}

/// Why a connect failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("reset by the server: {0}")]
    Reset(std::io::Error),
    #[error("no {0} within the deadline")]
    Timeout(&'static str),
    #[error("CONNACK refused with code {0:#04x}")]
    ConnAck(u8),
    #[error("SUBACK refused with code {0:#04x}")]
    SubAck(u8),
    #[error("{0:#}")]
    Other(anyhow::Error),
}

impl Failure {
    fn kind(&self) -> &'static str {
        match self {
            Failure::Reset(_) => "reset",
            Failure::Timeout(_) => "timeout",
            Failure::ConnAck(_) => "connack",
            Failure::SubAck(_) => "suback",
            Failure::Other(_) => "other",
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        use std::io::ErrorKind::*;
        match e.kind() {
            ConnectionReset | ConnectionRefused | ConnectionAborted | BrokenPipe
            | UnexpectedEof => Failure::Reset(e),
            _ => Failure::Other(e.into()),
        }
    }
}

/// Opens one connection per `(user, token)` and holds them all for
/// `plan.hold`, measuring the server process `server_pid`.
pub async fn run(
    mqtt: SocketAddr,
    server_pid: u32,
    users: &[(String, String)],
    plan: &Plan,
) -> anyhow::Result<ConnectionsResult> {
    let rss_before = super::server::rss_bytes(server_pid).unwrap_or(0);
    let gate = Arc::new(Semaphore::new(BURST_IN_FLIGHT));
    let keepalive = plan.keepalive;
    let started = Instant::now();
    let mut attempts = Vec::with_capacity(users.len());
    for (i, (user, token)) in users.iter().enumerate() {
        let permit = match plan.rate {
            Some(rate) => {
                let at = started + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(at.into()).await;
                None
            }
            None => Some(gate.clone().acquire_owned().await?),
        };
        let (user, token) = (user.clone(), token.clone());
        attempts.push(tokio::spawn(async move {
            let result = open(mqtt, i, &user, &token, keepalive).await;
            drop(permit);
            result
        }));
        if i > 0 && i % 5_000 == 0 {
            eprintln!(
                "[{:>4.1}s] {i} connects started",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let mut held = Vec::with_capacity(users.len());
    let (mut connect_time, mut subscribed_time) = (Samples::default(), Samples::default());
    let mut failures: Vec<(String, usize)> = Vec::new();
    let mut first_errors = Vec::new();
    for attempt in attempts {
        match attempt.await? {
            Ok(opened) => {
                connect_time.record(opened.connacked);
                subscribed_time.record(opened.subscribed);
                held.push(opened.stream);
            }
            Err(failure) => {
                let kind = failure.kind();
                match failures.iter_mut().find(|(k, _)| k == kind) {
                    Some((_, n)) => *n += 1,
                    None => {
                        failures.push((kind.to_owned(), 1));
                        first_errors.push(failure);
                    }
                }
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    for failure in &first_errors {
        eprintln!("first {} failure: {failure}", failure.kind());
    }
    eprintln!(
        "{} connected and subscribed in {seconds:.1} s; holding them for {:?}",
        held.len(),
        plan.hold
    );
    tokio::time::sleep(plan.hold).await;
    let rss_after = super::server::rss_bytes(server_pid).unwrap_or(0);
    let connected = held.len();
    drop(held);
    Ok(ConnectionsResult {
        requested: users.len(),
        connected,
        failed: users.len() - connected,
        failures,
        rate: plan.rate,
        connects_per_second: connected as f64 / seconds,
        connect_time: connect_time.percentiles(),
        subscribed_time: subscribed_time.percentiles(),
        server_rss_before_bytes: rss_before,
        server_rss_after_bytes: rss_after,
        rss_per_connection_bytes: rss_after.saturating_sub(rss_before) as f64
            / connected.max(1) as f64,
    })
}

/// One client from a loopback source chosen by `index`: CONNECT as `user`
/// with its token and a persistent session (client id = user name, as the
/// SDK's default device), then SUBSCRIBE to its inbox at QoS 1.
async fn open(
    mqtt: SocketAddr,
    index: usize,
    user: &str,
    token: &str,
    keepalive: u16,
) -> Result<Opened, Failure> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started + CONNECT_DEADLINE);
    let timed_out = |what| move |_| Failure::Timeout(what);
    let source = Ipv4Addr::new(127, 0, 0, 1 + (index % SOURCES) as u8);
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let mut stream = timeout_at(deadline, socket.connect(mqtt))
        .await
        .map_err(timed_out("TCP connect"))??;
    let mut connect = Connect::new(user);
    connect.keep_alive = keepalive;
    connect.clean_session = false;
    connect.set_login(user, token);
    let mut packet = bytes::BytesMut::new();
    connect
        .write(&mut packet)
        .map_err(|e| Failure::Other(anyhow::anyhow!("encode CONNECT: {e:?}")))?;
    stream.write_all(&packet).await?;
    let connack = timeout_at(deadline, read_frame(&mut stream))
        .await
        .map_err(timed_out("CONNACK"))??;
    if connack.first() != Some(&0x20) || connack.len() != 4 || connack[3] != 0 {
        return Err(Failure::ConnAck(connack.get(3).copied().unwrap_or(0xff)));
    }
    let connacked = started.elapsed();

    let inbox = protocol::topics::user_topic(
        &protocol::UserName::parse(user).map_err(|e| Failure::Other(e.into()))?,
        "inbox",
    );
    let mut subscribe = Subscribe::new(inbox, QoS::AtLeastOnce);
    subscribe.pkid = 1;
    packet.clear();
    subscribe
        .write(&mut packet)
        .map_err(|e| Failure::Other(anyhow::anyhow!("encode SUBSCRIBE: {e:?}")))?;
    stream.write_all(&packet).await?;
    loop {
        let frame = timeout_at(deadline, read_frame(&mut stream))
            .await
            .map_err(timed_out("SUBACK"))??;
        // Anything before the SUBACK (nothing is expected) is skipped.
        if frame.first() == Some(&0x90) {
            let code = frame.last().copied().unwrap_or(0x80);
            if code != 1 {
                return Err(Failure::SubAck(code));
            }
            break;
        }
    }
    Ok(Opened {
        stream,
        connacked,
        subscribed: started.elapsed(),
    })
}

/// Reads one MQTT packet (fixed header included).
async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut frame = vec![stream.read_u8().await?];
    let mut remaining = 0usize;
    for shift in (0..4).map(|i| 7 * i) {
        let byte = stream.read_u8().await?;
        frame.push(byte);
        remaining |= ((byte & 0x7f) as usize) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    let start = frame.len();
    frame.resize(start + remaining, 0);
    stream.read_exact(&mut frame[start..]).await?;
    Ok(frame)
}

/// Raises this process's open-file limit as far as it may go (root may
/// lift the hard limit too), so it and the server it starts, which
/// inherits it, can hold many sockets. Returns the limit in force.
pub fn raise_fd_limit() -> u64 {
    const WANTED: u64 = 1 << 20;
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_max < WANTED {
            let lifted = libc::rlimit {
                rlim_cur: WANTED,
                rlim_max: WANTED,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lifted) == 0 {
                return WANTED;
            }
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        limit.rlim_cur
    }
}
