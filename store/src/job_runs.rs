//! The record of operations jobs: one `job_runs` row per run, the leases
//! that let one holder run a job at a time, and node heartbeats.
//!
//! # Exactly one run per scheduled slot
//! Every server that fires a schedule computes the same slot (the planned
//! fire time). [`Store::claim_slot`] inserts `(job, slot)` under a unique
//! index, so across servers sharing a database exactly one insert wins and
//! only its node runs that tick. Runs by hand carry no slot.
//!
//! # One holder at a time
//! A lease is a `job_leases` row `(job, holder, expires_at)`. It is taken
//! with a conditional update that succeeds only when the row is free,
//! expired or already ours, so a run by hand never overlaps a scheduled
//! run of the same job on another server.

use diesel::prelude::*;

use crate::schema::{job_leases, job_runs, nodes};
use crate::{clock, Store, StoreError};

/// How a run ended (or that it has not yet).
pub const RUNNING: &str = "running";
pub const OK: &str = "ok";
pub const FAILED: &str = "failed";

/// One row of `job_runs`.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = job_runs)]
pub struct JobRun {
    pub id: i64,
    pub job: String,
    /// The planned fire time of a scheduled run (Unix ms); `None` by hand.
    pub slot: Option<i64>,
    /// Which server (or `cli`) ran it.
    pub node: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// [`RUNNING`], [`OK`] or [`FAILED`].
    pub status: String,
    /// A JSON object of what the run counted.
    pub counts: String,
    pub error: Option<String>,
}

impl Store {
    /// Claims a scheduled slot of `job` for `node` and records its run as
    /// started; `None` if another node claimed the slot first.
    pub fn claim_slot(&self, job: &str, slot: i64, node: &str) -> Result<Option<i64>, StoreError> {
        let mut conn = self.conn()?;
        Ok(
            on_backend!(&mut *conn, c => diesel::insert_into(job_runs::table)
            .values((
                job_runs::job.eq(job),
                job_runs::slot.eq(Some(slot)),
                job_runs::node.eq(node),
                job_runs::started_at.eq(clock::now_ms()),
                job_runs::status.eq(RUNNING),
            ))
            .on_conflict_do_nothing()
            .returning(job_runs::id)
            .get_result(c)
            .optional())?,
        )
    }

    /// Records the start of a run by hand.
    pub fn start_run(&self, job: &str, node: &str) -> Result<i64, StoreError> {
        let mut conn = self.conn()?;
        Ok(
            on_backend!(&mut *conn, c => diesel::insert_into(job_runs::table)
            .values((
                job_runs::job.eq(job),
                job_runs::node.eq(node),
                job_runs::started_at.eq(clock::now_ms()),
                job_runs::status.eq(RUNNING),
            ))
            .returning(job_runs::id)
            .get_result(c))?,
        )
    }

    /// Records how run `id` ended: [`OK`] or [`FAILED`], its counts (a
    /// JSON object) and error.
    pub fn finish_run(
        &self,
        id: i64,
        status: &str,
        counts: &str,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        on_backend!(&mut *conn, c => diesel::update(job_runs::table.filter(job_runs::id.eq(id)))
            .set((
                job_runs::finished_at.eq(Some(clock::now_ms())),
                job_runs::status.eq(status),
                job_runs::counts.eq(counts),
                job_runs::error.eq(error),
            ))
            .execute(c))?;
        Ok(())
    }

    /// Marks runs `node` left running as failed: a node that starts again
    /// after a crash never got to finish them.
    pub fn abandon_runs(&self, node: &str) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        Ok(on_backend!(&mut *conn, c => diesel::update(
            job_runs::table.filter(job_runs::node.eq(node)).filter(job_runs::status.eq(RUNNING)),
        )
        .set((
            job_runs::finished_at.eq(Some(clock::now_ms())),
            job_runs::status.eq(FAILED),
            job_runs::error.eq(Some("the node stopped before the run finished")),
        ))
        .execute(c))?)
    }

    /// The newest `limit` runs of `job` (every job if `None`), newest first.
    pub fn job_runs(&self, job: Option<&str>, limit: usize) -> Result<Vec<JobRun>, StoreError> {
        let mut conn = self.conn()?;
        Ok(on_backend!(&mut *conn, c => {
            let mut query = job_runs::table
                .order(job_runs::id.desc())
                .limit(limit as i64)
                .select(JobRun::as_select())
                .into_boxed();
            if let Some(job) = job {
                query = query.filter(job_runs::job.eq(job.to_owned()));
            }
            query.load(c)?
        }))
    }

    /// The newest finished run of `job`, and the newest successful one.
    pub fn last_runs(&self, job: &str) -> Result<(Option<JobRun>, Option<JobRun>), StoreError> {
        let mut conn = self.conn()?;
        let finished: Option<JobRun> = on_backend!(&mut *conn, c => job_runs::table
            .filter(job_runs::job.eq(job))
            .filter(job_runs::status.ne(RUNNING))
            .order(job_runs::id.desc())
            .select(JobRun::as_select())
            .first(c)
            .optional())?;
        let succeeded: Option<JobRun> = on_backend!(&mut *conn, c => job_runs::table
            .filter(job_runs::job.eq(job))
            .filter(job_runs::status.eq(OK))
            .order(job_runs::id.desc())
            .select(JobRun::as_select())
            .first(c)
            .optional())?;
        Ok((finished, succeeded))
    }

    /// Takes the lease on `job` for `holder` until `ttl_ms` from now, if it
    /// is free, expired, or already `holder`'s. True if `holder` has it.
    pub fn try_lease(&self, job: &str, holder: &str, ttl_ms: i64) -> Result<bool, StoreError> {
        let now = clock::now_ms();
        let mut conn = self.conn()?;
        on_backend!(&mut *conn, c => diesel::insert_into(job_leases::table)
            .values((
                job_leases::job.eq(job),
                job_leases::holder.eq(holder),
                job_leases::expires_at.eq(now + ttl_ms),
            ))
            .on_conflict_do_nothing()
            .execute(c))?;
        // One statement decides: concurrent takers serialise on the row, and
        // only a taker that finds it free, expired or its own updates it.
        let taken = on_backend!(&mut *conn, c => diesel::update(
            job_leases::table
                .filter(job_leases::job.eq(job))
                .filter(job_leases::holder.eq(holder).or(job_leases::expires_at.lt(now))),
        )
        .set((job_leases::holder.eq(holder), job_leases::expires_at.eq(now + ttl_ms)))
        .execute(c))?;
        Ok(taken == 1)
    }

    /// Gives the lease on `job` back, if `holder` still has it.
    pub fn release_lease(&self, job: &str, holder: &str) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        on_backend!(&mut *conn, c => diesel::delete(
            job_leases::table.filter(job_leases::job.eq(job)).filter(job_leases::holder.eq(holder)),
        )
        .execute(c))?;
        Ok(())
    }

    /// Who holds the lease on `job`, until when (Unix ms), if anyone does.
    pub fn lease_holder(&self, job: &str) -> Result<Option<(String, i64)>, StoreError> {
        let mut conn = self.conn()?;
        Ok(on_backend!(&mut *conn, c => job_leases::table
            .filter(job_leases::job.eq(job))
            .filter(job_leases::expires_at.ge(clock::now_ms()))
            .select((job_leases::holder, job_leases::expires_at))
            .first(c)
            .optional())?)
    }

    /// Notes that `node` is alive now.
    pub fn heartbeat(&self, node: &str) -> Result<(), StoreError> {
        let now = clock::now_ms();
        let mut conn = self.conn()?;
        on_backend!(&mut *conn, c => diesel::insert_into(nodes::table)
            .values((nodes::node.eq(node), nodes::heartbeat_at.eq(now)))
            .on_conflict(nodes::node)
            .do_update()
            .set(nodes::heartbeat_at.eq(now))
            .execute(c))?;
        Ok(())
    }
}
