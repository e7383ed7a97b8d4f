//! Archival: moving old messages from `messages` to `messages_archive`.
//!
//! The hot table holds what the send path touches; the archive holds the
//! rest, unchanged (same id, same sealed body). Every read goes through the
//! `message_history` view, so a moved message looks the same to users.
//!
//! A message moves only when no inbox event points at it any more: while
//! an event does, the inbox replay and delivery marking still need it in
//! `messages`. So an old message waiting for an offline device stays hot
//! until that device has it. Reads marked later (`mark_read`) update the
//! archive too.
//!
//! Each batch moves its rows in one short transaction (insert into the
//! archive, delete from the hot table), so a crash leaves every message in
//! exactly one of the two tables and a rerun simply carries on.

use diesel::prelude::*;
use std::collections::HashSet;

use crate::schema::{inbox, messages, messages_archive};
use crate::{Store, StoreError};

/// What one archival batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveBatch {
    /// Old messages looked at (moved or still pointed at).
    pub scanned: usize,
    /// Messages moved to the archive.
    pub moved: usize,
    /// The highest id looked at: the next batch starts above it.
    pub through: i64,
}

impl Store {
    /// Moves up to `limit` messages sent before `cutoff` (Unix ms) with id
    /// above `after` to the archive. `scanned == 0` means there are no more.
    pub fn archive_batch(
        &self,
        cutoff: i64,
        after: i64,
        limit: usize,
    ) -> Result<ArchiveBatch, StoreError> {
        self.transaction(|tx| {
            let candidates: Vec<i64> = on_backend!(&mut *tx.conn, c => messages::table
                .filter(messages::id.gt(after))
                .filter(messages::sent_at.lt(cutoff))
                .order(messages::id.asc())
                .limit(limit as i64)
                .select(messages::id)
                .load(c))?;
            let Some(&through) = candidates.last() else {
                return Ok(ArchiveBatch {
                    scanned: 0,
                    moved: 0,
                    through: after,
                });
            };
            let pointed_at: HashSet<i64> = on_backend!(&mut *tx.conn, c => inbox::table
                .filter(inbox::message_id.eq_any(&candidates))
                .select(inbox::message_id.assume_not_null())
                .load::<i64>(c))?
            .into_iter()
            .collect();
            let movable: Vec<i64> = candidates
                .iter()
                .copied()
                .filter(|id| !pointed_at.contains(id))
                .collect();
            if !movable.is_empty() {
                let rows = messages::table
                    .filter(messages::id.eq_any(&movable))
                    .select((
                        messages::id,
                        messages::sender,
                        messages::recipient,
                        messages::client_id,
                        messages::body,
                        messages::sent_at,
                        messages::delivered_at,
                        messages::read_at,
                        messages::expires_at,
                        messages::media_id,
                        messages::media,
                    ));
                on_backend!(&mut *tx.conn, c => diesel::insert_into(messages_archive::table)
                    .values(rows)
                    .into_columns((
                        messages_archive::id,
                        messages_archive::sender,
                        messages_archive::recipient,
                        messages_archive::client_id,
                        messages_archive::body,
                        messages_archive::sent_at,
                        messages_archive::delivered_at,
                        messages_archive::read_at,
                        messages_archive::expires_at,
                        messages_archive::media_id,
                        messages_archive::media,
                    ))
                    .execute(c))?;
                on_backend!(&mut *tx.conn, c => diesel::delete(messages::table.filter(messages::id.eq_any(&movable)))
                    .execute(c))?;
            }
            Ok(ArchiveBatch {
                scanned: candidates.len(),
                moved: movable.len(),
                through,
            })
        })
    }
}
