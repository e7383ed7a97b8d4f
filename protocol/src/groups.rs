//! Groups: chats of up to [`DEFAULT_MAX_MEMBERS`] members (server setting
//! `groups.max_members`), created and changed on `u/{me}/group` or over
//! HTTP, with messages stored once and delivered to every member's inbox.
//!
//! - [`GroupRequest`]: what a client publishes on `u/{me}/group` (QoS 1).
//! - [`GroupEvent`]: the inbox event every member affected by a change gets
//!   (the members after it, plus a removed or leaving member, plus the
//!   creator on `created`), seq-numbered like every inbox event.
//! - [`Group`], [`NewGroup`] and friends: the HTTP shapes of
//!   `/v1/groups`.
//!
//! Sending to a group is the ordinary `send` with `group` instead of `to`
//! ([`crate::messages::SendRequest`]); reading is `read` with `group`;
//! typing is `typing` with `group`. Group ids are server-assigned integers,
//! unique forever.
//!
//! Rules the server enforces: the creator is the first admin; add, remove,
//! promote, demote, rename and timer are for admins (`not_admin`); any
//! member may leave; when the last admin leaves or is removed, the oldest
//! remaining member is promoted (a `promoted` event with `"by": null`).
//! Adding a member twice or removing a non-member changes nothing and
//! answers nothing. A non-member (or a group that does not exist: the same
//! answer) gets `not_a_member`.

use serde::{Deserialize, Serialize};

use crate::errors::ErrorCode;
use crate::messages::{valid_client_id, Rejection, CLIENT_ID_MAX, TIMER_CHOICES};
use crate::names::UserName;

// The inbox side of groups lives with the other inbox events, in
// `messages`; it is part of this module's contract too.
pub use crate::messages::{GroupChange, GroupEvent, GroupId};

/// Default most members of a group (server setting `groups.max_members`);
/// adding one more is refused with `group_full`.
pub const DEFAULT_MAX_MEMBERS: usize = 1024;
/// Longest group name, in bytes (after trimming; never empty).
pub const NAME_MAX: usize = 64;

/// Checks and normalises a group name: trimmed, 1-[`NAME_MAX`] bytes.
pub fn group_name(name: &str) -> Option<&str> {
    let name = name.trim();
    (1..=NAME_MAX).contains(&name.len()).then_some(name)
}

/// [`group_name`], owned, or why not.
fn checked_name(name: &str) -> Result<String, String> {
    group_name(name)
        .map(str::to_owned)
        .ok_or_else(|| format!("a group name is 1-{NAME_MAX} bytes, not blank"))
}

/// `u/{me}/group`: create a group or change one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum GroupRequest {
    /// A new group with me as its admin and `members` (besides me).
    /// `id` is my own id for the request: a resend never creates a second
    /// group.
    Create {
        id: String,
        name: String,
        #[serde(default)]
        members: Vec<String>,
    },
    /// Admins: add `user`.
    Add { group: GroupId, user: String },
    /// Admins: remove `user` (removing myself is leaving).
    Remove { group: GroupId, user: String },
    /// Admins: make `user` an admin.
    Promote { group: GroupId, user: String },
    /// Admins: make `user` a plain member.
    Demote { group: GroupId, user: String },
    /// Leave the group.
    Leave { group: GroupId },
    /// Admins: rename it.
    Rename { group: GroupId, name: String },
    /// Admins: set its disappearing-message timer (one of
    /// [`crate::messages::TIMER_CHOICES`]; 0 is off).
    Timer { group: GroupId, seconds: i64 },
}

impl GroupRequest {
    /// Parses and validates a `u/{me}/group` payload: names well formed,
    /// the group name 1-[`NAME_MAX`] bytes once trimmed (kept trimmed),
    /// the timer one of [`TIMER_CHOICES`]. Whether the users and the group
    /// exist, and whether the caller may, is the server's to check.
    pub fn parse(payload: &[u8]) -> Result<GroupRequest, Rejection> {
        crate::messages::parse_request::<GroupRequest>(payload)?.validated()
    }

    /// The checks of [`GroupRequest::parse`], on a request built in code
    /// (the HTTP API's).
    pub fn validated(mut self) -> Result<GroupRequest, Rejection> {
        let request = &mut self;
        let client_id = request.client_id().map(str::to_owned);
        let refuse = |code, message: String| Rejection {
            client_id: client_id.clone(),
            code,
            message,
        };
        if let GroupRequest::Create { id, .. } = &*request {
            if !valid_client_id(id) {
                return Err(Rejection {
                    client_id: None,
                    code: ErrorCode::InvalidId,
                    message: format!("\"id\" must be 1-{CLIENT_ID_MAX} characters of A-Z a-z 0-9 - _ . :"),
                });
            }
        }
        match request {
            GroupRequest::Create { name, members, .. } => {
                *name = checked_name(name).map_err(|m| refuse(ErrorCode::BadRequest, m))?;
                if let Some(bad) = members.iter().find(|m| UserName::parse(m).is_err()) {
                    return Err(refuse(ErrorCode::UnknownRecipient, format!("no user {bad:?}")));
                }
            }
            GroupRequest::Rename { name, .. } => {
                *name = checked_name(name).map_err(|m| refuse(ErrorCode::BadRequest, m))?;
            }
            GroupRequest::Add { user, .. }
            | GroupRequest::Remove { user, .. }
            | GroupRequest::Promote { user, .. }
            | GroupRequest::Demote { user, .. } => {
                if UserName::parse(user).is_err() {
                    return Err(refuse(ErrorCode::UnknownRecipient, format!("no user {user:?}")));
                }
            }
            GroupRequest::Timer { seconds, .. } => {
                if !TIMER_CHOICES.contains(seconds) {
                    return Err(refuse(
                        ErrorCode::BadRequest,
                        format!("a timer is one of {TIMER_CHOICES:?} seconds"),
                    ));
                }
            }
            GroupRequest::Leave { .. } => {}
        }
        Ok(self)
    }

    /// The group a change names (`None` for `create`).
    pub fn group(&self) -> Option<GroupId> {
        match self {
            GroupRequest::Create { .. } => None,
            GroupRequest::Add { group, .. }
            | GroupRequest::Remove { group, .. }
            | GroupRequest::Promote { group, .. }
            | GroupRequest::Demote { group, .. }
            | GroupRequest::Leave { group }
            | GroupRequest::Rename { group, .. }
            | GroupRequest::Timer { group, .. } => Some(*group),
        }
    }

    /// The client's id of a `create` (what its error event names).
    pub fn client_id(&self) -> Option<&str> {
        match self {
            GroupRequest::Create { id, .. } => Some(id),
            _ => None,
        }
    }
}

/// A group as `GET /v1/groups/{id}` shows it to a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Group {
    pub id: GroupId,
    pub name: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub created_by: String,
    /// Its disappearing-message timer (0 is off).
    pub timer_seconds: i64,
    /// Current members, oldest first.
    pub members: Vec<GroupMember>,
}

/// One current member of a [`Group`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupMember {
    pub user: String,
    pub admin: bool,
    /// When they (last) joined, Unix milliseconds.
    pub joined_at: i64,
}

/// `GET /v1/groups`: the caller's groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupList {
    pub items: Vec<Group>,
}

/// `POST /v1/groups`: a new group with the caller as admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewGroup {
    /// Optional: the caller's own id for this request (as `create`'s
    /// `id`), so that repeating it never makes a second group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    /// Members besides the caller.
    #[serde(default)]
    pub members: Vec<String>,
}

/// `PATCH /v1/groups/{id}`: rename.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupPatch {
    pub name: String,
}

/// `PUT /v1/groups/{id}/timer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupTimer {
    pub seconds: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Event, InboxEvent};

    #[test]
    fn group_requests_have_an_op_tag() {
        let create: GroupRequest = serde_json::from_str(
            r#"{"op":"create","id":"c1","name":"Team","members":["bob","carol"]}"#,
        )
        .unwrap();
        assert_eq!(create.client_id(), Some("c1"));
        let add: GroupRequest =
            serde_json::from_str(r#"{"op":"add","group":7,"user":"dave"}"#).unwrap();
        assert_eq!(add.group(), Some(7));
        assert!(serde_json::from_str::<GroupRequest>(r#"{"op":"explode","group":7}"#).is_err());
    }

    #[test]
    fn group_names_are_trimmed_and_bounded() {
        assert_eq!(group_name("  Team "), Some("Team"));
        assert_eq!(group_name("   "), None);
        assert_eq!(group_name(&"x".repeat(NAME_MAX)).map(str::len), Some(NAME_MAX));
        assert_eq!(group_name(&"x".repeat(NAME_MAX + 1)), None);
    }

    #[test]
    fn group_events_have_a_flat_wire_shape() {
        let event = InboxEvent {
            seq: Some(3),
            event: Event::Group(GroupEvent {
                group: 7,
                change: GroupChange::Promoted,
                user: Some("bob".into()),
                by: None,
                name: "Team".into(),
                at: 1,
                members: None,
                client_id: None,
                seconds: None,
            }),
        };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"seq":3,"type":"group","group":7,"change":"promoted","user":"bob","by":null,"name":"Team","at":1}"#
        );
        assert_eq!(serde_json::from_str::<InboxEvent>(&json).unwrap(), event);
    }
}
