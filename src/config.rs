//! The one typed configuration of a bluetick server.
//!
//! Values come, from weakest to strongest, from the defaults below, the TOML
//! file (`bluetick.toml`, or `--config PATH`), `BLUETICK_*` environment
//! variables, and command-line flags. An environment variable names a key
//! with `__` between section and field: `BLUETICK_MQTT__MAX_CONNECTIONS=500`
//! sets `[mqtt] max_connections`, `BLUETICK_NODE=a` sets `node`. Unknown keys
//! are errors, so a typo never silently falls back to a default.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

// Each section's typed settings are owned by the crate that uses them.
pub use api::config::{AuthConfig, HttpConfig, WebConfig};
pub use api::media_service::{MediaConfig, MediaStoreKind};
pub use broker::config::MqttConfig;
pub use jobs::config::JobsConfig;
pub use bridge::config::GroupsConfig;
pub use store::config::{DeadLettersConfig, SearchConfig, StoreConfig};

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
    pub cluster: cluster::config::ClusterSettings,
    pub groups: GroupsConfig,
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
    /// Most requests committed in one transaction. Unset: 512 on SQLite,
    /// 1024 on PostgreSQL ([`BridgeConfig::max_batch_for`]).
    pub max_batch: Option<usize>,
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
    /// The bridge talks to the embedded broker's router in process (a
    /// local link: no socket, no MQTT codec, nothing to acknowledge).
    /// `false`: as an MQTT client over loopback TCP, as before.
    pub in_process: bool,
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
            cluster: cluster::config::ClusterSettings::default(),
            groups: GroupsConfig::default(),
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

impl BridgeConfig {
    /// The batch limit on `backend`: `max_batch` if set, else what measured
    /// best there. A PostgreSQL batch pays round trips and a commit flush
    /// that a larger batch shares (10.4k → 12.4k messages/s at 1024); on
    /// SQLite a batch costs by the page, and 1024 measured 3% slower than
    /// 512 (docs/performance.md, sixth pass).
    pub fn max_batch_for(&self, backend: store::Backend) -> usize {
        let default = match backend {
            store::Backend::Sqlite => 512,
            store::Backend::Postgres => 1024,
        };
        self.max_batch.unwrap_or(default).max(1)
    }
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            max_batch: None,
            segment_size: 4 * 1024 * 1024,
            segment_count: 8,
            linger_us: 1_000,
            shed_above: 2_000,
            ack_on_arrival: true,
            in_process: true,
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

    /// Where the message key file lives.
    pub fn key_file(&self) -> PathBuf {
        self.messages
            .key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("message.key"))
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
