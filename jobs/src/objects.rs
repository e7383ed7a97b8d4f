//! The object store as the jobs use it: the server's async
//! [`objects::ObjectStore`] (a local directory or S3) behind synchronous
//! calls, since job bodies run on blocking threads.
//!
//! It is where backups go (under `backups/`, as a [`Target`]) and where
//! cleanup and expiry delete media objects.

use bytes::Bytes;
use futures_util::StreamExt;
use objects::{ByteStream, ObjectStore};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::runtime::Handle;

use crate::target::Target;

/// Bytes read from a file per chunk of an upload.
const CHUNK: usize = 1024 * 1024;

/// Synchronous access to an object store.
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// The runtime that drives the store's I/O; calls block on it from a
    /// thread that is not one of its workers.
    runtime: Handle,
    /// Where fetched and staged files go.
    staging: PathBuf,
}

impl Objects {
    pub fn new(store: Arc<dyn ObjectStore>, runtime: Handle, staging: PathBuf) -> Objects {
        Objects {
            store,
            runtime,
            staging,
        }
    }

    /// Deletes `key`; a missing key is not an error.
    pub fn delete_object(&self, key: &str) -> io::Result<()> {
        self.runtime
            .block_on(self.store.delete(key))
            .map_err(io::Error::other)
    }
}

/// `file` as a stream of chunks, read as the upload asks for them.
fn file_stream(file: std::fs::File) -> ByteStream {
    let chunks = futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buffer = vec![0u8; CHUNK];
        match file.read(&mut buffer) {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(Bytes::from(buffer)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Box::pin(chunks)
}

impl Target for Objects {
    fn put(&self, key: &str, file: &Path) -> io::Result<()> {
        let body = file_stream(std::fs::File::open(file)?);
        self.runtime
            .block_on(self.store.put(key, "application/zip", body, u64::MAX))
            .map_err(io::Error::other)?;
        // The staged file was consumed by the put.
        let _ = std::fs::remove_file(file);
        Ok(())
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        let found = self
            .runtime
            .block_on(self.store.list(prefix))
            .map_err(io::Error::other)?;
        Ok(found.into_iter().map(|object| object.key).collect())
    }

    fn delete(&self, key: &str) -> io::Result<()> {
        self.delete_object(key)
    }

    fn fetch(&self, key: &str) -> io::Result<PathBuf> {
        let name = key.rsplit('/').next().unwrap_or("backup");
        let path = self.staging_dir()?.join(format!("fetched-{name}"));
        let mut out = std::fs::File::create(&path)?;
        self.runtime.block_on(async {
            let mut stream = self.store.get(key, None).await.map_err(|e| match e {
                objects::ObjectError::NotFound(_) => {
                    io::Error::new(io::ErrorKind::NotFound, e.to_string())
                }
                e => io::Error::other(e),
            })?;
            while let Some(chunk) = stream.next().await {
                out.write_all(&chunk?)?;
            }
            out.sync_all()
        })?;
        Ok(path)
    }

    fn staging_dir(&self) -> io::Result<PathBuf> {
        std::fs::create_dir_all(&self.staging)?;
        Ok(self.staging.clone())
    }

    fn describe(&self, key: &str) -> String {
        format!("object {key}")
    }
}
