//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use std::sync::atomic::Ordering;

use super::AppState;

/// Liveness: the process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`{\"status\":\"ok\"}`")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: 200 when the store answers and the server is not shutting
/// down, 503 otherwise.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "`{\"status\":\"ready\"}`; in cluster mode also `\"cluster\"`: `connected` or `nats_unreachable`"),
        (status = 503, description = "`{\"status\":\"shutting_down\"}` or `store_unavailable`"),
    ))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.shutting_down.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "shutting_down" })),
        );
    }
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || store.ping()).await {
        Ok(Ok(())) => match &state.cluster {
            None => (StatusCode::OK, Json(json!({ "status": "ready" }))),
            // Still ready without NATS: this node serves its own users, and
            // theirs on other nodes catch up by sync.
            Some(cluster) => {
                let bus = if cluster.health().connected() {
                    "connected"
                } else {
                    "nats_unreachable"
                };
                (
                    StatusCode::OK,
                    Json(json!({ "status": "ready", "cluster": bus })),
                )
            }
        },
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "store_unavailable" })),
        ),
    }
}

/// Prometheus metrics, in the text format, on the private metrics
/// listener only: some counters would tell one user about another (and
/// they are an operator's business anyway). Served from memory.
pub async fn metrics(State(metrics): State<PrometheusHandle>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
}

/// Keeps the gauges that come from the database (the job gauges, read
/// from `job_runs` so they show runs by any node or by hand) fresh, every
/// `every`, until the server stops; a scrape then costs no query.
pub async fn refresh_gauges(store: store::Store, every: std::time::Duration) {
    let mut ticks = tokio::time::interval(every.max(std::time::Duration::from_millis(100)));
    // A slow database delays the next refresh rather than piling them up.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let store = store.clone();
        match tokio::task::spawn_blocking(move || jobs::runs::publish_metrics(&store)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "job metrics not refreshed"),
            Err(e) => tracing::warn!(error = %e, "job metrics task failed"),
        }
    }
}
