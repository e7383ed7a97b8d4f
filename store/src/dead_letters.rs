//! Dead letters: client payloads the server refused, kept (sealed, since a
//! refused send may still hold a body) for operators to list and replay.
//!
//! Every refusal is recorded, but what is kept of its payload is bounded
//! ([`DeadLetterQuota`](crate::config::DeadLetterQuota)), so a client that publishes junk as fast as it can
//! cannot fill the disk: a payload over the kept prefix is stored cut to it,
//! and once a user's kept bytes in the window reach the budget their dead
//! letters keep no payload at all. The full length is always recorded.

use diesel::prelude::*;

use crate::db::Tx;
use crate::schema::dead_letters;
use crate::{clock, Store, StoreError};

/// One refused payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: i64,
    /// Who published it.
    pub user: String,
    pub topic: String,
    /// The payload as received, or its first bytes when it was cut (see
    /// [`DeadLetter::size`]); empty when the sender's budget was used up.
    pub payload: Vec<u8>,
    /// The length of the payload as received, in bytes.
    pub size: u64,
    /// The error code the sender got.
    pub code: String,
    pub reason: String,
    pub created_at: i64,
    pub replayed_at: Option<i64>,
}

/// A `dead_letters` row as stored (payload still sealed).
#[derive(Queryable, Selectable)]
#[diesel(table_name = dead_letters)]
struct Row {
    id: i64,
    user_name: String,
    topic: String,
    payload: Vec<u8>,
    code: String,
    reason: String,
    created_at: i64,
    replayed_at: Option<i64>,
    payload_size: Option<i64>,
}

impl DeadLetter {
    /// Whether less than the whole payload was kept (it cannot be replayed).
    pub fn truncated(&self) -> bool {
        (self.payload.len() as u64) < self.size
    }
}

impl Tx<'_> {
    /// Records a refused payload, keeping as much of it as the quota
    /// allows (see the module docs).
    pub fn dead_letter(
        &mut self,
        user: &str,
        topic: &str,
        payload: &[u8],
        code: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let quota = self.dead_letter_quota;
        let prefix = &payload[..payload.len().min(quota.kept_prefix)];
        let sealed = self.sealer()?.seal(prefix);
        let since = clock::now_ms() - quota.window.as_millis() as i64;
        // LENGTH is bytes for a BLOB (SQLite) and a bytea (PostgreSQL).
        let used: i64 = on_backend!(&mut *self.conn, c => dead_letters::table
            .filter(dead_letters::user_name.eq(user))
            .filter(dead_letters::created_at.ge(since))
            .select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
                "COALESCE(SUM(LENGTH(payload)), 0)",
            ))
            .first(c))?;
        let (kept, kept_len) = if used as u64 + sealed.len() as u64 <= quota.bytes_per_user {
            (sealed, prefix.len())
        } else {
            // Nothing sealed: an empty stored payload reads back as empty.
            (Vec::new(), 0)
        };
        let size = (kept_len < payload.len()).then_some(payload.len() as i64);
        on_backend!(&mut *self.conn, c => diesel::insert_into(dead_letters::table)
            .values((
                dead_letters::user_name.eq(user),
                dead_letters::topic.eq(topic),
                dead_letters::payload.eq(&kept),
                dead_letters::code.eq(code),
                dead_letters::reason.eq(reason),
                dead_letters::created_at.eq(clock::now_ms()),
                dead_letters::payload_size.eq(size),
            ))
            .execute(c))?;
        Ok(())
    }

    /// Notes that a dead letter was replayed.
    pub fn mark_replayed(&mut self, id: i64) -> Result<(), StoreError> {
        on_backend!(&mut *self.conn, c => diesel::update(dead_letters::table.filter(dead_letters::id.eq(id)))
            .set(dead_letters::replayed_at.eq(clock::now_ms()))
            .execute(c))?;
        Ok(())
    }
}

impl Store {
    /// The newest `limit` dead letters, newest first.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let mut conn = self.conn()?;
        let rows: Vec<Row> = on_backend!(&mut *conn, c => dead_letters::table
            .order(dead_letters::id.desc())
            .limit(limit as i64)
            .select(Row::as_select())
            .load(c))?;
        rows.into_iter().map(|row| self.open_row(row)).collect()
    }

    /// One dead letter.
    pub fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, StoreError> {
        let mut conn = self.conn()?;
        let row: Option<Row> = on_backend!(&mut *conn, c => dead_letters::table
            .filter(dead_letters::id.eq(id))
            .select(Row::as_select())
            .first(c)
            .optional())?;
        row.map(|row| self.open_row(row)).transpose()
    }

    fn open_row(&self, row: Row) -> Result<DeadLetter, StoreError> {
        let payload = if row.payload.is_empty() {
            Vec::new()
        } else {
            self.sealer()?.open(&row.payload)?
        };
        Ok(DeadLetter {
            size: row.payload_size.map_or(payload.len() as u64, |s| s as u64),
            payload,
            id: row.id,
            user: row.user_name,
            topic: row.topic,
            code: row.code,
            reason: row.reason,
            created_at: row.created_at,
            replayed_at: row.replayed_at,
        })
    }
}
