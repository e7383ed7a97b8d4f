//! The source of truth of bluetick: schema, migrations and queries.
//!
//! # Layout
//! - [`db`]: the connection type that is either SQLite or PostgreSQL, the
//!   pool, and the embedded migrations for each backend. Every query in this
//!   crate is written once and runs on both, through [`on_backend!`].
//! - [`accounts`]: users and their argon2-hashed passwords.
//! - [`tokens`]: access tokens, random and stored only as a SHA-256 hash.
//! - [`sessions`]: which MQTT client of which user is connected, since when,
//!   on which node (the seed's UserSessions), kept true by the guard.
//! - [`messages`]: messages, sealed at rest, deduplicated per sender.
//! - [`inbox`]: each user's gap-free queue of events, per-device acks and
//!   pruning. Its invariant is written at the top of the module.
//! - [`dead_letters`]: refused client payloads, for operators.
//! - [`media`]: uploaded media (the bytes live in an object store), access
//!   by ownership or by a message, deduplication, and orphans.
//! - [`presence`]: online state, last seen (one writer), privacy settings.
//! - [`sealing`]: the AEAD that keeps bodies encrypted at rest.
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
pub mod clock;
pub mod dead_letters;
mod error;
pub mod inbox;
pub mod media;
pub mod messages;
pub mod presence;
mod schema;
pub mod sealing;
pub mod sessions;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tokens;

pub use db::{Backend, Store, StoreOptions, Tx};
pub use error::StoreError;
pub use sealing::Sealer;
pub use tokens::{IssuedToken, TokenOwner};
