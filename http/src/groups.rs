//! `/v1/groups`: creating and changing groups over HTTP, through the same
//! pipeline as `u/{me}/group` (every change is committed by the bridge
//! with its `group` inbox events before the answer), and reading the
//! caller's groups.
//!
//! A non-member asking about a group gets `404 not_a_member`, whether or
//! not the group exists, so group ids cannot be probed.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use bridge::{Outcome, Request};
use protocol::groups::{Group, GroupId, GroupList, GroupPatch, GroupRequest, GroupTimer, NewGroup};
use protocol::ErrorCode;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, JsonBody};
use super::{blocking, submit, AppState};

/// A group id from a path; anything else is a group the caller is not in.
fn group_id(id: &str) -> Result<GroupId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::new(ErrorCode::NotAMember, format!("you are not in group {id:?}")))
}

/// Runs a group request through the bridge; the group after it.
async fn change(state: &AppState, caller: Caller, op: GroupRequest) -> Result<Group, ApiError> {
    let op = op
        .validated()
        .map_err(|rejection| ApiError::new(rejection.code, rejection.message))?;
    let request = Request::Group {
        user: caller.user,
        op,
    };
    match submit(state, request, "applied").await? {
        Outcome::Group(group) => Ok(*group),
        _ => Err(ApiError::new(ErrorCode::Internal, "unexpected outcome")),
    }
}

/// Creates a group with the caller as its admin. Every member gets a
/// `created` group event.
#[utoipa::path(
    post, path = "/v1/groups", tag = "groups", security(("bearer" = [])),
    request_body = NewGroup,
    responses(
        (status = 201, description = "The group", body = Group),
        (status = 400, description = "A blank or too long name, or a bad `id`", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 404, description = "`unknown_recipient`: a member is not a user", body = ErrorBody),
        (status = 409, description = "`group_full`: too many members", body = ErrorBody),
    ),
)]
pub async fn create_group(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(new): JsonBody<NewGroup>,
) -> Result<(StatusCode, Json<Group>), ApiError> {
    let op = GroupRequest::Create {
        id: new.id.unwrap_or_else(store::groups::new_create_id),
        name: new.name,
        members: new.members,
    };
    Ok((StatusCode::CREATED, Json(change(&state, caller, op).await?)))
}

/// The caller's groups.
#[utoipa::path(
    get, path = "/v1/groups", tag = "groups", security(("bearer" = [])),
    responses(
        (status = 200, description = "The groups the caller is a member of", body = GroupList),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
    ),
)]
pub async fn list_groups(State(state): State<AppState>, caller: Caller) -> Result<Json<GroupList>, ApiError> {
    let store = state.store.clone();
    let items = blocking(move || store.groups_described(caller.user.as_str())).await?;
    Ok(Json(GroupList { items }))
}

/// One of the caller's groups.
#[utoipa::path(
    get, path = "/v1/groups/{id}", tag = "groups", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The group's id")),
    responses(
        (status = 200, description = "The group", body = Group),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 404, description = "`not_a_member` (or no such group)", body = ErrorBody),
    ),
)]
pub async fn get_group(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Group>, ApiError> {
    let group = group_id(&id)?;
    let store = state.store.clone();
    let found = blocking(move || store.group_for(group, caller.user.as_str())).await?;
    found
        .map(Json)
        .ok_or_else(|| ApiError::new(ErrorCode::NotAMember, format!("you are not in group {group}")))
}

/// Renames a group (admins).
#[utoipa::path(
    patch, path = "/v1/groups/{id}", tag = "groups", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The group's id")),
    request_body = GroupPatch,
    responses(
        (status = 200, description = "The group", body = Group),
        (status = 400, description = "A blank or too long name", body = ErrorBody),
        (status = 403, description = "`not_admin`", body = ErrorBody),
        (status = 404, description = "`not_a_member`", body = ErrorBody),
    ),
)]
pub async fn rename_group(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<GroupPatch>,
) -> Result<Json<Group>, ApiError> {
    let op = GroupRequest::Rename {
        group: group_id(&id)?,
        name: patch.name,
    };
    Ok(Json(change(&state, caller, op).await?))
}

/// Adds a member (admins). Adding a member twice changes nothing.
#[utoipa::path(
    put, path = "/v1/groups/{id}/members/{user}", tag = "groups", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The group's id"), ("user" = String, Path, description = "Who to add")),
    responses(
        (status = 200, description = "The group", body = Group),
        (status = 403, description = "`not_admin`", body = ErrorBody),
        (status = 404, description = "`not_a_member`, or `unknown_recipient`", body = ErrorBody),
        (status = 409, description = "`group_full`", body = ErrorBody),
    ),
)]
pub async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user)): Path<(String, String)>,
) -> Result<Json<Group>, ApiError> {
    let op = GroupRequest::Add {
        group: group_id(&id)?,
        user,
    };
    Ok(Json(change(&state, caller, op).await?))
}

/// Removes a member (admins); the caller's own name leaves the group.
/// Removing a non-member changes nothing.
#[utoipa::path(
    delete, path = "/v1/groups/{id}/members/{user}", tag = "groups", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The group's id"), ("user" = String, Path, description = "Who to remove")),
    responses(
        (status = 200, description = "The group after the change", body = Group),
        (status = 403, description = "`not_admin`", body = ErrorBody),
        (status = 404, description = "`not_a_member`", body = ErrorBody),
    ),
)]
pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user)): Path<(String, String)>,
) -> Result<Json<Group>, ApiError> {
    let group = group_id(&id)?;
    let op = if user == caller.user.as_str() {
        GroupRequest::Leave { group }
    } else {
        GroupRequest::Remove { group, user }
    };
    Ok(Json(change(&state, caller, op).await?))
}

/// Makes a member an admin (admins).
#[utoipa::path(
    put, path = "/v1/groups/{id}/admins/{user}", tag = "groups", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The group's id"), ("user" = String, Path, description = "Who to promote")),
    responses(
        (status = 200, description = "The group", body = Group),
        (status = 403, description = "`not_admin`", body = ErrorBody),
        (status = 404, description = "`not_a_member`", body = ErrorBody),
    ),
)]
pub async fn promote_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user)): Path<(String, String)>,
) -> Result<Json<Group>, ApiError> {
    let op = GroupRequest::Promote {
        group: group_id(&id)?,
        user,
    };
    Ok(Json(change(&state, caller, op).await?))
}

/// Makes an admin a plain member (admins; not the last admin).
#[utoipa::path(
    delete, path = "/v1/groups/{id}/admins/{user}", tag = "groups", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The group's id"), ("user" = String, Path, description = "Who to demote")),
    responses(
        (status = 200, description = "The group", body = Group),
        (status = 400, description = "The last admin cannot be demoted", body = ErrorBody),
        (status = 403, description = "`not_admin`", body = ErrorBody),
        (status = 404, description = "`not_a_member`", body = ErrorBody),
    ),
)]
pub async fn demote_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user)): Path<(String, String)>,
) -> Result<Json<Group>, ApiError> {
    let op = GroupRequest::Demote {
        group: group_id(&id)?,
        user,
    };
    Ok(Json(change(&state, caller, op).await?))
}

/// Sets the group's disappearing-message timer (admins).
#[utoipa::path(
    put, path = "/v1/groups/{id}/timer", tag = "groups", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The group's id")),
    request_body = GroupTimer,
    responses(
        (status = 200, description = "The group", body = Group),
        (status = 400, description = "Not one of 0, 86400, 604800, 7776000", body = ErrorBody),
        (status = 403, description = "`not_admin`", body = ErrorBody),
        (status = 404, description = "`not_a_member`", body = ErrorBody),
    ),
)]
pub async fn set_group_timer(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(timer): JsonBody<GroupTimer>,
) -> Result<Json<Group>, ApiError> {
    let op = GroupRequest::Timer {
        group: group_id(&id)?,
        seconds: timer.seconds,
    };
    Ok(Json(change(&state, caller, op).await?))
}
