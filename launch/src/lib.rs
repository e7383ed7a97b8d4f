//! Starting a `bluetick serve` process and learning where it listens: the
//! one spawn the integration tests (`tests/common`) and the bench share.
//!
//! `bluetick serve` prints one line per listener on stdout
//! (`listening mqtt 127.0.0.1:40001`, `listening ws …`, `listening http …`,
//! `listening metrics …`, `listening tls …`) and then `ready`. [`Launch`]
//! builds the command (the listeners on the given addresses, port 0 for
//! any; a data directory; a database; stderr to a log file), and
//! [`Launch::start`] reads those lines until `ready` or a deadline.
//!
//! ```no_run
//! use std::time::Duration;
//! let any = "127.0.0.1:0".parse().unwrap();
//! let data = std::path::Path::new("/tmp/bt");
//! let launch = launch::Launch::serve(
//!     std::process::Command::new("bluetick"),
//!     data,
//!     "sqlite:///tmp/bt/bluetick.db",
//!     [any, any, any],
//! );
//! let started = launch.start(Duration::from_secs(60)).unwrap();
//! println!("MQTT on {}", started.listening.mqtt);
//! ```

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Name of the server's log (its stderr) in its data directory.
pub const LOG_FILE: &str = "server.log";

/// A `bluetick serve` command, ready to start.
pub struct Launch {
    command: Command,
    /// Where the server's stderr goes.
    log: PathBuf,
}

/// Where a started server listens, from its stdout.
#[derive(Debug, Clone, Copy)]
pub struct Listening {
    pub mqtt: SocketAddr,
    /// MQTT over WebSocket (absent when `mqtt.ws_enabled` is off).
    pub ws: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    /// The private `/metrics` listener.
    pub metrics: Option<SocketAddr>,
    /// MQTT over TLS, when configured.
    pub tls: Option<SocketAddr>,
}

/// A server that said `ready`.
pub struct Started {
    /// The process; the caller stops it.
    pub child: Child,
    pub listening: Listening,
}

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot start bluetick serve: {0}")]
    Spawn(#[from] std::io::Error),
    /// It exited, or did not say `ready` (with an MQTT address) in time.
    #[error("the server did not become ready; its log ({}):\n{log}", path.display())]
    NotReady { path: PathBuf, log: String },
}

impl Launch {
    /// `program` (the bluetick binary, or a wrapper that execs it with
    /// its own arguments) running `serve` with its MQTT, WebSocket and
    /// HTTP listeners on `addrs` (port 0 for any), the metrics listener on
    /// any loopback port, `data_dir` and `database_url`. Its stderr goes
    /// to [`LOG_FILE`] in `data_dir` (or [`Launch::log_to`]). Add
    /// environment and flags with [`Launch::command`]; later settings win.
    pub fn serve(
        mut program: Command,
        data_dir: &Path,
        database_url: &str,
        addrs: [SocketAddr; 3],
    ) -> Launch {
        program
            .arg("serve")
            .args(["--mqtt-addr", &addrs[0].to_string()])
            .args(["--ws-addr", &addrs[1].to_string()])
            .args(["--http-addr", &addrs[2].to_string()])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--database-url", database_url])
            .env("BLUETICK_HTTP__METRICS_ADDR", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        Launch {
            command: program,
            log: data_dir.join(LOG_FILE),
        }
    }

    /// The command, for more flags and environment.
    pub fn command(&mut self) -> &mut Command {
        &mut self.command
    }

    /// Sends the server's stderr to `log` instead of [`LOG_FILE`].
    pub fn log_to(mut self, log: &Path) -> Launch {
        self.log = log.to_owned();
        self
    }

    /// Starts the server and waits, at most `within`, for its `ready`
    /// line. A server that does not get there is killed.
    pub fn start(mut self, within: Duration) -> Result<Started, LaunchError> {
        self.command.stderr(std::fs::File::create(&self.log)?);
        let mut child = self.command.spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        // A thread reads, so that the wait has a deadline; it stops at the
        // first line after this function has returned (nothing is printed
        // after `ready`) or when the server exits.
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + within;
        let (mut mqtt, mut ws, mut http, mut metrics, mut tls) = (None, None, None, None, None);
        loop {
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(line) = lines_rx.recv_timeout(remaining) else {
                let _ = child.kill();
                let _ = child.wait();
                return Err(self.not_ready());
            };
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("listening"), Some("mqtt"), Some(a)) => mqtt = a.parse().ok(),
                (Some("listening"), Some("ws"), Some(a)) => ws = a.parse().ok(),
                (Some("listening"), Some("http"), Some(a)) => http = a.parse().ok(),
                (Some("listening"), Some("tls"), Some(a)) => tls = a.parse().ok(),
                (Some("listening"), Some("metrics"), Some(a)) => metrics = a.parse().ok(),
                (Some("ready"), None, None) => break,
                _ => {}
            }
        }
        let Some(mqtt) = mqtt else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(self.not_ready());
        };
        Ok(Started {
            child,
            listening: Listening {
                mqtt,
                ws,
                http,
                metrics,
                tls,
            },
        })
    }

    fn not_ready(&self) -> LaunchError {
        LaunchError::NotReady {
            path: self.log.clone(),
            log: std::fs::read_to_string(&self.log).unwrap_or_default(),
        }
    }
}
