//! The HTTP accept loop: every connection is bounded in number and in time.
//!
//! `axum::serve` keeps a connection open for as long as the peer likes and
//! accepts as many as the kernel hands over, so a few hundred silent or
//! trickling sockets hold memory and file descriptors forever. This loop
//! drives hyper itself so that:
//!
//! - a connection must send a request's complete head within
//!   `header_timeout` of starting to wait for it, whether the connection is
//!   new or idle between keep-alive requests (hyper restarts that timer for
//!   every request), else it is closed;
//! - at most `max_connections` are open at once; one more is answered 503
//!   with the error JSON and `Retry-After`, and closed;
//! - each request carries the peer's address as axum's [`ConnectInfo`], for
//!   the throttles per source address.
//!
//! **Invariant:** every open connection holds one permit of the
//! listener's semaphore, so the permits available are the connections the
//! listener may still take, and all permits back means all connections
//! closed (which is how a graceful stop knows it has drained).

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use protocol::ErrorCode;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower_service::Service;

use super::ApiError;

/// How one listener bounds its connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest wait for a request's head (new or keep-alive connection).
    pub header_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

/// Longest the refusal of a connection over the limit may take, written
/// and drained; a peer that does not read it is simply dropped.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Most request bytes read (and dropped) from a refused connection.
const REFUSAL_DRAIN_BYTES: usize = 64 * 1024;

/// Serves `app` on `listener` until `stop` turns true, then lets open
/// requests finish and returns once every connection has closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) {
    let max = limits.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(max));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, typically: wait rather than
                    // spin, and keep serving the connections already open.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics::counter!("bluetick_http_refusals_total", "reason" => "connection_limit")
                .increment(1);
            tokio::spawn(refuse(stream));
            continue;
        };
        let app = app.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, app, limits.header_timeout, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    // Every connection gives its permit back when it closes.
    let _ = permits.acquire_many(max as u32).await;
}

/// One connection, with the header timeout, until it closes or the server
/// stops (then the request in progress finishes first).
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        // A Router is always ready; calling it without `poll_ready` is what
        // axum's own server does.
        let mut app = app.clone();
        async move { app.call(request).await }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    if e.is_timeout() {
                        metrics::counter!("bluetick_http_refusals_total", "reason" => "header_timeout")
                            .increment(1);
                    }
                    tracing::debug!(error = %e, %peer, "HTTP connection ended");
                }
                return;
            }
            _ = stopped(&mut stop), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Resolves once the server is stopping (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here.
    let _ = stop.wait_for(|stopped| *stopped).await.map(|_| ());
}

/// Answers a connection over the limit with 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    let body = ApiError::new(
        ErrorCode::Unavailable,
        "too many open HTTP connections; retry shortly",
    )
    .json();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent before closing: closing with unread
        // bytes resets the connection, and the client might then never
        // see the 503.
        let mut discard = [0u8; 4096];
        let mut read = 0;
        while read < REFUSAL_DRAIN_BYTES {
            match stream.read(&mut discard).await? {
                0 => break,
                n => read += n,
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}
