//! Objects in any S3-compatible bucket, through rust-s3.
//!
//! Puts of up to [`PART_SIZE`] go up in one request; larger ones become a
//! multipart upload whose parts are sent one at a time, so an upload holds
//! at most one part in memory whatever its size. (rust-s3's own
//! `put_object_stream` sends up to 100 parts at once, sized by free
//! memory, which is the opposite of what a server wants.) A failed or
//! oversize multipart upload is aborted, so no partial object remains.
//!
//! Gets are streamed: rust-s3 presigns the request and reqwest streams the
//! response, so the status is checked before a single byte is passed on and
//! ranges need no buffering.

use futures_util::{StreamExt, TryStreamExt};
use s3::creds::Credentials;
use s3::serde_types::Part;
use s3::{Bucket, Region};
use std::collections::HashMap;
use std::time::Duration;

use crate::{
    check_key, ByteRange, ByteStream, Meter, ObjectError, ObjectInfo, ObjectStore, Stored,
};

/// Size of each part of a multipart upload (S3's minimum is 5 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Lifetime of the presigned URL behind a proxied get: long enough to send
/// the request, which is all it is used for.
const PROXY_URL_TTL_SECS: u32 = 300;

/// Where the bucket is and how to sign for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// `https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:8333`, …
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// `endpoint/bucket/key` instead of `bucket.endpoint/key`; most
    /// self-hosted servers need it.
    pub path_style: bool,
    /// Put every key under this folder of the bucket (`""` for none), so
    /// several deployments can share one bucket without seeing, or
    /// deleting, each other's objects.
    pub prefix: String,
}

/// A bucket of objects.
#[derive(Clone)]
pub struct S3 {
    bucket: Box<Bucket>,
    /// `""`, or the configured prefix ending in `/`.
    prefix: String,
    /// Streams gets from presigned URLs.
    http: reqwest::Client,
}

impl S3 {
    /// A handle on the configured bucket (no request is made yet).
    pub fn open(config: &S3Config) -> Result<S3, ObjectError> {
        let region = Region::Custom {
            region: config.region.clone(),
            endpoint: config.endpoint.trim_end_matches('/').to_owned(),
        };
        let credentials = Credentials::new(
            Some(&config.access_key),
            Some(&config.secret_key),
            None,
            None,
            None,
        )
        .map_err(|e| ObjectError::S3(format!("credentials: {e}")))?;
        let mut bucket = Bucket::new(&config.bucket, region, credentials).map_err(s3_error)?;
        if config.path_style {
            bucket = bucket.with_path_style();
        }
        let prefix = config.prefix.trim_matches('/');
        if !prefix.is_empty() {
            check_key(prefix)?;
        }
        Ok(S3 {
            bucket,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            http: reqwest::Client::new(),
        })
    }

    /// The bucket key of `key`: checked, under the prefix.
    fn object_key(&self, key: &str) -> Result<String, ObjectError> {
        check_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    /// Uploads what is left of `body` after `first` as a multipart upload.
    async fn put_multipart(
        &self,
        key: &str,
        content_type: &str,
        first: Vec<u8>,
        body: &mut ByteStream,
        meter: &mut Meter,
    ) -> Result<(), ObjectError> {
        let upload = self
            .bucket
            .initiate_multipart_upload(key, content_type)
            .await
            .map_err(s3_error)?;
        let mut parts: Vec<Part> = Vec::new();
        let mut part = first;
        let result: Result<(), ObjectError> = async {
            loop {
                let number = parts.len() as u32 + 1;
                let done = part.len() < PART_SIZE;
                let sent = self
                    .bucket
                    .put_multipart_chunk(part, key, number, &upload.upload_id, content_type)
                    .await
                    .map_err(s3_error)?;
                parts.push(sent);
                if done {
                    break;
                }
                part = fill_part(body, meter).await?;
                if part.is_empty() {
                    break;
                }
            }
            let completed = self
                .bucket
                .complete_multipart_upload(key, &upload.upload_id, parts)
                .await
                .map_err(s3_error)?;
            check_status(completed.status_code(), key)
        }
        .await;
        if result.is_err() {
            if let Err(e) = self.bucket.abort_upload(key, &upload.upload_id).await {
                tracing::warn!(error = %e, key, "could not abort a failed multipart upload");
            }
        }
        result
    }
}

#[async_trait::async_trait]
impl ObjectStore for S3 {
    async fn put(
        &self,
        key: &str,
        content_type: &str,
        mut body: ByteStream,
        limit: u64,
    ) -> Result<Stored, ObjectError> {
        let key = &self.object_key(key)?;
        let mut meter = Meter::new(limit);
        let first = fill_part(&mut body, &mut meter).await?;
        if first.len() < PART_SIZE {
            let response = self
                .bucket
                .put_object_with_content_type(key, &first, content_type)
                .await
                .map_err(s3_error)?;
            check_status(response.status_code(), key)?;
        } else {
            self.put_multipart(key, content_type, first, &mut body, &mut meter)
                .await?;
        }
        Ok(meter.finish())
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<ByteStream, ObjectError> {
        let key = &self.object_key(key)?;
        let url = self
            .bucket
            .presign_get(key, PROXY_URL_TTL_SECS, None)
            .await
            .map_err(s3_error)?;
        let mut request = self.http.get(url);
        if let Some(range) = range {
            request = request.header("range", format!("bytes={}-{}", range.start, range.end));
        }
        let response = request
            .send()
            .await
            .map_err(|e| ObjectError::S3(e.to_string()))?;
        check_status(response.status().as_u16(), key)?;
        Ok(Box::pin(
            response.bytes_stream().map_err(std::io::Error::other),
        ))
    }

    async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        let key = &self.object_key(key)?;
        let response = self.bucket.delete_object(key).await.map_err(s3_error)?;
        match response.status_code() {
            404 => Ok(()),
            status => check_status(status, key),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectError> {
        let pages = self
            .bucket
            .list(format!("{}{prefix}", self.prefix), None)
            .await
            .map_err(s3_error)?;
        let mut found: Vec<ObjectInfo> = pages
            .into_iter()
            .flat_map(|page| page.contents)
            .filter_map(|object| {
                Some(ObjectInfo {
                    key: object.key.strip_prefix(&self.prefix)?.to_owned(),
                    size: object.size,
                })
            })
            .collect();
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    async fn presigned_get(&self, key: &str, ttl: Duration) -> Result<Option<String>, ObjectError> {
        let key = &self.object_key(key)?;
        // S3 caps presigned URLs at 7 days.
        let secs = ttl.as_secs().clamp(1, 7 * 24 * 3600) as u32;
        let url = self
            .bucket
            .presign_get(key, secs, None::<HashMap<String, String>>)
            .await
            .map_err(s3_error)?;
        Ok(Some(url))
    }
}

/// Reads from `body` until a whole part is gathered or the body ends.
async fn fill_part(body: &mut ByteStream, meter: &mut Meter) -> Result<Vec<u8>, ObjectError> {
    let mut part = Vec::with_capacity(64 * 1024);
    while part.len() < PART_SIZE {
        let Some(chunk) = body.next().await else {
            break;
        };
        let chunk = chunk.map_err(ObjectError::Body)?;
        meter.take(&chunk)?;
        // A part may overshoot PART_SIZE by one chunk: S3 only needs every
        // part but the last to be at least 5 MiB.
        part.extend_from_slice(&chunk);
    }
    Ok(part)
}

fn check_status(status: u16, key: &str) -> Result<(), ObjectError> {
    match status {
        200..=299 => Ok(()),
        404 => Err(ObjectError::NotFound(key.to_owned())),
        status => Err(ObjectError::S3(format!("HTTP {status} for {key:?}"))),
    }
}

fn s3_error(e: s3::error::S3Error) -> ObjectError {
    ObjectError::S3(e.to_string())
}
