//! A job's lease, held for as long as a run lasts.
//!
//! [`Lease::take`] either gets the database lease on a job or says who
//! has it. While held, a background thread renews it every third of its
//! time to live, so a long backup keeps it; dropping the [`Lease`] stops the
//! renewal and gives it back. A holder that dies without dropping it (a
//! crash) loses it when it expires.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;
use store::Store;

use crate::JobError;

/// The held lease on one job; released when dropped.
pub struct Lease {
    store: Store,
    job: String,
    holder: String,
    /// Dropping it tells the renewer to stop.
    stop: Option<mpsc::Sender<()>>,
    renewer: Option<JoinHandle<()>>,
}

impl Lease {
    /// Takes the lease on `job` for `holder`, or returns `Err(current
    /// holder)` if someone else has it.
    pub fn take(
        store: &Store,
        job: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Result<Lease, String>, JobError> {
        let ttl_ms = ttl.as_millis() as i64;
        if !store.try_lease(job, holder, ttl_ms)? {
            let current = store
                .lease_holder(job)?
                .map(|(holder, _)| holder)
                .unwrap_or_else(|| "another holder".to_owned());
            return Ok(Err(current));
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let renewer = {
            let (store, job, holder) = (store.clone(), job.to_owned(), holder.to_owned());
            std::thread::Builder::new()
                .name(format!("lease-{job}"))
                .spawn(move || {
                    // The channel only ever disconnects (nothing is sent), so
                    // a timeout means "renew now" and anything else "stop".
                    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(ttl / 3) {
                        match store.try_lease(&job, &holder, ttl_ms) {
                            Ok(true) => {}
                            Ok(false) => {
                                tracing::error!(
                                    job,
                                    holder,
                                    "lost the job lease to another holder"
                                );
                                return;
                            }
                            Err(e) => {
                                tracing::warn!(job, error = %e, "could not renew the job lease")
                            }
                        }
                    }
                })
                .map_err(JobError::io("starting the lease renewer"))?
        };
        Ok(Ok(Lease {
            store: store.clone(),
            job: job.to_owned(),
            holder: holder.to_owned(),
            stop: Some(stop),
            renewer: Some(renewer),
        }))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        if let Err(e) = self.store.release_lease(&self.job, &self.holder) {
            tracing::warn!(job = %self.job, error = %e, "could not release the job lease; it expires by itself");
        }
    }
}
