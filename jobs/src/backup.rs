//! The backup job: a consistent snapshot of the whole database, while
//! traffic continues, into one compressed archive in the backup target.
//!
//! # Archive
//! A zip (deflate) holding, for every table the catalog lists (so tables
//! added later are included without code changes):
//! - `tables/NAME.jsonl`: one JSON object per row, as
//!   [`store::snapshot`] renders it;
//! - `manifest.json`: the [`Manifest`]: format version, backend, the
//!   migrations the database had, and per table its columns, row count and
//!   the SHA-256 of its file. Restore checks all of it before loading.
//! - `manifest.hmac`: the manifest's tag under the backup key, derived from
//!   the message key ([`crate::authentication`]); restore refuses an
//!   archive whose tag does not verify.
//!
//! Runtime state is left out: `sessions` (connections of that moment),
//! `nodes` (heartbeats), `job_leases` and `job_runs` (the record of jobs on
//! the old servers, including this backup's own unfinished run). A
//! restored server starts with nobody connected and no job history, which
//! is the truth.
//!
//! # Consistency without stalls
//! Every table is read inside one read-only snapshot (PostgreSQL
//! `REPEATABLE READ READ ONLY`; SQLite a WAL read transaction), in pages.
//! Neither blocks the bridge's commits, and the backup never writes to
//! the database except its own `job_runs` row. It never touches last seen.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use store::encoding::hex;
use store::{clock, Store};
use zip::write::SimpleFileOptions;

use crate::authentication::{self, BackupKey};
use crate::progress::Progress;
use crate::target::Target;
use crate::{Context, Counts, Job, JobError};

pub const JOB: Job = Job {
    name: "backup",
    default_schedule: "0 0 2 * * *",
    summary: "reads every table in one snapshot; writes backups/bluetick-TIME.zip to the backup target; deletes backups beyond jobs.backup_keep",
    run,
};

/// Where backups live in the target.
pub const PREFIX: &str = "backups/";
/// Backups are named `backups/bluetick-20261128T020000.000Z.zip`, so
/// sorting keys sorts them by time.
const NAME_PREFIX: &str = "backups/bluetick-";
/// The archive layout this code writes and reads. Format 1 had no
/// `manifest.hmac`, so nothing vouched for its contents.
pub const FORMAT_VERSION: u32 = 2;
pub const MANIFEST: &str = "manifest.json";
/// Tables that describe the running processes and their jobs, not the
/// data. (`job_runs` would also hold the backup's own unfinished run.)
pub const RUNTIME_TABLES: &[&str] = &["sessions", "nodes", "job_leases", "job_runs"];
/// Rows read per page of the snapshot.
const PAGE: usize = 2000;

/// What an archive holds, for restore to check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: u32,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// When the snapshot was taken, Unix ms.
    pub created_at: i64,
    /// Which node took it.
    pub node: String,
    /// The migrations the database had, oldest first.
    pub migrations: Vec<String>,
    /// Parents before children (foreign keys), the order to load them in.
    pub tables: Vec<TableEntry>,
}

/// One table in an archive.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableEntry {
    pub name: String,
    /// The archive member holding the rows.
    pub file: String,
    pub columns: Vec<String>,
    pub rows: u64,
    /// Hex SHA-256 of the member's bytes.
    pub sha256: String,
}

/// `sqlite` or `postgres`, as manifests name backends.
pub fn backend_name(store: &Store) -> &'static str {
    match store.backend() {
        store::Backend::Sqlite => "sqlite",
        store::Backend::Postgres => "postgres",
    }
}

fn run(context: &Context) -> Result<Counts, JobError> {
    let created_at = clock::now_ms();
    let key = format!("{NAME_PREFIX}{}.zip", stamp(created_at));
    let staging_dir = context
        .target
        .staging_dir()
        .map_err(JobError::io("preparing the backup staging directory"))?;
    remove_leftovers(&staging_dir);
    let staging = staging_dir.join(format!("bluetick-{created_at}-{}.zip", std::process::id()));
    let written = write_archive(&context.store, &staging, &context.node);
    let manifest = match written {
        Ok(manifest) => manifest,
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            return Err(e);
        }
    };
    let bytes = std::fs::metadata(&staging)
        .map_err(JobError::io("reading the archive size"))?
        .len();
    context
        .target
        .put(&key, &staging)
        .map_err(JobError::io(format!("storing {key}")))?;
    let removed = apply_retention(context.target.as_ref(), context.settings.backup_keep)?;
    tracing::info!(key, at = %context.target.describe(&key), bytes, removed, "backup stored");
    let mut counts = Counts::new();
    counts.insert("tables".into(), manifest.tables.len() as u64);
    counts.insert(
        "rows".into(),
        manifest.tables.iter().map(|t| t.rows).sum::<u64>(),
    );
    counts.insert("bytes".into(), bytes);
    counts.insert("old_backups_deleted".into(), removed);
    Ok(counts)
}

/// Writes a snapshot of `store` to a new archive at `path`.
pub fn write_archive(store: &Store, path: &Path, node: &str) -> Result<Manifest, JobError> {
    let key = BackupKey::of(store)?;
    // The archive holds every table: readable by the owner only.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(JobError::io(format!("creating {}", path.display())))?;
    let mut zip = zip::ZipWriter::new(BufWriter::new(file));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);

    let mut snapshot = store.snapshot()?;
    let created_at = clock::now_ms();
    let migrations = snapshot.migrations()?;
    let mut tables = Vec::new();
    for table in snapshot.tables()? {
        // The search index is rebuilt from the messages after a restore.
        if RUNTIME_TABLES.contains(&table.name.as_str())
            || store::indexer::DERIVED_TABLES.contains(&table.name.as_str())
        {
            continue;
        }
        let file = format!("tables/{}.jsonl", table.name);
        zip.start_file(file.as_str(), options)?;
        let mut hasher = Sha256::new();
        let mut progress = Progress::new("backup", table.name.clone());
        let mut after: Option<String> = None;
        loop {
            let page = snapshot.rows(&table, after.as_deref(), PAGE)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            let full = page.len() == PAGE;
            for (_, row) in &page {
                hasher.update(row.as_bytes());
                hasher.update(b"\n");
                zip.write_all(row.as_bytes())
                    .and_then(|()| zip.write_all(b"\n"))
                    .map_err(JobError::io(format!("writing {file}")))?;
            }
            progress.add(page.len() as u64);
            if !full {
                break;
            }
        }
        tables.push(TableEntry {
            name: table.name.clone(),
            file,
            columns: table.columns.iter().map(|c| c.name.clone()).collect(),
            rows: progress.finish(),
            sha256: hex(&hasher.finalize()),
        });
    }
    drop(snapshot);

    let manifest = Manifest {
        format: FORMAT_VERSION,
        backend: backend_name(store).to_owned(),
        created_at,
        node: node.to_owned(),
        migrations,
        tables,
    };
    zip.start_file(MANIFEST, options)?;
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
    zip.write_all(&json)
        .map_err(JobError::io("writing the manifest"))?;
    zip.start_file(authentication::TAG, options)?;
    zip.write_all(key.sign(&json).as_bytes())
        .map_err(JobError::io("writing the manifest's tag"))?;
    let mut out = zip.finish()?;
    out.flush().map_err(JobError::io("flushing the archive"))?;
    out.get_ref()
        .sync_all()
        .map_err(JobError::io("syncing the archive"))?;
    Ok(manifest)
}

/// Deletes staging files of backups that never finished (their server
/// stopped mid-way). Only the lease holder runs a backup, so any staging
/// file found now is a leftover.
fn remove_leftovers(staging_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(staging_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("bluetick-") && name.ends_with(".zip") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!(file = %name, "unfinished backup removed"),
                Err(e) => {
                    tracing::warn!(file = %name, error = %e, "cannot remove an unfinished backup")
                }
            }
        }
    }
}

/// Deletes all but the newest `keep` backups; returns how many it deleted.
pub fn apply_retention(target: &dyn Target, keep: usize) -> Result<u64, JobError> {
    let keys = list(target)?;
    let mut removed = 0;
    for key in keys.iter().rev().skip(keep.max(1)) {
        target
            .delete(key)
            .map_err(JobError::io(format!("deleting {key}")))?;
        tracing::info!(key, "old backup deleted");
        removed += 1;
    }
    Ok(removed)
}

/// The backups in `target`, oldest first.
pub fn list(target: &dyn Target) -> Result<Vec<String>, JobError> {
    let mut keys = target
        .list(NAME_PREFIX)
        .map_err(JobError::io("listing backups"))?;
    keys.retain(|key| key.ends_with(".zip"));
    Ok(keys)
}

/// `20261128T020000.000Z` for a Unix ms time.
fn stamp(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y%m%dT%H%M%S%.3fZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}
