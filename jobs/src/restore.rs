//! `bluetick restore BACKUP`: loads a backup archive into an empty
//! database.
//!
//! In order, and stopping at the first problem with nothing loaded:
//! 1. read the manifest; the archive must be our format (from either
//!    backend: rows of the other one are converted as they load);
//! 2. check every table file against its SHA-256 and row count;
//! 3. refuse a database that holds any data;
//! 4. apply migrations; the database must then know every migration the
//!    backup had (a newer binary may know more: new columns take their
//!    defaults);
//! 5. load every table, parents first, in one transaction, a batch at a
//!    time, reporting progress; then move id sequences past the loaded ids.
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
use store::tokens::hex;
use store::{Backend, Store};

use crate::backup::{backend_name, Manifest, FORMAT_VERSION, MANIFEST, RUNTIME_TABLES};
use crate::{Counts, JobError};

/// Rows inserted per statement.
const BATCH: usize = 500;
/// Rows between progress lines within one table.
const REPORT_EVERY: u64 = 10_000;

/// Restores `archive` into `store`, which must hold no data. `report` gets
/// one line of progress at a time. Returns rows loaded per table.
pub fn restore(
    store: &Store,
    archive: &Path,
    report: &mut dyn FnMut(&str),
) -> Result<Counts, JobError> {
    let file =
        File::open(archive).map_err(JobError::io(format!("opening {}", archive.display())))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file))?;
    let manifest: Manifest = {
        let mut text = String::new();
        zip.by_name(MANIFEST)?
            .read_to_string(&mut text)
            .map_err(JobError::io("reading the manifest"))?;
        serde_json::from_str(&text)
            .map_err(|e| JobError::Archive(format!("the manifest is not valid: {e}")))?
    };
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
        let mut member = zip.by_name(&table.file)?;
        let mut hasher = Sha256::new();
        let mut lines = 0u64;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = member
                .read(&mut buffer)
                .map_err(JobError::io(format!("reading {}", table.file)))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            lines += buffer[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        }
        let sha = hex(&hasher.finalize());
        if sha != table.sha256 || lines != table.rows {
            return Err(JobError::Archive(format!(
                "{} is damaged: {lines} rows with SHA-256 {sha}, the manifest says {} rows with {}",
                table.file, table.rows, table.sha256
            )));
        }
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
            let member = zip.by_name(&table.file)?;
            let mut loaded = 0u64;
            let mut batch: Vec<String> = Vec::with_capacity(BATCH);
            let mut flush = |batch: &mut Vec<String>, loaded: &mut u64| -> Result<(), JobError> {
                if batch.is_empty() {
                    return Ok(());
                }
                let json = format!("[{}]", batch.join(","));
                let inserted = tx.load_rows(target, &table.columns, &json)?;
                let before = *loaded;
                *loaded += inserted as u64;
                batch.clear();
                if *loaded / REPORT_EVERY > before / REPORT_EVERY {
                    report(&format!("  {}: {}/{} rows", table.name, loaded, table.rows));
                }
                Ok(())
            };
            for line in BufReader::new(member).lines() {
                let line = line.map_err(JobError::io(format!("reading {}", table.file)))?;
                batch.push(if convert {
                    convert_row(&line, target, store.backend())?
                } else {
                    line
                });
                if batch.len() == BATCH {
                    flush(&mut batch, &mut loaded)?;
                }
            }
            flush(&mut batch, &mut loaded)?;
            tx.reset_id_sequences(&table.name)?;
            report(&format!("restored {}: {loaded} rows", table.name));
            counts.insert(table.name.clone(), loaded);
        }
        Ok::<_, JobError>(counts)
    })?;
    report(&format!(
        "restore complete: {} rows in {} tables",
        counts.values().sum::<u64>(),
        counts.len()
    ));
    Ok(counts)
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
