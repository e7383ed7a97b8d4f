//! bluetick's HTTP API (the `bluetick-http` crate): accounts, sending,
//! media, history, stars, search, presence, device backups, health and
//! metrics, and its OpenAPI document; and the web client's files ([`web`]).
//!
//! # Layout
//! - [`router`] and [`metrics_router`]: the routes, built from the
//!   handlers' OpenAPI annotations; [`listener`]: the accept loop with its
//!   header timeout and connection cap.
//! - one module per resource (accounts, messages, groups, history, presence,
//!   media, backup, health); [`throttle`]: login and registration limits
//!   and the password-hash gate.
//! - [`media_service`]: where media bytes go (the object store), the media
//!   key scheme, upload limits and bounded thumbnail making.
//! - [`config`]: the `[http]`, `[auth]` and `[web]` sections of the
//!   server's configuration (`[media]` is in [`media_service`]).
//!
//! Every handler is thin: it extracts, calls the store on a blocking thread
//! (diesel is synchronous) and maps the answer. Refusals share one JSON
//! shape (see [`ApiError`]). The binary builds an [`AppState`] and serves
//! [`router`].

mod accounts;
mod backup;
pub mod config;
mod error;
mod extract;
mod health;
mod groups;
mod history;
pub mod listener;
mod media;
pub mod media_service;
mod messages;
mod openapi;
mod presence;
pub mod throttle;
pub mod web;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use protocol::ErrorCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use store::{Store, StoreError};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// The broker's token cache, so logout takes effect on MQTT at once.
    pub authenticator: Arc<broker::Authenticator>,
    /// Who may see whose presence (shared with the broker's guard).
    pub presence_policy: Arc<broker::PresencePolicy>,
    /// The chat pipeline, for `POST /v1/messages`.
    pub bridge: Arc<bridge::Bridge>,
    /// Largest message body, in bytes.
    pub max_body: usize,
    /// Limits on registration, password guessing and argon2.
    pub accounts: Arc<throttle::AccountLimits>,
    /// Lifetime of newly issued tokens.
    pub token_ttl: Duration,
    /// Largest device backup accepted, in bytes.
    pub device_backup_max_bytes: usize,
    /// Device backups kept per user.
    pub device_backups_kept: usize,
    /// Set when shutdown begins; `/readyz` then answers 503.
    pub shutting_down: Arc<AtomicBool>,
    /// The media store and its limits.
    pub media: Arc<media_service::MediaService>,
    /// What the web client is told about this server (issue 17).
    pub web: Arc<web::ClientSettings>,
    /// Cluster mode (issue 15): the link to other nodes, for `/readyz`
    /// and logouts.
    pub cluster: Option<Arc<cluster::Cluster>>,
}

/// The API's routes, built from the handlers' OpenAPI annotations.
pub fn router(state: AppState, max_json_body: usize) -> Router {
    let (router, mut api) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(accounts::register))
        .routes(routes!(accounts::login))
        .routes(routes!(accounts::logout))
        .routes(routes!(messages::send))
        .routes(routes!(groups::create_group, groups::list_groups))
        .routes(routes!(groups::get_group, groups::rename_group))
        .routes(routes!(groups::add_member, groups::remove_member))
        .routes(routes!(groups::promote_member, groups::demote_member))
        .routes(routes!(groups::set_group_timer))
        .routes(routes!(history::star, history::unstar))
        .routes(routes!(history::chats))
        .routes(routes!(history::conversation))
        .routes(routes!(history::set_timer))
        .routes(routes!(history::stars))
        .routes(routes!(history::search))
        .routes(routes!(presence::presence))
        .routes(routes!(presence::settings, presence::update_settings))
        .routes(routes!(media::limits))
        .routes(routes!(media::download))
        .routes(routes!(media::thumbnail))
        .routes(routes!(web::client_config))
        .split_for_parts();
    // Uploads stream with their own limit, checked by the handler, not the
    // JSON body limit.
    let (media_upload, media_upload_api) = OpenApiRouter::new()
        .routes(routes!(media::upload))
        .split_for_parts();
    api.merge(media_upload_api);
    // Device backups are bigger than any JSON body; only their route gets
    // the larger limit.
    let (device_backup, device_backup_api) = OpenApiRouter::new()
        .routes(routes!(backup::put, backup::get))
        .split_for_parts();
    api.merge(device_backup_api);
    let document = Arc::new(api.to_json().expect("the OpenAPI document serialises"));
    router
        .route(OPENAPI_PATH, get(openapi::document).with_state(document))
        // The web client's files: the page, not the API, so not in the
        // OpenAPI document.
        .route("/", get(web::index))
        .route("/web/*name", get(web::asset))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route") })
        .layer(DefaultBodyLimit::max(max_json_body))
        .merge(device_backup.layer(DefaultBodyLimit::max(state.device_backup_max_bytes)))
        .merge(media_upload.layer(DefaultBodyLimit::disable()))
        // Last, so that it reaches the routes merged above too.
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The private metrics listener's routes: `/metrics` and nothing else.
/// It renders what is in memory; no scrape touches the database (see
/// [`health::refresh_gauges`]).
pub fn metrics_router(metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route") })
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(metrics)
}

pub use health::refresh_gauges;

/// A route called with a method it does not serve: the error JSON, not
/// axum's empty 405 (axum adds the `Allow` header).
async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not serve that method",
    )
}

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/v1/openapi.json";

/// Longest an HTTP request waits for the bridge to commit it.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs `request` through the bridge, as its MQTT form would go, and
/// returns what became of it; a refusal is the HTTP error. The bridge
/// retries a failing commit until the database is back, so an HTTP caller
/// gets a 503 after [`SUBMIT_TIMEOUT`] instead of waiting that long; every
/// such request is safe to repeat (sends by their id, stars and timers by
/// being idempotent). `done` says what did not happen in time.
pub(crate) async fn submit(
    state: &AppState,
    request: bridge::Request,
    done: &str,
) -> Result<bridge::Outcome, ApiError> {
    match tokio::time::timeout(SUBMIT_TIMEOUT, state.bridge.submit(request)).await {
        Ok(Ok(bridge::Outcome::Refused(rejection))) => {
            Err(ApiError::new(rejection.code, rejection.message))
        }
        Ok(Ok(outcome)) => Ok(outcome),
        Ok(Err(e)) => Err(ApiError::new(ErrorCode::Unavailable, e.to_string())),
        Err(_) => Err(ApiError::new(
            ErrorCode::Unavailable,
            format!("not {done} within 15 s; retrying the same request is safe"),
        )),
    }
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
