//! The read side of chat over HTTP: the chat list, a conversation's
//! history, stars and search. Writes (starring) go through the bridge like
//! MQTT requests, so the caller's other devices hear of them in their inbox.

use axum::extract::{Path, State};
use axum::Json;
use bridge::{Outcome, Request};
use protocol::history::{
    Chat, HistoryMessage, Page, PageQuery, SearchQuery, StarState, StarredMessage, TimerSetting,
};
use protocol::messages::{StarRequest, TIMER_CHOICES};
use protocol::{ErrorCode, UserName};
use store::search::{BadSearch, Scope};

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, JsonBody, QueryParams};
use super::{blocking, submit, AppState};

/// The page size asked for, or a 400.
pub(crate) fn limit(page: &PageQuery) -> Result<usize, ApiError> {
    page.limit()
        .map_err(|message| ApiError::new(ErrorCode::BadRequest, message))
}

/// A user named in a path or query: one that cannot exist is simply not
/// found.
fn peer_name(name: &str) -> Result<UserName, ApiError> {
    UserName::parse(name).map_err(|_| ApiError::new(ErrorCode::NotFound, "no such user"))
}

/// Conversations, the one with the newest message first: 1:1 chats and
/// groups.
#[utoipa::path(
    get, path = "/v1/chats", tag = "history", security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of chats", body = Page<Chat>),
        (status = 400, description = "`limit` out of range", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
    ),
)]
pub async fn chats(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Page<Chat>>, ApiError> {
    let limit = limit(&page)?;
    blocking(move || {
        let me = caller.user.as_str();
        let mut chats = state.store.chats(me, page.before, limit)?;
        state
            .store
            .hide_unshared_reads(me, chats.items.iter_mut().map(|c| &mut c.last_message))?;
        Ok(Json(chats))
    })
    .await
}

/// The messages between the caller and `peer`, newest first.
#[utoipa::path(
    get, path = "/v1/chats/{peer}/messages", tag = "history", security(("bearer" = [])),
    params(("peer" = String, Path, description = "The other participant"), PageQuery),
    responses(
        (status = 200, description = "A page of messages", body = Page<HistoryMessage>),
        (status = 400, description = "`limit` out of range", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 404, description = "No chat with this user (no message either way, or no such user)", body = ErrorBody),
    ),
)]
pub async fn conversation(
    State(state): State<AppState>,
    caller: Caller,
    Path(peer): Path<String>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Page<HistoryMessage>>, ApiError> {
    let limit = limit(&page)?;
    let peer = peer_name(&peer)?;
    let messages = blocking(move || {
        let me = caller.user.as_str();
        let mut messages = state
            .store
            .conversation(me, peer.as_str(), page.before, limit)?;
        // A chat exists once either side has written; asking for one that
        // does not (a stranger, an unknown name) is 404, as for any
        // resource the caller may not see. Only an empty page needs the
        // check, so paging a real chat costs nothing more.
        if messages.items.is_empty()
            && !state.store.has_written_to(me, peer.as_str())?
            && !state.store.has_written_to(peer.as_str(), me)?
        {
            return Ok(None);
        }
        state.store.hide_unshared_reads(me, &mut messages.items)?;
        Ok(Some(messages))
    })
    .await?;
    messages
        .map(Json)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such chat"))
}

/// The caller's starred messages, newest message first.
#[utoipa::path(
    get, path = "/v1/stars", tag = "stars", security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of starred messages", body = Page<StarredMessage>),
        (status = 400, description = "`limit` out of range", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
    ),
)]
pub async fn stars(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Page<StarredMessage>>, ApiError> {
    let limit = limit(&page)?;
    blocking(move || {
        let me = caller.user.as_str();
        let mut stars = state.store.stars(me, page.before, limit)?;
        state
            .store
            .hide_unshared_reads(me, stars.items.iter_mut().map(|s| &mut s.message))?;
        Ok(Json(stars))
    })
    .await
}

/// Stars a message the caller sent or received. Idempotent.
#[utoipa::path(
    put, path = "/v1/messages/{id}/star", tag = "stars", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Server message id")),
    responses(
        (status = 200, description = "Starred", body = StarState),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 404, description = "Not a message of the caller's", body = ErrorBody),
    ),
)]
pub async fn star(
    state: State<AppState>,
    caller: Caller,
    id: Path<String>,
) -> Result<Json<StarState>, ApiError> {
    set_star(state, caller, id, true).await
}

/// Unstars a message. Idempotent.
#[utoipa::path(
    delete, path = "/v1/messages/{id}/star", tag = "stars", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Server message id")),
    responses(
        (status = 200, description = "Not starred", body = StarState),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 404, description = "Not a message of the caller's", body = ErrorBody),
    ),
)]
pub async fn unstar(
    state: State<AppState>,
    caller: Caller,
    id: Path<String>,
) -> Result<Json<StarState>, ApiError> {
    set_star(state, caller, id, false).await
}

async fn set_star(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    starred: bool,
) -> Result<Json<StarState>, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::NotFound, format!("no message {id}")))?;
    let request = Request::Star {
        user: caller.user,
        star: StarRequest { id, starred },
    };
    apply(&state, request).await?;
    Ok(Json(StarState {
        message_id: id,
        starred,
    }))
}

/// Sets the chat's disappearing-message timer for messages sent from now
/// on. Both participants get a `timer` inbox event when it changes.
#[utoipa::path(
    put, path = "/v1/chats/{peer}/timer", tag = "history", security(("bearer" = [])),
    params(("peer" = String, Path, description = "The other participant")),
    request_body = TimerSetting,
    responses(
        (status = 200, description = "The timer in force", body = TimerSetting),
        (status = 400, description = "Not one of 0, 86400, 604800, 7776000", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "No message exchanged with the peer yet (`no_chat`)", body = ErrorBody),
    ),
)]
pub async fn set_timer(
    State(state): State<AppState>,
    caller: Caller,
    Path(peer): Path<String>,
    JsonBody(setting): JsonBody<TimerSetting>,
) -> Result<Json<TimerSetting>, ApiError> {
    let peer = peer_name(&peer)?;
    if !TIMER_CHOICES.contains(&setting.seconds) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("seconds must be one of {TIMER_CHOICES:?}"),
        ));
    }
    let request = Request::Timer {
        user: caller.user,
        peer: peer.to_string(),
        seconds: setting.seconds,
    };
    apply(&state, request).await?;
    Ok(Json(setting))
}

/// The caller's messages that contain every word of `q`, newest first:
/// their 1:1 chats and the groups they are or were in (only messages sent
/// while they were a member).
#[utoipa::path(
    get, path = "/v1/search", tag = "history", security(("bearer" = [])),
    params(SearchQuery, PageQuery),
    responses(
        (status = 200, description = "A page of matching messages", body = Page<HistoryMessage>),
        (status = 400, description = "No words in `q`, too many words, both `peer` and `group`, or `limit` out of range", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
    ),
)]
pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<SearchQuery>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Page<HistoryMessage>>, ApiError> {
    let limit = limit(&page)?;
    let peer = query.peer.as_deref().map(peer_name).transpose()?;
    if peer.is_some() && query.group.is_some() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "`peer` and `group` cannot be given together",
        ));
    }
    let found = blocking(move || {
        let me = caller.user.as_str();
        let scope = match (&peer, query.group) {
            (Some(peer), _) => Scope::Peer(peer.as_str()),
            (None, Some(group)) => Scope::Group(group),
            (None, None) => Scope::All,
        };
        let mut found = state.store.search(me, &query.q, scope, page.before, limit)?;
        if let Ok(page) = &mut found {
            state.store.hide_unshared_reads(me, &mut page.items)?;
        }
        Ok(found)
    })
    .await?;
    match found {
        Ok(page) => Ok(Json(page)),
        Err(BadSearch::NoWords) => Err(ApiError::new(
            ErrorCode::BadRequest,
            "`q` has no words to search for",
        )),
        Err(BadSearch::TooManyWords) => Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("`q` has more than {} words", store::search::QUERY_MAX_WORDS),
        )),
    }
}

/// Runs a request through the bridge, like its MQTT form, so the events it
/// makes reach the users' devices; a refusal becomes the HTTP error.
async fn apply(state: &AppState, request: Request) -> Result<(), ApiError> {
    match submit(state, request, "applied").await? {
        Outcome::Applied => Ok(()),
        _ => Err(ApiError::new(ErrorCode::Internal, "unexpected outcome")),
    }
}
