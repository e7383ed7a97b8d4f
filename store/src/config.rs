//! The `[store]`, `[search]` and `[dead_letters]` sections of bluetick's
//! configuration: the connection pool and SQLite's cache and checkpoints,
//! the search indexer, and how much of refused payloads is kept
//! (bluetick's `src/config.rs` composes them with the other sections).

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The `[store]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Most pooled database connections.
    pub max_connections: u32,
    /// SQLite: how often a background task checkpoints the WAL into the
    /// database file. It copies beside the writer, and holds the writer
    /// only to finish (the frames committed meanwhile) once the WAL passes
    /// 16 MiB, so the WAL starts over instead of growing for as long as
    /// the load lasts (see `Store::checkpoint`).
    pub checkpoint_interval_ms: u64,
    /// SQLite: page cache of each connection, in MiB.
    pub cache_mib: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_connections: 16,
            checkpoint_interval_ms: 250,
            cache_mib: 64,
        }
    }
}

/// The search indexer, which writes the blind index of new messages off
/// the send path (`store::indexer`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// Run the indexer on this node. Off, new messages are not searchable
    /// until a node with it on catches up (each resumes from the cursor
    /// in the database).
    pub indexer_enabled: bool,
    /// How long the indexer sleeps when it has caught up, in ms: about the
    /// longest a new message waits to become searchable.
    pub index_interval_ms: u64,
    /// Most messages one indexer transaction covers (it also stops at
    /// 4,000 index rows, so a backlog never holds SQLite's writer long).
    pub index_batch: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            indexer_enabled: true,
            index_interval_ms: 200,
            index_batch: 500,
        }
    }
}

/// The `[dead_letters]` section: how much of refused payloads is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeadLettersConfig {
    /// Bytes of a refused payload kept; a longer one keeps this prefix and
    /// its full length.
    pub kept_prefix: usize,
    /// Payload bytes kept per user per window; past it, dead letters are
    /// still recorded (code, reason, length) without their payload.
    pub bytes_per_user: u64,
    /// The window of `bytes_per_user`, in seconds.
    pub window_secs: u64,
}

impl Default for DeadLettersConfig {
    fn default() -> Self {
        let quota = DeadLetterQuota::default();
        DeadLettersConfig {
            kept_prefix: quota.kept_prefix,
            bytes_per_user: quota.bytes_per_user,
            window_secs: quota.window.as_secs(),
        }
    }
}

impl DeadLettersConfig {
    /// The store's form of these settings.
    pub fn quota(&self) -> DeadLetterQuota {
        DeadLetterQuota {
            kept_prefix: self.kept_prefix,
            bytes_per_user: self.bytes_per_user,
            window: Duration::from_secs(self.window_secs.max(1)),
        }
    }
}

/// How much of refused payloads is kept, per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterQuota {
    /// Bytes of one payload kept; a longer one is cut to this prefix.
    pub kept_prefix: usize,
    /// Sealed payload bytes kept per user within `window`; past it, dead
    /// letters are recorded without their payload.
    pub bytes_per_user: u64,
    pub window: Duration,
}

impl Default for DeadLetterQuota {
    fn default() -> Self {
        DeadLetterQuota {
            kept_prefix: 1024,
            bytes_per_user: 1024 * 1024,
            window: Duration::from_secs(3600),
        }
    }
}
