//! bluetick's operations jobs: what runs on a schedule inside `bluetick
//! serve`, and what operators run by hand.
//!
//! # Layout
//! - [`Job`] and [`registry`]: every job by name, with its default schedule
//!   and its body. The scheduler and `bluetick job run NAME` both look jobs
//!   up here and call the same body through [`runs`].
//! - [`schedule`]: cron expressions (the `cron` crate) in a configured
//!   fixed UTC offset, and the slot (planned fire time) of each tick.
//! - [`scheduler`]: one task per scheduled job in the server, plus the
//!   node heartbeat.
//! - [`runs`]: one run of a job: take its [`lease`], claim the slot (if
//!   scheduled), run, record the outcome in `job_runs`; and the `/metrics`
//!   gauges read back from that record.
//! - [`lease`]: the database lease that lets one holder run a job at a
//!   time across servers sharing a database, renewed while it runs.
//! - [`backup`] and [`restore`]: a consistent snapshot of every table into
//!   a compressed archive with a manifest, and loading it into an empty
//!   database. [`target`] is where archives are kept; [`authentication`]
//!   is how restore knows an archive came from a backup of ours.
//! - [`export`]: one user's data as a zip of JSON.
//! - [`cleanup`]: deletes what nobody needs any more, in small batches.
//! - [`archival`]: moves week-old messages to the archive table.
//! - [`expiry`]: deletes disappearing messages whose time has come.
//! - [`progress`]: counts-and-rate logging for long jobs.
//! - [`config`]: the `[jobs]` section of the server's configuration.
//! - [`objects`]: the object store (local or S3) as jobs use it: where
//!   backups go and media objects are deleted.
//!
//! ```no_run
//! # fn main() -> Result<(), jobs::JobError> {
//! let store = store::Store::open("data/bluetick.db", &Default::default())?;
//! let context = jobs::Context::new(store, "local", jobs::Settings::default(),
//!     std::sync::Arc::new(jobs::target::LocalDir::new("data")));
//! let (run_id, counts) = jobs::runs::run_by_hand(&context, &jobs::find("cleanup")?)?;
//! println!("run {run_id}: {counts:?}");
//! # Ok(()) }
//! ```
//!
//! To add a job, give its module a `pub const JOB: Job` and list it in
//! [`registry`]: its default schedule, `jobs.schedules.NAME`, `bluetick job
//! list|run NAME`, the run record, the lease and the metrics follow.
//!
//! Jobs never touch `users.last_seen` or presence: only the presence
//! tracker writes last seen. They speak neither MQTT nor HTTP; they work on
//! the store and the backup target.

pub mod archival;
pub mod authentication;
pub mod backup;
pub mod cleanup;
pub mod config;
pub mod expiry;
pub mod export;
pub mod lease;
pub mod objects;
pub mod progress;
pub mod restore;
pub mod runs;
pub mod schedule;
pub mod scheduler;
pub mod target;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use store::{Store, StoreError};

/// What a run counted (rows copied, tokens deleted, …), recorded as JSON in
/// `job_runs.counts`.
pub type Counts = BTreeMap<String, u64>;

/// A job the scheduler and operators can run.
#[derive(Clone, Copy)]
pub struct Job {
    /// The name in config, on the command line, in `job_runs` and metrics.
    pub name: &'static str,
    /// A cron expression (seconds first) used when config sets none.
    pub default_schedule: &'static str,
    /// One line for `bluetick job list`: what the job touches.
    pub summary: &'static str,
    /// The body. Safe to run twice: every job works in idempotent batches.
    pub run: fn(&Context) -> Result<Counts, JobError>,
}

/// Every job, in the order `bluetick job list` shows them.
pub fn registry() -> Vec<Job> {
    vec![backup::JOB, archival::JOB, cleanup::JOB, expiry::JOB]
}

/// The job called `name`.
pub fn find(name: &str) -> Result<Job, JobError> {
    registry()
        .into_iter()
        .find(|job| job.name == name)
        .ok_or_else(|| JobError::UnknownJob(name.to_owned()))
}

/// Knobs of the job bodies, from the `[jobs]` config section.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Backups kept in the target; older ones are deleted after a backup.
    pub backup_keep: usize,
    /// Dead letters older than this are deleted by cleanup.
    pub dead_letter_retention: Duration,
    /// A node silent this long is gone: cleanup deletes its sessions rows.
    pub stale_node_after: Duration,
    /// How long a lease lasts without renewal (a crashed holder's lease
    /// frees itself after this).
    pub lease_ttl: Duration,
    /// Rows per batch for deletions and copies.
    pub batch_size: usize,
    /// Messages older than this move to the archive.
    pub archive_after: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            backup_keep: 7,
            dead_letter_retention: Duration::from_secs(30 * 86_400),
            stale_node_after: Duration::from_secs(300),
            lease_ttl: Duration::from_secs(120),
            batch_size: 1000,
            archive_after: Duration::from_secs(7 * 86_400),
        }
    }
}

/// What a job body can reach.
pub struct Context {
    pub store: Store,
    /// This process's node name, as recorded in `job_runs.node`.
    pub node: String,
    /// Who holds leases taken by this process: node name and process id,
    /// so two processes never mistake each other's lease for their own.
    pub holder: String,
    pub settings: Settings,
    /// Where backups are written.
    pub target: Arc<dyn target::Target>,
    /// The media object store, where cleanup and expiry delete objects;
    /// `None` leaves objects alone (and says so in the log).
    pub media: Option<Arc<objects::Objects>>,
}

impl Context {
    pub fn new(
        store: Store,
        node: &str,
        settings: Settings,
        target: Arc<dyn target::Target>,
    ) -> Context {
        Context {
            store,
            node: node.to_owned(),
            holder: format!("{node}#{}", std::process::id()),
            settings,
            target,
            media: None,
        }
    }

    /// The same context, deleting media objects from `media`.
    pub fn with_media(mut self, media: Arc<objects::Objects>) -> Context {
        self.media = Some(media);
        self
    }

    /// Deletes the objects of media rows that are gone; a failure leaves an
    /// object no row names, so it is logged for an operator.
    pub(crate) fn delete_media_objects(&self, gone: &[store::media::Media]) -> u64 {
        let mut deleted = 0;
        for media in gone {
            let keys = std::iter::once(&media.object_key).chain(media.thumbnail_key.as_ref());
            for key in keys {
                let result = match &self.media {
                    Some(objects) => objects.delete_object(key),
                    None => Err(std::io::Error::other("no media object store configured")),
                };
                match result {
                    Ok(()) => deleted += 1,
                    Err(e) => {
                        tracing::error!(key, error = %e, "media object not deleted; delete it by hand")
                    }
                }
            }
        }
        deleted
    }
}

/// Everything a job can fail with.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("backup archive: {0}")]
    Archive(String),
    #[error("restore refused: {0}")]
    Restore(String),
    #[error("no job named {0:?} (see `bluetick job list`)")]
    UnknownJob(String),
    #[error("job {job} is running elsewhere ({holder} holds its lease); try again later")]
    Busy { job: String, holder: String },
    #[error("schedule {expr:?}: {reason}")]
    Schedule { expr: String, reason: String },
}

impl JobError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> JobError {
        let what = what.into();
        move |source| JobError::Io { what, source }
    }
}

impl From<zip::result::ZipError> for JobError {
    fn from(e: zip::result::ZipError) -> JobError {
        JobError::Archive(e.to_string())
    }
}
