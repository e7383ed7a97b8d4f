//! The web client: a static browser app served at `/`, and the one
//! endpoint it needs that the API did not have, `GET /v1/client-config`.
//!
//! The app's files live under `web/` at the top of the repository and are
//! compiled into the binary (`include_bytes!`), so `bluetick serve` alone
//! serves the chat in a browser: no CDN, no file on disk, nothing fetched at
//! run time. The app is plain ES modules plus the vendored MQTT.js bundle;
//! it speaks the same contract as every other client (docs/protocol.md).
//!
//! The page comes from the HTTP listener but MQTT runs on the WebSocket
//! listener, another port, so the page asks `/v1/client-config` where that
//! is. When the WebSocket listener is bound to every interface (`0.0.0.0`
//! or `::`) the server cannot know which of its names the browser used, so
//! it answers with the host name of the request (its `Host` header).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::ErrorCode;
use serde::Serialize;
use std::net::SocketAddr;

use super::{ApiError, AppState};

/// What the web client needs to know that the page's own URL does not tell.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Where the broker's WebSocket listener is bound, if it is enabled.
    pub ws_addr: Option<SocketAddr>,
    /// An operator's explicit public URL (`web.ws_url`), which wins.
    pub ws_url: Option<String>,
}

/// The answer of `GET /v1/client-config`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClientConfig {
    /// The MQTT-over-WebSocket URL to connect to (subprotocol `mqtt`), or
    /// null when this server has no WebSocket listener.
    pub ws_url: Option<String>,
}

/// Where a browser should open its MQTT WebSocket.
#[utoipa::path(get, path = "/v1/client-config", tag = "web",
    responses((status = 200, description = "The WebSocket URL for MQTT", body = ClientConfig)))]
pub async fn client_config(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Json<ClientConfig> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    Json(ClientConfig {
        ws_url: state.web.ws_url_for(host),
    })
}

impl ClientSettings {
    /// The URL for a page that was requested with `Host: host`.
    pub fn ws_url_for(&self, host: Option<&str>) -> Option<String> {
        if let Some(url) = &self.ws_url {
            return Some(url.clone());
        }
        let addr = self.ws_addr?;
        let name = if addr.ip().is_unspecified() {
            host.and_then(host_name)
                .map(str::to_owned)
                .unwrap_or_else(|| "localhost".to_owned())
        } else if addr.is_ipv6() {
            format!("[{}]", addr.ip())
        } else {
            addr.ip().to_string()
        };
        Some(format!("ws://{name}:{}{}", addr.port(), broker::WS_PATH))
    }
}

/// The host part of a `Host` header (`name`, `name:port`, `[v6]:port`), if
/// it looks like a host name: the header is client input and ends up in a
/// URL, so anything but name characters is ignored.
fn host_name(host: &str) -> Option<&str> {
    let name = if host.starts_with('[') {
        &host[..=host.find(']')?]
    } else {
        host.split(':').next()?
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-.[]:".contains(c);
    (!name.is_empty() && name.len() <= 255 && name.chars().all(allowed)).then_some(name)
}

/// One file of the app.
struct Asset {
    /// Its name under `/web/` (and under `web/` in the repository).
    name: &'static str,
    /// Its `Content-Type`.
    mime: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $mime:literal) => {
        Asset {
            name: $name,
            mime: $mime,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../web/", $name)),
        }
    };
}

/// Every file of the app but `index.html`.
const ASSETS: &[Asset] = &[
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("local.js", "text/javascript; charset=utf-8"),
    asset!("session.js", "text/javascript; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("vendor/mqtt.min.js", "text/javascript; charset=utf-8"),
];

const INDEX: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../web/index.html"));

/// The page may load only its own files and talk only to this server's
/// HTTP origin and a WebSocket; images come from blob URLs made of
/// downloads (media needs the bearer token, which an `<img src>` cannot
/// send).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self' ws: wss:; \
     img-src 'self' blob: data:; style-src 'self'; script-src 'self'; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'";

/// The app's page.
pub async fn index() -> Response {
    file("text/html; charset=utf-8", INDEX)
}

/// One of the app's files, or the API's 404.
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => file(a.mime, a.bytes),
        None => ApiError::new(ErrorCode::NotFound, "no such file").into_response(),
    }
}

fn file(mime: &'static str, bytes: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
            // Revalidated on every load: a new server version ships new
            // files under the same names.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
        ],
        bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(addr: &str) -> ClientSettings {
        ClientSettings {
            ws_addr: Some(addr.parse().unwrap()),
            ws_url: None,
        }
    }

    #[test]
    fn a_bound_address_is_used_as_it_is() {
        let url = settings("127.0.0.1:8083").ws_url_for(Some("example.com:8080"));
        assert_eq!(url.as_deref(), Some("ws://127.0.0.1:8083/mqtt"));
    }

    #[test]
    fn every_interface_takes_the_pages_host_name() {
        let s = settings("0.0.0.0:8083");
        assert_eq!(
            s.ws_url_for(Some("chat.example.com:8080")).as_deref(),
            Some("ws://chat.example.com:8083/mqtt")
        );
        assert_eq!(
            s.ws_url_for(Some("[::1]:8080")).as_deref(),
            Some("ws://[::1]:8083/mqtt")
        );
        assert_eq!(
            s.ws_url_for(Some("evil\"/x")).as_deref(),
            Some("ws://localhost:8083/mqtt")
        );
    }

    #[test]
    fn an_explicit_url_wins_and_no_listener_is_null() {
        let mut s = settings("0.0.0.0:8083");
        s.ws_url = Some("wss://chat.example.com/mqtt".to_owned());
        assert_eq!(
            s.ws_url_for(None).as_deref(),
            Some("wss://chat.example.com/mqtt")
        );
        assert_eq!(
            ClientSettings {
                ws_addr: None,
                ws_url: None
            }
            .ws_url_for(None),
            None
        );
    }
}
