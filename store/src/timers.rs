//! Disappearing-message timers: one per chat, set by either participant,
//! applied to messages sent after it is set.
//!
//! A timer can only be turned on in a chat that exists, one with at least
//! one message between the two (hot or archived): otherwise anyone could
//! put timer events into a stranger's inbox.

use diesel::prelude::*;
use std::collections::HashMap;

use crate::db::{AnyConnection, Tx};
use crate::schema::chat_timers;
use crate::{Store, StoreError};

/// A chat's two participants in name order, the timer table's key.
fn pair<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// What [`Tx::set_timer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerChange {
    /// The timer is now the one asked for.
    Changed,
    /// It already was.
    Unchanged,
    /// Refused: no message was ever exchanged between the two.
    NoChat,
}

impl Tx<'_> {
    /// Sets the timer of the chat between `by` and `peer` to `seconds` (0 is
    /// off), if the chat exists.
    pub fn set_timer(
        &mut self,
        by: &str,
        peer: &str,
        seconds: i64,
        at: i64,
    ) -> Result<TimerChange, StoreError> {
        let (a, b) = pair(by, peer);
        let current = timers(self.conn, by, &[peer])?
            .get(peer)
            .copied()
            .unwrap_or(0);
        if current == seconds {
            return Ok(TimerChange::Unchanged);
        }
        let chat_exists = crate::history::has_written(self.conn, by, peer)?
            || crate::history::has_written(self.conn, peer, by)?;
        if !chat_exists {
            return Ok(TimerChange::NoChat);
        }
        on_backend!(&mut *self.conn, c => diesel::delete(
            chat_timers::table.filter(chat_timers::user_a.eq(a)).filter(chat_timers::user_b.eq(b)),
        )
        .execute(c))?;
        if seconds > 0 {
            on_backend!(&mut *self.conn, c => diesel::insert_into(chat_timers::table)
                .values((
                    chat_timers::user_a.eq(a),
                    chat_timers::user_b.eq(b),
                    chat_timers::seconds.eq(seconds),
                    chat_timers::set_by.eq(by),
                    chat_timers::set_at.eq(at),
                ))
                .execute(c))?;
        }
        Ok(TimerChange::Changed)
    }
}

impl Tx<'_> {
    /// Every timer of a chat with a participant among `names`, keyed by
    /// the pair in name order: one query for a whole batch of sends.
    pub fn timers_among(
        &mut self,
        names: &[&str],
    ) -> Result<HashMap<(String, String), i64>, StoreError> {
        if names.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(String, String, i64)> = on_backend!(&mut *self.conn, c => chat_timers::table
            .filter(chat_timers::user_a.eq_any(names).or(chat_timers::user_b.eq_any(names)))
            .select((chat_timers::user_a, chat_timers::user_b, chat_timers::seconds))
            .load(c))?;
        Ok(rows.into_iter().map(|(a, b, s)| ((a, b), s)).collect())
    }
}

/// The key of the chat between `a` and `b` in [`Tx::timers_among`]'s map.
pub fn chat_key(a: &str, b: &str) -> (String, String) {
    let (a, b) = pair(a, b);
    (a.to_owned(), b.to_owned())
}

impl Store {
    /// The timers (seconds) of `user`'s chats with `peers`.
    pub fn timers(&self, user: &str, peers: &[&str]) -> Result<HashMap<String, i64>, StoreError> {
        timers(&mut *self.conn()?, user, peers)
    }
}

fn timers(
    conn: &mut AnyConnection,
    user: &str,
    peers: &[&str],
) -> Result<HashMap<String, i64>, StoreError> {
    if peers.is_empty() {
        return Ok(HashMap::new());
    }
    // The user is on either side of the pair, depending on the names.
    let rows: Vec<(String, String, i64)> = on_backend!(conn, c => chat_timers::table
        .filter(
            chat_timers::user_a.eq(user).and(chat_timers::user_b.eq_any(peers))
                .or(chat_timers::user_b.eq(user).and(chat_timers::user_a.eq_any(peers))),
        )
        .select((chat_timers::user_a, chat_timers::user_b, chat_timers::seconds))
        .load(c))?;
    Ok(rows
        .into_iter()
        .map(|(a, b, seconds)| (if a == user { b } else { a }, seconds))
        .collect())
}
