//! The deletions the cleanup job makes, each one small batch at a time so
//! no statement holds locks for long, and each safe to repeat.

use diesel::prelude::*;

use crate::schema::{dead_letters, devices, nodes, sessions, token_revocations, tokens};
use crate::{Store, StoreError};

/// Deletes up to `limit` rows of `table` matching `filter`, found by their
/// `key` first, so each statement touches one bounded batch.
macro_rules! delete_batch {
    ($store:expr, $table:ident, $key:ident: $key_type:ty, $filter:expr, $limit:expr) => {{
        let mut conn = $store.conn()?;
        Ok(on_backend!(&mut *conn, c => {
            let keys: Vec<$key_type> = $table::table
                .filter($filter)
                .select($table::$key)
                .limit($limit as i64)
                .load(c)?;
            diesel::delete($table::table.filter($table::$key.eq_any(&keys))).execute(c)?
        }))
    }};
}

impl Store {
    /// Users with at least one acking device and how far all of them have
    /// acked (the prune floor), for users after `after` by name, at most
    /// `limit` of them.
    pub fn prune_floors(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut conn = self.conn()?;
        let rows: Vec<(String, Option<i64>)> = on_backend!(&mut *conn, c => devices::table
            .filter(devices::user_name.gt(after))
            .group_by(devices::user_name)
            .select((devices::user_name, diesel::dsl::min(devices::acked_seq)))
            .order(devices::user_name.asc())
            .limit(limit as i64)
            .load(c))?;
        Ok(rows
            .into_iter()
            .map(|(user, floor)| (user, floor.unwrap_or(0)))
            .collect())
    }

    /// Deletes `user`'s inbox events every acking device has stored (the
    /// inbox invariant's pruning, for events an ack did not get to).
    pub fn prune_inbox(&self, user: &str) -> Result<usize, StoreError> {
        self.transaction(|tx| tx.prune(user))
    }

    /// Deletes up to `limit` tokens that expired before `now` (Unix ms).
    pub fn delete_expired_tokens(&self, now: i64, limit: usize) -> Result<usize, StoreError> {
        delete_batch!(self, tokens, id: i64, tokens::expires_at.le(now), limit)
    }

    /// Deletes up to `limit` revocation records older than `cutoff` (Unix ms).
    pub fn delete_revocations_before(
        &self,
        cutoff: i64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        delete_batch!(
            self,
            token_revocations,
            token_hash: String,
            token_revocations::revoked_at.lt(cutoff),
            limit
        )
    }

    /// Deletes up to `limit` dead letters recorded before `cutoff` (Unix ms).
    pub fn delete_dead_letters_before(
        &self,
        cutoff: i64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        delete_batch!(
            self,
            dead_letters,
            id: i64,
            dead_letters::created_at.lt(cutoff),
            limit
        )
    }

    /// Deletes up to `limit` `sessions` rows of nodes that have not sent a
    /// heartbeat since `cutoff` (Unix ms) and that connected before it. A
    /// live node heartbeats far more often, so its rows are never touched;
    /// these are the rows of a node that died and never came back to clear
    /// them. Also forgets such nodes once they have no rows left.
    pub fn delete_stale_sessions(&self, cutoff: i64, limit: usize) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        Ok(on_backend!(&mut *conn, c => {
            let alive = nodes::table
                .filter(nodes::heartbeat_at.ge(cutoff))
                .select(nodes::node);
            let ids: Vec<String> = sessions::table
                .filter(sessions::connected_at.lt(cutoff))
                .filter(diesel::dsl::not(sessions::node.eq_any(alive)))
                .select(sessions::connection_id)
                .limit(limit as i64)
                .load(c)?;
            let deleted = diesel::delete(sessions::table.filter(sessions::connection_id.eq_any(&ids)))
                .execute(c)?;
            if deleted < limit {
                let with_sessions = sessions::table.select(sessions::node);
                diesel::delete(
                    nodes::table
                        .filter(nodes::heartbeat_at.lt(cutoff))
                        .filter(diesel::dsl::not(nodes::node.eq_any(with_sessions))),
                )
                .execute(c)?;
            }
            deleted
        }))
    }
}
