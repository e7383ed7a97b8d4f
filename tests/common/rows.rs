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
