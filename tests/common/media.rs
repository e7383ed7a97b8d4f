//! Media over real sockets: servers on the local store or on the S3 server
//! scripts/test starts, and requests over [`super::http`] that move raw
//! bytes (uploads, ranged downloads, a 1 GiB stream) without buffering what
//! they need not.

use sha2::{Digest, Sha256};
use std::io::{BufReader, Read, Write};
use std::net::SocketAddr;

use super::http::{connect, read_head, read_response, send_head, Response};
use super::{Backend, Options, Server};

/// Which object store a test server keeps media in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaStore {
    Local,
    S3,
}

/// Generates one test per (database, media store) pairing that covers each
/// part once without doubling the run time: SQLite with the local
/// directory, PostgreSQL with S3.
#[macro_export]
macro_rules! on_both_media_stores {
    ($($(#[$meta:meta])* async fn $name:ident($backend:ident, $media:ident) $body:block)*) => {
        mod sqlite_local {
            use super::*;
            $($(#[$meta])* #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let ($backend, $media) = (Backend::Sqlite, MediaStore::Local);
                $body
            })*
        }
        mod postgres_s3 {
            use super::*;
            $($(#[$meta])* #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let ($backend, $media) = (Backend::Postgres, MediaStore::S3);
                $body
            })*
        }
    };
}

/// The S3 server the tests use, from `BT_TEST_S3_*`; a missing variable is
/// a loud failure, never a skip.
pub struct S3Env {
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

impl S3Env {
    pub fn from_env() -> S3Env {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!(
                    "{name} is not set: run the README's test command (scripts/test), \
                     which starts an S3 server (s3s-fs) and sets it"
                )
            })
        };
        S3Env {
            endpoint: var("BT_TEST_S3_ENDPOINT"),
            bucket: var("BT_TEST_S3_BUCKET"),
            access_key: var("BT_TEST_S3_ACCESS_KEY"),
            secret_key: var("BT_TEST_S3_SECRET_KEY"),
        }
    }
}

/// `options` plus what makes the server keep media in `store`.
pub fn with_media_store(options: Options, store: MediaStore) -> Options {
    match store {
        MediaStore::Local => options.env("BLUETICK_MEDIA__STORE", "local"),
        MediaStore::S3 => {
            let s3 = S3Env::from_env();
            options
                .env("BLUETICK_MEDIA__STORE", "s3")
                .env("BLUETICK_MEDIA__S3_ENDPOINT", &s3.endpoint)
                .env("BLUETICK_MEDIA__S3_BUCKET", &s3.bucket)
                .env("BLUETICK_MEDIA__S3_ACCESS_KEY", &s3.access_key)
                .env("BLUETICK_MEDIA__S3_SECRET_KEY", &s3.secret_key)
                .env("BLUETICK_MEDIA__S3_PATH_STYLE", "true")
                // Tests share one bucket; each server keeps to its own folder.
                .env(S3_PREFIX_VAR, &unique_prefix())
        }
    }
}

const S3_PREFIX_VAR: &str = "BLUETICK_MEDIA__S3_PREFIX";

fn unique_prefix() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("test-{}-{n}-{nanos}", std::process::id())
}

/// The object store `server` uses, opened as an operator would (on S3,
/// under the server's own prefix).
pub fn object_store(server: &Server, store: MediaStore) -> Box<dyn objects::ObjectStore> {
    match store {
        MediaStore::Local => {
            Box::new(objects::Local::open(server.data_dir.path().join("media")).expect("media dir"))
        }
        MediaStore::S3 => {
            let s3 = S3Env::from_env();
            Box::new(
                objects::S3::open(&objects::S3Config {
                    endpoint: s3.endpoint,
                    bucket: s3.bucket,
                    region: "us-east-1".into(),
                    access_key: s3.access_key,
                    secret_key: s3.secret_key,
                    path_style: true,
                    prefix: server.configured(S3_PREFIX_VAR).unwrap_or("").to_owned(),
                })
                .expect("S3"),
            )
        }
    }
}

/// Starts a server on `backend` keeping media in `store`.
pub fn start(backend: Backend, store: MediaStore, options: Options) -> Server {
    Server::start_with(backend, with_media_store(options, store))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `POST /v1/media` with `body` as `content_type`.
pub fn upload(addr: SocketAddr, token: &str, content_type: &str, body: &[u8]) -> Response {
    let mut stream = connect(addr);
    send_head(
        &mut stream,
        &addr.to_string(),
        "POST",
        "/v1/media",
        &[
            ("Authorization", format!("Bearer {token}")),
            ("Content-Type", content_type.to_owned()),
            ("Content-Length", body.len().to_string()),
        ],
    );
    stream.write_all(body).expect("send body");
    read_response(stream)
}

/// Uploads `media` and returns its id, asserting the answer matches.
pub fn upload_ok(addr: SocketAddr, token: &str, content_type: &str, media: &[u8]) -> String {
    let reply = upload(addr, token, content_type, media);
    assert_eq!(reply.status, 201, "upload: {}", reply.body);
    let uploaded = reply.json();
    assert_eq!(uploaded["size"], media.len() as u64);
    assert_eq!(uploaded["sha256"], sha256_hex(media));
    assert_eq!(uploaded["content_type"], content_type);
    uploaded["id"].as_str().expect("id").to_owned()
}

/// `GET path` with an optional `Range` header value.
pub fn get(addr: SocketAddr, token: Option<&str>, path: &str, range: Option<&str>) -> Response {
    let mut stream = connect(addr);
    let mut extra = Vec::new();
    if let Some(token) = token {
        extra.push(("Authorization", format!("Bearer {token}")));
    }
    if let Some(range) = range {
        extra.push(("Range", range.to_owned()));
    }
    send_head(&mut stream, &addr.to_string(), "GET", path, &extra);
    read_response(stream)
}

/// `GET url` for an absolute `http://host:port/path?query` (a presigned URL).
pub fn get_url(url: &str) -> Response {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(host)
        .expect("resolve")
        .next()
        .expect("an address");
    let mut stream = connect(addr);
    send_head(&mut stream, host, "GET", path, &[]);
    read_response(stream)
}

/// The same `size` bytes every time, made on the fly: each 1 MiB block is
/// a fixed pseudo-random block with its index stamped in front.
pub struct Generated {
    block: Vec<u8>,
    pub size: u64,
}

pub const BLOCK: usize = 1024 * 1024;

impl Generated {
    pub fn new(size: u64) -> Generated {
        let mut state = 0x9e3779b97f4a7c15u64;
        let block = (0..BLOCK)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        Generated { block, size }
    }

    /// Block `index`, cut to what is left of the size.
    pub fn block(&mut self, index: u64) -> &[u8] {
        self.block[..8].copy_from_slice(&index.to_le_bytes());
        let left = self.size - index * BLOCK as u64;
        &self.block[..left.min(BLOCK as u64) as usize]
    }

    pub fn blocks(&self) -> u64 {
        self.size.div_ceil(BLOCK as u64)
    }
}

/// Streams `generated` to `POST /v1/media`, calling `each_block` after
/// every block sent; returns the reply and the SHA-256 of what was sent.
pub fn upload_generated(
    addr: SocketAddr,
    token: &str,
    content_type: &str,
    generated: &mut Generated,
    mut each_block: impl FnMut(u64),
) -> (Response, String) {
    let mut stream = connect(addr);
    send_head(
        &mut stream,
        &addr.to_string(),
        "POST",
        "/v1/media",
        &[
            ("Authorization", format!("Bearer {token}")),
            ("Content-Type", content_type.to_owned()),
            ("Content-Length", generated.size.to_string()),
        ],
    );
    let mut hasher = Sha256::new();
    for index in 0..generated.blocks() {
        let block = generated.block(index);
        hasher.update(block);
        stream.write_all(block).expect("send a block");
        each_block(index);
    }
    (read_response(stream), hex(&hasher.finalize()))
}

/// Streams `GET path` into a hash; returns (status, bytes read, SHA-256),
/// calling `each_mib` after every MiB received.
pub fn download_hashed(
    addr: SocketAddr,
    token: &str,
    path: &str,
    mut each_mib: impl FnMut(u64),
) -> (u16, u64, String) {
    let mut stream = connect(addr);
    send_head(
        &mut stream,
        &addr.to_string(),
        "GET",
        path,
        &[("Authorization", format!("Bearer {token}"))],
    );
    let mut reader = BufReader::with_capacity(256 * 1024, stream);
    let (status, _) = read_head(&mut reader);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 256 * 1024];
    let (mut total, mut next_mib) = (0u64, 1u64);
    loop {
        let read = reader.read(&mut buffer).expect("read the download");
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        total += read as u64;
        while total >= next_mib * BLOCK as u64 {
            each_mib(next_mib);
            next_mib += 1;
        }
    }
    (status, total, hex(&hasher.finalize()))
}

/// A field of /proc/PID/status in KiB (`VmRSS`, `VmHWM`).
pub fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}
