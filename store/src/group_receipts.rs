//! Group receipts: how far each member got (delivered, read), and the
//! aggregate receipts a sender gets when every member got there.
//!
//! # Invariant
//! - A member's `delivered_up_to` / `read_up_to` only move forward; each
//!   move is kept in `group_receipts` (the per-member detail).
//! - A sender S's aggregate point in a group is the lowest position among
//!   the group's other current members (for `read`, only those who share
//!   read receipts). A member who joined after a message starts past it,
//!   and a removed member is no longer counted, so neither holds it back.
//! - `sender_delivered` / `sender_read` say how far S's aggregate has been
//!   worked out; an aggregate receipt covers S's messages in (that, point]
//!   and is sent once, and the covered messages get their aggregate
//!   `delivered_at` / `read_at`.
//!
//! Every function takes a [`Tx`]: the bridge calls them in the batch that
//! applies the acks, reads and removals that move these positions.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use protocol::groups::GroupId;
use protocol::messages::ReceiptStatus;
use std::collections::{HashMap, HashSet};

use crate::db::{AnyConnection, Tx};
use crate::groups::recipient_of;
use crate::schema::{group_members, group_receipts, messages};
use crate::StoreError;

/// A member reached `up_to` in `group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub group: GroupId,
    pub user: String,
    pub up_to: i64,
}

/// An aggregate receipt: every member who counts has `status` for
/// `sender`'s messages in `group` up to `up_to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    pub sender: String,
    pub group: GroupId,
    pub status: ReceiptStatus,
    pub up_to: i64,
}

/// A `group_members` column that only moves forward.
#[derive(Debug, Clone, Copy)]
enum Column {
    Delivered,
    Read,
    SenderDelivered,
    SenderRead,
}

impl Column {
    const fn name(self) -> &'static str {
        match self {
            Column::Delivered => "delivered_up_to",
            Column::Read => "read_up_to",
            Column::SenderDelivered => "sender_delivered",
            Column::SenderRead => "sender_read",
        }
    }

    /// How far a sender's aggregate for `status` has been worked out.
    const fn sender(status: ReceiptStatus) -> Column {
        match status {
            ReceiptStatus::Delivered => Column::SenderDelivered,
            ReceiptStatus::Read => Column::SenderRead,
        }
    }
}

/// Rows per raise statement: 3 parameters each.
const RAISE_CHUNK: usize = 5_000;

/// Raises `column` of the current members in `rows` to their value where
/// it is lower, in one statement per chunk (`UPDATE … FROM (VALUES …)`);
/// returns the rows that moved, at their new value.
fn raise(conn: &mut AnyConnection, column: Column, rows: &[Position]) -> Result<Vec<Position>, StoreError> {
    #[derive(QueryableByName)]
    struct Moved {
        #[diesel(sql_type = BigInt)]
        group_id: i64,
        #[diesel(sql_type = Text)]
        user_name: String,
        #[diesel(sql_type = BigInt)]
        up_to: i64,
    }
    let column = column.name();
    let sql = |mark: &str, count: usize| {
        let values: Vec<String> = (0..count)
            .map(|i| format!("({mark}{}, {mark}{}, {mark}{})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
            .collect();
        // VALUES columns are `column1`… on both backends.
        format!(
            "UPDATE group_members SET {column} = v.column3 FROM (VALUES {}) AS v \
             WHERE group_members.group_id = v.column1 AND group_members.user_name = v.column2 \
             AND group_members.left_at IS NULL AND group_members.{column} < v.column3 \
             RETURNING group_members.group_id AS group_id, group_members.user_name AS user_name, \
             group_members.{column} AS up_to",
            values.join(", ")
        )
    };
    macro_rules! run {
        ($c:expr, $backend:ty, $mark:expr, $chunk:expr) => {{
            let mut query = diesel::sql_query(sql($mark, $chunk.len())).into_boxed::<$backend>();
            for p in $chunk {
                query = query
                    .bind::<BigInt, _>(p.group)
                    .bind::<Text, _>(p.user.as_str())
                    .bind::<BigInt, _>(p.up_to);
            }
            query.load::<Moved>($c)?
        }};
    }
    let mut moved = Vec::new();
    for chunk in rows.chunks(RAISE_CHUNK) {
        let rows = match &mut *conn {
            AnyConnection::Sqlite(c) => run!(c, diesel::sqlite::Sqlite, "?", chunk),
            AnyConnection::Postgres(c) => run!(c, diesel::pg::Pg, "$", chunk),
        };
        moved.extend(rows.into_iter().map(|m| Position {
            group: m.group_id,
            user: m.user_name,
            up_to: m.up_to,
        }));
    }
    Ok(moved)
}

/// Keeps the highest `up_to` of each (group, user).
fn highest(positions: impl IntoIterator<Item = Position>) -> Vec<Position> {
    let mut best: HashMap<(GroupId, String), i64> = HashMap::new();
    for p in positions {
        let up_to = best.entry((p.group, p.user)).or_insert(p.up_to);
        *up_to = (*up_to).max(p.up_to);
    }
    // In key order: two batches raising the same rows (two nodes on one
    // PostgreSQL) then lock them in the same order instead of deadlocking.
    let mut positions: Vec<Position> = best
        .into_iter()
        .map(|((group, user), up_to)| Position { group, user, up_to })
        .collect();
    positions.sort_unstable_by(|a, b| (a.group, &a.user).cmp(&(b.group, &b.user)));
    positions
}

impl Tx<'_> {
    /// Moves members' positions forward (a read moves delivered too: what
    /// was read was delivered), keeping each move in the per-member
    /// detail; returns the groups where some position moved.
    pub fn advance_group_members(
        &mut self,
        status: ReceiptStatus,
        positions: Vec<Position>,
        at: i64,
    ) -> Result<Vec<GroupId>, StoreError> {
        let positions = highest(positions);
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        let mut moved = vec![(ReceiptStatus::Delivered, raise(self.conn, Column::Delivered, &positions)?)];
        if status == ReceiptStatus::Read {
            moved.push((ReceiptStatus::Read, raise(self.conn, Column::Read, &positions)?));
        }
        let mut groups = HashSet::new();
        let mut rows = Vec::new();
        for (status, positions) in &moved {
            for p in positions {
                groups.insert(p.group);
                rows.push((
                    group_receipts::group_id.eq(p.group),
                    group_receipts::user_name.eq(p.user.as_str()),
                    group_receipts::status.eq(status_name(*status)),
                    group_receipts::up_to.eq(p.up_to),
                    group_receipts::at.eq(at),
                ));
            }
        }
        for chunk in rows.chunks(RAISE_CHUNK) {
            on_backend!(&mut *self.conn, c => diesel::insert_into(group_receipts::table)
                .values(chunk)
                .on_conflict_do_nothing()
                .execute(c))?;
        }
        Ok(groups.into_iter().collect())
    }

    /// Works out the aggregate receipts of `groups` whose members' positions
    /// (or membership) changed; see the module's invariant. `newest` is the
    /// newest message id (an aggregate never runs past it). Marks the
    /// covered messages delivered or read at `at`.
    pub fn aggregate_receipts(
        &mut self,
        groups: &[GroupId],
        newest: i64,
        at: i64,
    ) -> Result<Vec<Aggregate>, StoreError> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        type Row = (GroupId, String, i64, i64, i64, i64);
        let rows: Vec<Row> = on_backend!(&mut *self.conn, c => group_members::table
            .filter(group_members::group_id.eq_any(groups))
            .filter(group_members::left_at.is_null())
            .select((
                group_members::group_id,
                group_members::user_name,
                group_members::delivered_up_to,
                group_members::read_up_to,
                group_members::sender_delivered,
                group_members::sender_read,
            ))
            .load(c))?;
        let names: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        let sharing = self.with_read_receipts(&names)?;
        let mut by_group: HashMap<GroupId, Vec<&Row>> = HashMap::new();
        for row in &rows {
            by_group.entry(row.0).or_default().push(row);
        }
        let mut receipts = Vec::new();
        for (group, members) in by_group {
            for status in [ReceiptStatus::Delivered, ReceiptStatus::Read] {
                // Hidden read receipts keep a member out of "read by all".
                let counts = |m: &Row| status == ReceiptStatus::Delivered || sharing.contains(&m.1);
                let position = |m: &Row| match status {
                    ReceiptStatus::Delivered => m.2,
                    ReceiptStatus::Read => m.3,
                };
                let checked = |m: &Row| match status {
                    ReceiptStatus::Delivered => m.4,
                    ReceiptStatus::Read => m.5,
                };
                // The lowest two positions: a member's point is the lowest
                // among the others.
                let mut lowest: Vec<(i64, &str)> = members
                    .iter()
                    .filter(|m| counts(m))
                    .map(|m| (position(m), m.1.as_str()))
                    .collect();
                lowest.sort_unstable();
                lowest.truncate(2);
                let advances: Vec<(String, i64, i64)> = members
                    .iter()
                    .filter_map(|m| {
                        let point = lowest
                            .iter()
                            .find(|(_, user)| *user != m.1)
                            .map_or(newest, |(p, _)| *p)
                            .min(newest);
                        (point > checked(m)).then(|| (m.1.clone(), checked(m), point))
                    })
                    .collect();
                receipts.extend(self.settle(group, status, &advances, &sharing, at)?);
            }
        }
        Ok(receipts)
    }

    /// For senders of `group` whose aggregate point moved from `from` to
    /// `to` ((sender, from, to)): their receipts, the covered messages
    /// marked, and the new points kept.
    fn settle(
        &mut self,
        group: GroupId,
        status: ReceiptStatus,
        advances: &[(String, i64, i64)],
        sharing: &HashSet<String>,
        at: i64,
    ) -> Result<Vec<Aggregate>, StoreError> {
        if advances.is_empty() {
            return Ok(Vec::new());
        }
        let low = advances.iter().map(|a| a.1).min().unwrap_or(0);
        let high = advances.iter().map(|a| a.2).max().unwrap_or(0);
        let senders: Vec<&str> = advances.iter().map(|a| a.0.as_str()).collect();
        let sent: Vec<(i64, String)> = on_backend!(&mut *self.conn, c => messages::table
            .filter(messages::recipient.eq(recipient_of(group)))
            .filter(messages::sender.eq_any(&senders))
            .filter(messages::id.gt(low))
            .filter(messages::id.le(high))
            .select((messages::id, messages::sender))
            .load(c))?;
        let mut receipts = Vec::new();
        let mut covered = Vec::new();
        for (sender, from, to) in advances {
            let ids: Vec<i64> = sent
                .iter()
                .filter(|(id, s)| s == sender && id > from && id <= to)
                .map(|(id, _)| *id)
                .collect();
            let Some(&up_to) = ids.iter().max() else {
                continue;
            };
            covered.extend(ids);
            // A sender who hides read receipts gets none.
            if status == ReceiptStatus::Delivered || sharing.contains(sender) {
                receipts.push(Aggregate {
                    sender: sender.clone(),
                    group,
                    status,
                    up_to,
                });
            }
        }
        if !covered.is_empty() {
            match status {
                ReceiptStatus::Delivered => {
                    self.mark_delivered(&covered, at)?;
                }
                ReceiptStatus::Read => {
                    on_backend!(&mut *self.conn, c => diesel::update(
                        messages::table.filter(messages::id.eq_any(&covered)).filter(messages::read_at.is_null()),
                    )
                    .set(messages::read_at.eq(at))
                    .execute(c))?;
                }
            }
        }
        let points: Vec<Position> = advances
            .iter()
            .map(|(user, _, to)| Position {
                group,
                user: user.clone(),
                up_to: *to,
            })
            .collect();
        raise(self.conn, Column::sender(status), &points)?;
        Ok(receipts)
    }
}

/// One member's receipt times for one group message (WhatsApp's
/// "message info").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberReceipt {
    pub user: String,
    /// When their devices had it; `None` while not yet.
    pub delivered_at: Option<i64>,
    /// When they read it; `None` while not yet.
    pub read_at: Option<i64>,
    /// Whether they share read receipts: a caller showing this to the
    /// sender hides `read_at` of those who do not.
    pub shares_read_receipts: bool,
}

impl crate::Store {
    /// The receipt detail of message `message_id` in `group`: one entry per
    /// current member who was a member when it was sent, but `sender`,
    /// oldest member first. Three queries.
    pub fn group_receipt_detail(
        &self,
        group: GroupId,
        message_id: i64,
        sender: &str,
    ) -> Result<Vec<MemberReceipt>, StoreError> {
        let mut conn = self.conn()?;
        let members: Vec<String> = on_backend!(&mut *conn, c => group_members::table
            .filter(group_members::group_id.eq(group))
            .filter(group_members::left_at.is_null())
            .filter(group_members::after_message.lt(message_id))
            .filter(group_members::user_name.ne(sender))
            .order(group_members::id.asc())
            .select(group_members::user_name)
            .load(c))?;
        // The first move of each member's position to or past the message.
        let reached: Vec<(String, String, Option<i64>)> = on_backend!(&mut *conn, c => group_receipts::table
            .filter(group_receipts::group_id.eq(group))
            .filter(group_receipts::up_to.ge(message_id))
            .filter(group_receipts::user_name.eq_any(&members))
            .group_by((group_receipts::user_name, group_receipts::status))
            .select((group_receipts::user_name, group_receipts::status, diesel::dsl::min(group_receipts::at)))
            .load(c))?;
        drop(conn);
        let names: Vec<&str> = members.iter().map(String::as_str).collect();
        let sharing = self.with_read_receipts(&names)?;
        let at = |user: &str, status: ReceiptStatus| {
            reached
                .iter()
                .find(|(u, s, _)| u == user && s == status_name(status))
                .and_then(|(_, _, at)| *at)
        };
        Ok(members
            .iter()
            .map(|user| MemberReceipt {
                user: user.clone(),
                delivered_at: at(user, ReceiptStatus::Delivered),
                read_at: at(user, ReceiptStatus::Read),
                shares_read_receipts: sharing.contains(user),
            })
            .collect())
    }
}

/// The `status` column's value.
const fn status_name(status: ReceiptStatus) -> &'static str {
    match status {
        ReceiptStatus::Delivered => "delivered",
        ReceiptStatus::Read => "read",
    }
}
