//! Messages: stored once, sealed, deduplicated on
//! (sender, client id), and marked delivered and read only forward.

use diesel::prelude::*;
use diesel::sql_types::Text;
use protocol::groups::GroupId;
use protocol::history::HistoryMessage;
use protocol::messages::{AckEvent, MediaRef, MessageEvent};
use std::collections::{HashMap, HashSet};

use crate::db::{AnyConnection, Tx};
use crate::schema::{message_history, messages, messages_archive, users};
use crate::StoreError;

/// A message to store.
#[derive(Debug, Clone, Copy)]
pub struct NewMessage<'a> {
    pub sender: &'a str,
    pub recipient: &'a str,
    /// The sender's own id for it; a second message with it is a resend.
    pub client_id: &'a str,
    pub body: &'a str,
    pub media: Option<&'a MediaRef>,
    pub sent_at: i64,
    /// When expiry deletes it (the chat's disappearing timer).
    pub expires_at: Option<i64>,
}

/// A stored message as a resend finds it: id, recipient, sealed body,
/// sealed media, sent at, expires at.
type FirstStored = (i64, String, Vec<u8>, Option<Vec<u8>>, i64, Option<i64>);

/// Rows per multi-row insert: well under SQLite's and PostgreSQL's limits
/// on bound parameters (8 a row).
const INSERT_CHUNK: usize = 1_000;

/// A stored message, body and media opened: the one shape its message
/// event (the recipient's), its ack event (the sender's ✓) and its history
/// entry are built from, so the three always agree on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: i64,
    /// The sender's own id for it.
    pub client_id: String,
    pub sender: String,
    /// A user, or a group's reserved name ([`crate::groups::recipient_of`]).
    pub recipient: String,
    pub body: String,
    pub media: Option<MediaRef>,
    pub sent_at: i64,
    pub expires_at: Option<i64>,
}

impl Message {
    /// The group of a group message; `None` for a 1:1 message.
    pub fn group(&self) -> Option<GroupId> {
        crate::groups::group_of(&self.recipient)
    }

    /// The message as its recipient sees it: a 1:1 message names its
    /// recipient (`to`), a group message its group, never both.
    pub fn event(self) -> MessageEvent {
        let group = self.group();
        MessageEvent {
            id: self.id,
            client_id: self.client_id,
            from: self.sender,
            to: group.is_none().then_some(self.recipient),
            group,
            body: self.body,
            media: self.media,
            sent_at: self.sent_at,
            expires_at: self.expires_at,
        }
    }

    /// The sender's ✓ of it.
    pub fn ack(self) -> AckEvent {
        AckEvent::from(self.event())
    }

    /// The message as history shows it to `me`, with what history adds:
    /// its ✓✓ and read times as `me` may see them, and `me`'s star.
    pub fn history(
        self,
        delivered_at: Option<i64>,
        read_at: Option<i64>,
        starred: bool,
    ) -> HistoryMessage {
        let event = self.event();
        HistoryMessage {
            id: event.id,
            client_id: event.client_id,
            from: event.from,
            to: event.to,
            group: event.group,
            body: event.body,
            media: event.media,
            sent_at: event.sent_at,
            delivered_at,
            read_at,
            expires_at: event.expires_at,
            starred,
        }
    }
}

/// What storing a message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// A new message with this server id.
    New { id: i64 },
    /// The sender already sent this client id: the message as first stored.
    Duplicate {
        id: i64,
        recipient: String,
        body: String,
        media: Option<MediaRef>,
        sent_at: i64,
        expires_at: Option<i64>,
    },
}

/// Pairs per archive probe: 2 bound parameters each.
const PROBE_CHUNK: usize = 5_000;

/// The (sender, client id) pairs of `pairs` that are in the archive, one
/// statement per chunk that looks each pair up in the archive's unique
/// `(sender, client_id)` index. Why not two `IN` lists (any sender × any
/// client id): SQLite probes the index for every combination, 100 senders
/// × 512 client ids = 51,200 lookups for one batch of sends, about 48 ms
/// against an archive of 200,000 messages; this makes 512.
fn archived_pairs(conn: &mut AnyConnection, pairs: &[(&str, &str)]) -> Result<Vec<(String, String)>, StoreError> {
    #[derive(QueryableByName)]
    struct Pair {
        #[diesel(sql_type = Text)]
        sender: String,
        #[diesel(sql_type = Text)]
        client_id: String,
    }
    let sql = |mark: &str, count: usize| {
        let values: Vec<String> = (0..count)
            .map(|i| format!("({mark}{}, {mark}{})", 2 * i + 1, 2 * i + 2))
            .collect();
        // The pairs first, in a CROSS JOIN: SQLite keeps that order (one
        // index lookup per pair). VALUES columns are `column1`… on both
        // backends.
        format!(
            "SELECT a.sender AS sender, a.client_id AS client_id FROM (VALUES {}) AS v \
             CROSS JOIN messages_archive AS a WHERE a.sender = v.column1 AND a.client_id = v.column2",
            values.join(", ")
        )
    };
    macro_rules! run {
        ($c:expr, $backend:ty, $mark:expr, $chunk:expr) => {{
            let mut query = diesel::sql_query(sql($mark, $chunk.len())).into_boxed::<$backend>();
            for (sender, client_id) in $chunk {
                query = query.bind::<Text, _>(*sender).bind::<Text, _>(*client_id);
            }
            query.load::<Pair>($c)?
        }};
    }
    let mut found = Vec::new();
    for chunk in pairs.chunks(PROBE_CHUNK) {
        let rows = match &mut *conn {
            AnyConnection::Sqlite(c) => run!(c, diesel::sqlite::Sqlite, "?", chunk),
            AnyConnection::Postgres(c) => run!(c, diesel::pg::Pg, "$", chunk),
        };
        found.extend(rows.into_iter().map(|p| (p.sender, p.client_id)));
    }
    Ok(found)
}

impl Tx<'_> {
    /// Which of `names` are registered users.
    pub fn existing_users(&mut self, names: &[&str]) -> Result<HashSet<String>, StoreError> {
        let found: Vec<String> = on_backend!(&mut *self.conn, c => users::table
            .filter(users::name.eq_any(names))
            .select(users::name)
            .load(c))?;
        Ok(found.into_iter().collect())
    }

    /// Stores `message` unless its sender already stored its client id.
    /// The caller has checked that its media, if any, is the sender's.
    pub fn store_message(&mut self, message: &NewMessage<'_>) -> Result<Stored, StoreError> {
        let mut stored = self.store_messages(std::slice::from_ref(message))?;
        stored
            .pop()
            .ok_or_else(|| StoreError::Corrupt("a stored message went missing".into()))
    }

    /// Stores each of `messages` unless its sender already stored its
    /// client id (earlier, or earlier in this same list), in a constant
    /// number of statements: one archive lookup, one multi-row insert, one
    /// lookup of the resends' first copies. Ids are given in list order.
    /// Returns what became of each, in order.
    pub fn store_messages(
        &mut self,
        messages: &[NewMessage<'_>],
    ) -> Result<Vec<Stored>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        // A resend can come after its first copy was archived (a device
        // whose user's other devices fetched the ack, a browser retrying an
        // HTTP send); the archive is checked first so it is not stored twice.
        let pairs: Vec<(&str, &str)> = messages.iter().map(|m| (m.sender, m.client_id)).collect();
        let archived = archived_pairs(self.conn, &pairs)?;
        let archived: HashSet<(&str, &str)> = archived
            .iter()
            .map(|(s, c)| (s.as_str(), c.as_str()))
            .collect();
        // The first of each (sender, client id) in the list that is not
        // archived is offered for insertion; the database skips those it
        // already has.
        let mut offered: HashMap<(&str, &str), usize> = HashMap::new();
        let mut rows = Vec::new();
        for (index, m) in messages.iter().enumerate() {
            let key = (m.sender, m.client_id);
            if archived.contains(&key) || offered.contains_key(&key) {
                continue;
            }
            offered.insert(key, index);
            let sealed = self.sealer()?.seal(m.body.as_bytes());
            let sealed_media = match m.media {
                Some(media) => Some(self.sealer()?.seal(&serde_json::to_vec(media).map_err(|e| {
                    StoreError::Corrupt(format!("media reference does not serialize: {e}"))
                })?)),
                None => None,
            };
            rows.push((
                messages::sender.eq(m.sender),
                messages::recipient.eq(m.recipient),
                messages::client_id.eq(m.client_id),
                messages::body.eq(sealed),
                messages::media_id.eq(m.media.map(|media| media.id.as_str())),
                messages::media.eq(sealed_media),
                messages::sent_at.eq(m.sent_at),
                messages::expires_at.eq(m.expires_at),
            ));
        }
        let mut inserted: Vec<(i64, String, String)> = Vec::new();
        for chunk in rows.chunks(INSERT_CHUNK) {
            let ids: Vec<(i64, String, String)> = on_backend!(&mut *self.conn, c => diesel::insert_into(messages::table)
                .values(chunk)
                .on_conflict((messages::sender, messages::client_id))
                .do_nothing()
                .returning((messages::id, messages::sender, messages::client_id))
                .get_results(c))?;
            inserted.extend(ids);
        }
        let new_ids: HashMap<(&str, &str), i64> = inserted
            .iter()
            .map(|(id, s, c)| ((s.as_str(), c.as_str()), *id))
            .collect();
        // Search terms are written later, off the send path, by the
        // indexer (`store::indexer`).
        // Everything else is a resend: find its first copy.
        let resent: Vec<usize> = (0..messages.len())
            .filter(|&i| {
                let key = (messages[i].sender, messages[i].client_id);
                offered.get(&key) != Some(&i) || !new_ids.contains_key(&key)
            })
            .collect();
        let mut first_copies: HashMap<(String, String), Stored> = HashMap::new();
        if !resent.is_empty() {
            let senders: Vec<&str> = resent.iter().map(|&i| messages[i].sender).collect();
            let client_ids: Vec<&str> = resent.iter().map(|&i| messages[i].client_id).collect();
            let found: Vec<(String, String, FirstStored)> = on_backend!(&mut *self.conn, c => message_history::table
                .filter(message_history::sender.eq_any(&senders))
                .filter(message_history::client_id.eq_any(&client_ids))
                .select((message_history::sender, message_history::client_id, (message_history::id, message_history::recipient, message_history::body, message_history::media, message_history::sent_at, message_history::expires_at)))
                .load(c))?;
            for (sender, client_id, (id, recipient, body, media, sent_at, expires_at)) in found {
                let stored = Stored::Duplicate {
                    id,
                    recipient,
                    body: self.sealer()?.open_string(&body)?,
                    media: open_media(self.sealer()?, media.as_deref())?,
                    sent_at,
                    expires_at,
                };
                first_copies.insert((sender, client_id), stored);
            }
        }
        messages
            .iter()
            .enumerate()
            .map(|(index, m)| {
                let key = (m.sender, m.client_id);
                match new_ids.get(&key) {
                    Some(&id) if offered.get(&key) == Some(&index) => Ok(Stored::New { id }),
                    _ => first_copies
                        .get(&(m.sender.to_owned(), m.client_id.to_owned()))
                        .cloned()
                        .ok_or_else(|| {
                            StoreError::Corrupt(format!(
                                "message {:?} of {} is neither new nor stored",
                                m.client_id, m.sender
                            ))
                        }),
                }
            })
            .collect()
    }

    /// Marks these messages delivered at `at`, where not yet delivered.
    pub fn mark_delivered(&mut self, ids: &[i64], at: i64) -> Result<usize, StoreError> {
        Ok(on_backend!(&mut *self.conn, c => diesel::update(
            messages::table.filter(messages::id.eq_any(ids)).filter(messages::delivered_at.is_null()),
        )
        .set(messages::delivered_at.eq(at))
        .execute(c))?)
    }

    /// Marks every unread message from `sender` to `reader` with id ≤
    /// `up_to` as read, and as delivered too when `implies_delivered` (the
    /// sender will get a read receipt, which says both). Archived messages
    /// are marked too: an old message may be read late. Returns the
    /// highest id that changed, if any did.
    pub fn mark_read(
        &mut self,
        reader: &str,
        sender: &str,
        up_to: i64,
        at: i64,
        implies_delivered: bool,
    ) -> Result<Option<i64>, StoreError> {
        let newest: Option<i64> = on_backend!(&mut *self.conn, c => message_history::table
            .filter(message_history::sender.eq(sender))
            .filter(message_history::recipient.eq(reader))
            .filter(message_history::id.le(up_to))
            .filter(message_history::read_at.is_null())
            .select(diesel::dsl::max(message_history::id))
            .first(c))?;
        if newest.is_none() {
            return Ok(None);
        }
        // The same update on the hot table and on the archive.
        macro_rules! mark {
            ($table:ident) => {{
                let unread = $table::table
                    .filter($table::sender.eq(sender))
                    .filter($table::recipient.eq(reader))
                    .filter($table::id.le(up_to))
                    .filter($table::read_at.is_null());
                if implies_delivered {
                    let delivered = diesel::dsl::sql::<
                        diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
                    >(&format!("COALESCE(delivered_at, {at})"));
                    on_backend!(&mut *self.conn, c => diesel::update(unread)
                        .set(($table::read_at.eq(at), $table::delivered_at.eq(delivered)))
                        .execute(c))?;
                } else {
                    // No read receipt will go out, so delivery is left for
                    // the reader's inbox ack to report.
                    on_backend!(&mut *self.conn, c => diesel::update(unread).set($table::read_at.eq(at)).execute(c))?;
                }
            }};
        }
        mark!(messages);
        mark!(messages_archive);
        Ok(newest)
    }
}

/// Opens a message's sealed media reference.
pub(crate) fn open_media(
    sealer: &crate::Sealer,
    sealed: Option<&[u8]>,
) -> Result<Option<MediaRef>, StoreError> {
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let json = sealer.open(sealed)?;
    serde_json::from_slice(&json)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("media reference: {e}")))
}
