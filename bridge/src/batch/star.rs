//! Stars: a user starring or unstarring a message they can see. A change
//! yields a star event for the user's devices; starring what is already
//! starred yields nothing; a message the user cannot see is refused
//! (`not_found`, the same answer as one that does not exist).

use protocol::messages::{Event, Rejection, StarEvent, StarRequest};
use protocol::{ErrorCode, UserName};
use store::stars::StarChange;
use store::StoreError;

use super::{Commit, Outcome};

impl Commit<'_, '_, '_> {
    /// Applies `user`'s `star`.
    pub(super) fn star(&mut self, user: &UserName, star: &StarRequest) -> Result<Outcome, StoreError> {
        match self.tx.set_star(user.as_str(), star.id, star.starred, self.now)? {
            StarChange::Changed => {
                let event = Event::Star(StarEvent {
                    message_id: star.id,
                    starred: star.starred,
                    at: self.now,
                });
                self.push(user.as_str(), event);
                Ok(Outcome::Applied)
            }
            StarChange::Unchanged => Ok(Outcome::Applied),
            StarChange::NotFound => {
                let payload = serde_json::to_vec(star).unwrap_or_default();
                let rejection = Rejection {
                    client_id: None,
                    code: ErrorCode::NotFound,
                    message: format!("no message {}", star.id),
                };
                self.refuse_request(user, "star", &payload, rejection)
            }
        }
    }
}
