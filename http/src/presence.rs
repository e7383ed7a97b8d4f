//! Presence over HTTP, under the same rule as MQTT, and privacy settings.

use axum::extract::{Path, State};
use axum::Json;
use protocol::presence::{Presence, Privacy};
use protocol::{ErrorCode, UserName};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, JsonBody};
use super::{blocking, AppState};

/// A user's presence: `{online, last_seen}`, or `{"hidden":true}` when the
/// caller may not see it; 404 for no such user.
#[utoipa::path(
    get, path = "/v1/users/{name}/presence", tag = "presence", security(("bearer" = [])),
    params(("name" = String, Path, description = "A user name")),
    responses(
        (status = 200, description = "Presence, or hidden", body = Presence),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    ),
)]
pub async fn presence(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Presence>, ApiError> {
    let target =
        UserName::parse(&name).map_err(|_| ApiError::new(ErrorCode::NotFound, "no such user"))?;
    let store = state.store.clone();
    let lookup = target.to_string();
    let (online, last_seen) = blocking(move || store.presence_of(&lookup)).await?;
    let policy = state.presence_policy.clone();
    let viewer = caller.user.to_string();
    let visible = tokio::task::spawn_blocking(move || policy.may_see(&viewer, target.as_str()))
        .await
        .unwrap_or(false);
    Ok(Json(if visible {
        Presence::visible(online, last_seen)
    } else {
        Presence::hidden()
    }))
}

/// Privacy settings as the API shows them.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SettingsView {
    last_seen: Privacy,
    read_receipts: bool,
}

impl From<store::presence::Settings> for SettingsView {
    fn from(settings: store::presence::Settings) -> SettingsView {
        SettingsView {
            last_seen: settings.last_seen,
            read_receipts: settings.read_receipts,
        }
    }
}

/// The caller's privacy settings.
#[utoipa::path(
    get, path = "/v1/me/privacy", tag = "presence", security(("bearer" = [])),
    responses(
        (status = 200, description = "Settings in force", body = SettingsView),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
    ),
)]
pub async fn settings(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<SettingsView>, ApiError> {
    let store = state.store.clone();
    let settings = blocking(move || store.settings(caller.user.as_str())).await?;
    Ok(Json(settings.into()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsChange {
    last_seen: Option<Privacy>,
    read_receipts: Option<bool>,
}

/// Changes the privacy settings given (`{"last_seen"?, "read_receipts"?}`)
/// and returns the settings in force. Takes effect on the next presence
/// delivery.
#[utoipa::path(
    put, path = "/v1/me/privacy", tag = "presence", security(("bearer" = [])),
    request_body = SettingsChange,
    responses(
        (status = 200, description = "Settings in force", body = SettingsView),
        (status = 400, description = "Unknown field or value", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
    ),
)]
pub async fn update_settings(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(change): JsonBody<SettingsChange>,
) -> Result<Json<SettingsView>, ApiError> {
    let store = state.store.clone();
    let user = caller.user.to_string();
    let settings =
        blocking(move || store.update_settings(&user, change.last_seen, change.read_receipts))
            .await?;
    state.presence_policy.forget(caller.user.as_str());
    Ok(Json(settings.into()))
}
