//! Chat timers (HTTP only): setting a 1:1 chat's disappearing-message
//! timer. A change yields a timer event for both users (once, for a chat
//! with oneself); a chat that has no message yet, or a peer who does not
//! exist, is refused in the answer only: no error event and no dead letter,
//! since the HTTP caller gets the refusal directly.

use protocol::messages::{Event, Rejection, TimerEvent};
use protocol::{ErrorCode, UserName};
use store::timers::TimerChange;
use store::StoreError;

use super::{Commit, Outcome};

impl Commit<'_, '_, '_> {
    /// Applies `user`'s timer of `seconds` on their chat with `peer`.
    pub(super) fn timer(
        &mut self,
        user: &UserName,
        peer: &str,
        seconds: i64,
    ) -> Result<Outcome, StoreError> {
        if !self.batch.existing.contains(peer) {
            return Ok(Outcome::Refused(Rejection {
                client_id: None,
                code: ErrorCode::NotFound,
                message: "no such user".into(),
            }));
        }
        let change = self.tx.set_timer(user.as_str(), peer, seconds, self.now)?;
        match change {
            TimerChange::Changed => {
                let now = self.now;
                let announce = |peer: &str| {
                    Event::Timer(TimerEvent {
                        peer: peer.to_owned(),
                        seconds,
                        by: user.to_string(),
                        at: now,
                    })
                };
                self.push(user.as_str(), announce(peer));
                if peer != user.as_str() {
                    self.push(peer, announce(user.as_str()));
                }
                Ok(Outcome::Applied)
            }
            // No chat, no timer: nobody puts timer events into a
            // stranger's inbox.
            TimerChange::NoChat => Ok(Outcome::Refused(Rejection {
                client_id: None,
                code: ErrorCode::NoChat,
                message: format!("no chat with {peer} yet: send a message first"),
            })),
            TimerChange::Unchanged => Ok(Outcome::Applied),
        }
    }
}
