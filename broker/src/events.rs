//! Connection events the guard reports, the bounded queue they travel in,
//! and the task that keeps the `sessions` table true to them ([`record`]).
//!
//! The guard reports from inside rumqttd's synchronous codec, so it must
//! never wait; the consumer writes each event to the database, so it can
//! fall behind (a slow database, a connect flood). The queue between them
//! is therefore bounded ([`queue`]), and when it is full:
//!
//! - a **connected** event is dropped (counted in
//!   `bluetick_broker_events_dropped_total`), and that connection then
//!   reports no disconnect either: it is simply not in `sessions`;
//! - a **disconnected** event is never dropped, or a user would stay online
//!   for ever. It waits in an overflow list instead. While that list is not
//!   empty, connects are dropped too, so no connection is recorded that
//!   could add to it: it never holds more than the connections that were
//!   live when it started filling, which the connection cap bounds.
//!
//! # Invariant
//! The consumer receives a connection's disconnect only after its connect:
//! the overflow is read only when the channel is empty, under the same lock
//! that a sender holds to add to it, after its connect was already queued.

use protocol::UserName;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use store::sessions::Session;
use store::Store;
use tokio::sync::{mpsc, Notify};

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
    /// The authenticated user; `None` for dev-open clients and the
    /// server's own (the bridge), which `sessions` does not hold.
    pub user: Option<UserName>,
    /// The MQTT client id.
    pub client_id: String,
    /// SHA-256 of the token the connection logged in with (`None` for
    /// the server's own and dev-open clients): a logout on another node
    /// closes the connections that used it.
    pub token_hash: Option<String>,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// Applies one event to the `sessions` table. Events of the server's own
/// clients (no user) change nothing.
pub fn apply(store: &Store, node: &str, event: ConnectionEvent) -> Result<(), store::StoreError> {
    let Some(user) = event.user else {
        return Ok(());
    };
    match event.kind {
        EventKind::Connected => store.open_session(&Session {
            connection_id: event.connection_id,
            user_name: user.as_str().to_owned(),
            client_id: event.client_id,
            node: node.to_owned(),
            connected_at: event.at_ms,
        }),
        EventKind::Disconnected => store.close_session(&event.connection_id),
    }
}

/// Keeps the `sessions` table true to the guard's connect and disconnect
/// events, in the order they happened, until the broker stops; after each
/// user's event, `then(event)` (the bridge re-reads their presence, the
/// cluster follows where their devices are). Runs as one task of
/// `bluetick serve`.
pub async fn record<F, Done>(store: Store, node: String, mut events: EventReceiver, mut then: F)
where
    F: FnMut(ConnectionEvent) -> Done,
    Done: Future<Output = ()>,
{
    while let Some(event) = events.recv().await {
        if event.user.is_none() {
            continue;
        }
        let (writer, node, applied) = (store.clone(), node.clone(), event.clone());
        match tokio::task::spawn_blocking(move || apply(&writer, &node, applied)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not update the sessions table"),
            Err(e) => tracing::warn!(error = %e, "sessions writer task failed"),
        }
        then(event).await;
    }
}

/// Creates the queue from the guard to the sessions writer, holding at most
/// `capacity` events in its channel (and disconnects past that in its
/// overflow; see the module docs).
pub fn queue(capacity: usize) -> (EventSender, EventReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let overflow = Arc::new(Overflow::default());
    (
        EventSender {
            tx,
            overflow: overflow.clone(),
        },
        EventReceiver { rx, overflow },
    )
}

/// Disconnects that found the channel full.
#[derive(Default)]
struct Overflow {
    events: Mutex<VecDeque<ConnectionEvent>>,
    /// Wakes a receiver waiting on an empty channel.
    added: Notify,
}

impl Overflow {
    fn lock(&self) -> MutexGuard<'_, VecDeque<ConnectionEvent>> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What became of an event handed to [`EventSender::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Queued (or the server is stopping and nobody listens any more).
    Queued,
    /// A connect dropped because the queue was full: send no disconnect.
    Dropped,
}

/// The guard's end of the queue; never blocks.
#[derive(Clone)]
pub struct EventSender {
    tx: mpsc::Sender<ConnectionEvent>,
    overflow: Arc<Overflow>,
}

impl EventSender {
    pub fn send(&self, event: ConnectionEvent) -> Sent {
        // While disconnects wait in the overflow, no connect is recorded:
        // that is what bounds the overflow (see the module docs).
        if event.kind == EventKind::Connected && !self.overflow.lock().is_empty() {
            metrics::counter!("bluetick_broker_events_dropped_total").increment(1);
            return Sent::Dropped;
        }
        match self.tx.try_send(event) {
            Ok(()) => Sent::Queued,
            // The receiver lives as long as the server; if it is gone we are
            // shutting down and there is nobody left to tell.
            Err(mpsc::error::TrySendError::Closed(_)) => Sent::Queued,
            Err(mpsc::error::TrySendError::Full(event)) => match event.kind {
                EventKind::Connected => {
                    metrics::counter!("bluetick_broker_events_dropped_total").increment(1);
                    Sent::Dropped
                }
                EventKind::Disconnected => {
                    metrics::counter!("bluetick_broker_events_deferred_total").increment(1);
                    self.overflow.lock().push_back(event);
                    self.overflow.added.notify_one();
                    Sent::Queued
                }
            },
        }
    }
}

/// The sessions writer's end of the queue.
pub struct EventReceiver {
    rx: mpsc::Receiver<ConnectionEvent>,
    overflow: Arc<Overflow>,
}

impl EventReceiver {
    /// The next event, in an order that keeps each connection's connect
    /// before its disconnect; `None` once every sender is gone and all is
    /// read.
    pub async fn recv(&mut self) -> Option<ConnectionEvent> {
        loop {
            {
                let mut overflow = self.overflow.lock();
                match self.rx.try_recv() {
                    Ok(event) => return Some(event),
                    Err(mpsc::error::TryRecvError::Disconnected) => return overflow.pop_front(),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        if let Some(event) = overflow.pop_front() {
                            return Some(event);
                        }
                    }
                }
            }
            tokio::select! {
                event = self.rx.recv() => match event {
                    Some(event) => return Some(event),
                    None => return self.overflow.lock().pop_front(),
                },
                () = self.overflow.added.notified() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, connection: u32) -> ConnectionEvent {
        ConnectionEvent {
            kind,
            connection_id: format!("n:{connection}"),
            user: Some(UserName::parse("alice").unwrap()),
            client_id: "alice.phone".to_owned(),
            token_hash: None,
            at_ms: 0,
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_connects_keeps_disconnects_and_keeps_their_order() {
        let (tx, mut rx) = queue(2);
        assert_eq!(tx.send(event(EventKind::Connected, 1)), Sent::Queued);
        assert_eq!(tx.send(event(EventKind::Connected, 2)), Sent::Queued);
        assert_eq!(tx.send(event(EventKind::Connected, 3)), Sent::Dropped);
        assert_eq!(tx.send(event(EventKind::Disconnected, 1)), Sent::Queued);
        let first = rx.recv().await.expect("the first connect");
        assert_eq!(first.connection_id, "n:1");
        assert_eq!(
            tx.send(event(EventKind::Connected, 4)),
            Sent::Dropped,
            "no connect is recorded while disconnects wait"
        );
        drop(tx);
        let mut seen = Vec::new();
        while let Some(e) = rx.recv().await {
            seen.push((e.kind, e.connection_id));
        }
        assert_eq!(
            seen,
            [
                (EventKind::Connected, "n:2".to_owned()),
                (EventKind::Disconnected, "n:1".to_owned()),
            ]
        );
    }
}
