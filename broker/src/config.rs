//! The `[mqtt]` section of bluetick's configuration: the listeners and the
//! bounds the broker applies (bluetick's `src/config.rs` composes it with
//! the other sections; keys and defaults are documented in the README).

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::tls::TlsFiles;

/// The `[mqtt]` section.
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

impl MqttConfig {
    /// The TLS listener, when both certificate files are configured.
    pub fn tls(&self) -> Option<(SocketAddr, TlsFiles)> {
        Some((
            self.tls_addr,
            TlsFiles {
                cert_file: self.tls_cert_file.clone()?,
                key_file: self.tls_key_file.clone()?,
            },
        ))
    }
}
