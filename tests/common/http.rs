//! The tests' one HTTP/1.1 client, over std sockets: JSON API calls
//! ([`request`]), and the pieces that raw-byte callers (uploads, ranged and
//! streamed downloads in [`super::media`]) build on: a request head, a
//! response head, a whole response with its one de-chunker.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A whole response, read until the server closed the connection.
pub struct Response {
    pub status: u16,
    /// Header names in lower case, and their values.
    pub headers: Vec<(String, String)>,
    /// The body as text (lossily decoded), for JSON and messages.
    pub body: String,
    /// The body's bytes exactly (media).
    pub bytes: Vec<u8>,
}

impl Response {
    /// The value of a response header (name in lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The `error.code` of an API refusal.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code: {}", self.body))
            .to_owned()
    }
}

/// The ids of a list page's items, found at `pointer` in each item
/// (`/id` for messages, `/message/id` for stars).
pub fn page_ids(page: &serde_json::Value, pointer: &str) -> Vec<i64> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|item| item.pointer(pointer).unwrap().as_i64().unwrap())
        .collect()
}

/// `method path` with an optional JSON `body` and bearer token.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    bearer: Option<&str>,
) -> Response {
    exchange(connect(addr), addr, method, path, body, bearer)
}

/// A `POST` of a JSON `body`, sent from `source` (any 127.0.0.0/8
/// address on loopback), so a test can be two clients on two addresses.
pub async fn post_from(
    source: std::net::IpAddr,
    addr: SocketAddr,
    path: &str,
    body: &str,
) -> Response {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("bind the source address");
    let stream = socket.connect(addr).await.expect("connect HTTP");
    let stream = stream.into_std().expect("std stream");
    stream.set_nonblocking(false).expect("blocking stream");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let (path, body) = (path.to_owned(), body.to_owned());
    tokio::task::spawn_blocking(move || exchange(stream, addr, "POST", &path, Some(&body), None))
        .await
        .expect("request task")
}

/// Writes one JSON request on `stream` and reads the whole response.
fn exchange(
    mut stream: TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    bearer: Option<&str>,
) -> Response {
    let body = body.unwrap_or("");
    let mut headers = vec![("Content-Length", body.len().to_string())];
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json".to_owned()));
    }
    if let Some(token) = bearer {
        headers.push(("Authorization", format!("Bearer {token}")));
    }
    send_head(&mut stream, &addr.to_string(), method, path, &headers);
    stream.write_all(body.as_bytes()).expect("send body");
    read_response(stream)
}

/// How long a test waits for any read: generous, as the machine is busy
/// and a 1 GiB stream is among the callers.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// A connection to `addr` whose reads time out after [`READ_TIMEOUT`].
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect HTTP");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream
}

/// Sends a request head for `host` (with `Connection: close`, so the
/// response ends when the server closes) and the `extra` headers.
pub fn send_head(
    stream: &mut TcpStream,
    host: &str,
    method: &str,
    path: &str,
    extra: &[(&str, String)],
) {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .expect("send request head");
}

/// Reads the status line and headers (names in lower case); the reader is
/// left at the body.
pub fn read_head(reader: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header line");
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    (status, headers)
}

/// Reads a whole response from `stream`, de-chunking a chunked body.
pub fn read_response(stream: TcpStream) -> Response {
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).expect("read body");
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        bytes = dechunk(&bytes);
    }
    Response {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
    }
}

/// The data of a `Transfer-Encoding: chunked` body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..end])
            .ok()
            .and_then(|size| usize::from_str_radix(size.trim(), 16).ok())
            .unwrap_or(0);
        raw = &raw[end + 2..];
        if size == 0 || raw.len() < size {
            break;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[(size + 2).min(raw.len())..];
    }
    out
}
