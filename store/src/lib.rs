//! The source of truth of bluetick: schema, migrations and queries.
//!
//! # Layout
//! - [`db`]: the connection type that is either SQLite or PostgreSQL, the
//!   pool, and the embedded migrations for each backend. Every query in this
//!   crate is written once and runs on both, through [`on_backend!`].
//! - [`accounts`]: users and their argon2-hashed passwords.
//! - [`tokens`]: access tokens, random and stored only as a SHA-256 hash.
//! - [`encoding`]: hex, the text form of every digest, key and token.
//! - [`sessions`]: which MQTT client of which user is connected, since when,
//!   on which node (the seed's UserSessions), kept true by the guard.
//! - [`messages`]: messages, sealed at rest, deduplicated per sender.
//! - [`inbox`]: each user's gap-free queue of events, per-device acks and
//!   pruning. Its invariant is written at the top of the module.
//! - [`history`]: reading messages back (a conversation, the chat list),
//!   hot or archived alike, for their participants only.
//! - [`group_history`]: reading groups: a group's history inside the
//!   caller's membership windows, per-member receipts, group chat-list
//!   entries, and the visibility rule search, stars, media and export use.
//! - [`stars`]: per-user starred messages.
//! - [`search`]: the blind word index over sealed bodies, and search.
//! - `search_file`: SQLite's index, one FTS5 document per message in a
//!   file of its own.
//! - [`indexer`]: writes that index off the send path, following
//!   `messages` by id from a cursor kept in the database.
//! - [`timers`]: each chat's disappearing-message timer.
//! - [`groups`]: groups, membership windows (what a member may see), each
//!   member's receipt positions, the log of group changes. A group message
//!   is a `messages` row whose recipient is the group's reserved name.
//! - [`group_receipts`]: each member's delivered and read positions, and
//!   the aggregate receipts ("delivered to all", "read by all").
//! - [`archive`]: moving old messages to the archive table, in batches.
//! - [`expiry`]: deleting expired messages from every place they live.
//! - [`dead_letters`]: refused client payloads, for operators.
//! - [`media`]: uploaded media (the bytes live in an object store), access
//!   by ownership or by a message, deduplication, and orphans.
//! - [`presence`]: online state, last seen (one writer), privacy settings.
//! - [`sealing`]: the AEAD that keeps bodies encrypted at rest.
//! - [`job_runs`]: the record of operations jobs, their leases (one
//!   holder per job across servers) and node heartbeats.
//! - [`snapshot`]: a consistent read of every table as JSON rows, and
//!   loading them back (backup and restore).
//! - [`cleanup`]: the batched deletions of the cleanup job.
//! - [`device_backups`]: devices' own encrypted backups, newest N kept.
//! - [`export`]: one user's account and messages, for them to take away.
//! - [`config`]: the `[store]`, `[search]` and `[dead_letters]` sections
//!   of the server's configuration.
//!
//! Writes that must happen together go through [`Store::transaction`],
//! which hands out a [`Tx`]; the messaging functions take one.
//!
//! ```no_run
//! let store = store::Store::open("sqlite://data/bluetick.db", &store::StoreOptions::default())?;
//! store.migrate()?;
//! let alice = store.create_user("alice", "correct horse")?;
//! let token = store.issue_token(&alice, std::time::Duration::from_secs(3600))?;
//! assert_eq!(store.authenticate_token(&token.token)?.user, alice);
//! # Ok::<(), store::StoreError>(())
//! ```
//!
//! This crate owns SQL and nothing else: it never speaks MQTT or HTTP, and
//! it never decides policy that belongs to a caller (who may see what).

#[macro_use]
pub mod db;
pub mod accounts;
pub mod archive;
pub mod cleanup;
pub mod clock;
pub mod config;
pub mod dead_letters;
pub mod device_backups;
pub mod encoding;
mod error;
pub mod expiry;
pub mod export;
pub mod group_history;
pub mod group_receipts;
pub mod groups;
pub mod history;
pub mod inbox;
pub mod indexer;
pub mod job_runs;
pub mod media;
pub mod messages;
pub mod presence;
mod schema;
pub mod sealing;
pub mod search;
mod search_file;
pub mod sessions;
pub mod snapshot;
pub mod stars;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timers;
pub mod tokens;
pub mod visibility;

pub use db::{Backend, Store, StoreOptions, Tx};
pub use error::StoreError;
pub use sealing::Sealer;
pub use tokens::{IssuedToken, TokenOwner};
