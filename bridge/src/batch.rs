//! One batch of requests, committed to the store in one transaction.
//!
//! This is where chat semantics live: a send stores a message and yields a
//! message event for the recipient and an ack for the sender; an inbox ack
//! marks messages delivered and yields delivered receipts; a read marks
//! messages read and yields a read receipt; a star yields a star event for
//! the user's devices; a refused request yields an error event and a dead
//! letter. Everything a batch writes commits
//! together, so a crash leaves either all of it or none of it.
//!
//! # Groups
//! A group send is stored once and yields a message event for every other
//! member (as the group was before the batch's changes: [`Rosters`], one
//! query), all appended by the batch's one multi-row append. Group changes
//! are applied last ([`crate::groups`]). Inbox acks and group reads move
//! members' positions, and the groups they touched get their aggregate
//! receipts worked out once, at the end (`store::group_receipts`).
//!
//! # Text before media
//! A batch is applied in [`priority_order`]: every text send (and every
//! other request) before any media send, so under load text messages get
//! the lower ids and their events go out first. A media send from one
//! sender to one peer holds back that pair's later sends in the batch too,
//! so the order between two users is always the order they were sent in.

use protocol::messages::{
    AckEvent, ErrorEvent, Event, InboxEvent, MediaRef, MessageEvent, ReceiptEvent, ReceiptStatus,
    Rejection, SendRequest, StarEvent, TimerEvent,
};
use protocol::groups::{Group, GroupId};
use protocol::{ErrorCode, UserName};
use std::collections::{HashMap, HashSet};
use store::inbox::{InboxAck, NewEvent};
use store::messages::{NewMessage, Stored};
use store::stars::StarChange;
use store::timers::TimerChange;
use store::{clock, Store, StoreError, Tx};

use crate::groups::{self, Applied, GroupRules};
use crate::request::Request;

/// What a committed batch produced.
#[derive(Debug, Default)]
pub struct Committed {
    /// Inbox events to publish, in commit order: (user, event).
    pub events: Vec<(String, InboxEvent)>,
    /// One outcome per request, in request order.
    pub outcomes: Vec<Outcome>,
}

/// What became of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A send is stored (now, or by an earlier identical send).
    Stored(AckEvent),
    /// A group request was applied (or changed nothing): the group now.
    Group(Box<Group>),
    /// The request was refused.
    Refused(Rejection),
    /// Anything else that was applied (or needs no answer).
    Applied,
}

/// An event waiting for its seq until the batch's appends are grouped.
struct Pending {
    user: String,
    /// `Some` to append to the inbox; `None` for an event published without
    /// a new seq (a repeated ack).
    append: Option<NewEvent>,
    event: Event,
    seq: Option<i64>,
}

/// Commits `requests` in one transaction under the default
/// [`GroupRules`] and returns what to publish.
pub fn commit(store: &Store, requests: &[Request]) -> Result<Committed, StoreError> {
    commit_under(store, requests, GroupRules::default())
}

/// Commits `requests` in one transaction, holding group changes to
/// `rules`, and returns what to publish.
pub fn commit_under(
    store: &Store,
    requests: &[Request],
    rules: GroupRules,
) -> Result<Committed, StoreError> {
    // Inbox acks are cumulative: of several from one device in a batch,
    // only the highest does anything. All of them are applied together, in
    // the slot of the batch's first ack.
    let mut inbox_acks: Vec<InboxAck<'_>> = Vec::new();
    for request in requests {
        if let Request::Ack { user, ack } = request {
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
    }
    let mut inbox_acks = Some(inbox_acks);
    store.transaction(|tx| {
        let now = clock::now_ms();
        let mentioned: Vec<&str> = requests
            .iter()
            .filter_map(|r| match r {
                Request::Send { to, .. } => Some(to.as_str()),
                Request::Read { peer, .. } => Some(peer.as_str()),
                Request::Timer { peer, .. } => Some(peer.as_str()),
                _ => None,
            })
            .collect();
        let existing = if mentioned.is_empty() {
            HashSet::new()
        } else {
            tx.existing_users(&mentioned)?
        };
        // Read receipts flow only between two users who both have them on.
        let readers: Vec<&str> = requests
            .iter()
            .filter_map(|r| match r {
                Request::Read { reader, peer, .. } => Some([reader.as_str(), peer.as_str()]),
                _ => None,
            })
            .flatten()
            .collect();
        let receipts_on = if readers.is_empty() {
            HashSet::new()
        } else {
            tx.with_read_receipts(&readers)?
        };

        // Sends take their chat's disappearing timer, if it has one.
        let senders: Vec<&str> = requests
            .iter()
            .filter_map(|r| match r {
                Request::Send { sender, .. } => Some(sender.as_str()),
                _ => None,
            })
            .collect();
        let timers = tx.timers_among(&senders)?;
        let owned_media = owned_media(tx, requests)?;
        // Every group the batch sends or reads in, with its members before
        // any change in the batch: one query.
        let rosters = Rosters::load(tx, requests)?;

        // Every send that will be stored, in one statement, in priority
        // order (so text gets the lower ids).
        let order = priority_order(requests);
        let owns_media = |sender: &UserName, send: &SendRequest| {
            send.media.as_ref().is_none_or(|m| {
                owned_media.contains_key(&(sender.as_str(), m.id.as_str()))
            })
        };
        let mut to_store = Vec::new();
        let mut media_of = HashMap::new();
        for &index in &order {
            // (sender, stored recipient, send, the chat's timer)
            let storable = match &requests[index] {
                Request::Send { sender, to, send }
                    if existing.contains(to.as_str()) && owns_media(sender, send) =>
                {
                    let timer = timers.get(&store::timers::chat_key(sender.as_str(), to.as_str()));
                    Some((sender, to.as_str(), send, timer.copied()))
                }
                Request::GroupSend { sender, group, send }
                    if rosters.is_member(*group, sender) && owns_media(sender, send) =>
                {
                    Some((sender, rosters.recipient(*group), send, rosters.timer(*group)))
                }
                _ => None,
            };
            if let Some((sender, recipient, send, timer)) = storable {
                let sender = sender.as_str();
                let expires_at = timer.map(|seconds| now + seconds * 1000);
                // The recipient sees the uploaded type and size, whatever
                // the sender claimed.
                let media = send.media.as_ref().map(|m| {
                    let (mime, size) = &owned_media[&(sender, m.id.as_str())];
                    MediaRef {
                        id: m.id.clone(),
                        mime: mime.clone(),
                        size: *size as u64,
                        caption: m.caption.clone(),
                    }
                });
                media_of.insert(index, (media, expires_at));
                to_store.push((index, sender, recipient, send));
            }
        }
        let new_messages: Vec<NewMessage<'_>> = to_store
            .iter()
            .map(|(index, sender, recipient, send)| {
                let (media, expires_at) = &media_of[index];
                NewMessage {
                    sender,
                    recipient,
                    client_id: &send.id,
                    body: &send.body,
                    media: media.as_ref(),
                    sent_at: now,
                    expires_at: *expires_at,
                }
            })
            .collect();
        let mut stored: HashMap<usize, Stored> = to_store
            .iter()
            .map(|(index, ..)| *index)
            .zip(tx.store_messages(&new_messages)?)
            .collect();
        // Groups whose members' positions or membership moved: their
        // aggregate receipts are worked out after the loop.
        let mut touched: HashSet<GroupId> = HashSet::new();
        let mut group_reads = Vec::new();

        let mut pending = Vec::new();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; requests.len()];
        // Where group windows open and close: after every message of the
        // batch (group changes come last in `order`), read once.
        let mut newest = None;
        for index in order {
            let request = &requests[index];
            let outcome = match request {
                Request::Send { sender, send, .. } | Request::GroupSend { sender, send, .. }
                    if send.media.as_ref().is_some_and(|m| {
                        !owned_media.contains_key(&(sender.as_str(), m.id.as_str()))
                    }) =>
                {
                    // Someone else's media and no media at all get the same
                    // answer, so ids cannot be probed.
                    let rejection = Rejection {
                        client_id: Some(send.id.clone()),
                        code: ErrorCode::UnknownMedia,
                        message: "no such media of yours".to_owned(),
                    };
                    let payload = serde_json::to_vec(send).unwrap_or_default();
                    let topic = protocol::topics::user_topic(sender, "send");
                    refuse(
                        tx,
                        &mut pending,
                        sender.as_str(),
                        "send",
                        &topic,
                        &payload,
                        rejection,
                    )?
                }
                Request::Send { sender, send, .. } | Request::GroupSend { sender, send, .. }
                    if stored.contains_key(&index) =>
                {
                    let (to, group, readers) = match request {
                        Request::Send { to, .. } => (Some(to.to_string()), None, vec![to.as_str()]),
                        Request::GroupSend { group, .. } => {
                            (None, Some(*group), rosters.others(*group, sender))
                        }
                        _ => unreachable!("only sends are stored"),
                    };
                    let sender = sender.as_str();
                    let (media, expires_at) = media_of.remove(&index).unwrap_or_default();
                    let Some(result) = stored.remove(&index) else {
                        return Err(StoreError::Corrupt(format!(
                            "send {:?} was not stored",
                            send.id
                        )));
                    };
                    match result {
                        Stored::New { id } => {
                            let message = MessageEvent {
                                id,
                                client_id: send.id.clone(),
                                from: sender.to_owned(),
                                to,
                                group,
                                body: send.body.clone(),
                                media,
                                sent_at: now,
                                expires_at,
                            };
                            let ack = AckEvent::from(message.clone());
                            // A group message is stored once and fans out
                            // to every other member's inbox.
                            for reader in readers {
                                pending.push(Pending::append(
                                    reader,
                                    NewEvent::Message { message_id: id },
                                    Event::Message(message.clone()),
                                ));
                            }
                            pending.push(Pending::append(
                                sender,
                                NewEvent::Ack { message_id: id },
                                Event::Ack(ack.clone()),
                            ));
                            metrics::counter!("bluetick_messages_stored_total").increment(1);
                            Outcome::Stored(ack)
                        }
                        Stored::Duplicate {
                            id,
                            recipient,
                            body,
                            media,
                            sent_at,
                            expires_at,
                        } => {
                            // A resend after a lost ack: nothing new is stored
                            // or delivered; the sender gets its ack again,
                            // under the original seq while that is unpruned.
                            let group = store::groups::group_of(&recipient);
                            let ack = AckEvent {
                                id,
                                client_id: send.id.clone(),
                                to: group.is_none().then_some(recipient),
                                group,
                                body,
                                media,
                                sent_at,
                                expires_at,
                            };
                            let seq = tx.ack_seq(sender, id)?;
                            pending.push(Pending {
                                user: sender.to_owned(),
                                append: None,
                                event: Event::Ack(ack.clone()),
                                seq,
                            });
                            metrics::counter!("bluetick_messages_duplicate_total").increment(1);
                            Outcome::Stored(ack)
                        }
                    }
                }
                Request::Send { sender, to, send } => {
                    let payload = serde_json::to_vec(send).unwrap_or_default();
                    let client_id = Some(send.id.clone());
                    refuse_unknown_user(
                        tx,
                        &mut pending,
                        sender,
                        "send",
                        client_id,
                        to.as_str(),
                        &payload,
                    )?
                }
                Request::GroupSend { sender, group, send } => {
                    let payload = serde_json::to_vec(send).unwrap_or_default();
                    let topic = protocol::topics::user_topic(sender, "send");
                    let rejection = not_a_member(Some(send.id.clone()), *group);
                    refuse(tx, &mut pending, sender.as_str(), "send", &topic, &payload, rejection)?
                }
                Request::Ack { .. } => {
                    if let Some(acks) = inbox_acks.take() {
                        // An ack emits the delivered receipts (one per
                        // sender and reader) and moves the group members'
                        // delivered positions (none when the acked ranges
                        // hold no group message).
                        let acked = tx.ack_inboxes(&acks, now)?;
                        touched.extend(tx.advance_group_members(ReceiptStatus::Delivered, acked.group, now)?);
                        for delivered in acked.delivered {
                            push_receipt(
                                &mut pending,
                                &delivered.sender,
                                ReceiptStatus::Delivered,
                                &delivered.reader,
                                delivered.up_to,
                                now,
                            );
                        }
                    }
                    Outcome::Applied
                }
                Request::Read { reader, peer, read } if existing.contains(peer.as_str()) => {
                    let both_share = receipts_on.contains(reader.as_str())
                        && receipts_on.contains(peer.as_str());
                    let newest =
                        tx.mark_read(reader.as_str(), peer.as_str(), read.up_to, now, both_share)?;
                    if let (Some(up_to), true) = (newest, both_share) {
                        push_receipt(
                            &mut pending,
                            peer.as_str(),
                            ReceiptStatus::Read,
                            reader.as_str(),
                            up_to,
                            now,
                        );
                    }
                    Outcome::Applied
                }
                Request::Read { reader, peer, read } => {
                    let payload = serde_json::to_vec(read).unwrap_or_default();
                    refuse_unknown_user(
                        tx,
                        &mut pending,
                        reader,
                        "read",
                        None,
                        peer.as_str(),
                        &payload,
                    )?
                }
                Request::Group { user, op } => {
                    let newest = match newest {
                        Some(id) => id,
                        None => *newest.insert(tx.newest_message_id()?),
                    };
                    // A member leaving can complete an aggregate receipt.
                    touched.extend(op.group());
                    match groups::apply(tx, user, op, rules, now, newest)? {
                        Applied::Done { events, group } => {
                            for (to, event) in events {
                                pending.push(Pending::append(&to, other(event.clone()), event));
                            }
                            Outcome::Group(Box::new(group))
                        }
                        Applied::Refused(rejection) => {
                            let (_, leaf, payload) = request.origin();
                            let topic = protocol::topics::user_topic(user, leaf);
                            refuse(tx, &mut pending, user.as_str(), leaf, &topic, &payload, rejection)?
                        }
                    }
                }
                Request::GroupRead { reader, group, read } if rosters.is_member(*group, reader) => {
                    let newest = match newest {
                        Some(id) => id,
                        None => *newest.insert(tx.newest_message_id()?),
                    };
                    // Clamped: a read cannot cover messages not yet sent.
                    group_reads.push(store::group_receipts::Position {
                        group: *group,
                        user: reader.to_string(),
                        up_to: read.up_to.min(newest),
                    });
                    Outcome::Applied
                }
                Request::GroupRead { reader, group, read } => {
                    let payload = serde_json::to_vec(read).unwrap_or_default();
                    let topic = protocol::topics::user_topic(reader, "read");
                    let rejection = not_a_member(None, *group);
                    refuse(tx, &mut pending, reader.as_str(), "read", &topic, &payload, rejection)?
                }
                Request::Refused {
                    user,
                    leaf,
                    topic,
                    payload,
                    rejection,
                } => refuse(
                    tx,
                    &mut pending,
                    user.as_str(),
                    leaf,
                    topic,
                    payload,
                    rejection.clone(),
                )?,
                Request::Star { user, star } => {
                    match tx.set_star(user.as_str(), star.id, star.starred, now)? {
                        StarChange::Changed => {
                            let event = Event::Star(StarEvent {
                                message_id: star.id,
                                starred: star.starred,
                                at: now,
                            });
                            pending.push(Pending::append(
                                user.as_str(),
                                other(event.clone()),
                                event,
                            ));
                            Outcome::Applied
                        }
                        StarChange::Unchanged => Outcome::Applied,
                        StarChange::NotFound => {
                            let payload = serde_json::to_vec(star).unwrap_or_default();
                            let rejection = Rejection {
                                client_id: None,
                                code: ErrorCode::NotFound,
                                message: format!("no message {}", star.id),
                            };
                            let topic = protocol::topics::user_topic(user, "star");
                            refuse(
                                tx,
                                &mut pending,
                                user.as_str(),
                                "star",
                                &topic,
                                &payload,
                                rejection,
                            )?
                        }
                    }
                }
                Request::Timer {
                    user,
                    peer,
                    seconds,
                } if existing.contains(peer) => {
                    let change = tx.set_timer(user.as_str(), peer, *seconds, now)?;
                    if change == TimerChange::Changed {
                        let announce = |to: &str, peer: &str| {
                            let event = Event::Timer(TimerEvent {
                                peer: peer.to_owned(),
                                seconds: *seconds,
                                by: user.to_string(),
                                at: now,
                            });
                            Pending::append(to, other(event.clone()), event)
                        };
                        pending.push(announce(user.as_str(), peer));
                        if peer != user.as_str() {
                            pending.push(announce(peer, user.as_str()));
                        }
                    }
                    if change == TimerChange::NoChat {
                        // No chat, no timer: nobody puts timer events into
                        // a stranger's inbox.
                        Outcome::Refused(Rejection {
                            client_id: None,
                            code: ErrorCode::NoChat,
                            message: format!("no chat with {peer} yet: send a message first"),
                        })
                    } else {
                        Outcome::Applied
                    }
                }
                Request::Timer { .. } => Outcome::Refused(Rejection {
                    client_id: None,
                    code: ErrorCode::NotFound,
                    message: "no such user".into(),
                }),
                // Replays are read-only and run after the commit.
                Request::Sync { .. } => Outcome::Applied,
            };
            outcomes[index] = Some(outcome);
        }
        touched.extend(tx.advance_group_members(ReceiptStatus::Read, group_reads, now)?);
        if !touched.is_empty() {
            let newest = match newest {
                Some(id) => id,
                None => tx.newest_message_id()?,
            };
            let touched: Vec<GroupId> = touched.into_iter().collect();
            for aggregate in tx.aggregate_receipts(&touched, newest, now)? {
                let receipt = Event::Receipt(ReceiptEvent {
                    status: aggregate.status,
                    peer: None,
                    group: Some(aggregate.group),
                    up_to: aggregate.up_to,
                    at: now,
                });
                pending.push(Pending::append(&aggregate.sender, other(receipt.clone()), receipt));
            }
        }
        let events = assign_seqs(tx, pending)?;
        let outcomes = outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Applied))
            .collect();
        Ok(Committed { events, outcomes })
    })
}

/// The order to apply `requests` in: indexes of everything but media
/// sends and group changes first, then media sends, then group changes,
/// each group in arrival order. A send from a (sender, recipient) pair
/// that already has a media send waiting is held back with it, so each
/// pair keeps its order. Group changes come after every send so that
/// membership windows, which open and close at the batch's newest message,
/// agree with who got the batch's group messages.
pub fn priority_order(requests: &[Request]) -> Vec<usize> {
    let mut held_pairs: HashSet<(&str, &str)> = HashSet::new();
    let mut held_groups: HashSet<(&str, Option<GroupId>)> = HashSet::new();
    let (mut first, mut later, mut last) = (Vec::new(), Vec::new(), Vec::new());
    for (index, request) in requests.iter().enumerate() {
        match request {
            Request::Group { .. } => last.push(index),
            Request::GroupSend { sender, send, .. }
                if send.media.is_some() || held_groups.contains(&(sender.as_str(), send.group)) =>
            {
                held_groups.insert((sender.as_str(), send.group));
                later.push(index);
            }
            Request::Send { sender, to, send }
                if send.media.is_some()
                    || held_pairs.contains(&(sender.as_str(), to.as_str())) =>
            {
                held_pairs.insert((sender.as_str(), to.as_str()));
                later.push(index);
            }
            _ => first.push(index),
        }
    }
    first.extend(later);
    first.extend(last);
    first
}

/// The batch's groups as they were before its changes: who is in each
/// (one query for all), its timer, and its stored recipient name.
struct Rosters {
    members: HashMap<GroupId, Vec<store::groups::Member>>,
    timers: HashMap<GroupId, i64>,
    recipients: HashMap<GroupId, String>,
}

impl Rosters {
    fn load(tx: &mut Tx<'_>, requests: &[Request]) -> Result<Rosters, StoreError> {
        let mut groups: Vec<GroupId> = requests
            .iter()
            .filter_map(|r| match r {
                Request::GroupSend { group, .. } | Request::GroupRead { group, .. } => Some(*group),
                _ => None,
            })
            .collect();
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

    fn is_member(&self, group: GroupId, user: &UserName) -> bool {
        self.members
            .get(&group)
            .is_some_and(|members| members.iter().any(|m| m.user == user.as_str()))
    }

    /// Every member of `group` but `sender`: who gets a group message.
    fn others(&self, group: GroupId, sender: &UserName) -> Vec<&str> {
        self.members
            .get(&group)
            .into_iter()
            .flatten()
            .map(|m| m.user.as_str())
            .filter(|user| *user != sender.as_str())
            .collect()
    }

    fn timer(&self, group: GroupId) -> Option<i64> {
        self.timers.get(&group).copied()
    }

    /// The stored recipient of `group`'s messages; `group` is one of the
    /// batch's (every group a send or read names was loaded).
    fn recipient(&self, group: GroupId) -> &str {
        &self.recipients[&group]
    }
}

/// The answer to a send or read in a group the user is not in (or that
/// does not exist: the same answer, so ids cannot be probed).
fn not_a_member(client_id: Option<String>, group: GroupId) -> Rejection {
    Rejection {
        client_id,
        code: ErrorCode::NotAMember,
        message: format!("you are not in group {group}"),
    }
}

/// Media a sender owns: (sender, media id) → (content type, size).
type OwnedMedia<'r> = HashMap<(&'r str, &'r str), (String, i64)>;

/// The media the batch's sends reference that their senders own.
fn owned_media<'r>(tx: &mut Tx<'_>, requests: &'r [Request]) -> Result<OwnedMedia<'r>, StoreError> {
    let mut wanted: HashMap<&str, Vec<&str>> = HashMap::new();
    for request in requests {
        if let Request::Send { sender, send, .. } | Request::GroupSend { sender, send, .. } = request {
            if let Some(media) = &send.media {
                wanted
                    .entry(sender.as_str())
                    .or_default()
                    .push(media.id.as_str());
            }
        }
    }
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

impl Pending {
    fn append(user: &str, append: NewEvent, event: Event) -> Pending {
        Pending {
            user: user.to_owned(),
            append: Some(append),
            event,
            seq: None,
        }
    }
}

fn other(event: Event) -> NewEvent {
    NewEvent::Other(event)
}

/// An error event for the sender and a dead letter for operators.
fn refuse(
    tx: &mut Tx<'_>,
    pending: &mut Vec<Pending>,
    user: &str,
    leaf: &str,
    topic: &str,
    payload: &[u8],
    rejection: Rejection,
) -> Result<Outcome, StoreError> {
    tx.dead_letter(
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
    pending.push(Pending::append(user, other(error.clone()), error));
    metrics::counter!("bluetick_requests_refused_total", "code" => rejection.code.as_str())
        .increment(1);
    Ok(Outcome::Refused(rejection))
}

/// Refuses a request that names a user who does not exist.
fn refuse_unknown_user(
    tx: &mut Tx<'_>,
    pending: &mut Vec<Pending>,
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
    let topic = protocol::topics::user_topic(user, leaf);
    refuse(tx, pending, user.as_str(), leaf, &topic, payload, rejection)
}

/// Queues a receipt for `to`: their messages to `peer` up to `up_to` have
/// `status`.
fn push_receipt(
    pending: &mut Vec<Pending>,
    to: &str,
    status: ReceiptStatus,
    peer: &str,
    up_to: i64,
    at: i64,
) {
    let receipt = Event::Receipt(ReceiptEvent {
        status,
        peer: Some(peer.to_owned()),
        group: None,
        up_to,
        at,
    });
    pending.push(Pending::append(to, other(receipt.clone()), receipt));
}

/// Appends every user's events in two statements and stamps their seqs,
/// keeping the batch's order.
fn assign_seqs(
    tx: &mut Tx<'_>,
    mut pending: Vec<Pending>,
) -> Result<Vec<(String, InboxEvent)>, StoreError> {
    // In user-name order: two batches committing at once (two nodes on one
    // PostgreSQL) then lock the users' seq rows in the same order and wait
    // for each other instead of deadlocking, which PostgreSQL detects only
    // after a second (measured: a 3-node bench stalled to a sixth).
    let mut by_user: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for (index, p) in pending.iter().enumerate() {
        if p.append.is_some() {
            by_user.entry(p.user.clone()).or_default().push(index);
        }
    }
    let appends: Vec<(&str, Vec<NewEvent>)> = by_user
        .iter()
        .map(|(user, indexes)| {
            let events = indexes
                .iter()
                .filter_map(|&i| pending[i].append.clone())
                .collect();
            (user.as_str(), events)
        })
        .collect();
    let seqs = tx.append_all(&appends)?;
    for (indexes, seqs) in by_user.values().zip(seqs) {
        for (&index, seq) in indexes.iter().zip(seqs) {
            pending[index].seq = Some(seq);
        }
    }
    Ok(pending
        .into_iter()
        .map(|p| {
            (
                p.user,
                InboxEvent {
                    seq: p.seq,
                    event: p.event,
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(from: &str, to: &str, id: &str, media: bool) -> Request {
        Request::Send {
            sender: UserName::parse(from).unwrap(),
            to: UserName::parse(to).unwrap(),
            send: SendRequest {
                id: id.into(),
                to: Some(to.into()),
                group: None,
                body: "b".into(),
                media: media.then(|| MediaRef {
                    id: "0".repeat(32),
                    mime: String::new(),
                    size: 0,
                    caption: String::new(),
                }),
            },
        }
    }

    #[test]
    fn text_goes_before_media_but_each_pair_keeps_its_order() {
        let batch = [
            send("alice", "bob", "a1-photo", true),
            send("carol", "dave", "c1-text", false),
            send("alice", "bob", "a2-text-after-photo", false),
            send("alice", "erin", "a3-text", false),
            send("erin", "bob", "e1-video", true),
        ];
        let order: Vec<&str> = priority_order(&batch)
            .into_iter()
            .map(|i| match &batch[i] {
                Request::Send { send, .. } => send.id.as_str(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            order,
            [
                "c1-text",
                "a3-text",
                "a1-photo",
                "a2-text-after-photo",
                "e1-video"
            ]
        );
    }
}
