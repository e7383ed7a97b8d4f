//! Token checks for CONNECT, with a short-lived cache.
//!
//! rumqttd frames packets synchronously, so the guard checks a token inside
//! `Protocol::read_mut`. A cache hit costs a hash and a map lookup; a miss
//! runs one indexed query, inside `block_in_place` so the runtime moves other
//! connections off this worker meanwhile. Tokens are random, so a token that
//! is unknown now stays unknown: misses are cached too, which keeps a client
//! hammering with a bad token off the database.
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
use std::sync::Mutex;
use std::time::{Duration, Instant};
use store::{Store, StoreError};

use crate::blocking;

/// Most cached entries; the cache is emptied when it would grow past this.
const CACHE_CAPACITY: usize = 100_000;
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

struct Cached {
    /// The owner, or `None` for a token known to be bad.
    owner: Option<UserName>,
    /// The token's own expiry, in Unix milliseconds.
    expires_at: i64,
    /// When this entry stops being trusted.
    fresh_until: Instant,
}

/// Checks tokens against the store; shared by all connections.
pub struct Authenticator {
    store: Store,
    ttl: Duration,
    /// SHA-256 of the token → what the store said about it.
    cache: Mutex<HashMap<String, Cached>>,
    /// SHA-256 of tokens revoked on this node → when.
    revoked: Mutex<HashMap<String, Instant>>,
    /// Bumped on every revocation, so connections re-check cheaply.
    revocations: AtomicU64,
}

impl Authenticator {
    pub fn new(store: Store, ttl: Duration) -> Authenticator {
        Authenticator {
            store,
            ttl,
            cache: Mutex::new(HashMap::new()),
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
        let (owner, expires_at) = match answer {
            Ok(owner) => (Some(owner.user), owner.expires_at),
            Err(StoreError::BadCredentials) => (None, i64::MAX),
            Err(e) => {
                tracing::warn!(error = %e, "token check failed: store unavailable");
                return Err(AuthError::Unavailable);
            }
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        let fresh_until = Instant::now() + self.ttl;
        cache.insert(
            key,
            Cached {
                owner: owner.clone(),
                expires_at,
                fresh_until,
            },
        );
        owner.ok_or(AuthError::BadCredentials)
    }

    /// Revokes a token at once on this node (after logout): it opens no
    /// new connection, and live ones that use it are closed.
    pub fn revoke(&self, token: &str) {
        self.revoke_hash(store::tokens::token_hash(token));
    }

    /// Revokes the token with this SHA-256, unless already known revoked.
    fn revoke_hash(&self, key: String) {
        let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        if revoked.contains_key(&key) {
            return;
        }
        revoked.retain(|_, at| at.elapsed() < REVOCATION_MEMORY);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
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

    fn lookup(&self, key: &str, now_ms: i64) -> Option<Option<UserName>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let entry = cache.get(key)?;
        if entry.fresh_until < Instant::now() {
            return None;
        }
        if entry.expires_at <= now_ms {
            return Some(None);
        }
        Some(entry.owner.clone())
    }
}
