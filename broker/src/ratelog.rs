//! Log lines that a flood cannot multiply.
//!
//! Whatever a client can trigger at will (a refused topic, a socket closed
//! before login) is logged through a [`RateLimitedLog`]: at most one line
//! per [`LOG_EVERY`], saying how many were held back since the previous
//! one, and with client-chosen text cut to [`SHOWN_CHARS`]. Metrics count
//! every occurrence; the log only has to say that it is happening.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often at most one [`RateLimitedLog`] writes a line.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Most characters of client-chosen text (a topic, a filter) in a log line.
pub const SHOWN_CHARS: usize = 80;

/// A log line written at most once per [`LOG_EVERY`], saying how many were
/// held back since the last one.
#[derive(Debug, Default)]
pub struct RateLimitedLog {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl RateLimitedLog {
    /// Calls `write` with the number of lines held back, unless a line was
    /// written less than [`LOG_EVERY`] ago.
    pub fn note(&self, write: impl FnOnce(u64)) {
        let mut last = lock(&self.last);
        if last.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(Instant::now());
        write(self.suppressed.swap(0, Ordering::Relaxed));
    }
}

impl RateLimitedLog {
    /// Like [`RateLimitedLog::note`], for lines that name a client-chosen
    /// string: `write` gets it cut to [`SHOWN_CHARS`] (with `…` when cut).
    pub fn note_text(&self, text: &str, write: impl FnOnce(u64, &str)) {
        self.note(|suppressed| write(suppressed, &shown(text)));
    }
}

/// `text` cut to [`SHOWN_CHARS`] characters, marked with `…` when cut.
pub fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Locks the log's state; a poisoned lock still holds a valid instant.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_and_short_text_kept() {
        assert_eq!(shown("u/alice/send"), "u/alice/send");
        let long = "x".repeat(10_000);
        assert_eq!(shown(&long).chars().count(), SHOWN_CHARS + 1);
    }

    #[test]
    fn one_line_per_interval_counting_the_rest() {
        let log = RateLimitedLog::default();
        let mut lines = Vec::new();
        for _ in 0..5 {
            log.note(|held_back| lines.push(held_back));
        }
        assert_eq!(lines, [0], "the first line only; four held back");
    }
}
