//! The cleanup job: deletes what nobody needs any more. Each kind goes in
//! small batches (no long locks while messages flow), and running it twice
//! deletes nothing the second time.
//!
//! - inbox events every acking device has stored (normally pruned at the
//!   ack itself; this catches any an ack did not get to);
//! - tokens past their expiry;
//! - dead letters older than `jobs.dead_letter_retention_days`;
//! - `sessions` rows of nodes that stopped heartbeating more than
//!   `jobs.stale_node_secs` ago (they died without clearing their rows;
//!   live nodes' rows are never touched). Presence reads the rows, so such
//!   users stop appearing online; their last seen is left alone;
//! - orphaned media: a hook for the media work (`HOOK(media)` below).
//!
//! It does not drop devices that acked once and never came back, though
//! they hold back pruning of their user's inbox: deleting one would lose
//! events that device has not stored. docs/operations.md says how to find
//! them.

use store::clock;

use crate::progress::Progress;
use crate::{Context, Counts, Job, JobError};

pub const JOB: Job = Job {
    name: "cleanup",
    default_schedule: "0 0 * * * *",
    summary: "deletes acked inbox events, expired tokens, old dead letters, sessions rows of dead nodes (orphaned media: hook)",
    run,
};

fn run(context: &Context) -> Result<Counts, JobError> {
    let store = &context.store;
    let settings = &context.settings;
    let batch = settings.batch_size.max(1);
    let now = clock::now_ms();
    let mut counts = Counts::new();

    let mut progress = Progress::new("cleanup", "inbox_events");
    let mut after = String::new();
    loop {
        let floors = store.prune_floors(&after, batch)?;
        for (user, floor) in &floors {
            if *floor > 0 {
                progress.add(store.prune_inbox(user)? as u64);
            }
        }
        match floors.last() {
            Some((user, _)) if floors.len() == batch => after = user.clone(),
            _ => break,
        }
    }
    counts.insert("inbox_events".into(), progress.finish());

    counts.insert(
        "tokens".into(),
        in_batches("tokens", || store.delete_expired_tokens(now, batch), batch)?,
    );
    let cutoff = now - settings.dead_letter_retention.as_millis() as i64;
    counts.insert(
        "dead_letters".into(),
        in_batches(
            "dead_letters",
            || store.delete_dead_letters_before(cutoff, batch),
            batch,
        )?,
    );
    let stale = now - settings.stale_node_after.as_millis() as i64;
    counts.insert(
        "sessions".into(),
        in_batches(
            "sessions",
            || store.delete_stale_sessions(stale, batch),
            batch,
        )?,
    );
    counts.insert("media".into(), orphaned_media(context)?);
    Ok(counts)
}

/// Calls `delete` (one batch) until a batch comes back short.
fn in_batches(
    step: &'static str,
    mut delete: impl FnMut() -> Result<usize, store::StoreError>,
    batch: usize,
) -> Result<u64, JobError> {
    let mut progress = Progress::new("cleanup", step);
    loop {
        let deleted = delete()?;
        progress.add(deleted as u64);
        if deleted < batch {
            return Ok(progress.finish());
        }
    }
}

/// HOOK(media): deletes stored media objects no message refers to any
/// more, and returns how many. The media store is being built in parallel;
/// until it lands there is no media, so there is nothing to delete.
fn orphaned_media(_context: &Context) -> Result<u64, JobError> {
    Ok(0)
}
