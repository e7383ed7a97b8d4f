//! SDK clients for tests: a connected `client::Client` with helpers that
//! wait for what the app would show.

use client::{AppEvent, Client, Config};
use protocol::messages::{MessageEvent, ReceiptEvent, ReceiptStatus};
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

use super::Server;

pub const WAIT: Duration = Duration::from_secs(20);

/// An app: the SDK client and the events it has shown.
pub struct App {
    pub client: Client,
    events: UnboundedReceiver<AppEvent>,
    /// Every event seen so far, in order.
    pub seen: Vec<AppEvent>,
}

impl App {
    /// Connects `user.device` with state in `dir`.
    pub async fn connect(
        server: &Server,
        user: &str,
        token: &str,
        device: &str,
        dir: &Path,
    ) -> App {
        App::connect_to(server.mqtt, user, token, device, dir).await
    }

    /// Connects `user.device` to the MQTT broker at `broker` (a bluetick,
    /// or a stock broker playing a server), with state in `dir`.
    pub async fn connect_to(
        broker: std::net::SocketAddr,
        user: &str,
        token: &str,
        device: &str,
        dir: &Path,
    ) -> App {
        let state = dir.join(format!("{user}.{device}.db"));
        let mut config = Config::new(
            broker.ip().to_string(),
            broker.port(),
            user,
            token,
            device,
            state,
        );
        config.resend_after = Duration::from_secs(2);
        let (client, events) = Client::connect(config).await.expect("SDK connects");
        App {
            client,
            events,
            seen: Vec::new(),
        }
    }

    /// Waits for the next event matching `wanted`, keeping everything seen.
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        mut wanted: impl FnMut(&AppEvent) -> Option<T>,
    ) -> T {
        if let Some(found) = self.seen.iter().find_map(&mut wanted) {
            return found;
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}; saw {:#?}", self.seen))
                .expect("the SDK stopped");
            let found = wanted(&event);
            self.seen.push(event);
            if let Some(found) = found {
                return found;
            }
        }
    }

    /// Collects every event that arrives within `quiet` of the last one.
    pub async fn settle(&mut self, quiet: Duration) {
        while let Ok(Some(event)) = tokio::time::timeout(quiet, self.events.recv()).await {
            self.seen.push(event);
        }
    }

    pub async fn message_from(&mut self, from: &str, body: &str) -> MessageEvent {
        self.wait_for(&format!("message {body:?} from {from}"), |e| match e {
            AppEvent::Message(m) if m.from == from && m.body == body => Some(m.clone()),
            _ => None,
        })
        .await
    }

    /// Waits for ✓ of `client_id`; returns the server id.
    pub async fn sent(&mut self, client_id: &str) -> i64 {
        self.wait_for(&format!("✓ for {client_id}"), |e| match e {
            AppEvent::Sent { ack, .. } if ack.client_id == client_id => Some(ack.id),
            _ => None,
        })
        .await
    }

    /// Waits for a receipt from `peer` with at least `status` covering
    /// `id` (a read receipt also means delivered).
    pub async fn receipt(&mut self, peer: &str, status: ReceiptStatus, id: i64) -> ReceiptEvent {
        self.wait_for(
            &format!("{status:?} receipt from {peer} for {id}"),
            |e| match e {
                AppEvent::Receipt(r) if r.peer.as_deref() == Some(peer) && r.status >= status && r.up_to >= id => {
                    Some(r.clone())
                }
                _ => None,
            },
        )
        .await
    }

    /// Messages shown so far, in order.
    pub fn messages(&self) -> Vec<&MessageEvent> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                AppEvent::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// Receipts shown so far.
    pub fn receipts(&self) -> Vec<&ReceiptEvent> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                AppEvent::Receipt(r) => Some(r),
                _ => None,
            })
            .collect()
    }
}
