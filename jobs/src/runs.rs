//! One run of a job, by hand or for a scheduled slot, recorded in
//! `job_runs`; and the job gauges of `/metrics`, read back from that record.
//!
//! Both paths take the job's [`Lease`] first, so a job never runs twice at
//! once anywhere. A scheduled run then claims its slot: of all the servers
//! that fire the same tick, only the one whose claim lands runs it.

use std::time::Instant;
use store::job_runs::{FAILED, OK};
use store::Store;

use crate::lease::Lease;
use crate::{registry, Context, Counts, Job, JobError};

/// What became of a scheduled tick on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick {
    /// This node ran it as `job_runs` row `run`; `ok` is whether it succeeded.
    Ran { run: i64, ok: bool },
    /// Another node already claimed the slot.
    SlotTaken,
    /// The job was running elsewhere (its lease was held).
    Busy { holder: String },
}

/// Runs `job` now, by hand. Fails with [`JobError::Busy`] if it is running
/// elsewhere; a failed run is recorded and its error returned.
pub fn run_by_hand(context: &Context, job: &Job) -> Result<(i64, Counts), JobError> {
    let _lease = match Lease::take(
        &context.store,
        job.name,
        &context.holder,
        context.settings.lease_ttl,
    )? {
        Ok(lease) => lease,
        Err(holder) => {
            return Err(JobError::Busy {
                job: job.name.to_owned(),
                holder,
            })
        }
    };
    let run = context.store.start_run(job.name, &context.node)?;
    let counts = execute(context, job, run)?;
    Ok((run, counts))
}

/// Runs the tick of `job` planned for `slot` (Unix ms), unless another node
/// runs it or the job is busy.
pub fn run_slot(context: &Context, job: &Job, slot: i64) -> Result<Tick, JobError> {
    let _lease = match Lease::take(
        &context.store,
        job.name,
        &context.holder,
        context.settings.lease_ttl,
    )? {
        Ok(lease) => lease,
        Err(holder) => return Ok(Tick::Busy { holder }),
    };
    let Some(run) = context.store.claim_slot(job.name, slot, &context.node)? else {
        return Ok(Tick::SlotTaken);
    };
    let ok = execute(context, job, run).is_ok();
    Ok(Tick::Ran { run, ok })
}

/// Runs the body for the `job_runs` row `run` and records how it ended.
fn execute(context: &Context, job: &Job, run: i64) -> Result<Counts, JobError> {
    tracing::info!(job = job.name, run, node = %context.node, "job started");
    let started = Instant::now();
    let result = (job.run)(context);
    let seconds = started.elapsed().as_secs_f64();
    let (status, counts, error) = match &result {
        Ok(counts) => (OK, counts.clone(), None),
        Err(e) => (FAILED, Counts::new(), Some(e.to_string())),
    };
    let counts_json = serde_json::to_string(&counts).unwrap_or_else(|_| "{}".to_owned());
    match &error {
        None => tracing::info!(job = job.name, run, seconds, counts = %counts_json, "job finished"),
        Some(e) => tracing::error!(job = job.name, run, seconds, error = %e, "job failed"),
    }
    context
        .store
        .finish_run(run, status, &counts_json, error.as_deref())?;
    result
}

/// Sets the job gauges from `job_runs`, so every server (and a scrape after
/// a run by hand) shows the same truth, whichever node ran the job:
/// `bluetick_job_last_success_timestamp_seconds{job}`,
/// `bluetick_job_duration_seconds{job}` (of the last finished run) and
/// `bluetick_job_last_run_ok{job}`.
pub fn publish_metrics(store: &Store) -> Result<(), JobError> {
    for job in registry() {
        let (finished, succeeded) = store.last_runs(job.name)?;
        if let Some(run) = succeeded {
            let at = run.finished_at.unwrap_or(run.started_at);
            metrics::gauge!("bluetick_job_last_success_timestamp_seconds", "job" => job.name)
                .set(at as f64 / 1000.0);
        }
        if let Some(run) = finished {
            let took = run.finished_at.unwrap_or(run.started_at) - run.started_at;
            metrics::gauge!("bluetick_job_duration_seconds", "job" => job.name)
                .set(took as f64 / 1000.0);
            metrics::gauge!("bluetick_job_last_run_ok", "job" => job.name)
                .set(if run.status == OK { 1.0 } else { 0.0 });
        }
    }
    Ok(())
}
