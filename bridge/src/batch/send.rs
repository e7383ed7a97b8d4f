//! Sends, 1:1 and group: every storable send of the batch is stored in one
//! multi-row insert ([`Sends::store`], in priority order, so text gets the
//! lower ids), then each send's applier turns what the store did into
//! events. A new message yields a message event for its recipient (every
//! other member of a group, as the group was before the batch) and an ack
//! for its sender; a resend yields the first ack again and nothing else.
//! A send with media that is not the sender's, to a user who does not
//! exist, or to a group the sender is not in is refused.

use protocol::messages::{Event, MediaRef, Rejection, SendRequest};
use protocol::ErrorCode;
use std::collections::HashMap;
use store::inbox::NewEvent;
use store::messages::{Message, NewMessage, Stored};
use store::{StoreError, Tx};

use super::gather::Batch;
use super::{Commit, Outcome, Pending};
use crate::request::Request;

/// The batch's storable sends, as the store took them, by request index.
pub(super) struct Sends {
    /// New or resent.
    stored: HashMap<usize, Stored>,
    /// The media reference the recipient sees and the expiry each stored
    /// send was given.
    media_of: HashMap<usize, (Option<MediaRef>, Option<i64>)>,
}

impl Sends {
    /// Stores, in one statement and in `order`, every send that can be:
    /// to a user who exists or a group the sender is in, with no media or
    /// media of the sender's. Each takes its chat's timer.
    pub fn store(
        tx: &mut Tx<'_>,
        batch: &Batch<'_>,
        order: &[usize],
        now: i64,
    ) -> Result<Sends, StoreError> {
        let rosters = &batch.rosters;
        let mut to_store = Vec::new();
        let mut media_of = HashMap::new();
        for &index in order {
            // (sender, stored recipient, send, the chat's timer)
            let storable = match &batch.requests[index] {
                Request::Send { sender, to, send }
                    if batch.existing.contains(to.as_str())
                        && batch.owns(sender, media_id(send)) =>
                {
                    let key = store::timers::chat_key(sender.as_str(), to.as_str());
                    Some((sender, to.as_str(), send, batch.timers.get(&key).copied()))
                }
                Request::GroupSend {
                    sender,
                    group,
                    send,
                } if rosters.is_member(*group, sender) && batch.owns(sender, media_id(send)) => {
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
                    let (mime, size) = &batch.owned_media[&(sender, m.id.as_str())];
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
        let stored = to_store
            .iter()
            .map(|(index, ..)| *index)
            .zip(tx.store_messages(&new_messages)?)
            .collect();
        Ok(Sends { stored, media_of })
    }
}

fn media_id(send: &SendRequest) -> Option<&str> {
    send.media.as_ref().map(|m| m.id.as_str())
}

impl Commit<'_, '_, '_> {
    /// Applies the send (1:1 or group) at `index`.
    pub(super) fn send(&mut self, index: usize, request: &Request) -> Result<Outcome, StoreError> {
        let (Request::Send { sender, send, .. } | Request::GroupSend { sender, send, .. }) = request
        else {
            return Err(StoreError::Corrupt("a send applier got another request".into()));
        };
        let payload = || serde_json::to_vec(send).unwrap_or_default();
        if !self.batch.owns(sender, media_id(send)) {
            // Someone else's media and no media at all get the same
            // answer, so ids cannot be probed.
            let rejection = Rejection {
                client_id: Some(send.id.clone()),
                code: ErrorCode::UnknownMedia,
                message: "no such media of yours".to_owned(),
            };
            return self.refuse_request(sender, "send", &payload(), rejection);
        }
        let Some(stored) = self.sends.stored.remove(&index) else {
            return match request {
                Request::Send { to, .. } => self.refuse_unknown_user(
                    sender,
                    "send",
                    Some(send.id.clone()),
                    to.as_str(),
                    &payload(),
                ),
                Request::GroupSend { group, .. } => {
                    let rejection = super::refuse::not_a_member(Some(send.id.clone()), *group);
                    self.refuse_request(sender, "send", &payload(), rejection)
                }
                _ => Err(StoreError::Corrupt("a send applier got another request".into())),
            };
        };
        let sender = sender.as_str();
        match stored {
            Stored::New { id } => {
                let (media, expires_at) = self.sends.media_of.remove(&index).unwrap_or_default();
                let recipient = match request {
                    Request::Send { to, .. } => to.to_string(),
                    Request::GroupSend { group, .. } => {
                        self.batch.rosters.recipient(*group).to_owned()
                    }
                    _ => unreachable!("only sends are stored"),
                };
                let message = Message {
                    id,
                    client_id: send.id.clone(),
                    sender: sender.to_owned(),
                    recipient,
                    body: send.body.clone(),
                    media,
                    sent_at: self.now,
                    expires_at,
                }
                .event();
                let ack = protocol::messages::AckEvent::from(message.clone());
                // A group message is stored once and fans out to every
                // other member's inbox.
                let readers = match request {
                    Request::Send { to, .. } => vec![to.as_str()],
                    Request::GroupSend {
                        sender, group, ..
                    } => self.batch.rosters.others(*group, sender),
                    _ => unreachable!("only sends are stored"),
                };
                for reader in readers {
                    self.pending.push(Pending::append(
                        reader,
                        NewEvent::Message { message_id: id },
                        Event::Message(message.clone()),
                    ));
                }
                self.pending.push(Pending::append(
                    sender,
                    NewEvent::Ack { message_id: id },
                    Event::Ack(ack.clone()),
                ));
                metrics::counter!("bluetick_messages_stored_total").increment(1);
                Ok(Outcome::Stored(ack))
            }
            Stored::Duplicate {
                id,
                recipient,
                body,
                media,
                sent_at,
                expires_at,
            } => {
                // A resend after a lost ack: nothing new is stored or
                // delivered; the sender gets its ack again, under the
                // original seq while that is unpruned.
                let ack = Message {
                    id,
                    client_id: send.id.clone(),
                    sender: sender.to_owned(),
                    recipient,
                    body,
                    media,
                    sent_at,
                    expires_at,
                }
                .ack();
                let seq = self.tx.ack_seq(sender, id)?;
                self.pending.push(Pending {
                    user: sender.to_owned(),
                    append: None,
                    event: Event::Ack(ack.clone()),
                    seq,
                });
                metrics::counter!("bluetick_messages_duplicate_total").increment(1);
                Ok(Outcome::Stored(ack))
            }
        }
    }
}
