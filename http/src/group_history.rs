//! Reading groups over HTTP: a group's history and the sender's
//! per-member receipts ("message info"). Who may see what is the store's
//! rule ([`store::group_history`]); a caller who may not see a group gets
//! the same 404 whether or not it exists.

use axum::extract::{Path, State};
use axum::Json;
use protocol::groups::GroupId;
use protocol::history::{GroupHistoryItem, MemberReceipt, Page, PageQuery};
use protocol::ErrorCode;
use serde::Serialize;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, QueryParams};
use super::{blocking, AppState};

/// The one answer for a group the caller may not read, or that does not
/// exist: they cannot tell which.
fn no_group() -> ApiError {
    ApiError::new(ErrorCode::NotAMember, "no such group among yours")
}

/// An id in a path; one that is not a number names nothing.
fn id(text: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| no_group())
}

/// `GET /v1/groups/{id}/messages/{message_id}/receipts`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MemberReceipts {
    /// One per current member who was in the group when it was sent,
    /// oldest member first.
    pub items: Vec<MemberReceipt>,
}

/// The group's messages inside the caller's membership windows, newest
/// first, with the group's changes (system entries) among them.
#[utoipa::path(
    get, path = "/v1/groups/{id}/messages", tag = "groups", operation_id = "group_history", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Group id"), PageQuery),
    responses(
        (status = 200, description = "A page of messages and system entries", body = Page<GroupHistoryItem>),
        (status = 400, description = "`limit` out of range", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 404, description = "Not a group the caller is or was in (or no such group): `not_a_member`", body = ErrorBody),
    ),
)]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Page<GroupHistoryItem>>, ApiError> {
    let limit = super::history::limit(&page)?;
    let group: GroupId = id(&group)?;
    let found = blocking(move || {
        state
            .store
            .group_history(caller.user.as_str(), group, page.before, limit)
    })
    .await?;
    found.map(Json).ok_or_else(no_group)
}

/// Per-member delivery and read times of one of the caller's own group
/// messages (WhatsApp's "message info").
#[utoipa::path(
    get, path = "/v1/groups/{id}/messages/{message_id}/receipts", tag = "groups", operation_id = "group_message_receipts", security(("bearer" = [])),
    params(
        ("id" = i64, Path, description = "Group id"),
        ("message_id" = i64, Path, description = "Server message id of the caller's message"),
    ),
    responses(
        (status = 200, description = "Each member's times", body = MemberReceipts),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 404, description = "Not a message the caller sent to this group (`not_found`)", body = ErrorBody),
    ),
)]
pub async fn receipts(
    State(state): State<AppState>,
    caller: Caller,
    Path((group, message)): Path<(String, String)>,
) -> Result<Json<MemberReceipts>, ApiError> {
    let not_found = || ApiError::new(ErrorCode::NotFound, "no such message of yours");
    let group: GroupId = group.parse().map_err(|_| not_found())?;
    let message: i64 = message.parse().map_err(|_| not_found())?;
    let found = blocking(move || {
        state
            .store
            .group_message_receipts(caller.user.as_str(), group, message)
    })
    .await?;
    // Not paged: one message has at most `groups.max_members` members.
    found
        .map(|items| Json(MemberReceipts { items }))
        .ok_or_else(not_found)
}
