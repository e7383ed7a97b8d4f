//! The archival job: moves messages older than `jobs.archive_after_days`
//! (7 by default) from `messages` to `messages_archive`.
//!
//! Why a table and not compressed objects in the store: history, stars and
//! search page through archived messages with the same indexed queries as
//! hot ones (through the `message_history` view), a late read receipt can
//! still mark an archived message read, and expiry deletes from it row by
//! row. Objects would need their own index and a rewrite for each of
//! those. What archival buys is a small hot table: the send path's indexes
//! and the inbox join stay the size of the last week.
//!
//! Each batch moves its rows in one short transaction, so a crash leaves
//! every message in one table or the other, and a rerun carries on from
//! wherever the last run stopped. A message some device still has to
//! fetch (an inbox event points at it) stays hot until it is fetched.

use store::clock;

use crate::progress::Progress;
use crate::{Context, Counts, Job, JobError};

pub const JOB: Job = Job {
    name: "archival",
    default_schedule: "0 30 3 * * *",
    summary:
        "moves messages older than jobs.archive_after_days (7) to messages_archive, in batches",
    run,
};

fn run(context: &Context) -> Result<Counts, JobError> {
    let cutoff = clock::now_ms() - context.settings.archive_after.as_millis() as i64;
    let batch = context.settings.batch_size.max(1);
    let mut progress = Progress::new("archival", "messages");
    let (mut after, mut waiting) = (0, 0u64);
    loop {
        let moved = context.store.archive_batch(cutoff, after, batch)?;
        if moved.scanned == 0 {
            break;
        }
        progress.add(moved.moved as u64);
        waiting += (moved.scanned - moved.moved) as u64;
        after = moved.through;
    }
    let mut counts = Counts::new();
    counts.insert("messages".into(), progress.finish());
    counts.insert("still_waiting_for_a_device".into(), waiting);
    Ok(counts)
}
