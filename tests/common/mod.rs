//! Test harness: a real `bluetick serve` process on free loopback ports,
//! over a fresh SQLite or PostgreSQL database, and real MQTT clients.
#![allow(dead_code)]

pub mod at_rest;
pub mod chat;
pub mod groups;
pub mod haproxy;
pub mod http;
pub mod jobs;
pub mod media;
pub mod mqtt;
pub mod mqtt5;
pub mod nats;
pub mod rows;
pub mod tools;
pub mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};
pub use store::testing::TestDatabase;
pub use store::Backend;

/// A running server process, killed when dropped.
pub struct Server {
    child: Child,
    options: Options,
    pub mqtt: SocketAddr,
    pub ws: SocketAddr,
    pub http: SocketAddr,
    /// The private `/metrics` listener.
    pub metrics: SocketAddr,
    /// MQTT over TLS, when the options configure it.
    pub tls: Option<SocketAddr>,
    pub database: TestDatabase,
    pub data_dir: tempfile::TempDir,
    stderr_path: PathBuf,
}

/// How to start a server.
#[derive(Default, Clone)]
pub struct Options {
    /// Extra `BLUETICK_*` environment.
    pub env: Vec<(String, String)>,
    /// Extra command-line flags after `serve`.
    pub args: Vec<String>,
    /// The file-mode creation mask the server starts with, if not the
    /// test's own.
    pub umask: Option<u32>,
}

impl Options {
    pub fn env(mut self, key: &str, value: &str) -> Options {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn arg(mut self, arg: &str) -> Options {
        self.args.push(arg.to_owned());
        self
    }

    pub fn umask(mut self, mask: u32) -> Options {
        self.umask = Some(mask);
        self
    }
}

pub fn bluetick() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bluetick"))
}

/// `bluetick job run JOB` against the server's database, `skew` seconds in
/// the future (`BLUETICK_CLOCK_SKEW_SECS`). Returns what it printed.
pub fn run_job(server: &Server, job: &str, skew: i64) -> String {
    let output = bluetick()
        .args(["job", "run", job])
        .args(["--database-url", &server.database.url])
        .arg("--data-dir")
        .arg(server.data_dir.path())
        .env(store::clock::SKEW_VAR, skew.to_string())
        .output()
        .expect("run bluetick");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "job run {job}: {printed}");
    printed
}

/// A started process and the addresses it printed.
struct Started {
    child: Child,
    mqtt: SocketAddr,
    ws: SocketAddr,
    http: SocketAddr,
    metrics: SocketAddr,
    tls: Option<SocketAddr>,
}

impl Server {
    pub fn start(backend: Backend) -> Server {
        Server::start_with(backend, Options::default())
    }

    pub fn start_with(backend: Backend, options: Options) -> Server {
        Server::start_on(TestDatabase::new(backend), options)
    }

    /// Starts a server on `database` (e.g. another server's
    /// [`TestDatabase::share`]) with a data directory of its own.
    pub fn start_on(database: TestDatabase, options: Options) -> Server {
        let data_dir = tempfile::tempdir().expect("data dir");
        let stderr_path = data_dir.path().join("server.log");
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let started = spawn(
            &database,
            data_dir.path(),
            &stderr_path,
            &options,
            [any, any, any],
        );
        Server {
            child: started.child,
            options,
            mqtt: started.mqtt,
            ws: started.ws,
            http: started.http,
            metrics: started.metrics,
            tls: started.tls,
            database,
            data_dir,
            stderr_path,
        }
    }

    /// Kills the process with SIGKILL (no chance to clean up) and starts a
    /// new one on the same addresses, database and data directory.
    pub fn crash_and_restart(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
        let before = self.log();
        for addr in [self.mqtt, self.ws, self.http] {
            wait_until_free(addr);
        }
        let restarted_log = self.data_dir.path().join("server-restarted.log");
        let started = spawn(
            &self.database,
            self.data_dir.path(),
            &restarted_log,
            &self.options,
            [self.mqtt, self.ws, self.http],
        );
        let after = std::fs::read_to_string(&restarted_log).unwrap_or_default();
        std::fs::write(
            &self.stderr_path,
            format!("{before}\n--- SIGKILL and restart ---\n{after}"),
        )
        .ok();
        self.stderr_path = restarted_log;
        self.child = started.child;
        self.metrics = started.metrics;
    }

    /// [`Server::crash_and_restart`], the new process started with
    /// `options` instead (and keeping them for later restarts).
    pub fn crash_and_restart_with(&mut self, options: Options) {
        self.options = options;
        self.crash_and_restart();
    }

    /// Waits until the search indexer has passed message `id`, as its
    /// metric says: from then on every message up to `id` is searchable.
    pub async fn searchable(&self, id: i64) {
        let indexed = eventually(Duration::from_secs(60), || {
            self.metric("bluetick_search_indexed_through") >= id as f64
        })
        .await;
        assert!(
            indexed,
            "the search indexer did not reach message {id} in 60 s"
        );
    }

    /// Starts the process again after [`Server::terminate`], on the same
    /// database and data directory, on fresh ports.
    pub fn start_again(&mut self) {
        assert!(!self.is_running(), "start_again needs a stopped server");
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let log = self.data_dir.path().join("server-again.log");
        let started = spawn(
            &self.database,
            self.data_dir.path(),
            &log,
            &self.options,
            [any, any, any],
        );
        self.stderr_path = log;
        self.child = started.child;
        (self.mqtt, self.ws, self.http) = (started.mqtt, started.ws, started.http);
        self.metrics = started.metrics;
    }

    /// Registers `name` and returns a fresh token for it.
    pub fn register(&self, name: &str) -> String {
        let password = format!("{name}-password");
        let created = http::request(
            self.http,
            "POST",
            "/v1/users",
            Some(&credentials(name, &password)),
            None,
        );
        assert_eq!(created.status, 201, "register {name}: {}", created.body);
        self.login(name, &password)
    }

    /// Logs in and returns the token.
    pub fn login(&self, name: &str, password: &str) -> String {
        let issued = http::request(
            self.http,
            "POST",
            "/v1/tokens",
            Some(&credentials(name, password)),
            None,
        );
        assert_eq!(issued.status, 201, "login {name}: {}", issued.body);
        issued.json()["token"].as_str().expect("token").to_owned()
    }

    /// The value of one sample in `/metrics`, e.g.
    /// `bluetick_mqtt_refusals_total{reason="bad_credentials"}`; 0 if absent.
    pub fn metric(&self, sample: &str) -> f64 {
        let text = http::request(self.metrics, "GET", "/metrics", None, None).body;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                l.strip_prefix(sample)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .map(|v| v.trim().parse().expect("metric value"))
            .unwrap_or(0.0)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id, to read its memory from /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// Opens the server's database directly, as an operator would, with
    /// the server's message key.
    pub fn store(&self) -> store::Store {
        let options = store::StoreOptions {
            max_connections: 2,
            ..Default::default()
        };
        let store =
            store::Store::open(&self.database.url, &options).expect("open the server's database");
        let key = store::Sealer::load_or_create(&self.data_dir.path().join("message.key"))
            .expect("message key");
        store.with_sealer(key)
    }

    /// Opens the server's database directly with the key given as hex
    /// (for servers started with `BLUETICK_MESSAGES__KEY`).
    pub fn store_with_key(&self, hex: &str) -> store::Store {
        let options = store::StoreOptions {
            max_connections: 2,
            ..Default::default()
        };
        store::Store::open(&self.database.url, &options)
            .expect("open the server's database")
            .with_sealer(store::Sealer::from_hex(hex).expect("message key"))
    }

    /// The value of an environment setting this server was started with.
    pub fn configured(&self, key: &str) -> Option<&str> {
        self.options
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `bluetick ARGS --database-url URL --data-dir DIR` against this
    /// server's database and key, with the server's own configuration
    /// (its object store, say), as an operator would run it.
    pub fn operator(&self, args: &[&str]) -> std::process::Output {
        self.operator_command(args).output().expect("run bluetick")
    }

    /// The command [`Server::operator`] runs, to spawn it another way.
    pub fn operator_command(&self, args: &[&str]) -> Command {
        let mut command = bluetick();
        command
            .args(args)
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .args(["--database-url", &self.database.url])
            .arg("--data-dir")
            .arg(self.data_dir.path());
        command
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.log());
        }
    }
}

/// The JSON body of registration and login.
fn credentials(name: &str, password: &str) -> String {
    serde_json::json!({ "name": name, "password": password }).to_string()
}

/// Starts `bluetick serve` on `addrs` (mqtt, ws, http; port 0 for any)
/// and waits for its `ready` line.
/// Waits until `addr` can be listened on again. The restart reuses its
/// ports so that clients reconnect where they were; meanwhile another
/// test's short-lived socket may hold one (ports handed out for port 0
/// and for outgoing connections come from the same range).
fn wait_until_free(addr: SocketAddr) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpListener::bind(addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "{addr} stayed in use for 30 s after the crash");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn(
    database: &TestDatabase,
    data_dir: &std::path::Path,
    stderr_path: &std::path::Path,
    options: &Options,
    addrs: [SocketAddr; 3],
) -> Started {
    let program = match options.umask {
        // The shell sets the mask, then becomes the server.
        Some(mask) => {
            let mut shell = Command::new("sh");
            shell
                .arg("-c")
                .arg(format!("umask {mask:03o} && exec \"$0\" \"$@\""))
                .arg(env!("CARGO_BIN_EXE_bluetick"));
            shell
        }
        None => bluetick(),
    };
    let mut launch =
        launch::Launch::serve(program, data_dir, &database.url, addrs).log_to(stderr_path);
    launch
        .command()
        .args(&options.args)
        .env("RUST_LOG", "info,rumqttd=warn")
        // Gauges fresh within a second, and room for the many users tests
        // register from 127.0.0.1; a test's own options override these.
        .env("BLUETICK_HTTP__METRICS_REFRESH_SECS", "1")
        .env("BLUETICK_AUTH__MAX_REGISTRATIONS_PER_ADDRESS", "1000000");
    for (key, value) in &options.env {
        launch.command().env(key, value);
    }
    let started = launch
        .start(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let listening = started.listening;
    Started {
        child: started.child,
        mqtt: listening.mqtt,
        ws: listening.ws.expect("ws address line"),
        http: listening.http.expect("http address line"),
        metrics: listening.metrics.expect("metrics address line"),
        tls: listening.tls,
    }
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    check()
}
