//! Registration, login (token issue) and logout.
//!
//! Both registration and login run argon2, so both pass the limits of
//! [`super::throttle`]: registrations per source address, failed logins
//! per name and per source address (counted before the password is
//! checked, so a concurrent burst cannot slip past), and the password gate
//! that bounds how many hashes run at once.

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use protocol::{ErrorCode, UserName};

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, JsonBody};
use super::throttle::{source_key, GateRefusal};
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
        (status = 429, description = "Too many registrations from this address; see Retry-After", body = ErrorBody),
        (status = 503, description = "Too many password checks at once; see Retry-After", body = ErrorBody),
    ),
)]
pub async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(credentials): JsonBody<Credentials>,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    let source = source_key(peer.ip());
    // Every attempt counts, whatever its outcome: a refused name is as
    // much an attempt as a new account.
    if let Err(wait) = state.accounts.registrations.try_acquire(&source) {
        return Err(throttled(
            "registration_throttled",
            wait,
            format_args!("too many registrations from {source}"),
        ));
    }
    let permit = enter_gate(&state).await?;
    let store = state.store.clone();
    let name = blocking(move || {
        let _permit = permit;
        store.create_user(&credentials.name, &credentials.password)
    })
    .await?;
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
        (status = 429, description = "Too many failed logins for this name or from this address; see Retry-After", body = ErrorBody),
        (status = 503, description = "Too many password checks at once; see Retry-After", body = ErrorBody),
    ),
)]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(credentials): JsonBody<Credentials>,
) -> Result<(StatusCode, Json<TokenResponse>), ApiError> {
    let limits = &state.accounts;
    let source = source_key(peer.ip());
    if let Err(wait) = limits.login_sources.try_acquire(&source) {
        return Err(throttled(
            "login_throttled",
            wait,
            format_args!("too many failed logins from {source}"),
        ));
    }
    // A name that breaks the naming rule belongs to nobody: it is a wrong
    // login at once, and never a key of the per-name throttle.
    let Ok(name) = UserName::parse(&credentials.name) else {
        return Err(store::StoreError::BadCredentials.into());
    };
    if let Err(wait) = limits.login_names.try_acquire(&name) {
        limits.login_sources.release(&source);
        return Err(throttled(
            "login_throttled",
            wait,
            format_args!("too many failed logins for {:?}", name.as_str()),
        ));
    }
    let permit = match enter_gate(&state).await {
        Ok(permit) => permit,
        Err(busy) => {
            release_login(&state, &name, source);
            return Err(busy);
        }
    };
    let store = state.store.clone();
    let ttl = state.token_ttl;
    let issued = blocking(move || {
        let _permit = permit;
        let user = store.verify_password(&credentials.name, &credentials.password)?;
        store.issue_token(&user, ttl)
    })
    .await;
    match &issued {
        Ok(_) => {
            limits.login_names.clear(&name);
            limits.login_sources.release(&source);
        }
        // A wrong guess keeps the attempt it was counted as.
        Err(e) if e.code == ErrorCode::Unauthorized => {}
        Err(_) => release_login(&state, &name, source),
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

/// Gives back a login attempt that was not a wrong guess.
fn release_login(state: &AppState, name: &UserName, source: IpAddr) {
    state.accounts.login_names.release(name);
    state.accounts.login_sources.release(&source);
}

/// A slot for one argon2 run, or 503 with `Retry-After` when all slots and
/// the queue are taken.
async fn enter_gate(state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    state
        .accounts
        .password_gate
        .enter()
        .await
        .map_err(|refusal| {
            let reason = match refusal {
                GateRefusal::QueueFull => "password_gate_full",
                GateRefusal::TimedOut => "password_gate_timeout",
            };
            metrics::counter!("bluetick_http_refusals_total", "reason" => reason).increment(1);
            ApiError::new(
                ErrorCode::Unavailable,
                "too many password checks at once; retry in 1 s",
            )
            .retry_after(Duration::from_secs(1))
        })
}

/// 429 with `Retry-After` for a throttled attempt, counted for operators.
fn throttled(reason: &'static str, wait: Duration, what: std::fmt::Arguments<'_>) -> ApiError {
    metrics::counter!("bluetick_http_refusals_total", "reason" => reason).increment(1);
    let error = ApiError::new(ErrorCode::RateLimited, "").retry_after(wait);
    let secs = error.retry_after.unwrap_or(1);
    ApiError {
        message: format!("{what}; retry in {secs} s"),
        ..error
    }
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
    if let Some(cluster) = &state.cluster {
        // Every node closes the token's connections now, not at its poll.
        let hash = store::tokens::token_hash(&caller.token);
        cluster.logged_out(caller.user.as_str(), &hash);
    }
    tracing::info!(user = %caller.user, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}
