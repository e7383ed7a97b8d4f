//! Each user's inbox: the durable queue of events for their devices.
//!
//! # Invariant
//! - A user's events carry seq 1, 2, 3… with no gap: seqs are allocated
//!   from `users.inbox_seq` inside the transaction that inserts the events,
//!   so a rolled-back batch gives its seqs back.
//! - An event is pruned only when every device of the user that has ever
//!   acked has acked at or above its seq.
//! - A device's ack only moves forward, and never past the last seq.
//!
//! Every function here that writes takes a [`Tx`], so a caller's batch
//! (store messages, append events, advance acks) commits as one and the
//! invariant holds at every commit.
//!
//! Message and ack events point at their message row, so a body is stored
//! once, sealed; receipt and error events carry their own JSON.

use diesel::prelude::*;
use protocol::messages::{AckEvent, Event, InboxEvent, MessageEvent};

use crate::db::{AnyConnection, Tx};
use crate::messages::open_media;
use crate::schema::{devices, inbox, messages, users};
use crate::{clock, Store, StoreError};

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
    fn columns(&self) -> (&'static str, Option<i64>, Option<String>) {
        match self {
            NewEvent::Message { message_id } => ("message", Some(*message_id), None),
            NewEvent::Ack { message_id } => ("ack", Some(*message_id), None),
            NewEvent::Other(event) => ("other", None, serde_json::to_string(event).ok()),
        }
    }
}

impl Tx<'_> {
    /// Appends `events` to `user`'s inbox, in order; returns their seqs.
    pub fn append(&mut self, user: &str, events: &[NewEvent]) -> Result<Vec<i64>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let count = events.len() as i64;
        let last: i64 = on_backend!(&mut *self.conn, c => diesel::update(users::table.filter(users::name.eq(user)))
            .set(users::inbox_seq.eq(users::inbox_seq + count))
            .returning(users::inbox_seq)
            .get_result(c))?;
        let first = last - count + 1;
        let now = clock::now_ms();
        let rows: Vec<_> = events
            .iter()
            .zip(first..)
            .map(|(event, seq)| {
                let (kind, message_id, payload) = event.columns();
                (
                    inbox::user_name.eq(user),
                    inbox::seq.eq(seq),
                    inbox::kind.eq(kind),
                    inbox::message_id.eq(message_id),
                    inbox::payload.eq(payload),
                    inbox::created_at.eq(now),
                )
            })
            .collect();
        on_backend!(&mut *self.conn, c => diesel::insert_into(inbox::table).values(&rows).execute(c))?;
        Ok((first..=last).collect())
    }

    /// The seq of `sender`'s ack event for `message_id`, if not yet pruned.
    pub fn ack_seq(&mut self, sender: &str, message_id: i64) -> Result<Option<i64>, StoreError> {
        Ok(on_backend!(&mut *self.conn, c => inbox::table
            .filter(inbox::user_name.eq(sender))
            .filter(inbox::kind.eq("ack"))
            .filter(inbox::message_id.eq(message_id))
            .select(inbox::seq)
            .first(c)
            .optional())?)
    }

    /// Moves `device`'s ack forward to `up_to` (clamped to the last seq).
    /// Returns `(previous, new)` if it moved.
    pub fn advance_ack(
        &mut self,
        user: &str,
        device: &str,
        up_to: i64,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let head: Option<i64> = on_backend!(&mut *self.conn, c => users::table
            .filter(users::name.eq(user))
            .select(users::inbox_seq)
            .first(c)
            .optional())?;
        let Some(head) = head else { return Ok(None) };
        let up_to = up_to.min(head);
        let previous: Option<i64> = on_backend!(&mut *self.conn, c => devices::table
            .filter(devices::user_name.eq(user))
            .filter(devices::device.eq(device))
            .select(devices::acked_seq)
            .first(c)
            .optional())?;
        let now = clock::now_ms();
        match previous {
            Some(previous) if previous >= up_to => Ok(None),
            Some(previous) => {
                on_backend!(&mut *self.conn, c => diesel::update(
                    devices::table.filter(devices::user_name.eq(user)).filter(devices::device.eq(device)),
                )
                .set((devices::acked_seq.eq(up_to), devices::acked_at.eq(now)))
                .execute(c))?;
                Ok(Some((previous, up_to)))
            }
            None if up_to <= 0 => Ok(None),
            None => {
                on_backend!(&mut *self.conn, c => diesel::insert_into(devices::table)
                    .values((
                        devices::user_name.eq(user),
                        devices::device.eq(device),
                        devices::acked_seq.eq(up_to),
                        devices::acked_at.eq(now),
                    ))
                    .execute(c))?;
                Ok(Some((0, up_to)))
            }
        }
    }

    /// Message events in `user`'s inbox with `after < seq <= up_to` whose
    /// message is not yet delivered: `(message id, sender)`.
    pub fn undelivered_between(
        &mut self,
        user: &str,
        after: i64,
        up_to: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(on_backend!(&mut *self.conn, c => inbox::table
            .inner_join(messages::table)
            .filter(inbox::user_name.eq(user))
            .filter(inbox::kind.eq("message"))
            .filter(inbox::seq.gt(after))
            .filter(inbox::seq.le(up_to))
            .filter(messages::delivered_at.is_null())
            .select((messages::id, messages::sender))
            .order(messages::id.asc())
            .load(c))?)
    }

    /// Deletes the events every acking device of `user` has stored.
    pub fn prune(&mut self, user: &str) -> Result<usize, StoreError> {
        let floor = prune_floor(self.conn, user)?;
        if floor == 0 {
            return Ok(0);
        }
        Ok(on_backend!(&mut *self.conn, c => diesel::delete(
            inbox::table.filter(inbox::user_name.eq(user)).filter(inbox::seq.le(floor)),
        )
        .execute(c))?)
    }
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

type InboxRow = (
    i64,
    String,
    Option<String>,
    Option<(
        i64,
        String,
        String,
        String,
        Vec<u8>,
        Option<Vec<u8>>,
        i64,
        Option<i64>,
    )>,
);

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
                let event = match (kind.as_str(), message, payload) {
                    (
                        "message",
                        Some((id, client_id, from, to, body, media, sent_at, expires_at)),
                        _,
                    ) => Event::Message(MessageEvent {
                        id,
                        client_id,
                        from,
                        to,
                        body: sealer.open_string(&body)?,
                        media: open_media(sealer, media.as_deref())?,
                        sent_at,
                        expires_at,
                    }),
                    (
                        "ack",
                        Some((id, client_id, _from, to, body, media, sent_at, expires_at)),
                        _,
                    ) => Event::Ack(AckEvent {
                        id,
                        client_id,
                        to,
                        body: sealer.open_string(&body)?,
                        media: open_media(sealer, media.as_deref())?,
                        sent_at,
                        expires_at,
                    }),
                    ("other", _, Some(json)) => serde_json::from_str(&json)
                        .map_err(|e| StoreError::Corrupt(format!("inbox {user}/{seq}: {e}")))?,
                    (kind, _, _) => {
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
