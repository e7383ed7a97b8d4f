//! Wall-clock time as stored: Unix milliseconds in a 64-bit integer, the one
//! representation both backends share.
//!
//! For tests and drills, the clock of one process can be moved forward
//! with [`SKEW_VAR`] (seconds, may be negative): `BLUETICK_CLOCK_SKEW_SECS=
//! 691200 bluetick job run archival` runs archival as if eight days had
//! passed, without touching the system clock or any other process.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Environment variable that shifts this process's clock, in seconds.
pub const SKEW_VAR: &str = "BLUETICK_CLOCK_SKEW_SECS";

/// The configured skew in milliseconds, read once.
fn skew_ms() -> i64 {
    static SKEW: OnceLock<i64> = OnceLock::new();
    *SKEW.get_or_init(|| match std::env::var(SKEW_VAR) {
        Ok(value) => match value.trim().parse::<i64>() {
            Ok(secs) => {
                tracing::warn!(secs, "{SKEW_VAR} is set: this process's clock is skewed");
                secs.saturating_mul(1000)
            }
            Err(_) => {
                tracing::error!(%value, "{SKEW_VAR} is not a whole number of seconds; ignored");
                0
            }
        },
        Err(_) => 0,
    })
}

/// Milliseconds since the Unix epoch (plus the skew, if one is set).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
        .saturating_add(skew_ms())
}
