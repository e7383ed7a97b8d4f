//! Ephemeral traffic: typing indicators and devices' own presence
//! messages. Neither is stored nor goes through a batch.

use protocol::presence::{LiveEvent, PresenceRequest, PresenceState, TypingRequest};
use protocol::{topics, UserName};
use rumqttc::{AsyncClient, Publish, QoS};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::Store;

use crate::presence::Tracker;

/// Typing events one user may send per second, sustained.
pub const TYPING_PER_SECOND: f64 = 5.0;
/// Typing events one user may send in a burst.
pub const TYPING_BURST: f64 = 10.0;

/// Per-user token buckets for typing.
#[derive(Default)]
pub(crate) struct TypingLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl TypingLimiter {
    /// Takes one token for `user`; false when over the limit.
    fn allow(&self, user: &str, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 100_000 {
            // Idle buckets are full anyway; forgetting them loses nothing.
            buckets.retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(10));
        }
        let (tokens, at) = buckets
            .entry(user.to_owned())
            .or_insert((TYPING_BURST, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * TYPING_PER_SECOND).min(TYPING_BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Forwards `u/{me}/typing {to, state}` to `u/{to}/live` at QoS 0, if `to`
/// is online and `me` is under the rate limit. Dropped otherwise: typing is
/// never stored or queued.
pub(crate) fn typing(
    client: &AsyncClient,
    tracker: &Tracker,
    limiter: &TypingLimiter,
    user: &UserName,
    payload: &[u8],
) {
    let Ok(request) = serde_json::from_slice::<TypingRequest>(payload) else {
        metrics::counter!("bluetick_typing_dropped_total", "reason" => "malformed").increment(1);
        return;
    };
    let Ok(to) = UserName::parse(&request.to) else {
        metrics::counter!("bluetick_typing_dropped_total", "reason" => "unknown_peer").increment(1);
        return;
    };
    if !limiter.allow(user.as_str(), Instant::now()) {
        metrics::counter!("bluetick_typing_dropped_total", "reason" => "rate_limited").increment(1);
        return;
    }
    if !tracker.is_online(to.as_str()) {
        // Not counted: a counter that moves only when `to` is offline
        // would tell whoever reads it what `to`'s privacy may hide.
        return;
    }
    let event = LiveEvent::Typing {
        from: user.to_string(),
        state: request.state,
    };
    let payload = serde_json::to_vec(&event).unwrap_or_default();
    if client
        .try_publish(
            topics::user_topic(&to, "live"),
            QoS::AtMostOnce,
            false,
            payload,
        )
        .is_err()
    {
        metrics::counter!("bluetick_typing_dropped_total", "reason" => "busy").increment(1);
    }
}

/// Applies `u/{me}/presence {state, device}`: the device is away (offline)
/// or back (online) while connected; then the user's presence is refreshed.
pub(crate) fn device_presence(
    client: AsyncClient,
    store: Store,
    tracker: Arc<Tracker>,
    user: UserName,
    publish: Publish,
) {
    tokio::spawn(async move {
        if let Ok(request) = serde_json::from_slice::<PresenceRequest>(&publish.payload) {
            let client_id = if request.device.is_empty() {
                user.to_string()
            } else {
                format!("{user}.{}", request.device)
            };
            let away = request.state == PresenceState::Offline;
            let updated =
                tokio::task::spawn_blocking(move || store.set_away(&client_id, away)).await;
            if let Ok(Err(e)) = updated {
                tracing::warn!(error = %e, "could not record a device's presence");
            }
            tracker.refresh(user.as_str(), store::clock::now_ms()).await;
        }
        if let Err(e) = client.ack(&publish).await {
            tracing::debug!(error = %e, "could not queue a PUBACK");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_is_limited_per_user_with_a_burst() {
        let limiter = TypingLimiter::default();
        let t = Instant::now();
        let allowed = (0..20).filter(|_| limiter.allow("alice", t)).count();
        assert_eq!(allowed, TYPING_BURST as usize);
        assert!(limiter.allow("bob", t), "other users have their own bucket");
        assert!(
            limiter.allow("alice", t + Duration::from_millis(250)),
            "tokens come back over time"
        );
    }
}
