//! Groups: who is in which group, since when and until when, and how far
//! each member has received and read.
//!
//! A group message is stored once, as a `messages` row whose `recipient`
//! is the group's reserved name ([`recipient_of`]: `#17` for group 17),
//! which no user name can be. Everything that reads messages by recipient
//! (history, archival, expiry, dedupe) works on group messages unchanged,
//! and 1:1 queries never see them.
//!
//! Membership is kept in windows ([`Window`]): a row each time a user
//! joins, closed when they leave or are removed. A member sees the group's
//! messages inside their windows only: a removed member keeps the history
//! up to the removal, a later member sees from joining. [`Member`] is a
//! current membership with its receipt positions, what the bridge needs to
//! fan a message out and to compute aggregate receipts.
//!
//! # Invariant
//! - A user has at most one open window per group (a unique index).
//! - A window's `after_message` is the newest message id when it opened;
//!   `through_message` the newest when it closed. Message ids grow in
//!   commit order, so the window holds exactly the group's messages stored
//!   while the user was a member.
//! - `delivered_up_to` / `read_up_to` only move forward, and start at
//!   `after_message`.
//!
//! This module owns the tables `chat_groups`, `group_members`,
//! `group_changes` and `group_receipts`. Who may do what (admin rules)
//! is the bridge's to decide.

use diesel::prelude::*;
use protocol::groups::{Group, GroupEvent, GroupId, GroupMember};
use std::collections::HashMap;

use crate::db::{AnyConnection, Tx};
use crate::schema::{chat_groups, group_changes, group_members, messages, messages_archive};
use crate::{Store, StoreError};

/// The first character of a group's reserved recipient name.
pub const RECIPIENT_PREFIX: char = '#';

/// The `messages.recipient` of group `group`'s messages: `#{group}`.
pub fn recipient_of(group: GroupId) -> String {
    format!("{RECIPIENT_PREFIX}{group}")
}

/// The group a `messages.recipient` names, if it is a group's (`#17` →
/// 17); `None` for a user name.
pub fn group_of(recipient: &str) -> Option<GroupId> {
    recipient.strip_prefix(RECIPIENT_PREFIX)?.parse().ok()
}

/// A fresh id for a `create` that came without one (an HTTP caller that
/// gave no `id`): 32 random hex digits, like a media id.
pub fn new_create_id() -> String {
    crate::media::new_media_id()
}

/// A current member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = group_members)]
pub struct Member {
    #[diesel(column_name = group_id)]
    pub group: GroupId,
    #[diesel(column_name = user_name)]
    pub user: String,
    pub admin: bool,
    /// When this window opened, Unix milliseconds.
    pub joined_at: i64,
    /// Sees the group's messages with an id above this.
    pub after_message: i64,
    /// Their devices have stored every group message up to this id.
    pub delivered_up_to: i64,
    /// They have read every group message up to this id.
    pub read_up_to: i64,
}

/// One membership window of a user in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Sees the group's messages with an id above this…
    pub after_message: i64,
    /// …and at or below this, once closed (`None`: still a member).
    pub through_message: Option<i64>,
}

impl Window {
    /// Does this window hold message `id`?
    pub fn holds(&self, id: i64) -> bool {
        id > self.after_message && self.through_message.is_none_or(|through| id <= through)
    }
}

/// `user`'s current membership of `group`, if they are a member.
fn membership(conn: &mut AnyConnection, group: GroupId, user: &str) -> Result<Option<Member>, StoreError> {
    Ok(on_backend!(conn, c => group_members::table
        .filter(group_members::group_id.eq(group))
        .filter(group_members::user_name.eq(user))
        .filter(group_members::left_at.is_null())
        .select(Member::as_select())
        .first(c)
        .optional())?)
}

/// The current members of each of `groups`, oldest first, in one query.
/// A group with no member (or no such group) is absent from the map.
fn members_of(conn: &mut AnyConnection, groups: &[GroupId]) -> Result<HashMap<GroupId, Vec<Member>>, StoreError> {
    let mut by_group: HashMap<GroupId, Vec<Member>> = HashMap::new();
    if groups.is_empty() {
        return Ok(by_group);
    }
    let members: Vec<Member> = on_backend!(conn, c => group_members::table
        .filter(group_members::group_id.eq_any(groups))
        .filter(group_members::left_at.is_null())
        .order((group_members::group_id.asc(), group_members::id.asc()))
        .select(Member::as_select())
        .load(c))?;
    for m in members {
        by_group.entry(m.group).or_default().push(m);
    }
    Ok(by_group)
}

/// Every window (open or closed) of `user` in `group`, oldest first.
fn windows(conn: &mut AnyConnection, group: GroupId, user: &str) -> Result<Vec<Window>, StoreError> {
    let rows: Vec<(i64, Option<i64>)> = on_backend!(conn, c => group_members::table
        .filter(group_members::group_id.eq(group))
        .filter(group_members::user_name.eq(user))
        .order(group_members::id.asc())
        .select((group_members::after_message, group_members::through_message))
        .load(c))?;
    Ok(rows
        .into_iter()
        .map(|(after_message, through_message)| Window {
            after_message,
            through_message,
        })
        .collect())
}

/// The groups `user` is a member of now.
fn groups_of(conn: &mut AnyConnection, user: &str) -> Result<Vec<GroupId>, StoreError> {
    Ok(on_backend!(conn, c => group_members::table
        .filter(group_members::user_name.eq(user))
        .filter(group_members::left_at.is_null())
        .order(group_members::group_id.asc())
        .select(group_members::group_id)
        .load(c))?)
}

/// The groups `user` has ever been in (a member now or earlier), each with
/// their windows: what history and search read within.
fn every_window_of(conn: &mut AnyConnection, user: &str) -> Result<HashMap<GroupId, Vec<Window>>, StoreError> {
    let rows: Vec<(GroupId, i64, Option<i64>)> = on_backend!(conn, c => group_members::table
        .filter(group_members::user_name.eq(user))
        .order(group_members::id.asc())
        .select((group_members::group_id, group_members::after_message, group_members::through_message))
        .load(c))?;
    let mut by_group: HashMap<GroupId, Vec<Window>> = HashMap::new();
    for (group, after_message, through_message) in rows {
        by_group.entry(group).or_default().push(Window {
            after_message,
            through_message,
        });
    }
    Ok(by_group)
}

/// `groups` as [`Group`]s with their current members (two queries).
fn describe(conn: &mut AnyConnection, groups: &[GroupId]) -> Result<Vec<Group>, StoreError> {
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(GroupId, String, i64, String, i64)> = on_backend!(conn, c => chat_groups::table
        .filter(chat_groups::id.eq_any(groups))
        .order(chat_groups::id.asc())
        .select((chat_groups::id, chat_groups::name, chat_groups::created_at, chat_groups::created_by, chat_groups::timer_seconds))
        .load(c))?;
    let mut members = members_of(conn, groups)?;
    Ok(rows
        .into_iter()
        .map(|(id, name, created_at, created_by, timer_seconds)| Group {
            id,
            name,
            created_at,
            created_by,
            timer_seconds,
            members: members
                .remove(&id)
                .unwrap_or_default()
                .into_iter()
                .map(|m| GroupMember {
                    user: m.user,
                    admin: m.admin,
                    joined_at: m.joined_at,
                })
                .collect(),
        })
        .collect())
}

impl Store {
    /// `user`'s current membership of `group`; `None` if they are not a
    /// member (or there is no such group).
    pub fn membership(&self, group: GroupId, user: &str) -> Result<Option<Member>, StoreError> {
        membership(&mut *self.conn()?, group, user)
    }

    /// The current members of each of `groups`, oldest first, in one query.
    pub fn members_of(&self, groups: &[GroupId]) -> Result<HashMap<GroupId, Vec<Member>>, StoreError> {
        members_of(&mut *self.conn()?, groups)
    }

    /// Every membership window of `user` in `group`, oldest first (empty:
    /// never a member).
    pub fn windows(&self, group: GroupId, user: &str) -> Result<Vec<Window>, StoreError> {
        windows(&mut *self.conn()?, group, user)
    }

    /// Every group `user` has ever been in, with their windows.
    pub fn every_window_of(&self, user: &str) -> Result<HashMap<GroupId, Vec<Window>>, StoreError> {
        every_window_of(&mut *self.conn()?, user)
    }

    /// The groups `user` is a member of now, by id.
    pub fn groups_of(&self, user: &str) -> Result<Vec<GroupId>, StoreError> {
        groups_of(&mut *self.conn()?, user)
    }

    /// The groups `user` is a member of now, described.
    pub fn groups_described(&self, user: &str) -> Result<Vec<Group>, StoreError> {
        let mut conn = self.conn()?;
        let ids = groups_of(&mut conn, user)?;
        describe(&mut conn, &ids)
    }

    /// `group` described, if `user` is a member now: a non-member cannot
    /// tell whether it exists.
    pub fn group_for(&self, group: GroupId, user: &str) -> Result<Option<Group>, StoreError> {
        let mut conn = self.conn()?;
        if membership(&mut conn, group, user)?.is_none() {
            return Ok(None);
        }
        Ok(describe(&mut conn, &[group])?.pop())
    }
}

impl Tx<'_> {
    /// `user`'s current membership of `group`, inside the transaction.
    pub fn membership(&mut self, group: GroupId, user: &str) -> Result<Option<Member>, StoreError> {
        membership(self.conn, group, user)
    }

    /// The current members of each of `groups`, oldest first, in one query
    /// (a batch's sends to all its groups).
    pub fn members_of(&mut self, groups: &[GroupId]) -> Result<HashMap<GroupId, Vec<Member>>, StoreError> {
        members_of(self.conn, groups)
    }

    /// `groups` described, inside the transaction.
    pub fn describe_groups(&mut self, groups: &[GroupId]) -> Result<Vec<Group>, StoreError> {
        describe(self.conn, groups)
    }
}

/// What [`Tx::create_group`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// A new group with this id.
    New(GroupId),
    /// The creator already created a group with this client id.
    Existing(GroupId),
}

/// A group's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub name: String,
    pub timer_seconds: i64,
}

/// Rows per multi-row insert of windows: well under both backends'
/// limits on bound parameters (9 a row).
const WINDOW_CHUNK: usize = 1_000;

impl Tx<'_> {
    /// The newest message id stored so far, hot or archived (0 if none):
    /// where a window opening or closing now begins or ends.
    pub fn newest_message_id(&mut self) -> Result<i64, StoreError> {
        let hot: Option<i64> = on_backend!(&mut *self.conn, c => messages::table
            .select(diesel::dsl::max(messages::id))
            .first(c))?;
        let archived: Option<i64> = on_backend!(&mut *self.conn, c => messages_archive::table
            .select(diesel::dsl::max(messages_archive::id))
            .first(c))?;
        Ok(hot.unwrap_or(0).max(archived.unwrap_or(0)))
    }

    /// Creates a group named `name`, unless `creator` already created one
    /// with `client_id`. Members are added with [`Tx::open_windows`].
    pub fn create_group(
        &mut self,
        creator: &str,
        client_id: &str,
        name: &str,
        at: i64,
    ) -> Result<Created, StoreError> {
        let id: Option<GroupId> = on_backend!(&mut *self.conn, c => diesel::insert_into(chat_groups::table)
            .values((
                chat_groups::name.eq(name),
                chat_groups::created_by.eq(creator),
                chat_groups::client_id.eq(client_id),
                chat_groups::created_at.eq(at),
            ))
            .on_conflict((chat_groups::created_by, chat_groups::client_id))
            .do_nothing()
            .returning(chat_groups::id)
            .get_result(c)
            .optional())?;
        if let Some(id) = id {
            return Ok(Created::New(id));
        }
        let id = on_backend!(&mut *self.conn, c => chat_groups::table
            .filter(chat_groups::created_by.eq(creator))
            .filter(chat_groups::client_id.eq(client_id))
            .select(chat_groups::id)
            .first(c))?;
        Ok(Created::Existing(id))
    }

    /// Opens a window for each of `users` (name, admin) in `group`: they
    /// see its messages after `after_message`, and their receipt positions
    /// start there. The caller has checked that none is a member.
    pub fn open_windows(
        &mut self,
        group: GroupId,
        users: &[(&str, bool)],
        at: i64,
        after_message: i64,
    ) -> Result<(), StoreError> {
        let rows: Vec<_> = users
            .iter()
            .map(|(user, admin)| {
                (
                    group_members::group_id.eq(group),
                    group_members::user_name.eq(*user),
                    group_members::admin.eq(*admin),
                    group_members::joined_at.eq(at),
                    group_members::after_message.eq(after_message),
                    group_members::delivered_up_to.eq(after_message),
                    group_members::read_up_to.eq(after_message),
                    group_members::sender_delivered.eq(after_message),
                    group_members::sender_read.eq(after_message),
                )
            })
            .collect();
        for chunk in rows.chunks(WINDOW_CHUNK) {
            on_backend!(&mut *self.conn, c => diesel::insert_into(group_members::table).values(chunk).execute(c))?;
        }
        Ok(())
    }

    /// Closes `user`'s open window in `group` after `through_message`;
    /// false if they were not a member.
    pub fn close_window(
        &mut self,
        group: GroupId,
        user: &str,
        at: i64,
        through_message: i64,
    ) -> Result<bool, StoreError> {
        let closed = on_backend!(&mut *self.conn, c => diesel::update(
            group_members::table
                .filter(group_members::group_id.eq(group))
                .filter(group_members::user_name.eq(user))
                .filter(group_members::left_at.is_null()),
        )
        .set((
            group_members::left_at.eq(at),
            group_members::through_message.eq(through_message),
            group_members::admin.eq(false),
        ))
        .execute(c))?;
        Ok(closed > 0)
    }

    /// Makes current member `user` of `group` an admin or not.
    pub fn set_admin(&mut self, group: GroupId, user: &str, admin: bool) -> Result<(), StoreError> {
        on_backend!(&mut *self.conn, c => diesel::update(
            group_members::table
                .filter(group_members::group_id.eq(group))
                .filter(group_members::user_name.eq(user))
                .filter(group_members::left_at.is_null()),
        )
        .set(group_members::admin.eq(admin))
        .execute(c))?;
        Ok(())
    }

    /// `group`'s name and timer; `None` if there is no such group.
    pub fn group_settings(&mut self, group: GroupId) -> Result<Option<Settings>, StoreError> {
        let row: Option<(String, i64)> = on_backend!(&mut *self.conn, c => chat_groups::table
            .filter(chat_groups::id.eq(group))
            .select((chat_groups::name, chat_groups::timer_seconds))
            .first(c)
            .optional())?;
        Ok(row.map(|(name, timer_seconds)| Settings {
            name,
            timer_seconds,
        }))
    }

    /// Sets `group`'s name and timer.
    pub fn set_group_settings(&mut self, group: GroupId, settings: &Settings) -> Result<(), StoreError> {
        on_backend!(&mut *self.conn, c => diesel::update(chat_groups::table.filter(chat_groups::id.eq(group)))
            .set((
                chat_groups::name.eq(&settings.name),
                chat_groups::timer_seconds.eq(settings.timer_seconds),
            ))
            .execute(c))?;
        Ok(())
    }

    /// The timers (seconds, only those on) of `groups`: one query for a
    /// batch's group sends.
    pub fn group_timers(&mut self, groups: &[GroupId]) -> Result<HashMap<GroupId, i64>, StoreError> {
        if groups.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(GroupId, i64)> = on_backend!(&mut *self.conn, c => chat_groups::table
            .filter(chat_groups::id.eq_any(groups))
            .filter(chat_groups::timer_seconds.gt(0))
            .select((chat_groups::id, chat_groups::timer_seconds))
            .load(c))?;
        Ok(rows.into_iter().collect())
    }

    /// Keeps `event` in the group's history of changes, placed after
    /// message `after_message`.
    pub fn record_group_change(&mut self, event: &GroupEvent, after_message: i64) -> Result<(), StoreError> {
        let json = serde_json::to_string(event)
            .map_err(|e| StoreError::Corrupt(format!("a group event does not serialize: {e}")))?;
        on_backend!(&mut *self.conn, c => diesel::insert_into(group_changes::table)
            .values((
                group_changes::group_id.eq(event.group),
                group_changes::after_message.eq(after_message),
                group_changes::at.eq(event.at),
                group_changes::event.eq(json),
            ))
            .execute(c))?;
        Ok(())
    }
}

impl Tx<'_> {
    /// Every window of `user` in every group they were ever in, as
    /// [`Store::every_window_of`], inside this transaction (starring checks
    /// that a group message is one the user may see).
    pub fn every_window_of(&mut self, user: &str) -> Result<HashMap<GroupId, Vec<Window>>, StoreError> {
        every_window_of(self.conn, user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_recipient_is_never_a_user_name() {
        assert_eq!(recipient_of(17), "#17");
        assert_eq!(group_of("#17"), Some(17));
        assert_eq!(group_of("alice"), None);
        assert!(protocol::UserName::parse(&recipient_of(17)).is_err());
    }

    #[test]
    fn a_window_holds_the_messages_between_joining_and_leaving() {
        let open = Window {
            after_message: 10,
            through_message: None,
        };
        assert!(!open.holds(10) && open.holds(11) && open.holds(1_000));
        let closed = Window {
            after_message: 10,
            through_message: Some(20),
        };
        assert!(closed.holds(20) && !closed.holds(21));
    }
}
