//! `bluetick bench connections`: many idle, authenticated MQTT connections
//! held open at once; reports the connect rate and the server's memory per
//! connection.
//!
//! A source address carries at most ~28k ephemeral ports to one
//! destination, so connections are spread over 127.0.0.1, 127.0.0.2, …
//! (all loopback on Linux) to get past 64k.

use rumqttc::Connect;
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;

/// Connections per loopback source address.
const PER_SOURCE: usize = 20_000;
/// Connects in flight at once.
const CONCURRENCY: usize = 256;

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionsResult {
    pub requested: usize,
    pub connected: usize,
    pub failed: usize,
    pub connects_per_second: f64,
    pub server_rss_before_bytes: u64,
    pub server_rss_after_bytes: u64,
    pub rss_per_connection_bytes: f64,
}

impl ConnectionsResult {
    pub fn table(&self) -> String {
        format!(
            "bluetick bench connections: {} of {} connected ({} failed) at {:.0} connects/s\n\
             server RSS {:.1} MiB idle → {:.1} MiB with them: {:.1} KiB per connection\n",
            self.connected,
            self.requested,
            self.failed,
            self.connects_per_second,
            self.server_rss_before_bytes as f64 / 1048576.0,
            self.server_rss_after_bytes as f64 / 1048576.0,
            self.rss_per_connection_bytes / 1024.0
        )
    }
}

/// Opens `count` connections as `user` (one device each) and holds them
/// for `hold`, measuring the server process `server_pid`.
pub async fn run(
    mqtt: SocketAddr,
    server_pid: u32,
    user: &str,
    token: &str,
    count: usize,
    keepalive: u16,
    hold: Duration,
) -> anyhow::Result<ConnectionsResult> {
    let rss_before = super::server::rss_bytes(server_pid).unwrap_or(0);
    let gate = Arc::new(Semaphore::new(CONCURRENCY));
    let started = Instant::now();
    let mut attempts = Vec::with_capacity(count);
    for i in 0..count {
        let permit = gate.clone().acquire_owned().await?;
        let (user, token) = (user.to_owned(), token.to_owned());
        attempts.push(tokio::spawn(async move {
            let result = open(mqtt, i, &user, &token, keepalive).await;
            drop(permit);
            result
        }));
        if i > 0 && i % 10_000 == 0 {
            eprintln!(
                "[{:>4.0}s] {i} connects started",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let mut held = Vec::with_capacity(count);
    let mut failed = 0;
    let mut first_error = None;
    for attempt in attempts {
        match attempt.await? {
            Ok(stream) => held.push(stream),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(e) = first_error {
        eprintln!("{failed} connects failed; the first: {e}");
    }
    eprintln!(
        "{} connected in {seconds:.1} s; holding them for {hold:?}",
        held.len()
    );
    tokio::time::sleep(hold).await;
    let rss_after = super::server::rss_bytes(server_pid).unwrap_or(0);
    let connected = held.len();
    drop(held);
    Ok(ConnectionsResult {
        requested: count,
        connected,
        failed,
        connects_per_second: connected as f64 / seconds,
        server_rss_before_bytes: rss_before,
        server_rss_after_bytes: rss_after,
        rss_per_connection_bytes: rss_after.saturating_sub(rss_before) as f64
            / connected.max(1) as f64,
    })
}

/// One authenticated connection from a loopback source chosen by `index`.
async fn open(
    mqtt: SocketAddr,
    index: usize,
    user: &str,
    token: &str,
    keepalive: u16,
) -> anyhow::Result<TcpStream> {
    let source = Ipv4Addr::new(
        127,
        0,
        (index / PER_SOURCE / 250) as u8,
        1 + (index / PER_SOURCE % 250) as u8,
    );
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let mut stream = tokio::time::timeout(Duration::from_secs(30), socket.connect(mqtt)).await??;
    let mut connect = Connect::new(format!("{user}.c{index}"));
    connect.keep_alive = keepalive;
    connect.set_login(user, token);
    let mut packet = bytes::BytesMut::new();
    connect
        .write(&mut packet)
        .map_err(|e| anyhow::anyhow!("encode CONNECT: {e:?}"))?;
    stream.write_all(&packet).await?;
    let mut connack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(30), stream.read_exact(&mut connack)).await??;
    anyhow::ensure!(
        connack[0] == 0x20 && connack[3] == 0,
        "CONNACK refused: {connack:?}"
    );
    Ok(stream)
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
