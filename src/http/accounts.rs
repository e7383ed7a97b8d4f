//! Registration, login (token issue) and logout.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use protocol::ErrorCode;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, JsonBody};
use super::{blocking, AppState};

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Credentials {
    name: String,
    password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    token: String,
    /// Unix milliseconds.
    expires_at: i64,
}

/// The name as registered.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Registered {
    name: String,
}

/// Registers a user: `{"name","password"}` → 201 `{"name"}`.
#[utoipa::path(
    post, path = "/v1/users", tag = "accounts", request_body = Credentials,
    responses(
        (status = 201, description = "Registered", body = Registered),
        (status = 400, description = "Bad name or password", body = ErrorBody),
        (status = 409, description = "Name taken", body = ErrorBody),
    ),
)]
pub async fn register(
    State(state): State<AppState>,
    JsonBody(credentials): JsonBody<Credentials>,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    let store = state.store.clone();
    let name =
        blocking(move || store.create_user(&credentials.name, &credentials.password)).await?;
    tracing::info!(user = %name, "user registered");
    Ok((
        StatusCode::CREATED,
        Json(Registered {
            name: name.to_string(),
        }),
    ))
}

/// Logs in: `{"name","password"}` → 201 `{"token","expires_at"}`.
#[utoipa::path(
    post, path = "/v1/tokens", tag = "accounts", request_body = Credentials,
    responses(
        (status = 201, description = "A new token", body = TokenResponse),
        (status = 401, description = "Wrong name or password", body = ErrorBody),
        (status = 429, description = "Too many failed logins for this name", body = ErrorBody),
    ),
)]
pub async fn login(
    State(state): State<AppState>,
    JsonBody(credentials): JsonBody<Credentials>,
) -> Result<(StatusCode, Json<TokenResponse>), ApiError> {
    let name = credentials.name.clone();
    if let Err(wait) = state.login_throttle.check(&name) {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many failed logins for {name:?}; retry in {} s",
                wait.as_secs() + 1
            ),
        ));
    }
    let store = state.store.clone();
    let ttl = state.token_ttl;
    let issued = blocking(move || {
        let user = store.verify_password(&credentials.name, &credentials.password)?;
        store.issue_token(&user, ttl)
    })
    .await;
    match &issued {
        Ok(_) => state.login_throttle.succeeded(&name),
        Err(e) if e.code == ErrorCode::Unauthorized => state.login_throttle.failed(&name),
        Err(_) => {}
    }
    let issued = issued?;
    Ok((
        StatusCode::CREATED,
        Json(TokenResponse {
            token: issued.token,
            expires_at: issued.expires_at,
        }),
    ))
}

/// Logs out: the token stops working at once on this server (MQTT
/// included) and within the auth cache TTL elsewhere.
#[utoipa::path(
    delete, path = "/v1/tokens/current", tag = "accounts", security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
    ),
)]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    let store = state.store.clone();
    let token = caller.token.clone();
    blocking(move || store.revoke_token(&token)).await?;
    state.authenticator.revoke(&caller.token);
    tracing::info!(user = %caller.user, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}
