//! bluetick's object store: byte streams kept under string keys, in a
//! local directory or in any S3-compatible bucket.
//!
//! # Layout
//! - [`ObjectStore`]: the trait every backend implements: put a stream
//!   (hashed and size-limited on the way in), get a whole object or a byte
//!   range as a stream, delete, list by prefix, and, where the backend can,
//!   a presigned GET URL that lets a client fetch the bytes directly.
//! - [`local`]: a directory on this machine, the default.
//! - [`s3`]: any S3 through rust-s3 (AWS, MinIO, SeaweedFS, s3s-fs, …).
//!
//! Bytes are never held whole in memory: uploads move in chunks of at most
//! [`s3::PART_SIZE`], downloads as the backend produces them. Callers pick
//! the keys; media lives under `media/`, backups under `backups/`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), objects::ObjectError> {
//! use objects::{ObjectStore, Local};
//! let store = Local::open("data/objects")?;
//! let body = objects::once(bytes::Bytes::from_static(b"hello"));
//! let stored = store.put("notes/hello.txt", "text/plain", body, 1024).await?;
//! assert_eq!(stored.size, 5);
//! # Ok(()) }
//! ```
//!
//! This crate knows nothing of users, media rows or access rules: deciding
//! who may read a key is the caller's job.

pub mod local;
pub mod s3;

use bytes::Bytes;
use futures_util::Stream;
use sha2::{Digest, Sha256};
use std::pin::Pin;
use std::time::Duration;

pub use local::Local;
pub use s3::{S3Config, S3};

/// A stream of bytes in, or out of, the store.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// A stream that yields `bytes` once.
pub fn once(bytes: Bytes) -> ByteStream {
    Box::pin(futures_util::stream::once(async move { Ok(bytes) }))
}

/// What a completed put wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Bytes written.
    pub size: u64,
    /// SHA-256 of those bytes, lower-case hex.
    pub sha256: String,
}

/// One object found by [`ObjectStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

/// Bytes `start..=end` of an object (both inclusive, as in HTTP `Range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// How many bytes the range covers.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Never true: a range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Why an object operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The key is empty, absolute, or has `..` or odd characters.
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    /// No object under this key.
    #[error("no object {0:?}")]
    NotFound(String),
    /// The stream grew past the limit given to `put`; nothing was kept.
    #[error("the object is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// Reading the incoming stream failed (the client went away); nothing
    /// was kept.
    #[error("reading the upload failed: {0}")]
    Body(std::io::Error),
    /// The local filesystem failed.
    #[error("object store I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The S3 service failed or refused.
    #[error("S3: {0}")]
    S3(String),
}

/// A place to keep objects. Every backend keeps the same promises: a put
/// is all or nothing (a failed or oversize put leaves no object), and a
/// key, once put, reads back the same bytes until deleted.
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync {
    /// Streams `body` under `key`, refusing it with
    /// [`ObjectError::TooLarge`] as soon as it passes `limit` bytes.
    /// Replaces any object already there.
    async fn put(
        &self,
        key: &str,
        content_type: &str,
        body: ByteStream,
        limit: u64,
    ) -> Result<Stored, ObjectError>;

    /// The object's bytes, or only `range` of them. The caller resolves the
    /// range against the object's size first.
    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<ByteStream, ObjectError>;

    /// Removes the object; removing a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), ObjectError>;

    /// Every object whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectError>;

    /// A URL that GETs the object without credentials for `ttl`, if the
    /// backend has such a thing (S3 does; a local directory does not).
    async fn presigned_get(&self, key: &str, ttl: Duration) -> Result<Option<String>, ObjectError>;
}

/// Checks a key: non-empty, relative, `/`-separated segments of
/// `A-Z a-z 0-9 - _ .`, none of them `.` or `..`.
pub fn check_key(key: &str) -> Result<(), ObjectError> {
    let valid = !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    if valid {
        Ok(())
    } else {
        Err(ObjectError::InvalidKey(key.to_owned()))
    }
}

/// Counts and hashes bytes as they pass, and enforces the size limit.
struct Meter {
    hasher: Sha256,
    size: u64,
    limit: u64,
}

impl Meter {
    fn new(limit: u64) -> Meter {
        Meter {
            hasher: Sha256::new(),
            size: 0,
            limit,
        }
    }

    fn take(&mut self, chunk: &[u8]) -> Result<(), ObjectError> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(ObjectError::TooLarge { limit: self.limit });
        }
        self.hasher.update(chunk);
        Ok(())
    }

    fn finish(self) -> Stored {
        Stored {
            size: self.size,
            sha256: hex(&self.hasher.finalize()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random name for temporary files and upload ids.
fn random_suffix() -> String {
    use rand::Rng;
    let bytes: [u8; 12] = rand::thread_rng().gen();
    hex(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_stay_inside_the_store() {
        for good in ["media/alice/abc", "backups/2026-11-28.tar.gz", "a"] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        for bad in ["", "/abs", "a/../b", "..", "a//b", "a/", "sp ace", "a\\b"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }
}
