//! Media wiring: the object store chosen by `[media]`, the limits uploads
//! are checked against, and thumbnails.
//!
//! The HTTP handlers (`http/media.rs`) decide who may do what; this module
//! owns where bytes go and how thumbnails are made from them.

use anyhow::Context;
use futures_util::TryStreamExt;
use objects::{ObjectError, ObjectStore};
use protocol::media::{MediaLimits, THUMBNAIL_CONTENT_TYPE, THUMBNAIL_MAX_SIDE, THUMBNAIL_TYPES};
use std::sync::Arc;
use std::time::Duration;
use store::media::Media;
use store::Store;

use crate::config::{Config, DownloadMode, MediaStoreKind};

/// Largest width or height of an image a thumbnail is made from: a small
/// file that claims huge dimensions (a decompression bomb) is refused
/// before its pixels are allocated.
const THUMBNAIL_MAX_INPUT_SIDE: u32 = 12_000;
/// Most memory the image decoder may allocate for one thumbnail.
const THUMBNAIL_MAX_ALLOC: u64 = 256 * 1024 * 1024;

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
}

impl MediaService {
    /// Opens the configured object store.
    pub fn open(config: &Config) -> anyhow::Result<MediaService> {
        let media = &config.media;
        let objects: Arc<dyn ObjectStore> =
            match media.store {
                MediaStoreKind::Local => {
                    let dir = config.media_dir();
                    Arc::new(objects::Local::open(&dir).with_context(|| {
                        format!("opening the media directory {}", dir.display())
                    })?)
                }
                MediaStoreKind::S3 => {
                    anyhow::ensure!(
                        !media.s3_endpoint.is_empty() && !media.s3_bucket.is_empty(),
                        "media.store = \"s3\" needs media.s3_endpoint and media.s3_bucket"
                    );
                    Arc::new(
                        objects::S3::open(&objects::S3Config {
                            endpoint: media.s3_endpoint.clone(),
                            bucket: media.s3_bucket.clone(),
                            region: media.s3_region.clone(),
                            access_key: media.s3_access_key.clone(),
                            secret_key: media.s3_secret_key.clone(),
                            path_style: media.s3_path_style,
                            prefix: media.s3_prefix.clone(),
                        })
                        .context("configuring the S3 media store")?,
                    )
                }
            };
        Ok(MediaService {
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
        })
    }

    /// Whether `media` can have a thumbnail at all.
    pub fn thumbnailable(&self, media: &Media) -> bool {
        THUMBNAIL_TYPES.contains(&media.content_type.as_str())
            && media.size as u64 <= self.thumbnail_max_input
    }

    /// Makes, stores and records the thumbnail of `media`; returns its key.
    /// Decoding runs on a blocking thread, never on the async workers.
    pub async fn make_thumbnail(&self, store: &Store, media: &Media) -> Result<String, String> {
        let stream = self
            .objects
            .get(&media.object_key, None)
            .await
            .map_err(|e| e.to_string())?;
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
            .map_err(|e| e.to_string())?;
        let content_type = media.content_type.clone();
        let jpeg = tokio::task::spawn_blocking(move || render_thumbnail(&original, &content_type))
            .await
            .map_err(|e| e.to_string())??;
        let key = format!("{}.thumb.jpg", media.object_key);
        self.objects
            .put(
                &key,
                THUMBNAIL_CONTENT_TYPE,
                objects::once(jpeg.into()),
                u64::MAX,
            )
            .await
            .map_err(|e: ObjectError| e.to_string())?;
        let (store, id, recorded) = (store.clone(), media.id.clone(), key.clone());
        tokio::task::spawn_blocking(move || store.set_thumbnail(&id, &recorded))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        metrics::counter!("bluetick_media_thumbnails_total").increment(1);
        Ok(key)
    }
}

/// Decodes an image of `content_type` and encodes a JPEG whose longer side
/// is at most [`THUMBNAIL_MAX_SIDE`], keeping the aspect ratio.
pub fn render_thumbnail(original: &[u8], content_type: &str) -> Result<Vec<u8>, String> {
    let format = match content_type {
        "image/jpeg" => image::ImageFormat::Jpeg,
        "image/png" => image::ImageFormat::Png,
        "image/webp" => image::ImageFormat::WebP,
        other => return Err(format!("no thumbnails for {other}")),
    };
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(original), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(THUMBNAIL_MAX_INPUT_SIDE);
    limits.max_image_height = Some(THUMBNAIL_MAX_INPUT_SIDE);
    limits.max_alloc = Some(THUMBNAIL_MAX_ALLOC);
    reader.limits(limits);
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
        let refused = render_thumbnail(png.get_ref(), "image/png").unwrap_err();
        assert!(refused.contains("limit"), "{refused}");
    }

    #[test]
    fn thumbnails_keep_the_aspect_ratio_within_the_side_limit() {
        let mut png = std::io::Cursor::new(Vec::new());
        image::RgbImage::from_pixel(1000, 500, image::Rgb([200, 30, 30]))
            .write_to(&mut png, image::ImageFormat::Png)
            .unwrap();
        let jpeg = render_thumbnail(png.get_ref(), "image/png").unwrap();
        let thumbnail = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((thumbnail.width(), thumbnail.height()), (320, 160));
    }
}
