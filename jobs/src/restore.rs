//! `bluetick restore BACKUP`: loads a backup archive into an empty
//! database.
//!
//! In order, and stopping at the first problem with nothing loaded:
//! 1. read the manifest and its tag (each bounded in size) and verify the
//!    tag under the backup key ([`crate::authentication`]); the archive
//!    must be our format (from either backend: rows of the other one are
//!    converted as they load);
//! 2. check every table file against its SHA-256 and row count, streaming,
//!    and refuse a row longer than [`Limits::max_row_bytes`] as soon as it
//!    passes the bound;
//! 3. refuse a database that holds any data;
//! 4. apply migrations; the database must then know every migration the
//!    backup had (a newer binary may know more: new columns take their
//!    defaults);
//! 5. load every table, parents first, in one transaction, a batch at a
//!    time (bounded in rows and bytes), reporting progress; then move id
//!    sequences past the loaded ids. The rows are hashed again as they
//!    load, so a file changed since step 2 rolls the whole load back.
//!
//! # Invariant
//! Memory is bounded by the limits, never by the archive: no row is read
//! past [`Limits::max_row_bytes`], no batch past [`BATCH_BYTES`], and
//! nothing unauthenticated is believed.
//!
//! Message bodies stay sealed as they were: the server needs the same
//! message key to read them (docs/operations.md).

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use store::snapshot::Table;
use store::encoding::hex;
use store::{Backend, Store};

use crate::authentication::{self, BackupKey};
use crate::backup::{backend_name, Manifest, TableEntry, FORMAT_VERSION, MANIFEST, RUNTIME_TABLES};
use crate::{Counts, JobError};

/// Rows inserted per statement.
const BATCH: usize = 500;
/// Rows between progress lines within one table.
const REPORT_EVERY: u64 = 10_000;
/// Bytes of rows sent to the database in one statement; a batch ends at
/// [`BATCH`] rows or at this many bytes, whichever comes first.
pub const BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Largest manifest read: ours are a few KiB (one entry per table).
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;
/// Largest tag read: 64 hex digits.
const MAX_TAG_BYTES: u64 = 256;

/// What restore accepts from an archive, from the `[jobs]` config section.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest row (one JSON line of a table file), in bytes. The largest
    /// rows a server writes are device backups (hex doubles them), so the
    /// default leaves room for `jobs.device_backup_max_bytes` of 16 MiB.
    pub max_row_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_row_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Restores `archive` into `store`, which must hold no data and have the
/// message key of the server that took the backup. `report` gets one line
/// of progress at a time. Returns rows loaded per table.
pub fn restore(
    store: &Store,
    archive: &Path,
    limits: &Limits,
    report: &mut dyn FnMut(&str),
) -> Result<Counts, JobError> {
    let key = BackupKey::of(store)?;
    let file =
        File::open(archive).map_err(JobError::io(format!("opening {}", archive.display())))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file))?;
    let manifest_bytes = read_member(&mut zip, MANIFEST, MAX_MANIFEST_BYTES)?;
    if zip.index_for_name(authentication::TAG).is_none() {
        return Err(JobError::Restore(format!(
            "the archive has no {}: it was not written by a bluetick that authenticates backups (format {FORMAT_VERSION}); restore it with the version that took it",
            authentication::TAG
        )));
    }
    let tag = read_member(&mut zip, authentication::TAG, MAX_TAG_BYTES)?;
    if !key.verify(&manifest_bytes, &String::from_utf8_lossy(&tag)) {
        return Err(JobError::Restore(
            "the archive is not authenticated by this server's backup key: it was changed after the backup, or taken under another message key".into(),
        ));
    }
    report("archive authenticated");
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| JobError::Archive(format!("the manifest is not valid: {e}")))?;
    if manifest.format != FORMAT_VERSION {
        return Err(JobError::Restore(format!(
            "archive format {} is not the {FORMAT_VERSION} this bluetick reads",
            manifest.format
        )));
    }
    // A backup of the other backend loads too (moving from SQLite on one
    // box to PostgreSQL), with binary and boolean values rewritten.
    let convert = match (manifest.backend.as_str(), store.backend()) {
        ("sqlite", Backend::Sqlite) | ("postgres", Backend::Postgres) => false,
        ("sqlite", Backend::Postgres) | ("postgres", Backend::Sqlite) => true,
        (other, _) => {
            return Err(JobError::Restore(format!(
                "the backup is of a {other} database, which this bluetick cannot load"
            )))
        }
    };
    report(&format!(
        "backup taken at {} on node {}: {} tables, {} rows",
        crate::schedule::format_ms(manifest.created_at),
        manifest.node,
        manifest.tables.len(),
        manifest.tables.iter().map(|t| t.rows).sum::<u64>()
    ));

    for table in &manifest.tables {
        check_table(&mut zip, table, limits)?;
    }
    report("checksums verified");
    if convert {
        report(&format!(
            "converting rows from {} to {}",
            manifest.backend,
            backend_name(store)
        ));
    }

    for table in store.tables()? {
        if RUNTIME_TABLES.contains(&table.name.as_str()) {
            continue;
        }
        let rows = store.row_count(&table.name)?;
        if rows > 0 {
            return Err(JobError::Restore(format!(
                "the database is not empty (table {} has {rows} rows); restore needs an empty database",
                table.name
            )));
        }
    }
    for name in store.migrate()? {
        report(&format!("migration applied: {name}"));
    }
    // Backups carry no search index: the server's indexer writes it again
    // from the restored messages once it starts. Before the load, so that
    // an index of whatever was here before never covers restored ids.
    store.restart_search_index()?;
    let known = store.snapshot()?.migrations()?;
    if let Some(missing) = manifest.migrations.iter().find(|m| !known.contains(m)) {
        return Err(JobError::Restore(format!(
            "the backup has migration {missing}, which this bluetick does not know; restore with the version that took it"
        )));
    }
    let targets: BTreeMap<String, store::snapshot::Table> = store
        .tables()?
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    for table in &manifest.tables {
        let target = targets.get(&table.name).ok_or_else(|| {
            JobError::Restore(format!(
                "table {} does not exist after migrations",
                table.name
            ))
        })?;
        if let Some(column) = table
            .columns
            .iter()
            .find(|c| !target.columns.iter().any(|t| &t.name == *c))
        {
            return Err(JobError::Restore(format!(
                "column {}.{column} does not exist after migrations",
                table.name
            )));
        }
    }

    let counts = store.transaction(|tx| {
        let mut counts = Counts::new();
        for table in &manifest.tables {
            let target = &targets[&table.name];
            let mut member = BufReader::new(zip.by_name(&table.file)?);
            let mut loaded = 0u64;
            let mut batch = Batch::default();
            let mut flush = |batch: &mut Batch, loaded: &mut u64| -> Result<(), JobError> {
                if batch.rows.is_empty() {
                    return Ok(());
                }
                let json = format!("[{}]", batch.rows.join(","));
                let inserted = tx.load_rows(target, &table.columns, &json)?;
                let before = *loaded;
                *loaded += inserted as u64;
                batch.clear();
                if *loaded / REPORT_EVERY > before / REPORT_EVERY {
                    report(&format!("  {}: {}/{} rows", table.name, loaded, table.rows));
                }
                Ok(())
            };
            let mut hasher = Sha256::new();
            let mut line = Vec::new();
            while next_row(&mut member, &mut line, limits.max_row_bytes, &table.file)? {
                hasher.update(&line);
                hasher.update(b"\n");
                let row = String::from_utf8(std::mem::take(&mut line)).map_err(|_| {
                    JobError::Archive(format!("a row of {} is not UTF-8", table.file))
                })?;
                batch.push(if convert {
                    convert_row(&row, target, store.backend())?
                } else {
                    row
                });
                if batch.rows.len() == BATCH || batch.bytes >= BATCH_BYTES {
                    flush(&mut batch, &mut loaded)?;
                }
            }
            flush(&mut batch, &mut loaded)?;
            // The file was checked before the transaction; this catches one
            // replaced since, and the error rolls the whole load back.
            if hex(&hasher.finalize()) != table.sha256 {
                return Err(JobError::Archive(format!(
                    "{} changed while it was being restored; nothing was loaded",
                    table.file
                )));
            }
            tx.reset_id_sequences(&table.name)?;
            report(&format!("restored {}: {loaded} rows", table.name));
            counts.insert(table.name.clone(), loaded);
        }
        report("search index: rebuilt by the indexer once the server starts");
        Ok::<_, JobError>(counts)
    })?;
    report(&format!(
        "restore complete: {} rows in {} tables",
        counts.values().sum::<u64>(),
        counts.len()
    ));
    Ok(counts)
}

/// Rows waiting for one `INSERT`, and their size.
#[derive(Default)]
struct Batch {
    rows: Vec<String>,
    bytes: usize,
}

impl Batch {
    fn push(&mut self, row: String) {
        self.bytes += row.len() + 1;
        self.rows.push(row);
    }

    fn clear(&mut self) {
        self.rows.clear();
        self.bytes = 0;
    }
}

/// The bytes of archive member `name`, refusing one longer than `max`
/// before reading past it.
fn read_member<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    max: u64,
) -> Result<Vec<u8>, JobError> {
    let mut bytes = Vec::new();
    zip.by_name(name)?
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(JobError::io(format!("reading {name}")))?;
    if bytes.len() as u64 > max {
        return Err(JobError::Archive(format!(
            "{name} is larger than {max} bytes"
        )));
    }
    Ok(bytes)
}

/// Streams one table file and checks it against its manifest entry: its
/// SHA-256, its row count, and every row within `limits`. Stops at the
/// first row past the bound or past the declared count, so a hostile file
/// costs no more than reading that far.
fn check_table<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    table: &TableEntry,
    limits: &Limits,
) -> Result<(), JobError> {
    let mut member = zip.by_name(&table.file)?;
    let mut hasher = Sha256::new();
    let mut rows = 0u64;
    let mut row_bytes = 0usize;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = member
            .read(&mut buffer)
            .map_err(JobError::io(format!("reading {}", table.file)))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        for piece in buffer[..n].split_inclusive(|&b| b == b'\n') {
            let ends_row = piece.last() == Some(&b'\n');
            row_bytes += piece.len() - usize::from(ends_row);
            if row_bytes > limits.max_row_bytes {
                return Err(row_too_long(&table.file, rows + 1, limits));
            }
            if ends_row {
                rows += 1;
                row_bytes = 0;
                if rows > table.rows {
                    return Err(JobError::Archive(format!(
                        "{} holds more than the {} rows the manifest says",
                        table.file, table.rows
                    )));
                }
            }
        }
    }
    let sha = hex(&hasher.finalize());
    if sha != table.sha256 || rows != table.rows {
        return Err(JobError::Archive(format!(
            "{} is damaged: {rows} rows with SHA-256 {sha}, the manifest says {} rows with {}",
            table.file, table.rows, table.sha256
        )));
    }
    Ok(())
}

/// Reads the next row of `reader` into `line`, without its newline;
/// `false` at the end. A row longer than `max` is refused once `max + 1`
/// bytes of it are read, never read whole.
fn next_row(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
    file: &str,
) -> Result<bool, JobError> {
    line.clear();
    let n = reader
        .take(max as u64 + 1)
        .read_until(b'\n', line)
        .map_err(JobError::io(format!("reading {file}")))?;
    if n == 0 {
        return Ok(false);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > max {
        return Err(JobError::Archive(format!(
            "a row of {file} is longer than {max} bytes"
        )));
    }
    Ok(true)
}

fn row_too_long(file: &str, row: u64, limits: &Limits) -> JobError {
    JobError::Archive(format!(
        "row {row} of {file} is longer than {} bytes (jobs.restore_max_row_bytes); refused before reading it",
        limits.max_row_bytes
    ))
}

/// Rewrites one row as the other backend rendered it into the form `to`
/// loads: bytes as `"\x…"` for PostgreSQL and bare hex for SQLite,
/// booleans as `true`/`false` for PostgreSQL (SQLite reads either).
fn convert_row(line: &str, table: &Table, to: Backend) -> Result<String, JobError> {
    let mut row: serde_json::Map<String, Value> = serde_json::from_str(line)
        .map_err(|e| JobError::Archive(format!("a row of {} is not JSON: {e}", table.name)))?;
    for column in &table.columns {
        let Some(value) = row.get_mut(&column.name) else {
            continue;
        };
        match value {
            Value::String(bytes) if column.binary => {
                let bare = bytes.strip_prefix("\\x").unwrap_or(bytes);
                *bytes = match to {
                    Backend::Postgres => format!("\\x{bare}"),
                    Backend::Sqlite => bare.to_owned(),
                };
            }
            Value::Number(n) if column.boolean && to == Backend::Postgres => {
                *value = Value::Bool(n.as_i64() != Some(0));
            }
            _ => {}
        }
    }
    Ok(Value::Object(row).to_string())
}
