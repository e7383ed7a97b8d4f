//! `POST /v1/messages`: sending for bots and integrations, through the same
//! pipeline as MQTT.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use bridge::{Outcome, Request};
use protocol::messages::{AckEvent, SendRequest};
use protocol::ErrorCode;

use super::error::{ApiError, ErrorBody};
use super::extract::Caller;
use super::AppState;

/// Longest an HTTP send waits for its commit.
const SUBMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Sends a message. Body: the MQTT `send` payload `{"id","to","body"}`. 201 with the ack
/// (`{"id","client_id","to","body","sent_at"}`) once stored; repeating the
/// same `id` returns the same ack and stores nothing new. Refusals use the
/// same codes as the MQTT error event.
#[utoipa::path(
    post, path = "/v1/messages", tag = "messages", security(("bearer" = [])),
    request_body = SendRequest,
    responses(
        (status = 201, description = "Stored (✓), or stored earlier under this id", body = AckEvent),
        (status = 400, description = "Malformed send", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 404, description = "`unknown_recipient`", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 503, description = "Not stored within 15 s; retry with the same id", body = ErrorBody),
    ),
)]
pub async fn send(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<AckEvent>), ApiError> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(ErrorCode::TooLarge, "request body is too large")
        }
        _ => ApiError::new(ErrorCode::BadRequest, e.body_text()),
    })?;
    let request = match SendRequest::parse(&body, state.max_body) {
        Ok(send) => Request::Send {
            sender: caller.user,
            send,
        },
        Err(rejection) => return Err(ApiError::new(rejection.code, rejection.message)),
    };
    // The bridge retries a failing commit until the database is back; an
    // HTTP caller gets a 503 instead of waiting that long, and may retry
    // with the same id safely.
    match tokio::time::timeout(SUBMIT_TIMEOUT, state.bridge.submit(request)).await {
        Ok(Ok(Outcome::Stored(ack))) => Ok((StatusCode::CREATED, Json(ack))),
        Ok(Ok(Outcome::Refused(rejection))) => {
            Err(ApiError::new(rejection.code, rejection.message))
        }
        Ok(Ok(Outcome::Applied)) => Err(ApiError::new(ErrorCode::Internal, "unexpected outcome")),
        Ok(Err(e)) => Err(ApiError::new(ErrorCode::Unavailable, e.to_string())),
        Err(_) => Err(ApiError::new(
            ErrorCode::Unavailable,
            "not stored within 15 s; retry with the same id",
        )),
    }
}
