//! What one user takes away: their account facts, every message they
//! sent or received and every group message they saw (opened with the
//! message key), the media those messages carry, and their groups.

use diesel::prelude::*;
use protocol::history::HistoryMessage;

use crate::history::{Row, COLUMNS};
use crate::schema::{chat_groups, group_members, media, message_history, users};
use crate::{Store, StoreError};

/// A user's account as exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedUser {
    pub name: String,
    pub created_at: i64,
    pub last_seen: Option<i64>,
    pub last_seen_privacy: String,
    pub read_receipts: bool,
}

/// A media reference as exported: which message carries which upload.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct ExportedMedia {
    pub message_id: i64,
    pub media_id: String,
    pub owner: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    /// Where the bytes are in the object store.
    pub object_key: String,
}

/// A group the user was ever in, as exported, with each of their
/// membership windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedGroup {
    pub id: i64,
    /// Its name now.
    pub name: String,
    pub created_by: String,
    pub created_at: i64,
    /// Oldest first; the last is open while they are a member.
    pub memberships: Vec<ExportedMembership>,
}

/// One membership window of the exporting user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedMembership {
    pub joined_at: i64,
    /// When they left or were removed; `None` while a member.
    pub left_at: Option<i64>,
    /// An admin now (or when they left).
    pub admin: bool,
}

/// A group and one of the user's windows in it: group id, name, creator,
/// creation time; joined at, left at, admin.
type MembershipRow = (i64, String, String, i64, i64, Option<i64>, bool);

impl Store {
    /// The groups `user` was ever in, oldest group first, with their
    /// membership windows.
    pub fn exported_groups(&self, user: &str) -> Result<Vec<ExportedGroup>, StoreError> {
        let mut conn = self.conn()?;
        let rows: Vec<MembershipRow> = on_backend!(&mut *conn, c => group_members::table
            .inner_join(chat_groups::table)
            .filter(group_members::user_name.eq(user))
            .order((chat_groups::id.asc(), group_members::id.asc()))
            .select((chat_groups::id, chat_groups::name, chat_groups::created_by, chat_groups::created_at, group_members::joined_at, group_members::left_at, group_members::admin))
            .load(c))?;
        let mut groups: Vec<ExportedGroup> = Vec::new();
        for (id, name, created_by, created_at, joined_at, left_at, admin) in rows {
            let membership = ExportedMembership {
                joined_at,
                left_at,
                admin,
            };
            match groups.last_mut() {
                Some(group) if group.id == id => group.memberships.push(membership),
                _ => groups.push(ExportedGroup {
                    id,
                    name,
                    created_by,
                    created_at,
                    memberships: vec![membership],
                }),
            }
        }
        Ok(groups)
    }

    /// The account row of `user` (read only: exporting never moves last seen).
    pub fn exported_user(&self, user: &str) -> Result<ExportedUser, StoreError> {
        let mut conn = self.conn()?;
        let (name, created_at, last_seen, last_seen_privacy, read_receipts) = on_backend!(&mut *conn, c => users::table
            .filter(users::name.eq(user))
            .select((users::name, users::created_at, users::last_seen, users::last_seen_privacy, users::read_receipts))
            .first::<(String, i64, Option<i64>, String, bool)>(c)
            .optional())?
        .ok_or(StoreError::UnknownUser)?;
        Ok(ExportedUser {
            name,
            created_at,
            last_seen,
            last_seen_privacy,
            read_receipts,
        })
    }

    /// Up to `limit` messages `user` sent or received with id > `after`,
    /// group messages inside their membership windows included, oldest
    /// first, as history shows them (bodies opened, media, stars);
    /// archived messages included.
    pub fn exported_messages(
        &self,
        user: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<HistoryMessage>, StoreError> {
        let visible = self.visible_to(user)?;
        let mut conn = self.conn()?;
        let rows: Vec<Row> = on_backend!(&mut *conn, c => message_history::table
            .filter(message_history::sender.eq(user).or(message_history::recipient.eq(user)).or(visible.condition("recipient", "id")))
            .filter(message_history::id.gt(after))
            .order(message_history::id.asc())
            .limit(limit as i64)
            .select(COLUMNS)
            .load(c))?;
        let mut messages = self.history_messages(&mut conn, user, rows)?;
        self.hide_unshared_reads(user, &mut messages)?;
        Ok(messages)
    }

    /// The media carried by messages `user` sent or received, or group
    /// messages they may see (hot or archived), oldest message first.
    pub fn exported_media(&self, user: &str) -> Result<Vec<ExportedMedia>, StoreError> {
        let visible = self.visible_to(user)?;
        let mut conn = self.conn()?;
        Ok(on_backend!(&mut *conn, c => message_history::table
            .inner_join(media::table.on(media::id.nullable().eq(message_history::media_id)))
            .filter(message_history::sender.eq(user).or(message_history::recipient.eq(user)).or(visible.condition("message_history.recipient", "message_history.id")))
            .order(message_history::id.asc())
            .select((
                message_history::id,
                media::id,
                media::owner,
                media::content_type,
                media::size,
                media::sha256,
                media::object_key,
            ))
            .load(c))?)
    }
}
