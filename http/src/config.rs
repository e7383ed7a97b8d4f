//! The `[http]`, `[auth]` and `[web]` sections of bluetick's
//! configuration: the API's listeners and limits, tokens and the login and
//! registration throttles, and what the web client is told (bluetick's
//! `src/config.rs` composes them with the other sections; `[media]` is in
//! [`media_service`](crate::media_service)).

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

use crate::throttle::{AccountLimits, PasswordGate, Throttle};

/// The `[http]` section.
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

/// The `[auth]` section.
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

impl AuthConfig {
    /// The login and registration throttles and the password gate.
    pub fn account_limits(&self) -> AccountLimits {
        let login_window = Duration::from_secs(self.login_window_secs);
        AccountLimits {
            login_names: Throttle::new(self.max_login_failures, login_window),
            login_sources: Throttle::new(self.max_login_failures_per_address, login_window),
            registrations: Throttle::new(
                self.max_registrations_per_address,
                Duration::from_secs(self.registration_window_secs),
            ),
            password_gate: PasswordGate::new(
                self.password_hash_concurrency,
                self.password_hash_queue,
                PASSWORD_GATE_MAX_WAIT,
            ),
        }
    }
}

/// Longest a login or registration waits in the password gate's queue.
const PASSWORD_GATE_MAX_WAIT: Duration = Duration::from_secs(10);

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
