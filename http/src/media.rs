//! `/v1/media`: streaming upload, access-checked download with ranges,
//! thumbnails, and the limits clients check before uploading.
//!
//! An upload is refused from its headers alone when it declares a size over
//! the limit (413) or a type not allowed (415): the body is never read. A
//! body that turns out bigger than the limit while streaming is refused
//! then, and nothing of it is kept. Bytes flow in and out in chunks; no
//! handler holds a whole file.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::TryStreamExt;
use objects::{ByteRange, ObjectError};
use protocol::media::{essence, MediaLimits, UploadedMedia};
use protocol::messages::valid_media_id;
use protocol::ErrorCode;
use store::media::{Media, NewMedia, PendingQuota, PendingUploads, Recorded, Upload};

use super::error::{ApiError, ErrorBody};
use super::extract::Caller;
use super::{blocking, AppState};
use crate::media_service::{DownloadMode, ThumbnailError};

/// The upload limits. Public, so a client can check before it has even
/// logged in.
#[utoipa::path(get, path = "/v1/media/config", tag = "media",
    responses((status = 200, description = "Largest upload and allowed types", body = MediaLimits)))]
pub async fn limits(State(state): State<AppState>) -> Json<MediaLimits> {
    Json(state.media.limits.clone())
}

/// Uploads media: the body is the media, its type in `Content-Type`. 201
/// with `{id, size, sha256, content_type}`. Uploading bytes the caller
/// already uploaded returns the first upload's id.
#[utoipa::path(
    post, path = "/v1/media", tag = "media", security(("bearer" = [])),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The media, streamed; its type in Content-Type"),
    responses(
        (status = 201, description = "Stored (or stored before by the caller)", body = UploadedMedia),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 413, description = "Declared or streamed size over the limit", body = ErrorBody),
        (status = 415, description = "Content-Type not allowed", body = ErrorBody),
        (status = 429, description = "Pending (unsent) uploads over `media.max_pending_uploads` or `media.max_pending_bytes`", body = ErrorBody),
    ),
)]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<UploadedMedia>), ApiError> {
    let media = &state.media;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(essence)
        .unwrap_or_default();
    if !media.limits.allowed_types.contains(&content_type) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("Content-Type {content_type:?} is not allowed; see GET /v1/media/config"),
        ));
    }
    let max = media.limits.max_size;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|size| size > max) {
        metrics::counter!("bluetick_media_refused_total", "code" => "too_large").increment(1);
        return Err(too_large(max));
    }

    let owner = caller.user.to_string();
    // Refused before the body is read when the declared size (or nothing
    // more) cannot fit; checked again, exactly, when the upload is recorded.
    let pending = {
        let (store, owner) = (state.store.clone(), owner.clone());
        blocking(move || store.pending_uploads(&owner)).await?
    };
    if !media.pending_quota.admits(pending, declared.unwrap_or(0)) {
        return Err(over_quota(&media.pending_quota, pending));
    }
    let id = store::media::new_media_id();
    let object_key = crate::media_service::object_key(&owner, &id);
    let stream = Box::pin(body.into_data_stream().map_err(std::io::Error::other));
    let stored = match media
        .objects
        .put(&object_key, &content_type, stream, max)
        .await
    {
        Ok(stored) => stored,
        Err(ObjectError::TooLarge { .. }) => return Err(too_large(max)),
        Err(ObjectError::Body(e)) => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("the upload was interrupted: {e}"),
            ))
        }
        Err(e) => return Err(object_error(e)),
    };

    let recorded = {
        let (store, owner, id, key) = (
            state.store.clone(),
            owner.clone(),
            id.clone(),
            object_key.clone(),
        );
        let (sha256, content_type) = (stored.sha256.clone(), content_type.clone());
        let size = stored.size as i64;
        let quota = media.pending_quota;
        blocking(move || {
            store.record_upload(
                &NewMedia {
                    id: &id,
                    owner: &owner,
                    object_key: &key,
                    size,
                    sha256: &sha256,
                    content_type: &content_type,
                },
                quota,
            )
        })
        .await
    };
    let row = match recorded {
        Ok(Upload::OverQuota(pending)) => {
            discard(&state, &object_key).await;
            return Err(over_quota(&media.pending_quota, pending));
        }
        Ok(Upload::Recorded(Recorded::New(row))) => {
            metrics::counter!("bluetick_media_uploads_total").increment(1);
            metrics::counter!("bluetick_media_uploaded_bytes_total").increment(stored.size);
            if media.thumbnailable(&row) {
                // Off the request path: the uploader has its answer while
                // the thumbnail is made; a GET that comes first makes it.
                let (state, row) = (state.clone(), row.clone());
                tokio::spawn(async move {
                    if let Err(e) = state.media.thumbnail(&state.store, &row).await {
                        tracing::info!(media = %row.id, error = %e, "no thumbnail");
                    }
                });
            }
            row
        }
        Ok(Upload::Recorded(Recorded::Existing(row))) => {
            // Same owner, same bytes: keep the first copy only.
            metrics::counter!("bluetick_media_deduplicated_total").increment(1);
            discard(&state, &object_key).await;
            row
        }
        Err(e) => {
            discard(&state, &object_key).await;
            return Err(e);
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(UploadedMedia {
            id: row.id,
            size: row.size as u64,
            sha256: row.sha256,
            content_type: row.content_type,
        }),
    ))
}

/// Downloads media: the bytes, to the owner and to recipients of a message
/// that carries them; 404 to anyone else. Honours a single `Range:
/// bytes=…`. From S3 in `redirect` mode: 302 to a presigned URL.
#[utoipa::path(
    get, path = "/v1/media/{id}", tag = "media", security(("bearer" = [])),
    params(("id" = String, Path, description = "A media id")),
    responses(
        (status = 200, description = "The bytes", content_type = "application/octet-stream"),
        (status = 206, description = "The requested range"),
        (status = 302, description = "Redirect to a short-lived presigned URL (S3, redirect mode)"),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 404, description = "No such media, or not the caller's to read", body = ErrorBody),
        (status = 416, description = "Range not satisfiable", body = ErrorBody),
    ),
)]
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let media = readable(&state, &caller, &id).await?;
    if state.media.download == DownloadMode::Redirect {
        let presigned = state
            .media
            .objects
            .presigned_get(&media.object_key, state.media.presign_ttl)
            .await
            .map_err(object_error)?;
        if let Some(url) = presigned {
            let location = HeaderValue::from_str(&url)
                .map_err(|_| ApiError::new(ErrorCode::Internal, "bad presigned URL"))?;
            return Ok((
                StatusCode::FOUND,
                [
                    (header::LOCATION, location),
                    (
                        header::CACHE_CONTROL,
                        HeaderValue::from_static("private, no-store"),
                    ),
                ],
            )
                .into_response());
        }
    }
    let size = media.size as u64;
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(value) => match parse_range(value, size) {
            RangeRequest::Whole => None,
            RangeRequest::Part(range) => Some(range),
            RangeRequest::Unsatisfiable => {
                let mut refused = ApiError::new(
                    ErrorCode::RangeNotSatisfiable,
                    format!("the media is {size} bytes"),
                )
                .into_response();
                refused.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{size}")).expect("ASCII"),
                );
                return Ok(refused);
            }
        },
    };
    let stream = state
        .media
        .objects
        .get(&media.object_key, range)
        .await
        .map_err(object_error)?;
    metrics::counter!("bluetick_media_downloads_total").increment(1);
    let mut response = Response::new(Body::from_stream(stream));
    let out = response.headers_mut();
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // The type is what the uploader declared: a browser must not guess
    // another (say, HTML) from the bytes.
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(value) = HeaderValue::from_str(&media.content_type) {
        out.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("\"{}\"", media.sha256)) {
        out.insert(header::ETAG, value);
    }
    let length = match range {
        Some(range) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes {}-{}/{size}", range.start, range.end))
                    .expect("ASCII"),
            );
            range.len()
        }
        None => size,
    };
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    Ok(response)
}

/// A JPEG thumbnail at most 320 px on its longer side, for JPEG, PNG and
/// WebP images; same access rule as the media.
#[utoipa::path(
    get, path = "/v1/media/{id}/thumbnail", tag = "media", security(("bearer" = [])),
    params(("id" = String, Path, description = "A media id")),
    responses(
        (status = 200, description = "A JPEG", content_type = "image/jpeg"),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 404, description = "No such media, not the caller's, or not an image", body = ErrorBody),
        (status = 422, description = "An image no thumbnail can be made of (too many bytes or pixels, or undecodable)", body = ErrorBody),
    ),
)]
pub async fn thumbnail(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let media = readable(&state, &caller, &id).await?;
    if !state.media.thumbnailable(&media) {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "no thumbnail for this type of media",
        ));
    }
    let key = state
        .media
        .thumbnail(&state.store, &media)
        .await
        .map_err(|e| match e {
            ThumbnailError::Unprocessable(why) => ApiError::new(
                ErrorCode::UnprocessableImage,
                format!("no thumbnail: {why}"),
            ),
            ThumbnailError::Unavailable(why) => {
                tracing::warn!(media = %media.id, error = %why, "thumbnail failed");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the media store is unavailable; retry later",
                )
            }
        })?;
    let stream = state
        .media
        .objects
        .get(&key, None)
        .await
        .map_err(object_error)?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(protocol::media::THUMBNAIL_CONTENT_TYPE),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The media `id` if the caller may read it; the same 404 otherwise,
/// whether it exists or not.
async fn readable(state: &AppState, caller: &Caller, id: &str) -> Result<Media, ApiError> {
    let not_found = || ApiError::new(ErrorCode::NotFound, "no such media");
    if !valid_media_id(id) {
        return Err(not_found());
    }
    let (store, id, user) = (state.store.clone(), id.to_owned(), caller.user.to_string());
    blocking(move || store.readable_media(&id, &user))
        .await?
        .ok_or_else(not_found)
}

/// What a `Range` header asks for.
#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// No usable single range: serve everything (RFC 9110 allows ignoring
    /// what we do not support, such as several ranges).
    Whole,
    Part(ByteRange),
    /// A well-formed range past the end: 416.
    Unsatisfiable,
}

/// Parses `bytes=START-END`, `bytes=START-` or `bytes=-SUFFIX` against an
/// object of `size` bytes.
fn parse_range(value: &str, size: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((start, end)) = spec.split_once('-') else {
        return RangeRequest::Whole;
    };
    let (start, end) = (start.trim(), end.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    let (start, end) = match (start.is_empty(), end.is_empty()) {
        (false, _) => {
            let Some(start) = parse(start) else {
                return RangeRequest::Whole;
            };
            let end = if end.is_empty() {
                Some(u64::MAX)
            } else {
                parse(end)
            };
            match end {
                Some(end) if end >= start => (start, end.min(size.saturating_sub(1))),
                _ => return RangeRequest::Whole,
            }
        }
        (true, false) => match parse(end) {
            Some(0) => return RangeRequest::Unsatisfiable,
            Some(suffix) => (size.saturating_sub(suffix), size.saturating_sub(1)),
            None => return RangeRequest::Whole,
        },
        (true, true) => return RangeRequest::Whole,
    };
    if size == 0 || start >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Part(ByteRange { start, end })
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        ErrorCode::TooLarge,
        format!("media is limited to {max} bytes; see GET /v1/media/config"),
    )
}

fn over_quota(quota: &PendingQuota, pending: PendingUploads) -> ApiError {
    metrics::counter!("bluetick_media_refused_total", "code" => "quota_exceeded").increment(1);
    ApiError::new(
        ErrorCode::QuotaExceeded,
        format!(
            "you hold {} unsent uploads ({} bytes); the limit is {} uploads and {} bytes: \
             send or wait for them to be cleaned up",
            pending.count, pending.bytes, quota.max_count, quota.max_bytes
        ),
    )
}

fn object_error(e: ObjectError) -> ApiError {
    match e {
        ObjectError::NotFound(_) => ApiError::new(ErrorCode::NotFound, "no such media"),
        other => {
            tracing::error!(error = %other, "object store failed");
            ApiError::new(
                ErrorCode::Unavailable,
                "the media store is unavailable; retry later",
            )
        }
    }
}

/// Deletes an object that will not be recorded. A failure leaves an
/// unreferenced object, which is logged; it holds nobody's data hostage.
async fn discard(state: &AppState, key: &str) {
    if let Err(e) = state.media.objects.delete(key).await {
        tracing::warn!(error = %e, key, "could not delete an unrecorded upload");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(start: u64, end: u64) -> RangeRequest {
        RangeRequest::Part(ByteRange { start, end })
    }

    #[test]
    fn ranges_follow_http() {
        assert_eq!(parse_range("bytes=0-9", 100), part(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), part(90, 99));
        assert_eq!(parse_range("bytes=90-500", 100), part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), part(90, 99));
        assert_eq!(parse_range("bytes=-500", 100), part(0, 99));
        assert_eq!(parse_range("bytes=100-", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), RangeRequest::Whole);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeRequest::Whole);
        assert_eq!(parse_range("items=0-1", 100), RangeRequest::Whole);
        assert_eq!(parse_range("bytes=x-1", 100), RangeRequest::Whole);
    }
}
