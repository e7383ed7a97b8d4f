//! Connection events the guard reports, and the task that keeps the
//! `sessions` table true to them.

use store::sessions::Session;
use store::Store;
use tokio::sync::mpsc::UnboundedReceiver;

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

/// Applies events to the `sessions` table until the sending side closes.
/// A failed write is logged and does not stop later ones: the table is
/// rebuilt from live connections when the node restarts.
pub async fn record_sessions(
    store: Store,
    node: String,
    mut events: UnboundedReceiver<ConnectionEvent>,
) {
    while let Some(event) = events.recv().await {
        if event.user.is_empty() {
            continue;
        }
        let store = store.clone();
        let node = node.clone();
        let result = tokio::task::spawn_blocking(move || match event.kind {
            EventKind::Connected => store.open_session(&Session {
                connection_id: event.connection_id,
                user_name: event.user,
                client_id: event.client_id,
                node,
                connected_at: event.at_ms,
            }),
            EventKind::Disconnected => store.close_session(&event.connection_id),
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not update sessions table"),
            Err(e) => tracing::warn!(error = %e, "sessions writer task failed"),
        }
    }
}
