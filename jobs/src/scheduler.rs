//! The scheduler inside `bluetick serve`: one task per scheduled job that
//! sleeps until the job's next slot and runs it through [`runs::run_slot`],
//! and the heartbeat that tells other servers this node is alive.
//!
//! A tick that comes while the previous run of the same job still runs is
//! skipped, not queued: the next run starts at the first slot after the
//! previous one ended.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use store::clock;
use tokio::task::JoinHandle;

use crate::runs::{self, Tick};
use crate::schedule::{parse_zone, Schedule};
use crate::{registry, Context, Job, JobError};

/// Written instead of an expression to turn a job's schedule off.
pub const OFF: &str = "off";

/// A job and when it fires.
#[derive(Clone)]
pub struct Planned {
    pub job: Job,
    pub schedule: Schedule,
}

/// Every registered job with its schedule: the default, unless `overrides`
/// (job name → expression, or `off`) says otherwise. An override for a job
/// that does not exist is an error, so a typo is not a silent no-op.
pub fn plan(overrides: &BTreeMap<String, String>, zone: &str) -> Result<Vec<Planned>, JobError> {
    let zone = parse_zone(zone)?;
    let jobs = registry();
    if let Some(unknown) = overrides
        .keys()
        .find(|name| !jobs.iter().any(|job| job.name == name.as_str()))
    {
        return Err(JobError::UnknownJob(unknown.clone()));
    }
    let mut planned = Vec::new();
    for job in jobs {
        let expr = overrides
            .get(job.name)
            .map(String::as_str)
            .unwrap_or(job.default_schedule);
        if expr.trim() == OFF {
            continue;
        }
        planned.push(Planned {
            job,
            schedule: Schedule::parse(expr, zone)?,
        });
    }
    Ok(planned)
}

/// Starts one task per planned job; they run until aborted.
pub fn spawn(context: Arc<Context>, planned: Vec<Planned>) -> Vec<JoinHandle<()>> {
    planned
        .into_iter()
        .map(|planned| tokio::spawn(drive(context.clone(), planned)))
        .collect()
}

async fn drive(context: Arc<Context>, planned: Planned) {
    let name = planned.job.name;
    tracing::info!(
        job = name,
        schedule = planned.schedule.expr(),
        "job scheduled"
    );
    let mut last_slot = i64::MIN;
    loop {
        let now = clock::now_ms();
        // The timer may wake a hair before the wall clock reaches the
        // slot; never plan the slot just fired a second time.
        let Some(slot) = planned.schedule.next_after(now.max(last_slot)) else {
            tracing::warn!(job = name, "schedule has no more ticks");
            return;
        };
        tokio::time::sleep(Duration::from_millis((slot - now).max(0) as u64)).await;
        last_slot = slot;
        let (context, job) = (context.clone(), planned.job);
        let tick = tokio::task::spawn_blocking(move || runs::run_slot(&context, &job, slot)).await;
        match tick {
            Ok(Ok(Tick::Ran { run, ok })) => {
                tracing::info!(job = name, slot, run, ok, "tick ran here")
            }
            Ok(Ok(Tick::SlotTaken)) => {
                tracing::info!(
                    job = name,
                    slot,
                    "tick skipped: another node claimed this slot"
                )
            }
            Ok(Ok(Tick::Busy { holder })) => {
                tracing::info!(job = name, slot, %holder, "tick skipped: the job is running elsewhere")
            }
            Ok(Err(e)) => tracing::error!(job = name, slot, error = %e, "tick could not run"),
            Err(e) => tracing::error!(job = name, slot, error = %e, "job task failed"),
        }
    }
}

/// Says every `every` that `node` is alive, until aborted. Other servers'
/// cleanup treats the sessions rows of a node that stopped saying so as
/// stale.
pub fn heartbeat(store: store::Store, node: String, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (store, node) = (store.clone(), node.clone());
            match tokio::task::spawn_blocking(move || store.heartbeat(&node)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "heartbeat not recorded"),
                Err(e) => tracing::warn!(error = %e, "heartbeat task failed"),
            }
            tokio::time::sleep(every).await;
        }
    })
}
