//! Who may see whose presence, decided on every delivery.
//!
//! `presence/{user}` is one retained topic shared by every watcher, so the
//! rule cannot live in the payload. The guard asks [`PresencePolicy`] each
//! time the broker writes a presence message to a client (live updates and
//! retained messages alike) and replaces it with `{"hidden":true}` for a
//! viewer who may not see it. A change of settings therefore takes effect
//! on the very next delivery, whatever the viewer subscribed to earlier.
//!
//! Answers are cached briefly; a change made through this server's HTTP API
//! drops the user's entries at once, and one made elsewhere (the CLI,
//! another server) is seen within the TTL. A failed lookup hides.

use protocol::presence::{may_see_last_seen, Correspondence};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use store::Store;

use crate::blocking;

/// Most cached answers; the cache is emptied when it would grow past this.
const CACHE_CAPACITY: usize = 100_000;

/// Decides presence visibility between two users.
pub struct PresencePolicy {
    store: Store,
    ttl: Duration,
    /// (viewer, target) → (visible, when cached).
    cache: Mutex<HashMap<(String, String), (bool, Instant)>>,
    /// user name → (registered, when cached).
    users: Mutex<HashMap<String, (bool, Instant)>>,
}

impl PresencePolicy {
    pub fn new(store: Store, ttl: Duration) -> PresencePolicy {
        PresencePolicy {
            store,
            ttl,
            cache: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
        }
    }

    /// Is `name` a registered user? The broker keeps a log per topic filter
    /// for good, so presence subscriptions are only let through for names
    /// that exist. A failed lookup says no.
    pub fn is_user(&self, name: &str) -> bool {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&(registered, at)) = users.get(name) {
            if at.elapsed() < self.ttl {
                return registered;
            }
        }
        drop(users);
        let registered = match blocking(|| self.store.settings(name)) {
            Ok(_) => true,
            Err(store::StoreError::UnknownUser) => false,
            Err(e) => {
                tracing::warn!(error = %e, name, "user lookup failed; refusing");
                return false;
            }
        };
        users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if users.len() >= CACHE_CAPACITY {
            users.clear();
        }
        users.insert(name.to_owned(), (registered, Instant::now()));
        registered
    }

    /// May `viewer` see `target`'s presence and last seen?
    pub fn may_see(&self, viewer: &str, target: &str) -> bool {
        if viewer == target {
            return true;
        }
        let key = (viewer.to_owned(), target.to_owned());
        if let Some(&(visible, at)) = self.lock().get(&key) {
            if at.elapsed() < self.ttl {
                return visible;
            }
        }
        let visible = blocking(|| self.ask_store(viewer, target)).unwrap_or_else(|e| {
            tracing::warn!(error = %e, viewer, target, "presence check failed; hiding");
            false
        });
        let mut cache = self.lock();
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(key, (visible, Instant::now()));
        visible
    }

    /// Forgets every answer involving `user` (after their settings changed).
    pub fn forget(&self, user: &str) {
        self.lock()
            .retain(|(viewer, target), _| viewer != user && target != user);
    }

    fn ask_store(&self, viewer: &str, target: &str) -> Result<bool, store::StoreError> {
        let viewer_settings = self.store.settings(viewer)?;
        let target_settings = self.store.settings(target)?;
        // A contact is someone you have written to: each side's setting is
        // read against what that side wrote, so writing to someone never
        // makes their presence visible to you.
        let contacts = Correspondence {
            target_wrote_to_viewer: self.store.has_written_to(target, viewer)?,
            viewer_wrote_to_target: self.store.has_written_to(viewer, target)?,
        };
        Ok(may_see_last_seen(
            false,
            viewer_settings.last_seen,
            target_settings.last_seen,
            contacts,
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), (bool, Instant)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}
