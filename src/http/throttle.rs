//! Limits password guessing on `POST /v1/tokens`.
//!
//! Each user name may fail at most `max_failures` logins within `window`;
//! after that every attempt for that name is refused with 429 until the
//! oldest failure leaves the window, without running argon2 at all (which
//! also keeps a login flood from eating the CPU). A success clears the
//! name's failures.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most names tracked; older entries are dropped past this.
const CAPACITY: usize = 100_000;

pub struct LoginThrottle {
    max_failures: usize,
    window: Duration,
    /// User name → times of recent failed logins, oldest first.
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginThrottle {
    pub fn new(max_failures: usize, window: Duration) -> LoginThrottle {
        LoginThrottle {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while `name` is over its limit.
    pub fn check(&self, name: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut failures = self.lock();
        let Some(times) = failures.get_mut(name) else {
            return Ok(());
        };
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        match times.front() {
            Some(oldest) if times.len() >= self.max_failures => {
                Err(self.window - now.duration_since(*oldest))
            }
            _ => Ok(()),
        }
    }

    pub fn failed(&self, name: &str) {
        let now = Instant::now();
        let mut failures = self.lock();
        if failures.len() >= CAPACITY {
            let window = self.window;
            failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        failures.entry(name.to_owned()).or_default().push_back(now);
    }

    pub fn succeeded(&self, name: &str) {
        self.lock().remove(name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Instant>>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_refused_after_its_failures_until_they_age_out() {
        let throttle = LoginThrottle::new(3, Duration::from_millis(200));
        for _ in 0..3 {
            assert!(throttle.check("alice").is_ok());
            throttle.failed("alice");
        }
        assert!(throttle.check("alice").is_err());
        assert!(throttle.check("bob").is_ok(), "other names are unaffected");
        std::thread::sleep(Duration::from_millis(220));
        assert!(throttle.check("alice").is_ok());
        throttle.failed("alice");
        throttle.succeeded("alice");
        assert!(throttle.check("alice").is_ok());
    }
}
