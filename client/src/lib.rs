//! bluetick's client SDK: what a chat app links to talk to a bluetick server
//! over MQTT 3.1.1 without losing, repeating or reordering anything.
//!
//! The crate owns the client side of the contract in `protocol`: the
//! connection (persistent MQTT session, reconnects), the **outbox** (every
//! send is on disk until the server's `ack` or `error` event for it
//! arrives, and is resent until then), and the **inbox** (events with a seq
//! reach the app exactly once and in seq order, across reconnects and
//! restarts, with gaps filled by `sync`). The app sees a [`Client`] handle
//! and a channel of [`AppEvent`]s; it never sees MQTT.
//!
//! # Layout
//!
//! - [`config`]: [`Config`], what the app provides, and the MQTT options it
//!   becomes; [`Tls`] for the server's TLS listener (plain TCP sends the
//!   token in clear).
//! - [`outbox`]: the SQLite state file: unsettled sends and `last_seq`.
//! - [`inbox`]: the pure seq state machine: dedup, reorder buffer, gap
//!   detection and when to `sync`.
//! - [`client`]: the public handle [`Client`].
//! - `event`: [`AppEvent`], what the driver tells the app (the handle
//!   hands out their channel; the driver fills it).
//! - `session`: the driver tasks: the rumqttc event loop, the CONNACK
//!   routine, the resend timer, ack debouncing, delivery to the app.
//! - [`error`]: the [`ClientError`] enum.
//!
//! # How a send flows
//!
//! [`Client::send`] validates, generates a UUID client id, inserts the
//! message into the outbox (committed to disk), publishes
//! `u/{me}/send {"id","to","body"}` at QoS 1 if connected, and returns the
//! id. The broker's PUBACK settles nothing, since a broker may PUBACK and
//! drop. The entry is settled when the inbox delivers the server's `ack`
//! for that id ([`AppEvent::Sent`] with `own: true`) or a final `error`
//! naming it ([`AppEvent::Rejected`]). Until then the driver publishes it
//! again every `resend_after` and after every CONNACK; the server
//! deduplicates on (sender, client id), so this is always safe.
//! [`Client::send_media`] does the same for media the app uploaded with
//! `POST /v1/media`: the outbox keeps the media reference, so a resend
//! after a restart still carries it.
//!
//! # Groups
//!
//! [`Client::send_to_group`] is the same send with `group` instead of `to`:
//! the same outbox, resends and server dedupe, and one group's messages go
//! out in order as one peer's do. Group messages arrive as
//! [`AppEvent::Message`] with `group` set, "delivered to all" and "read by
//! all" as [`AppEvent::Receipt`] with `group` set, and membership changes
//! as [`AppEvent::Group`]. [`Client::create_group`] and
//! [`Client::change_group`] publish on `u/{me}/group`; [`Client::read_group`]
//! marks a group read.
//!
//! # How an inbox event flows
//!
//! A publish on `u/{me}/inbox` is parsed as an `InboxEvent` (malformed ones
//! are logged and skipped) and given to the [`inbox::Inbox`] machine, which
//! drops seqs already delivered, buffers early ones and asks for
//! `sync {after: last_seq}` when it sees a gap. The events it releases are
//! committed in one transaction: the outbox entries they settle are
//! deleted and `last_seq` moves forward. Only then are they sent on the
//! app's channel, and after that (debounced: 50 ms, or at once past 100
//! events) the driver publishes `u/{me}/ack {"up_to": last_seq, "device"}`
//! so the server may prune them. After every CONNACK the driver subscribes
//! to the inbox, syncs after `last_seq`, resends the whole outbox and
//! re-acks.
//!
//! Syncs are also sent when a replay batch ends with `more`, when buffered
//! events stay stuck behind a gap, when a requested replay goes silent, and
//! after [`Config::idle_sync`] without inbox traffic (the only way to notice
//! that the very last event was lost). A device that is new to the server
//! may find the start of its inbox already pruned; after several identical
//! replays the machine skips the missing seqs (see [`inbox`]).
//!
//! An event counts as delivered once it is in the app's channel: if the
//! process dies before the app has taken it out, it is not redelivered.
//! Apps that need more should store what they receive before acting on it.
//!
//! # Usage
//!
//! ```no_run
//! use client::{AppEvent, Client, Config};
//!
//! # async fn demo() -> Result<(), client::ClientError> {
//! let config = Config::new("127.0.0.1", 1883, "alice", "TOKEN", "phone", "alice-phone.db");
//! let (client, mut events) = Client::connect(config).await?;
//! let id = client.send("bob", "hello").await?;
//! println!("queued {id}; {} pending", client.pending()?);
//! while let Some(event) = events.recv().await {
//!     match event {
//!         AppEvent::Message(m) => {
//!             println!("{}: {}", m.from, m.body);
//!             client.read(&m.from, m.id).await?;
//!         }
//!         AppEvent::Sent { ack, own: true } if ack.client_id == id => break,
//!         other => println!("{other:?}"),
//!     }
//! }
//! client.close().await;
//! # Ok(())
//! # }
//! ```

pub mod client;
pub mod config;
pub mod error;
mod event;
pub mod inbox;
pub mod outbox;
mod session;

pub use client::{AppEvent, Client};
pub use config::{Config, Tls};
pub use error::ClientError;
/// How the SDK acks its inbox, for tools that must ack the same way (the bench).
pub use session::{ACK_BURST, ACK_DELAY};
