//! Registration, login (token issue) and logout.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use protocol::ErrorCode;

use super::error::ApiError;
use super::extract::{Caller, JsonBody};
use super::{blocking, AppState};

#[derive(Deserialize)]
pub struct Credentials {
    name: String,
    password: String,
}

#[derive(Serialize)]
pub struct TokenResponse {
    token: String,
    /// Unix milliseconds.
    expires_at: i64,
}

/// `POST /v1/users {"name","password"}` → 201 `{"name"}`.
pub async fn register(
    State(state): State<AppState>,
    JsonBody(credentials): JsonBody<Credentials>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let store = state.store.clone();
    let name =
        blocking(move || store.create_user(&credentials.name, &credentials.password)).await?;
    tracing::info!(user = %name, "user registered");
    Ok((StatusCode::CREATED, Json(json!({ "name": name.as_str() }))))
}

/// `POST /v1/tokens {"name","password"}` → 201 `{"token","expires_at"}`.
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

/// `DELETE /v1/tokens/current` → 204; the token stops working at once on
/// this server (MQTT included) and within the auth cache TTL elsewhere.
pub async fn logout(State(state): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    let store = state.store.clone();
    let token = caller.token.clone();
    blocking(move || store.revoke_token(&token)).await?;
    state.authenticator.forget(&caller.token);
    tracing::info!(user = %caller.user, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}
