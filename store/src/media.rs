//! Media rows: what was uploaded, by whom, and where its bytes are.
//!
//! The bytes live in an object store; a row here is the index to them and
//! the basis of every access decision:
//! - identical content from one owner is one row (`UNIQUE (owner, sha256)`),
//!   so a second upload of the same bytes gets the first row back;
//! - a message carries at most one media id, which must be its sender's;
//! - a user may read media they own or that a message to them carries, or
//!   a group message they may see ([`crate::group_history`]);
//! - media no message references is an orphan, removed by the cleanup job
//!   once it is old enough ([`Store::media_orphans`], [`Store::delete_orphan`]);
//! - until a message carries it an upload is *pending*, and what a user may
//!   hold pending is bounded in count and bytes ([`Store::record_upload`]).

use diesel::prelude::*;
use std::collections::HashMap;

use crate::db::{AnyConnection, Tx};
use crate::schema::{media, message_history};
use crate::{clock, Store, StoreError};
use diesel::sql_types::BigInt;

/// One uploaded object.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = media)]
pub struct Media {
    /// 32 random hex digits; what clients name the media by.
    pub id: String,
    /// The uploader's user name.
    pub owner: String,
    /// Where the bytes are in the object store.
    pub object_key: String,
    pub size: i64,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
    pub content_type: String,
    /// Where the thumbnail is, once one was made.
    pub thumbnail_key: Option<String>,
    /// Upload time, Unix milliseconds.
    pub created_at: i64,
}

/// What [`Store::record_media`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A new row.
    New(Media),
    /// The owner had already uploaded these bytes: that row, unchanged. The
    /// caller deletes the object it just wrote.
    Existing(Media),
}

/// A new upload, before it has a row.
#[derive(Debug, Clone)]
pub struct NewMedia<'a> {
    pub id: &'a str,
    pub owner: &'a str,
    pub object_key: &'a str,
    pub size: i64,
    pub sha256: &'a str,
    pub content_type: &'a str,
}

/// What [`Store::record_upload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upload {
    Recorded(Recorded),
    /// Refused: the owner's pending uploads, which this one would have
    /// taken past the quota. Nothing was recorded.
    OverQuota(PendingUploads),
}

/// Uploads a user holds that no message (hot or archived) carries yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PendingUploads {
    pub count: u64,
    pub bytes: u64,
}

/// The most a user may hold in pending uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingQuota {
    pub max_count: u64,
    pub max_bytes: u64,
}

impl PendingQuota {
    /// Whether one more upload of `size` bytes fits beside `pending`.
    pub fn admits(&self, pending: PendingUploads, size: u64) -> bool {
        pending.count < self.max_count && pending.bytes.saturating_add(size) <= self.max_bytes
    }
}

/// A fresh, unguessable media id.
pub fn new_media_id() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::thread_rng().gen();
    crate::encoding::hex(&bytes)
}

impl Store {
    /// Records an upload, or returns the owner's existing row for the same
    /// sha256.
    pub fn record_media(&self, new: &NewMedia<'_>) -> Result<Recorded, StoreError> {
        record(&mut *self.conn()?, new)
    }

    /// Records an upload as [`Store::record_media`] does, unless it is new
    /// and would take its owner's pending uploads past `quota`. Checked and
    /// inserted in one transaction; on SQLite writers queue, so the quota
    /// holds under concurrent uploads (on PostgreSQL, concurrent uploads of
    /// one user may each pass before either commits).
    pub fn record_upload(
        &self,
        new: &NewMedia<'_>,
        quota: PendingQuota,
    ) -> Result<Upload, StoreError> {
        self.transaction(|tx| {
            let existing = on_backend!(&mut *tx.conn, c => media::table
                .filter(media::owner.eq(new.owner))
                .filter(media::sha256.eq(new.sha256))
                .select(Media::as_select())
                .first(c)
                .optional())?;
            if let Some(row) = existing {
                return Ok(Upload::Recorded(Recorded::Existing(row)));
            }
            let pending = pending_uploads(tx.conn, new.owner)?;
            if !quota.admits(pending, new.size as u64) {
                return Ok(Upload::OverQuota(pending));
            }
            Ok(Upload::Recorded(record(tx.conn, new)?))
        })
    }

    /// What `owner` holds in uploads no message carries yet.
    pub fn pending_uploads(&self, owner: &str) -> Result<PendingUploads, StoreError> {
        pending_uploads(&mut *self.conn()?, owner)
    }

    /// The media `id`, if `user` may read it: they own it, or a message to
    /// them carries it, or a group message they may see (one sent inside
    /// their membership windows). Anyone else gets `None`, exactly as for an
    /// id that does not exist.
    pub fn readable_media(&self, id: &str, user: &str) -> Result<Option<Media>, StoreError> {
        let visible = self.visible_to(user)?;
        let mut conn = self.conn()?;
        // Hot or archived: an old message's media stays readable.
        let carried_to_user = diesel::dsl::exists(
            message_history::table
                .filter(message_history::media_id.eq(id))
                .filter(
                    message_history::recipient
                        .eq(user)
                        .or(visible.condition("message_history.recipient", "message_history.id")),
                ),
        );
        Ok(on_backend!(&mut *conn, c => media::table
            .filter(media::id.eq(id))
            .filter(media::owner.eq(user).or(carried_to_user))
            .select(Media::as_select())
            .first(c)
            .optional())?)
    }

    /// Where the thumbnail of `id` is, once one was made.
    pub fn thumbnail_key(&self, id: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn()?;
        let found: Option<Option<String>> = on_backend!(&mut *conn, c => media::table
            .filter(media::id.eq(id))
            .select(media::thumbnail_key)
            .first(c)
            .optional())?;
        Ok(found.flatten())
    }

    /// Records where the thumbnail of `id` is.
    pub fn set_thumbnail(&self, id: &str, key: &str) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        on_backend!(&mut *conn, c => diesel::update(media::table.filter(media::id.eq(id)))
            .set(media::thumbnail_key.eq(key))
            .execute(c))?;
        Ok(())
    }

    /// Up to `limit` media uploaded before `older_than` (Unix ms) that no
    /// message references: the cleanup job's work list, oldest first.
    pub fn media_orphans(&self, older_than: i64, limit: usize) -> Result<Vec<Media>, StoreError> {
        let mut conn = self.conn()?;
        let referenced = diesel::dsl::exists(
            message_history::table.filter(message_history::media_id.eq(media::id.nullable())),
        );
        Ok(on_backend!(&mut *conn, c => media::table
            .filter(media::created_at.lt(older_than))
            .filter(diesel::dsl::not(referenced))
            .order(media::created_at.asc())
            .limit(limit as i64)
            .select(Media::as_select())
            .load(c))?)
    }

    /// Deletes the row of orphan `id` if still no message references it;
    /// `true` if it did, and the caller then deletes the objects. A send
    /// that races with this either commits first (the row stays) or finds
    /// the media gone and is refused, thanks to the messages → media
    /// foreign key.
    pub fn delete_orphan(&self, id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let referenced =
            diesel::dsl::exists(message_history::table.filter(message_history::media_id.eq(id)));
        let deleted = on_backend!(&mut *conn, c => diesel::delete(
            media::table
                .filter(media::id.eq(id))
                .filter(diesel::dsl::not(referenced)),
        )
        .execute(c))?;
        Ok(deleted > 0)
    }
}

fn record(conn: &mut AnyConnection, new: &NewMedia<'_>) -> Result<Recorded, StoreError> {
    let inserted = on_backend!(conn, c => diesel::insert_into(media::table)
        .values((
            media::id.eq(new.id),
            media::owner.eq(new.owner),
            media::object_key.eq(new.object_key),
            media::size.eq(new.size),
            media::sha256.eq(new.sha256),
            media::content_type.eq(new.content_type),
            media::created_at.eq(clock::now_ms()),
        ))
        .on_conflict((media::owner, media::sha256))
        .do_nothing()
        .returning(Media::as_returning())
        .get_result(c)
        .optional())?;
    if let Some(row) = inserted {
        return Ok(Recorded::New(row));
    }
    let existing = on_backend!(conn, c => media::table
        .filter(media::owner.eq(new.owner))
        .filter(media::sha256.eq(new.sha256))
        .select(Media::as_select())
        .first(c))?;
    Ok(Recorded::Existing(existing))
}

fn pending_uploads(conn: &mut AnyConnection, owner: &str) -> Result<PendingUploads, StoreError> {
    // Hot or archived: media an archived message carries is not pending.
    let referenced = diesel::dsl::exists(
        message_history::table.filter(message_history::media_id.eq(media::id.nullable())),
    );
    let (count, bytes): (i64, i64) = on_backend!(conn, c => media::table
        .filter(media::owner.eq(owner))
        .filter(diesel::dsl::not(referenced))
        .select(diesel::dsl::sql::<(BigInt, BigInt)>(
            "COUNT(*), CAST(COALESCE(SUM(media.size), 0) AS BIGINT)",
        ))
        .first(c))?;
    Ok(PendingUploads {
        count: count as u64,
        bytes: bytes as u64,
    })
}

impl Tx<'_> {
    /// Of `ids`, those `owner` uploaded, with their content type and size.
    pub fn owned_media(
        &mut self,
        owner: &str,
        ids: &[&str],
    ) -> Result<HashMap<String, (String, i64)>, StoreError> {
        let found: Vec<(String, String, i64)> = on_backend!(&mut *self.conn, c => media::table
            .filter(media::owner.eq(owner))
            .filter(media::id.eq_any(ids))
            .select((media::id, media::content_type, media::size))
            .load(c))?;
        Ok(found
            .into_iter()
            .map(|(id, content_type, size)| (id, (content_type, size)))
            .collect())
    }
}
