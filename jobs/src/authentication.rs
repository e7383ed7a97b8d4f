//! Backup authentication: who may hand `bluetick restore` an archive.
//!
//! A backup's `manifest.json` lists every table file with its row count
//! and SHA-256, so it pins the whole archive. The backup job also writes
//! `manifest.hmac`: HMAC-SHA256 of the manifest's exact bytes under the
//! [`BackupKey`], as hex. Restore checks that tag before it believes
//! anything the manifest says, so an archive edited by someone without the
//! key (a planted token row, a row count changed to match) is refused
//! before a byte of it is loaded.
//!
//! The key is derived from the message key ([`store::Store::backup_key`]):
//! whoever holds the message key can both read the bodies in a backup and
//! vouch for it; whoever holds only the backup file can do neither.
//!
//! # Invariant
//! Restore reads nothing from an archive but the manifest and its tag
//! until the tag verifies; every later read is checked against the
//! authenticated manifest (per-table SHA-256 and row count).

use hmac::{Hmac, Mac};
use store::encoding::hex;
use store::Store;

use crate::JobError;

/// The archive member holding the manifest's tag.
pub const TAG: &str = "manifest.hmac";

/// The key backups are authenticated with.
#[derive(Clone)]
pub struct BackupKey([u8; 32]);

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackupKey(***)")
    }
}

impl BackupKey {
    /// The backup key of `store`, derived from its message key.
    pub fn of(store: &Store) -> Result<BackupKey, JobError> {
        store.backup_key().map(BackupKey).map_err(|_| {
            JobError::Archive(
                "no message key: backups are authenticated with a key derived from it".into(),
            )
        })
    }

    /// The tag for a manifest's exact bytes, as hex.
    pub fn sign(&self, manifest: &[u8]) -> String {
        hex(&self.mac(manifest).finalize().into_bytes())
    }

    /// Whether `tag` (hex) is this key's tag for `manifest`, compared in
    /// constant time.
    pub fn verify(&self, manifest: &[u8], tag: &str) -> bool {
        let Some(bytes) = unhex(tag.trim()) else {
            return false;
        };
        self.mac(manifest).verify_slice(&bytes).is_ok()
    }

    fn mac(&self, manifest: &[u8]) -> Hmac<sha2::Sha256> {
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        mac.update(manifest);
        mac
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [high, low] => Some(digit(*high)? << 4 | digit(*low)?),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_verifies_only_for_its_manifest_and_key() {
        let a = BackupKey([1; 32]);
        let b = BackupKey([2; 32]);
        let tag = a.sign(b"{\"tables\":[]}");
        assert!(a.verify(b"{\"tables\":[]}", &tag));
        assert!(!a.verify(b"{\"tables\":[1]}", &tag));
        assert!(!b.verify(b"{\"tables\":[]}", &tag));
        assert!(!a.verify(b"{\"tables\":[]}", "zz"));
        assert!(!a.verify(b"{\"tables\":[]}", ""));
    }
}
