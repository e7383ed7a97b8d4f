//! The cleanup job: deletes what nobody needs any more. Each kind goes in
//! small batches (no long locks while messages flow), and running it twice
//! deletes nothing the second time.
//!
//! - inbox events every acking device has stored (normally pruned at the
//!   ack itself; this catches any an ack did not get to);
//! - tokens past their expiry, and logout records older than a day;
//! - dead letters older than `jobs.dead_letter_retention_days`;
//! - `sessions` rows of nodes that stopped heartbeating more than
//!   `jobs.stale_node_secs` ago (they died without clearing their rows;
//!   live nodes' rows are never touched). Presence reads the rows, so such
//!   users stop appearing online; their last seen is left alone;
//! - orphaned media: uploads no message has referred to for 24 hours (the
//!   row, then the object and its thumbnail).
//!
//! It does not drop devices that acked once and never came back, though
//! they hold back pruning of their user's inbox: deleting one would lose
//! events that device has not stored. docs/operations.md says how to find
//! them.

use store::clock;

use crate::progress::Progress;

/// How long an upload may wait for a message to refer to it.
pub const ORPHAN_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
use crate::{Context, Counts, Job, JobError};

pub const JOB: Job = Job {
    name: "cleanup",
    default_schedule: "0 0 * * * *",
    summary: "deletes acked inbox events, expired tokens, day-old logout records, old dead letters, sessions rows of dead nodes, media no message refers to after 24 h",
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
    let revocations_cutoff = now - store::tokens::REVOCATION_RECORDS_KEPT.as_millis() as i64;
    counts.insert(
        "token_revocations".into(),
        in_batches(
            "token_revocations",
            || store.delete_revocations_before(revocations_cutoff, batch),
            batch,
        )?,
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

/// Media uploaded more than [`ORPHAN_AFTER`] ago that no message refers
/// to: the row, then its objects. Returns how many media went.
fn orphaned_media(context: &Context) -> Result<u64, JobError> {
    let store = &context.store;
    let batch = context.settings.batch_size.max(1);
    let older_than = clock::now_ms() - ORPHAN_AFTER.as_millis() as i64;
    let mut progress = Progress::new("cleanup", "media");
    loop {
        let orphans = store.media_orphans(older_than, batch)?;
        let mut gone = Vec::new();
        for orphan in &orphans {
            // A send may have picked it up since the list was made.
            if store.delete_orphan(&orphan.id)? {
                gone.push(orphan.clone());
            }
        }
        context.delete_media_objects(&gone);
        progress.add(gone.len() as u64);
        if orphans.len() < batch {
            return Ok(progress.finish());
        }
    }
}
