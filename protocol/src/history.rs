//! The HTTP read API's shapes: history, the chat list, stars and search.
//!
//! Every list is newest first and paged the same way: a request takes
//! `before` (a cursor from a previous page; omitted for the newest page)
//! and `limit` (1–[`PAGE_MAX`], default [`PAGE_DEFAULT`]); a response is a
//! [`Page`] whose `next` is the cursor for the following, older page, or
//! `null` at the end. A cursor is opaque: pass it back unchanged. Pages are
//! stable: items that arrive after the first page never shift later pages.

use serde::{Deserialize, Serialize};

/// Items per page when `limit` is not given.
pub const PAGE_DEFAULT: usize = 50;
/// Most items one page may ask for.
pub const PAGE_MAX: usize = 200;

/// One page of a list, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `before` for the next (older) page; `null` when there is none.
    pub next: Option<i64>,
}

/// `before` and `limit`, the paging parameters of every list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct PageQuery {
    /// A cursor from a previous page's `next`; omit for the newest page.
    pub before: Option<i64>,
    /// Items per page, 1–200 (default 50).
    pub limit: Option<usize>,
}

impl PageQuery {
    /// The page size, or a message saying why `limit` is out of range.
    pub fn limit(&self) -> Result<usize, String> {
        match self.limit {
            None => Ok(PAGE_DEFAULT),
            Some(n) if (1..=PAGE_MAX).contains(&n) => Ok(n),
            Some(n) => Err(format!("limit must be 1-{PAGE_MAX}, not {n}")),
        }
    }
}

/// A message as history shows it to one of its two participants, or to a
/// member of its group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryMessage {
    /// Server message id (the `id` of its message and ack events).
    pub id: i64,
    /// The sender's own id for it.
    pub client_id: String,
    pub from: String,
    /// The recipient of a 1:1 message; absent on a group message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The group of a group message; absent on a 1:1 message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<i64>,
    /// The text; may be empty for a media message.
    pub body: String,
    /// The media it carries, if any: download with `GET /v1/media/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<crate::messages::MediaRef>,
    /// When the server stored it (✓), Unix milliseconds.
    pub sent_at: i64,
    /// When it reached the recipient's device (✓✓); on your own group
    /// message, when it had reached every member's (null until all).
    pub delivered_at: Option<i64>,
    /// When the recipient read it. For the sender, shown only while both
    /// participants have read receipts on, as with receipt events. On your
    /// own group message, when every member had read it, as the group's
    /// aggregate `read` receipt says.
    pub read_at: Option<i64>,
    /// When it disappears (sent while the chat had a timer); absent for
    /// messages that stay, as in inbox events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Whether the caller has starred it.
    pub starred: bool,
}

/// One conversation in `GET /v1/chats`: a 1:1 chat (`peer`) or a group
/// (`group` and `name`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Chat {
    /// The other participant of a 1:1 chat; absent for a group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The group's id; absent for a 1:1 chat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<i64>,
    /// The group's name; absent for a 1:1 chat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The newest message either way (in a group: the newest the caller
    /// may see).
    pub last_message: HistoryMessage,
    /// Messages from `peer` (in a group: from the other members) that the
    /// caller has not read.
    pub unread: i64,
    /// The chat's disappearing-message timer in seconds; 0 when off.
    pub timer_seconds: i64,
}

/// `PUT /v1/chats/{peer}/timer` body, and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimerSetting {
    /// 0 (off), 86400 (24 h), 604800 (7 days) or 7776000 (90 days).
    pub seconds: i64,
}

/// One entry of `GET /v1/stars`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StarredMessage {
    /// The other participant of a starred 1:1 message; absent for a group
    /// message (its `group` is in `message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// When the caller starred it, Unix milliseconds.
    pub starred_at: i64,
    pub message: HistoryMessage,
}

/// The answer to starring or unstarring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StarState {
    pub message_id: i64,
    pub starred: bool,
}

/// `GET /v1/search` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct SearchQuery {
    /// Words to find; a message matches when it contains every one, in
    /// any case and with or without accents.
    pub q: String,
    /// Only the conversation with this user.
    pub peer: Option<String>,
    /// Only this group's messages (those inside the caller's membership).
    pub group: Option<i64>,
}

/// One member's receipt for a group message, in the sender's "message
/// info" (`GET /v1/groups/{id}/messages/{message_id}/receipts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberReceipt {
    pub user: String,
    /// When the message reached one of their devices; null until then.
    pub delivered_at: Option<i64>,
    /// When they read it; null until then, and always null for a member
    /// with read receipts off (or while the sender has them off).
    pub read_at: Option<i64>,
}

/// One item of `GET /v1/groups/{id}/messages`: a message (as 6.1, with
/// `group` instead of `to`), or a change of the group, shown where it
/// happened among the messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum GroupHistoryItem {
    Message(HistoryMessage),
    Change(GroupChangeEntry),
}

/// A system entry of a group's history ("alice added carol"): the `group`
/// inbox event of the change (its `type` is `group`, it has no `seq`), and
/// the id of the message it came after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupChangeEntry {
    /// Always `group`, as on the inbox event.
    #[serde(rename = "type")]
    pub kind: ChangeKind,
    #[serde(flatten)]
    pub event: crate::groups::GroupEvent,
    /// The newest message of the group when it happened (0 before the
    /// first): the entry comes after that message and before the next.
    pub after_message: i64,
}

impl GroupChangeEntry {
    pub fn new(event: crate::groups::GroupEvent, after_message: i64) -> GroupChangeEntry {
        GroupChangeEntry {
            kind: ChangeKind::Group,
            event,
            after_message,
        }
    }
}

/// The `type` of a [`GroupChangeEntry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Group,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::{GroupChange, GroupEvent};

    #[test]
    fn a_system_entry_is_the_group_event_flat_with_its_place() {
        let entry = GroupHistoryItem::Change(GroupChangeEntry::new(
            GroupEvent {
                group: 17,
                change: GroupChange::Added,
                user: Some("dave".into()),
                by: Some("alice".into()),
                name: "Team".into(),
                at: 5,
                members: None,
                client_id: None,
                seconds: None,
            },
            345,
        ));
        let json = serde_json::to_string(&entry).unwrap();
        assert_eq!(
            json,
            r#"{"type":"group","group":17,"change":"added","user":"dave","by":"alice","name":"Team","at":5,"after_message":345}"#
        );
        assert_eq!(serde_json::from_str::<GroupHistoryItem>(&json).unwrap(), entry);
        let message = r#"{"id":1,"client_id":"c","from":"alice","group":17,"body":"hi","sent_at":1,"delivered_at":null,"read_at":null,"starred":false}"#;
        assert!(matches!(
            serde_json::from_str::<GroupHistoryItem>(message).unwrap(),
            GroupHistoryItem::Message(HistoryMessage { group: Some(17), to: None, .. })
        ));
    }
}
