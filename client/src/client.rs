//! The app's handle: [`Client`] and the [`AppEvent`]s it delivers.
//!
//! The handle does the synchronous part of each call (validation, the
//! outbox write) and leaves everything that waits on the network to the
//! driver (the private `session` module).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use protocol::groups::{group_name, GroupId, GroupRequest};
use protocol::messages::{MediaRef, SendRequest};
use protocol::{topics, UserName};
use rumqttc::{AsyncClient, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{publish_size, Config};
use crate::error::ClientError;
use crate::outbox::{Outbox, Recipient};
use crate::session::{self, Command, Shared};

pub use crate::event::AppEvent;

/// A connected chat client. See the crate docs for the flow.
///
/// Dropping it (or the event receiver) stops the driver as
/// [`Client::close`] does, without waiting for it.
pub struct Client {
    shared: Arc<Shared>,
    mqtt: AsyncClient,
    send_topic: String,
    max_packet_size: usize,
    commands: mpsc::UnboundedSender<Command>,
    driver: JoinHandle<()>,
}

impl Client {
    /// Opens the state file, connects and waits for the first CONNACK.
    ///
    /// Fails with [`ClientError::Refused`] if the server refuses the
    /// credentials or client id, and [`ClientError::Unreachable`] if no
    /// CONNACK arrives within 10 s. After that the driver reconnects on its
    /// own for as long as the client lives.
    pub async fn connect(
        config: Config,
    ) -> Result<(Client, mpsc::UnboundedReceiver<AppEvent>), ClientError> {
        let (me, client_id) = config.validate()?;
        let outbox = open_outbox(config.state_path.clone()).await?;
        let started = session::start(&config, me.clone(), &client_id, outbox).await?;
        Ok((
            Client {
                shared: started.shared,
                mqtt: started.mqtt,
                send_topic: topics::user_topic(&me, "send"),
                max_packet_size: config.max_packet_size,
                commands: started.commands,
                driver: started.driver,
            },
            started.events,
        ))
    }

    /// Stores a message to `to` in the outbox, publishes it (if connected),
    /// and returns its client id. From here on the SDK resends it until the
    /// server's ack ([`AppEvent::Sent`]) or error ([`AppEvent::Rejected`])
    /// arrives, across reconnects and restarts.
    pub async fn send(&self, to: &str, body: &str) -> Result<String, ClientError> {
        if body.is_empty() {
            return Err(ClientError::EmptyBody);
        }
        self.send_request(Recipient::User(to.to_owned()), body, None).await
    }

    /// Like [`Client::send`], to a group I am in: stored once on the
    /// server, delivered to every other member ([`AppEvent::Message`] with
    /// `group` set), acked to me like any send. Sends to one group go out
    /// one at a time, in order, exactly as to one peer. A group I am not in
    /// comes back as [`AppEvent::Rejected`] with `not_a_member`.
    pub async fn send_to_group(&self, group: GroupId, body: &str) -> Result<String, ClientError> {
        if body.is_empty() {
            return Err(ClientError::EmptyBody);
        }
        self.send_request(Recipient::Group(group), body, None).await
    }

    /// Like [`Client::send`], for media uploaded with `POST /v1/media`:
    /// `media_id` is the upload's `id`, `caption` may be empty. The server
    /// fills in the type and size the recipient sees, and refuses an id
    /// that is not yours with an `unknown_media` error event.
    pub async fn send_media(
        &self,
        to: &str,
        media_id: &str,
        caption: &str,
    ) -> Result<String, ClientError> {
        let media = MediaRef {
            id: media_id.to_owned(),
            mime: String::new(),
            size: 0,
            caption: caption.to_owned(),
        };
        self.send_request(Recipient::User(to.to_owned()), "", Some(media)).await
    }

    async fn send_request(
        &self,
        recipient: Recipient,
        body: &str,
        media: Option<MediaRef>,
    ) -> Result<String, ClientError> {
        if self.commands.is_closed() {
            return Err(ClientError::Closed);
        }
        if let Recipient::User(to) = &recipient {
            if UserName::parse(to).is_err() {
                return Err(ClientError::InvalidPeer(to.clone()));
            }
        }
        let (to, group) = recipient.fields();
        let request = SendRequest {
            id: uuid::Uuid::new_v4().to_string(),
            to,
            group,
            body: body.to_owned(),
            media,
        };
        let payload = session::encode!(request);
        let size = publish_size(&self.send_topic, payload.len());
        if size > self.max_packet_size {
            return Err(ClientError::TooLarge {
                size,
                max: self.max_packet_size,
            });
        }
        let shared = Arc::clone(&self.shared);
        let entry = request.clone();
        let head = tokio::task::spawn_blocking(move || {
            let media = entry
                .media
                .as_ref()
                .map(|m| serde_json::to_string(m).unwrap_or_default());
            session::lock(&shared.outbox).add_with_media(
                &entry.id,
                &recipient.key(),
                &entry.body,
                media.as_deref(),
                session::now_ms(),
            )
        })
        .await
        .map_err(|_| ClientError::Closed)??;
        // Once stored it is the driver's to deliver: if this publish cannot
        // be queued, the next CONNACK or the resend timer sends it. A send
        // queued behind another to the same peer goes out when that one
        // settles, which keeps the peer's messages in order.
        if head && self.shared.connected.load(Ordering::SeqCst) {
            if let Err(e) =
                self.mqtt
                    .try_publish(&self.send_topic, QoS::AtLeastOnce, false, payload)
            {
                tracing::debug!(client_id = %request.id, "send queued for the resend timer: {e}");
            }
        }
        Ok(request.id)
    }

    /// Tells the server I read every message from `peer` with server id
    /// ≤ `up_to` (it sends `peer` a read receipt). Published now if
    /// connected, otherwise after the next CONNACK; not persisted.
    pub async fn read(&self, peer: &str, up_to: i64) -> Result<(), ClientError> {
        if UserName::parse(peer).is_err() {
            return Err(ClientError::InvalidPeer(peer.to_owned()));
        }
        self.commands
            .send(Command::Read {
                chat: Recipient::User(peer.to_owned()),
                up_to,
            })
            .map_err(|_| ClientError::Closed)
    }

    /// Like [`Client::read`], for the messages of a group: every member's
    /// message with server id ≤ `up_to` was read. The senders get "read by
    /// all" once every member has read (see docs/protocol.md, Groups).
    pub async fn read_group(&self, group: GroupId, up_to: i64) -> Result<(), ClientError> {
        self.commands
            .send(Command::Read {
                chat: Recipient::Group(group),
                up_to,
            })
            .map_err(|_| ClientError::Closed)
    }

    /// Creates a group with me as its admin and `members` besides me, and
    /// returns the request's client id. Every member, me included, gets an
    /// [`AppEvent::Group`] `created` event naming the group's id (and, for
    /// me, this client id); an unknown member or too many come back as
    /// [`AppEvent::Rejected`] naming the client id. Sent now if connected
    /// and again after every reconnect until one of those arrives: the
    /// server creates one group per client id.
    pub async fn create_group(&self, name: &str, members: &[&str]) -> Result<String, ClientError> {
        let name = group_name(name).ok_or_else(|| ClientError::InvalidGroupName(name.to_owned()))?;
        if let Some(bad) = members.iter().find(|m| UserName::parse(m).is_err()) {
            return Err(ClientError::InvalidPeer((*bad).to_owned()));
        }
        let id = uuid::Uuid::new_v4().to_string();
        self.change_group(GroupRequest::Create {
            id: id.clone(),
            name: name.to_owned(),
            members: members.iter().map(|m| (*m).to_owned()).collect(),
        })
        .await?;
        Ok(id)
    }

    /// Asks for a change to a group: add, remove, promote, demote, leave,
    /// rename, timer (or a create, as [`Client::create_group`] does). The
    /// members it concerns get an [`AppEvent::Group`] once it is stored; a
    /// refusal (`not_admin`, `not_a_member`, `group_full`…) comes back as
    /// [`AppEvent::Rejected`] with `on: "group"`. Published now if
    /// connected, otherwise after the next CONNACK; not persisted.
    pub async fn change_group(&self, request: GroupRequest) -> Result<(), ClientError> {
        match &request {
            GroupRequest::Add { user, .. }
            | GroupRequest::Remove { user, .. }
            | GroupRequest::Promote { user, .. }
            | GroupRequest::Demote { user, .. }
                if UserName::parse(user).is_err() =>
            {
                return Err(ClientError::InvalidPeer(user.clone()));
            }
            GroupRequest::Create { name, .. } | GroupRequest::Rename { name, .. }
                if group_name(name).is_none() =>
            {
                return Err(ClientError::InvalidGroupName(name.clone()));
            }
            _ => {}
        }
        self.commands
            .send(Command::Group(request))
            .map_err(|_| ClientError::Closed)
    }

    /// Stars (or unstars) a message I sent or received. My devices,
    /// this one included, get an [`AppEvent::Star`] once it is stored; a
    /// message that is not mine comes back as an [`AppEvent::Rejected`]
    /// with `not_found`. Published now if connected, otherwise after the
    /// next CONNACK; only the newest state per message is sent.
    pub async fn star(&self, id: i64, starred: bool) -> Result<(), ClientError> {
        self.commands
            .send(Command::Star { id, starred })
            .map_err(|_| ClientError::Closed)
    }

    /// Number of sends not yet settled by an ack or error event.
    pub fn pending(&self) -> Result<usize, ClientError> {
        session::lock(&self.shared.outbox).len()
    }

    /// Highest contiguous inbox seq delivered to the app (and persisted).
    pub fn last_seq(&self) -> i64 {
        self.shared.last_seq.load(Ordering::SeqCst)
    }

    /// Is the driver connected right now?
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// Publishes a final ack, sends DISCONNECT and stops the driver (waiting
    /// at most a few seconds for the broker). Events already delivered stay
    /// readable on the receiver; unsettled sends stay in the outbox for the
    /// next [`Client::connect`].
    pub async fn close(self) {
        let _ = self.commands.send(Command::Close);
        let mut driver = self.driver;
        if tokio::time::timeout(Duration::from_secs(10), &mut driver)
            .await
            .is_err()
        {
            tracing::warn!("the client driver did not stop within 10 s; aborting it");
            driver.abort();
        }
    }
}

async fn open_outbox(path: std::path::PathBuf) -> Result<Outbox, ClientError> {
    tokio::task::spawn_blocking(move || Outbox::open(Path::new(&path)))
        .await
        .map_err(|e| ClientError::Open(format!("the opening task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connect_refuses_a_bad_config_before_touching_disk_or_network() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let config = Config::new("127.0.0.1", 1, "Not A Name", "token", "", &path);
        assert!(matches!(
            Client::connect(config).await.err(),
            Some(ClientError::InvalidConfig(_))
        ));
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn connect_gives_up_on_an_unreachable_server_within_its_deadline() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new(
            "127.0.0.1",
            port,
            "alice",
            "token",
            "phone",
            dir.path().join("s.db"),
        );
        let started = std::time::Instant::now();
        match Client::connect(config).await.err() {
            Some(ClientError::Unreachable { addr, .. }) => {
                assert_eq!(addr, format!("127.0.0.1:{port}"))
            }
            other => panic!("expected Unreachable, got {other:?}"),
        }
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(9) && took < Duration::from_secs(13),
            "{took:?}"
        );
    }
}
