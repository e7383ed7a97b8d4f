//! `PUT /v1/me/backup` and `GET /v1/me/backup`: a device's own encrypted
//! backup of its local store. The server keeps the bytes as they come
//! (the client encrypts them), the newest `jobs.device_backups_kept` per
//! user. Like every HTTP call, neither touches last seen.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::ErrorCode;
use serde_json::json;

use super::error::{ApiError, ErrorBody};
use super::extract::Caller;
use super::{blocking, AppState};

/// Answer header carrying the hex SHA-256 of a backup's bytes.
const SHA256_HEADER: &str = "x-backup-sha256";

/// Stores the body as the caller's newest device backup; 201 with its id,
/// size, SHA-256 and time.
#[utoipa::path(
    put, path = "/v1/me/backup", tag = "accounts", security(("bearer" = [])),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The device's own encrypted backup, opaque to the server"),
    responses(
        (status = 201, description = "Stored: `{id, size, sha256, created_at}`"),
        (status = 400, description = "Empty body", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 413, description = "Over `jobs.device_backup_max_bytes`", body = ErrorBody),
    ),
)]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "a backup may be at most {} bytes",
                    state.device_backup_max_bytes
                ),
            )
        } else {
            ApiError::new(ErrorCode::BadRequest, e.body_text())
        }
    })?;
    if body.is_empty() {
        return Err(ApiError::new(ErrorCode::BadRequest, "the backup is empty"));
    }
    let (store, keep) = (state.store.clone(), state.device_backups_kept);
    let stored =
        blocking(move || store.put_device_backup(caller.user.as_str(), &body, keep)).await?;
    let answer = json!({
        "id": stored.id,
        "size": stored.size,
        "sha256": stored.sha256,
        "created_at": stored.created_at,
    });
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// The caller's newest device backup, as stored; 404 if none.
#[utoipa::path(
    get, path = "/v1/me/backup", tag = "accounts", security(("bearer" = [])),
    responses(
        (status = 200, description = "The bytes, with their SHA-256 in `x-backup-sha256`",
            content_type = "application/octet-stream"),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 404, description = "No backup yet", body = ErrorBody),
    ),
)]
pub async fn get(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let found = blocking(move || store.latest_device_backup(caller.user.as_str())).await?;
    let Some((backup, data)) = found else {
        return Err(ApiError::new(ErrorCode::NotFound, "no backup yet"));
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::HeaderName::from_static(SHA256_HEADER),
                backup.sha256,
            ),
        ],
        data,
    )
        .into_response())
}
