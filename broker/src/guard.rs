//! The guard: rumqttd's MQTT codecs wrapped with authentication and topic
//! access control.
//!
//! rumqttd has no ACL or connect hooks, but its `Server` is generic over the
//! `Protocol` that frames packets, and clones that protocol once per
//! connection. [`Guard`] is such a protocol. Its per-connection copy sees
//! every packet the client sends before the router does, and every packet the
//! broker writes back:
//!
//! - **CONNECT** is checked here (client id shape, credentials, last-will
//!   topic, connection cap). A refused CONNECT is rewritten into one rumqttd
//!   refuses by itself before it ever reaches the router (empty client id,
//!   persistent session), and the CONNACK rumqttd then writes is rewritten to
//!   carry our reason. So the client gets a proper CONNACK refusal and the
//!   router never sees a client it would choke on (DESIGN.md, "Lockup bug").
//! - **SUBSCRIBE** filters the user may not read are replaced with
//!   [`DENIED_FILTER`], a filter nothing can publish to, and their return
//!   codes in the SUBACK are rewritten to 0x80 (failure; MQTT 5: 0x87, not
//!   authorized).
//! - **PUBLISH** to a topic the user may not write closes the connection:
//!   MQTT 3.1.1 has no negative PUBACK, and closing is what the spec allows.
//!   An allowed PUBLISH (or last will) of a user loses its retain flag: only
//!   the server retains.
//! - **Malformed** input rumqttd's codec lets through (a null character, an
//!   empty or wildcard topic name, a misplaced wildcard in a filter, a
//!   packet only a server sends, anything before CONNECT) closes the
//!   connection, as Mosquitto does; see [`crate::wellformed`]. A CONNECT of
//!   an unsupported protocol level gets CONNACK 0x01.
//! - **MQTT 5**: the CONNECT's protocol level picks the codec for the whole
//!   connection ([`Codec`]); every check above applies alike, the codes are
//!   MQTT 5's. The guard turns topic aliases off both ways (they would let a
//!   PUBLISH carry no topic for the checks to read) and hands the router no
//!   CONNECT properties, so a v5 session behaves as a 3.1.1 one
//!   (docs/protocol.md §2, "MQTT versions and features").
//! - **Presence** messages the broker writes to a user are replaced with
//!   `{"hidden":true}` when privacy does not let that user see them.
//! - **Before login**, the listener's [`crate::prelogin::LoginGate`] admits
//!   the socket at accept (or it is closed at once) and the guard holds its
//!   place until the successful CONNACK is written.
//! - **Connected** is reported when a successful CONNACK is written, and
//!   **disconnected** when the per-connection guard is dropped, which rumqttd
//!   does however the connection ends (DISCONNECT, socket loss, keepalive
//!   expiry, takeover).
//!
//! # Invariant
//!
//! Every packet a client sends is decoded by this connection's one codec
//! and passes the checks above before rumqttd's router sees it, whatever
//! the MQTT version: the codec is chosen once, from the CONNECT, and the
//! checks read only the version-independent `Packet`. Nothing that could
//! let a packet skip them (a topic alias, an unread CONNECT property) is
//! enabled.

use protocol::{topics, ClientId, UserName};
use rumqttd::protocol::v4::V4;
use rumqttd::protocol::v5::V5;
use rumqttd::protocol::{
    ConnAck, ConnAckProperties, Connect, ConnectReturnCode, Error as CodecError, Filter, LastWill,
    Login, Packet, Protocol, SubscribeReasonCode,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::auth::{AuthError, Authenticator};
use crate::events::{ConnectionEvent, EventKind, EventSender, Sent};
use crate::metrics::{self as meter, Refusal};
use crate::prelogin::{LoginGate, Pending};
use crate::privacy::PresencePolicy;
use crate::ratelog::RateLimitedLog;
use crate::wellformed;

/// MQTT user name of the server's own clients (the bridge). `$` cannot
/// appear in a user name, so no user can claim it.
pub const SERVICE_USER: &str = "$bluetick";

/// Filter that refused subscriptions are pointed at. No client may publish
/// outside `u/{self}/…`, and the server never publishes here, so it never
/// carries a message.
pub const DENIED_FILTER: &str = "bluetick/denied";

/// State shared by every connection's guard.
pub(crate) struct Shared {
    /// Checks CONNECT credentials against the store.
    pub authenticator: Arc<Authenticator>,
    /// Decides who may see whose presence.
    pub presence: Arc<PresencePolicy>,
    /// Accept anonymous clients and skip the ACL (conformance testing only).
    pub dev_open: bool,
    /// Most client connections admitted at once.
    pub max_connections: usize,
    /// Connections admitted and not yet dropped.
    pub admitted: AtomicUsize,
    /// Source of connection ids, unique within this node.
    pub next_connection: AtomicU64,
    /// This server's name in `sessions.node` and connection ids.
    pub node: String,
    /// Where connected and disconnected events go.
    pub events: EventSender,
    /// The password of [`SERVICE_USER`]; `None` admits no service clients.
    pub service_secret: Option<String>,
    /// Logs refused subscriptions, which a client can send by the thousand.
    pub refused_subscribe_log: RateLimitedLog,
    /// Logs refused publishes (each also closes its connection, but the
    /// client may reconnect and repeat).
    pub refused_publish_log: RateLimitedLog,
}

/// Who a connection is, once its CONNECT was admitted.
#[derive(Debug, Clone)]
enum Identity {
    /// A user who presented a valid token.
    User {
        user: UserName,
        client_id: String,
        /// SHA-256 of the token, to notice its revocation.
        token_hash: String,
    },
    /// Any client, with `--dev-open`.
    Open { client_id: String },
    /// The server's own client (the bridge): no ACL, no connection cap.
    Service { client_id: String },
}

impl Identity {
    fn client_id(&self) -> &str {
        match self {
            Identity::User { client_id, .. }
            | Identity::Open { client_id }
            | Identity::Service { client_id } => client_id,
        }
    }

    /// A client connection, as opposed to the server's own (which the
    /// client metrics leave out).
    fn is_client(&self) -> bool {
        !matches!(self, Identity::Service { .. })
    }

    /// The hash of the token a user logged in with; none for the other
    /// identities, which log in without one.
    fn token_hash(&self) -> Option<&str> {
        match self {
            Identity::User { token_hash, .. } => Some(token_hash),
            Identity::Open { .. } | Identity::Service { .. } => None,
        }
    }

    fn user_name(&self) -> Option<&UserName> {
        match self {
            Identity::User { user, .. } => Some(user),
            Identity::Open { .. } | Identity::Service { .. } => None,
        }
    }
}

/// A connection whose successful CONNACK was written.
struct Announced {
    /// `{node}:{counter}`, as in `sessions.connection_id`.
    connection_id: String,
    /// Whether its connected event was queued (not dropped on a full
    /// queue); only then is its disconnect reported.
    recorded: bool,
}

/// The per-connection guard; see the module docs.
pub struct Guard {
    shared: Arc<Shared>,
    /// rumqttd's codec for this connection's MQTT version, which does the
    /// framing; chosen from the CONNECT.
    codec: Codec,
    /// Set once the CONNECT is admitted.
    identity: Option<Identity>,
    /// Why the CONNECT was refused; rewrites the CONNACK rumqttd writes.
    refusal: Mutex<Option<Refusal>>,
    /// Holds one of `max_connections` slots until dropped.
    holds_slot: bool,
    /// Set once a successful CONNACK has been written.
    announced: Mutex<Option<Announced>>,
    /// SUBSCRIBE packet id → positions of refused filters in it.
    denied: Mutex<HashMap<u16, Vec<usize>>>,
    /// The authenticator's revocation count when this connection's token
    /// was last found unrevoked.
    revocations_seen: u64,
    /// Caps this listener's connections that have not logged in; `None` on
    /// the relays' internal listener, whose relays have their own gates.
    gate: Option<Arc<LoginGate>>,
    /// This connection's place under `gate` until its CONNACK 0.
    login: Mutex<Option<Pending>>,
    /// The client speaks MQTT 3.1, whose CONNACK has no session-present
    /// flag (that byte is reserved, 0).
    mqtt31: bool,
}

impl Guard {
    pub(crate) fn new(shared: Arc<Shared>, gate: Option<Arc<LoginGate>>) -> Guard {
        Guard {
            gate,
            login: Mutex::new(None),
            shared,
            codec: Codec::V4(V4),
            identity: None,
            refusal: Mutex::new(None),
            holds_slot: false,
            announced: Mutex::new(None),
            denied: Mutex::new(HashMap::new()),
            revocations_seen: 0,
            mqtt31: false,
        }
    }

    /// Was this connection's token revoked since it was last checked?
    fn token_revoked(&mut self) -> bool {
        let Some(Identity::User { token_hash, .. }) = &self.identity else {
            return false;
        };
        let authenticator = &self.shared.authenticator;
        let now = authenticator.revocations();
        if now == self.revocations_seen {
            return false;
        }
        self.revocations_seen = now;
        authenticator.is_revoked(token_hash)
    }

    /// Admits or refuses a CONNECT, returning the packet to hand on.
    fn on_connect(
        &mut self,
        connect: Connect,
        will: Option<LastWill>,
        login: Option<Login>,
    ) -> Result<Packet, Refusal> {
        let identity = self.identify(&connect, will.as_ref(), login.as_ref())?;
        if matches!(identity, Identity::Service { .. }) {
            self.identity = Some(identity);
            return Ok(Packet::Connect(connect, None, will, None, login));
        }
        if self.shared.admitted.fetch_add(1, Ordering::SeqCst) >= self.shared.max_connections {
            self.shared.admitted.fetch_sub(1, Ordering::SeqCst);
            return Err(Refusal::OverCapacity);
        }
        self.holds_slot = true;
        self.identity = Some(identity);
        let mut will = will;
        if let Some(will) = &mut will {
            self.strip_retain(&mut will.retain);
        }
        self.revocations_seen = self.shared.authenticator.revocations();
        Ok(Packet::Connect(connect, None, will, None, login))
    }

    fn identify(
        &self,
        connect: &Connect,
        will: Option<&LastWill>,
        login: Option<&Login>,
    ) -> Result<Identity, Refusal> {
        // Even in dev-open mode, a client id rumqttd's router would refuse
        // must never reach it (DESIGN.md, "Lockup bug").
        if connect.client_id.contains(['/', '+', '#', '$']) {
            return Err(Refusal::BadClientId);
        }
        if let (Some(login), Some(secret)) = (login, &self.shared.service_secret) {
            if login.username == SERVICE_USER {
                return if constant_time_eq(login.password.as_bytes(), secret.as_bytes()) {
                    Ok(Identity::Service {
                        client_id: connect.client_id.clone(),
                    })
                } else {
                    Err(Refusal::BadCredentials)
                };
            }
        }
        if self.shared.dev_open {
            return Ok(Identity::Open {
                client_id: connect.client_id.clone(),
            });
        }
        let client = ClientId::parse(&connect.client_id).map_err(|_| Refusal::BadClientId)?;
        let login = login.ok_or(Refusal::NoCredentials)?;
        if login.username != client.user.as_str() {
            return Err(Refusal::BadCredentials);
        }
        let owner = self
            .shared
            .authenticator
            .authenticate(&login.password)
            .map_err(|e| match e {
                AuthError::BadCredentials => Refusal::BadCredentials,
                AuthError::Unavailable => Refusal::StoreUnavailable,
            })?;
        if owner != client.user {
            return Err(Refusal::BadCredentials);
        }
        if let Some(will) = will {
            let topic = std::str::from_utf8(&will.topic).unwrap_or("");
            if !topics::may_publish(&client.user, topic) {
                return Err(Refusal::ForbiddenWill);
            }
        }
        Ok(Identity::User {
            user: client.user,
            client_id: connect.client_id.clone(),
            token_hash: store::tokens::token_hash(&login.password),
        })
    }

    /// A CONNECT that rumqttd refuses on its own, before the router or its
    /// last-will bookkeeping sees it: an empty client id with a persistent
    /// session makes it write a CONNACK refusal and close.
    fn refused_connect(&self, refusal: Refusal) -> Packet {
        meter::refused(refusal);
        *lock(&self.refusal) = Some(refusal);
        let connect = Connect {
            keep_alive: 1,
            client_id: String::new(),
            clean_session: false,
        };
        Packet::Connect(connect, None, None, None, None)
    }

    fn user(&self) -> Option<&UserName> {
        match &self.identity {
            Some(Identity::User { user, .. }) => Some(user),
            _ => None,
        }
    }

    fn on_subscribe(&self, pkid: u16, filters: &mut [Filter]) {
        let Some(user) = self.user() else { return };
        let mut denied = Vec::new();
        for (position, filter) in filters.iter_mut().enumerate() {
            let allowed = topics::may_subscribe(user, &filter.path)
                && topics::presence_target(&filter.path)
                    .is_none_or(|name| self.shared.presence.is_user(name));
            if !allowed {
                meter::refused(Refusal::ForbiddenSubscribe);
                self.shared.refused_subscribe_log.note_text(&filter.path, |more, filter| {
                    tracing::info!(user = %user, %filter, more_since_last_line = more, "subscription refused")
                });
                filter.path = DENIED_FILTER.to_owned();
                denied.push(position);
            }
        }
        if !denied.is_empty() {
            lock(&self.denied).insert(pkid, denied);
        }
    }

    fn may_publish(&self, topic: &[u8]) -> bool {
        match &self.identity {
            Some(Identity::User { user, .. }) => {
                std::str::from_utf8(topic).is_ok_and(|t| topics::may_publish(user, t))
            }
            Some(Identity::Open { .. } | Identity::Service { .. }) => true,
            None => false,
        }
    }

    /// Users' messages are never retained: every topic a user may publish
    /// to is a request to the server or an ephemeral signal, and a retained
    /// copy would be replayed to each new subscriber (the bridge included)
    /// for ever. The flag is cleared and the message delivered as usual;
    /// only the server retains (`presence/{user}`).
    fn strip_retain(&self, retain: &mut bool) {
        if *retain && matches!(self.identity, Some(Identity::User { .. })) {
            *retain = false;
            meter::retain_stripped();
        }
    }

    /// Checks what rumqttd's codec does not (see [`crate::wellformed`]);
    /// `Err` closes the connection.
    fn check_wellformed(&self, packet: &Packet) -> Result<(), Refusal> {
        let ok = match packet {
            Packet::Connect(connect, _, will, _, _) => {
                wellformed::string(&connect.client_id)
                    && will
                        .as_ref()
                        .is_none_or(|w| wellformed::topic_name(&w.topic))
            }
            // MQTT-3.1.0-1: nothing but CONNECT before CONNECT. Counted as
            // what it is, not as the refusal its kind would otherwise get.
            _ if self.identity.is_none() => return Err(Refusal::NotConnected),
            Packet::Publish(publish, _) => wellformed::topic_name(&publish.topic),
            Packet::Subscribe(subscribe, _) => subscribe
                .filters
                .iter()
                .all(|f| wellformed::topic_filter(&f.path)),
            Packet::Unsubscribe(unsubscribe, _) => unsubscribe
                .filters
                .iter()
                .all(|f| wellformed::topic_filter(f)),
            // Only a server sends CONNACK; Mosquitto closes a client that does.
            Packet::ConnAck(..) => false,
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(Refusal::Malformed)
        }
    }

    fn announce(&self) {
        let Some(identity) = &self.identity else {
            return;
        };
        let n = self.shared.next_connection.fetch_add(1, Ordering::Relaxed);
        let connection_id = format!("{}:{n}", self.shared.node);
        if identity.is_client() {
            meter::connected();
        }
        // Logged in: no longer one of the listener's anonymous connections.
        lock(&self.login).take();
        let recorded = self.send_event(EventKind::Connected, identity, &connection_id);
        *lock(&self.announced) = Some(Announced {
            connection_id,
            recorded: recorded == Sent::Queued,
        });
    }

    fn send_event(&self, kind: EventKind, identity: &Identity, connection_id: &str) -> Sent {
        let event = ConnectionEvent {
            kind,
            connection_id: connection_id.to_owned(),
            user: identity.user_name().cloned(),
            client_id: identity.client_id().to_owned(),
            token_hash: identity.token_hash().map(str::to_owned),
            at_ms: store::clock::now_ms(),
        };
        self.shared.events.send(event)
    }
}

/// MQTT 3.1 clients (tsung 1.7 among them) send SUBSCRIBE and UNSUBSCRIBE
/// with the fixed-header flags 0000. MQTT 3.1.1 made 0010 mandatory
/// (MQTT-3.8.1-1, MQTT-3.10.1-1) and the codec refuses anything else, while
/// Mosquitto checks the flags only for 3.1.1 and 5. For a 3.1 session the
/// flags of the next packet are set to what the codec requires.
fn tolerate_mqtt31_flags(stream: &mut bytes::BytesMut) {
    const SUBSCRIBE: u8 = 0x80;
    const UNSUBSCRIBE: u8 = 0xA0;
    if let Some(first) = stream.first_mut() {
        if matches!(*first, SUBSCRIBE | UNSUBSCRIBE) {
            *first |= 0b0010;
        }
    }
}

/// Protocol name of MQTT 3.1 (level 3), as it appears on the wire.
const NAME_MQTT31: &[u8] = b"\x00\x06MQIsdp";
/// Protocol name of MQTT 3.1.1 (level 4) and 5 (level 5).
const NAME_MQTT: &[u8] = b"\x00\x04MQTT";

/// The protocol name and level of the CONNECT `stream` starts with, if it
/// does and they are complete. rumqttd's `Connect` keeps neither, and the
/// codec to read the packet with depends on them, so the guard reads them
/// here, before a codec consumes the packet.
fn connect_protocol(stream: &[u8]) -> Option<(&'static [u8], u8)> {
    if stream.first() != Some(&0x10) {
        return None;
    }
    // Skip the remaining length: 1 to 4 bytes, the last without bit 7.
    let length_bytes = stream[1..].iter().take(4).position(|b| b & 0x80 == 0)?;
    let rest = stream.get(2 + length_bytes..)?;
    [NAME_MQTT31, NAME_MQTT].into_iter().find_map(|name| {
        let level = *rest.strip_prefix(name)?.first()?;
        Some((name, level))
    })
}

/// rumqttd's codec for one MQTT version. Both read into and write from
/// the same `Packet` type, so the guard's checks do not depend on it.
#[derive(Debug, Clone)]
enum Codec {
    /// MQTT 3.1.1, and 3.1 (PATCHES.md 8).
    V4(V4),
    /// MQTT 5.
    V5(V5),
}

impl Codec {
    fn is_v5(&self) -> bool {
        matches!(self, Codec::V5(_))
    }

    fn read_mut(
        &mut self,
        stream: &mut bytes::BytesMut,
        max_size: usize,
    ) -> Result<Packet, CodecError> {
        match self {
            Codec::V4(codec) => codec.read_mut(stream, max_size),
            Codec::V5(codec) => {
                // rumqttd's v5 reader panics (`unreachable!`) on a CONNACK or
                // UNSUBACK with a body, which only a server sends.
                if matches!(stream.first().map(|b| b >> 4), Some(2 | 11)) {
                    return Err(CodecError::MalformedPacket);
                }
                codec.read_mut(stream, max_size)
            }
        }
    }
}

/// The presence payload a viewer gets for a user they may not see.
fn hidden_presence() -> bytes::Bytes {
    bytes::Bytes::from(
        serde_json::to_vec(&protocol::presence::Presence::hidden()).unwrap_or_default(),
    )
}

/// Compares secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Locks per-connection state. Only this connection's task touches it, so
/// the lock is never contended; a poisoned lock still holds valid state.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Clone for Guard {
    /// rumqttd clones the listener's guard for each new connection; the copy
    /// starts with no per-connection state.
    fn clone(&self) -> Guard {
        Guard::new(self.shared.clone(), self.gate.clone())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.holds_slot {
            self.shared.admitted.fetch_sub(1, Ordering::SeqCst);
        }
        if let (Some(identity), Some(announced)) = (&self.identity, lock(&self.announced).take()) {
            if identity.is_client() {
                meter::disconnected();
            }
            if announced.recorded {
                self.send_event(EventKind::Disconnected, identity, &announced.connection_id);
            }
        }
    }
}

impl Protocol for Guard {
    /// The listener's gate admits the socket as one that has not logged in,
    /// or it is closed at once (see [`crate::prelogin`]).
    fn for_connection(&self, peer: std::net::SocketAddr) -> Option<Guard> {
        let guard = self.clone();
        if let Some(gate) = &self.gate {
            *lock(&guard.login) = Some(gate.admit(peer.ip())?);
        }
        Some(guard)
    }

    fn read_mut(
        &mut self,
        stream: &mut bytes::BytesMut,
        max_size: usize,
    ) -> Result<Packet, CodecError> {
        if self.identity.is_none() && lock(&self.refusal).is_none() {
            let level = connect_protocol(stream);
            self.mqtt31 = level == Some((NAME_MQTT31, 3));
            self.codec = if level == Some((NAME_MQTT, 5)) {
                Codec::V5(V5)
            } else {
                Codec::V4(V4)
            };
        }
        if self.mqtt31 {
            tolerate_mqtt31_flags(stream);
        }
        let packet = match self.codec.read_mut(stream, max_size) {
            Ok(packet) => packet,
            // MQTT-3.1.2-2: a protocol level we do not speak is answered
            // with CONNACK 0x01, not a silent close. Only a CONNECT carries a
            // level, and only the first one reaches this far.
            Err(CodecError::InvalidProtocolLevel(level))
                if self.identity.is_none() && lock(&self.refusal).is_none() =>
            {
                tracing::debug!(level, "CONNECT with an unsupported protocol level");
                return Ok(self.refused_connect(Refusal::UnsupportedProtocol));
            }
            // "Need more bytes" is how a partial frame waits for the rest.
            Err(e @ CodecError::InsufficientBytes(_)) => return Err(e),
            // Anything else the codec refuses closes the connection; count it.
            Err(e) => {
                meter::refused(Refusal::Malformed);
                tracing::debug!(error = %e, "closing a connection for malformed input");
                return Err(e);
            }
        };
        if lock(&self.refusal).is_some() {
            // rumqttd closes a refused connection after the CONNACK; nothing
            // the client sends meanwhile may reach the router.
            return Err(CodecError::InvalidProtocol);
        }
        if self.token_revoked() {
            meter::refused(Refusal::RevokedToken);
            tracing::info!(
                user = self.user().map(|u| u.as_str()).unwrap_or(""),
                "token revoked, closing connection"
            );
            return Err(CodecError::InvalidProtocol);
        }
        if let Err(refusal) = self.check_wellformed(&packet) {
            meter::refused(refusal);
            tracing::debug!(
                reason = refusal.label(),
                "closing a connection for its input"
            );
            return Err(CodecError::MalformedPacket);
        }
        match packet {
            Packet::Connect(..) if self.identity.is_some() => {
                // A second CONNECT on a live connection is a protocol
                // violation; it must not reach the router.
                meter::refused(Refusal::DuplicateConnect);
                Err(CodecError::InvalidProtocol)
            }
            Packet::Connect(connect, _props, will, _will_props, login) => {
                match self.on_connect(connect, will, login) {
                    Ok(packet) => Ok(packet),
                    Err(refusal) => Ok(self.refused_connect(refusal)),
                }
            }
            Packet::Subscribe(mut subscribe, props) => {
                self.on_subscribe(subscribe.pkid, &mut subscribe.filters);
                Ok(Packet::Subscribe(subscribe, props))
            }
            Packet::Publish(_, Some(ref props)) if props.topic_alias.is_some() => {
                // MQTT-3.3.2-8: our CONNACK allowed no alias; a PUBLISH
                // naming one is a protocol error.
                meter::refused(Refusal::Malformed);
                tracing::debug!("closing a connection for a topic alias");
                Err(CodecError::MalformedPacket)
            }
            Packet::Publish(mut publish, props) => {
                if self.may_publish(&publish.topic) {
                    self.strip_retain(&mut publish.retain);
                    Ok(Packet::Publish(publish, props))
                } else {
                    meter::refused(Refusal::ForbiddenPublish);
                    let user = self.user().map(|u| u.as_str()).unwrap_or("");
                    let topic = String::from_utf8_lossy(&publish.topic);
                    self.shared
                        .refused_publish_log
                        .note_text(&topic, |more, topic| {
                            tracing::info!(
                                user,
                                topic,
                                more_since_last_line = more,
                                "publish refused, closing connection"
                            )
                        });
                    Err(CodecError::InvalidProtocol)
                }
            }
            other => Ok(other),
        }
    }

    fn write(&self, packet: Packet, buffer: &mut bytes::BytesMut) -> Result<usize, CodecError> {
        let packet = match packet {
            Packet::ConnAck(ack, props) => {
                let refusal = *lock(&self.refusal);
                let code = match refusal {
                    Some(refusal) => refusal.connack_code(self.codec.is_v5()),
                    None => ack.code,
                };
                if code == ConnectReturnCode::Success {
                    self.announce();
                }
                let session_present = ack.session_present && !self.mqtt31;
                // MQTT 5: no topic alias maximum means 0, so the client
                // sends none (see `alias_refused`).
                let props = props.map(|props| ConnAckProperties {
                    topic_alias_max: None,
                    ..props
                });
                Packet::ConnAck(
                    ConnAck {
                        code,
                        session_present,
                    },
                    props,
                )
            }
            Packet::Publish(mut publish, props) => {
                if let Some(Identity::User { user, .. }) = &self.identity {
                    let topic = std::str::from_utf8(&publish.topic).unwrap_or("");
                    if let Some(target) = topics::presence_target(topic) {
                        if !self.shared.presence.may_see(user.as_str(), target) {
                            publish.payload = hidden_presence();
                            meter::presence_hidden();
                        }
                    }
                }
                Packet::Publish(publish, props)
            }
            Packet::SubAck(mut ack, props) => {
                let denied = lock(&self.denied).remove(&ack.pkid);
                let refused = match self.codec {
                    Codec::V4(_) => SubscribeReasonCode::Failure,
                    Codec::V5(_) => SubscribeReasonCode::NotAuthorized,
                };
                if let Some(denied) = denied {
                    for position in denied {
                        if let Some(code) = ack.return_codes.get_mut(position) {
                            *code = refused;
                        }
                    }
                }
                Packet::SubAck(ack, props)
            }
            other => other,
        };
        match &self.codec {
            Codec::V4(codec) => codec.write(packet, buffer),
            Codec::V5(codec) => codec.write(packet, buffer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{connect_protocol, Codec, NAME_MQTT, NAME_MQTT31};
    use rumqttd::protocol::v5::V5;

    #[test]
    fn a_connects_protocol_level_is_read_and_partial_input_is_none() {
        let v31 = b"\x10\x12\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x02ab";
        let v311 = b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x02ab";
        let v5 = b"\x10\x11\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x02ab";
        assert_eq!(connect_protocol(v31), Some((NAME_MQTT31, 3)));
        assert_eq!(connect_protocol(v311), Some((NAME_MQTT, 4)));
        assert_eq!(connect_protocol(v5), Some((NAME_MQTT, 5)));
        for partial in [&v31[..0], &v31[..1], &v31[..2], &v31[..5], &v31[..10]] {
            assert_eq!(connect_protocol(partial), None);
        }
        assert_eq!(connect_protocol(b"\x30\x10\x00\x04MQTT\x05"), None);
        // A long CONNECT: two bytes of remaining length.
        let mut long = vec![0x10, 0x90, 0x01];
        long.extend_from_slice(b"\x00\x06MQIsdp\x03");
        assert_eq!(connect_protocol(&long), Some((NAME_MQTT31, 3)));
    }

    /// A client's bytes must never panic the v5 reader (a panic would end
    /// the connection task without the guard's accounting). Mutates valid
    /// packets of every kind a client sends, deterministically.
    #[test]
    fn the_mqtt5_reader_refuses_mutated_client_packets_without_panicking() {
        let valid: [&[u8]; 7] = [
            // CONNECT with a session expiry property, will and login.
            b"\x10\x24\x00\x04MQTT\x05\xce\x00\x3c\x05\x11\x00\x00\x00\x0a\x00\x02ab\x00\x00\x03u/a\x00\x01x\x00\x01a\x00\x02pw",
            // PUBLISH QoS 1 with a user property and a topic alias.
            b"\x32\x14\x00\x03u/a\x00\x07\x0a\x26\x00\x01k\x00\x01v\x23\x00\x01hi",
            // SUBSCRIBE with a subscription identifier.
            b"\x82\x0b\x00\x05\x02\x0b\x01\x00\x03u/a\x01",
            b"\xa2\x08\x00\x06\x00\x00\x03u/a",
            b"\x40\x04\x00\x07\x10\x00",
            b"\x62\x04\x00\x07\x00\x00",
            b"\xe0\x02\x04\x00",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for packet in valid {
            let mut stream = bytes::BytesMut::from(packet);
            let read = Codec::V5(V5).read_mut(&mut stream, 1 << 20);
            assert!(read.is_ok() && stream.is_empty(), "{packet:02x?}: {read:?}");
            for _ in 0..3000 {
                let mut bytes = packet.to_vec();
                for _ in 0..1 + next() % 3 {
                    let at = (next() as usize) % bytes.len();
                    bytes[at] = next() as u8;
                }
                let mut stream = bytes::BytesMut::from(&bytes[..]);
                let mut codec = Codec::V5(V5);
                let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let _ = codec.read_mut(&mut stream, 1 << 20);
                }));
                assert!(read.is_ok(), "the v5 reader panicked on {bytes:02x?}");
            }
        }
    }
}
