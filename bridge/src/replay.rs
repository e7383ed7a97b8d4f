//! Dead-letter replay: a refused payload, kept by the store, run through
//! the pipeline again as if its sender had just published it (`bluetick
//! dlq replay ID`).
//!
//! The replay commits the request the way a batch does (one request, one
//! transaction), then marks the letter replayed. It needs no running
//! server: events it produces reach devices at their next sync.

use store::{Store, StoreError};

use crate::batch::{self, Outcome};
use crate::groups::GroupRules;
use crate::request;

/// Why a dead letter could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no dead letter {0}")]
    NotFound(i64),
    /// The dead-letter quota kept only a prefix of the payload.
    #[error("dead letter {id} kept {kept} of its {size} bytes (dead-letter quota); it cannot be replayed")]
    Truncated { id: i64, kept: usize, size: u64 },
    #[error("dead letter {id} is on {topic}, which the bridge does not serve")]
    NotServed { id: i64, topic: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Replays dead letter `id` (bodies up to `max_body` bytes, group changes
/// held to the server's `rules`) and returns what became of it: stored,
/// refused again, or applied.
pub fn replay(
    store: &Store,
    id: i64,
    max_body: usize,
    rules: GroupRules,
) -> Result<Option<Outcome>, ReplayError> {
    let letter = store.dead_letter(id)?.ok_or(ReplayError::NotFound(id))?;
    if letter.truncated() {
        return Err(ReplayError::Truncated {
            id,
            kept: letter.payload.len(),
            size: letter.size,
        });
    }
    let request = request::decode(&letter.topic, &letter.payload, max_body).ok_or_else(|| {
        ReplayError::NotServed {
            id,
            topic: letter.topic.clone(),
        }
    })?;
    let committed = batch::commit_under(store, &[request], rules)?;
    store.transaction(|tx| tx.mark_replayed(id))?;
    Ok(committed.outcomes.into_iter().next())
}
