//! One batch of requests, committed to the store in one transaction.
//!
//! This is where chat semantics live: a send stores a message and yields a
//! message event for the recipient and an ack for the sender; an inbox ack
//! marks messages delivered and yields delivered receipts; a read marks
//! messages read and yields a read receipt; a star yields a star event for
//! the user's devices; a refused request yields an error event and a dead
//! letter.
//!
//! # Shape
//! [`Batch::gather`] reads, in one pass over the requests and a few
//! queries, everything the batch decides on: which named users exist, the
//! groups it sends or reads in with their members and timers, the chats'
//! timers, the media its senders own, who has read receipts on, and its
//! inbox acks folded per device. Then every request goes to the applier of
//! its kind, in [`priority_order`]: [`send`] (1:1 and group sends), [`ack`]
//! (inbox acks), [`read`] (1:1 and group reads), [`star`], [`timer`],
//! [`group`] (group changes, through [`crate::groups`]) and [`refuse`]
//! (requests refused at decode, and every refusal of the others).
//!
//! # Invariant
//! - Everything a batch writes commits together: its messages, inbox
//!   events, positions, receipts, stars, timers, group changes and dead
//!   letters. A crash leaves either all of it or none of it, and the
//!   outcomes (the ✓s) are answered only after the commit.
//! - A batch's events get their seqs in the order they were produced:
//!   requests in [`priority_order`], each request's events in the order its
//!   applier pushed them, then the groups' aggregate receipts last. Each
//!   user's events are appended in that order, so a user's seqs follow it;
//!   [`Committed::events`] lists them in it.
//! - A resend (same sender and client id) stores nothing and appends
//!   nothing: the sender gets its first ack again, under its original seq
//!   while that is unpruned.
//!
//! # Groups
//! A group send is stored once and yields a message event for every other
//! member (as the group was before the batch's changes: [`gather::Rosters`],
//! one query), all appended by the batch's one multi-row append. Group
//! changes are applied last ([`crate::groups`]). Inbox acks and group reads
//! move members' positions, and the groups they touched get their
//! aggregate receipts worked out once, at the end (`store::group_receipts`).
//!
//! # Text before media
//! A batch is applied in [`priority_order`]: every text send (and every
//! other request) before any media send, so under load text messages get
//! the lower ids and their events go out first. A media send from one
//! sender to one peer holds back that pair's later sends in the batch too,
//! so the order between two users is always the order they were sent in.

mod ack;
mod gather;
mod group;
mod read;
mod refuse;
mod send;
mod star;
mod timer;

use protocol::groups::{Group, GroupId};
use protocol::messages::{AckEvent, Event, InboxEvent, ReceiptEvent, ReceiptStatus, Rejection};
use std::collections::{BTreeMap, HashSet};
use store::group_receipts::Position;
use store::inbox::NewEvent;
use store::{clock, Store, StoreError, Tx};

use crate::groups::GroupRules;
use crate::request::Request;
use gather::Batch;
use send::Sends;

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
    store.transaction(|tx| {
        let now = clock::now_ms();
        let batch = Batch::gather(tx, requests)?;
        let order = priority_order(requests);
        // Every send that will be stored, in one statement, in priority
        // order (so text gets the lower ids).
        let sends = Sends::store(tx, &batch, &order, now)?;
        let mut commit = Commit {
            tx,
            batch,
            sends,
            rules,
            now,
            pending: Vec::new(),
            touched: HashSet::new(),
            group_reads: Vec::new(),
            newest: None,
        };
        let mut outcomes: Vec<Option<Outcome>> = vec![None; requests.len()];
        for index in order {
            outcomes[index] = Some(commit.apply(index, &requests[index])?);
        }
        commit.aggregate_receipts()?;
        let events = assign_seqs(commit.tx, commit.pending)?;
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

/// A batch being applied: what it read, what it stored, and the events
/// and positions its appliers have produced so far. Each applier is an
/// `impl` block in this directory's module of its request kind.
struct Commit<'r, 'x, 't> {
    /// The batch's one transaction.
    tx: &'x mut Tx<'t>,
    /// What the batch read before writing anything.
    batch: Batch<'r>,
    /// The batch's sends as the store took them (new or resent).
    sends: Sends,
    /// The limits group changes are held to.
    rules: GroupRules,
    /// The batch's one clock reading: every `sent_at` and `at` of it.
    now: i64,
    /// Events in the order they were produced: the order of their seqs.
    pending: Vec<Pending>,
    /// Groups whose members' positions or membership moved: their
    /// aggregate receipts are worked out once, after every request.
    touched: HashSet<GroupId>,
    /// Group reads, applied together after every request.
    group_reads: Vec<Position>,
    /// The batch's newest message id, read once when first needed: group
    /// windows open and close there, after every message of the batch
    /// (group changes come last in [`priority_order`]).
    newest: Option<i64>,
}

impl Commit<'_, '_, '_> {
    /// Applies one request with the applier of its kind.
    fn apply(&mut self, index: usize, request: &Request) -> Result<Outcome, StoreError> {
        match request {
            Request::Send { .. } | Request::GroupSend { .. } => self.send(index, request),
            Request::Ack { .. } => self.ack(),
            Request::Read { reader, peer, read } => self.read(reader, peer, read),
            Request::GroupRead {
                reader,
                group,
                read,
            } => self.group_read(reader, *group, read),
            Request::Group { user, op } => self.group(request, user, op),
            Request::Star { user, star } => self.star(user, star),
            Request::Timer {
                user,
                peer,
                seconds,
            } => self.timer(user, peer, *seconds),
            Request::Refused {
                user,
                leaf,
                topic,
                payload,
                rejection,
            } => self.refuse(user.as_str(), leaf, topic, payload, rejection.clone()),
            // Replays are read-only and run after the commit.
            Request::Sync { .. } => Ok(Outcome::Applied),
        }
    }

    /// The batch's newest message id (see [`Commit::newest`]).
    fn newest(&mut self) -> Result<i64, StoreError> {
        match self.newest {
            Some(id) => Ok(id),
            None => Ok(*self.newest.insert(self.tx.newest_message_id()?)),
        }
    }

    /// Queues `event` for `user` with a new seq.
    fn push(&mut self, user: &str, event: Event) {
        self.pending
            .push(Pending::append(user, NewEvent::Other(event.clone()), event));
    }

    /// Queues a receipt for `to`: their messages to `peer` up to `up_to`
    /// have `status`.
    fn push_receipt(&mut self, to: &str, status: ReceiptStatus, peer: &str, up_to: i64) {
        let receipt = Event::Receipt(ReceiptEvent {
            status,
            peer: Some(peer.to_owned()),
            group: None,
            up_to,
            at: self.now,
        });
        self.push(to, receipt);
    }

    /// Applies the batch's group reads, then queues the aggregate receipts
    /// of every group whose positions or membership moved.
    fn aggregate_receipts(&mut self) -> Result<(), StoreError> {
        let reads = std::mem::take(&mut self.group_reads);
        let moved = self
            .tx
            .advance_group_members(ReceiptStatus::Read, reads, self.now)?;
        self.touched.extend(moved);
        if self.touched.is_empty() {
            return Ok(());
        }
        let newest = self.newest()?;
        let touched: Vec<GroupId> = self.touched.iter().copied().collect();
        for aggregate in self.tx.aggregate_receipts(&touched, newest, self.now)? {
            let receipt = Event::Receipt(ReceiptEvent {
                status: aggregate.status,
                peer: None,
                group: Some(aggregate.group),
                up_to: aggregate.up_to,
                at: self.now,
            });
            self.push(&aggregate.sender, receipt);
        }
        Ok(())
    }
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
    let mut by_user: BTreeMap<String, Vec<usize>> = BTreeMap::new();
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
    use protocol::messages::{MediaRef, SendRequest};
    use protocol::UserName;

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
