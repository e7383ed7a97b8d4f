//! Presence: who is online, last seen, and the retained `presence/{user}`.
//!
//! A user is online while any of their devices is connected and not away.
//! [`Tracker::refresh`] is called after anything that may change that (a
//! connect or disconnect reported by the broker, a device's own presence
//! message); when the answer changes it publishes the retained presence,
//! and when the user goes offline it records last seen. It is the one
//! caller of [`store::Store::record_last_seen`].

use protocol::presence::Presence;
use crate::link::Outbox;
use std::collections::HashMap;
use std::sync::Mutex;
use store::Store;

/// Tracks and publishes presence.
pub struct Tracker {
    outbox: Outbox,
    store: Store,
    /// Online state last published per user, by this server.
    published: Mutex<HashMap<String, bool>>,
    /// Refreshes run one at a time, so the last one to read the database is
    /// the last one to publish: a connect and a device's presence message
    /// racing cannot leave a stale state retained.
    serial: tokio::sync::Mutex<()>,
}

impl Tracker {
    pub(crate) fn new(outbox: Outbox, store: Store) -> Tracker {
        Tracker {
            outbox,
            store,
            published: Mutex::new(HashMap::new()),
            serial: tokio::sync::Mutex::new(()),
        }
    }

    /// Re-reads whether `user` is online (an event about them happened at
    /// `at`, Unix ms) and publishes the change, if any.
    pub async fn refresh(&self, user: &str, at: i64) {
        let _turn = self.serial.lock().await;
        let (store, name) = (self.store.clone(), user.to_owned());
        let previous = self.lock().get(user).copied();
        let read = move || -> Result<(bool, Option<i64>), store::StoreError> {
            let (online, last_seen) = store.presence_of(&name)?;
            if !online && previous != Some(false) {
                store.record_last_seen(&name, at)?;
                return Ok((false, Some(at)));
            }
            Ok((online, last_seen))
        };
        let (online, last_seen) = match tokio::task::spawn_blocking(read).await {
            Ok(Ok(state)) => state,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, user, "presence update failed");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "presence task failed");
                return;
            }
        };
        if previous == Some(online) {
            return;
        }
        self.lock().insert(user.to_owned(), online);
        let payload = serde_json::to_vec(&Presence::visible(online, last_seen)).unwrap_or_default();
        let topic = protocol::topics::presence_topic(user);
        // Retained: a watcher subscribing later gets the last state.
        self.outbox.publish(topic, payload, true).await;
        metrics::counter!("bluetick_presence_changes_total", "online" => if online { "true" } else { "false" }).increment(1);
    }

    /// Whether `user` was online at the last change this server saw.
    pub fn is_online(&self, user: &str) -> bool {
        self.lock().get(user).copied().unwrap_or(false)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, bool>> {
        self.published.lock().unwrap_or_else(|p| p.into_inner())
    }
}
