//! The `[jobs]` section of bluetick's configuration: the scheduler, the
//! operations jobs' settings and the restore bounds (bluetick's
//! `src/config.rs` composes it with the other sections).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::{restore, Settings};

/// The `[jobs]` section: the scheduler and the operations jobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Run the scheduler inside `serve`. Jobs can still be run by hand.
    pub enabled: bool,
    /// The zone schedules are read in: `UTC` or a fixed offset (`+05:30`).
    pub timezone: String,
    /// Job name → cron expression (seconds first; 5-field crontab lines
    /// fire at second 0) or `off`. Jobs not named keep their default.
    pub schedules: BTreeMap<String, String>,
    /// Write backups to this directory (as `backups/…`) instead of the
    /// media object store.
    pub backup_dir: Option<PathBuf>,
    /// Newest backups kept; older ones are deleted after each backup.
    pub backup_keep: usize,
    /// Dead letters older than this many days are deleted by cleanup.
    pub dead_letter_retention_days: u64,
    /// A node whose heartbeat is older than this is gone; cleanup deletes
    /// its `sessions` rows.
    pub stale_node_secs: u64,
    /// How often a server records its heartbeat.
    pub heartbeat_secs: u64,
    /// How long a job lease lasts without renewal.
    pub lease_secs: u64,
    /// Rows per batch in cleanup, archival and expiry.
    pub batch_size: usize,
    /// Messages older than this many days move to the archive table.
    pub archive_after_days: u64,
    /// Largest device backup accepted by `PUT /v1/me/backup`, in bytes.
    pub device_backup_max_bytes: usize,
    /// Device backups kept per user; older ones are deleted on upload.
    pub device_backups_kept: usize,

    // Restore bounds (hostile archives).
    /// Longest row `bluetick restore` reads from an archive, in bytes; a
    /// longer one is refused before it is read.
    pub restore_max_row_bytes: usize,
}

impl Default for JobsConfig {
    fn default() -> Self {
        let defaults = Settings::default();
        JobsConfig {
            enabled: true,
            timezone: "UTC".to_owned(),
            schedules: crate::registry()
                .into_iter()
                .map(|job| (job.name.to_owned(), job.default_schedule.to_owned()))
                .collect(),
            backup_dir: None,
            backup_keep: defaults.backup_keep,
            dead_letter_retention_days: defaults.dead_letter_retention.as_secs() / 86_400,
            stale_node_secs: defaults.stale_node_after.as_secs(),
            heartbeat_secs: 10,
            lease_secs: defaults.lease_ttl.as_secs(),
            batch_size: defaults.batch_size,
            archive_after_days: defaults.archive_after.as_secs() / 86_400,
            device_backup_max_bytes: 16 * 1024 * 1024,
            device_backups_kept: 3,
            restore_max_row_bytes: restore::Limits::default().max_row_bytes,
        }
    }
}

impl JobsConfig {
    /// The job bodies' settings.
    pub fn settings(&self) -> Settings {
        Settings {
            backup_keep: self.backup_keep,
            dead_letter_retention: Duration::from_secs(self.dead_letter_retention_days * 86_400),
            stale_node_after: Duration::from_secs(self.stale_node_secs),
            lease_ttl: Duration::from_secs(self.lease_secs.max(3)),
            batch_size: self.batch_size,
            archive_after: Duration::from_secs(self.archive_after_days.max(1) * 86_400),
        }
    }

    /// What `bluetick restore` accepts from an archive.
    pub fn restore_limits(&self) -> restore::Limits {
        restore::Limits {
            max_row_bytes: self.restore_max_row_bytes,
        }
    }
}
