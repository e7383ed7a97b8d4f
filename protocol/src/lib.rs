//! The client contract of bluetick, with no I/O.
//!
//! Everything a client, the server and the tests must agree on is defined
//! here exactly once:
//!
//! - [`names`]: what a user name, a device and an MQTT client id may look like;
//! - [`topics`]: every topic string, and the access rule that says which user
//!   may publish or subscribe where;
//! - [`errors`]: the error codes that HTTP and MQTT refusals carry;
//! - [`messages`]: the chat payloads clients publish and the inbox events
//!   the server sends back;
//! - [`groups`]: group management requests, the `group` inbox event, the
//!   group HTTP shapes and the group limits;
//! - [`history`]: the HTTP read API's shapes (history, chats, stars,
//!   search) and its one paging scheme;
//! - [`media`]: upload answers, media limits and their defaults;
//! - [`presence`]: presence, last-seen privacy (with its visibility rule)
//!   and typing.
//!
//! docs/protocol.md is the prose form of this crate. When one changes, so does
//! the other.
//!
//! This crate must not do I/O, talk to a database or know about the broker:
//! it is shared by the server, the client SDK, the tests and the docs.

pub mod errors;
pub mod groups;
pub mod history;
pub mod media;
pub mod messages;
pub mod names;
pub mod presence;
pub mod topics;

pub use errors::ErrorCode;
pub use names::{ClientId, NameError, UserName};
