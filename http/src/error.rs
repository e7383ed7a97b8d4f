//! The one error shape of the HTTP API: a 4xx/5xx status with
//! `{"error": {"code": "...", "message": "..."}}`, the code from
//! [`protocol::ErrorCode`].

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::ErrorCode;
use store::StoreError;

/// The JSON body of every refusal, for the OpenAPI document.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable code and a message for humans.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// One of the error codes listed in docs/protocol.md, e.g. `not_found`.
    pub code: String,
    pub message: String,
}

/// An HTTP refusal.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds the client should wait before retrying, sent as
    /// `Retry-After` (429 and 503 refusals of throttles and busy limits).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same refusal with a `Retry-After` of `wait` (rounded up, at
    /// least 1 s).
    pub fn retry_after(mut self, wait: std::time::Duration) -> ApiError {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.retry_after = Some(secs.max(1));
        self
    }

    /// The JSON body, for answers written outside axum.
    pub fn json(&self) -> String {
        self.body().to_string()
    }

    fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": { "code": self.code.as_str(), "message": self.message }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        use protocol::NameError;
        match e {
            StoreError::Invalid(NameError::PasswordLength) => {
                ApiError::new(ErrorCode::InvalidPassword, e.to_string())
            }
            StoreError::Invalid(_) => ApiError::new(ErrorCode::InvalidName, e.to_string()),
            StoreError::NameTaken => ApiError::new(ErrorCode::NameTaken, e.to_string()),
            StoreError::UnknownUser => ApiError::new(ErrorCode::NotFound, e.to_string()),
            StoreError::BadCredentials => ApiError::new(ErrorCode::Unauthorized, e.to_string()),
            StoreError::Pool(_) => {
                tracing::warn!(error = %e, "store unavailable");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the database is unavailable; retry later",
                )
            }
            other => {
                tracing::error!(error = %other, "request failed");
                ApiError::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}
