//! Group changes (`u/{me}/group`, or HTTP): each is applied by
//! [`crate::groups`], which owns the rules, at the batch's newest message
//! (group changes come last in [`super::priority_order`], so a change's
//! window agrees with who got the batch's group messages). Its `group`
//! events go to whom it names; a refusal is an error event and a dead
//! letter like any other.

use protocol::groups::GroupRequest;
use protocol::UserName;
use store::StoreError;

use super::{Commit, Outcome};
use crate::groups::{self, Applied};
use crate::request::Request;

impl Commit<'_, '_, '_> {
    /// Applies `user`'s group change `op` (which `request` carries).
    pub(super) fn group(
        &mut self,
        request: &Request,
        user: &UserName,
        op: &GroupRequest,
    ) -> Result<Outcome, StoreError> {
        let newest = self.newest()?;
        // A member leaving can complete an aggregate receipt.
        self.touched.extend(op.group());
        match groups::apply(self.tx, user, op, self.rules, self.now, newest)? {
            Applied::Done { events, group } => {
                for (to, event) in events {
                    self.push(&to, event);
                }
                Ok(Outcome::Group(Box::new(group)))
            }
            Applied::Refused(rejection) => {
                let (_, leaf, payload) = request.origin();
                self.refuse_request(user, leaf, &payload, rejection)
            }
        }
    }
}
