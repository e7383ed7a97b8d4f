//! Expiry of disappearing messages: deleting every trace of a message
//! whose `expires_at` has passed.
//!
//! A message lives in the hot table or the archive, may be starred, has
//! rows in the search index, may carry media, and may be pointed at by
//! inbox events of its two participants. One batch deletes all of that in
//! one transaction. The inbox events are not deleted, which would leave a
//! hole in the gap-free seq, but turned into `expired` tombstones that
//! carry only the id. Media rows no other message refers to go too, and
//! are handed back so the caller deletes their objects (an object store is
//! not part of the transaction; a crash in between leaves an object no row
//! names, which the orphan cleanup never sees, so it is logged).

use diesel::prelude::*;
use protocol::messages::{Event, ExpiredEvent};

use crate::media::Media;
use crate::schema::{
    inbox, media, message_history, messages, messages_archive, stars,
};
use crate::{Store, StoreError};

/// What one expiry batch deleted.
#[derive(Debug, Default)]
pub struct Expired {
    /// The messages.
    pub messages: Vec<i64>,
    /// Media rows only those messages referred to: delete their objects.
    pub media: Vec<Media>,
}

impl Store {
    /// Deletes up to `limit` messages (hot or archived) that expired at or
    /// before `now`, with their stars, search terms, inbox events and
    /// media rows; no messages means nothing is left to expire.
    pub fn expire_batch(&self, now: i64, limit: usize) -> Result<Expired, StoreError> {
        let expired = self.expire_in_transaction(now, limit)?;
        self.forget_search_terms(&expired.messages)?;
        Ok(expired)
    }

    fn expire_in_transaction(&self, now: i64, limit: usize) -> Result<Expired, StoreError> {
        self.transaction(|tx| {
            let mut ids: Vec<i64> = on_backend!(&mut *tx.conn, c => messages::table
                .filter(messages::expires_at.le(now))
                .order(messages::expires_at.asc())
                .limit(limit as i64)
                .select(messages::id)
                .load(c))?;
            let archived: Vec<i64> = on_backend!(&mut *tx.conn, c => messages_archive::table
                .filter(messages_archive::expires_at.le(now))
                .order(messages_archive::expires_at.asc())
                .limit((limit - ids.len().min(limit)) as i64)
                .select(messages_archive::id)
                .load(c))?;
            ids.extend(archived);
            if ids.is_empty() {
                return Ok(Expired::default());
            }
            let media_ids: Vec<String> = on_backend!(&mut *tx.conn, c => message_history::table
                .filter(message_history::id.eq_any(&ids))
                .filter(message_history::media_id.is_not_null())
                .select(message_history::media_id.assume_not_null())
                .distinct()
                .load(c))?;
            on_backend!(&mut *tx.conn, c => diesel::delete(stars::table.filter(stars::message_id.eq_any(&ids))).execute(c))?;
            for &id in &ids {
                let tombstone = serde_json::to_string(&Event::Expired(ExpiredEvent { message_id: id }))
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                on_backend!(&mut *tx.conn, c => diesel::update(inbox::table.filter(inbox::message_id.eq(id)))
                    .set((
                        inbox::kind.eq(crate::inbox::InboxKind::Other.as_str()),
                        inbox::message_id.eq(None::<i64>),
                        inbox::payload.eq(&tombstone),
                    ))
                    .execute(c))?;
            }
            on_backend!(&mut *tx.conn, c => diesel::delete(messages::table.filter(messages::id.eq_any(&ids))).execute(c))?;
            on_backend!(&mut *tx.conn, c => diesel::delete(messages_archive::table.filter(messages_archive::id.eq_any(&ids))).execute(c))?;
            // Terms go after their messages: an indexer pass that wrote
            // terms for one of them has committed by now (it held the row),
            // so none is left behind (see `indexer`'s invariant). On SQLite
            // after this commit, in the search file.
            tx.forget_search_terms(&ids)?;
            // The same bytes may travel in other messages (a forward, or
            // deduplicated uploads): only media nothing refers to goes.
            let still_used = diesel::dsl::exists(
                message_history::table.filter(message_history::media_id.eq(media::id.nullable())),
            );
            let unused = media::table
                .filter(media::id.eq_any(&media_ids))
                .filter(diesel::dsl::not(still_used));
            let media: Vec<Media> = on_backend!(&mut *tx.conn, c => unused.select(Media::as_select()).load(c))?;
            let gone: Vec<&str> = media.iter().map(|m| m.id.as_str()).collect();
            on_backend!(&mut *tx.conn, c => diesel::delete(media::table.filter(media::id.eq_any(&gone))).execute(c))?;
            Ok(Expired { messages: ids, media })
        })
    }
}
