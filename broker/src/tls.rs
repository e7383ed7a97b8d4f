//! MQTT over TLS (port 8883 by convention), terminated here and relayed to
//! the guarded TCP listener, like the WebSocket listener.
//!
//! Terminating here rather than in rumqttd keeps one place that decides
//! who may connect (the guard, behind the relay) and gives every
//! connection its own task with a bounded handshake, so a client that
//! stalls mid-handshake holds only its own socket. Like every listener,
//! it admits a bounded number of connections that have not logged in, and
//! closes those that do not log in in time ([`crate::prelogin`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::prelogin::{self, LoginGate, Pending};
use crate::relay::RelayError;

/// Where the server's certificate chain and private key are, in PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// What is wrong with the configured certificate or key.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A file could not be opened or is not PEM.
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no certificate in the file", .0.display())]
    NoCertificate(PathBuf),
    #[error("{}: no private key in the file", .0.display())]
    NoKey(PathBuf),
    /// The crypto provider offers no safe protocol version.
    #[error("{0}")]
    Provider(#[source] rustls::Error),
    #[error("certificate and key do not match or are unusable: {0}")]
    Unusable(#[source] rustls::Error),
}

/// Builds the acceptor from `files`, or says what is wrong with them.
pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsConfigError> {
    let certs: Vec<CertificateDer<'static>> = read_pem(&files.cert_file, |reader| {
        rustls_pemfile::certs(reader).collect::<Result<Vec<_>, _>>()
    })?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate(files.cert_file.clone()));
    }
    let key: PrivateKeyDer<'static> = read_pem(&files.key_file, rustls_pemfile::private_key)?
        .ok_or_else(|| TlsConfigError::NoKey(files.key_file.clone()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::Provider)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsConfigError::Unusable)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_pem<T>(
    path: &Path,
    parse: impl FnOnce(&mut dyn std::io::BufRead) -> std::io::Result<T>,
) -> Result<T, TlsConfigError> {
    let unreadable = |source| TlsConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    parse(&mut std::io::BufReader::new(file)).map_err(unreadable)
}

/// Accepts TLS clients on `listener` forever, relaying each to `mqtt`
/// (the guarded listener on loopback). `gate` caps those that have not
/// logged in.
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    mqtt: SocketAddr,
    handshake_timeout: Duration,
    gate: Arc<LoginGate>,
) {
    loop {
        // Over the cap a socket is closed here, before the handshake.
        let (stream, peer, pending) = prelogin::next_admitted(&listener, &gate).await;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            if let Err(e) = relay(stream, acceptor, mqtt, handshake_timeout, pending).await {
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
    pending: Pending,
) -> Result<(), RelayError> {
    let (mut login, deadline) = pending.watch();
    let _ = stream.set_nodelay(true);
    let tls = tokio::time::timeout(handshake_timeout, acceptor.accept(stream))
        .await
        .map_err(|_| RelayError::HandshakeTimedOut)?
        .map_err(RelayError::TlsHandshake)?;
    let broker = TcpStream::connect(mqtt)
        .await
        .map_err(RelayError::BrokerUnreachable)?;
    let _ = broker.set_nodelay(true);
    let (mut tls_rx, mut tls_tx) = tokio::io::split(tls);
    let (mut broker_rx, mut broker_tx) = broker.into_split();
    let upstream = async {
        tokio::io::copy(&mut tls_rx, &mut broker_tx).await?;
        broker_tx.shutdown().await
    };
    let downstream = async {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = broker_rx.read(&mut buffer).await?;
            if n == 0 {
                return tls_tx.shutdown().await;
            }
            login.observe(&buffer[..n]);
            tls_tx.write_all(&buffer[..n]).await?;
        }
    };
    // When either side ends, or the login deadline passes, the connection
    // is over.
    let ended = tokio::select! {
        r = upstream => r.map_err(RelayError::Io),
        r = downstream => r.map_err(RelayError::Io),
        () = deadline.expired() => Err(RelayError::LoginTimedOut),
    };
    // Give the place back before the sockets close, so a client that
    // reconnects at once finds it free.
    drop(login);
    ended
}
