//! MQTT over TLS (port 8883 by convention), terminated here and relayed to
//! the guarded TCP listener, like the WebSocket listener.
//!
//! Terminating here rather than in rumqttd keeps one place that decides
//! who may connect (the guard, behind the relay) and gives every
//! connection its own task with a bounded handshake, so a client that
//! stalls mid-handshake holds only its own socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// Where the server's certificate chain and private key are, in PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// Builds the acceptor from `files`, or says what is wrong with them.
pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = read_pem(&files.cert_file, |reader| {
        rustls_pemfile::certs(reader).collect::<Result<Vec<_>, _>>()
    })?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in the file",
            files.cert_file.display()
        ));
    }
    let key: PrivateKeyDer<'static> = read_pem(&files.key_file, rustls_pemfile::private_key)?
        .ok_or_else(|| format!("{}: no private key in the file", files.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not match or are unusable: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_pem<T>(
    path: &Path,
    parse: impl FnOnce(&mut dyn std::io::BufRead) -> std::io::Result<T>,
) -> Result<T, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&mut std::io::BufReader::new(file)).map_err(|e| format!("{}: {e}", path.display()))
}

/// Accepts TLS clients on `listener` forever, relaying each to `mqtt`.
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    mqtt: SocketAddr,
    handshake_timeout: Duration,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "tls accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            if let Err(e) = relay(stream, acceptor, mqtt, handshake_timeout).await {
                tracing::debug!(%peer, error = %e, "tls connection ended");
            }
        });
    }
}

async fn relay(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    mqtt: SocketAddr,
    handshake_timeout: Duration,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let mut tls = tokio::time::timeout(handshake_timeout, acceptor.accept(stream))
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| format!("handshake failed: {e}"))?;
    let mut broker = TcpStream::connect(mqtt)
        .await
        .map_err(|e| format!("broker unreachable: {e}"))?;
    let _ = broker.set_nodelay(true);
    tokio::io::copy_bidirectional(&mut tls, &mut broker)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
