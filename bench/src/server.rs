//! The processes a bench measures: a bluetick server of its own, and a
//! stock Mosquitto for the baseline. Each is stopped when dropped.

use anyhow::Context;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process serving MQTT on `mqtt`.
pub struct Spawned {
    child: Child,
    pub mqtt: SocketAddr,
    /// The HTTP API (bluetick only).
    pub http: Option<SocketAddr>,
    /// The private `/metrics` listener (bluetick only).
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
    let log = std::fs::File::create(data_dir.path().join("server.log"))?;
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args([
            "serve",
            "--mqtt-addr",
            "127.0.0.1:0",
            "--ws-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["--database-url", &database_url])
        .env("RUST_LOG", "warn")
        .env("BLUETICK_HTTP__METRICS_ADDR", "127.0.0.1:0")
        // The bench's users send as fast as the pattern says and never
        // resend a refusal, so the server it starts lifts the per-user send
        // quota (a human-scale default of 50/s); a --target server keeps
        // its own.
        .env("BLUETICK_QUOTAS__SENDS_PER_SECOND", "1000000")
        .env("BLUETICK_QUOTAS__SEND_BURST", "1000000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    if dev_open {
        command.arg("--dev-open");
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().context("starting bluetick serve")?;
    let stdout = child.stdout.take().context("server stdout")?;
    let (mut mqtt, mut http, mut metrics) = (None, None, None);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(addr) = line.strip_prefix("listening mqtt ") {
            mqtt = addr.parse().ok();
        }
        if let Some(addr) = line.strip_prefix("listening http ") {
            http = addr.parse().ok();
        }
        if let Some(addr) = line.strip_prefix("listening metrics ") {
            metrics = addr.parse().ok();
        }
        if line == "ready" {
            break;
        }
    }
    let mqtt = mqtt.with_context(|| {
        format!(
            "the server did not start; see {}",
            data_dir.path().join("server.log").display()
        )
    })?;
    Ok(Spawned {
        child,
        mqtt,
        http,
        metrics,
        database_url,
        data_dir,
    })
}

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
/// queues large enough not to drop in a relay.
pub fn mosquitto() -> anyhow::Result<Spawned> {
    let data_dir = tempfile::tempdir()?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let conf = data_dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 100\nmax_queued_messages 100000\npersistence false\n"),
    )?;
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting mosquitto (apt-get install mosquitto)")?;
    let mqtt = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(mqtt).is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "mosquitto did not listen on {mqtt}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Spawned {
        child,
        mqtt,
        http: None,
        metrics: None,
        database_url: String::new(),
        data_dir,
    })
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
