//! Token checks for CONNECT, with a short-lived cache.
//!
//! rumqttd frames packets synchronously, so the guard checks a token inside
//! `Protocol::read_mut`. A cache hit costs a hash and a map lookup; a miss
//! runs one indexed query, inside `block_in_place` so the runtime moves other
//! connections off this worker meanwhile. Tokens are random, so a token that
//! is unknown now stays unknown: misses are cached too, which keeps a client
//! hammering with a bad token off the database.
//!
//! Valid and invalid answers live in two separately bounded maps. Anyone
//! can make up tokens, so a flood of random ones fills only the invalid
//! map (emptied wholesale when full, which costs only the attacker); the
//! valid map holds only tokens the store accepted, and when full it drops
//! its stale entries, never a fresh one, so valid users keep being
//! answered from memory (issue 12).
//!
//! A token revoked on this node is dropped from the cache at once, and
//! every live connection that logged in with it is closed on its next
//! packet (within one keepalive interval, since an idle client still
//! pings): the guard compares a revocation counter on each packet and looks
//! its token up only when the counter moved. Logouts on other nodes reach
//! this one through `token_revocations`, which
//! [`Authenticator::follow_revocations`] polls every couple of seconds,
//! with the same effect.

use protocol::UserName;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use store::{Store, StoreError};

use crate::blocking;
use crate::ratelog::RateLimitedLog;

/// How long a revocation is remembered for live connections: longer than
/// the longest MQTT keepalive (65,535 s), so every connection using the
/// token has sent a packet, and been closed, by then.
const REVOCATION_MEMORY: Duration = Duration::from_secs(24 * 3600);
/// How far back each poll of other nodes' revocations reads, in ms.
const REVOCATION_OVERLAP_MS: i64 = 60_000;

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// Unknown, revoked or expired token.
    BadCredentials,
    /// The store could not be asked.
    Unavailable,
}

/// A token the store accepted.
struct Valid {
    owner: UserName,
    /// The token's own expiry, in Unix milliseconds.
    expires_at: i64,
    /// When this entry stops being trusted.
    fresh_until: Instant,
}

/// How many token answers are kept in memory.
#[derive(Debug, Clone, Copy)]
pub struct CacheCapacity {
    /// Tokens the store accepted. When full, stale entries make room; if
    /// none is stale, the new answer is simply not cached.
    pub valid: usize,
    /// Tokens the store refused. When full, the map is emptied.
    pub invalid: usize,
}

impl Default for CacheCapacity {
    fn default() -> Self {
        CacheCapacity {
            valid: 100_000,
            invalid: 100_000,
        }
    }
}

/// Checks tokens against the store; shared by all connections.
pub struct Authenticator {
    store: Store,
    ttl: Duration,
    capacity: CacheCapacity,
    /// SHA-256 of tokens the store accepted → their owner.
    valid: Mutex<HashMap<String, Valid>>,
    /// SHA-256 of tokens the store refused → until when that is trusted.
    invalid: Mutex<HashMap<String, Instant>>,
    /// Says "store unavailable" once per interval during an outage, not
    /// once per CONNECT.
    outage_log: RateLimitedLog,
    /// SHA-256 of tokens revoked on this node → when.
    revoked: Mutex<HashMap<String, Instant>>,
    /// Bumped on every revocation, so connections re-check cheaply.
    revocations: AtomicU64,
}

impl Authenticator {
    pub fn new(store: Store, ttl: Duration) -> Authenticator {
        Authenticator::with_capacity(store, ttl, CacheCapacity::default())
    }

    pub fn with_capacity(store: Store, ttl: Duration, capacity: CacheCapacity) -> Authenticator {
        Authenticator {
            store,
            ttl,
            capacity,
            valid: Mutex::new(HashMap::new()),
            invalid: Mutex::new(HashMap::new()),
            outage_log: RateLimitedLog::default(),
            revoked: Mutex::new(HashMap::new()),
            revocations: AtomicU64::new(0),
        }
    }

    /// The user that owns `token`, if it is valid.
    pub fn authenticate(&self, token: &str) -> Result<UserName, AuthError> {
        let key = store::tokens::token_hash(token);
        let now_ms = store::clock::now_ms();
        if let Some(hit) = self.lookup(&key, now_ms) {
            return hit.ok_or(AuthError::BadCredentials);
        }
        let answer = blocking(|| self.store.authenticate_token(token));
        let fresh_until = Instant::now() + self.ttl;
        match answer {
            Ok(owner) => {
                store_checked("valid");
                self.remember_valid(key, owner.user.clone(), owner.expires_at, fresh_until);
                Ok(owner.user)
            }
            Err(StoreError::BadCredentials) => {
                store_checked("invalid");
                let mut invalid = lock(&self.invalid);
                if invalid.len() >= self.capacity.invalid {
                    invalid.clear();
                }
                invalid.insert(key, fresh_until);
                Err(AuthError::BadCredentials)
            }
            Err(e) => {
                store_checked("unavailable");
                self.outage_log.note(|more| {
                    tracing::warn!(error = %e, more_since_last_line = more, "token check failed: store unavailable")
                });
                Err(AuthError::Unavailable)
            }
        }
    }

    /// Caches a token the store accepted. A full map first drops its stale
    /// entries; if every entry is fresh, this answer is not cached (the
    /// store is asked again next time) rather than evicting a fresh one.
    fn remember_valid(&self, key: String, owner: UserName, expires_at: i64, fresh_until: Instant) {
        let mut valid = lock(&self.valid);
        if valid.len() >= self.capacity.valid && !valid.contains_key(&key) {
            let now = Instant::now();
            valid.retain(|_, entry| entry.fresh_until > now);
            if valid.len() >= self.capacity.valid {
                return;
            }
        }
        valid.insert(
            key,
            Valid {
                owner,
                expires_at,
                fresh_until,
            },
        );
    }

    /// Revokes a token at once on this node (after logout): it opens no
    /// new connection, and live ones that use it are closed.
    pub fn revoke(&self, token: &str) {
        self.revoke_hash(store::tokens::token_hash(token));
    }

    /// Revokes the token with this SHA-256, unless already known revoked
    /// (a logout on another node, told over the cluster's bus).
    pub fn revoke_hash(&self, key: String) {
        let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        if revoked.contains_key(&key) {
            return;
        }
        revoked.retain(|_, at| at.elapsed() < REVOCATION_MEMORY);
        lock(&self.valid).remove(&key);
        revoked.insert(key, Instant::now());
        self.revocations.fetch_add(1, Ordering::SeqCst);
    }

    /// Follows the revocations every node records (`token_revocations`),
    /// polling every `every`: a logout on another server closes this
    /// server's connections that used the token too, and its cached
    /// answer is dropped. Runs until the task is aborted.
    pub async fn follow_revocations(self: std::sync::Arc<Self>, every: Duration) {
        let mut newest = store::clock::now_ms();
        loop {
            tokio::time::sleep(every).await;
            // Records carry the revoking node's clock: reading a minute back
            // tolerates skew between nodes, and a record seen twice is a
            // no-op.
            let (reader, since) = (self.store.clone(), newest - REVOCATION_OVERLAP_MS);
            match tokio::task::spawn_blocking(move || reader.revocations_since(since)).await {
                Ok(Ok(found)) => {
                    for (hash, at) in found {
                        newest = newest.max(at);
                        self.revoke_hash(hash);
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not read token revocations; retrying")
                }
                Err(e) => tracing::error!(error = %e, "revocation poll failed"),
            }
        }
    }

    /// A number that changes whenever a token is revoked.
    pub(crate) fn revocations(&self) -> u64 {
        self.revocations.load(Ordering::SeqCst)
    }

    /// Was the token with this SHA-256 revoked on this node?
    pub(crate) fn is_revoked(&self, token_hash: &str) -> bool {
        self.revoked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(token_hash)
    }

    /// What the cache knows about a token: `Some(Some(owner))` valid,
    /// `Some(None)` invalid or expired, `None` ask the store.
    fn lookup(&self, key: &str, now_ms: i64) -> Option<Option<UserName>> {
        let now = Instant::now();
        if let Some(entry) = lock(&self.valid).get(key) {
            if entry.fresh_until >= now {
                return Some((entry.expires_at > now_ms).then(|| entry.owner.clone()));
            }
        }
        match lock(&self.invalid).get(key) {
            Some(fresh_until) if *fresh_until >= now => Some(None),
            _ => None,
        }
    }
}

/// Counts a token check that went to the store, by its answer.
fn store_checked(result: &'static str) {
    metrics::counter!("bluetick_auth_store_checks_total", "result" => result).increment(1);
}

/// Locks a cache map; a poisoned lock still holds valid entries.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
