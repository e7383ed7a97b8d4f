//! MQTT over WebSocket, terminated here and relayed to the guarded TCP
//! listener.
//!
//! rumqttd runs the WebSocket handshake inside its accept loop with no
//! timeout, so one silent client would block the listener for everyone
//! (DESIGN.md). Here every connection gets its own task and a bounded
//! handshake; once upgraded, its binary frames are relayed byte for byte to
//! the MQTT TCP listener on loopback, where the same guard checks it.
//!
//! No frame or message larger than an MQTT packet is buffered (tungstenite's
//! defaults would hold up to 64 MiB per socket): a larger one closes the
//! connection with status 1009. Like every listener, this one admits a
//! bounded number of connections that have not logged in, and closes those
//! that do not log in in time ([`crate::prelogin`]).

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;

use crate::metrics::Refusal;
use crate::prelogin::{self, LoginGate, Pending};
use crate::relay::RelayError;

/// The HTTP path MQTT clients open the WebSocket on.
pub const WS_PATH: &str = "/mqtt";

/// Bytes an MQTT fixed header adds to a packet's remaining length at most.
const MQTT_FIXED_HEADER: usize = 5;

/// How WebSocket connections are relayed.
pub(crate) struct WsRelay {
    /// The guarded MQTT listener relayed to (on loopback).
    pub mqtt: SocketAddr,
    pub handshake_timeout: Duration,
    /// Largest MQTT packet the broker accepts; bounds frames and messages.
    pub max_packet_size: usize,
    /// Caps connections that have not logged in.
    pub gate: Arc<LoginGate>,
}

/// Accepts WebSocket clients on `listener` forever, relaying each to the
/// broker.
pub(crate) async fn serve(listener: TcpListener, relay: WsRelay) {
    let relay = Arc::new(relay);
    loop {
        // Over the cap a socket is closed here, before the handshake.
        let (stream, peer, pending) = prelogin::next_admitted(&listener, &relay.gate).await;
        let relay = relay.clone();
        tokio::spawn(async move {
            if let Err(e) = relay.run(stream, peer, pending).await {
                tracing::debug!(%peer, error = %e, "websocket connection ended");
            }
        });
    }
}

impl WsRelay {
    /// tungstenite's defaults (64 MiB messages, 16 MiB frames) let one
    /// anonymous socket hold tens of megabytes. Nothing larger than an MQTT
    /// packet needs to arrive in one piece, so nothing larger is buffered.
    fn config(&self) -> WebSocketConfig {
        let largest = self.max_packet_size + MQTT_FIXED_HEADER;
        WebSocketConfig {
            max_message_size: Some(largest),
            max_frame_size: Some(largest),
            ..WebSocketConfig::default()
        }
    }

    async fn run(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        pending: Pending,
    ) -> Result<(), RelayError> {
        let (mut login, deadline) = pending.watch();
        let _ = stream.set_nodelay(true);
        let handshake =
            tokio_tungstenite::accept_hdr_async_with_config(stream, negotiate, Some(self.config()));
        let ws = tokio::time::timeout(self.handshake_timeout, handshake)
            .await
            .map_err(|_| RelayError::HandshakeTimedOut)?
            .map_err(|e| RelayError::WsHandshake(Box::new(e)))?;
        let broker = TcpStream::connect(self.mqtt)
            .await
            .map_err(RelayError::BrokerUnreachable)?;
        let _ = broker.set_nodelay(true);
        let (mut broker_rx, mut broker_tx) = broker.into_split();
        let (mut ws_tx, mut ws_rx) = ws.split();

        let upstream = async {
            while let Some(message) = ws_rx.next().await {
                match message {
                    Ok(Message::Binary(bytes)) => broker_tx.write_all(&bytes).await?,
                    Ok(Message::Close(_)) => break,
                    // MQTT over WebSocket is binary only; pings are answered
                    // by tungstenite itself.
                    Ok(_) => {}
                    Err(e) => return Err(RelayError::from(e)),
                }
            }
            Ok::<(), RelayError>(broker_tx.shutdown().await?)
        };
        let downstream = async {
            let mut buffer = vec![0u8; 16 * 1024];
            loop {
                let n = broker_rx.read(&mut buffer).await?;
                if n == 0 {
                    return Ok::<(), RelayError>(());
                }
                login.observe(&buffer[..n]);
                ws_tx.send(Message::Binary(buffer[..n].to_vec())).await?;
            }
        };
        // When either side ends, or the login deadline passes, the
        // connection is over.
        let ended = tokio::select! {
            r = upstream => r,
            r = downstream => r,
            () = deadline.expired() => Err(RelayError::LoginTimedOut),
        };
        // Give the place back before the client can see the close, so a
        // client that reconnects at once finds it free.
        drop(login);
        let close = match &ended {
            Err(RelayError::TooBig(_)) => {
                self.gate.closed(Refusal::WebSocketTooBig, peer.ip());
                let frame = CloseFrame {
                    code: CloseCode::Size,
                    reason: "larger than the MQTT packet limit".into(),
                };
                Some(frame)
            }
            Err(RelayError::LoginTimedOut) => {
                let frame = CloseFrame {
                    code: CloseCode::Policy,
                    reason: "no login in time".into(),
                };
                Some(frame)
            }
            _ => None,
        };
        // A courtesy to the client; it may be gone already. Bounded, so a
        // client that stopped reading cannot hold the task.
        let goodbye = async {
            let _ = ws_tx.send(Message::Close(close)).await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), goodbye).await;
        ended
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
