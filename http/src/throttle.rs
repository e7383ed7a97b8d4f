//! Limits on password guessing and account creation, and the bound on
//! argon2.
//!
//! A [`Throttle`] counts attempts per key (a user name, a source address)
//! in a sliding window. Checking and counting are one step under one lock
//! ([`Throttle::try_acquire`]), so a burst of concurrent attempts cannot
//! all pass a check before any of them is counted: the attempt is counted
//! first and given back ([`Throttle::release`]) if it turns out not to be a
//! failure. Keys are bounded (callers pass validated names or addresses)
//! and so is the map: at `capacity` keys with recent attempts, new keys
//! are refused until old ones age out, failing closed rather than letting
//! a flood of names push a guessed name's record out.
//!
//! A [`PasswordGate`] lets only a few argon2 runs (about 19 MiB and tens of
//! milliseconds each) happen at once, with a short queue; past the queue a
//! request is refused with 503 at once instead of adding to the memory and
//! the wait.
//!
//! **Invariant:** a key's window never holds more than `limit` attempts,
//! so the memory of a throttle is at most `capacity × limit` instants.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Most keys a throttle tracks at once.
pub const CAPACITY: usize = 50_000;

/// Counts attempts per key within a sliding window.
pub struct Throttle<K> {
    /// Attempts allowed per key within `window`.
    limit: usize,
    window: Duration,
    /// Most keys tracked; see the module doc.
    capacity: usize,
    /// Key → times of the attempts in the window, oldest first.
    attempts: Mutex<HashMap<K, VecDeque<Instant>>>,
}

impl<K: Hash + Eq + Clone> Throttle<K> {
    pub fn new(limit: usize, window: Duration) -> Throttle<K> {
        Throttle::with_capacity(limit, window, CAPACITY)
    }

    pub fn with_capacity(limit: usize, window: Duration, capacity: usize) -> Throttle<K> {
        Throttle {
            limit: limit.max(1),
            window,
            capacity: capacity.max(1),
            attempts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one attempt for `key`, or `Err(wait)` if `key` is at its
    /// limit (or the map is full), without counting it.
    pub fn try_acquire(&self, key: &K) -> Result<(), Duration> {
        let now = Instant::now();
        let mut attempts = self.lock();
        if !attempts.contains_key(key) && attempts.len() >= self.capacity {
            let window = self.window;
            attempts.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
            if attempts.len() >= self.capacity {
                return Err(self.window);
            }
        }
        let times = attempts.entry(key.clone()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        match times.front() {
            Some(oldest) if times.len() >= self.limit => {
                Err(self.window.saturating_sub(now.duration_since(*oldest)))
            }
            _ => {
                times.push_back(now);
                Ok(())
            }
        }
    }

    /// Gives back the newest attempt of `key`: it did not count (it
    /// succeeded, or failed for a reason other than a wrong guess).
    pub fn release(&self, key: &K) {
        let mut attempts = self.lock();
        if let Some(times) = attempts.get_mut(key) {
            times.pop_back();
            if times.is_empty() {
                attempts.remove(key);
            }
        }
    }

    /// Forgets every attempt of `key`.
    pub fn clear(&self, key: &K) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, VecDeque<Instant>>> {
        self.attempts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The key of a source address: the address itself for IPv4, its /64 for
/// IPv6 (one subscriber usually holds a whole /64).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

/// Everything that limits `POST /v1/users` and `POST /v1/tokens`.
pub struct AccountLimits {
    /// Failed logins per user name.
    pub login_names: Throttle<protocol::UserName>,
    /// Failed logins per source address, whatever the names.
    pub login_sources: Throttle<IpAddr>,
    /// Registrations per source address.
    pub registrations: Throttle<IpAddr>,
    /// The bound on argon2 runs.
    pub password_gate: PasswordGate,
}

/// Bounds how many password hashes run at once.
pub struct PasswordGate {
    /// One permit per hash allowed to run.
    permits: Arc<Semaphore>,
    /// Requests waiting for a permit now.
    waiting: AtomicUsize,
    /// Most requests allowed to wait.
    queue: usize,
    /// Longest a queued request waits for a permit.
    max_wait: Duration,
}

/// Why [`PasswordGate::enter`] turned a request away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateRefusal {
    /// Every slot and the whole queue are taken.
    QueueFull,
    /// Queued, but no slot came free within the wait.
    TimedOut,
}

impl PasswordGate {
    /// `concurrency` hashes at once (0: one per CPU core), `queue` waiting.
    pub fn new(concurrency: usize, queue: usize, max_wait: Duration) -> PasswordGate {
        let concurrency = match concurrency {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        PasswordGate {
            permits: Arc::new(Semaphore::new(concurrency)),
            waiting: AtomicUsize::new(0),
            queue,
            max_wait,
        }
    }

    /// A slot to run one hash in; hold it until the hash is done (move it
    /// into the blocking task, so a client that hangs up does not free the
    /// slot while its hash still runs).
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, GateRefusal> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(GateRefusal::QueueFull);
        }
        let permit =
            tokio::time::timeout(self.max_wait, self.permits.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        match permit {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it like a timeout.
            Ok(Err(_)) | Err(_) => Err(GateRefusal::TimedOut),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_refused_after_its_attempts_until_they_age_out() {
        let throttle = Throttle::new(3, Duration::from_millis(200));
        for _ in 0..3 {
            assert!(throttle.try_acquire(&"alice").is_ok());
        }
        assert!(throttle.try_acquire(&"alice").is_err());
        assert!(
            throttle.try_acquire(&"bob").is_ok(),
            "other keys are unaffected"
        );
        std::thread::sleep(Duration::from_millis(220));
        assert!(throttle.try_acquire(&"alice").is_ok());
        throttle.clear(&"alice");
        throttle.release(&"bob");
        assert!(
            throttle.lock().is_empty(),
            "released and cleared keys are gone"
        );
    }

    #[test]
    fn a_full_map_refuses_new_keys_but_not_known_ones() {
        let throttle = Throttle::with_capacity(5, Duration::from_secs(60), 2);
        assert!(throttle.try_acquire(&1).is_ok());
        assert!(throttle.try_acquire(&2).is_ok());
        assert!(throttle.try_acquire(&3).is_err());
        assert!(throttle.try_acquire(&1).is_ok());
    }

    #[test]
    fn ipv6_sources_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(source_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}
