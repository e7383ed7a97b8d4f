//! Objects as files under one directory: key `a/b` is the file `DIR/a/b`.
//!
//! A put writes to `DIR/.partial/…` and renames the finished, fsynced file
//! into place, so a reader never sees half an object and a crash leaves at
//! most a stray partial file.

use bytes::Bytes;
use futures_util::StreamExt;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::{
    check_key, random_suffix, ByteRange, ByteStream, Meter, ObjectError, ObjectInfo, ObjectStore,
    Stored,
};

/// How much a download reads from disk at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Where unfinished puts live; never a valid key, since keys cannot start
/// with a dot segment of this name being listed (it is skipped).
const PARTIAL_DIR: &str = ".partial";

/// Mode of the directories the store creates, whatever the umask.
const PRIVATE_DIR: u32 = 0o700;
/// Mode of the objects' files.
const PRIVATE_FILE: u32 = 0o600;

/// A directory of objects.
#[derive(Debug, Clone)]
pub struct Local {
    /// The root; every key is a relative path below it.
    root: PathBuf,
}

impl Local {
    /// Uses `root`, creating it if needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Local, ObjectError> {
        use std::os::unix::fs::DirBuilderExt;
        let root = root.into();
        // Objects are users' media and backups: readable by the owner only.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(PRIVATE_DIR)
            .create(root.join(PARTIAL_DIR))?;
        Ok(Local { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf, ObjectError> {
        check_key(key)?;
        if key.split('/').next() == Some(PARTIAL_DIR) {
            return Err(ObjectError::InvalidKey(key.to_owned()));
        }
        Ok(self.root.join(key))
    }
}

#[async_trait::async_trait]
impl ObjectStore for Local {
    async fn put(
        &self,
        key: &str,
        _content_type: &str,
        mut body: ByteStream,
        limit: u64,
    ) -> Result<Stored, ObjectError> {
        let target = self.path(key)?;
        let partial = self.root.join(PARTIAL_DIR).join(random_suffix());
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE)
            .open(&partial)
            .await?;
        let mut meter = Meter::new(limit);
        let written: Result<(), ObjectError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(ObjectError::Body)?;
                meter.take(&chunk)?;
                file.write_all(&chunk).await?;
            }
            file.sync_all().await?;
            if let Some(parent) = target.parent() {
                tokio::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(PRIVATE_DIR)
                    .create(parent)
                    .await?;
            }
            tokio::fs::rename(&partial, &target).await?;
            Ok(())
        }
        .await;
        if let Err(e) = written {
            // The partial file is all there is to undo.
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
        Ok(meter.finish())
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<ByteStream, ObjectError> {
        let path = self.path(key)?;
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ObjectError::NotFound(key.to_owned()))
            }
            Err(e) => return Err(e.into()),
        };
        let remaining = match range {
            Some(range) => {
                file.seek(SeekFrom::Start(range.start)).await?;
                range.len()
            }
            None => file.metadata().await?.len(),
        };
        Ok(Box::pin(futures_util::stream::try_unfold(
            (file, remaining),
            |(mut file, remaining)| async move {
                if remaining == 0 {
                    return Ok(None);
                }
                let want = remaining.min(READ_CHUNK as u64) as usize;
                let mut buffer = vec![0; want];
                let read = file.read(&mut buffer).await?;
                if read == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "object shorter than expected",
                    ));
                }
                buffer.truncate(read);
                Ok(Some((Bytes::from(buffer), (file, remaining - read as u64))))
            },
        )))
    }

    async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            walk(&root, &root, &prefix, &mut found)?;
            found.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(found)
        })
        .await
        .map_err(|e| ObjectError::Io(std::io::Error::other(e)))?
    }

    async fn presigned_get(
        &self,
        _key: &str,
        _ttl: Duration,
    ) -> Result<Option<String>, ObjectError> {
        Ok(None)
    }
}

/// Collects files below `dir` whose key starts with `prefix`.
fn walk(
    root: &Path,
    dir: &Path,
    prefix: &str,
    found: &mut Vec<ObjectInfo>,
) -> Result<(), ObjectError> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let Ok(relative) = path.strip_prefix(root) else {
            continue;
        };
        let key = relative.to_string_lossy().replace('\\', "/");
        if key == PARTIAL_DIR {
            continue;
        }
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            // Only descend where keys under this directory could match.
            if key.starts_with(prefix) || prefix.starts_with(&format!("{key}/")) {
                walk(root, &path, prefix, found)?;
            }
        } else if file_type.is_file() && key.starts_with(prefix) {
            found.push(ObjectInfo {
                key,
                size: entry.metadata()?.len(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;

    async fn read_all(stream: ByteStream) -> Vec<u8> {
        stream
            .try_fold(Vec::new(), |mut all, chunk| async move {
                all.extend_from_slice(&chunk);
                Ok(all)
            })
            .await
            .unwrap()
    }

    fn chunks(parts: &[&'static [u8]]) -> ByteStream {
        let parts: Vec<std::io::Result<Bytes>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Box::pin(futures_util::stream::iter(parts))
    }

    #[tokio::test]
    async fn put_get_range_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Local::open(dir.path()).unwrap();
        let stored = store
            .put(
                "media/a/1",
                "text/plain",
                chunks(&[b"hello ", b"world"]),
                100,
            )
            .await
            .unwrap();
        assert_eq!(stored.size, 11);
        assert_eq!(
            stored.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(
            read_all(store.get("media/a/1", None).await.unwrap()).await,
            b"hello world"
        );
        let range = ByteRange { start: 6, end: 9 };
        assert_eq!(
            read_all(store.get("media/a/1", Some(range)).await.unwrap()).await,
            b"worl"
        );
        store
            .put("backups/x", "text/plain", chunks(&[b"b"]), 100)
            .await
            .unwrap();
        let listed = store.list("media/").await.unwrap();
        assert_eq!(
            listed,
            vec![ObjectInfo {
                key: "media/a/1".into(),
                size: 11
            }]
        );
        store.delete("media/a/1").await.unwrap();
        store.delete("media/a/1").await.unwrap();
        assert!(matches!(
            store.get("media/a/1", None).await,
            Err(ObjectError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn an_oversize_put_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Local::open(dir.path()).unwrap();
        let refused = store
            .put("big", "text/plain", chunks(&[b"0123", b"4567"]), 6)
            .await;
        assert!(matches!(refused, Err(ObjectError::TooLarge { limit: 6 })));
        assert!(store.list("").await.unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join(PARTIAL_DIR))
                .unwrap()
                .count(),
            0
        );
    }
}
