//! The search indexer: writes the blind index of new messages off the send
//! path.
//!
//! Writing a message's search terms (about two rows per distinct word) in
//! the send transaction cost about a fifth of the send path's throughput.
//! Instead, the send path stores only the message, and the indexer follows
//! `messages` by id in transactions of its own: each [`Store::index_pass`]
//! reads the messages above its cursor, computes their terms with no lock
//! held, then writes the terms and moves the cursor in one transaction. The
//! cursor lives in the database (`search_cursor`), so after a crash or a
//! restart the indexer resumes where its last commit left it.
//!
//! # Invariant
//! Every message, hot or archived, with an id at or below the cursor has
//! its terms in the index (PostgreSQL's `search_terms` rows, SQLite's
//! FTS5 document: [`crate::search_file`]), and no term outlives its
//! message. The cursor moves only forward, in the transaction that writes
//! the terms of the messages it passes.
//!
//! Why ids can be trusted: the cursor passes only ids at or below a
//! *watermark*, an id below which no message can still commit.
//! - SQLite serialises writers, so the newest committed id is one.
//! - PostgreSQL hands out ids before commit, so two transactions may commit
//!   out of id order. The watermark is read under a brief `SHARE` lock on
//!   `messages`, which waits for the writers in flight (and holds new ones
//!   for the time of one `SELECT`).
//!
//! The index is derived data, which is what makes it cheap to write.
//! On SQLite it lives in a file of its own (`bluetick.search.db` beside
//! `bluetick.db`, see [`crate::db::search_path`]) with the cursor in it,
//! written only by the indexer's own connection with `synchronous=NORMAL`
//! ([`Store::index_transaction`]): a pass never takes the main file's
//! write lock, which every ✓ waits for. A power cut may lose the last
//! passes with their cursor, never half of one, and the indexer writes
//! them again from the cursor; a lost or deleted file is written again
//! from message 0. On PostgreSQL (one server) the index stays in the
//! database and a pass commits with `synchronous_commit = off`. Backups
//! leave the index out ([`DERIVED_TABLES`]); a restore sets the cursor
//! back to 0 ([`Store::restart_search_index`]).
//!
//! Archival and expiry: a pass reads both `messages` and the archive, so a
//! message archived before it was indexed is indexed from the archive. A
//! pass writes terms only for the messages still there when it writes,
//! and expiry deletes a message before its terms: whichever commits
//! first, no term is left behind. On PostgreSQL the pass locks the
//! messages `FOR KEY SHARE` and expiry deletes terms in its own
//! transaction. On SQLite expiry deletes the terms right after its commit
//! in the search file ([`Store::forget_search_terms`]); a pass takes the
//! search file's lock before it reads the main file, so a pass either
//! sees the message gone or commits before expiry's term delete runs. A
//! crash between expiry's two commits leaves terms of a deleted message:
//! search looks every id up in the message table (`messages_by_id`), so
//! such a message is never found; the terms cost only space until the
//! index is rebuilt.

use diesel::prelude::*;
use std::collections::HashSet;

use crate::db::{AnyConnection, Backend, Tx};
use crate::messages::open_media;
use crate::schema::{message_history, messages, messages_archive, search_cursor, search_terms};
use crate::search::{documents, terms_of, BlindIndex, TermRow};
use crate::{search_file, Store, StoreError};

/// Tables derived from `messages` by the indexer, which backups leave out
/// (on PostgreSQL; SQLite keeps them in the search file, which backups
/// never read): a restore sets the cursor back to 0
/// ([`Store::restart_search_index`]) and the server's indexer writes the
/// index again from the restored messages. It keeps backups smaller.
pub const DERIVED_TABLES: &[&str] = &["search_terms", "search_cursor"];

/// The name of the search index's row in `search_cursor`.
const CURSOR: &str = "search";

/// Most index terms one pass writes (a message is never split). A pass
/// holds the index's write lock (PostgreSQL: row locks on the messages it
/// indexes; SQLite: the search file's), which expiry waits for: a backlog
/// (a bulk import, an indexer back from a pause) is worked off in many
/// short transactions, not a few long ones.
const TERMS_PER_PASS: usize = 4_000;

/// What one indexer pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexPass {
    /// Messages whose terms this pass wrote.
    pub indexed: usize,
    /// Messages passed over because their body does not open with the
    /// current key (they stay unsearchable; logged).
    pub unreadable: usize,
    /// The cursor after the pass: every message at or below it is indexed.
    pub through: i64,
    /// The newest message id when the pass began; `newest - through` is
    /// how far the index lags behind.
    pub newest: i64,
}

impl IndexPass {
    /// Whether the pass stopped at its limit, with more to index.
    pub fn more(&self) -> bool {
        self.through < self.newest
    }
}

/// A message as the indexer reads it: id, sender, recipient, sealed body,
/// sealed media reference.
type Unindexed = (i64, String, String, Vec<u8>, Option<Vec<u8>>);

impl Store {
    /// Indexes up to `limit` messages above the cursor (fewer if their
    /// terms pass [`TERMS_PER_PASS`]) and moves it past them. A pass with nothing to do costs two indexed reads and no write.
    pub fn index_pass(&self, limit: usize) -> Result<IndexPass, StoreError> {
        let (cursor, newest) = {
            let mut conn = self.conn()?;
            (read_cursor(&mut conn)?, newest_id(&mut conn)?)
        };
        let Some(cursor) = cursor else {
            self.start_search_cursor()?;
            return self.index_pass(limit);
        };
        if newest <= cursor {
            return Ok(IndexPass {
                indexed: 0,
                unreadable: 0,
                through: cursor,
                newest: cursor,
            });
        }
        let watermark = match self.backend() {
            Backend::Sqlite => newest,
            Backend::Postgres => self.postgres_watermark()?,
        };
        let limit = limit.max(1);
        let rows: Vec<Unindexed> = {
            let mut conn = self.conn()?;
            on_backend!(&mut *conn, c => message_history::table
                .filter(message_history::id.gt(cursor))
                .filter(message_history::id.le(watermark))
                .order(message_history::id.asc())
                .limit(limit as i64)
                .select((
                    message_history::id,
                    message_history::sender,
                    message_history::recipient,
                    message_history::body,
                    message_history::media,
                ))
                .load(c))?
        };
        let read = rows.len();
        let index = BlindIndex::new(self.sealer()?);
        let (terms, unreadable, taken) = self.terms(&index, &rows)?;
        let rows = &rows[..taken];
        // Every row read was taken, and fewer than the limit: that was every
        // message up to the watermark. Otherwise the pass stops at its last.
        let through = match rows.last() {
            Some(&(id, ..)) if taken < read || read == limit => id,
            _ => watermark,
        };
        let ids: Vec<i64> = rows.iter().map(|row| row.0).collect();
        // Unsynced, on SQLite in the search file: the index is derived
        // data. A pass lost to a power cut rolls back with its cursor row
        // and is simply done again; the ✓ promise is untouched.
        let indexed = self.index_transaction(|tx| {
            if tx.lock_cursor()? != cursor {
                // Another node's indexer got here first; its pass stands.
                return Ok(None);
            }
            let present = tx.lock_present(&ids)?;
            let terms: Vec<TermRow<'_>> = terms
                .into_iter()
                .filter(|row| present.contains(&row.message_id))
                .collect();
            match &mut *tx.conn {
                // On SQLite one FTS5 document per message (`search_file`).
                // The pass holds the search file's lock and moves the
                // cursor with its documents, so none is there already.
                AnyConnection::Sqlite(c) => {
                    search_file::insert(c, &documents(&index, &terms))?
                }
                // On PostgreSQL one statement with a column per array: a
                // multi-row VALUES of 2,000 rows has 8,000 parameters, and
                // planning it cost more than the insert. It ignores a row
                // already there, which keeps a pass whole when a node of
                // the previous version, which indexed on send, shares the
                // database during an upgrade, and lets a restored database
                // be indexed again from 0 over rows an older backup carried.
                AnyConnection::Postgres(c) => insert_terms_unnested(c, terms)?,
            }
            on_backend!(&mut *tx.conn, c => diesel::update(search_cursor::table.find(CURSOR))
                .set(search_cursor::through.eq(through))
                .execute(c))?;
            Ok::<_, StoreError>(Some(present.len()))
        })?;
        Ok(match indexed {
            Some(indexed) => IndexPass {
                indexed,
                unreadable,
                through,
                newest: newest.max(through),
            },
            None => IndexPass {
                indexed: 0,
                unreadable: 0,
                through: cursor,
                newest,
            },
        })
    }

    /// The terms of the first of `rows`, as many as fit in
    /// [`TERMS_PER_PASS`] (at least one); how many could not be opened; and
    /// how many rows that covers.
    fn terms<'r>(
        &self,
        index: &BlindIndex,
        rows: &'r [Unindexed],
    ) -> Result<(Vec<TermRow<'r>>, usize, usize), StoreError> {
        let sealer = self.sealer()?;
        let mut terms = Vec::new();
        let mut unreadable = 0;
        let mut taken = 0;
        for (id, sender, recipient, body, media) in rows {
            if taken > 0 && terms.len() >= TERMS_PER_PASS {
                break;
            }
            taken += 1;
            let opened = sealer
                .open_string(body)
                .and_then(|body| Ok((body, open_media(sealer, media.as_deref())?)));
            match opened {
                Ok((body, media)) => {
                    // A media caption is searchable like a body.
                    let caption = media.as_ref().map_or("", |m| m.caption.as_str());
                    let text = format!("{body}\n{caption}");
                    terms.extend(terms_of(index, *id, sender, recipient, &text));
                }
                Err(error) => {
                    // One bad row must not stop the index for everyone.
                    unreadable += 1;
                    tracing::warn!(message = id, %error, "message not indexed: its body does not open");
                }
            }
        }
        Ok((terms, unreadable, taken))
    }

    /// PostgreSQL: the newest id once every transaction that may hold an
    /// older one has ended (see the module's invariant).
    fn postgres_watermark(&self) -> Result<i64, StoreError> {
        self.transaction(|tx| {
            on_backend!(&mut *tx.conn, c => diesel::connection::SimpleConnection::batch_execute(
                c,
                "SET LOCAL lock_timeout = '10s'; LOCK TABLE messages IN SHARE MODE",
            ))?;
            newest_id(tx.conn)
        })
    }

    /// Makes the indexer's cursor if there is none. On SQLite at 0: the
    /// search file is new (first start of this version, or lost), so every
    /// message is indexed again. On PostgreSQL at the newest message: a
    /// database from before the indexer (or restored from a backup taken
    /// before it) had every message indexed when it was sent. A server
    /// calls this before it takes messages, so none is stored unindexed
    /// below the cursor. Returns the cursor.
    pub fn start_search_cursor(&self) -> Result<i64, StoreError> {
        let start = |tx: &mut Tx<'_>| {
            if let Some(through) = read_cursor(tx.conn)? {
                return Ok(through);
            }
            let through = match tx.conn {
                AnyConnection::Sqlite(_) => 0,
                AnyConnection::Postgres(_) => newest_id(tx.conn)?,
            };
            on_backend!(&mut *tx.conn, c => diesel::insert_into(search_cursor::table)
                .values((search_cursor::indexer.eq(CURSOR), search_cursor::through.eq(through)))
                .execute(c))?;
            Ok(through)
        };
        match self.backend() {
            Backend::Sqlite => self.index_transaction(start),
            // Synced: a cursor lost to a crash would be made again at the
            // newest message, past messages never indexed.
            Backend::Postgres => self.transaction(start),
        }
    }

    /// Empties the index and sets the cursor to 0, so the indexer indexes
    /// every message again. A restore calls this before it loads: backups
    /// carry no index ([`DERIVED_TABLES`]), and on SQLite the search file
    /// may hold the index of the database that was there before.
    pub fn restart_search_index(&self) -> Result<(), StoreError> {
        self.index_transaction(|tx| {
            match &mut *tx.conn {
                AnyConnection::Sqlite(c) => search_file::clear(c)?,
                AnyConnection::Postgres(c) => {
                    diesel::delete(search_terms::table).execute(c)?;
                }
            }
            on_backend!(&mut *tx.conn, c => diesel::delete(search_cursor::table.find(CURSOR)).execute(c))?;
            on_backend!(&mut *tx.conn, c => diesel::insert_into(search_cursor::table)
                .values((search_cursor::indexer.eq(CURSOR), search_cursor::through.eq(0i64)))
                .execute(c))?;
            Ok(())
        })
    }

    /// SQLite: deletes the terms of messages `ids` from the search file,
    /// after expiry committed their deletion (see the module doc). On
    /// PostgreSQL expiry deletes them in its own transaction
    /// ([`Tx::forget_search_terms`]) and this does nothing.
    pub fn forget_search_terms(&self, ids: &[i64]) -> Result<(), StoreError> {
        if self.backend() == Backend::Sqlite && !ids.is_empty() {
            self.index_transaction(|tx| match &mut *tx.conn {
                AnyConnection::Sqlite(c) => search_file::forget(c, ids),
                AnyConnection::Postgres(_) => Ok(()),
            })?;
        }
        Ok(())
    }
}

impl Tx<'_> {
    /// PostgreSQL: deletes the terms of messages `ids` in this transaction,
    /// after the messages. On SQLite the main file's transaction cannot
    /// reach the search file: see [`Store::forget_search_terms`].
    pub fn forget_search_terms(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        if let AnyConnection::Postgres(c) = &mut *self.conn {
            diesel::delete(search_terms::table.filter(search_terms::message_id.eq_any(ids)))
                .execute(c)?;
        }
        Ok(())
    }

    /// The cursor, locked until this transaction ends (PostgreSQL; SQLite
    /// transactions hold the write lock anyway).
    fn lock_cursor(&mut self) -> Result<i64, StoreError> {
        let row = search_cursor::table
            .find(CURSOR)
            .select(search_cursor::through);
        Ok(match &mut *self.conn {
            AnyConnection::Sqlite(c) => row.first(c)?,
            AnyConnection::Postgres(c) => row.for_update().first(c)?,
        })
    }

    /// Which of `ids` (ascending) still exist, hot or archived, locked
    /// against deletion until this transaction ends (PostgreSQL).
    fn lock_present(&mut self, ids: &[i64]) -> Result<HashSet<i64>, StoreError> {
        let (Some(&first), Some(&last)) = (ids.first(), ids.last()) else {
            return Ok(HashSet::new());
        };
        // Hot first: a message archived meanwhile has left `messages` by
        // the time the second statement looks in the archive. A range, not
        // `IN (…)`: one statement diesel prepares once, instead of one per
        // pass with hundreds of binds; the range holds only ids the pass
        // read (all at or below the watermark) or skipped as unreadable.
        macro_rules! present {
            ($table:ident) => {{
                let rows = $table::table
                    .filter($table::id.between(first, last))
                    .select($table::id);
                match &mut *self.conn {
                    AnyConnection::Sqlite(c) => rows.load::<i64>(c)?,
                    AnyConnection::Postgres(c) => rows.for_key_share().load::<i64>(c)?,
                }
            }};
        }
        let mut present: HashSet<i64> = present!(messages).into_iter().collect();
        present.extend(present!(messages_archive));
        present.retain(|id| ids.binary_search(id).is_ok());
        Ok(present)
    }
}

/// A running indexer: one thread that follows `messages` until stopped.
///
/// It runs at the lowest CPU priority (nice 19 on Linux) because it is
/// derived work that nothing waits for: on two cores, an index pass that
/// took a core from the commit thread or the router put its own length
/// onto the p99 of every send (at 5,000 messages/s, p99 send → recipient
/// 26–31 ms with the indexer at normal priority, 12–14 ms without it).
/// When the machine is saturated the index lags instead
/// (`bluetick_search_index_lag_messages`), and catches up when it is not.
pub struct Follower {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Store {
    /// Starts the indexer's thread: passes of up to `batch` messages back
    /// to back while behind, one every `interval` once caught up. Each
    /// pass's outcome goes to `report` (metrics, logs).
    pub fn follow_messages(
        &self,
        batch: usize,
        interval: std::time::Duration,
        mut report: impl FnMut(&Result<IndexPass, StoreError>) + Send + 'static,
    ) -> std::io::Result<Follower> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let store = self.clone();
        let thread = std::thread::Builder::new()
            .name("search-indexer".into())
            .spawn(move || {
                lower_this_threads_priority();
                let mut through = 0;
                loop {
                    // A pass that panics (a bug) rolls back; the thread
                    // lives on and tries again after the interval.
                    let pass = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        store.index_pass(batch)
                    }));
                    match &pass {
                        Ok(outcome) => report(outcome),
                        Err(_) => tracing::error!("a search index pass panicked; retrying"),
                    }
                    let behind = match pass {
                        Ok(Ok(pass)) => {
                            let moved = pass.through > through;
                            through = pass.through;
                            pass.more() && moved
                        }
                        Ok(Err(_)) | Err(_) => false,
                    };
                    let wait = if behind { std::time::Duration::ZERO } else { interval };
                    match stopped.recv_timeout(wait) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                        _ => return,
                    }
                }
            })?;
        Ok(Follower {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Follower {
    /// Stops the indexer once its current pass has committed (a pass is
    /// at most [`TERMS_PER_PASS`] rows), and waits for that.
    pub fn stop(mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Gives the calling thread the lowest CPU priority, so it runs on what
/// the rest of the server leaves. Linux keeps a nice value per thread.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority only read and set this thread's
    // scheduling attribute; lowering one's own priority needs no privilege.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, 19) != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "the search indexer keeps normal CPU priority");
        }
    }
}

/// PostgreSQL: inserts `terms` in one statement of four array parameters,
/// skipping rows already there.
fn insert_terms_unnested(c: &mut diesel::PgConnection, terms: Vec<TermRow<'_>>) -> Result<(), StoreError> {
    use diesel::sql_types::{Array, BigInt, Binary, Text};
    if terms.is_empty() {
        return Ok(());
    }
    let mut users = Vec::with_capacity(terms.len());
    let mut words = Vec::with_capacity(terms.len());
    let mut ids = Vec::with_capacity(terms.len());
    let mut peers = Vec::with_capacity(terms.len());
    for row in terms {
        users.push(row.user_name);
        words.push(row.term);
        ids.push(row.message_id);
        peers.push(row.peer);
    }
    diesel::sql_query(
        "INSERT INTO search_terms (user_name, term, message_id, peer) \
         SELECT * FROM unnest($1::text[], $2::bytea[], $3::bigint[], $4::text[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind::<Array<Text>, _>(users)
    .bind::<Array<Binary>, _>(words)
    .bind::<Array<BigInt>, _>(ids)
    .bind::<Array<Text>, _>(peers)
    .execute(c)?;
    Ok(())
}

fn read_cursor(conn: &mut AnyConnection) -> Result<Option<i64>, StoreError> {
    Ok(on_backend!(conn, c => search_cursor::table
        .find(CURSOR)
        .select(search_cursor::through)
        .first(c)
        .optional())?)
}

/// The newest message id, hot or archived (0 when there is none).
fn newest_id(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    let hot: Option<i64> = on_backend!(&mut *conn, c => messages::table
        .select(diesel::dsl::max(messages::id))
        .first(c))?;
    let archived: Option<i64> = on_backend!(conn, c => messages_archive::table
        .select(diesel::dsl::max(messages_archive::id))
        .first(c))?;
    Ok(hot.unwrap_or(0).max(archived.unwrap_or(0)))
}
