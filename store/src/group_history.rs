//! Reading groups: a group's history, the sender's per-member receipts,
//! group entries of the chat list, and the visibility rule every other
//! read (search, stars, media, export) applies to group messages.
//!
//! A member sees a group's messages inside their membership windows only
//! ([`crate::groups::Window`]): a removed member keeps the history up to
//! the removal, a later member sees from joining, and a user who was never
//! a member sees nothing, exactly as if the group did not exist. A group
//! message is a `messages` row whose recipient is the group's reserved name
//! (`#17`), so the rule is a condition on `(recipient, id)`:
//! [`Visible`] (in [`crate::visibility`]) renders it for one user's
//! windows, and every read that may return group messages adds it to its
//! filter.
//!
//! Changes of a group (who joined, left, was promoted; renames; timers)
//! are stored in `group_changes` with the newest message id when they
//! happened (`after_message`), which places them among the messages:
//! history shows each one, as a system entry, to whoever was a member
//! when it happened.
//!
//! # Invariant
//! A user reads a group message (in history, search, stars, media, the
//! chat list or their export) only if one of their windows holds it: every
//! query here and in those modules that can return a group message filters
//! by [`Visible`] in SQL, so a page is never cut short or padded by a later
//! check. Nothing here writes.

use diesel::dsl::{count_star, max, sql};
use diesel::prelude::*;
use diesel::sql_types::Bool;
use protocol::groups::{GroupEvent, GroupId};
use protocol::history::{Chat, GroupChangeEntry, GroupHistoryItem, MemberReceipt, Page};
use protocol::messages::Event;
use std::collections::HashMap;

use crate::db::AnyConnection;
use crate::groups::{recipient_of, Window};
use crate::history::{below, Row, COLUMNS};
use crate::schema::{chat_groups, group_changes, group_members, message_history};
use crate::visibility::Visible;
use crate::{Store, StoreError};

/// A membership window with its times, which decide which changes of the
/// group its member saw.
#[derive(Debug, Clone, Copy)]
struct TimedWindow {
    window: Window,
    joined_at: i64,
    left_at: Option<i64>,
}

impl TimedWindow {
    /// Did its member see the change made at `at` after message `after`?
    fn saw(&self, after: i64, at: i64) -> bool {
        let w = self.window;
        after >= w.after_message
            && w.through_message.is_none_or(|t| after <= t)
            && at >= self.joined_at
            && self.left_at.is_none_or(|left| at <= left)
    }
}

fn timed_windows(
    conn: &mut AnyConnection,
    group: GroupId,
    user: &str,
) -> Result<Vec<TimedWindow>, StoreError> {
    let rows: Vec<(i64, Option<i64>, i64, Option<i64>)> = on_backend!(conn, c => group_members::table
        .filter(group_members::group_id.eq(group))
        .filter(group_members::user_name.eq(user))
        .order(group_members::id.asc())
        .select((group_members::after_message, group_members::through_message, group_members::joined_at, group_members::left_at))
        .load(c))?;
    Ok(rows
        .into_iter()
        .map(
            |(after_message, through_message, joined_at, left_at)| TimedWindow {
                window: Window {
                    after_message,
                    through_message,
                },
                joined_at,
                left_at,
            },
        )
        .collect())
}

impl Store {
    /// `group`'s history as `me` sees it, newest first: up to `limit`
    /// messages with id below `before` inside `me`'s windows, with the
    /// changes of the group among them that `me` saw. `None` when `me` was
    /// never a member (or there is no such group): the caller answers as
    /// for a group that does not exist.
    ///
    /// Paging is by message id, as 6.1: `next` is the last message's id.
    /// The changes that happened after message A come right before (newer
    /// than) message A, so a page holds those with `after_message` from
    /// its oldest message up to `before`; the last page holds the rest.
    pub fn group_history(
        &self,
        me: &str,
        group: GroupId,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Option<Page<GroupHistoryItem>>, StoreError> {
        let mut conn = self.conn()?;
        let windows = timed_windows(&mut conn, group, me)?;
        if windows.is_empty() {
            return Ok(None);
        }
        let visible = Visible::of(HashMap::from([(
            group,
            windows.iter().map(|w| w.window).collect(),
        )]));
        let rows: Vec<Row> = on_backend!(&mut *conn, c => message_history::table
            .filter(message_history::recipient.eq(recipient_of(group)))
            .filter(message_history::id.lt(below(before)))
            .filter(visible.condition("recipient", "id"))
            .order(message_history::id.desc())
            .limit(limit as i64 + 1)
            .select(COLUMNS)
            .load(c))?;
        let mut messages = self.history_messages(&mut conn, me, rows)?;
        let next = if messages.len() > limit {
            messages.truncate(limit);
            messages.last().map(|m| m.id)
        } else {
            None
        };
        // The changes this page covers: after its oldest message (all the
        // older ones on the last page), up to `before`.
        let from = next.unwrap_or(i64::MIN);
        let changes: Vec<(i64, i64, String)> = on_backend!(&mut *conn, c => group_changes::table
            .filter(group_changes::group_id.eq(group))
            .filter(group_changes::after_message.ge(from))
            .filter(group_changes::after_message.lt(below(before)))
            .order((group_changes::after_message.desc(), group_changes::id.desc()))
            .select((group_changes::after_message, group_changes::at, group_changes::event))
            .load(c))?;
        drop(conn);
        self.hide_unshared_reads(me, &mut messages)?;
        let mut changes = changes
            .into_iter()
            .filter(|&(after, at, _)| windows.iter().any(|w| w.saw(after, at)))
            .map(|(after_message, _, event)| {
                Ok(GroupChangeEntry::new(parse_change(&event)?, after_message))
            })
            .collect::<Result<Vec<_>, StoreError>>()?
            .into_iter()
            .peekable();
        // Merge, newest first: a change after message A is newer than A.
        let mut items = Vec::new();
        for message in messages {
            while let Some(change) = changes.next_if(|c| c.after_message >= message.id) {
                items.push(GroupHistoryItem::Change(change));
            }
            items.push(GroupHistoryItem::Message(message));
        }
        items.extend(changes.map(GroupHistoryItem::Change));
        Ok(Some(Page { items, next }))
    }

    /// Who of `group` got and read `me`'s message `message_id` (WhatsApp's
    /// "message info"): the times of [`Store::group_receipt_detail`], one
    /// item per current member who was in the group when it was sent.
    /// `None` unless `me` sent that message to that group, so nobody else
    /// can learn anything from the answer. `read_at` is left out for a
    /// member with read receipts off, and for everyone while `me` has them
    /// off, as the aggregate read receipts are.
    pub fn group_message_receipts(
        &self,
        me: &str,
        group: GroupId,
        message_id: i64,
    ) -> Result<Option<Vec<MemberReceipt>>, StoreError> {
        let sent: Option<i64> = on_backend!(&mut *self.conn()?, c => message_history::table
            .filter(message_history::id.eq(message_id))
            .filter(message_history::sender.eq(me))
            .filter(message_history::recipient.eq(recipient_of(group)))
            .select(message_history::id)
            .first(c)
            .optional())?;
        if sent.is_none() {
            return Ok(None);
        }
        let i_share = self.with_read_receipts(&[me])?.contains(me);
        let detail = self.group_receipt_detail(group, message_id, me)?;
        Ok(Some(
            detail
                .into_iter()
                .map(|member| MemberReceipt {
                    read_at: member
                        .read_at
                        .filter(|_| i_share && member.shares_read_receipts),
                    // A read says delivered too.
                    delivered_at: member.delivered_at.or(member.read_at),
                    user: member.user,
                })
                .collect(),
        ))
    }

    /// The group entries of `me`'s chat list: each group with a message
    /// `me` may see, by the id of the newest such message, with the
    /// group's name, timer and `me`'s unread count (messages of others
    /// after `me`'s read position, inside the windows).
    pub(crate) fn group_chats(
        &self,
        conn: &mut AnyConnection,
        me: &str,
        visible: &Visible,
    ) -> Result<Vec<Chat>, StoreError> {
        let groups: Vec<GroupId> = visible.groups().collect();
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let recipients: Vec<String> = groups.iter().map(|&g| recipient_of(g)).collect();
        let newest: Vec<(String, Option<i64>)> = on_backend!(&mut *conn, c => message_history::table
            .filter(message_history::recipient.eq_any(&recipients))
            .filter(visible.condition("recipient", "id"))
            .group_by(message_history::recipient)
            .select((message_history::recipient, max(message_history::id)))
            .load(c))?;
        // The read position of `me`'s newest window in each group.
        let read: Vec<(GroupId, i64)> = on_backend!(&mut *conn, c => group_members::table
            .filter(group_members::user_name.eq(me))
            .order(group_members::id.asc())
            .select((group_members::group_id, group_members::read_up_to))
            .load(c))?;
        let read: HashMap<GroupId, i64> = read.into_iter().collect();
        let unread_sql = groups
            .iter()
            .map(|g| {
                format!(
                    "(recipient = '{}' AND id > {})",
                    recipient_of(*g),
                    read.get(g).copied().unwrap_or(0)
                )
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        let unread: HashMap<String, i64> = on_backend!(&mut *conn, c => message_history::table
            .filter(message_history::recipient.eq_any(&recipients))
            .filter(message_history::sender.ne(me))
            .filter(visible.condition("recipient", "id"))
            .filter(sql::<Bool>(&format!("({unread_sql})")))
            .group_by(message_history::recipient)
            .select((message_history::recipient, count_star()))
            .load::<(String, i64)>(c))?
        .into_iter()
        .collect();
        let described: HashMap<GroupId, (String, i64)> =
            on_backend!(&mut *conn, c => chat_groups::table
            .filter(chat_groups::id.eq_any(&groups))
            .select((chat_groups::id, chat_groups::name, chat_groups::timer_seconds))
            .load::<(GroupId, String, i64)>(c))?
            .into_iter()
            .map(|(id, name, timer)| (id, (name, timer)))
            .collect();
        let ids: Vec<i64> = newest.iter().filter_map(|(_, id)| *id).collect();
        let mut last: HashMap<i64, _> = self
            .messages_by_id(conn, me, visible, &ids)?
            .into_iter()
            .map(|m| (m.id, m))
            .collect();
        Ok(newest
            .into_iter()
            .filter_map(|(recipient, id)| {
                let id = id?;
                let group = crate::groups::group_of(&recipient)?;
                let (name, timer_seconds) = described.get(&group)?.clone();
                Some(Chat {
                    peer: None,
                    group: Some(group),
                    name: Some(name),
                    last_message: last.remove(&id)?,
                    unread: unread.get(&recipient).copied().unwrap_or(0),
                    timer_seconds,
                })
            })
            .collect())
    }
}

/// A stored change (the `group` event's JSON, with or without its `type`).
fn parse_change(json: &str) -> Result<GroupEvent, StoreError> {
    match serde_json::from_str::<Event>(json) {
        Ok(Event::Group(event)) => Ok(event),
        _ => serde_json::from_str::<GroupEvent>(json)
            .map_err(|e| StoreError::Corrupt(format!("group change: {e}"))),
    }
}
