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

/// A message as history shows it to one of its two participants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryMessage {
    /// Server message id (the `id` of its message and ack events).
    pub id: i64,
    /// The sender's own id for it.
    pub client_id: String,
    pub from: String,
    pub to: String,
    /// The text; may be empty for a media message.
    pub body: String,
    /// The media it carries, if any: download with `GET /v1/media/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<crate::messages::MediaRef>,
    /// When the server stored it (✓), Unix milliseconds.
    pub sent_at: i64,
    /// When it reached the recipient's device (✓✓).
    pub delivered_at: Option<i64>,
    /// When the recipient read it. For the sender, shown only while both
    /// participants have read receipts on, as with receipt events.
    pub read_at: Option<i64>,
    /// When it disappears (sent while the chat had a timer); absent for
    /// messages that stay, as in inbox events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Whether the caller has starred it.
    pub starred: bool,
}

/// One conversation in `GET /v1/chats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Chat {
    /// The other participant.
    pub peer: String,
    /// The newest message either way.
    pub last_message: HistoryMessage,
    /// Messages from `peer` that the caller has not read.
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
    /// The other participant of the starred message.
    pub peer: String,
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
}
