//! Where backups are kept: keys such as `backups/bluetick-….zip`, behind
//! [`Target`], which is all the backup job uses. By default that is the
//! server's object store ([`crate::objects::Objects`]: the media directory
//! or S3); with `jobs.backup_dir` set, a directory on local disk
//! ([`LocalDir`]).

use std::io;
use std::path::{Path, PathBuf};

/// A place that stores files under keys.
pub trait Target: Send + Sync {
    /// Stores `file`'s bytes under `key`, replacing anything there; `file`
    /// may be consumed (moved).
    fn put(&self, key: &str, file: &Path) -> io::Result<()>;
    /// The keys starting with `prefix`, sorted.
    fn list(&self, prefix: &str) -> io::Result<Vec<String>>;
    /// Deletes `key`; deleting a missing key is not an error.
    fn delete(&self, key: &str) -> io::Result<()>;
    /// A local file holding `key`'s bytes (for an object store, a
    /// downloaded copy).
    fn fetch(&self, key: &str) -> io::Result<PathBuf>;
    /// A directory for files being written before [`Target::put`].
    fn staging_dir(&self) -> io::Result<PathBuf>;
    /// Where `key` lives, for people.
    fn describe(&self, key: &str) -> String;
}

/// Keys as files under a root directory: `backups/x.zip` is
/// `ROOT/backups/x.zip`.
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    pub fn new(root: impl Into<PathBuf>) -> LocalDir {
        LocalDir { root: root.into() }
    }

    fn path(&self, key: &str) -> io::Result<PathBuf> {
        // Keys come from our own code, but a key that climbs out of the root
        // is refused all the same.
        if key.split('/').any(|part| part.is_empty() || part == "..") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad key {key:?}"),
            ));
        }
        Ok(self.root.join(key))
    }
}

impl Target for LocalDir {
    fn put(&self, key: &str, file: &Path) -> io::Result<()> {
        let dest = self.path(key)?;
        if let Some(parent) = dest.parent() {
            store::db::create_private_dir(parent)?;
        }
        if std::fs::rename(file, &dest).is_err() {
            // Another file system: copy to a side name, then rename, so a
            // reader never sees half a file under the key.
            let partial = dest.with_extension("partial");
            std::fs::copy(file, &partial)?;
            std::fs::File::open(&partial)?.sync_all()?;
            std::fs::rename(&partial, &dest)?;
            std::fs::remove_file(file)?;
        }
        Ok(())
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        let (dir, start) = match prefix.rsplit_once('/') {
            Some((dir, start)) => (format!("{dir}/"), start),
            None => (String::new(), prefix),
        };
        let mut keys = Vec::new();
        match std::fs::read_dir(self.root.join(&dir)) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if entry.file_type()?.is_file()
                        && name.starts_with(start)
                        && !name.ends_with(".partial")
                    {
                        keys.push(format!("{dir}{name}"));
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        keys.sort();
        Ok(keys)
    }

    fn delete(&self, key: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(key)?) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn fetch(&self, key: &str) -> io::Result<PathBuf> {
        let path = self.path(key)?;
        if !path.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no {}", path.display()),
            ));
        }
        Ok(path)
    }

    fn staging_dir(&self) -> io::Result<PathBuf> {
        let dir = self.root.join(".staging");
        store::db::create_private_dir(&dir)?;
        Ok(dir)
    }

    fn describe(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }
}
