//! Snapshots: a consistent read of every table as JSON rows, and loading
//! such rows back. Backup and restore are built on this; neither names a
//! table, so a table added by a later migration is included without
//! changing code here.
//!
//! Tables and columns come from the catalog (`sqlite_master` and
//! `pragma_table_info` on SQLite, `information_schema` on PostgreSQL).
//! Rows are rendered as one JSON object each by the database itself:
//! `row_to_json` on PostgreSQL (binary as `"\x…"`), `json_object` on SQLite
//! (binary as hex). Rows are read in pages (by `rowid` on SQLite, from a
//! cursor on PostgreSQL), so a large table never sits in memory.
//!
//! Two limits for whoever adds tables: on SQLite a table must keep its
//! `rowid` (no `WITHOUT ROWID`), since pages are read by it, and have at
//! most 63 columns (`json_object` takes two arguments per column, and
//! SQLite allows 127). Derived tables, which backups leave out
//! ([`crate::indexer::DERIVED_TABLES`]), are listed by [`Snapshot::tables`]
//! but never paged.
//!
//! A [`Snapshot`] is one read-only transaction: `REPEATABLE READ READ ONLY`
//! on PostgreSQL, a WAL read transaction on SQLite. Both see the database as
//! of one instant while writers carry on: nothing here takes a lock that a
//! message commit would wait for.

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{QueryableByName, RunQueryDsl};
use std::collections::{BTreeMap, BTreeSet};

use crate::db::{AnyConnection, PooledConn, Tx};
use crate::{Backend, Store, StoreError};

/// diesel's own bookkeeping; the schema version is read from it, never
/// copied as data.
pub const MIGRATIONS_TABLE: &str = "__diesel_schema_migrations";

/// What the backup key is derived for (see [`Store::backup_key`]); a new
/// value would make every existing backup unverifiable.
pub const BACKUP_KEY_PURPOSE: &str = "bluetick backup archive v1";

/// A table as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
}

/// A column, and whether it is of a type the two backends render
/// differently in JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// Bytes: `"\x0a0b"` from PostgreSQL, `"0A0B"` from SQLite.
    pub binary: bool,
    /// A boolean: `true` from PostgreSQL, `1` from SQLite.
    pub boolean: bool,
}

/// One read-only transaction over the whole database. Rolled back (it
/// never wrote) when dropped.
pub struct Snapshot {
    conn: PooledConn,
}

#[derive(QueryableByName)]
struct NameRow {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct ColumnRow {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    kind: String,
}

#[derive(QueryableByName)]
struct KeyedRow {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = Text)]
    row: String,
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl Store {
    /// Opens a snapshot of the whole database as of now.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut conn = self.conn()?;
        match &mut *conn {
            // The read transaction (and with it the snapshot) starts at the
            // first read, which is made here, before anything is listed.
            AnyConnection::Sqlite(c) => {
                c.batch_execute("BEGIN DEFERRED; SELECT COUNT(*) FROM sqlite_master;")?
            }
            AnyConnection::Postgres(c) => {
                c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1;")?
            }
        }
        Ok(Snapshot { conn })
    }

    /// Every table (bookkeeping excluded), parents before the tables whose
    /// foreign keys point at them.
    pub fn tables(&self) -> Result<Vec<Table>, StoreError> {
        tables(&mut *self.conn()?)
    }

    /// How many rows `table` holds now.
    pub fn row_count(&self, table: &str) -> Result<i64, StoreError> {
        row_count(&mut *self.conn()?, table)
    }

    /// The key that authenticates this database's backups: derived from
    /// the message key (HMAC-SHA256 of it over [`BACKUP_KEY_PURPOSE`]), so
    /// the key file an operator already keeps is the one to keep, and a
    /// backup reveals nothing about it. Fails without a message key.
    pub fn backup_key(&self) -> Result<[u8; 32], StoreError> {
        Ok(self.sealer()?.derive_key(BACKUP_KEY_PURPOSE))
    }
}

impl Snapshot {
    /// Every table (bookkeeping excluded), parents first.
    pub fn tables(&mut self) -> Result<Vec<Table>, StoreError> {
        tables(&mut self.conn)
    }

    /// The migrations applied to this database, oldest first.
    pub fn migrations(&mut self) -> Result<Vec<String>, StoreError> {
        let sql = format!("SELECT version AS name FROM {MIGRATIONS_TABLE} ORDER BY version");
        let rows: Vec<NameRow> =
            on_backend!(&mut *self.conn, c => diesel::sql_query(&sql).load(c))?;
        Ok(rows.into_iter().map(|r| r.name).collect())
    }

    /// How many rows `table` holds in this snapshot.
    pub fn row_count(&mut self, table: &str) -> Result<i64, StoreError> {
        row_count(&mut self.conn, table)
    }

    /// Up to `limit` rows of `table` after the row keyed `after` (from the
    /// start if `None`), as `(key, JSON object)`. Pass the last key back in
    /// to read the next page. Pages of one table must be read in order,
    /// one table at a time: on PostgreSQL they come from one cursor.
    pub fn rows(
        &mut self,
        table: &Table,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let name = quote(&table.name);
        let rows: Vec<KeyedRow> = match &mut *self.conn {
            // A cursor reads the table in one pass. Paging by `ctid > last
            // ORDER BY ctid` instead made PostgreSQL sort the rest of the
            // table for every page: quadratic, 50 s for a 500k-row index.
            AnyConnection::Postgres(c) => {
                if after.is_none() {
                    c.batch_execute(&format!(
                        "CLOSE ALL; DECLARE snapshot_rows NO SCROLL CURSOR FOR \
                         SELECT ctid::text AS key, row_to_json(t)::text AS row FROM {name} t"
                    ))?;
                }
                diesel::sql_query(format!("FETCH FORWARD {limit} FROM snapshot_rows")).load(c)?
            }
            AnyConnection::Sqlite(c) => {
                let fields: Vec<String> = table
                    .columns
                    .iter()
                    .map(|col| {
                        let value = if col.binary {
                            // hex(NULL) is '', so keep NULL apart from empty.
                            format!(
                                "CASE WHEN {q} IS NULL THEN NULL ELSE hex({q}) END",
                                q = quote(&col.name)
                            )
                        } else {
                            quote(&col.name)
                        };
                        format!("{}, {value}", literal(&col.name))
                    })
                    .collect();
                diesel::sql_query(format!(
                    "SELECT CAST(rowid AS TEXT) AS key, json_object({}) AS row FROM {name} \
                     WHERE rowid > CAST(? AS INTEGER) ORDER BY rowid LIMIT ?",
                    fields.join(", ")
                ))
                .bind::<Text, _>(after.unwrap_or("-9223372036854775808"))
                .bind::<BigInt, _>(limit as i64)
                .load(c)?
            }
        };
        Ok(rows.into_iter().map(|r| (r.key, r.row)).collect())
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // Read-only, so rolling back loses nothing; a failure here means the
        // connection is broken and the pool will replace it.
        let _ = on_backend!(&mut *self.conn, c => c.batch_execute("ROLLBACK"));
    }
}

impl Tx<'_> {
    /// Inserts rows (a JSON array of objects as [`Snapshot::rows`] renders
    /// them) into `table`, setting only `columns`; the others get their
    /// defaults. Returns how many rows were inserted.
    pub fn load_rows(
        &mut self,
        table: &Table,
        columns: &[String],
        rows_json: &str,
    ) -> Result<usize, StoreError> {
        let name = quote(&table.name);
        let list: Vec<String> = columns.iter().map(|c| quote(c)).collect();
        let list = list.join(", ");
        Ok(match &mut *self.conn {
            // OVERRIDING SYSTEM VALUE keeps ids as they were, even in
            // GENERATED ALWAYS identity columns.
            AnyConnection::Postgres(c) => diesel::sql_query(format!(
                "INSERT INTO {name} ({list}) OVERRIDING SYSTEM VALUE \
                 SELECT {list} FROM json_populate_recordset(NULL::{name}, $1::json)"
            ))
            .bind::<Text, _>(rows_json)
            .execute(c)?,
            AnyConnection::Sqlite(c) => {
                let values: Vec<String> = columns
                    .iter()
                    .map(|column| {
                        let path = literal(&format!("$.{}", quote(column)));
                        let binary = table
                            .columns
                            .iter()
                            .any(|col| &col.name == column && col.binary);
                        if binary {
                            format!("unhex(json_extract(value, {path}))")
                        } else {
                            format!("json_extract(value, {path})")
                        }
                    })
                    .collect();
                diesel::sql_query(format!(
                    "INSERT INTO {name} ({list}) SELECT {} FROM json_each(?)",
                    values.join(", ")
                ))
                .bind::<Text, _>(rows_json)
                .execute(c)?
            }
        })
    }

    /// After loading rows with their ids, moves `table`'s id generators
    /// past the highest id, so new rows do not collide. (SQLite's
    /// AUTOINCREMENT follows inserted ids by itself.)
    pub fn reset_id_sequences(&mut self, table: &str) -> Result<(), StoreError> {
        let AnyConnection::Postgres(c) = &mut *self.conn else {
            return Ok(());
        };
        let identity: Vec<NameRow> = diesel::sql_query(
            "SELECT column_name::text AS name FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 AND is_identity = 'YES'",
        )
        .bind::<Text, _>(table)
        .load(c)?;
        for column in identity {
            let (t, col) = (quote(table), quote(&column.name));
            c.batch_execute(&format!(
                "SELECT setval(pg_get_serial_sequence({}, {}), COALESCE(MAX({col}), 0) + 1, false) FROM {t}",
                literal(&t),
                literal(&column.name)
            ))?;
        }
        Ok(())
    }
}

fn tables(conn: &mut AnyConnection) -> Result<Vec<Table>, StoreError> {
    let backend = match conn {
        AnyConnection::Sqlite(_) => Backend::Sqlite,
        AnyConnection::Postgres(_) => Backend::Postgres,
    };
    let names: Vec<NameRow> = match &mut *conn {
        AnyConnection::Sqlite(c) => diesel::sql_query(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        )
        .load(c)?,
        AnyConnection::Postgres(c) => diesel::sql_query(
            "SELECT table_name::text AS name FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1",
        )
        .load(c)?,
    };
    let mut found = BTreeMap::new();
    let mut parents: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for NameRow { name } in names {
        if name == MIGRATIONS_TABLE {
            continue;
        }
        let (columns, references): (Vec<ColumnRow>, Vec<NameRow>) = match &mut *conn {
            AnyConnection::Sqlite(c) => (
                diesel::sql_query(
                    "SELECT name, type AS kind FROM pragma_table_info(?) ORDER BY cid",
                )
                .bind::<Text, _>(&name)
                .load(c)?,
                diesel::sql_query(
                    "SELECT DISTINCT \"table\" AS name FROM pragma_foreign_key_list(?)",
                )
                .bind::<Text, _>(&name)
                .load(c)?,
            ),
            AnyConnection::Postgres(c) => (
                diesel::sql_query(
                    "SELECT column_name::text AS name, data_type::text AS kind \
                     FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = $1 \
                     ORDER BY ordinal_position",
                )
                .bind::<Text, _>(&name)
                .load(c)?,
                diesel::sql_query(
                    "SELECT DISTINCT parent.relname::text AS name FROM pg_constraint k \
                     JOIN pg_class child ON child.oid = k.conrelid \
                     JOIN pg_class parent ON parent.oid = k.confrelid \
                     JOIN pg_namespace n ON n.oid = child.relnamespace \
                     WHERE k.contype = 'f' AND child.relname = $1 AND n.nspname = current_schema()",
                )
                .bind::<Text, _>(&name)
                .load(c)?,
            ),
        };
        let columns = columns
            .into_iter()
            .map(|col| Column {
                binary: match backend {
                    Backend::Sqlite => col.kind.eq_ignore_ascii_case("blob"),
                    Backend::Postgres => col.kind == "bytea",
                },
                boolean: match backend {
                    Backend::Sqlite => col.kind.eq_ignore_ascii_case("boolean"),
                    Backend::Postgres => col.kind == "boolean",
                },
                name: col.name,
            })
            .collect();
        parents.insert(
            name.clone(),
            references
                .into_iter()
                .map(|r| r.name)
                .filter(|parent| parent != &name)
                .collect(),
        );
        found.insert(name.clone(), Table { name, columns });
    }
    // Parents first (Kahn's algorithm, by name among equals); a cycle, which
    // our schema does not have, falls back to name order for what is left.
    let mut ordered = Vec::with_capacity(found.len());
    while !found.is_empty() {
        let ready: Vec<String> = found
            .keys()
            .filter(|name| {
                parents[*name]
                    .iter()
                    .all(|parent| !found.contains_key(parent))
            })
            .cloned()
            .collect();
        let batch = if ready.is_empty() {
            found.keys().cloned().collect()
        } else {
            ready
        };
        for name in batch {
            if let Some(table) = found.remove(&name) {
                ordered.push(table);
            }
        }
    }
    Ok(ordered)
}

fn row_count(conn: &mut AnyConnection, table: &str) -> Result<i64, StoreError> {
    let sql = format!("SELECT COUNT(*) AS n FROM {}", quote(table));
    let rows: Vec<CountRow> = on_backend!(conn, c => diesel::sql_query(&sql).load(c))?;
    Ok(rows.first().map(|r| r.n).unwrap_or(0))
}

/// `name` as a quoted SQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as a SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
