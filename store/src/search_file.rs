//! SQLite's search index: one FTS5 document per message, in the search
//! file ([`crate::db::search_path`]).
//!
//! The blind index's terms ([`crate::search`]) are random 128-bit values,
//! so a B-tree keyed by term puts each new row on a page of its own: at
//! 5,000 messages/s (about 28,000 terms a second) the indexer wrote some
//! 100 MB/s of pages to the search file's WAL and took a third of a core,
//! and its writes slowed the fsync every ✓ waits for. FTS5 keeps an
//! inverted index as a log of segments: a transaction's terms are written
//! once, sorted and compressed, as a new segment at the end of the file,
//! and segments are merged in the background of later inserts. The same
//! terms cost a fifth of the CPU and a twentieth of the writes, and the
//! file is a quarter of the size (docs/performance.md, sixth pass).
//!
//! A document is the message's terms written as hex tokens
//! ([`crate::search::documents`]): for each participant of a 1:1 message
//! (the group alone for a group message) one token per distinct word,
//! `HMAC(key, owner || 0 || word)`, plus one token for the chat,
//! `HMAC(key, owner || 0 || 1 || peer)`, which scopes a search to one peer
//! (no word contains the byte 1). The rowid is the message id. `detail=none`: a search needs only which documents hold
//! every token, not where. What the file reveals is what the rows of
//! PostgreSQL's `search_terms` reveal; no readable word is written.
//!
//! PostgreSQL keeps its `search_terms` table: there a row per term costs
//! an index entry, not a page write, and the index is one the planner
//! already knows how to use.

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{QueryableByName, RunQueryDsl, SqliteConnection};

use crate::StoreError;

/// The search file's tables, made by [`crate::Store::migrate`] when
/// missing; the cursor beside the index, so the two commit together.
const SCHEMA: &str = "CREATE VIRTUAL TABLE IF NOT EXISTS search.search_index USING fts5(
    terms, content = '', contentless_delete = 1, detail = none, tokenize = 'ascii'
);
CREATE TABLE IF NOT EXISTS search.search_cursor (
    indexer TEXT   PRIMARY KEY,
    through BIGINT NOT NULL
);";

/// Makes the search file's tables. A file of an earlier version (a
/// `search_terms` B-tree) loses its index and cursor, and the indexer
/// writes the index again from message 0.
pub(crate) fn create(c: &mut SqliteConnection) -> Result<(), StoreError> {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let earlier: Found = diesel::sql_query(
        "SELECT COUNT(*) AS n FROM search.sqlite_master WHERE name = 'search_terms'",
    )
    .get_result(c)?;
    if earlier.n > 0 {
        // One transaction: a cursor left behind without its terms would
        // leave every message below it unsearchable.
        c.batch_execute(&format!(
            "BEGIN; DROP TABLE search.search_terms; DELETE FROM search.search_cursor; {SCHEMA} COMMIT;"
        ))?;
        tracing::info!("the search index moves to FTS5: it is written again from message 0");
    }
    c.batch_execute(SCHEMA)?;
    Ok(())
}

/// Appends `term` as a token: lowercase hex, which FTS5's `ascii`
/// tokenizer keeps whole.
fn push_hex(to: &mut String, term: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in term {
        to.push(char::from(DIGITS[usize::from(byte >> 4)]));
        to.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
}

/// Appends `term` to `document`, a token among its others.
pub(crate) fn push_token(document: &mut String, term: &[u8]) {
    if !document.is_empty() {
        document.push(' ');
    }
    push_hex(document, term);
}

/// Documents per `INSERT` (two parameters each; SQLite allows 32,766).
const INSERT_CHUNK: usize = 256;

/// Writes `documents` into the index, in this connection's transaction.
pub(crate) fn insert(c: &mut SqliteConnection, documents: &[(i64, String)]) -> Result<(), StoreError> {
    // Many rows per statement: a pass parses a few statements, not one
    // per message.
    for chunk in documents.chunks(INSERT_CHUNK) {
        let values = vec!["(?, ?)"; chunk.len()].join(", ");
        let mut insert = diesel::sql_query(format!(
            "INSERT INTO search.search_index (rowid, terms) VALUES {values}"
        ))
        .into_boxed::<diesel::sqlite::Sqlite>();
        for (id, document) in chunk {
            insert = insert.bind::<BigInt, _>(*id).bind::<Text, _>(document.as_str());
        }
        insert.execute(c)?;
    }
    Ok(())
}

/// Removes the documents of messages `ids`.
pub(crate) fn forget(c: &mut SqliteConnection, ids: &[i64]) -> Result<(), StoreError> {
    for chunk in ids.chunks(500) {
        let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
        c.batch_execute(&format!(
            "DELETE FROM search.search_index WHERE rowid IN ({})",
            list.join(",")
        ))?;
    }
    Ok(())
}

/// Removes every document.
pub(crate) fn clear(c: &mut SqliteConnection) -> Result<(), StoreError> {
    c.batch_execute("INSERT INTO search.search_index (search_index) VALUES ('delete-all')")?;
    Ok(())
}

/// One part of a search: the messages whose documents hold every one of
/// `terms` and whose ids satisfy `ids` (SQL on `rowid`, written by the
/// store, never from client input).
pub(crate) struct Part {
    pub terms: Vec<Vec<u8>>,
    pub ids: String,
}

/// The ids below `below` of messages matching any of `parts`, newest
/// first, at most `limit`.
pub(crate) fn search(
    c: &mut SqliteConnection,
    parts: &[Part],
    below: i64,
    limit: usize,
) -> Result<Vec<i64>, StoreError> {
    #[derive(QueryableByName)]
    struct Hit {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    // A user may have been in any number of groups, and SQLite allows at
    // most 500 SELECTs in one compound: the newest `limit` of each chunk
    // of parts, then the newest `limit` of those.
    let mut ids: Vec<i64> = Vec::new();
    for chunk in parts.chunks(PARTS_PER_QUERY) {
        // Only hex tokens and integers are written into the statement.
        let selects: Vec<String> = chunk
            .iter()
            .map(|part| {
                let tokens: Vec<String> = part.terms.iter().map(|term| quoted_token(term)).collect();
                format!(
                    "SELECT rowid AS id FROM search.search_index \
                     WHERE search_index MATCH '{}' AND rowid < {below} AND {}",
                    tokens.join(" AND "),
                    part.ids
                )
            })
            .collect();
        let sql = format!("{} ORDER BY 1 DESC LIMIT {limit}", selects.join(" UNION "));
        let hits: Vec<Hit> = diesel::sql_query(sql).load(c)?;
        ids.extend(hits.into_iter().map(|hit| hit.id));
    }
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.dedup();
    ids.truncate(limit);
    Ok(ids)
}

/// Parts of a search in one statement: under SQLite's limit of 500
/// SELECTs in a compound.
const PARTS_PER_QUERY: usize = 250;

fn quoted_token(term: &[u8]) -> String {
    let mut token = String::from("\"");
    push_hex(&mut token, term);
    token.push('"');
    token
}
