//! The chat payloads: what clients publish, and the events the server
//! puts in each user's inbox.
//!
//! Client → server, QoS 1, JSON, on `u/{me}/{leaf}`:
//!
//! | leaf | payload | effect |
//! |---|---|---|
//! | `send` | [`SendRequest`] | store a message for `to` (a user) or `group`; ack to me, message to them |
//! | `ack` | [`AckRequest`] | my device has stored my inbox up to `up_to`; prunes it and sends delivered receipts |
//! | `read` | [`ReadRequest`] | I read `peer`'s (or `group`'s) messages up to id `up_to`; sends a read receipt |
//! | `sync` | [`SyncRequest`] | replay my inbox after `after` |
//! | `star` | [`StarRequest`] | star or unstar a message I sent or received; a star event to all my devices |
//! | `group` | [`crate::groups::GroupRequest`] | create a group or change one (see [`crate::groups`]) |
//!
//! Server → client on `u/{me}/inbox`, QoS 1: an [`InboxEvent`], which is a
//! `seq` (gap-free per user; absent on control events) plus one [`Event`].

use serde::{Deserialize, Serialize};

use crate::errors::ErrorCode;
use crate::names::UserName;

/// Longest client message id, in bytes.
pub const CLIENT_ID_MAX: usize = 64;
/// Default largest message body, in bytes (server setting `messages.max_body`).
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;
/// Most events one `sync` replays before a [`SyncedEvent`] with `more`.
pub const SYNC_BATCH: usize = 500;
/// Largest inbox seq a server ever sends (2^53 − 1, so every seq is exact
/// as a JSON number in any language). Seqs start at 1. A client refuses a
/// seq, `through` or `pruned_through` outside `0..=MAX_SEQ` (0 only for
/// the latter two) as a server fault instead of acting on it.
pub const MAX_SEQ: i64 = (1 << 53) - 1;

/// Longest media caption, in bytes.
pub const CAPTION_MAX: usize = 4096;

/// `u/{me}/send`: a message to one user (`to`) or to a group (`group`):
/// exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SendRequest {
    /// The client's own id for this message (a UUID is ideal). Resending
    /// with the same id never stores a second copy.
    pub id: String,
    /// The recipient's user name (a 1:1 message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The group's id (a group message; the sender must be a member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupId>,
    /// The message text, or ciphertext for end-to-end encrypting clients.
    /// May be empty when `media` is set.
    #[serde(default)]
    pub body: String,
    /// Media uploaded with `POST /v1/media`, by reference: the bytes never
    /// travel over MQTT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaRef>,
}

/// A reference to uploaded media, as sent and as delivered.
///
/// In a `send`, only `id` is required; the server fills `mime` and `size`
/// from what was uploaded, so the recipient always sees the true values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MediaRef {
    /// The `id` returned by `POST /v1/media`.
    pub id: String,
    /// The media's content type, e.g. `image/jpeg`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mime: String,
    /// The media's size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Text shown with the media.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub caption: String,
}

/// Checks a media id: what `POST /v1/media` hands out is 32 lower-case hex
/// digits.
pub fn valid_media_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `u/{me}/ack`: the device has stored every inbox event up to `up_to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRequest {
    pub up_to: i64,
    /// The device part of the client id (`phone` in `alice.phone`; empty
    /// for a bare `alice`). The inbox is pruned only below every device's
    /// ack. Same rule as the device part of client ids. Required: an ack
    /// without it would be counted for a device that does not exist and
    /// hold back pruning, so it is refused as `malformed_json`.
    #[serde(deserialize_with = "crate::names::deserialize_device")]
    pub device: String,
}

/// `u/{me}/read`: every message from `peer` (or in `group`; exactly one
/// of the two) with id ≤ `up_to` was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupId>,
    /// A server message id (the `id` of a message event).
    pub up_to: i64,
}

/// `u/{me}/sync`: replay inbox events with seq > `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    pub after: i64,
    /// Most events in this batch (1–[`SYNC_BATCH`], default [`SYNC_BATCH`];
    /// outside that range the sync is refused as `bad_request`). A client
    /// whose replays keep losing events asks for smaller batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// `u/{me}/star`: star (or unstar) a message I sent or received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StarRequest {
    /// A server message id.
    pub id: i64,
    pub starred: bool,
}

/// One event on `u/{me}/inbox`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEvent {
    /// Position in the user's inbox: 1, 2, 3… with no gaps. Absent on
    /// control events ([`Event::Synced`]) and on a repeated ack for a send
    /// whose first ack was already pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    #[serde(flatten)]
    pub event: Event,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A message for me.
    Message(MessageEvent),
    /// A message I sent is stored (✓). Reaches all my devices.
    Ack(AckEvent),
    /// Messages I sent were delivered (✓✓) or read (blue).
    Receipt(ReceiptEvent),
    /// Something I published was refused.
    Error(ErrorEvent),
    /// A sync replay reached `through`.
    Synced(SyncedEvent),
    /// I starred or unstarred a message (on any device).
    Star(StarEvent),
    /// The disappearing-message timer of a chat changed.
    Timer(TimerEvent),
    /// A group I am (or was, until this event) in changed.
    Group(GroupEvent),
    /// A message reached its expiry and was deleted; this event takes the
    /// place of its message or ack event in the inbox.
    Expired(ExpiredEvent),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEvent {
    /// Server message id: increases in the order messages were stored.
    pub id: i64,
    /// The sender's own id for it.
    pub client_id: String,
    pub from: String,
    /// Me, for a 1:1 message; absent for a group message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The group it was sent to; absent for a 1:1 message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupId>,
    pub body: String,
    /// Media attached to the message; fetch it with `GET /v1/media/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaRef>,
    /// When the server stored it, Unix milliseconds.
    pub sent_at: i64,
    /// When it disappears (the chat had a timer when it was sent); absent
    /// for messages that stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AckEvent {
    pub id: i64,
    pub client_id: String,
    /// The recipient of a 1:1 message; absent for a group message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The group it was sent to; absent for a 1:1 message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupId>,
    /// The message itself, so my other devices can show what I sent.
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaRef>,
    pub sent_at: i64,
    /// When it disappears; absent for messages that stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl From<MessageEvent> for AckEvent {
    /// The sender's ✓ of a stored message: the same message, without the
    /// sender's own name.
    fn from(message: MessageEvent) -> AckEvent {
        AckEvent {
            id: message.id,
            client_id: message.client_id,
            to: message.to,
            group: message.group,
            body: message.body,
            media: message.media,
            sent_at: message.sent_at,
            expires_at: message.expires_at,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    /// On the recipient's device (✓✓).
    Delivered,
    /// Read by the recipient (blue ✓✓). Implies delivered.
    Read,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptEvent {
    pub status: ReceiptStatus,
    /// Who received or read my messages (a 1:1 receipt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The group whose every member received or read my messages (an
    /// aggregate receipt: "delivered to all", "read by all").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupId>,
    /// Every message I sent to `peer` (or to `group`) with id ≤ `up_to`
    /// has this status.
    pub up_to: i64,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEvent {
    /// The client message id of the refused `send`, when one could be read.
    pub client_id: Option<String>,
    /// The topic leaf that was refused (`send`, `read`, `ack`, `sync`,
    /// `star`, `group`).
    pub on: String,
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StarEvent {
    pub message_id: i64,
    pub starred: bool,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerEvent {
    /// The other participant of the chat.
    pub peer: String,
    /// New messages in this chat disappear this long after they are sent;
    /// 0 means off. One of [`TIMER_CHOICES`].
    pub seconds: i64,
    /// Who set it (either participant).
    pub by: String,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiredEvent {
    pub message_id: i64,
}

/// A group's id: a server-assigned integer, unique forever (see
/// [`crate::groups`]).
pub type GroupId = i64;

/// What changed in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupChange {
    Created,
    Added,
    Removed,
    Left,
    Promoted,
    Demoted,
    Renamed,
    Timer,
}

impl GroupChange {
    /// Every change, for docs and tests.
    pub const ALL: [GroupChange; 8] = [
        GroupChange::Created,
        GroupChange::Added,
        GroupChange::Removed,
        GroupChange::Left,
        GroupChange::Promoted,
        GroupChange::Demoted,
        GroupChange::Renamed,
        GroupChange::Timer,
    ];

    /// The change as it appears on the wire (and in the database).
    pub const fn as_str(self) -> &'static str {
        match self {
            GroupChange::Created => "created",
            GroupChange::Added => "added",
            GroupChange::Removed => "removed",
            GroupChange::Left => "left",
            GroupChange::Promoted => "promoted",
            GroupChange::Demoted => "demoted",
            GroupChange::Renamed => "renamed",
            GroupChange::Timer => "timer",
        }
    }

    /// The change a stored string names.
    pub fn parse(change: &str) -> Option<GroupChange> {
        GroupChange::ALL.into_iter().find(|c| c.as_str() == change)
    }
}

/// The `group` inbox event: `{"seq","type":"group","group","change",
/// "user","by","name","at"}`, plus `members` and `client_id` on
/// `created` and `seconds` on `timer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEvent {
    pub group: GroupId,
    pub change: GroupChange,
    /// Who was added, removed, promoted, demoted, or left; `null` for
    /// `created`, `renamed` and `timer`.
    pub user: Option<String>,
    /// Who made the change; `null` when the server did (the oldest member
    /// promoted after the last admin left).
    pub by: Option<String>,
    /// The group's name after the change.
    pub name: String,
    pub at: i64,
    /// `created`: every member, the creator first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    /// `created`: the creator's id for the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `timer`: the new timer in seconds (0 is off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<i64>,
}

/// The disappearing-message timers a chat may have, in seconds: off, 24 h,
/// 7 days, 90 days.
pub const TIMER_CHOICES: [i64; 4] = [0, 86_400, 7 * 86_400, 90 * 86_400];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncedEvent {
    /// The last seq replayed (or `after` if there was nothing).
    pub through: i64,
    /// More events follow: sync again after `through`.
    pub more: bool,
    /// Set when the events after `after` up to this seq no longer exist:
    /// every other device of the user had stored them and they were pruned
    /// before this device (new, or reinstalled) fetched them. Continue from
    /// here; older history is for the HTTP history API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned_through: Option<i64>,
}

/// Why a payload was refused: what goes back in the [`ErrorEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub client_id: Option<String>,
    pub code: ErrorCode,
    pub message: String,
}

impl Rejection {
    fn new(client_id: Option<String>, code: ErrorCode, message: impl Into<String>) -> Rejection {
        Rejection {
            client_id,
            code,
            message: message.into(),
        }
    }
}

/// Checks a client message id.
pub fn valid_client_id(id: &str) -> bool {
    (1..=CLIENT_ID_MAX).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

impl SendRequest {
    /// Parses and validates a `send` payload. Existence of the recipient is
    /// the server's to check; everything else is checked here.
    pub fn parse(payload: &[u8], max_body: usize) -> Result<SendRequest, Rejection> {
        let value: serde_json::Value = serde_json::from_slice(payload).map_err(|e| {
            Rejection::new(
                None,
                ErrorCode::MalformedJson,
                format!("payload is not JSON: {e}"),
            )
        })?;
        if !value.is_object() {
            // `[1,2]` has no `id` either, but the fault is its shape.
            return Err(Rejection::new(
                None,
                ErrorCode::MalformedJson,
                "a send is a JSON object {\"id\",\"to\",\"body\"}",
            ));
        }
        let client_id = match value.get("id") {
            None | Some(serde_json::Value::Null) => {
                return Err(Rejection::new(
                    None,
                    ErrorCode::MissingId,
                    "a send needs an \"id\"",
                ))
            }
            Some(serde_json::Value::String(id)) if valid_client_id(id) => id.clone(),
            Some(_) => {
                return Err(Rejection::new(
                    None,
                    ErrorCode::InvalidId,
                    format!("\"id\" must be 1-{CLIENT_ID_MAX} characters of A-Z a-z 0-9 - _ . :"),
                ))
            }
        };
        let with_id =
            |code, message: String| Rejection::new(Some(client_id.clone()), code, message);
        let request: SendRequest = serde_json::from_value(value).map_err(|e| {
            with_id(
                ErrorCode::MalformedJson,
                format!("a send is {{\"id\",\"to\",\"body\"}}: {e}"),
            )
        })?;
        match (&request.to, request.group) {
            (Some(to), None) if UserName::parse(to).is_err() => {
                return Err(with_id(
                    ErrorCode::UnknownRecipient,
                    format!("no user {to:?}"),
                ));
            }
            (Some(_), None) | (None, Some(_)) => {}
            _ => {
                return Err(with_id(
                    ErrorCode::MalformedJson,
                    "a send names exactly one of \"to\" (a user) and \"group\"".into(),
                ))
            }
        }
        if let Some(media) = &request.media {
            if !valid_media_id(&media.id) {
                return Err(with_id(
                    ErrorCode::UnknownMedia,
                    format!("no media {:?} of yours", media.id),
                ));
            }
            if media.caption.len() > CAPTION_MAX {
                return Err(with_id(
                    ErrorCode::BodyTooLarge,
                    format!("the caption is over {CAPTION_MAX} bytes"),
                ));
            }
        } else if request.body.is_empty() {
            return Err(with_id(ErrorCode::EmptyBody, "the body is empty".into()));
        }
        if request.body.len() > max_body {
            return Err(with_id(
                ErrorCode::BodyTooLarge,
                format!(
                    "the body is {} bytes; the limit is {max_body}",
                    request.body.len()
                ),
            ));
        }
        Ok(request)
    }
}

/// Parses the payload of `ack`, `read` or `sync`.
pub fn parse_request<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, Rejection> {
    serde_json::from_slice(payload).map_err(|e| {
        Rejection::new(
            None,
            ErrorCode::MalformedJson,
            format!("payload is not the expected JSON: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_send_parses() {
        let send = SendRequest::parse(br#"{"id":"6f1c-1","to":"bob","body":"hi"}"#, 10).unwrap();
        assert_eq!(
            send,
            SendRequest {
                id: "6f1c-1".into(),
                to: Some("bob".into()),
                group: None,
                body: "hi".into(),
                media: None,
            }
        );
    }

    #[test]
    fn bad_sends_are_rejected_with_the_right_code_and_id() {
        let cases: [(&[u8], ErrorCode, Option<&str>); 10] = [
            (b"not json", ErrorCode::MalformedJson, None),
            (b"[1,2]", ErrorCode::MalformedJson, None),
            (br#""hi""#, ErrorCode::MalformedJson, None),
            (br#"{"to":"bob","body":"hi"}"#, ErrorCode::MissingId, None),
            (
                br#"{"id":"","to":"bob","body":"hi"}"#,
                ErrorCode::InvalidId,
                None,
            ),
            (
                br#"{"id":"a b","to":"bob","body":"hi"}"#,
                ErrorCode::InvalidId,
                None,
            ),
            (
                br#"{"id":"m1","body":"hi"}"#,
                ErrorCode::MalformedJson,
                Some("m1"),
            ),
            (
                br#"{"id":"m1","to":"Bob!","body":"hi"}"#,
                ErrorCode::UnknownRecipient,
                Some("m1"),
            ),
            (
                br#"{"id":"m1","to":"bob","body":""}"#,
                ErrorCode::EmptyBody,
                Some("m1"),
            ),
            (
                br#"{"id":"m1","to":"bob","body":"01234567890"}"#,
                ErrorCode::BodyTooLarge,
                Some("m1"),
            ),
        ];
        for (payload, code, client_id) in cases {
            let rejection = SendRequest::parse(payload, 10).unwrap_err();
            assert_eq!(rejection.code, code, "{}", String::from_utf8_lossy(payload));
            assert_eq!(rejection.client_id.as_deref(), client_id);
        }
    }

    #[test]
    fn a_media_send_needs_no_body_but_a_well_formed_id() {
        let id = "0123456789abcdef0123456789abcdef";
        let payload =
            format!(r#"{{"id":"m1","to":"bob","media":{{"id":"{id}","caption":"look"}}}}"#);
        let send = SendRequest::parse(payload.as_bytes(), 10).unwrap();
        let media = send.media.unwrap();
        assert_eq!((media.id.as_str(), media.caption.as_str()), (id, "look"));
        let bad = br#"{"id":"m1","to":"bob","media":{"id":"../etc"}}"#;
        assert_eq!(
            SendRequest::parse(bad, 10).unwrap_err().code,
            ErrorCode::UnknownMedia
        );
    }

    #[test]
    fn inbox_events_have_a_flat_wire_shape() {
        let event = InboxEvent {
            seq: Some(7),
            event: Event::Receipt(ReceiptEvent {
                status: ReceiptStatus::Read,
                peer: Some("bob".into()),
                group: None,
                up_to: 42,
                at: 1,
            }),
        };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"seq":7,"type":"receipt","status":"read","peer":"bob","up_to":42,"at":1}"#
        );
        assert_eq!(serde_json::from_str::<InboxEvent>(&json).unwrap(), event);
        let synced = InboxEvent {
            seq: None,
            event: Event::Synced(SyncedEvent {
                through: 9,
                more: false,
                pruned_through: None,
            }),
        };
        assert_eq!(
            serde_json::to_string(&synced).unwrap(),
            r#"{"type":"synced","through":9,"more":false}"#
        );
        let error = InboxEvent {
            seq: Some(8),
            event: Event::Error(ErrorEvent {
                client_id: None,
                on: "send".into(),
                code: ErrorCode::MissingId,
                message: "m".into(),
            }),
        };
        let json = serde_json::to_string(&error).unwrap();
        assert!(json.contains(r#""code":"missing_id""#), "{json}");
        assert_eq!(serde_json::from_str::<InboxEvent>(&json).unwrap(), error);
    }
}
