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
use super::{submit, AppState};

/// Sends a message. Body: the MQTT `send` payload `{"id","to","body"}` (or
/// `{"id","group","body"}` to a group the caller is in). 201 with the ack
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
        (status = 404, description = "`unknown_recipient`, or `not_a_member` of the group", body = ErrorBody),
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
    let request = match SendRequest::parse(&body, state.max_body)
        .and_then(|send| Request::send(caller.user, send))
    {
        Ok(request) => request,
        Err(rejection) => return Err(ApiError::new(rejection.code, rejection.message)),
    };
    match submit(&state, request, "stored").await? {
        Outcome::Stored(ack) => Ok((StatusCode::CREATED, Json(ack))),
        _ => Err(ApiError::new(ErrorCode::Internal, "unexpected outcome")),
    }
}
