//! Hex, the one text form of digests, keys and tokens across the store and
//! its jobs (token hashes, message keys, content hashes, backup digests).

/// `bytes` as lower-case hex digits, two per byte.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
