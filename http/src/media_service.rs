//! The media service: the object store chosen by `[media]` (the binary
//! opens it), the keys media live under ([`object_key`], [`thumbnail_key`]),
//! the limits uploads are checked against, and thumbnails; and the
//! `[media]` section of the configuration ([`MediaConfig`]).
//!
//! The HTTP handlers (`media.rs`) decide who may do what; this module
//! owns where bytes go and how thumbnails are made from them.
//!
//! # Invariant: a thumbnail costs bounded memory, once
//! Decoding is where a small file becomes a large allocation (a PNG of a
//! few KiB may declare 12000×12000 pixels). So:
//! - the image header is read first, and an image over the side or pixel
//!   budget is refused before any pixel is allocated; the decoder is then
//!   limited to the allocation those pixels need;
//! - at most `media.thumbnail_decodes` thumbnails are made at once, and
//!   at most one per media id (others wait, then find it made or failed);
//! - an image that cannot be made into a thumbnail is remembered (a
//!   bounded set), so asking again costs nothing.

use futures_util::TryStreamExt;
use objects::{ObjectError, ObjectStore};
use protocol::media::{MediaLimits, THUMBNAIL_CONTENT_TYPE, THUMBNAIL_MAX_SIDE, THUMBNAIL_TYPES};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::media::{Media, PendingQuota};
use store::Store;
use tokio::sync::{OwnedMutexGuard, Semaphore};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Largest width or height of an image a thumbnail is made from: a small
/// file that claims huge dimensions (a decompression bomb) is refused
/// before its pixels are allocated.
const THUMBNAIL_MAX_INPUT_SIDE: u32 = 12_000;
/// Bytes the decoder may allocate per pixel of the pixel budget: RGBA at 8
/// bits (a 16-bit image gets half the pixels).
const THUMBNAIL_ALLOC_PER_PIXEL: u64 = 4;
/// Most media ids remembered as having no possible thumbnail; the set is
/// emptied when it would grow past this (a forgotten id is refused again
/// from its header, cheaply).
const FAILED_CAPACITY: usize = 10_000;

/// Media uploads: where the bytes go, how they come back, and the limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// `local` (a directory) or `s3`.
    pub store: MediaStoreKind,
    /// The directory of the local store (default `DATA_DIR/media`).
    pub dir: Option<PathBuf>,
    /// S3 endpoint URL, e.g. `https://s3.eu-west-1.amazonaws.com` or
    /// `http://127.0.0.1:8333`.
    pub s3_endpoint: String,
    pub s3_bucket: String,
    pub s3_region: String,
    pub s3_access_key: String,
    pub s3_secret_key: String,
    /// `ENDPOINT/BUCKET/KEY` URLs instead of `BUCKET.ENDPOINT/KEY`; most
    /// self-hosted S3 servers need it.
    pub s3_path_style: bool,
    /// Keep every object under this folder of the bucket (e.g.
    /// `production`), so several deployments can share one bucket. Empty:
    /// the bucket's root.
    pub s3_prefix: String,
    /// How downloads from S3 are served: `proxy` streams the bytes through
    /// the server; `redirect` answers 302 to a presigned URL. The local
    /// store always proxies.
    pub download: DownloadMode,
    /// Lifetime of a presigned download URL, in seconds.
    pub presign_ttl_secs: u64,
    /// Largest upload, in bytes.
    pub max_size: u64,
    /// Content types an upload may declare. In the environment, a
    /// comma-separated list.
    #[serde(deserialize_with = "list_or_csv")]
    pub allowed_types: Vec<String>,
    /// Largest image a thumbnail is made from, in bytes; bigger images get
    /// none (decoding is bounded in pixels too).
    pub thumbnail_max_input: u64,

    // --- Hardening (issue 12): decoding and pending-upload bounds ---
    /// Most pixels (width × height, read from the image header before any
    /// pixel is decoded) of an image a thumbnail is made from.
    pub thumbnail_max_pixels: u64,
    /// Thumbnails decoded at once by this server; more requests wait.
    pub thumbnail_decodes: usize,
    /// Most uploads a user may hold that no message carries yet.
    pub max_pending_uploads: u64,
    /// Most bytes of uploads a user may hold that no message carries yet.
    pub max_pending_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaStoreKind {
    Local,
    S3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DownloadMode {
    Proxy,
    Redirect,
}

/// A list given either as a TOML array or as one comma-separated string
/// (which is what an environment variable can hold).
fn list_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(list) => list,
        Either::Csv(csv) => csv
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            store: MediaStoreKind::Local,
            dir: None,
            s3_endpoint: String::new(),
            s3_bucket: String::new(),
            s3_region: "us-east-1".to_owned(),
            s3_access_key: String::new(),
            s3_secret_key: String::new(),
            s3_path_style: true,
            s3_prefix: String::new(),
            download: DownloadMode::Proxy,
            presign_ttl_secs: 300,
            max_size: protocol::media::DEFAULT_MAX_SIZE,
            allowed_types: protocol::media::DEFAULT_ALLOWED_TYPES
                .iter()
                .map(|t| t.to_string())
                .collect(),
            thumbnail_max_input: 25 * 1024 * 1024,
            thumbnail_max_pixels: 24_000_000,
            thumbnail_decodes: 2,
            max_pending_uploads: 32,
            max_pending_bytes: 512 * 1024 * 1024,
        }
    }
}

/// Where an upload's bytes live in the object store: under its owner,
/// `media/{owner}/{id}`. With [`thumbnail_key`], the only place the media
/// key scheme is written (the rows record the keys, so cleanup and backups
/// read them from there).
pub fn object_key(owner: &str, id: &str) -> String {
    format!("media/{owner}/{id}")
}

/// Where the thumbnail of the media stored at `object_key` lives: beside it.
pub fn thumbnail_key(object_key: &str) -> String {
    format!("{object_key}.thumb.jpg")
}

/// Everything the media endpoints need.
pub struct MediaService {
    /// Where the bytes are.
    pub objects: Arc<dyn ObjectStore>,
    /// What `GET /v1/media/config` reports and uploads are checked against.
    pub limits: MediaLimits,
    /// Whether S3 downloads are proxied or redirected.
    pub download: DownloadMode,
    /// Lifetime of a presigned download URL.
    pub presign_ttl: Duration,
    /// Largest image, in bytes, a thumbnail is made from.
    pub thumbnail_max_input: u64,
    /// Most pixels of an image a thumbnail is made from.
    pub thumbnail_max_pixels: u64,
    /// What a user may hold in uploads no message carries yet.
    pub pending_quota: PendingQuota,
    /// Who is making which thumbnail, and which cannot be made.
    thumbnails: Thumbnails,
}

/// Why a media has no thumbnail.
#[derive(Debug)]
pub enum ThumbnailError {
    /// The image cannot be made into one (too many bytes or pixels, or not
    /// decodable); the same answer every time.
    Unprocessable(String),
    /// The object store or database failed; worth retrying.
    Unavailable(String),
}

impl std::fmt::Display for ThumbnailError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ThumbnailError::Unprocessable(why) | ThumbnailError::Unavailable(why) => {
                f.write_str(why)
            }
        }
    }
}

/// The shared state that keeps thumbnail making bounded (see the module's
/// invariant).
struct Thumbnails {
    /// One permit per thumbnail being decoded on this server.
    decodes: Arc<Semaphore>,
    /// Media id → the lock held by whoever is making its thumbnail.
    making: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Media ids whose image cannot be made into a thumbnail.
    failed: Mutex<HashSet<String>>,
}

/// Holds the right to make one media's thumbnail; dropping it lets the
/// next waiter in and forgets the lock once nobody waits for it.
struct Making<'a> {
    thumbnails: &'a Thumbnails,
    id: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Thumbnails {
    fn new(decodes: usize) -> Thumbnails {
        Thumbnails {
            decodes: Arc::new(Semaphore::new(decodes.max(1))),
            making: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashSet::new()),
        }
    }

    fn has_failed(&self, id: &str) -> bool {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    fn remember_failure(&self, id: &str) {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if failed.len() >= FAILED_CAPACITY {
            failed.clear();
        }
        failed.insert(id.to_owned());
    }

    /// Waits until nobody else is making `id`'s thumbnail.
    async fn lock(&self, id: &str) -> Making<'_> {
        let lock = self
            .making
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_owned())
            .or_default()
            .clone();
        Making {
            thumbnails: self,
            id: id.to_owned(),
            guard: Some(lock.lock_owned().await),
        }
    }
}

impl Drop for Making<'_> {
    fn drop(&mut self) {
        let mut making = self
            .thumbnails
            .making
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.guard.take();
        // Waiters clone the lock under this map's mutex, so a count of one
        // (the map's own) means nobody waits.
        if making
            .get(&self.id)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            making.remove(&self.id);
        }
    }
}

impl MediaService {
    /// The media service over `objects` (the store `media.store` names),
    /// with `media`'s limits.
    pub fn new(objects: Arc<dyn ObjectStore>, media: &MediaConfig) -> MediaService {
        MediaService {
            objects,
            limits: MediaLimits {
                max_size: media.max_size,
                allowed_types: media
                    .allowed_types
                    .iter()
                    .map(|t| protocol::media::essence(t))
                    .collect(),
                thumbnail_types: THUMBNAIL_TYPES.iter().map(|t| t.to_string()).collect(),
            },
            download: media.download,
            presign_ttl: Duration::from_secs(media.presign_ttl_secs),
            thumbnail_max_input: media.thumbnail_max_input,
            thumbnail_max_pixels: media.thumbnail_max_pixels,
            pending_quota: PendingQuota {
                max_count: media.max_pending_uploads,
                max_bytes: media.max_pending_bytes,
            },
            thumbnails: Thumbnails::new(media.thumbnail_decodes),
        }
    }

    /// Whether `media` is of a type thumbnails are made for.
    pub fn thumbnailable(&self, media: &Media) -> bool {
        THUMBNAIL_TYPES.contains(&media.content_type.as_str())
    }

    /// The key of `media`'s thumbnail, made now if it was not made yet:
    /// one at a time per media, within the server's decode budget, and an
    /// image that cannot be made into one is refused at once next time.
    pub async fn thumbnail(&self, store: &Store, media: &Media) -> Result<String, ThumbnailError> {
        if let Some(key) = &media.thumbnail_key {
            return Ok(key.clone());
        }
        let refused = || {
            metrics::counter!("bluetick_media_thumbnails_refused_total").increment(1);
            ThumbnailError::Unprocessable("no thumbnail can be made of this image".into())
        };
        if self.thumbnails.has_failed(&media.id) {
            return Err(refused());
        }
        let _making = self.thumbnails.lock(&media.id).await;
        // Whoever held the lock before may have made it, or failed.
        if self.thumbnails.has_failed(&media.id) {
            return Err(refused());
        }
        let (lookup, id) = (store.clone(), media.id.clone());
        let made = tokio::task::spawn_blocking(move || lookup.thumbnail_key(&id))
            .await
            .map_err(|e| ThumbnailError::Unavailable(e.to_string()))?
            .map_err(|e| ThumbnailError::Unavailable(e.to_string()))?;
        if let Some(key) = made {
            return Ok(key);
        }
        let result = match self.thumbnails.decodes.clone().acquire_owned().await {
            Ok(_permit) => self.make_thumbnail(store, media).await,
            Err(e) => Err(ThumbnailError::Unavailable(e.to_string())),
        };
        if let Err(ThumbnailError::Unprocessable(why)) = &result {
            metrics::counter!("bluetick_media_thumbnails_refused_total").increment(1);
            tracing::info!(media = %media.id, reason = %why, "no thumbnail can be made; remembered");
            self.thumbnails.remember_failure(&media.id);
        }
        result
    }

    /// Makes, stores and records the thumbnail of `media`; returns its key.
    /// Decoding runs on a blocking thread, never on the async workers.
    async fn make_thumbnail(&self, store: &Store, media: &Media) -> Result<String, ThumbnailError> {
        let unavailable = |e: &dyn std::fmt::Display| ThumbnailError::Unavailable(e.to_string());
        if media.size as u64 > self.thumbnail_max_input {
            return Err(ThumbnailError::Unprocessable(format!(
                "over media.thumbnail_max_input ({} bytes)",
                self.thumbnail_max_input
            )));
        }
        let stream = self
            .objects
            .get(&media.object_key, None)
            .await
            .map_err(|e| unavailable(&e))?;
        let limit = self.thumbnail_max_input as usize;
        let original = stream
            .try_fold(Vec::new(), |mut all, chunk| async move {
                if all.len() + chunk.len() > limit {
                    return Err(std::io::Error::other(
                        "image over the thumbnail input limit",
                    ));
                }
                all.extend_from_slice(&chunk);
                Ok(all)
            })
            .await
            .map_err(|e| unavailable(&e))?;
        let content_type = media.content_type.clone();
        let max_pixels = self.thumbnail_max_pixels;
        let jpeg = tokio::task::spawn_blocking(move || {
            render_thumbnail(&original, &content_type, max_pixels)
        })
        .await
        .map_err(|e| unavailable(&e))?
        .map_err(ThumbnailError::Unprocessable)?;
        let key = thumbnail_key(&media.object_key);
        self.objects
            .put(
                &key,
                THUMBNAIL_CONTENT_TYPE,
                objects::once(jpeg.into()),
                u64::MAX,
            )
            .await
            .map_err(|e: ObjectError| unavailable(&e))?;
        let (store, id, recorded) = (store.clone(), media.id.clone(), key.clone());
        tokio::task::spawn_blocking(move || store.set_thumbnail(&id, &recorded))
            .await
            .map_err(|e| unavailable(&e))?
            .map_err(|e| unavailable(&e))?;
        metrics::counter!("bluetick_media_thumbnails_total").increment(1);
        Ok(key)
    }
}

/// Decodes an image of `content_type` and encodes a JPEG whose longer side
/// is at most [`THUMBNAIL_MAX_SIDE`], keeping the aspect ratio. The header
/// is read first: an image wider or taller than [`THUMBNAIL_MAX_INPUT_SIDE`]
/// or with more than `max_pixels` pixels is refused before decoding.
pub fn render_thumbnail(
    original: &[u8],
    content_type: &str,
    max_pixels: u64,
) -> Result<Vec<u8>, String> {
    let format = match content_type {
        "image/jpeg" => image::ImageFormat::Jpeg,
        "image/png" => image::ImageFormat::Png,
        "image/webp" => image::ImageFormat::WebP,
        other => return Err(format!("no thumbnails for {other}")),
    };
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(THUMBNAIL_MAX_INPUT_SIDE);
    limits.max_image_height = Some(THUMBNAIL_MAX_INPUT_SIDE);
    limits.max_alloc = Some(max_pixels.saturating_mul(THUMBNAIL_ALLOC_PER_PIXEL));
    let reader = || {
        let mut reader = image::ImageReader::with_format(std::io::Cursor::new(original), format);
        reader.limits(limits.clone());
        reader
    };
    let (width, height) = reader()
        .into_dimensions()
        .map_err(|e| format!("cannot read the image header: {e}"))?;
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(format!(
            "{width}x{height} is over the limit of {max_pixels} pixels"
        ));
    }
    let reader = reader();
    let image = reader.decode().map_err(|e| format!("cannot decode: {e}"))?;
    let thumbnail = image
        .thumbnail(THUMBNAIL_MAX_SIDE, THUMBNAIL_MAX_SIDE)
        .to_rgb8();
    let mut jpeg = std::io::Cursor::new(Vec::new());
    thumbnail
        .write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .map_err(|e| format!("cannot encode: {e}"))?;
    Ok(jpeg.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_past_the_pixel_limit_are_refused_before_decoding() {
        // A few hundred bytes on disk, a width past the limit.
        let mut png = std::io::Cursor::new(Vec::new());
        image::GrayImage::new(THUMBNAIL_MAX_INPUT_SIDE + 1, 1)
            .write_to(&mut png, image::ImageFormat::Png)
            .unwrap();
        let refused = render_thumbnail(png.get_ref(), "image/png", u64::MAX).unwrap_err();
        assert!(refused.contains("limit"), "{refused}");
    }

    #[test]
    fn images_past_the_pixel_budget_are_refused_from_their_header() {
        let mut png = std::io::Cursor::new(Vec::new());
        image::GrayImage::new(2000, 2000)
            .write_to(&mut png, image::ImageFormat::Png)
            .unwrap();
        let refused = render_thumbnail(png.get_ref(), "image/png", 3_999_999).unwrap_err();
        assert!(
            refused.contains("over the limit of 3999999 pixels"),
            "{refused}"
        );
        assert!(render_thumbnail(png.get_ref(), "image/png", 4_000_000).is_ok());
    }

    #[test]
    fn thumbnails_keep_the_aspect_ratio_within_the_side_limit() {
        let mut png = std::io::Cursor::new(Vec::new());
        image::RgbImage::from_pixel(1000, 500, image::Rgb([200, 30, 30]))
            .write_to(&mut png, image::ImageFormat::Png)
            .unwrap();
        let jpeg = render_thumbnail(png.get_ref(), "image/png", 1_000_000).unwrap();
        let thumbnail = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((thumbnail.width(), thumbnail.height()), (320, 160));
    }
}
