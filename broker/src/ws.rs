//! MQTT over WebSocket, terminated here and relayed to the guarded TCP
//! listener.
//!
//! rumqttd runs the WebSocket handshake inside its accept loop with no
//! timeout, so one silent client would block the listener for everyone
//! (DESIGN.md). Here every connection gets its own task and a bounded
//! handshake; once upgraded, its binary frames are relayed byte for byte to
//! the MQTT TCP listener on loopback, where the same guard checks it.

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::Message;

/// The HTTP path MQTT clients open the WebSocket on.
pub const WS_PATH: &str = "/mqtt";

/// Accepts WebSocket clients on `listener` forever, relaying each to `mqtt`.
pub(crate) async fn serve(listener: TcpListener, mqtt: SocketAddr, handshake_timeout: Duration) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "websocket accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            if let Err(e) = relay(stream, mqtt, handshake_timeout).await {
                tracing::debug!(%peer, error = %e, "websocket connection ended");
            }
        });
    }
}

async fn relay(
    stream: TcpStream,
    mqtt: SocketAddr,
    handshake_timeout: Duration,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let handshake = tokio_tungstenite::accept_hdr_async(stream, negotiate);
    let ws = tokio::time::timeout(handshake_timeout, handshake)
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| format!("handshake failed: {e}"))?;
    let broker = TcpStream::connect(mqtt)
        .await
        .map_err(|e| format!("broker unreachable: {e}"))?;
    let _ = broker.set_nodelay(true);
    let (mut broker_rx, mut broker_tx) = broker.into_split();
    let (mut ws_tx, mut ws_rx) = ws.split();

    let upstream = async {
        while let Some(message) = ws_rx.next().await {
            match message.map_err(|e| e.to_string())? {
                Message::Binary(bytes) => broker_tx
                    .write_all(&bytes)
                    .await
                    .map_err(|e| e.to_string())?,
                Message::Close(_) => break,
                // MQTT over WebSocket is binary only; pings are answered by
                // tungstenite itself.
                _ => {}
            }
        }
        broker_tx.shutdown().await.map_err(|e| e.to_string())
    };
    let downstream = async {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = broker_rx
                .read(&mut buffer)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                let _ = ws_tx.send(Message::Close(None)).await;
                return Ok::<(), String>(());
            }
            ws_tx
                .send(Message::Binary(buffer[..n].to_vec()))
                .await
                .map_err(|e| e.to_string())?;
        }
    };
    // When either side ends, the connection is over.
    tokio::select! {
        r = upstream => r,
        r = downstream => r,
    }
}

/// Accepts only `GET /mqtt`, and selects the `mqtt` subprotocol when the
/// client offers it (browsers refuse the socket otherwise).
// The signature is tungstenite's callback contract, large error and all.
#[allow(clippy::result_large_err)]
fn negotiate(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    if request.uri().path() != WS_PATH {
        let mut refusal = ErrorResponse::new(Some(format!("MQTT is served on {WS_PATH}\n")));
        *refusal.status_mut() = StatusCode::NOT_FOUND;
        return Err(refusal);
    }
    let offered = request
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|p| *p == "mqtt" || *p == "mqttv3.1");
    if let Some(protocol) = offered {
        if let Ok(value) = HeaderValue::from_str(protocol) {
            response
                .headers_mut()
                .insert("sec-websocket-protocol", value);
        }
    }
    Ok(response)
}
