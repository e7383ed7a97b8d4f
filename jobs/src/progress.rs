//! Progress of a long job: counts and rate in the log every few seconds,
//! and a total at the end.

use std::time::{Duration, Instant};

/// How often a long step logs while it runs.
const EVERY: Duration = Duration::from_secs(2);

/// Counts one step of a job (a table copied, a kind of row deleted).
pub struct Progress {
    job: &'static str,
    step: String,
    started: Instant,
    last_log: Instant,
    done: u64,
}

impl Progress {
    pub fn new(job: &'static str, step: impl Into<String>) -> Progress {
        let now = Instant::now();
        Progress {
            job,
            step: step.into(),
            started: now,
            last_log: now,
            done: 0,
        }
    }

    /// Adds `n` rows and logs if the last log is old enough.
    pub fn add(&mut self, n: u64) {
        self.done += n;
        if self.last_log.elapsed() >= EVERY {
            self.last_log = Instant::now();
            tracing::info!(job = self.job, step = %self.step, rows = self.done, rate = %self.rate(), "progress");
        }
    }

    /// Rows so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Rows per second so far, for humans.
    pub fn rate(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        format!("{:.0}/s", self.done as f64 / secs)
    }

    /// Logs the total and returns it.
    pub fn finish(self) -> u64 {
        tracing::info!(job = self.job, step = %self.step, rows = self.done, rate = %self.rate(),
            seconds = self.started.elapsed().as_secs_f64(), "done");
        self.done
    }
}
