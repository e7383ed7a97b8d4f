//! Inbox acks: a device saying it holds its inbox up to a seq. Acks are
//! cumulative, so of several from one device in a batch only the highest
//! counts ([`super::gather::Batch::inbox_acks`]), and all of them are
//! applied together, in the slot of the batch's first ack. An ack moves
//! the group messages in its range to delivered for their readers and
//! emits the delivered receipts of the 1:1 messages it covers (one per
//! sender and reader); the store prunes what every device has acked.

use protocol::messages::ReceiptStatus;
use store::StoreError;

use super::{Commit, Outcome};

impl Commit<'_, '_, '_> {
    /// Applies every inbox ack of the batch the first time it is called;
    /// later acks of the batch were folded into it.
    pub(super) fn ack(&mut self) -> Result<Outcome, StoreError> {
        let Some(acks) = self.batch.inbox_acks.take() else {
            return Ok(Outcome::Applied);
        };
        // An ack emits the delivered receipts (one per sender and reader)
        // and moves the group members' delivered positions (none when the
        // acked ranges hold no group message).
        let acked = self.tx.ack_inboxes(&acks, self.now)?;
        let moved = self
            .tx
            .advance_group_members(ReceiptStatus::Delivered, acked.group, self.now)?;
        self.touched.extend(moved);
        for delivered in acked.delivered {
            self.push_receipt(
                &delivered.sender,
                ReceiptStatus::Delivered,
                &delivered.reader,
                delivered.up_to,
            );
        }
        Ok(Outcome::Applied)
    }
}
