//! The processes a bench measures: a bluetick server of its own, and a
//! stock Mosquitto for the baseline. Each is stopped when dropped.

use anyhow::Context;
use mosquitto_compat::mosquitto::Mosquitto;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command};
use std::time::Duration;

/// A bluetick server serving MQTT on `mqtt`.
pub struct Spawned {
    child: Child,
    pub mqtt: SocketAddr,
    /// The HTTP API.
    pub http: Option<SocketAddr>,
    /// The private `/metrics` listener.
    pub metrics: Option<SocketAddr>,
    /// The server's database, for provisioning bench users.
    pub database_url: String,
    /// The server's data directory (message key and logs).
    pub data_dir: tempfile::TempDir,
}

impl Spawned {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Keeps the data directory (log, database, key) after the process
    /// stops, and returns where it is.
    pub fn keep_data_dir(&mut self) -> std::path::PathBuf {
        self.data_dir.disable_cleanup(true);
        self.data_dir.path().to_owned()
    }

    /// Resident memory of the process, from /proc.
    pub fn rss_bytes(&self) -> Option<u64> {
        rss_bytes(self.child.id())
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bluetick serve` on free loopback ports with a fresh data
/// directory, on `database_url` (default: SQLite in that directory).
pub fn bluetick(
    database_url: Option<&str>,
    dev_open: bool,
    env: &[(&str, &str)],
) -> anyhow::Result<Spawned> {
    let data_dir = tempfile::tempdir()?;
    let database_url = database_url
        .map(str::to_owned)
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.path().join("bluetick.db").display()));
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut launch = launch::Launch::serve(
        Command::new(std::env::current_exe()?),
        data_dir.path(),
        &database_url,
        [any; 3],
    );
    launch
        .command()
        .env("RUST_LOG", "warn")
        // The bench's users send as fast as the pattern says and never
        // resend a refusal, so the server it starts lifts the per-user send
        // quota (a human-scale default of 50/s); a --target server keeps
        // its own.
        .env("BLUETICK_QUOTAS__SENDS_PER_SECOND", "1000000")
        .env("BLUETICK_QUOTAS__SEND_BURST", "1000000");
    if dev_open {
        launch.command().arg("--dev-open");
    }
    for (key, value) in env {
        launch.command().env(key, value);
    }
    let started = launch
        .start(SERVER_START_TIMEOUT)
        .context("starting bluetick serve")?;
    Ok(Spawned {
        child: started.child,
        mqtt: started.listening.mqtt,
        http: started.listening.http,
        metrics: started.listening.metrics,
        database_url,
        data_dir,
    })
}

/// Longest a server the bench starts may take to say `ready`.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(60);

/// The last `most` WARN and ERROR lines of a server log.
pub fn log_problems(log: &std::path::Path, most: usize) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let problems: Vec<String> = text
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .map(str::to_owned)
        .collect();
    problems[problems.len().saturating_sub(most)..].to_vec()
}

/// `GET path` on the HTTP API, with a bearer token if given: (status, body).
pub fn http_get(
    http: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    http_request(http, "GET", path, None, token)
}

/// One HTTP/1.1 request with an optional JSON body and bearer token:
/// (status, body).
pub fn http_request(
    http: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect_timeout(&http, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let body = json.unwrap_or("");
    let content = json
        .map(|b| format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {http}\r\n{auth}{content}Connection: close\r\n\r\n{body}"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status line")?;
    Ok((status, body.to_owned()))
}

/// One sample from the server's `/metrics` listener (0 if absent or
/// unreachable).
pub fn metric(metrics: SocketAddr, sample: &str) -> f64 {
    let Ok((_, text)) = http_get(metrics, "/metrics", None) else {
        return 0.0;
    };
    text.lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Starts a stock Mosquitto on a free loopback port, anonymous, QoS 1
/// queues large enough not to drop in a relay, logging only problems (a
/// log line per message would slow the baseline down).
pub fn mosquitto() -> Result<Mosquitto, mosquitto_compat::mosquitto::StartError> {
    Mosquitto::start_with(
        "log_type error\nlog_type warning\nmax_inflight_messages 100\nmax_queued_messages 100000\n",
    )
}

/// VmRSS of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time (user + system) a process has used so far, in seconds, from
/// /proc; `None` is this process.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is in parentheses and may
    // hold spaces: utime and stime are the 12th and 13th of them.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a constant of the running system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| ticks as f64 / per_second as f64)
}
