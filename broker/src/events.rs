//! Connection events the guard reports, and how they keep the `sessions`
//! table true.

use store::sessions::Session;
use store::Store;

/// Whether a connection came or went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A successful CONNACK was written.
    Connected,
    /// The connection is gone, however it ended.
    Disconnected,
}

/// One connection coming or going.
#[derive(Debug, Clone)]
pub struct ConnectionEvent {
    pub kind: EventKind,
    /// Unique per connection: `{node}:{counter}`.
    pub connection_id: String,
    /// The authenticated user; empty for dev-open clients.
    pub user: String,
    /// The MQTT client id.
    pub client_id: String,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// Applies one event to the `sessions` table. Events of the server's own
/// clients (no user) change nothing.
pub fn apply(store: &Store, node: &str, event: ConnectionEvent) -> Result<(), store::StoreError> {
    if event.user.is_empty() {
        return Ok(());
    }
    match event.kind {
        EventKind::Connected => store.open_session(&Session {
            connection_id: event.connection_id,
            user_name: event.user,
            client_id: event.client_id,
            node: node.to_owned(),
            connected_at: event.at_ms,
        }),
        EventKind::Disconnected => store.close_session(&event.connection_id),
    }
}
