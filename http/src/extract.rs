//! Request extractors that refuse in the API's own error shape.

use axum::async_trait;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use protocol::{ErrorCode, UserName};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;

/// A JSON body; malformed or oversize bodies become [`ApiError`]s.
pub struct JsonBody<T>(pub T);

#[async_trait]
impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(JsonBody(value)),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::new(
                    ErrorCode::TooLarge,
                    "request body is too large",
                ))
            }
            Err(e) => Err(ApiError::new(ErrorCode::BadRequest, e.body_text())),
        }
    }
}

/// Query parameters; unparsable ones become [`ApiError`]s.
pub struct QueryParams<T>(pub T);

#[async_trait]
impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| QueryParams(value))
            .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))
    }
}

/// The user behind a valid `Authorization: Bearer TOKEN` header.
pub struct Caller {
    pub user: UserName,
    pub token: String,
}

#[async_trait]
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "missing bearer token"))?
            .to_owned();
        let store = state.store.clone();
        let lookup = token.clone();
        let owner = tokio::task::spawn_blocking(move || store.authenticate_token(&lookup))
            .await
            .map_err(|_| ApiError::new(ErrorCode::Internal, "internal error"))??;
        Ok(Caller {
            user: owner.user,
            token,
        })
    }
}
