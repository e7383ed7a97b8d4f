//! What the broker reports to `/metrics`.

/// Why the guard refused something. The label values are part of the
/// operator contract (docs/operations.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// CONNECT with a client id that is not `NAME` or `NAME.DEVICE`.
    BadClientId,
    /// CONNECT without a user name or password.
    NoCredentials,
    /// CONNECT with an unknown user, a wrong or expired token, or a token
    /// of another user.
    BadCredentials,
    /// CONNECT with a last-will topic the user may not publish to.
    ForbiddenWill,
    /// CONNECT over the connection cap.
    OverCapacity,
    /// CONNECT while the store could not be asked.
    StoreUnavailable,
    /// A second CONNECT on one connection (which is then closed).
    DuplicateConnect,
    /// SUBSCRIBE to a filter the user may not read.
    ForbiddenSubscribe,
    /// PUBLISH to a topic the user may not write.
    ForbiddenPublish,
    /// Any packet on a connection whose token was revoked (which is then
    /// closed).
    RevokedToken,
    /// A socket closed at accept: its listener already holds its cap of
    /// connections that have not logged in.
    PendingLoginsFull,
    /// A socket closed at accept: its source address already holds its cap
    /// of connections that have not logged in.
    PendingLoginsPerAddress,
    /// A WebSocket or TLS connection closed for not logging in in time.
    LoginTimeout,
    /// A WebSocket frame or message larger than the MQTT packet limit
    /// (the connection is closed with status 1009).
    WebSocketTooBig,
    /// CONNECT with a protocol level other than 5, 4 (3.1.1) or 3 (3.1).
    UnsupportedProtocol,
    /// A packet before CONNECT (the connection is closed).
    NotConnected,
    /// A packet breaking an MQTT rule the codec does not check (see
    /// `wellformed`), or one only a server may send (the connection is
    /// closed).
    Malformed,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::BadClientId => "bad_client_id",
            Refusal::NoCredentials => "no_credentials",
            Refusal::BadCredentials => "bad_credentials",
            Refusal::ForbiddenWill => "forbidden_will",
            Refusal::OverCapacity => "over_capacity",
            Refusal::StoreUnavailable => "store_unavailable",
            Refusal::DuplicateConnect => "duplicate_connect",
            Refusal::ForbiddenSubscribe => "forbidden_subscribe",
            Refusal::ForbiddenPublish => "forbidden_publish",
            Refusal::RevokedToken => "revoked_token",
            Refusal::PendingLoginsFull => "pending_logins_full",
            Refusal::PendingLoginsPerAddress => "pending_logins_per_address",
            Refusal::LoginTimeout => "login_timeout",
            Refusal::WebSocketTooBig => "websocket_too_big",
            Refusal::UnsupportedProtocol => "unsupported_protocol",
            Refusal::NotConnected => "not_connected",
            Refusal::Malformed => "malformed",
        }
    }

    /// The CONNACK code a refused CONNECT gets: an MQTT 3.1.1 return code,
    /// or with `mqtt5` an MQTT 5 reason code (rumqttd's v5 codec cannot
    /// write the 3.1.1-only codes).
    pub(crate) fn connack_code(self, mqtt5: bool) -> rumqttd::protocol::ConnectReturnCode {
        use rumqttd::protocol::ConnectReturnCode as Code;
        match self {
            Refusal::BadClientId => Code::ClientIdentifierNotValid,
            Refusal::NoCredentials | Refusal::BadCredentials => Code::BadUserNamePassword,
            Refusal::ForbiddenWill => Code::NotAuthorized,
            Refusal::OverCapacity if mqtt5 => Code::ServerBusy,
            Refusal::StoreUnavailable if mqtt5 => Code::ServerUnavailable,
            Refusal::OverCapacity | Refusal::StoreUnavailable => Code::ServiceUnavailable,
            Refusal::UnsupportedProtocol if mqtt5 => Code::UnsupportedProtocolVersion,
            Refusal::UnsupportedProtocol => Code::RefusedProtocolVersion,
            // These close or answer a live connection; no CONNACK carries them.
            Refusal::DuplicateConnect
            | Refusal::ForbiddenSubscribe
            | Refusal::ForbiddenPublish
            | Refusal::RevokedToken
            | Refusal::PendingLoginsFull
            | Refusal::PendingLoginsPerAddress
            | Refusal::LoginTimeout
            | Refusal::WebSocketTooBig
            | Refusal::NotConnected
            | Refusal::Malformed => Code::NotAuthorized,
        }
    }
}

pub(crate) fn refused(refusal: Refusal) {
    metrics::counter!("bluetick_mqtt_refusals_total", "reason" => refusal.label()).increment(1);
}

pub(crate) fn connected() {
    metrics::counter!("bluetick_mqtt_connects_total").increment(1);
    metrics::gauge!("bluetick_mqtt_connected_clients").increment(1.0);
}

pub(crate) fn disconnected() {
    metrics::gauge!("bluetick_mqtt_connected_clients").decrement(1.0);
}

pub(crate) fn retain_stripped() {
    metrics::counter!("bluetick_mqtt_retain_stripped_total").increment(1);
}

pub(crate) fn presence_hidden() {
    metrics::counter!("bluetick_presence_hidden_total").increment(1);
}
