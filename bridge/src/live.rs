//! Ephemeral traffic: typing indicators and devices' own presence
//! messages. Neither is stored nor goes through a batch, and neither is
//! acknowledged from here: the bridge subscribes to both at QoS 0, and any
//! QoS 1 copy is acknowledged by the worker in delivery order (the broker
//! drops a client whose PUBACKs come out of order).

use protocol::presence::{LiveEvent, PresenceRequest, PresenceState, TypingRequest};
use protocol::{topics, ClientId, UserName};
use crate::link::Outbox;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::Store;
use tokio::sync::Notify;

use crate::presence::Tracker;
use crate::quota::Buckets;

/// Typing events one user may send per second, sustained.
pub const TYPING_PER_SECOND: f64 = 5.0;
/// Typing events one user may send in a burst.
pub const TYPING_BURST: f64 = 10.0;

/// Most group typing events whose members are being looked up at once;
/// more are dropped (typing is best effort), so a flood of them never
/// queues database reads.
pub(crate) const GROUP_TYPING_LOOKUPS: usize = 16;

/// Where typing goes: one user's `live` topic, and the cluster tap.
#[derive(Clone)]
pub(crate) struct TypingOut {
    pub outbox: Outbox,
    pub tracker: Arc<Tracker>,
    /// Cluster mode: typing for users on other nodes.
    pub tap: Option<tokio::sync::mpsc::Sender<(String, Vec<u8>)>>,
    /// Group typing reads the group's members from here, off the driver.
    pub store: Store,
    /// Permits for group member lookups ([`GROUP_TYPING_LOOKUPS`]).
    pub lookups: Arc<tokio::sync::Semaphore>,
}

/// Forwards `u/{me}/typing {to, state}` to `u/{to}/live` at QoS 0, if `to`
/// is online and `me` is under the rate limit; `{group, state}` goes to
/// every other member of the group who is online, if `me` is a member.
/// Dropped otherwise: typing is never stored or queued. In cluster mode it
/// is also offered to the tap, for devices on other nodes (whose nodes
/// alone receive it).
pub(crate) fn typing(out: &TypingOut, limiter: &Buckets, user: &UserName, payload: &[u8]) {
    let Ok(request) = serde_json::from_slice::<TypingRequest>(payload) else {
        metrics::counter!("bluetick_typing_dropped_total", "reason" => "malformed").increment(1);
        return;
    };
    let to = match (request.to.as_deref().map(UserName::parse), request.group) {
        (Some(Ok(to)), None) => Ok(to),
        (None, Some(group)) => Err(group),
        _ => {
            metrics::counter!("bluetick_typing_dropped_total", "reason" => "unknown_peer").increment(1);
            return;
        }
    };
    if !limiter.allow(user.as_str(), Instant::now()) {
        metrics::counter!("bluetick_typing_dropped_total", "reason" => "rate_limited").increment(1);
        return;
    }
    let event = LiveEvent::Typing {
        from: user.to_string(),
        group: to.as_ref().err().copied(),
        state: request.state,
    };
    let payload = serde_json::to_vec(&event).unwrap_or_default();
    match to {
        Ok(to) => out.deliver(to.as_str(), &payload),
        Err(group) => {
            let Ok(permit) = out.lookups.clone().try_acquire_owned() else {
                metrics::counter!("bluetick_typing_dropped_total", "reason" => "busy").increment(1);
                return;
            };
            let (out, user) = (out.clone(), user.to_string());
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let members = match out.store.members_of(&[group]) {
                    Ok(mut members) => members.remove(&group).unwrap_or_default(),
                    Err(error) => {
                        tracing::debug!(%error, "group typing dropped: members unreadable");
                        return;
                    }
                };
                if !members.iter().any(|m| m.user == user) {
                    metrics::counter!("bluetick_typing_dropped_total", "reason" => "not_a_member")
                        .increment(1);
                    return;
                }
                for member in members.iter().filter(|m| m.user != user) {
                    out.deliver(&member.user, &payload);
                }
            });
        }
    }
}

impl TypingOut {
    /// Publishes a typing event to `to`'s `live` topic if `to` is online
    /// here, and offers it to the cluster tap.
    fn deliver(&self, to: &str, payload: &[u8]) {
        if let Some(tap) = &self.tap {
            // Dropped when full, like any typing event: it is ephemeral.
            let _ = tap.try_send((to.to_owned(), payload.to_vec()));
        }
        if !self.tracker.is_online(to) {
            // Not counted: a counter that moves only when `to` is offline
            // would tell whoever reads it what `to`'s privacy may hide.
            return;
        }
        let topic = format!("{}{to}/live", topics::USER_PREFIX);
        if !self.outbox.try_publish_fleeting(topic, payload.to_vec()) {
            metrics::counter!("bluetick_typing_dropped_total", "reason" => "busy").increment(1);
        }
    }
}

/// Most devices of one user with a presence change waiting; more names
/// (a client inventing device names) are dropped.
const DEVICES_PER_USER: usize = 16;
/// Most users with a presence change waiting.
const USERS_WAITING: usize = 100_000;

/// Devices' own presence messages, coalesced: the latest state each device
/// asked for waits here, and one task applies a user's waiting changes at
/// most once per `interval`. A burst of any size from one device therefore
/// costs a few database writes and shows its watchers a few changes, and the
/// last word always wins.
pub(crate) struct PresenceDesk {
    /// Latest `away` asked for, per user, per device.
    waiting: Mutex<HashMap<String, HashMap<String, bool>>>,
    /// Wakes the applying task when something starts waiting.
    wake: Notify,
    /// Shortest time between two applications for one user.
    interval: Duration,
}

impl PresenceDesk {
    pub(crate) fn new(interval: Duration) -> PresenceDesk {
        PresenceDesk {
            waiting: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            interval,
        }
    }

    /// Takes `u/{user}/presence {state, device}` as it arrives. Never blocks.
    pub(crate) fn offer(&self, user: &UserName, payload: &[u8]) {
        let Ok(request) = serde_json::from_slice::<PresenceRequest>(payload) else {
            metrics::counter!("bluetick_presence_dropped_total", "reason" => "malformed")
                .increment(1);
            return;
        };
        let client_id = if request.device.is_empty() {
            user.to_string()
        } else {
            format!("{user}.{}", request.device)
        };
        if ClientId::parse(&client_id).is_err() {
            metrics::counter!("bluetick_presence_dropped_total", "reason" => "malformed")
                .increment(1);
            return;
        }
        let away = request.state == PresenceState::Offline;
        let mut waiting = self.lock();
        if waiting.len() >= USERS_WAITING && !waiting.contains_key(user.as_str()) {
            metrics::counter!("bluetick_presence_dropped_total", "reason" => "busy").increment(1);
            return;
        }
        let devices = waiting.entry(user.to_string()).or_default();
        let full = devices.len() >= DEVICES_PER_USER;
        match devices.get_mut(&client_id) {
            Some(wanted) => {
                // An earlier message from this device had not been applied
                // yet: it is superseded.
                *wanted = away;
                metrics::counter!("bluetick_presence_coalesced_total").increment(1);
            }
            None if full => {
                metrics::counter!("bluetick_presence_dropped_total", "reason" => "too_many_devices")
                    .increment(1);
            }
            None => {
                devices.insert(client_id, away);
                drop(waiting);
                self.wake.notify_one();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, bool>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies waiting changes forever: each user's at most once per
    /// interval, then refreshes their presence for watchers.
    pub(crate) async fn apply(self: Arc<Self>, store: Store, tracker: Arc<Tracker>) {
        let mut applied_at: HashMap<String, Instant> = HashMap::new();
        loop {
            let now = Instant::now();
            applied_at.retain(|_, at| now.duration_since(*at) < self.interval);
            let (due, next) = {
                let mut waiting = self.lock();
                let mut due = Vec::new();
                let mut next: Option<Instant> = None;
                waiting.retain(|user, devices| match applied_at.get(user) {
                    Some(at) => {
                        let ready = *at + self.interval;
                        next = Some(next.map_or(ready, |n| n.min(ready)));
                        true
                    }
                    None => {
                        due.push((user.clone(), std::mem::take(devices)));
                        false
                    }
                });
                (due, next)
            };
            for (user, devices) in due {
                applied_at.insert(user.clone(), now);
                let writer = store.clone();
                let written = tokio::task::spawn_blocking(move || {
                    for (client_id, away) in devices {
                        writer.set_away(&client_id, away)?;
                    }
                    Ok::<_, store::StoreError>(())
                })
                .await;
                if let Ok(Err(e)) = written {
                    tracing::warn!(error = %e, "could not record a device's presence");
                }
                tracker.refresh(&user, store::clock::now_ms()).await;
            }
            match next {
                Some(at) => {
                    let _ = tokio::time::timeout_at(at.into(), self.wake.notified()).await;
                }
                None => self.wake.notified().await,
            }
        }
    }
}
