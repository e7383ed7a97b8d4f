//! What the app tells the SDK: where the server is, who I am, where my
//! state lives, and the timeouts; and how that becomes MQTT options.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use protocol::{ClientId, UserName};
use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use std::sync::Arc;
use tokio_rustls::rustls;

use crate::error::ClientError;

/// Default MQTT keep-alive.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Default time after which an unsettled send is published again.
pub const DEFAULT_RESEND_AFTER: Duration = Duration::from_secs(3);
/// Default largest packet the client publishes: the server's default
/// `mqtt.max_packet_size`.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 256 * 1024;
/// Default idle sync interval (see [`Config::idle_sync`]).
pub const DEFAULT_IDLE_SYNC: Duration = Duration::from_secs(30);
/// Largest packet accepted from the server. Generous on purpose: a packet
/// over the limit drops the connection, and the same event would come back
/// on every reconnect.
pub(crate) const MAX_INCOMING_PACKET: usize = 16 * 1024 * 1024;

/// How to reach the server and where to keep state.
#[derive(Clone)]
pub struct Config {
    /// Broker host name or address.
    pub host: String,
    /// Broker MQTT/TCP port.
    pub port: u16,
    /// My user name (also the MQTT user name).
    pub user: String,
    /// An access token from `POST /v1/tokens` (the MQTT password).
    pub token: String,
    /// This device's name: the client id is `USER.DEVICE`, or `USER` when
    /// this is empty. Each device keeps its own ack position on the server.
    pub device: String,
    /// The SQLite file holding the outbox and `last_seq`; one per user and
    /// device, used by one process at a time. Created if missing.
    pub state_path: PathBuf,
    /// MQTT keep-alive, at least 1 s (default 30 s).
    pub keep_alive: Duration,
    /// An unsettled send is published again after this long, even on a live
    /// connection (default 3 s).
    pub resend_after: Duration,
    /// Largest packet this client publishes (default 256 KiB, the server's
    /// default `mqtt.max_packet_size`). Larger sends fail with
    /// [`ClientError::TooLarge`] instead of being dropped by the broker on
    /// every retry.
    pub max_packet_size: usize,
    /// While connected, sync anyway after this long with nothing arriving
    /// on the inbox, in case its last event was lost (default 30 s; zero
    /// disables it).
    pub idle_sync: Duration,
    /// Speak MQTT over TLS to the server's TLS listener. `None` (the
    /// default) is plain TCP, where the token crosses the network in clear:
    /// fit only for loopback or a network you trust.
    pub tls: Option<Tls>,
}

/// Which certificates a TLS connection trusts. The server's certificate
/// must also name [`Config::host`] (a DNS name or an IP address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tls {
    /// The platform's root certificates (a server with a public certificate).
    SystemRoots,
    /// Only the CA certificates in this PEM text (a private CA, or the
    /// server's own self-signed certificate).
    CaPem(Vec<u8>),
}

impl Config {
    /// A configuration with the default timeouts.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        token: impl Into<String>,
        device: impl Into<String>,
        state_path: impl Into<PathBuf>,
    ) -> Config {
        Config {
            host: host.into(),
            port,
            user: user.into(),
            token: token.into(),
            device: device.into(),
            state_path: state_path.into(),
            keep_alive: DEFAULT_KEEP_ALIVE,
            resend_after: DEFAULT_RESEND_AFTER,
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            idle_sync: DEFAULT_IDLE_SYNC,
            tls: None,
        }
    }

    /// The same configuration over TLS.
    pub fn with_tls(mut self, tls: Tls) -> Config {
        self.tls = Some(tls);
        self
    }

    /// Checks every field and returns my user name and MQTT client id.
    pub(crate) fn validate(&self) -> Result<(UserName, String), ClientError> {
        let invalid = |what: String| Err(ClientError::InvalidConfig(what));
        let user = match UserName::parse(&self.user) {
            Ok(user) => user,
            Err(e) => return invalid(format!("user {:?}: {e}", self.user)),
        };
        let client_id = if self.device.is_empty() {
            self.user.clone()
        } else {
            format!("{}.{}", self.user, self.device)
        };
        if let Err(e) = ClientId::parse(&client_id) {
            return invalid(format!("device {:?}: {e}", self.device));
        }
        if self.host.is_empty() {
            return invalid("host is empty".into());
        }
        if self.keep_alive < Duration::from_secs(1)
            || self.keep_alive.as_secs() > u64::from(u16::MAX)
        {
            return invalid(format!("keep_alive must be 1-{} s", u16::MAX));
        }
        if self.resend_after.is_zero() {
            return invalid("resend_after must be positive".into());
        }
        if self.max_packet_size < 1024 {
            return invalid("max_packet_size must be at least 1024".into());
        }
        if let Some(tls) = &self.tls {
            tls_config(tls)?;
        }
        Ok((user, client_id))
    }

    /// MQTT options for `client_id`: credentials, keep-alive, a persistent
    /// session, packet limits, and TLS if asked for.
    pub(crate) fn mqtt_options(&self, client_id: &str) -> Result<MqttOptions, ClientError> {
        let mut options = MqttOptions::new(client_id, self.host.as_str(), self.port);
        options
            .set_credentials(self.user.as_str(), self.token.as_str())
            .set_keep_alive(Duration::from_secs(self.keep_alive.as_secs()))
            .set_clean_session(false)
            .set_max_packet_size(MAX_INCOMING_PACKET, self.max_packet_size);
        if let Some(tls) = &self.tls {
            let config = tls_config(tls)?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(config),
            )));
        }
        Ok(options)
    }
}

/// Sends every packet at once (`TCP_NODELAY`). Chat is small packets both
/// ways; with Nagle's algorithm a packet waits for the ACK of the previous
/// one, which the peer delays until it has something to send: at 5,000
/// messages/s over 100 clients that put whole multiples of a client's
/// send period (20 ms) onto send → recipient.
pub fn send_without_delay(eventloop: &mut rumqttc::EventLoop) {
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
}

/// A rustls client configuration trusting what `tls` says, on the aws-lc
/// provider (the one the server's TLS listener uses).
fn tls_config(tls: &Tls) -> Result<rustls::ClientConfig, ClientError> {
    let invalid = |what: String| ClientError::InvalidConfig(what);
    let mut roots = rustls::RootCertStore::empty();
    match tls {
        Tls::SystemRoots => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
        Tls::CaPem(pem) => {
            for cert in rustls_pemfile::certs(&mut &pem[..]) {
                let cert = cert.map_err(|e| invalid(format!("TLS CA file: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| invalid(format!("TLS CA file: {e}")))?;
            }
        }
    }
    if roots.is_empty() {
        return Err(invalid(
            "TLS: no CA certificate to trust (the CA file holds no PEM certificate, or the platform has none)".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("token", &"<redacted>")
            .field("device", &self.device)
            .field("state_path", &self.state_path)
            .field("keep_alive", &self.keep_alive)
            .field("resend_after", &self.resend_after)
            .field("max_packet_size", &self.max_packet_size)
            .field("idle_sync", &self.idle_sync)
            .field("tls", &self.tls.as_ref().map(|_| "on"))
            .finish()
    }
}

/// Bytes an MQTT 3.1.1 QoS 1 PUBLISH of `payload` on `topic` takes on the
/// wire: fixed header (1 + up to 4 length bytes), topic (2 + len), packet
/// id (2), payload.
pub(crate) fn publish_size(topic: &str, payload: usize) -> usize {
    let remaining = 2 + topic.len() + 2 + payload;
    let length_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + length_bytes + remaining
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(user: &str, device: &str) -> Config {
        Config::new("127.0.0.1", 1883, user, "secret-token", device, "/tmp/x.db")
    }

    #[test]
    fn defaults_and_client_ids() {
        let c = config("alice", "phone");
        assert_eq!(c.keep_alive, Duration::from_secs(30));
        assert_eq!(c.resend_after, Duration::from_secs(3));
        let (user, id) = c.validate().unwrap();
        assert_eq!((user.as_str(), id.as_str()), ("alice", "alice.phone"));
        let (_, id) = config("alice", "").validate().unwrap();
        assert_eq!(id, "alice");
        let options = config("alice", "phone")
            .mqtt_options("alice.phone")
            .unwrap();
        assert!(!options.clean_session());
        assert_eq!(options.keep_alive(), Duration::from_secs(30));
        assert_eq!(options.client_id(), "alice.phone");
    }

    #[test]
    fn bad_fields_are_refused_before_connecting() {
        for c in [
            config("Alice", ""),
            config("alice", "a.b"),
            config("alice", "ph/one"),
            Config {
                keep_alive: Duration::from_millis(500),
                ..config("alice", "")
            },
            Config {
                keep_alive: Duration::ZERO,
                ..config("alice", "")
            },
            config("alice", "").with_tls(Tls::CaPem(b"not a certificate".to_vec())),
            Config {
                resend_after: Duration::ZERO,
                ..config("alice", "")
            },
            Config {
                max_packet_size: 10,
                ..config("alice", "")
            },
            Config {
                host: String::new(),
                ..config("alice", "")
            },
        ] {
            assert!(
                matches!(c.validate(), Err(ClientError::InvalidConfig(_))),
                "{c:?}"
            );
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let text = format!("{:?}", config("alice", ""));
        assert!(!text.contains("secret-token"), "{text}");
    }

    #[test]
    fn publish_size_matches_the_encoder() {
        for payload in [0, 10, 120, 200, 20_000, 3_000_000] {
            let topic = "u/alice/send";
            let mut publish =
                rumqttc::Publish::new(topic, rumqttc::QoS::AtLeastOnce, vec![b'x'; payload]);
            publish.pkid = 1;
            let written = publish.size();
            assert_eq!(publish_size(topic, payload), written, "{payload}");
        }
    }
}
