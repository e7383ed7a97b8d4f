//! What a batch reads before it writes: one pass over its requests
//! collects every name, group, sender, media id and inbox ack they
//! mention, then a few queries (one each, not one per request) answer
//! them. The appliers decide on these facts only, so every request of a
//! batch sees the world as it was when the batch began (groups before the
//! batch's changes, users and media as stored).

use protocol::groups::GroupId;
use protocol::UserName;
use std::collections::{HashMap, HashSet};
use store::inbox::InboxAck;
use store::{StoreError, Tx};

use crate::request::Request;

/// Media a sender owns: (sender, media id) → (content type, size).
pub(super) type OwnedMedia<'r> = HashMap<(&'r str, &'r str), (String, i64)>;

/// Everything a batch decides on, read once before its first write.
pub(super) struct Batch<'r> {
    /// The requests, in arrival order.
    pub requests: &'r [Request],
    /// Which users that sends, reads and timers name are registered.
    pub existing: HashSet<String>,
    /// Which readers and peers of the batch's reads have read receipts on.
    pub receipts_on: HashSet<String>,
    /// The disappearing timers of the senders' 1:1 chats, by chat key.
    pub timers: HashMap<(String, String), i64>,
    /// The media the batch's sends reference that their senders own.
    pub owned_media: OwnedMedia<'r>,
    /// The groups the batch sends or reads in, before its changes.
    pub rosters: Rosters,
    /// The batch's inbox acks, one per device (the highest: acks are
    /// cumulative), in the order of each device's first; taken by the
    /// first ack request, which applies them all.
    pub inbox_acks: Option<Vec<InboxAck<'r>>>,
}

impl<'r> Batch<'r> {
    /// Reads what `requests` need; see the module docs.
    pub fn gather(tx: &mut Tx<'_>, requests: &'r [Request]) -> Result<Batch<'r>, StoreError> {
        let mut mentioned: Vec<&str> = Vec::new();
        let mut readers: Vec<&str> = Vec::new();
        let mut senders: Vec<&str> = Vec::new();
        let mut groups: Vec<GroupId> = Vec::new();
        let mut media: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut inbox_acks: Vec<InboxAck<'r>> = Vec::new();
        for request in requests {
            match request {
                Request::Send { sender, to, send } => {
                    mentioned.push(to.as_str());
                    senders.push(sender.as_str());
                    if let Some(m) = &send.media {
                        media.entry(sender.as_str()).or_default().push(m.id.as_str());
                    }
                }
                Request::GroupSend {
                    sender,
                    group,
                    send,
                } => {
                    groups.push(*group);
                    if let Some(m) = &send.media {
                        media.entry(sender.as_str()).or_default().push(m.id.as_str());
                    }
                }
                Request::Read { reader, peer, .. } => {
                    mentioned.push(peer.as_str());
                    readers.extend([reader.as_str(), peer.as_str()]);
                }
                Request::GroupRead { group, .. } => groups.push(*group),
                Request::Timer { peer, .. } => mentioned.push(peer.as_str()),
                Request::Ack { user, ack } => {
                    let (user, device) = (user.as_str(), ack.device.as_str());
                    match inbox_acks
                        .iter_mut()
                        .find(|a| a.user == user && a.device == device)
                    {
                        Some(known) => known.up_to = known.up_to.max(ack.up_to),
                        None => inbox_acks.push(InboxAck {
                            user,
                            device,
                            up_to: ack.up_to,
                        }),
                    }
                }
                Request::Group { .. }
                | Request::Sync { .. }
                | Request::Star { .. }
                | Request::Refused { .. } => {}
            }
        }
        let existing = if mentioned.is_empty() {
            HashSet::new()
        } else {
            tx.existing_users(&mentioned)?
        };
        // Read receipts flow only between two users who both have them on.
        let receipts_on = if readers.is_empty() {
            HashSet::new()
        } else {
            tx.with_read_receipts(&readers)?
        };
        // Sends take their chat's disappearing timer, if it has one.
        let timers = tx.timers_among(&senders)?;
        let owned_media = owned_media(tx, media)?;
        let rosters = Rosters::load(tx, groups)?;
        Ok(Batch {
            requests,
            existing,
            receipts_on,
            timers,
            owned_media,
            rosters,
            inbox_acks: Some(inbox_acks),
        })
    }

    /// Whether `sender` may attach what `media_id` names: no media at all,
    /// or media they uploaded.
    pub fn owns(&self, sender: &UserName, media_id: Option<&str>) -> bool {
        media_id.is_none_or(|id| self.owned_media.contains_key(&(sender.as_str(), id)))
    }
}

/// The owned ones of `wanted` (sender → media ids).
fn owned_media<'r>(
    tx: &mut Tx<'_>,
    wanted: HashMap<&'r str, Vec<&'r str>>,
) -> Result<OwnedMedia<'r>, StoreError> {
    let mut owned = HashMap::new();
    for (sender, ids) in wanted {
        let found = tx.owned_media(sender, &ids)?;
        for id in ids {
            if let Some(media) = found.get(id) {
                owned.insert((sender, id), media.clone());
            }
        }
    }
    Ok(owned)
}

/// The batch's groups as they were before its changes: who is in each
/// (one query for all), its timer, and its stored recipient name.
pub(super) struct Rosters {
    members: HashMap<GroupId, Vec<store::groups::Member>>,
    timers: HashMap<GroupId, i64>,
    recipients: HashMap<GroupId, String>,
}

impl Rosters {
    fn load(tx: &mut Tx<'_>, mut groups: Vec<GroupId>) -> Result<Rosters, StoreError> {
        groups.sort_unstable();
        groups.dedup();
        Ok(Rosters {
            members: tx.members_of(&groups)?,
            timers: tx.group_timers(&groups)?,
            recipients: groups
                .iter()
                .map(|g| (*g, store::groups::recipient_of(*g)))
                .collect(),
        })
    }

    pub fn is_member(&self, group: GroupId, user: &UserName) -> bool {
        self.members
            .get(&group)
            .is_some_and(|members| members.iter().any(|m| m.user == user.as_str()))
    }

    /// Every member of `group` but `sender`: who gets a group message.
    pub fn others(&self, group: GroupId, sender: &UserName) -> Vec<&str> {
        self.members
            .get(&group)
            .into_iter()
            .flatten()
            .map(|m| m.user.as_str())
            .filter(|user| *user != sender.as_str())
            .collect()
    }

    pub fn timer(&self, group: GroupId) -> Option<i64> {
        self.timers.get(&group).copied()
    }

    /// The stored recipient of `group`'s messages; `group` is one of the
    /// batch's (every group a send or read names was loaded).
    pub fn recipient(&self, group: GroupId) -> &str {
        &self.recipients[&group]
    }
}
