//! The HTTP API: accounts, messages, media, presence, health and metrics.
//!
//! Every handler is thin: it extracts, calls the store on a blocking thread
//! (diesel is synchronous) and maps the answer. Refusals share one JSON
//! shape (see [`error`]).

mod accounts;
mod error;
mod extract;
mod health;
mod media;
mod messages;
mod presence;
pub mod throttle;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use protocol::ErrorCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use store::{Store, StoreError};

pub use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The broker's token cache, so logout takes effect on MQTT at once.
    pub authenticator: Arc<broker::Authenticator>,
    /// Who may see whose presence (shared with the broker's guard).
    pub presence_policy: Arc<broker::PresencePolicy>,
    /// The chat pipeline, for `POST /v1/messages`.
    pub bridge: Arc<bridge::Bridge>,
    /// Largest message body, in bytes.
    pub max_body: usize,
    /// Limits password guessing on login.
    pub login_throttle: Arc<throttle::LoginThrottle>,
    /// Lifetime of newly issued tokens.
    pub token_ttl: Duration,
    /// Set when shutdown begins; `/readyz` then answers 503.
    pub shutting_down: Arc<AtomicBool>,
    /// The media store and its limits.
    pub media: Arc<crate::media::MediaService>,
}

/// The API's routes.
pub fn router(state: AppState, max_json_body: usize) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/v1/users", post(accounts::register))
        .route("/v1/tokens", post(accounts::login))
        .route("/v1/tokens/current", delete(accounts::logout))
        .route("/v1/messages", post(messages::send))
        // Uploads stream with their own limit, not the JSON body limit.
        .route(
            "/v1/media",
            post(media::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/media/config", get(media::limits))
        .route("/v1/media/:id", get(media::download))
        .route("/v1/media/:id/thumbnail", get(media::thumbnail))
        .route("/v1/users/:name/presence", get(presence::presence))
        .route(
            "/v1/me/privacy",
            get(presence::settings).put(presence::update_settings),
        )
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route") })
        .layer(DefaultBodyLimit::max(max_json_body))
        .with_state(state)
}

/// Runs store work on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(e) => {
            tracing::error!(error = %e, "blocking task failed");
            Err(ApiError::new(ErrorCode::Internal, "internal error"))
        }
    }
}
