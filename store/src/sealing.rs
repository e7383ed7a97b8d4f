//! Encryption at rest for message bodies and dead letters.
//!
//! Each value is sealed with XChaCha20-Poly1305 under the server's message
//! key and a fresh random 192-bit nonce, stored as `nonce || ciphertext`.
//! The random nonce needs no counter to survive restarts or several
//! servers sharing a key. The key is 32 bytes; on the embedded default it
//! lives in a file created on first start with mode 0600.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::io::Write;
use std::path::Path;

use crate::StoreError;

const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;

/// Seals and opens values with the message key.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    /// Kept to derive subkeys (see [`Sealer::derive_key`]).
    key: [u8; KEY_LEN],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(***)")
    }
}

impl Sealer {
    /// A sealer for a 32-byte key given as 64 hex digits.
    pub fn from_hex(hex: &str) -> Result<Sealer, StoreError> {
        let hex = hex.trim();
        if hex.len() != KEY_LEN * 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::Key(
                "the message key must be 64 hex digits (32 bytes)".into(),
            ));
        }
        let mut key = [0u8; KEY_LEN];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0);
        }
        Ok(Sealer {
            cipher: XChaCha20Poly1305::new_from_slice(&key)
                .map_err(|e| StoreError::Key(e.to_string()))?,
            key,
        })
    }

    /// Reads the key file at `path`, creating it (mode 0600, random key)
    /// if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Sealer, StoreError> {
        match std::fs::read_to_string(path) {
            Ok(hex) => Sealer::from_hex(&hex)
                .map_err(|e| StoreError::Key(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = XChaCha20Poly1305::generate_key(&mut OsRng);
                let hex = crate::encoding::hex(&key);
                write_private(path, &hex).map_err(|e| {
                    StoreError::Key(format!("cannot create {}: {e}", path.display()))
                })?;
                tracing::info!(path = %path.display(), "created a new message key; back it up with the database");
                Sealer::from_hex(&hex)
            }
            Err(e) => Err(StoreError::Key(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// A key for another purpose, derived from the message key as
    /// HMAC-SHA256(message key, `purpose`), so one key file is all an
    /// operator backs up, and the derived key reveals nothing about the
    /// message key.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// `nonce || ciphertext` of `plaintext`.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption into a Vec cannot fail for inputs under 256 GiB.
        let ciphertext = self.cipher.encrypt(&nonce, plaintext).unwrap_or_default();
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// The plaintext of a sealed value; fails if it was sealed under another
    /// key or altered.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        if sealed.len() < NONCE_LEN {
            return Err(StoreError::Key("sealed value is truncated".into()));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| StoreError::Key("sealed value does not open with this message key".into()))
    }

    /// Opens a sealed UTF-8 string.
    pub fn open_string(&self, sealed: &[u8]) -> Result<String, StoreError> {
        String::from_utf8(self.open(sealed)?)
            .map_err(|_| StoreError::Key("sealed value is not UTF-8".into()))
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key() {
        let a = Sealer::from_hex(&"11".repeat(32)).unwrap();
        let b = Sealer::from_hex(&"22".repeat(32)).unwrap();
        let sealed = a.seal(b"meet at noon");
        assert!(!sealed.windows(4).any(|w| w == b"noon"));
        assert_ne!(a.seal(b"meet at noon"), sealed, "fresh nonce each time");
        assert_eq!(a.open(&sealed).unwrap(), b"meet at noon");
        assert!(b.open(&sealed).is_err());
        assert!(Sealer::from_hex("abc").is_err());
    }

    #[test]
    fn the_key_file_is_created_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/message.key");
        let first = Sealer::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = Sealer::load_or_create(&path).unwrap();
        assert_eq!(again.open(&first.seal(b"x")).unwrap(), b"x");
    }
}
