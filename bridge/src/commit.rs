//! Committing a batch so that nothing stops messaging: not an outage, not
//! a poison request.
//!
//! # Invariant
//! A request is either committed, or dead-lettered with an `unprocessable`
//! error event to its sender, or still being retried; never silently
//! dropped while the database can be reached.
//!
//! - A commit that fails for a reason that may pass (no connection, a busy
//!   or unknown error) is retried with backoff, forever: the database is
//!   away, and nothing of the batch is acknowledged to its senders meanwhile.
//! - A commit that fails deterministically (a constraint the data breaks, a
//!   value that cannot be read, a panic) would fail the same way forever
//!   and stop all messaging. The batch is split in halves, each committed
//!   on its own (in order), until the failing requests stand alone; each of
//!   those is dead-lettered instead, and everything else commits.

use protocol::messages::Rejection;
use protocol::ErrorCode;
use std::sync::Arc;
use std::time::Duration;
use store::Store;

use crate::batch::{self, Committed, Outcome};
use crate::groups::GroupRules;
use crate::request::Request;

/// Why one attempt failed for good.
struct Deterministic(String);

/// Commits `requests`, isolating poison requests; see the module docs.
pub(crate) async fn commit_until_done(
    store: &Store,
    requests: Arc<Vec<Request>>,
    rules: GroupRules,
) -> Committed {
    match commit_retrying(store, requests.clone(), rules).await {
        Ok(committed) => committed,
        Err(Deterministic(reason)) => {
            tracing::warn!(batch = requests.len(), %reason, "a batch fails deterministically; splitting it to find the culprit");
            isolate(store, &requests, rules).await
        }
    }
}

/// Commits `requests` in ranges, splitting each range that fails
/// deterministically, in request order; single failing requests are
/// dead-lettered.
async fn isolate(store: &Store, requests: &[Request], rules: GroupRules) -> Committed {
    let mut out = Committed::default();
    // A stack of ranges, the next to commit on top.
    let mut ranges = vec![0..requests.len()];
    while let Some(range) = ranges.pop() {
        let part = Arc::new(requests[range.clone()].to_vec());
        match commit_retrying(store, part, rules).await {
            Ok(committed) => {
                out.events.extend(committed.events);
                out.outcomes.extend(committed.outcomes);
            }
            Err(_) if range.len() > 1 => {
                let middle = range.start + range.len() / 2;
                ranges.push(middle..range.end);
                ranges.push(range.start..middle);
            }
            Err(Deterministic(reason)) => {
                let refused = dead_letter(store, &requests[range.start], reason, rules).await;
                out.events.extend(refused.events);
                out.outcomes.extend(refused.outcomes);
            }
        }
    }
    out
}

/// Refuses a request the database will not take: a dead letter for
/// operators and an `unprocessable` error event for its sender.
async fn dead_letter(
    store: &Store,
    culprit: &Request,
    reason: String,
    rules: GroupRules,
) -> Committed {
    metrics::counter!("bluetick_bridge_poison_requests_total").increment(1);
    let (user, leaf, payload) = culprit.origin();
    tracing::error!(user = %user, leaf, %reason, "a request fails every commit; dead-lettered");
    let rejection = Rejection {
        client_id: culprit.client_id().map(str::to_owned),
        code: ErrorCode::Unprocessable,
        message: "the server could not store this request; it is kept for operators".to_owned(),
    };
    let refusal = Request::Refused {
        user: user.clone(),
        leaf: leaf.to_owned(),
        topic: protocol::topics::user_topic(user, leaf),
        payload,
        rejection: rejection.clone(),
    };
    match commit_retrying(store, Arc::new(vec![refusal]), rules).await {
        Ok(committed) => committed,
        Err(Deterministic(reason)) => {
            // Even the dead letter cannot be written: drop the request
            // rather than stop everyone's messages, and say so loudly.
            tracing::error!(%reason, "could not dead-letter a poison request either; dropped");
            Committed {
                events: Vec::new(),
                outcomes: vec![Outcome::Refused(rejection)],
            }
        }
    }
}

/// One batch, retried with backoff while the failure may pass.
async fn commit_retrying(
    store: &Store,
    requests: Arc<Vec<Request>>,
    rules: GroupRules,
) -> Result<Committed, Deterministic> {
    let mut backoff = Duration::from_millis(50);
    let size = requests.len();
    loop {
        let (store, batch) = (store.clone(), requests.clone());
        let started = std::time::Instant::now();
        match tokio::task::spawn_blocking(move || batch::commit_under(&store, &batch, rules)).await {
            Ok(Ok(committed)) => {
                metrics::histogram!("bluetick_bridge_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("bluetick_bridge_batch_size").record(size as f64);
                return Ok(committed);
            }
            Ok(Err(e)) if e.is_deterministic() => {
                metrics::counter!("bluetick_bridge_commit_failures_total").increment(1);
                return Err(Deterministic(e.to_string()));
            }
            Ok(Err(e)) => {
                metrics::counter!("bluetick_bridge_commit_failures_total").increment(1);
                tracing::error!(error = %e, batch = size, retry_in = ?backoff, "batch commit failed; retrying");
            }
            // A panic in the commit would happen again with the same input.
            Err(e) if e.is_panic() => return Err(Deterministic(format!("commit panicked: {e}"))),
            Err(e) => tracing::error!(error = %e, "batch commit task failed; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
