//! Media over HTTP: what `POST /v1/media` returns, what
//! `GET /v1/media/config` says, and the defaults behind both.
//!
//! Media bytes never travel over MQTT: a client uploads them over HTTP,
//! then sends a message whose `media` field names the returned id
//! ([`crate::messages::MediaRef`]).

use serde::{Deserialize, Serialize};

/// Default largest upload, in bytes: 100 MiB.
pub const DEFAULT_MAX_SIZE: u64 = 100 * 1024 * 1024;

/// Content types accepted by default.
pub const DEFAULT_ALLOWED_TYPES: [&str; 12] = [
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/gif",
    "video/mp4",
    "video/webm",
    "audio/mpeg",
    "audio/ogg",
    "audio/mp4",
    "audio/webm",
    "application/pdf",
    "application/octet-stream",
];

/// Content types the server makes thumbnails for.
pub const THUMBNAIL_TYPES: [&str; 3] = ["image/jpeg", "image/png", "image/webp"];

/// Longest side of a thumbnail, in pixels.
pub const THUMBNAIL_MAX_SIDE: u32 = 320;

/// Content type of every thumbnail.
pub const THUMBNAIL_CONTENT_TYPE: &str = "image/jpeg";

/// `201` answer to `POST /v1/media`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadedMedia {
    /// Reference this in a send's `media.id`.
    pub id: String,
    pub size: u64,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
    pub content_type: String,
}

/// `GET /v1/media/config`: the limits an upload is checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MediaLimits {
    /// Largest upload, in bytes.
    pub max_size: u64,
    /// Content types an upload may declare.
    pub allowed_types: Vec<String>,
    /// Content types that get a thumbnail.
    pub thumbnail_types: Vec<String>,
}

/// The bare `type/subtype` of a `Content-Type` header value, lower-cased
/// (`Image/JPEG; q=1` → `image/jpeg`).
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_compare_by_essence() {
        assert_eq!(essence("Image/JPEG; charset=x"), "image/jpeg");
        assert_eq!(essence(""), "");
    }
}
