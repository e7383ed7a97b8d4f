//! Why a relayed connection ended before its client closed it: MQTT over
//! TLS ([`crate::tls`]) and over WebSocket (`ws`) are terminated here and
//! relayed to the guarded TCP listener, and both end the same few ways.
//! The reason is logged per connection at debug level; a client only sees
//! its socket (or WebSocket) close.

use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::Error as WsError;

/// Why a relayed connection ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RelayError {
    /// The TLS or WebSocket handshake did not finish in time.
    #[error("handshake timed out")]
    HandshakeTimedOut,
    /// The TLS handshake failed (not TLS, no common cipher, …).
    #[error("TLS handshake failed: {0}")]
    TlsHandshake(#[source] std::io::Error),
    /// The WebSocket upgrade failed (not an upgrade, another path, …).
    #[error("WebSocket handshake failed: {0}")]
    WsHandshake(#[source] Box<WsError>),
    /// The guarded listener on loopback did not take the connection.
    #[error("broker unreachable: {0}")]
    BrokerUnreachable(#[source] std::io::Error),
    /// No CONNACK 0 before the login deadline.
    #[error("login timed out")]
    LoginTimedOut,
    /// A WebSocket frame or message over the MQTT packet limit.
    #[error("larger than the MQTT packet limit: {0}")]
    TooBig(#[source] CapacityError),
    /// The WebSocket failed after the upgrade.
    #[error("WebSocket: {0}")]
    WebSocket(#[source] Box<WsError>),
    /// Either socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<WsError> for RelayError {
    fn from(e: WsError) -> RelayError {
        match e {
            WsError::Capacity(e) => RelayError::TooBig(e),
            // Boxed: tungstenite's error is large, and this is a hot path.
            e => RelayError::WebSocket(Box::new(e)),
        }
    }
}
