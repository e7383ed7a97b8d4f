//! Refusals: a request the batch will not apply (refused at decode, or by
//! its applier) gives its sender an `error` event with the code and the
//! client id it can match, keeps the payload as a dead letter for
//! operators (`bluetick dlq`), and counts the refusal by code. Nothing
//! else of the request is written.

use protocol::groups::GroupId;
use protocol::messages::{ErrorEvent, Event, Rejection};
use protocol::{ErrorCode, UserName};
use store::StoreError;

use super::{Commit, Outcome};

impl Commit<'_, '_, '_> {
    /// An error event for `user` and a dead letter of `payload`, which
    /// arrived on `topic` (leaf `leaf`).
    pub(super) fn refuse(
        &mut self,
        user: &str,
        leaf: &str,
        topic: &str,
        payload: &[u8],
        rejection: Rejection,
    ) -> Result<Outcome, StoreError> {
        self.tx.dead_letter(
            user,
            topic,
            payload,
            rejection.code.as_str(),
            &rejection.message,
        )?;
        let error = Event::Error(ErrorEvent {
            client_id: rejection.client_id.clone(),
            on: leaf.to_owned(),
            code: rejection.code,
            message: rejection.message.clone(),
        });
        self.push(user, error);
        metrics::counter!("bluetick_requests_refused_total", "code" => rejection.code.as_str())
            .increment(1);
        Ok(Outcome::Refused(rejection))
    }

    /// Refuses what `user` published on their own `leaf` topic.
    pub(super) fn refuse_request(
        &mut self,
        user: &UserName,
        leaf: &str,
        payload: &[u8],
        rejection: Rejection,
    ) -> Result<Outcome, StoreError> {
        let topic = protocol::topics::user_topic(user, leaf);
        self.refuse(user.as_str(), leaf, &topic, payload, rejection)
    }

    /// Refuses a request that names a user who does not exist.
    pub(super) fn refuse_unknown_user(
        &mut self,
        user: &UserName,
        leaf: &str,
        client_id: Option<String>,
        name: &str,
        payload: &[u8],
    ) -> Result<Outcome, StoreError> {
        let rejection = Rejection {
            client_id,
            code: ErrorCode::UnknownRecipient,
            message: format!("no user {name:?}"),
        };
        self.refuse_request(user, leaf, payload, rejection)
    }
}

/// The answer to a send or read in a group the user is not in (or that
/// does not exist: the same answer, so ids cannot be probed).
pub(super) fn not_a_member(client_id: Option<String>, group: GroupId) -> Rejection {
    Rejection {
        client_id,
        code: ErrorCode::NotAMember,
        message: format!("you are not in group {group}"),
    }
}
