//! Which users have a device on this node (by client id), and the NATS
//! subscription each of them brings.
//!
//! A node follows `bt.u.{user}.*` only while at least one device of that
//! user is connected to it, so an event crosses the bus only to the nodes
//! that can deliver it. The devices follow the broker's connection events;
//! the subscription opens with the first and closes with the last
//! (dropping the subscriber unsubscribes).
//!
//! # Invariant
//! A user is in the map exactly while it has a connection here, and then
//! exactly one subscription task runs for it.

use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::subjects::{self, Leaf};

/// Something from another node for one of this node's users.
#[derive(Debug)]
pub(crate) struct Arrival {
    pub user: String,
    pub leaf: Leaf,
    /// Exactly what the other node published: an inbox event, a live
    /// event, or the client id of a takeover.
    pub payload: Bytes,
}

/// The users with a device here.
pub(crate) struct Interest {
    nats: async_nats::Client,
    /// This node's name, to skip the events it committed itself.
    node: String,
    /// Where arrivals go to be republished locally.
    arrivals: mpsc::Sender<Arrival>,
    /// User → its devices here and its subscription.
    users: Mutex<HashMap<String, Watch>>,
}

/// The connections with one client id (briefly two while rumqttd hands the
/// client id from an old connection to a new one).
struct Device {
    connections: usize,
    /// SHA-256 of the token the newest of them logged in with.
    token_hash: String,
}

/// One user's presence on this node.
struct Watch {
    /// Connections of the user here, per client id.
    clients: HashMap<String, Device>,
    /// Reads the user's subject; aborting it unsubscribes.
    task: JoinHandle<()>,
}

impl Interest {
    pub fn new(
        nats: async_nats::Client,
        node: String,
        arrivals: mpsc::Sender<Arrival>,
    ) -> Interest {
        Interest {
            nats,
            node,
            arrivals,
            users: Mutex::new(HashMap::new()),
        }
    }

    pub fn connected(&self, user: &str, client_id: &str, token_hash: &str) {
        let mut users = self.lock();
        if let Some(watch) = users.get_mut(user) {
            let device = watch
                .clients
                .entry(client_id.to_owned())
                .or_insert_with(|| Device {
                    connections: 0,
                    token_hash: String::new(),
                });
            device.connections += 1;
            device.token_hash = token_hash.to_owned();
            return;
        }
        let task = tokio::spawn(follow(
            self.nats.clone(),
            self.node.clone(),
            user.to_owned(),
            self.arrivals.clone(),
        ));
        let device = Device {
            connections: 1,
            token_hash: token_hash.to_owned(),
        };
        let clients = HashMap::from([(client_id.to_owned(), device)]);
        users.insert(user.to_owned(), Watch { clients, task });
        metrics::gauge!("bluetick_cluster_subscribed_users").set(users.len() as f64);
    }

    pub fn disconnected(&self, user: &str, client_id: &str) {
        let mut users = self.lock();
        let Some(watch) = users.get_mut(user) else {
            // Its connect was never counted (the broker's event queue was
            // full and dropped it); there is nothing to undo.
            return;
        };
        if let Some(device) = watch.clients.get_mut(client_id) {
            device.connections -= 1;
            if device.connections == 0 {
                watch.clients.remove(client_id);
            }
        }
        if watch.clients.is_empty() {
            if let Some(watch) = users.remove(user) {
                watch.task.abort();
            }
        }
        metrics::gauge!("bluetick_cluster_subscribed_users").set(users.len() as f64);
    }

    /// Is a device of `user` with this client id connected here?
    pub fn holds(&self, user: &str, client_id: &str) -> bool {
        self.lock()
            .get(user)
            .is_some_and(|watch| watch.clients.contains_key(client_id))
    }

    /// The client ids of `user`'s devices here that logged in with the
    /// token of this SHA-256.
    pub fn using_token(&self, user: &str, token_hash: &str) -> Vec<String> {
        self.lock().get(user).map_or_else(Vec::new, |watch| {
            watch
                .clients
                .iter()
                .filter(|(_, device)| device.token_hash == token_hash)
                .map(|(client_id, _)| client_id.clone())
                .collect()
        })
    }

    /// Drops every subscription (shutdown).
    pub fn clear(&self) {
        for (_, watch) in self.lock().drain() {
            watch.task.abort();
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Watch>> {
        self.users
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Reads `user`'s subjects until aborted, handing on what other nodes
/// sent.
async fn follow(
    nats: async_nats::Client,
    node: String,
    user: String,
    arrivals: mpsc::Sender<Arrival>,
) {
    let mut subscriber = match nats.subscribe(subjects::user_filter(&user)).await {
        Ok(subscriber) => subscriber,
        Err(e) => {
            // Only when the client is closed for good; the user's devices
            // then catch up by sync.
            tracing::warn!(error = %e, %user, "cluster: cannot subscribe");
            return;
        }
    };
    while let Some(message) = subscriber.next().await {
        let origin = message
            .headers
            .as_ref()
            .and_then(|h| h.get(subjects::ORIGIN_HEADER))
            .map(|v| v.as_str());
        if origin == Some(node.as_str()) {
            // This node sent it and has delivered it locally already.
            metrics::counter!("bluetick_cluster_events_total", "way" => "own_skipped").increment(1);
            continue;
        }
        let Some((_, leaf)) = subjects::parse(&message.subject) else {
            continue;
        };
        let arrival = Arrival {
            user: user.clone(),
            leaf,
            payload: message.payload,
        };
        if arrivals.try_send(arrival).is_err() {
            metrics::counter!("bluetick_cluster_events_dropped_total", "where" => "inbound")
                .increment(1);
        }
    }
}
