//! Decoding what a client published into a [`Request`].

use protocol::groups::{GroupId, GroupRequest};
use protocol::messages::{
    parse_request, AckRequest, ReadRequest, Rejection, SendRequest, StarRequest, SyncRequest,
    SYNC_BATCH,
};
use protocol::{ErrorCode, UserName};

/// One client request, decoded and validated as far as possible without
/// the store.
#[derive(Debug, Clone)]
pub enum Request {
    /// A 1:1 send: `send.to` is `Some(to)`.
    Send {
        sender: UserName,
        to: UserName,
        send: SendRequest,
    },
    /// A send to a group: `send.group` is `Some(group)`.
    GroupSend {
        sender: UserName,
        group: GroupId,
        send: SendRequest,
    },
    Ack {
        user: UserName,
        ack: AckRequest,
    },
    /// A 1:1 read: `read.peer` is `Some(peer)`.
    Read {
        reader: UserName,
        peer: UserName,
        read: ReadRequest,
    },
    /// A read in a group: `read.group` is `Some(group)`.
    GroupRead {
        reader: UserName,
        group: GroupId,
        read: ReadRequest,
    },
    /// A group created or changed (`u/{me}/group`, or HTTP).
    Group { user: UserName, op: GroupRequest },
    Sync {
        user: UserName,
        after: i64,
        limit: usize,
    },
    Star {
        user: UserName,
        star: StarRequest,
    },
    /// Sets a chat's disappearing-message timer (HTTP only; `seconds` is
    /// one of [`protocol::messages::TIMER_CHOICES`]).
    Timer {
        user: UserName,
        peer: String,
        seconds: i64,
    },
    /// Refused: the sender gets an error event, operators a dead letter.
    Refused {
        user: UserName,
        leaf: String,
        topic: String,
        payload: Vec<u8>,
        rejection: Rejection,
    },
}

impl Request {
    /// The request a parsed [`SendRequest`] of `sender` is: a 1:1 send or
    /// a group send.
    pub fn send(sender: UserName, send: SendRequest) -> Result<Request, Rejection> {
        // `SendRequest::parse` checked that exactly one of the two is set
        // and that `to` is a well-formed name; this says it again in types.
        match (send.to.as_deref().map(UserName::parse), send.group) {
            (Some(Ok(to)), None) => Ok(Request::Send { sender, to, send }),
            (None, Some(group)) => Ok(Request::GroupSend {
                sender,
                group,
                send,
            }),
            _ => Err(Rejection {
                client_id: Some(send.id.clone()),
                code: ErrorCode::MalformedJson,
                message: "a send names exactly one of \"to\" (a user) and \"group\"".into(),
            }),
        }
    }

    /// Who made the request, on which leaf, and its payload as a client
    /// publishes it: what a dead letter keeps.
    pub fn origin(&self) -> (&UserName, &str, Vec<u8>) {
        // Request payloads are plain structs: serializing cannot fail.
        let (user, leaf, json) = match self {
            Request::Send { sender, send, .. } | Request::GroupSend { sender, send, .. } => {
                (sender, "send", serde_json::to_vec(send))
            }
            Request::Ack { user, ack } => (user, "ack", serde_json::to_vec(ack)),
            Request::Read { reader, read, .. } | Request::GroupRead { reader, read, .. } => {
                (reader, "read", serde_json::to_vec(read))
            }
            Request::Group { user, op } => (user, "group", serde_json::to_vec(op)),
            Request::Sync { user, after, limit } => (
                user,
                "sync",
                serde_json::to_vec(&SyncRequest {
                    after: *after,
                    limit: Some(*limit),
                }),
            ),
            Request::Star { user, star } => (user, "star", serde_json::to_vec(star)),
            Request::Timer {
                user,
                peer,
                seconds,
            } => (
                user,
                "timer",
                serde_json::to_vec(&serde_json::json!({"peer": peer, "seconds": seconds})),
            ),
            Request::Refused {
                user,
                leaf,
                payload,
                ..
            } => return (user, leaf, payload.clone()),
        };
        (user, leaf, json.unwrap_or_default())
    }

    /// The client message id a refusal of this request names, if any.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Request::Send { send, .. } | Request::GroupSend { send, .. } => Some(&send.id),
            Request::Group { op, .. } => op.client_id(),
            _ => None,
        }
    }
}

/// Topic leaves the bridge subscribes to, as `u/+/{leaf}`.
pub const LEAVES: [&str; 6] = ["send", "ack", "read", "sync", "star", "group"];

/// The user and leaf of a `u/{user}/{leaf}` topic.
pub(crate) fn split_topic(topic: &str) -> Option<(UserName, &str)> {
    let mut parts = topic.split('/');
    let (Some("u"), Some(user), Some(leaf), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    Some((UserName::parse(user).ok()?, leaf))
}

/// Decodes a publish on `u/{user}/{leaf}`. `None` for a topic the bridge
/// does not serve (the broker's ACL makes that impossible for clients).
pub fn decode(topic: &str, payload: &[u8], max_body: usize) -> Option<Request> {
    let (user, leaf) = split_topic(topic)?;
    let refuse = |rejection: Rejection| Request::Refused {
        user: user.clone(),
        leaf: leaf.to_owned(),
        topic: topic.to_owned(),
        payload: payload.to_vec(),
        rejection,
    };
    Some(match leaf {
        "send" => match SendRequest::parse(payload, max_body).and_then(|send| Request::send(user.clone(), send)) {
            Ok(request) => request,
            Err(rejection) => refuse(rejection),
        },
        "ack" => match parse_request::<AckRequest>(payload) {
            Ok(ack) => Request::Ack {
                user: user.clone(),
                ack,
            },
            Err(rejection) => refuse(rejection),
        },
        "read" => match parse_request::<ReadRequest>(payload) {
            Ok(read) => match (&read.peer, read.group) {
                (Some(peer), None) => match UserName::parse(peer) {
                    Ok(peer) => Request::Read {
                        reader: user.clone(),
                        peer,
                        read,
                    },
                    Err(_) => refuse(Rejection {
                        client_id: None,
                        code: ErrorCode::UnknownRecipient,
                        message: format!("no user {peer:?}"),
                    }),
                },
                (None, Some(group)) => Request::GroupRead {
                    reader: user.clone(),
                    group,
                    read,
                },
                _ => refuse(Rejection {
                    client_id: None,
                    code: ErrorCode::MalformedJson,
                    message: "a read names exactly one of \"peer\" and \"group\"".into(),
                }),
            },
            Err(rejection) => refuse(rejection),
        },
        "group" => match GroupRequest::parse(payload) {
            Ok(op) => Request::Group {
                user: user.clone(),
                op,
            },
            Err(rejection) => refuse(rejection),
        },
        "sync" => match parse_request::<SyncRequest>(payload) {
            Ok(sync) => match sync.limit.unwrap_or(SYNC_BATCH) {
                limit @ 1..=SYNC_BATCH => Request::Sync {
                    user: user.clone(),
                    after: sync.after.max(0),
                    limit,
                },
                // Refused rather than clamped, as HTTP's `limit=0` is: a
                // client asking for 0 or 501 events has a bug to hear about.
                limit => refuse(Rejection {
                    client_id: None,
                    code: ErrorCode::BadRequest,
                    message: format!("sync limit {limit} is outside 1-{SYNC_BATCH}"),
                }),
            },
            Err(rejection) => refuse(rejection),
        },
        "star" => match parse_request::<StarRequest>(payload) {
            Ok(star) => Request::Star {
                user: user.clone(),
                star,
            },
            Err(rejection) => refuse(rejection),
        },
        _ => return None,
    })
}
