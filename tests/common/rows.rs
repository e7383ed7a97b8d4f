//! Reading the server's tables directly, as an operator with `psql` or
//! `sqlite3` would: to check what is stored where, not what the API says.

use diesel::sql_types::BigInt;
use diesel::{QueryableByName, RunQueryDsl};

use super::Server;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// `SELECT COUNT(*) FROM {from}` (`from` may carry a WHERE clause; it is
/// test-written SQL, never user input).
pub fn count(server: &Server, from: &str) -> i64 {
    let store = server.store();
    let mut conn = store.conn().expect("a connection");
    let sql = format!("SELECT COUNT(*) AS n FROM {from}");
    let counted: Count = store::on_backend!(&mut *conn, c => diesel::sql_query(&sql).get_result(c))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    counted.n
}

/// How many messages satisfying `condition` (test-written SQL on
/// `message_id`) the search index holds: on PostgreSQL messages with rows
/// in `search_terms`, on SQLite documents in the search file's FTS5 table.
pub fn indexed(server: &Server, condition: &str) -> i64 {
    match server.store().backend() {
        store::Backend::Postgres => count(server, &format!("(SELECT DISTINCT message_id FROM search_terms) AS t WHERE {condition}")),
        store::Backend::Sqlite => count(server, &format!("(SELECT rowid AS message_id FROM search.search_index) AS t WHERE {condition}")),
    }
}

/// Runs test-written statements (DDL, fixtures) on the server's database,
/// as an operator with `psql` or `sqlite3` would.
pub fn execute(server: &Server, statements: &[&str]) {
    let store = server.store();
    let mut conn = store.conn().expect("a connection");
    for sql in statements {
        store::on_backend!(&mut *conn, c => diesel::sql_query(*sql).execute(c))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// Holds the database so that every write waits: SQLite's write lock
/// (`BEGIN IMMEDIATE`), or an exclusive lock on `users` in PostgreSQL
/// (which every batch with an inbox event updates). Released on
/// [`WriteLock::release`] or drop.
pub struct WriteLock {
    conn: Option<store::db::PooledConn>,
    /// Keeps the pool the connection came from alive.
    _store: store::Store,
}

impl WriteLock {
    pub fn hold(server: &Server) -> WriteLock {
        let store = server.store();
        let mut conn = store.conn().expect("a connection");
        let statements: &[&str] = match server.database.backend() {
            store::Backend::Sqlite => &["BEGIN IMMEDIATE"],
            store::Backend::Postgres => &["BEGIN", "LOCK TABLE users IN EXCLUSIVE MODE"],
        };
        for sql in statements {
            store::on_backend!(&mut *conn, c => diesel::sql_query(*sql).execute(c))
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        WriteLock {
            conn: Some(conn),
            _store: store,
        }
    }

    pub fn release(mut self) {
        self.rollback();
    }

    fn rollback(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            let _ = store::on_backend!(&mut *conn, c => diesel::sql_query("ROLLBACK").execute(c));
        }
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        self.rollback();
    }
}
