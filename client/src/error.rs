//! What can go wrong in a call to the SDK.
//!
//! Only the calls the app makes return these. Trouble inside the driver
//! (a lost connection, a malformed inbox payload, a full request queue) is
//! handled there: logged, retried, or reported as
//! [`AppEvent::Connection(false)`](crate::AppEvent::Connection).

/// An error from [`Client`](crate::Client) or the outbox.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A [`Config`](crate::Config) field is unusable (user or device name,
    /// keep-alive, resend timeout, packet size). Nothing was attempted.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The peer of a `send` or `read` is not a valid user name.
    #[error("{0:?} is not a valid user name")]
    InvalidPeer(String),
    /// A group name that is empty (after trimming) or over
    /// [`protocol::groups::NAME_MAX`] bytes.
    #[error("{0:?} is not a valid group name (1-64 bytes)")]
    InvalidGroupName(String),
    /// A `send` with an empty body (the server would refuse it).
    #[error("the message body is empty")]
    EmptyBody,
    /// The `send` would not fit in one MQTT packet of
    /// [`Config::max_packet_size`](crate::Config::max_packet_size) bytes.
    #[error("the message needs a {size}-byte packet; the limit is {max}")]
    TooLarge { size: usize, max: usize },
    /// The broker answered CONNECT with a refusal (bad token, bad client id…).
    #[error("the server refused the connection: {0}")]
    Refused(String),
    /// No CONNACK arrived within the connect deadline.
    #[error("could not connect to {addr} within {secs} s: {last_error}")]
    Unreachable {
        addr: String,
        secs: u64,
        last_error: String,
    },
    /// The state database could not be opened.
    #[error("cannot open the state database: {0}")]
    Open(String),
    /// A query on the state database failed.
    #[error("state database: {0}")]
    Db(#[from] diesel::result::Error),
    /// The driver has stopped (after [`Client::close`](crate::Client::close),
    /// or because the app dropped the event receiver).
    #[error("the client is closed")]
    Closed,
}
