//! Token buckets keyed by name: the bridge's per-user rate limits (sends,
//! typing).
//!
//! Each key has a bucket of `burst` tokens that refills at `per_second`; a
//! request takes one token or is over the limit. A bucket that has been idle
//! long enough to refill completely is the same as no bucket, so idle
//! buckets are forgotten when the map grows: memory is bounded by the keys
//! active in the last `burst / per_second` seconds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept before idle ones are swept.
const SWEEP_ABOVE: usize = 100_000;

/// Per-key token buckets.
pub struct Buckets {
    /// Tokens added per second, per key.
    per_second: f64,
    /// Tokens a full bucket holds: the largest burst.
    burst: f64,
    /// Tokens left and when they were counted, per key.
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Buckets {
    pub fn new(per_second: f64, burst: f64) -> Buckets {
        Buckets {
            per_second: per_second.max(f64::MIN_POSITIVE),
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; false when over the limit.
    pub fn allow(&self, key: &str, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > SWEEP_ABOVE {
            // A bucket idle for this long is full again; forgetting it loses nothing.
            let refill = Duration::from_secs_f64((self.burst / self.per_second).min(3_600.0));
            buckets.retain(|_, (_, at)| now.duration_since(*at) < refill);
        }
        let (tokens, at) = buckets
            .entry(key.to_owned())
            .or_insert((self.burst, now));
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *tokens = (*tokens + elapsed * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_the_rate() {
        let buckets = Buckets::new(5.0, 10.0);
        let t = Instant::now();
        let allowed = (0..20).filter(|_| buckets.allow("alice", t)).count();
        assert_eq!(allowed, 10);
        assert!(buckets.allow("bob", t), "other keys have their own bucket");
        assert!(
            buckets.allow("alice", t + Duration::from_millis(250)),
            "tokens come back over time"
        );
        assert!(!buckets.allow("alice", t + Duration::from_millis(260)));
    }
}
