//! The client's state on disk: the outbox of unsettled sends and `last_seq`.
//!
//! **Invariant: an outbox entry stays until the server's `ack` or `error`
//! event for its client id arrives.** A broker PUBACK settles nothing (the
//! broker may PUBACK a publish and then drop it), so an entry is written
//! before its first publish and deleted only by [`Outbox::settle`], which the
//! driver calls when it delivers the matching inbox event. Everything in
//! here is therefore safe to resend at any time: the server deduplicates on
//! (sender, client id).
//!
//! `last_seq` is the highest inbox seq delivered to the app, contiguously
//! from 1. It is written in the same transaction as the settlements that the
//! delivered events cause ([`Outbox::commit_delivery`]), before those events
//! reach the app and before the server is told (`ack`) that it may prune
//! them. It never moves backwards.
//!
//! **Order:** messages to one peer are stored by the server in the order
//! they were sent, because only the oldest entry per peer (its *head*) is
//! ever published. The broker may PUBACK and then drop a publish; were later
//! sends to the same peer already out, they would be stored first and the
//! resend would arrive out of order. The next entry for a peer goes out
//! when the head settles. Entries waiting behind a head have
//! `last_sent_at = NEVER_SENT`, so they are due the moment they become heads.
//!
//! A group message is kept like any other, its group standing in for the
//! peer ([`Recipient::key`]: `#ID`, which no user name can be), so a
//! group's messages are stored in the order they were sent, too.
//!
//! One SQLite file, opened by one process at a time, in WAL mode with
//! `synchronous = FULL` like the server's store, so a send that
//! [`Client::send`](crate::Client::send) returned survives a crash.
//!
//! Times are Unix milliseconds from the wall clock, passed in by the caller
//! so tests control them.

use std::path::Path;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use protocol::groups::GroupId;

use crate::error::ClientError;

mod schema {
    diesel::table! {
        outbox (client_id) {
            client_id -> Text,
            peer -> Text,
            body -> Text,
            created_at -> BigInt,
            last_sent_at -> BigInt,
            attempts -> BigInt,
            media -> Nullable<Text>,
        }
    }

    diesel::table! {
        state (key) {
            key -> Text,
            value -> BigInt,
        }
    }
}

use schema::{outbox, state};

/// Set on open. Same durability promise as the server's store: a committed
/// row survives a power cut.
const PRAGMAS: &str = "PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
PRAGMA busy_timeout = 10000;";

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS outbox (
    client_id TEXT PRIMARY KEY NOT NULL,
    peer TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_sent_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    media TEXT
);
CREATE INDEX IF NOT EXISTS outbox_peer ON outbox (peer);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
);";

const LAST_SEQ: &str = "last_seq";

/// `last_sent_at` of an entry queued behind its peer's head: earlier than
/// any cutoff, so it is due as soon as it becomes the head.
pub const NEVER_SENT: i64 = i64::MIN;

/// Who a send is for: a user, or a group I am in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Recipient {
    User(String),
    Group(GroupId),
}

impl Recipient {
    /// How the outbox's `peer` column names it: the user name, or `#ID`
    /// for a group (user names are `[a-z0-9_]`, so the two never meet).
    pub fn key(&self) -> String {
        match self {
            Recipient::User(name) => name.clone(),
            Recipient::Group(id) => format!("#{id}"),
        }
    }

    /// The recipient a `peer` column names.
    pub fn from_key(key: &str) -> Recipient {
        match key.strip_prefix('#').and_then(|id| id.parse().ok()) {
            Some(id) => Recipient::Group(id),
            None => Recipient::User(key.to_owned()),
        }
    }

    /// The `to` and `group` fields of a `send` (or `peer` and `group` of a
    /// `read`) for it: exactly one is set.
    pub fn fields(&self) -> (Option<String>, Option<GroupId>) {
        match self {
            Recipient::User(name) => (Some(name.clone()), None),
            Recipient::Group(id) => (None, Some(*id)),
        }
    }
}

/// One unsettled send.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, QueryableByName)]
#[diesel(table_name = outbox)]
pub struct Entry {
    /// The SDK's UUID for this message: the `id` of the `send` payload.
    pub client_id: String,
    /// The recipient's [`Recipient::key`].
    pub peer: String,
    pub body: String,
    /// When the app handed it to [`Client::send`](crate::Client::send).
    pub created_at: i64,
    /// When it was last given to the MQTT client for publishing.
    pub last_sent_at: i64,
    /// How many times it was given to the MQTT client.
    pub attempts: i64,
    /// The send's media reference as JSON, for a media message.
    pub media: Option<String>,
}

impl Entry {
    /// Who this send is for.
    pub fn recipient(&self) -> Recipient {
        Recipient::from_key(&self.peer)
    }
}

/// A row of `pragma_table_info`.
#[derive(QueryableByName)]
struct ColumnName {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}

/// The outbox and `last_seq`, on one SQLite connection.
pub struct Outbox {
    conn: SqliteConnection,
}

impl Outbox {
    /// Opens (creating if needed) the state file at `path`.
    pub fn open(path: &Path) -> Result<Outbox, ClientError> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    ClientError::Open(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
        }
        let url = path
            .to_str()
            .ok_or_else(|| ClientError::Open(format!("{} is not UTF-8", path.display())))?;
        let mut conn = SqliteConnection::establish(url)
            .map_err(|e| ClientError::Open(format!("{}: {e}", path.display())))?;
        conn.batch_execute(PRAGMAS)?;
        conn.batch_execute(SCHEMA)?;
        // State files from before media messages lack the column.
        let columns: Vec<ColumnName> =
            diesel::sql_query("SELECT name FROM pragma_table_info('outbox')").load(&mut conn)?;
        if !columns.iter().any(|c| c.name == "media") {
            conn.batch_execute("ALTER TABLE outbox ADD COLUMN media TEXT")?;
        }
        Ok(Outbox { conn })
    }

    /// Stores a new text send; see [`Outbox::add_with_media`].
    pub fn add(
        &mut self,
        client_id: &str,
        peer: &str,
        body: &str,
        now: i64,
    ) -> Result<bool, ClientError> {
        self.add_with_media(client_id, peer, body, None, now)
    }

    /// Stores a new send (`media`: its media reference as JSON) and says
    /// whether it is its peer's head, to be published now. A send queued
    /// behind an unsettled one to the same peer waits ([`NEVER_SENT`])
    /// until that one settles.
    pub fn add_with_media(
        &mut self,
        client_id: &str,
        peer: &str,
        body: &str,
        media: Option<&str>,
        now: i64,
    ) -> Result<bool, ClientError> {
        Ok(self.conn.immediate_transaction(|conn| {
            let ahead: i64 = outbox::table
                .filter(outbox::peer.eq(peer))
                .count()
                .get_result(conn)?;
            let head = ahead == 0;
            diesel::insert_into(outbox::table)
                .values((
                    outbox::client_id.eq(client_id),
                    outbox::peer.eq(peer),
                    outbox::body.eq(body),
                    outbox::created_at.eq(now),
                    outbox::last_sent_at.eq(if head { now } else { NEVER_SENT }),
                    outbox::attempts.eq(i64::from(head)),
                    outbox::media.eq(media),
                ))
                .execute(conn)?;
            Ok::<_, diesel::result::Error>(head)
        })?)
    }

    /// Every peer's head, oldest first, at most `limit` (for the resend
    /// after a CONNACK).
    pub fn all(&mut self, limit: i64) -> Result<Vec<Entry>, ClientError> {
        self.heads_sent_before(i64::MAX, limit)
    }

    /// Heads last sent at or before `now - resend_after` (including heads
    /// never sent), oldest first, at most `limit`.
    pub fn due(
        &mut self,
        now: i64,
        resend_after: i64,
        limit: i64,
    ) -> Result<Vec<Entry>, ClientError> {
        self.heads_sent_before(now.saturating_sub(resend_after), limit)
    }

    fn heads_sent_before(&mut self, cutoff: i64, limit: i64) -> Result<Vec<Entry>, ClientError> {
        use diesel::sql_types::BigInt;
        // rowid orders entries as they were added, even within one
        // millisecond; the head of a peer is its lowest rowid.
        Ok(diesel::sql_query(
            "SELECT client_id, peer, body, created_at, last_sent_at, attempts, media FROM outbox AS o \
             WHERE o.last_sent_at <= ? \
               AND o.rowid = (SELECT MIN(p.rowid) FROM outbox AS p WHERE p.peer = o.peer) \
             ORDER BY o.rowid LIMIT ?",
        )
        .bind::<BigInt, _>(cutoff)
        .bind::<BigInt, _>(limit)
        .load(&mut self.conn)?)
    }

    /// Records that these entries were given to the MQTT client at `now`.
    pub fn mark_sent(&mut self, client_ids: &[String], now: i64) -> Result<(), ClientError> {
        if client_ids.is_empty() {
            return Ok(());
        }
        self.conn.transaction(|conn| {
            for chunk in client_ids.chunks(500) {
                diesel::update(outbox::table.filter(outbox::client_id.eq_any(chunk)))
                    .set((
                        outbox::last_sent_at.eq(now),
                        outbox::attempts.eq(outbox::attempts + 1),
                    ))
                    .execute(conn)?;
            }
            Ok::<_, diesel::result::Error>(())
        })?;
        Ok(())
    }

    /// Deletes the entry for `client_id`; true if there was one.
    pub fn settle(&mut self, client_id: &str) -> Result<bool, ClientError> {
        Ok(remove(&mut self.conn, client_id)?)
    }

    /// Is `client_id` one of my unsettled sends?
    pub fn contains(&mut self, client_id: &str) -> Result<bool, ClientError> {
        let found: Option<String> = outbox::table
            .filter(outbox::client_id.eq(client_id))
            .select(outbox::client_id)
            .first(&mut self.conn)
            .optional()?;
        Ok(found.is_some())
    }

    /// How many sends are unsettled.
    pub fn len(&mut self) -> Result<usize, ClientError> {
        let n: i64 = outbox::table.count().get_result(&mut self.conn)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Is the outbox empty?
    pub fn is_empty(&mut self) -> Result<bool, ClientError> {
        Ok(self.len()? == 0)
    }

    /// The persisted `last_seq` (0 for a fresh file).
    pub fn last_seq(&mut self) -> Result<i64, ClientError> {
        Ok(read_last_seq(&mut self.conn)?)
    }

    /// Deletes the entries a burst of delivered events settled (`settle`:
    /// client ids named by an ack or a final error) and moves `last_seq` to
    /// `last_seq` (never backwards), in one transaction. Returns, for each
    /// client id, whether an entry was there.
    pub fn commit_delivery(
        &mut self,
        settle: &[String],
        last_seq: i64,
    ) -> Result<Vec<bool>, ClientError> {
        Ok(self.conn.transaction(|conn| {
            let mut found = Vec::with_capacity(settle.len());
            for client_id in settle {
                found.push(remove(conn, client_id)?);
            }
            let current = read_last_seq(conn)?;
            if last_seq > current {
                diesel::replace_into(state::table)
                    .values((state::key.eq(LAST_SEQ), state::value.eq(last_seq)))
                    .execute(conn)?;
            }
            Ok::<_, diesel::result::Error>(found)
        })?)
    }

    /// Moves `last_seq` forward to `seq` (ignored if not ahead).
    pub fn set_last_seq(&mut self, seq: i64) -> Result<(), ClientError> {
        self.commit_delivery(&[], seq).map(drop)
    }
}

fn remove(conn: &mut SqliteConnection, client_id: &str) -> Result<bool, diesel::result::Error> {
    let n = diesel::delete(outbox::table.filter(outbox::client_id.eq(client_id))).execute(conn)?;
    Ok(n > 0)
}

fn read_last_seq(conn: &mut SqliteConnection) -> Result<i64, diesel::result::Error> {
    let value: Option<i64> = state::table
        .filter(state::key.eq(LAST_SEQ))
        .select(state::value)
        .first(conn)
        .optional()?;
    Ok(value.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &tempfile::TempDir) -> Outbox {
        Outbox::open(&dir.path().join("state.db")).unwrap()
    }

    fn ids(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.client_id.as_str()).collect()
    }

    #[test]
    fn a_fresh_file_is_empty_with_last_seq_zero() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = open(&dir);
        assert_eq!(ob.len().unwrap(), 0);
        assert!(ob.is_empty().unwrap());
        assert_eq!(ob.last_seq().unwrap(), 0);
        assert!(ob.all(100).unwrap().is_empty());
    }

    #[test]
    fn a_state_file_from_before_media_gains_the_column_and_keeps_its_sends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut old = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        old.batch_execute(
            "CREATE TABLE outbox (client_id TEXT PRIMARY KEY NOT NULL, peer TEXT NOT NULL, \
             body TEXT NOT NULL, created_at INTEGER NOT NULL, last_sent_at INTEGER NOT NULL, \
             attempts INTEGER NOT NULL); \
             INSERT INTO outbox VALUES ('m1', 'bob', 'hi', 1, 1, 1);",
        )
        .unwrap();
        drop(old);
        let mut ob = Outbox::open(&path).unwrap();
        assert_eq!(ob.all(10).unwrap()[0].media, None);
        ob.add_with_media("m2", "carol", "", Some(r#"{"id":"abc"}"#), 2)
            .unwrap();
        let all = ob.all(10).unwrap();
        assert_eq!(ids(&all), ["m1", "m2"]);
        assert_eq!(all[1].media.as_deref(), Some(r#"{"id":"abc"}"#));
    }

    #[test]
    fn a_group_is_its_own_queue_and_never_taken_for_a_user() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = open(&dir);
        let group = Recipient::Group(7);
        assert_eq!(Recipient::from_key(&group.key()), group);
        assert_eq!(Recipient::from_key("bob"), Recipient::User("bob".into()));
        assert!(ob.add("g1", &group.key(), "to the group", 1).unwrap());
        assert!(ob.add("b1", "bob", "to bob", 1).unwrap(), "bob's queue is another");
        assert!(!ob.add("g2", &group.key(), "behind g1", 1).unwrap());
        let heads = ob.all(10).unwrap();
        assert_eq!(ids(&heads), ["g1", "b1"]);
        assert_eq!(heads[0].recipient().fields(), (None, Some(7)));
    }

    #[test]
    fn the_parent_directory_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/state.db");
        let mut ob = Outbox::open(&path).unwrap();
        ob.add("m1", "bob", "hi", 1).unwrap();
        assert!(path.exists());
    }

    #[test]
    fn heads_are_listed_in_the_order_they_were_added() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = open(&dir);
        assert!(ob.add("m2", "bob", "second", 2_000).unwrap());
        assert!(ob.add("m1", "carol", "first", 1_000).unwrap());
        assert!(
            !ob.add("m3", "bob", "third", 3_000).unwrap(),
            "queued behind m2"
        );
        let all = ob.all(100).unwrap();
        assert_eq!(ids(&all), ["m2", "m1"]);
        assert_eq!(
            all[1],
            Entry {
                client_id: "m1".into(),
                peer: "carol".into(),
                body: "first".into(),
                created_at: 1_000,
                last_sent_at: 1_000,
                attempts: 1,
                media: None,
            }
        );
        assert_eq!(ob.len().unwrap(), 3);
        assert_eq!(ids(&ob.all(1).unwrap()), ["m2"]);
    }

    #[test]
    fn a_send_waits_behind_an_unsettled_one_to_the_same_peer() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = open(&dir);
        assert!(ob.add("a1", "bob", "1", 1_000).unwrap());
        assert!(!ob.add("a2", "bob", "2", 1_000).unwrap());
        assert!(!ob.add("a3", "bob", "3", 1_000).unwrap());
        assert_eq!(ids(&ob.due(1_500, 3_000, 100).unwrap()), Vec::<&str>::new());
        // When the head settles, the next one is due at once, then the next.
        assert!(ob.settle("a1").unwrap());
        assert_eq!(ids(&ob.due(1_500, 3_000, 100).unwrap()), ["a2"]);
        ob.mark_sent(&["a2".to_string()], 1_500).unwrap();
        assert_eq!(ids(&ob.due(1_600, 3_000, 100).unwrap()), Vec::<&str>::new());
        assert!(ob.settle("a2").unwrap());
        assert_eq!(ids(&ob.due(1_600, 3_000, 100).unwrap()), ["a3"]);
    }

    #[test]
    fn a_client_id_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = open(&dir);
        ob.add("m1", "bob", "hi", 1).unwrap();
        assert!(matches!(
            ob.add("m1", "bob", "hi", 2),
            Err(ClientError::Db(_))
        ));
        assert_eq!(ob.len().unwrap(), 1);
    }

    #[test]
    fn due_lists_heads_not_sent_for_resend_after() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = open(&dir);
        ob.add("old", "bob", "a", 1_000).unwrap();
        ob.add("new", "carol", "b", 3_500).unwrap();
        // At 4 000 with a 3 000 ms timeout, only what was sent by 1 000 is due.
        assert_eq!(ids(&ob.due(4_000, 3_000, 100).unwrap()), ["old"]);
        assert_eq!(ids(&ob.due(3_999, 3_000, 100).unwrap()), Vec::<&str>::new());
        // Exactly on the boundary counts as due.
        assert_eq!(ids(&ob.due(6_500, 3_000, 100).unwrap()), ["old", "new"]);
        assert_eq!(ids(&ob.due(6_500, 3_000, 1).unwrap()), ["old"]);
    }

    #[test]
    fn mark_sent_restarts_the_timer_and_counts_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = open(&dir);
        ob.add("a", "bob", "a", 1_000).unwrap();
        ob.add("b", "carol", "b", 1_000).unwrap();
        ob.mark_sent(&["a".to_string()], 4_000).unwrap();
        ob.mark_sent(&[], 4_000).unwrap();
        assert_eq!(ids(&ob.due(5_000, 3_000, 100).unwrap()), ["b"]);
        let all = ob.all(100).unwrap();
        assert_eq!((all[0].last_sent_at, all[0].attempts), (4_000, 2));
        assert_eq!((all[1].last_sent_at, all[1].attempts), (1_000, 1));
        // created_at is untouched, so the resend order stays the send order.
        assert_eq!(all[0].created_at, 1_000);
        assert_eq!(ids(&ob.due(7_000, 3_000, 100).unwrap()), ["a", "b"]);
    }

    #[test]
    fn mark_sent_handles_many_ids() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = open(&dir);
        let many: Vec<String> = (0..1_200).map(|i| format!("m{i}")).collect();
        for id in &many {
            ob.add(id, "bob", "x", 0).unwrap();
        }
        ob.mark_sent(&many, 10_000).unwrap();
        assert!(ob.due(10_000, 1, 2_000).unwrap().is_empty());
        assert!(ob.all(2_000).unwrap().iter().all(|e| e.attempts == 2));
    }

    #[test]
    fn settle_removes_exactly_that_entry_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = open(&dir);
        ob.add("a", "bob", "a", 1).unwrap();
        ob.add("b", "bob", "b", 2).unwrap();
        assert!(ob.contains("a").unwrap());
        assert!(ob.settle("a").unwrap());
        assert!(!ob.settle("a").unwrap(), "settling twice is a no-op");
        assert!(!ob.settle("never-sent").unwrap());
        assert!(!ob.contains("a").unwrap());
        assert_eq!(ids(&ob.all(100).unwrap()), ["b"]);
        assert_eq!(ob.len().unwrap(), 1);
    }

    #[test]
    fn commit_delivery_settles_and_moves_last_seq_together() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = open(&dir);
        ob.add("a", "bob", "a", 1).unwrap();
        let found = ob
            .commit_delivery(&["a".to_string(), "zzz".to_string()], 7)
            .unwrap();
        assert_eq!(found, [true, false]);
        assert_eq!(ob.last_seq().unwrap(), 7);
        assert!(ob.is_empty().unwrap());
        // last_seq never moves backwards.
        ob.commit_delivery(&[], 3).unwrap();
        assert_eq!(ob.last_seq().unwrap(), 7);
        ob.set_last_seq(9).unwrap();
        assert_eq!(ob.last_seq().unwrap(), 9);
    }

    #[test]
    fn state_survives_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut ob = open(&dir);
            ob.add("a", "bob", "hello", 1_000).unwrap();
            ob.add("b", "carol", "hi", 2_000).unwrap();
            ob.mark_sent(&["b".to_string()], 5_000).unwrap();
            ob.commit_delivery(&["a".to_string()], 42).unwrap();
        }
        let mut ob = open(&dir);
        assert_eq!(ob.last_seq().unwrap(), 42);
        assert_eq!(
            ob.all(100).unwrap(),
            [Entry {
                client_id: "b".into(),
                peer: "carol".into(),
                body: "hi".into(),
                created_at: 2_000,
                last_sent_at: 5_000,
                attempts: 2,
                media: None,
            }]
        );
        // Reopening (CREATE TABLE IF NOT EXISTS) kept the data.
        drop(ob);
        let mut ob = open(&dir);
        assert_eq!(ob.len().unwrap(), 1);
        assert_eq!(ob.last_seq().unwrap(), 42);
    }

    #[test]
    fn bodies_keep_every_character() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = open(&dir);
        let body = "emoji 🎉, quotes \" ' and\nnewlines, NUL-free, ünïcödé";
        ob.add("a", "bob", body, 1).unwrap();
        assert_eq!(ob.all(1).unwrap()[0].body, body);
    }
}
