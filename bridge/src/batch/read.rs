//! Reads: a reader marking a chat read up to a message id. A 1:1 read marks
//! the peer's messages read and, when both have read receipts on, yields a
//! read receipt for the peer. A group read moves the reader's position
//! (clamped to the batch's newest message: a read cannot cover messages
//! not yet sent); the batch applies all group reads together at its end,
//! and the group's aggregate receipt follows from them. A read naming a
//! user who does not exist, or a group the reader is not in, is refused.

use protocol::groups::GroupId;
use protocol::messages::{ReadRequest, ReceiptStatus};
use protocol::UserName;
use store::group_receipts::Position;
use store::StoreError;

use super::refuse::not_a_member;
use super::{Commit, Outcome};

impl Commit<'_, '_, '_> {
    /// Applies `reader`'s read of their 1:1 chat with `peer`.
    pub(super) fn read(
        &mut self,
        reader: &UserName,
        peer: &UserName,
        read: &ReadRequest,
    ) -> Result<Outcome, StoreError> {
        if !self.batch.existing.contains(peer.as_str()) {
            let payload = serde_json::to_vec(read).unwrap_or_default();
            return self.refuse_unknown_user(reader, "read", None, peer.as_str(), &payload);
        }
        let receipts_on = &self.batch.receipts_on;
        let both_share =
            receipts_on.contains(reader.as_str()) && receipts_on.contains(peer.as_str());
        let newest =
            self.tx
                .mark_read(reader.as_str(), peer.as_str(), read.up_to, self.now, both_share)?;
        if let (Some(up_to), true) = (newest, both_share) {
            self.push_receipt(peer.as_str(), ReceiptStatus::Read, reader.as_str(), up_to);
        }
        Ok(Outcome::Applied)
    }

    /// Queues `reader`'s read of `group`.
    pub(super) fn group_read(
        &mut self,
        reader: &UserName,
        group: GroupId,
        read: &ReadRequest,
    ) -> Result<Outcome, StoreError> {
        if !self.batch.rosters.is_member(group, reader) {
            let payload = serde_json::to_vec(read).unwrap_or_default();
            return self.refuse_request(reader, "read", &payload, not_a_member(None, group));
        }
        let newest = self.newest()?;
        // Clamped: a read cannot cover messages not yet sent.
        self.group_reads.push(Position {
            group,
            user: reader.to_string(),
            up_to: read.up_to.min(newest),
        });
        Ok(Outcome::Applied)
    }
}
