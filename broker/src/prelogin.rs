//! Connections that have not logged in yet, and what bounds them.
//!
//! Until its CONNACK 0 a connection is anonymous: anyone can open one, and
//! each holds memory (socket buffers, a partial MQTT packet, a partial
//! WebSocket message). Without a bound, a handful of such sockets could grow
//! the server by gigabytes and stop messaging for everyone (issue 12). So:
//!
//! - every listener (TCP, WebSocket, TLS) has a [`LoginGate`] that admits at
//!   most `max_pending` connections that have not logged in, and at most
//!   `max_pending_per_address` from one source address. A socket over
//!   either cap is closed at once, before any handshake or read;
//! - the gate hands each admitted socket a [`Pending`] permit, given back
//!   when the connection logs in (its CONNACK 0 is written) or ends;
//! - a connection must log in before a deadline. On TCP that is rumqttd's
//!   CONNECT timeout; the WebSocket and TLS relays, which see only bytes,
//!   watch for the CONNACK with a [`LoginWatch`] and close the connection
//!   when its [`LoginDeadline`] passes first.
//!
//! Every closing is counted in `bluetick_mqtt_refusals_total` and logged at
//! most once per [`crate::ratelog::LOG_EVERY`] per listener, so a flood cannot flood the log.
//!
//! # Invariant
//! A gate's `total` equals the number of its live, unreleased [`Pending`]
//! permits, and `by_address[ip]` the number of those from `ip`; an address
//! with none has no entry, so the map never outgrows `max_pending`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

use crate::metrics::{self as meter, Refusal};
use crate::ratelog::RateLimitedLog;

/// Bounds on connections that have not logged in yet, per listener.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// Most such connections on one listener.
    pub max_pending: usize,
    /// Most such connections from one source address on one listener.
    pub max_pending_per_address: usize,
    /// How long a WebSocket or TLS connection has, from accept to CONNACK
    /// 0. (Plain TCP is bounded by the CONNECT timeout.)
    pub timeout: Duration,
}

/// Which listener a gate guards, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Tcp,
    WebSocket,
    Tls,
}

impl Listener {
    pub fn label(self) -> &'static str {
        match self {
            Listener::Tcp => "tcp",
            Listener::WebSocket => "ws",
            Listener::Tls => "tls",
        }
    }
}

/// Counts of connections that have not logged in; see the module docs.
#[derive(Debug, Default)]
struct Counts {
    /// Live permits.
    total: usize,
    /// Live permits per source address; no zero entries.
    by_address: HashMap<IpAddr, usize>,
}

/// Admits connections to one listener while they have not logged in.
#[derive(Debug)]
pub struct LoginGate {
    listener: Listener,
    limits: LoginLimits,
    counts: Mutex<Counts>,
    /// Closings not yet reported in a log line, and when the last line was.
    log: RateLimitedLog,
}

impl LoginGate {
    pub fn new(listener: Listener, limits: LoginLimits) -> Arc<LoginGate> {
        Arc::new(LoginGate {
            listener,
            limits,
            counts: Mutex::new(Counts::default()),
            log: RateLimitedLog::default(),
        })
    }

    /// A permit for a socket just accepted from `peer`, or `None` (counted
    /// and logged) when the listener or that address is at its cap.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Pending> {
        let peer = source_of(peer);
        let refusal = {
            let mut counts = lock(&self.counts);
            let from_peer = counts.by_address.get(&peer).copied().unwrap_or(0);
            if counts.total >= self.limits.max_pending {
                Some(Refusal::PendingLoginsFull)
            } else if from_peer >= self.limits.max_pending_per_address {
                Some(Refusal::PendingLoginsPerAddress)
            } else {
                counts.total += 1;
                counts.by_address.insert(peer, from_peer + 1);
                None
            }
        };
        match refusal {
            None => Some(Pending {
                gate: self.clone(),
                peer,
                since: Instant::now(),
            }),
            Some(refusal) => {
                self.closed(refusal, peer);
                None
            }
        }
    }

    /// Records that a connection from `peer` was closed before logging in.
    pub(crate) fn closed(&self, refusal: Refusal, peer: IpAddr) {
        meter::refused(refusal);
        self.log.note(|suppressed| {
            tracing::warn!(
                listener = self.listener.label(),
                reason = refusal.label(),
                %peer,
                more_since_last_line = suppressed,
                "closed a connection that had not logged in"
            )
        });
    }

    /// Connections on this listener that have not logged in.
    pub fn pending(&self) -> usize {
        lock(&self.counts).total
    }

    fn release(&self, peer: IpAddr) {
        let mut counts = lock(&self.counts);
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_address.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                counts.by_address.remove(&peer);
            }
        }
    }
}

/// The "source address" the per-address cap counts: the IPv4 address, or
/// the /64 network of an IPv6 one, since one subscriber usually holds a
/// whole /64 and could otherwise pick a fresh address per socket.
fn source_of(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

/// The next socket `listener` accepts that `gate` admits, with its permit.
/// Sockets over the cap are closed at once; accept errors (usually out of
/// file descriptors) back off instead of spinning.
pub(crate) async fn next_admitted(
    listener: &tokio::net::TcpListener,
    gate: &Arc<LoginGate>,
) -> (tokio::net::TcpStream, std::net::SocketAddr, Pending) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if let Some(pending) = gate.admit(peer.ip()) {
                    return (stream, peer, pending);
                }
            }
            Err(e) => {
                tracing::warn!(listener = gate.listener.label(), error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One connection's place among those that have not logged in; given back
/// when dropped.
#[derive(Debug)]
pub struct Pending {
    gate: Arc<LoginGate>,
    peer: IpAddr,
    /// When the socket was accepted; the login deadline counts from here.
    since: Instant,
}

impl Pending {
    /// Splits the permit for a relay: the watch sees the broker's bytes and
    /// gives the permit back on CONNACK 0; the deadline fires if that does
    /// not happen in time.
    pub(crate) fn watch(self) -> (LoginWatch, LoginDeadline) {
        let (logged_in, seen) = watch::channel(false);
        let deadline = LoginDeadline {
            at: self.since + self.gate.limits.timeout,
            logged_in: seen,
            gate: self.gate.clone(),
            peer: self.peer,
        };
        let watch = LoginWatch {
            pending: Some(self),
            head: Vec::with_capacity(4),
            logged_in,
        };
        (watch, deadline)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.gate.release(self.peer);
    }
}

/// Watches the first bytes the broker sends a relayed client for its
/// CONNACK, and gives the connection's [`Pending`] permit back when it
/// says 0 (accepted).
pub(crate) struct LoginWatch {
    /// Held until the CONNACK is seen.
    pending: Option<Pending>,
    /// The first bytes from the broker, until there are four.
    head: Vec<u8>,
    logged_in: watch::Sender<bool>,
}

impl LoginWatch {
    /// Looks at bytes on their way from the broker to the client.
    pub(crate) fn observe(&mut self, bytes: &[u8]) {
        if self.pending.is_none() || self.head.len() >= 4 {
            return;
        }
        let wanted = 4 - self.head.len();
        self.head
            .extend_from_slice(&bytes[..wanted.min(bytes.len())]);
        if self.head.len() < 4 {
            return;
        }
        // A CONNACK is 0x20, a remaining length below 128 (2 in 3.1.1), the
        // session-present flags, then the return code.
        if self.head[0] == 0x20 && self.head[1] < 0x80 && self.head[3] == 0 {
            self.pending = None;
            // The deadline may be gone already (the connection is ending);
            // then nobody needs to hear it.
            let _ = self.logged_in.send(true);
        }
    }
}

/// The moment a relayed connection that has not logged in is closed.
pub(crate) struct LoginDeadline {
    at: Instant,
    logged_in: watch::Receiver<bool>,
    gate: Arc<LoginGate>,
    peer: IpAddr,
}

impl LoginDeadline {
    /// Completes when the deadline passes before CONNACK 0 (counting and
    /// logging it); never completes once the connection has logged in.
    pub(crate) async fn expired(mut self) {
        let at = tokio::time::Instant::from_std(self.at);
        let waited = tokio::time::timeout_at(at, async {
            // An error means the watch is gone: the connection is ending
            // anyway, and this deadline has nothing left to close.
            let _ = self.logged_in.wait_for(|logged_in| *logged_in).await;
        })
        .await;
        match waited {
            Ok(()) => std::future::pending::<()>().await,
            Err(_) => self.gate.closed(Refusal::LoginTimeout, self.peer),
        }
    }
}

/// Locks gate state; a panic elsewhere cannot leave the counts half-updated.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max_pending: usize, per_address: usize) -> Arc<LoginGate> {
        LoginGate::new(
            Listener::Tcp,
            LoginLimits {
                max_pending,
                max_pending_per_address: per_address,
                timeout: Duration::from_secs(5),
            },
        )
    }

    #[test]
    fn an_address_at_its_cap_is_refused_and_others_are_not() {
        let gate = gate(10, 2);
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = gate.admit(a).expect("first");
        let _second = gate.admit(a).expect("second");
        assert!(gate.admit(a).is_none());
        let _other = gate.admit(b).expect("another address");
        drop(first);
        assert!(gate.admit(a).is_some(), "a released permit frees its place");
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_cap() {
        let gate = gate(10, 1);
        let _first = gate.admit("2001:db8::1".parse().unwrap()).expect("first");
        assert!(gate.admit("2001:db8::ffff:1".parse().unwrap()).is_none());
        assert!(
            gate.admit("2001:db8:0:1::1".parse().unwrap()).is_some(),
            "another /64"
        );
    }

    #[test]
    fn the_listener_cap_holds_across_addresses_and_counts_return_to_zero() {
        let gate = gate(2, 2);
        let permits: Vec<_> = (1..=2)
            .map(|i| gate.admit(format!("10.0.0.{i}").parse().unwrap()).unwrap())
            .collect();
        assert!(gate.admit("10.0.0.9".parse().unwrap()).is_none());
        drop(permits);
        assert_eq!(gate.pending(), 0);
        assert!(lock(&gate.counts).by_address.is_empty());
    }

    #[test]
    fn a_connack_0_gives_the_permit_back_and_a_refusal_does_not() {
        let gate = gate(10, 10);
        let (mut watch, _deadline) = gate.admit("10.0.0.1".parse().unwrap()).unwrap().watch();
        watch.observe(&[0x20, 0x02]);
        assert_eq!(gate.pending(), 1, "half a CONNACK decides nothing");
        watch.observe(&[0x00, 0x00, 0x30]);
        assert_eq!(gate.pending(), 0);

        let (mut refused, _deadline) = gate.admit("10.0.0.1".parse().unwrap()).unwrap().watch();
        refused.observe(&[0x20, 0x02, 0x00, 0x05]);
        assert_eq!(gate.pending(), 1);
    }
}
