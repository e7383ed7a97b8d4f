//! Token checks for CONNECT, with a short-lived cache.
//!
//! rumqttd frames packets synchronously, so the guard checks a token inside
//! `Protocol::read_mut`. A cache hit costs a hash and a map lookup; a miss
//! runs one indexed query, inside `block_in_place` so the runtime moves other
//! connections off this worker meanwhile. Tokens are random, so a token that
//! is unknown now stays unknown: misses are cached too, which keeps a client
//! hammering with a bad token off the database.
//!
//! A token revoked on another node keeps working here for at most the cache
//! TTL; a token revoked on this node is dropped from the cache at once.

use protocol::UserName;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use store::{Store, StoreError};

use crate::blocking;

/// Most cached entries; the cache is emptied when it would grow past this.
const CACHE_CAPACITY: usize = 100_000;

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
}

impl Authenticator {
    pub fn new(store: Store, ttl: Duration) -> Authenticator {
        Authenticator {
            store,
            ttl,
            cache: Mutex::new(HashMap::new()),
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

    /// Forgets a token at once (after logout on this node).
    pub fn forget(&self, token: &str) {
        let key = store::tokens::token_hash(token);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
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
