//! Each user's inbox: the durable queue of events for their devices.
//!
//! # Invariant
//! - A user's events carry seq 1, 2, 3… with no gap: seqs are allocated
//!   from `users.inbox_seq` inside the transaction that inserts the events,
//!   so a rolled-back batch gives its seqs back.
//! - An event is pruned only when every device of the user that has ever
//!   acked has acked at or above its seq.
//! - A device's ack only moves forward, and never past the last seq.
//! - An ack emits the delivered receipt: the messages in the newly acked
//!   range are marked delivered in the same step, and
//!   [`Tx::ack_inboxes`] returns one receipt per (sender, reader) for them.
//!   A group message in the range only moves the member's position
//!   (delivered when every member has it: `store::group_receipts`).
//!
//! Every function here that writes takes a [`Tx`], so a caller's batch
//! (store messages, append events, advance acks) commits as one and the
//! invariant holds at every commit.
//!
//! Message and ack events point at their message row, so a body is stored
//! once, sealed; receipt and error events carry their own JSON.

use diesel::prelude::*;
use protocol::messages::{Event, InboxEvent, MessageEvent};
use std::collections::{HashMap, HashSet};

use crate::db::{AnyConnection, Tx};
use crate::messages::open_media;
use crate::schema::{devices, inbox, messages, users};
use crate::{clock, Store, StoreError};

/// What an inbox row holds: its `kind` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxKind {
    /// A message for this user; the row points at it.
    Message,
    /// This user's own message was stored (their ✓); the row points at it.
    Ack,
    /// A receipt, error or other event, stored as its JSON.
    Other,
}

impl InboxKind {
    /// The value of the `kind` column.
    pub const fn as_str(self) -> &'static str {
        match self {
            InboxKind::Message => "message",
            InboxKind::Ack => "ack",
            InboxKind::Other => "other",
        }
    }

    /// The kind a `kind` column names, if any.
    pub fn parse(kind: &str) -> Option<InboxKind> {
        [InboxKind::Message, InboxKind::Ack, InboxKind::Other]
            .into_iter()
            .find(|k| k.as_str() == kind)
    }
}

/// An event to append to an inbox.
#[derive(Debug, Clone)]
pub enum NewEvent {
    /// A message for this user.
    Message { message_id: i64 },
    /// This user's own message was stored.
    Ack { message_id: i64 },
    /// A receipt or an error: stored as its JSON.
    Other(Event),
}

impl NewEvent {
    fn columns(&self) -> (InboxKind, Option<i64>, Option<String>) {
        match self {
            NewEvent::Message { message_id } => (InboxKind::Message, Some(*message_id), None),
            NewEvent::Ack { message_id } => (InboxKind::Ack, Some(*message_id), None),
            NewEvent::Other(event) => (InboxKind::Other, None, serde_json::to_string(event).ok()),
        }
    }
}

/// Users per statement advancing inbox heads.
const HEADS_CHUNK: usize = 10_000;

impl Tx<'_> {
    /// Appends `events` to `user`'s inbox, in order; returns their seqs.
    pub fn append(&mut self, user: &str, events: &[NewEvent]) -> Result<Vec<i64>, StoreError> {
        let mut seqs = self.append_all(&[(user, events.to_vec())])?;
        Ok(seqs.pop().unwrap_or_default())
    }

    /// Appends events to many inboxes at once, each user's in order;
    /// returns each user's seqs, in the order of `appends`. Two statements
    /// for the whole batch, however many users: one UPDATE of every head
    /// (… RETURNING the new heads) and one multi-row INSERT. Each user
    /// appears at most once in `appends`.
    pub fn append_all(
        &mut self,
        appends: &[(&str, Vec<NewEvent>)],
    ) -> Result<Vec<Vec<i64>>, StoreError> {
        let mut seqs = Vec::with_capacity(appends.len());
        let counts: Vec<(&str, i64)> = appends
            .iter()
            .filter(|(_, events)| !events.is_empty())
            .map(|(user, events)| (*user, events.len() as i64))
            .collect();
        if counts.is_empty() {
            return Ok(vec![Vec::new(); appends.len()]);
        }
        // A batch's group messages can reach many thousands of inboxes:
        // the heads are advanced in chunks, each well under the backends'
        // limits on bound parameters (two a user).
        let mut heads = HashMap::new();
        for chunk in counts.chunks(HEADS_CHUNK) {
            heads.extend(self.advance_heads(chunk)?);
        }
        let now = clock::now_ms();
        let mut rows = Vec::new();
        for (user, events) in appends {
            let count = events.len() as i64;
            if count == 0 {
                seqs.push(Vec::new());
                continue;
            }
            let Some(&last) = heads.get(*user) else {
                // As `append`: the caller checks names first.
                return Err(StoreError::UnknownUser);
            };
            let first = last - count + 1;
            for (event, seq) in events.iter().zip(first..) {
                let (kind, message_id, payload) = event.columns();
                rows.push((
                    inbox::user_name.eq(*user),
                    inbox::seq.eq(seq),
                    inbox::kind.eq(kind.as_str()),
                    inbox::message_id.eq(message_id),
                    inbox::payload.eq(payload),
                    inbox::created_at.eq(now),
                ));
            }
            seqs.push((first..=last).collect());
        }
        // Six parameters a row; both backends allow far more than this
        // many per statement (SQLite 32,766, PostgreSQL 65,535).
        for chunk in rows.chunks(4_000) {
            on_backend!(&mut *self.conn, c => diesel::insert_into(inbox::table).values(chunk).execute(c))?;
        }
        Ok(seqs)
    }

    /// Adds `count` to each user's inbox head in one statement; returns
    /// the new heads.
    fn advance_heads(&mut self, counts: &[(&str, i64)]) -> Result<HashMap<String, i64>, StoreError> {
        use diesel::sql_types::{BigInt, Text};
        #[derive(QueryableByName)]
        struct Head {
            #[diesel(sql_type = Text)]
            name: String,
            #[diesel(sql_type = BigInt)]
            inbox_seq: i64,
        }
        // UPDATE users SET inbox_seq = inbox_seq + CASE name WHEN p1 THEN p2
        // … END WHERE name IN (p1, p3, …) RETURNING name, inbox_seq, with
        // numbered parameters (`?N` on SQLite, `$N` on PostgreSQL).
        let sql = |mark: &str| {
            let mut cases = String::new();
            let mut names = Vec::with_capacity(counts.len());
            for i in 0..counts.len() {
                let (name, count) = (2 * i + 1, 2 * i + 2);
                cases.push_str(&format!(" WHEN {mark}{name} THEN {mark}{count}"));
                names.push(format!("{mark}{name}"));
            }
            format!(
                "UPDATE users SET inbox_seq = inbox_seq + CASE name{cases} END \
                 WHERE name IN ({}) RETURNING name, inbox_seq",
                names.join(", ")
            )
        };
        macro_rules! run {
            ($c:expr, $backend:ty, $mark:expr) => {{
                let mut query = diesel::sql_query(sql($mark)).into_boxed::<$backend>();
                for (name, count) in counts {
                    query = query.bind::<Text, _>(*name).bind::<BigInt, _>(*count);
                }
                query.load::<Head>($c)?
            }};
        }
        let heads = match &mut *self.conn {
            AnyConnection::Sqlite(c) => run!(c, diesel::sqlite::Sqlite, "?"),
            AnyConnection::Postgres(c) => run!(c, diesel::pg::Pg, "$"),
        };
        Ok(heads.into_iter().map(|h| (h.name, h.inbox_seq)).collect())
    }

    /// The seq of `sender`'s ack event for `message_id`, if not yet pruned.
    pub fn ack_seq(&mut self, sender: &str, message_id: i64) -> Result<Option<i64>, StoreError> {
        Ok(on_backend!(&mut *self.conn, c => inbox::table
            .filter(inbox::user_name.eq(sender))
            .filter(inbox::kind.eq(InboxKind::Ack.as_str()))
            .filter(inbox::message_id.eq(message_id))
            .select(inbox::seq)
            .first(c)
            .optional())?)
    }

    /// Deletes the events every acking device of `user` has stored.
    pub fn prune(&mut self, user: &str) -> Result<usize, StoreError> {
        let floor = prune_floor(self.conn, user)?;
        if floor == 0 {
            return Ok(0);
        }
        self.prune_below(vec![(user.to_owned(), floor)])
    }

    /// Deletes each user's events at or below their floor; returns how
    /// many.
    fn prune_below(&mut self, floors: Vec<(String, i64)>) -> Result<usize, StoreError> {
        Ok(match &mut *self.conn {
            // One cached statement per user: SQLite has no round trips.
            AnyConnection::Sqlite(c) => {
                let mut deleted = 0;
                for (user, floor) in &floors {
                    deleted += diesel::delete(inbox::table.filter(inbox::user_name.eq(user)).filter(inbox::seq.le(floor)))
                        .execute(c)?;
                }
                deleted
            }
            // One statement for the batch: on PostgreSQL each is a round
            // trip, and a batch acks for hundreds of users.
            AnyConnection::Postgres(c) if !floors.is_empty() => {
                use diesel::sql_types::{Array, BigInt, Text};
                let (users, floors): (Vec<String>, Vec<i64>) = floors.into_iter().unzip();
                diesel::sql_query(
                    "DELETE FROM inbox USING unnest($1::text[], $2::bigint[]) AS f(user_name, floor) \
                     WHERE inbox.user_name = f.user_name AND inbox.seq <= f.floor",
                )
                .bind::<Array<Text>, _>(users)
                .bind::<Array<BigInt>, _>(floors)
                .execute(c)?
            }
            AnyConnection::Postgres(_) => 0,
        })
    }
}

/// One device's inbox ack: it has stored `user`'s events up to `up_to`.
#[derive(Debug, Clone, Copy)]
pub struct InboxAck<'a> {
    pub user: &'a str,
    pub device: &'a str,
    pub up_to: i64,
}

/// A delivered receipt an ack produced: `sender`'s messages to `reader`
/// up to message id `up_to` are delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub sender: String,
    pub reader: String,
    pub up_to: i64,
}

/// What a batch of inbox acks produced.
#[derive(Debug, Default)]
pub struct Acked {
    /// One delivered receipt per (sender, reader) of 1:1 messages.
    pub delivered: Vec<Delivered>,
    /// The group messages now on a member's devices, for
    /// [`Tx::advance_group_members`]. Found in the rows the 1:1 receipts
    /// are worked out from, so a batch whose acked ranges hold no group
    /// message gets none and does no group work at all.
    pub group: Vec<crate::group_receipts::Position>,
}

impl Tx<'_> {
    /// Applies a batch of inbox acks as one step of the invariant: each
    /// device's position moves forward (clamped to the last seq), the
    /// messages in the newly acked ranges are marked delivered, one
    /// receipt per (sender, reader) is returned, the group messages in the
    /// newly acked ranges are returned as member positions (their
    /// `delivered_at` waits for every member: `store::group_receipts`),
    /// and each user's events at or below every device's position are
    /// pruned. At most one ack per (user, device) is expected (acks are
    /// cumulative: the caller keeps the highest). Statements: five for the
    /// whole batch, plus one prune per user whose floor rose.
    pub fn ack_inboxes(
        &mut self,
        acks: &[InboxAck<'_>],
        at: i64,
    ) -> Result<Acked, StoreError> {
        if acks.is_empty() {
            return Ok(Acked::default());
        }
        let mut users: Vec<&str> = acks.iter().map(|a| a.user).collect();
        users.sort_unstable();
        users.dedup();
        let heads: HashMap<String, i64> = on_backend!(&mut *self.conn, c => users::table
            .filter(users::name.eq_any(&users))
            .select((users::name, users::inbox_seq))
            .load::<(String, i64)>(c))?
            .into_iter()
            .collect();
        let mut positions: HashMap<(String, String), i64> = on_backend!(&mut *self.conn, c => devices::table
            .filter(devices::user_name.eq_any(&users))
            .select((devices::user_name, devices::device, devices::acked_seq))
            .load::<(String, String, i64)>(c))?
            .into_iter()
            .map(|(user, device, seq)| ((user, device), seq))
            .collect();
        let old_floors = floors(&positions);
        // (user, previous, new) of every device that moved.
        let mut moved: Vec<(&str, i64, i64)> = Vec::new();
        let mut rows = Vec::new();
        for ack in acks {
            let Some(&head) = heads.get(ack.user) else {
                continue;
            };
            let up_to = ack.up_to.min(head);
            let key = (ack.user.to_owned(), ack.device.to_owned());
            let previous = positions.get(&key).copied();
            if previous.map_or(up_to <= 0, |previous| previous >= up_to) {
                continue;
            }
            moved.push((ack.user, previous.unwrap_or(0), up_to));
            positions.insert(key, up_to);
            rows.push((
                devices::user_name.eq(ack.user),
                devices::device.eq(ack.device),
                devices::acked_seq.eq(up_to),
                devices::acked_at.eq(at),
            ));
        }
        if moved.is_empty() {
            return Ok(Acked::default());
        }
        on_backend!(&mut *self.conn, c => diesel::insert_into(devices::table)
            .values(&rows)
            .on_conflict((devices::user_name, devices::device))
            .do_update()
            .set((
                devices::acked_seq.eq(diesel::upsert::excluded(devices::acked_seq)),
                devices::acked_at.eq(diesel::upsert::excluded(devices::acked_at)),
            ))
            .execute(c))?;

        // Undelivered message events in any moved range, 1:1 and group
        // alike, found in one query over the span of all ranges and picked
        // out exactly here.
        let moved_users: Vec<&str> = moved.iter().map(|(user, _, _)| *user).collect();
        let lowest = moved.iter().map(|(_, previous, _)| *previous).min().unwrap_or(0);
        let highest = moved.iter().map(|(_, _, new)| *new).max().unwrap_or(0);
        let candidates: Vec<(String, i64, i64, String, String)> = on_backend!(&mut *self.conn, c => inbox::table
            .inner_join(messages::table)
            .filter(inbox::user_name.eq_any(&moved_users))
            .filter(inbox::kind.eq(InboxKind::Message.as_str()))
            .filter(inbox::seq.gt(lowest))
            .filter(inbox::seq.le(highest))
            .filter(messages::delivered_at.is_null())
            .select((inbox::user_name, inbox::seq, messages::id, messages::sender, messages::recipient))
            .order(messages::id.asc())
            .load(c))?;
        // Each user's moved ranges, looked up per candidate (a batch holds
        // hundreds of acks and hundreds of candidates).
        let mut ranges: HashMap<&str, Vec<(i64, i64)>> = HashMap::new();
        for &(user, previous, new) in &moved {
            ranges.entry(user).or_default().push((previous, new));
        }
        let mut ids = HashSet::new();
        let mut newest: HashMap<(String, String), i64> = HashMap::new();
        let mut group = Vec::new();
        for (reader, seq, id, sender, recipient) in candidates {
            let in_range = ranges
                .get(reader.as_str())
                .is_some_and(|ranges| ranges.iter().any(|&(previous, new)| previous < seq && seq <= new));
            if !in_range {
                continue;
            }
            // A group message is delivered when every member has it
            // (`store::group_receipts`), not at the first member's ack:
            // here it only moves this member's position.
            if let Some(group_id) = crate::groups::group_of(&recipient) {
                group.push(crate::group_receipts::Position { group: group_id, user: reader, up_to: id });
                continue;
            }
            if !ids.insert(id) {
                continue;
            }
            let up_to = newest.entry((sender, reader)).or_insert(id);
            *up_to = (*up_to).max(id);
        }
        if !ids.is_empty() {
            let mut ids: Vec<i64> = ids.into_iter().collect();
            ids.sort_unstable();
            self.mark_delivered(&ids, at)?;
        }
        let raised: Vec<(String, i64)> = floors(&positions)
            .into_iter()
            .filter(|(user, floor)| *floor > old_floors.get(user).copied().unwrap_or(0))
            .collect();
        self.prune_below(raised)?;
        let mut delivered: Vec<Delivered> = newest
            .into_iter()
            .map(|((sender, reader), up_to)| Delivered {
                sender,
                reader,
                up_to,
            })
            .collect();
        // In message order, as the acks' messages were sent.
        delivered.sort_unstable_by_key(|d| d.up_to);
        Ok(Acked { delivered, group })
    }
}

/// Each user's prune floor: the lowest position among their devices.
fn floors(positions: &HashMap<(String, String), i64>) -> HashMap<String, i64> {
    let mut floors: HashMap<String, i64> = HashMap::new();
    for ((user, _), &seq) in positions {
        let floor = floors.entry(user.clone()).or_insert(seq);
        *floor = (*floor).min(seq);
    }
    floors
}

/// The lowest ack among `user`'s devices (0 if none has acked): every
/// event at or below it has been pruned, or may be.
fn prune_floor(conn: &mut AnyConnection, user: &str) -> Result<i64, StoreError> {
    let floor: Option<i64> = on_backend!(conn, c => devices::table
        .filter(devices::user_name.eq(user))
        .select(diesel::dsl::min(devices::acked_seq))
        .first(c))?;
    Ok(floor.unwrap_or(0))
}

/// A stored message as an inbox read joins it: the one shape both message
/// and ack events are opened from.
#[derive(Queryable)]
struct StoredMessage {
    id: i64,
    client_id: String,
    sender: String,
    recipient: String,
    /// Sealed.
    body: Vec<u8>,
    /// Sealed JSON of the media reference, if any.
    media: Option<Vec<u8>>,
    sent_at: i64,
    expires_at: Option<i64>,
}

impl StoredMessage {
    /// The message as its recipient sees it, body and media opened (the
    /// sender's ✓ is `AckEvent::from` it).
    fn open(self, sealer: &crate::Sealer) -> Result<MessageEvent, StoreError> {
        let message = crate::messages::Message {
            id: self.id,
            client_id: self.client_id,
            sender: self.sender,
            recipient: self.recipient,
            body: sealer.open_string(&self.body)?,
            media: open_media(sealer, self.media.as_deref())?,
            sent_at: self.sent_at,
            expires_at: self.expires_at,
        };
        Ok(message.event())
    }
}

/// An inbox row: seq, kind, payload (other events), and the message it
/// points at (message and ack events).
type InboxRow = (i64, String, Option<String>, Option<StoredMessage>);

impl Store {
    /// Up to `limit` events of `user` with seq > `after`, in order, as the
    /// client receives them.
    pub fn inbox_after(
        &self,
        user: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<InboxEvent>, StoreError> {
        let sealer = self.sealer()?;
        let mut conn = self.conn()?;
        let rows: Vec<InboxRow> = on_backend!(&mut *conn, c => inbox::table
            .left_join(messages::table)
            .filter(inbox::user_name.eq(user))
            .filter(inbox::seq.gt(after))
            .order(inbox::seq.asc())
            .limit(limit as i64)
            .select((
                inbox::seq,
                inbox::kind,
                inbox::payload,
                (messages::id, messages::client_id, messages::sender, messages::recipient, messages::body, messages::media, messages::sent_at, messages::expires_at)
                    .nullable(),
            ))
            .load(c))?;
        rows.into_iter()
            .map(|(seq, kind, payload, message)| {
                let event = match (InboxKind::parse(&kind), message, payload) {
                    (Some(InboxKind::Message), Some(m), _) => Event::Message(m.open(sealer)?),
                    (Some(InboxKind::Ack), Some(m), _) => Event::Ack(m.open(sealer)?.into()),
                    (Some(InboxKind::Other), _, Some(json)) => serde_json::from_str(&json)
                        .map_err(|e| StoreError::Corrupt(format!("inbox {user}/{seq}: {e}")))?,
                    _ => {
                        return Err(StoreError::Corrupt(format!(
                            "inbox {user}/{seq}: {kind} event without its data"
                        )))
                    }
                };
                Ok(InboxEvent {
                    seq: Some(seq),
                    event,
                })
            })
            .collect()
    }

    /// The highest seq pruned from `user`'s inbox: every acking device has
    /// stored everything up to it (0 if no device has acked).
    pub fn prune_floor(&self, user: &str) -> Result<i64, StoreError> {
        prune_floor(&mut *self.conn()?, user)
    }

    /// The last seq handed out in `user`'s inbox (0 if none).
    pub fn inbox_head(&self, user: &str) -> Result<i64, StoreError> {
        let mut conn = self.conn()?;
        Ok(on_backend!(&mut *conn, c => users::table
            .filter(users::name.eq(user))
            .select(users::inbox_seq)
            .first::<i64>(c)
            .optional())?
        .unwrap_or(0))
    }
}
