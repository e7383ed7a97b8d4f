//! Dead letters: client payloads the server refused, kept (sealed, since a
//! refused send may still hold a body) for operators to list and replay.

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
    /// The payload as received.
    pub payload: Vec<u8>,
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
}

impl Tx<'_> {
    /// Records a refused payload.
    pub fn dead_letter(
        &mut self,
        user: &str,
        topic: &str,
        payload: &[u8],
        code: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let sealed = self.sealer()?.seal(payload);
        on_backend!(&mut *self.conn, c => diesel::insert_into(dead_letters::table)
            .values((
                dead_letters::user_name.eq(user),
                dead_letters::topic.eq(topic),
                dead_letters::payload.eq(&sealed),
                dead_letters::code.eq(code),
                dead_letters::reason.eq(reason),
                dead_letters::created_at.eq(clock::now_ms()),
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
        Ok(DeadLetter {
            payload: self.sealer()?.open(&row.payload)?,
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
