//! Expiry of disappearing messages: deleting every trace of a message
//! whose `expires_at` has passed.
//!
//! A message lives in the hot table or the archive, may be starred, has
//! rows in the search index, and may be pointed at by inbox events of its
//! two participants. One batch deletes all of that in one transaction. The
//! inbox events are not deleted, which would leave a hole in the gap-free
//! seq, but turned into `expired` tombstones that carry only the id.

use diesel::prelude::*;
use protocol::messages::{Event, ExpiredEvent};

use crate::schema::{inbox, messages, messages_archive, search_terms, stars};
use crate::{Store, StoreError};

impl Store {
    /// Deletes up to `limit` messages (hot or archived) that expired at or
    /// before `now`, with their stars, search terms and inbox events.
    /// Returns the ids deleted; none means nothing is left to expire.
    pub fn expire_batch(&self, now: i64, limit: usize) -> Result<Vec<i64>, StoreError> {
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
                return Ok(ids);
            }
            on_backend!(&mut *tx.conn, c => diesel::delete(stars::table.filter(stars::message_id.eq_any(&ids))).execute(c))?;
            on_backend!(&mut *tx.conn, c => diesel::delete(search_terms::table.filter(search_terms::message_id.eq_any(&ids))).execute(c))?;
            for &id in &ids {
                let tombstone = serde_json::to_string(&Event::Expired(ExpiredEvent { message_id: id }))
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                on_backend!(&mut *tx.conn, c => diesel::update(inbox::table.filter(inbox::message_id.eq(id)))
                    .set((
                        inbox::kind.eq("other"),
                        inbox::message_id.eq(None::<i64>),
                        inbox::payload.eq(&tombstone),
                    ))
                    .execute(c))?;
            }
            on_backend!(&mut *tx.conn, c => diesel::delete(messages::table.filter(messages::id.eq_any(&ids))).execute(c))?;
            on_backend!(&mut *tx.conn, c => diesel::delete(messages_archive::table.filter(messages_archive::id.eq_any(&ids))).execute(c))?;
            Ok(ids)
        })
    }
}
