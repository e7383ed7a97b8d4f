//! The one typed configuration of a bluetick server.
//!
//! Values come, from weakest to strongest, from the defaults below, the TOML
//! file (`bluetick.toml`, or `--config PATH`), `BLUETICK_*` environment
//! variables, and command-line flags. An environment variable names a key
//! with `__` between section and field: `BLUETICK_MQTT__MAX_CONNECTIONS=500`
//! sets `[mqtt] max_connections`, `BLUETICK_NODE=a` sets `node`. Unknown keys
//! are errors, so a typo never silently falls back to a default.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Prefix of environment overrides.
const ENV_PREFIX: &str = "BLUETICK_";
/// Environment variable naming the config file; not itself a config key.
pub const CONFIG_FILE_VAR: &str = "BLUETICK_CONFIG";
/// File read when no `--config` is given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "bluetick.toml";

/// Everything a server can be told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the SQLite database and local files live.
    pub data_dir: PathBuf,
    /// `postgres://…` for PostgreSQL; unset means SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// This server's name in the `sessions` table; unique among servers
    /// sharing a database.
    pub node: String,
    /// Accept anonymous MQTT clients with no ACL. Conformance testing only.
    pub dev_open: bool,
    pub mqtt: MqttConfig,
    pub http: HttpConfig,
    pub auth: AuthConfig,
    pub store: StoreConfig,
    pub messages: MessagesConfig,
    pub bridge: BridgeConfig,
    pub jobs: JobsConfig,
    pub media: MediaConfig,
    pub log: LogConfig,
    pub dead_letters: DeadLettersConfig,
    pub search: SearchConfig,
    pub web: WebConfig,
    pub quotas: QuotasConfig,
}

// --- The web client (issue 17) ---
/// The `[web]` section: the browser client served at `/` on the HTTP
/// listener.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// The MQTT-over-WebSocket URL the web client connects to, when the
    /// page cannot work it out (a proxy in front, TLS terminated
    /// elsewhere): e.g. `wss://chat.example.com/mqtt`. Empty: built from
    /// `mqtt.ws_addr` and the page's host name (`GET /v1/client-config`).
    pub ws_url: String,
}

/// The `[dead_letters]` section: how much of refused payloads is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeadLettersConfig {
    /// Bytes of a refused payload kept; a longer one keeps this prefix and
    /// its full length.
    pub kept_prefix: usize,
    /// Payload bytes kept per user per window; past it, dead letters are
    /// still recorded (code, reason, length) without their payload.
    pub bytes_per_user: u64,
    /// The window of `bytes_per_user`, in seconds.
    pub window_secs: u64,
}

impl Default for DeadLettersConfig {
    fn default() -> Self {
        let quota = store::dead_letters::DeadLetterQuota::default();
        DeadLettersConfig {
            kept_prefix: quota.kept_prefix,
            bytes_per_user: quota.bytes_per_user,
            window_secs: quota.window.as_secs(),
        }
    }
}

impl DeadLettersConfig {
    /// The store's form of these settings.
    pub fn quota(&self) -> store::dead_letters::DeadLetterQuota {
        store::dead_letters::DeadLetterQuota {
            kept_prefix: self.kept_prefix,
            bytes_per_user: self.bytes_per_user,
            window: Duration::from_secs(self.window_secs.max(1)),
        }
    }
}

/// Media uploads: where the bytes go, how they come back, and the limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// `local` (a directory) or `s3`.
    pub store: MediaStoreKind,
    /// The directory of the local store (default `DATA_DIR/media`).
    pub dir: Option<PathBuf>,
    /// S3 endpoint URL, e.g. `https://s3.eu-west-1.amazonaws.com` or
    /// `http://127.0.0.1:8333`.
    pub s3_endpoint: String,
    pub s3_bucket: String,
    pub s3_region: String,
    pub s3_access_key: String,
    pub s3_secret_key: String,
    /// `ENDPOINT/BUCKET/KEY` URLs instead of `BUCKET.ENDPOINT/KEY`; most
    /// self-hosted S3 servers need it.
    pub s3_path_style: bool,
    /// Keep every object under this folder of the bucket (e.g.
    /// `production`), so several deployments can share one bucket. Empty:
    /// the bucket's root.
    pub s3_prefix: String,
    /// How downloads from S3 are served: `proxy` streams the bytes through
    /// the server; `redirect` answers 302 to a presigned URL. The local
    /// store always proxies.
    pub download: DownloadMode,
    /// Lifetime of a presigned download URL, in seconds.
    pub presign_ttl_secs: u64,
    /// Largest upload, in bytes.
    pub max_size: u64,
    /// Content types an upload may declare. In the environment, a
    /// comma-separated list.
    #[serde(deserialize_with = "list_or_csv")]
    pub allowed_types: Vec<String>,
    /// Largest image a thumbnail is made from, in bytes; bigger images get
    /// none (decoding is bounded in pixels too).
    pub thumbnail_max_input: u64,

    // --- Hardening (issue 12): decoding and pending-upload bounds ---
    /// Most pixels (width × height, read from the image header before any
    /// pixel is decoded) of an image a thumbnail is made from.
    pub thumbnail_max_pixels: u64,
    /// Thumbnails decoded at once by this server; more requests wait.
    pub thumbnail_decodes: usize,
    /// Most uploads a user may hold that no message carries yet.
    pub max_pending_uploads: u64,
    /// Most bytes of uploads a user may hold that no message carries yet.
    pub max_pending_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaStoreKind {
    Local,
    S3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DownloadMode {
    Proxy,
    Redirect,
}

/// A list given either as a TOML array or as one comma-separated string
/// (which is what an environment variable can hold).
fn list_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(list) => list,
        Either::Csv(csv) => csv
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// The `[jobs]` section: the scheduler and the operations jobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Run the scheduler inside `serve`. Jobs can still be run by hand.
    pub enabled: bool,
    /// The zone schedules are read in: `UTC` or a fixed offset (`+05:30`).
    pub timezone: String,
    /// Job name → cron expression (seconds first; 5-field crontab lines
    /// fire at second 0) or `off`. Jobs not named keep their default.
    pub schedules: BTreeMap<String, String>,
    /// Write backups to this directory (as `backups/…`) instead of the
    /// media object store.
    pub backup_dir: Option<PathBuf>,
    /// Newest backups kept; older ones are deleted after each backup.
    pub backup_keep: usize,
    /// Dead letters older than this many days are deleted by cleanup.
    pub dead_letter_retention_days: u64,
    /// A node whose heartbeat is older than this is gone; cleanup deletes
    /// its `sessions` rows.
    pub stale_node_secs: u64,
    /// How often a server records its heartbeat.
    pub heartbeat_secs: u64,
    /// How long a job lease lasts without renewal.
    pub lease_secs: u64,
    /// Rows per batch in cleanup, archival and expiry.
    pub batch_size: usize,
    /// Messages older than this many days move to the archive table.
    pub archive_after_days: u64,
    /// Largest device backup accepted by `PUT /v1/me/backup`, in bytes.
    pub device_backup_max_bytes: usize,
    /// Device backups kept per user; older ones are deleted on upload.
    pub device_backups_kept: usize,

    // Restore bounds (hostile archives).
    /// Longest row `bluetick restore` reads from an archive, in bytes; a
    /// longer one is refused before it is read.
    pub restore_max_row_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessagesConfig {
    /// Largest message body, in bytes.
    pub max_body: usize,
    /// The 32-byte key that seals bodies at rest, as 64 hex digits. Unset:
    /// read from `key_file`, created there on first start.
    pub key: Option<String>,
    /// Where the key lives when `key` is unset (default `DATA_DIR/message.key`).
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeConfig {
    /// Most requests committed in one transaction.
    pub max_batch: usize,
    /// Bytes per segment of the broker's log for each filter the bridge
    /// subscribes to.
    pub segment_size: usize,
    /// Segments kept per bridge filter.
    pub segment_count: usize,
    /// Microseconds the bridge waits for more requests before committing
    /// a batch that is not full; at most 2000.
    pub linger_us: u64,
    /// Requests queued in the bridge above which it is behind and sheds
    /// typing and device presence (the queue holds at most 10,000).
    pub shed_above: usize,
    /// PUBACK a client's publish as soon as the bridge queues it, instead
    /// of after its commit (the ✓ still waits for the commit). Lifts
    /// rumqttd's 100-in-flight stop-and-wait; the broker is embedded, so
    /// nothing a client cannot resend is lost. `false` restores
    /// ack-after-commit.
    pub ack_on_arrival: bool,
}

// ---- [quotas]: per-user and per-device rate limits of the bridge ----

/// The `[quotas]` section: how fast one user or device may go before the
/// bridge refuses (sends) or coalesces (presence).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotasConfig {
    /// Sends one user may make per second, sustained (MQTT and HTTP
    /// together); more get a retryable `rate_limited` refusal.
    pub sends_per_second: f64,
    /// Sends one user may make in a burst.
    pub send_burst: u32,
    /// Shortest time between two applications of one user's device presence
    /// messages, in milliseconds; messages in between are coalesced (the
    /// last one wins), so watchers see at most one change per interval.
    pub presence_interval_ms: u64,
}

impl Default for QuotasConfig {
    fn default() -> Self {
        QuotasConfig {
            sends_per_second: 50.0,
            send_burst: 200,
            presence_interval_ms: 1_000,
        }
    }
}

// ---- end of [quotas] ----

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// MQTT 3.1.1 over TCP.
    pub addr: SocketAddr,
    /// MQTT over WebSocket, path `/mqtt`.
    pub ws_addr: SocketAddr,
    /// Serve WebSocket at all.
    pub ws_enabled: bool,
    /// MQTT over TLS; served when both certificate files are set.
    pub tls_addr: SocketAddr,
    /// PEM certificate chain (leaf first) for the TLS listener.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for the TLS listener.
    pub tls_key_file: Option<PathBuf>,
    /// Most client connections at once; more are refused with CONNACK 3.
    pub max_connections: usize,
    /// Largest MQTT packet accepted, in bytes.
    pub max_packet_size: usize,
    /// Most unacknowledged QoS 1 messages in flight to one client.
    pub max_inflight: usize,
    /// Seconds a new connection has to send CONNECT.
    pub connect_timeout_secs: u64,
    /// Seconds a WebSocket client has to finish its handshake.
    pub ws_handshake_timeout_secs: u64,
    /// Bytes per segment of each topic filter's in-memory log.
    pub segment_size: usize,
    /// Segments kept per topic filter.
    pub segment_count: usize,

    // Connections that have not logged in yet (issue 12); see
    // broker::prelogin. Each listener (TCP, WebSocket, TLS) applies them.
    /// Most connections per listener that have not logged in (no CONNACK
    /// 0 yet); more are closed at accept.
    pub max_pending_logins: usize,
    /// Most such connections from one source address, per listener.
    pub max_pending_logins_per_address: usize,
    /// Seconds a WebSocket or TLS connection has, from accept, to log in
    /// (TCP: `connect_timeout_secs`).
    pub login_timeout_secs: u64,
    /// Connect/disconnect events queued for the sessions writer; when
    /// full, connects are dropped (counted), disconnects wait.
    pub event_queue_capacity: usize,

    // --- Lean connections (issue 14) ---
    /// Listen backlog of each MQTT listener (TCP, WebSocket, TLS): TCP
    /// handshakes waiting to be accepted. Too small, and a connect storm
    /// overflows it and each dropped handshake costs its client a 1 s
    /// retry. The kernel caps it at `net.core.somaxconn`.
    pub listen_backlog: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// The HTTP API, health checks and metrics.
    pub addr: SocketAddr,
    /// Largest JSON request body, in bytes.
    pub max_json_body: usize,

    // --- Connection limits and the private metrics listener (issue 12) ---
    /// `/metrics`, on a listener of its own so that API users cannot read
    /// it; keep it on loopback or a private network.
    pub metrics_addr: SocketAddr,
    /// Seconds between refreshes of the gauges read from the database (job
    /// runs); a scrape never queries the database itself.
    pub metrics_refresh_secs: u64,
    /// Seconds a connection has to send a request's complete head, whether
    /// it is new or idle between keep-alive requests; then it is closed.
    pub header_timeout_secs: u64,
    /// Most open HTTP connections; more are answered 503 and closed.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// How long an issued token works.
    pub token_ttl_days: u64,
    /// How long the broker trusts a token check before asking the store again.
    pub cache_ttl_secs: u64,
    /// Failed logins allowed per user name within `login_window_secs`;
    /// further attempts get 429 until the oldest failure ages out.
    pub max_login_failures: usize,
    pub login_window_secs: u64,

    // --- Throttles per source address and the argon2 bound (issue 12) ---
    /// Failed logins allowed per source address (any names) within
    /// `login_window_secs`.
    pub max_login_failures_per_address: usize,
    /// Registrations allowed per source address within
    /// `registration_window_secs`.
    pub max_registrations_per_address: usize,
    pub registration_window_secs: u64,
    /// Password hashes (argon2, about 19 MiB each) computed at once; 0
    /// means one per CPU core.
    pub password_hash_concurrency: usize,
    /// Requests that may wait for a password hash slot; beyond that they
    /// get 503 with `Retry-After`.
    pub password_hash_queue: usize,
    // Token cache bounds (issue 12): random tokens must not evict valid ones.
    /// Valid tokens the broker keeps in memory; when full, stale entries
    /// make room and fresh ones are never evicted.
    pub cache_capacity: usize,
    /// Refused tokens the broker keeps in memory (so a client retrying a
    /// bad token stays off the database); emptied when full.
    pub negative_cache_capacity: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Most pooled database connections.
    pub max_connections: u32,
    /// SQLite: how often a background task checkpoints the WAL into the
    /// database file (passive: it never waits for readers or the writer).
    /// The writer itself never checkpoints, so commits never pay for it.
    pub checkpoint_interval_ms: u64,
    /// SQLite: page cache of each connection, in MiB.
    pub cache_mib: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `info,bluetick=debug`; `RUST_LOG`
    /// wins when set.
    pub filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            database_url: None,
            node: "local".to_owned(),
            dev_open: false,
            mqtt: MqttConfig::default(),
            http: HttpConfig::default(),
            auth: AuthConfig::default(),
            store: StoreConfig::default(),
            messages: MessagesConfig::default(),
            bridge: BridgeConfig::default(),
            jobs: JobsConfig::default(),
            media: MediaConfig::default(),
            log: LogConfig::default(),
            dead_letters: DeadLettersConfig::default(),
            search: SearchConfig::default(),
            web: WebConfig::default(),
            quotas: QuotasConfig::default(),
        }
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 1883)),
            ws_addr: SocketAddr::from(([127, 0, 0, 1], 8083)),
            ws_enabled: true,
            tls_addr: SocketAddr::from(([127, 0, 0, 1], 8883)),
            tls_cert_file: None,
            tls_key_file: None,
            max_connections: 100_000,
            max_packet_size: 256 * 1024,
            max_inflight: 100,
            connect_timeout_secs: 10,
            ws_handshake_timeout_secs: 10,
            segment_size: 1024 * 1024,
            segment_count: 10,

            max_pending_logins: 2048,
            max_pending_logins_per_address: 256,
            login_timeout_secs: 20,
            event_queue_capacity: 65_536,
            listen_backlog: 4096,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_json_body: 256 * 1024,
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 9464)),
            metrics_refresh_secs: 15,
            header_timeout_secs: 10,
            max_connections: 1024,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token_ttl_days: 30,
            cache_ttl_secs: 10,
            max_login_failures: 10,
            login_window_secs: 60,
            max_login_failures_per_address: 30,
            max_registrations_per_address: 10,
            registration_window_secs: 3600,
            password_hash_concurrency: 0,
            password_hash_queue: 16,

            cache_capacity: 100_000,
            negative_cache_capacity: 100_000,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_connections: 16,
            checkpoint_interval_ms: 1_000,
            cache_mib: 64,
        }
    }
}

impl Default for MessagesConfig {
    fn default() -> Self {
        MessagesConfig {
            max_body: protocol::messages::DEFAULT_MAX_BODY,
            key: None,
            key_file: None,
        }
    }
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            max_batch: 512,
            segment_size: 4 * 1024 * 1024,
            segment_count: 8,
            linger_us: 1_000,
            shed_above: 2_000,
            ack_on_arrival: true,
        }
    }
}

impl Default for JobsConfig {
    fn default() -> Self {
        let defaults = jobs::Settings::default();
        JobsConfig {
            enabled: true,
            timezone: "UTC".to_owned(),
            schedules: jobs::registry()
                .into_iter()
                .map(|job| (job.name.to_owned(), job.default_schedule.to_owned()))
                .collect(),
            backup_dir: None,
            backup_keep: defaults.backup_keep,
            dead_letter_retention_days: defaults.dead_letter_retention.as_secs() / 86_400,
            stale_node_secs: defaults.stale_node_after.as_secs(),
            heartbeat_secs: 10,
            lease_secs: defaults.lease_ttl.as_secs(),
            batch_size: defaults.batch_size,
            archive_after_days: defaults.archive_after.as_secs() / 86_400,
            device_backup_max_bytes: 16 * 1024 * 1024,
            device_backups_kept: 3,
            restore_max_row_bytes: jobs::restore::Limits::default().max_row_bytes,
        }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            store: MediaStoreKind::Local,
            dir: None,
            s3_endpoint: String::new(),
            s3_bucket: String::new(),
            s3_region: "us-east-1".to_owned(),
            s3_access_key: String::new(),
            s3_secret_key: String::new(),
            s3_path_style: true,
            s3_prefix: String::new(),
            download: DownloadMode::Proxy,
            presign_ttl_secs: 300,
            max_size: protocol::media::DEFAULT_MAX_SIZE,
            allowed_types: protocol::media::DEFAULT_ALLOWED_TYPES
                .iter()
                .map(|t| t.to_string())
                .collect(),
            thumbnail_max_input: 25 * 1024 * 1024,
            thumbnail_max_pixels: 24_000_000,
            thumbnail_decodes: 2,
            max_pending_uploads: 32,
            max_pending_bytes: 512 * 1024 * 1024,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            filter: "info,rumqttd=warn".to_owned(),
        }
    }
}

/// The search indexer, which writes the blind index of new messages off
/// the send path (`store::indexer`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// Run the indexer on this node. Off, new messages are not searchable
    /// until a node with it on catches up (each resumes from the cursor
    /// in the database).
    pub indexer_enabled: bool,
    /// How long the indexer sleeps when it has caught up, in ms: about the
    /// longest a new message waits to become searchable.
    pub index_interval_ms: u64,
    /// Most messages one indexer transaction covers (it also stops at
    /// 4,000 index rows, so a backlog never holds SQLite's writer long).
    pub index_batch: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            indexer_enabled: true,
            index_interval_ms: 200,
            index_batch: 500,
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {source}")]
    Toml {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads defaults, then `file` (or `bluetick.toml` if present), then the
    /// `BLUETICK_*` environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut table = toml::Table::new();
        let default_file = Path::new(DEFAULT_CONFIG_FILE);
        let path = file.or_else(|| default_file.exists().then_some(default_file));
        if let Some(path) = path {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            table = text.parse().map_err(|source| ConfigError::Toml {
                path: path.to_owned(),
                source,
            })?;
        }
        for (name, value) in std::env::vars() {
            if name == CONFIG_FILE_VAR || name == store::clock::SKEW_VAR {
                continue;
            }
            if let Some(key) = name.strip_prefix(ENV_PREFIX) {
                overlay(&mut table, key, &value);
            }
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_owned()))?;
        if config.mqtt.tls_cert_file.is_some() != config.mqtt.tls_key_file.is_some() {
            return Err(ConfigError::Invalid(
                "mqtt.tls_cert_file and mqtt.tls_key_file go together: set both to serve TLS"
                    .into(),
            ));
        }
        Ok(config)
    }

    /// The database URL in effect: the configured one, or SQLite in the
    /// data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("bluetick.db").display()),
        }
    }

    /// The TLS listener, when both certificate files are configured.
    pub fn tls(&self) -> Option<(SocketAddr, broker::tls::TlsFiles)> {
        let mqtt = &self.mqtt;
        Some((
            mqtt.tls_addr,
            broker::tls::TlsFiles {
                cert_file: mqtt.tls_cert_file.clone()?,
                key_file: mqtt.tls_key_file.clone()?,
            },
        ))
    }

    /// Where the message key file lives.
    pub fn key_file(&self) -> PathBuf {
        self.messages
            .key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("message.key"))
    }

    /// The job bodies' settings.
    pub fn job_settings(&self) -> jobs::Settings {
        let jobs = &self.jobs;
        jobs::Settings {
            backup_keep: jobs.backup_keep,
            dead_letter_retention: Duration::from_secs(jobs.dead_letter_retention_days * 86_400),
            stale_node_after: Duration::from_secs(jobs.stale_node_secs),
            lease_ttl: Duration::from_secs(jobs.lease_secs.max(3)),
            batch_size: jobs.batch_size,
            archive_after: Duration::from_secs(jobs.archive_after_days.max(1) * 86_400),
        }
    }

    /// What `bluetick restore` accepts from an archive.
    pub fn restore_limits(&self) -> jobs::restore::Limits {
        jobs::restore::Limits {
            max_row_bytes: self.jobs.restore_max_row_bytes,
        }
    }

    /// Where the local media store keeps its files.
    pub fn media_dir(&self) -> PathBuf {
        self.media
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("media"))
    }

    /// The configuration as TOML, with secrets replaced by `***`.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = self.database_url.as_deref().map(redact_url_password);
        shown.messages.key = self.messages.key.as_ref().map(|_| "***".to_owned());
        if !self.media.s3_secret_key.is_empty() {
            shown.media.s3_secret_key = "***".to_owned();
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// Sets `SECTION__FIELD=value` (lower-cased) in `table`. Values that parse
/// as TOML scalars (numbers, booleans) keep their type; anything else is a
/// string.
fn overlay(table: &mut toml::Table, key: &str, value: &str) {
    let path: Vec<String> = key.split("__").map(str::to_lowercase).collect();
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !v.is_table() && !v.is_array())
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let mut node = table;
    for (i, part) in path.iter().enumerate() {
        if i + 1 == path.len() {
            node.insert(part.clone(), parsed);
            return;
        }
        let entry = node
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(inner) => node = inner,
            _ => return,
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_nested_keys_with_types() {
        let mut table = toml::Table::new();
        overlay(&mut table, "MQTT__MAX_CONNECTIONS", "5");
        overlay(&mut table, "DEV_OPEN", "true");
        overlay(&mut table, "NODE", "edge-1");
        let config: Config = toml::Value::Table(table).try_into().unwrap();
        assert_eq!(config.mqtt.max_connections, 5);
        assert!(config.dev_open);
        assert_eq!(config.node, "edge-1");
    }

    #[test]
    fn allowed_media_types_come_as_a_list_or_comma_separated() {
        let mut table = toml::Table::new();
        overlay(&mut table, "MEDIA__ALLOWED_TYPES", "image/png, video/mp4");
        overlay(&mut table, "MEDIA__STORE", "s3");
        let config: Config = toml::Value::Table(table).try_into().unwrap();
        assert_eq!(config.media.allowed_types, ["image/png", "video/mp4"]);
        assert_eq!(config.media.store, MediaStoreKind::S3);
        let config: Config = toml::from_str("[media]\nallowed_types = [\"a/b\"]").unwrap();
        assert_eq!(config.media.allowed_types, ["a/b"]);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let mut table = toml::Table::new();
        overlay(&mut table, "MQTT__MAX_CONECTIONS", "5");
        assert!(toml::Value::Table(table).try_into::<Config>().is_err());
    }

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            redact_url_password("postgres://bt:hunter2@db:5432/bt"),
            "postgres://bt:***@db:5432/bt"
        );
        assert_eq!(
            redact_url_password("postgres://bt@db/bt"),
            "postgres://bt@db/bt"
        );
        let mut config = Config {
            database_url: Some("postgres://bt:hunter2@db/bt".into()),
            ..Config::default()
        };
        config.messages.key = Some("ab".repeat(32));
        config.media.s3_secret_key = "s3-hunter3".into();
        let shown = config.redacted_toml();
        assert!(!shown.contains("s3-hunter3"));
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains(&"ab".repeat(32)));
    }
}
