//! [`AppEvent`]: what the driver tells the app. The handle ([`Client`](crate::Client))
//! hands out the channel; the driver (`session`) fills it.

use protocol::groups::GroupEvent;
use protocol::messages::{
    AckEvent, ErrorEvent, ExpiredEvent, MessageEvent, ReceiptEvent, StarEvent, TimerEvent,
};

use crate::inbox::ServerFault;

/// What the driver tells the app, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum AppEvent {
    /// A message for me (exactly once per seq, in seq order); `group` is
    /// set when it was sent to a group I am in.
    Message(MessageEvent),
    /// One of my sends is stored on the server (✓). `own` is false when it
    /// came from another of my devices (its client id was never in this
    /// device's outbox). Reported once per client id.
    Sent { ack: AckEvent, own: bool },
    /// ✓✓ (delivered) or read, for my messages to `peer` up to server id
    /// `up_to`; with `group` instead of `peer`, every member has them
    /// ("delivered to all", "read by all").
    Receipt(ReceiptEvent),
    /// A group I am in (or was, until this event) changed: created,
    /// someone added, removed, left, promoted, demoted, renamed, its timer.
    Group(GroupEvent),
    /// I starred or unstarred a message, on this device or another.
    Star(StarEvent),
    /// A chat's disappearing-message timer changed.
    Timer(TimerEvent),
    /// A message expired on the server: delete it here too.
    Expired(ExpiredEvent),
    /// The server refused something. If `client_id` names one of my sends,
    /// that send was removed from the outbox and will not be retried, except
    /// for the transient codes `internal` and `unavailable`, for which it
    /// stays and is resent.
    Rejected(ErrorEvent),
    /// Connected (true, after every CONNACK) or lost the connection (false;
    /// the driver keeps reconnecting).
    Connection(bool),
    /// The server sent something impossible (a seq past
    /// [`protocol::messages::MAX_SEQ`], a `pruned_through` beyond what it
    /// replayed, an event it said it had pruned). The event was not acted
    /// on; a server that keeps doing this is broken or not to be trusted.
    ServerFault(ServerFault),
}
