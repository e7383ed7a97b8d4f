//! Reading messages back: a conversation's history, the chat list, and
//! messages by id, for one of their two participants (or, for a group
//! message, a member who may see it: [`crate::group_history`]).
//!
//! Every read goes through the `message_history` view (`messages` UNION
//! ALL `messages_archive`), so archival moves rows without changing what
//! anyone sees, and no query here needs to know where a message lives.
//!
//! Paging is by message id, newest first: ids grow in commit order (one
//! bridge worker commits at a time), so a page that ends at id N is
//! followed by exactly the ids below N, however many messages arrive
//! meanwhile.

use diesel::dsl::{count_star, max};
use diesel::prelude::*;
use protocol::history::{Chat, HistoryMessage, Page};
use std::collections::{HashMap, HashSet};

use crate::db::AnyConnection;
use crate::messages::{open_media, Message};
use crate::schema::{message_history, stars};
use crate::visibility::Visible;
use crate::{Store, StoreError};

/// Has `sender` written at least one message to `recipient`, hot or
/// archived? Archival moves rows, never what this answers.
pub(crate) fn has_written(
    conn: &mut AnyConnection,
    sender: &str,
    recipient: &str,
) -> Result<bool, StoreError> {
    let found: Option<i64> = on_backend!(conn, c => message_history::table
        .filter(message_history::sender.eq(sender))
        .filter(message_history::recipient.eq(recipient))
        .select(message_history::id)
        .first(c)
        .optional())?;
    Ok(found.is_some())
}

/// The columns a [`HistoryMessage`] is built from, in this order.
pub(crate) type Row = (
    i64,
    String,
    String,
    String,
    Vec<u8>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<Vec<u8>>,
);

pub(crate) const COLUMNS: (
    message_history::id,
    message_history::client_id,
    message_history::sender,
    message_history::recipient,
    message_history::body,
    message_history::sent_at,
    message_history::delivered_at,
    message_history::read_at,
    message_history::expires_at,
    message_history::media,
) = (
    message_history::id,
    message_history::client_id,
    message_history::sender,
    message_history::recipient,
    message_history::body,
    message_history::sent_at,
    message_history::delivered_at,
    message_history::read_at,
    message_history::expires_at,
    message_history::media,
);

/// Turns the fetched `limit + 1` items into a page: the extra item only
/// says that there is a next page, which starts below the last kept one.
pub(crate) fn page<T>(mut items: Vec<T>, limit: usize, cursor: impl Fn(&T) -> i64) -> Page<T> {
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(cursor)
    } else {
        None
    };
    Page { items, next }
}

/// `before` as an upper bound that every id is below.
pub(crate) fn below(before: Option<i64>) -> i64 {
    before.unwrap_or(i64::MAX)
}

impl Store {
    /// The messages between `me` and `peer` with id below `before`, newest
    /// first.
    pub fn conversation(
        &self,
        me: &str,
        peer: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Page<HistoryMessage>, StoreError> {
        let mut conn = self.conn()?;
        let query = message_history::table
            .filter(
                (message_history::sender
                    .eq(me)
                    .and(message_history::recipient.eq(peer)))
                .or(message_history::sender
                    .eq(peer)
                    .and(message_history::recipient.eq(me))),
            )
            .filter(message_history::id.lt(below(before)))
            .order(message_history::id.desc())
            .limit(limit as i64 + 1)
            .select(COLUMNS);
        let rows: Vec<Row> = on_backend!(&mut *conn, c => query.load(c))?;
        let messages = self.history_messages(&mut conn, me, rows)?;
        Ok(page(messages, limit, |m| m.id))
    }

    /// `me`'s conversations, the one with the newest message first; `before`
    /// is the id of a chat's last message.
    pub fn chats(
        &self,
        me: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Page<Chat>, StoreError> {
        let visible = self.visible_to(me)?;
        let mut conn = self.conn()?;
        let sent: Vec<(String, Option<i64>)> = on_backend!(&mut *conn, c => message_history::table
            .filter(message_history::sender.eq(me))
            .group_by(message_history::recipient)
            .select((message_history::recipient, max(message_history::id)))
            .load(c))?;
        let received: Vec<(String, Option<i64>)> = on_backend!(&mut *conn, c => message_history::table
            .filter(message_history::recipient.eq(me))
            .group_by(message_history::sender)
            .select((message_history::sender, max(message_history::id)))
            .load(c))?;
        let mut last_by_peer: HashMap<String, i64> = HashMap::new();
        for (peer, id) in sent.into_iter().chain(received) {
            let id = id.unwrap_or(0);
            let last = last_by_peer.entry(peer).or_insert(id);
            *last = (*last).max(id);
        }
        // A group message's recipient is its group (`#17`): those are the
        // group entries, read apart.
        last_by_peer.retain(|peer, _| crate::groups::group_of(peer).is_none());
        let mut chats: Vec<(String, i64)> = last_by_peer
            .into_iter()
            .filter(|(_, id)| *id < below(before))
            .collect();
        chats.sort_by_key(|&(_, id)| std::cmp::Reverse(id));
        chats.truncate(limit + 1);

        let peers: Vec<&str> = chats.iter().map(|(peer, _)| peer.as_str()).collect();
        let unread: HashMap<String, i64> = on_backend!(&mut *conn, c => message_history::table
            .filter(message_history::recipient.eq(me))
            .filter(message_history::sender.eq_any(&peers))
            .filter(message_history::read_at.is_null())
            .group_by(message_history::sender)
            .select((message_history::sender, count_star()))
            .load::<(String, i64)>(c))?
        .into_iter()
        .collect();
        let timers = self.timers(me, &peers)?;
        let ids: Vec<i64> = chats.iter().map(|(_, id)| *id).collect();
        let mut last_messages: HashMap<i64, HistoryMessage> = self
            .messages_by_id(&mut conn, me, &visible, &ids)?
            .into_iter()
            .map(|m| (m.id, m))
            .collect();
        let mut items: Vec<Chat> = chats
            .into_iter()
            .filter_map(|(peer, id)| {
                Some(Chat {
                    unread: unread.get(&peer).copied().unwrap_or(0),
                    timer_seconds: timers.get(&peer).copied().unwrap_or(0),
                    last_message: last_messages.remove(&id)?,
                    peer: Some(peer),
                    group: None,
                    name: None,
                })
            })
            .collect();
        // Groups beside 1:1 chats, in the same order (newest message first).
        items.extend(
            self.group_chats(&mut conn, me, &visible)?
                .into_iter()
                .filter(|chat| chat.last_message.id < below(before)),
        );
        items.sort_by_key(|chat| std::cmp::Reverse(chat.last_message.id));
        Ok(page(items, limit, |chat| chat.last_message.id))
    }

    /// Message `id`, if `me` sent or received it, or may see it in a group.
    pub fn message_for(&self, me: &str, id: i64) -> Result<Option<HistoryMessage>, StoreError> {
        let visible = self.visible_to(me)?;
        let mut conn = self.conn()?;
        Ok(self.messages_by_id(&mut conn, me, &visible, &[id])?.pop())
    }

    /// The messages among `ids` that `me` sent or received, or that are
    /// `visible` group messages, newest first.
    pub(crate) fn messages_by_id(
        &self,
        conn: &mut AnyConnection,
        me: &str,
        visible: &Visible,
        ids: &[i64],
    ) -> Result<Vec<HistoryMessage>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<Row> = on_backend!(conn, c => message_history::table
            .filter(message_history::id.eq_any(ids))
            .filter(message_history::sender.eq(me).or(message_history::recipient.eq(me)).or(visible.condition("recipient", "id")))
            .order(message_history::id.desc())
            .select(COLUMNS)
            .load(c))?;
        self.history_messages(conn, me, rows)
    }

    /// Blanks `read_at` on `me`'s own messages where a read receipt would
    /// not have told them, as the bridge decides receipts: unless both
    /// participants have read receipts on (now).
    pub fn hide_unshared_reads<'a>(
        &self,
        me: &str,
        messages: impl IntoIterator<Item = &'a mut HistoryMessage>,
    ) -> Result<(), StoreError> {
        let mut messages: Vec<&mut HistoryMessage> = messages
            .into_iter()
            .filter(|m| m.from == me && m.read_at.is_some())
            .collect();
        if messages.is_empty() {
            return Ok(());
        }
        let mut names: Vec<&str> = messages.iter().filter_map(|m| m.to.as_deref()).collect();
        names.push(me);
        let sharing = self.with_read_receipts(&names)?;
        for message in &mut messages {
            // A group's aggregate read already leaves out the members with
            // read receipts off: only the sender's own setting is left.
            let peer_shares = message.to.as_deref().is_none_or(|to| sharing.contains(to));
            if !(sharing.contains(me) && peer_shares) {
                message.read_at = None;
            }
        }
        Ok(())
    }

    /// Opens the bodies of `rows` and marks the ones `me` starred.
    pub(crate) fn history_messages(
        &self,
        conn: &mut AnyConnection,
        me: &str,
        rows: Vec<Row>,
    ) -> Result<Vec<HistoryMessage>, StoreError> {
        let ids: Vec<i64> = rows.iter().map(|row| row.0).collect();
        let starred: HashSet<i64> = if ids.is_empty() {
            HashSet::new()
        } else {
            on_backend!(conn, c => stars::table
                .filter(stars::user_name.eq(me))
                .filter(stars::message_id.eq_any(&ids))
                .select(stars::message_id)
                .load::<i64>(c))?
            .into_iter()
            .collect()
        };
        let sealer = self.sealer()?;
        rows.into_iter()
            .map(
                |(
                    id,
                    client_id,
                    from,
                    to,
                    body,
                    sent_at,
                    delivered_at,
                    read_at,
                    expires_at,
                    media,
                )| {
                    let message = Message {
                        id,
                        client_id,
                        sender: from,
                        recipient: to,
                        body: sealer.open_string(&body)?,
                        media: open_media(sealer, media.as_deref())?,
                        sent_at,
                        expires_at,
                    };
                    Ok(message.history(delivered_at, read_at, starred.contains(&id)))
                },
            )
            .collect()
    }
}
