//! Starred messages: each participant of a message (and each member who
//! may see a group message) may star it for themself; nobody else can, or
//! can tell that it exists.

use diesel::prelude::*;
use protocol::history::{Page, StarredMessage};

use crate::db::Tx;
use crate::history::{below, page};
use crate::schema::{message_history, stars};
use crate::visibility::Visible;
use crate::{Store, StoreError};

/// What a star or unstar did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StarChange {
    /// The message is not one the user sent or received (or does not exist).
    NotFound,
    /// It already was in the asked state: nothing changed.
    Unchanged,
    /// The state changed.
    Changed,
}

impl Tx<'_> {
    /// Stars or unstars message `id` for `user`. Idempotent.
    pub fn set_star(
        &mut self,
        user: &str,
        id: i64,
        starred: bool,
        at: i64,
    ) -> Result<StarChange, StoreError> {
        let visible = Visible::of(self.every_window_of(user)?);
        let participant: i64 = on_backend!(&mut *self.conn, c => message_history::table
            .filter(message_history::id.eq(id))
            .filter(message_history::sender.eq(user).or(message_history::recipient.eq(user)).or(visible.condition("recipient", "id")))
            .count()
            .get_result(c))?;
        if participant == 0 {
            return Ok(StarChange::NotFound);
        }
        let changed = if starred {
            on_backend!(&mut *self.conn, c => diesel::insert_into(stars::table)
                .values((stars::user_name.eq(user), stars::message_id.eq(id), stars::starred_at.eq(at)))
                .on_conflict_do_nothing()
                .execute(c))?
        } else {
            on_backend!(&mut *self.conn, c => diesel::delete(
                stars::table.filter(stars::user_name.eq(user)).filter(stars::message_id.eq(id)),
            )
            .execute(c))?
        };
        Ok(if changed > 0 {
            StarChange::Changed
        } else {
            StarChange::Unchanged
        })
    }
}

impl Store {
    /// `user`'s starred messages with id below `before`, newest message
    /// first.
    pub fn stars(
        &self,
        user: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Page<StarredMessage>, StoreError> {
        let visible = self.visible_to(user)?;
        let mut conn = self.conn()?;
        let starred: Vec<(i64, i64)> = on_backend!(&mut *conn, c => stars::table
            .filter(stars::user_name.eq(user))
            .filter(stars::message_id.lt(below(before)))
            .order(stars::message_id.desc())
            .limit(limit as i64 + 1)
            .select((stars::message_id, stars::starred_at))
            .load(c))?;
        let ids: Vec<i64> = starred.iter().map(|(id, _)| *id).collect();
        let messages = self.messages_by_id(&mut conn, user, &visible, &ids)?;
        // A star whose message is gone (expired) is skipped, not an error.
        let mut messages = messages.into_iter().peekable();
        let items = starred
            .into_iter()
            .filter_map(|(id, starred_at)| {
                while messages.peek().is_some_and(|m| m.id > id) {
                    messages.next();
                }
                let message = messages.next_if(|m| m.id == id)?;
                // A group message has no peer: its `group` says where it is.
                let peer = match &message.to {
                    None => None,
                    Some(to) if message.from == user => Some(to.clone()),
                    Some(_) => Some(message.from.clone()),
                };
                Some(StarredMessage {
                    peer,
                    starred_at,
                    message,
                })
            })
            .collect();
        Ok(page(items, limit, |s| s.message.id))
    }
}
