//! The expiry job: deletes disappearing messages whose `expires_at` has
//! passed, from every place they live (the hot and archive tables, stars,
//! the search index, their media rows and objects), and turns their inbox
//! events into `expired` tombstones. Runs every minute, so a message is gone within a minute of
//! its time.
//!
//! Each batch is one transaction; a rerun finds only what is left.

use store::clock;

use crate::progress::Progress;
use crate::{Context, Counts, Job, JobError};

pub const JOB: Job = Job {
    name: "expiry",
    default_schedule: "0 * * * * *",
    summary: "deletes expired disappearing messages: hot and archived rows, stars, search terms, inbox events (as tombstones), their media",
    run,
};

fn run(context: &Context) -> Result<Counts, JobError> {
    let now = clock::now_ms();
    let batch = context.settings.batch_size.max(1);
    let mut progress = Progress::new("expiry", "messages");
    let (mut media, mut objects) = (0, 0);
    loop {
        let expired = context.store.expire_batch(now, batch)?;
        progress.add(expired.messages.len() as u64);
        media += expired.media.len() as u64;
        objects += context.delete_media_objects(&expired.media);
        if expired.messages.len() < batch {
            break;
        }
    }
    let mut counts = Counts::new();
    counts.insert("messages".into(), progress.finish());
    counts.insert("media".into(), media);
    counts.insert("objects".into(), objects);
    Ok(counts)
}
