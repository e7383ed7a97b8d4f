//! Retained presence across nodes: `presence/{user}` holds the same value
//! on every node's broker.
//!
//! Each node's bridge publishes a user's retained presence into its own
//! broker when it changes (it reads the shared `sessions` table, so any
//! node's answer is the cluster's). This module copies it through a
//! replicated JetStream key-value bucket, [`BUCKET`], one key per user:
//!
//! - *out*: the relay's service client subscribes to `presence/+` on its
//!   own broker and puts each live change in the bucket;
//! - *in*: a watcher of the whole bucket (last value per key first, then
//!   every change) republishes each value retained into its own broker.
//!   So a node that starts, or returns after losing NATS, is seeded with
//!   everyone's presence, and the bucket keeps it over restarts.
//!
//! The guard still applies privacy and reciprocity on every delivery to a
//! viewer: what is copied here is the server's full presence, seen only by
//! service clients.
//!
//! # Invariant
//! `local` holds the last presence of each user that this node's broker
//! retains (whoever put it there). A change goes out only if it differs
//! from a value that came in, and a value comes in only if it differs from
//! `local`: so nothing echoes between nodes, and every broker converges on
//! the bucket's last value for each user.

use bytes::Bytes;
use futures_util::StreamExt;
use protocol::topics;
use rumqttc::{AsyncClient, Publish, QoS};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;

/// The JetStream key-value bucket holding each user's presence.
pub const BUCKET: &str = "bluetick_presence";

/// Copies between the bucket and the local broker.
pub(crate) struct PresenceMirror {
    jetstream: async_nats::jetstream::Context,
    local: AsyncClient,
    /// Replicas of the bucket when this node creates it.
    replicas: usize,
    /// User → the presence this node's broker retains (see the invariant).
    retained: Mutex<HashMap<String, Bytes>>,
}

impl PresenceMirror {
    pub fn new(nats: async_nats::Client, local: AsyncClient, replicas: usize) -> PresenceMirror {
        PresenceMirror {
            jetstream: async_nats::jetstream::new(nats),
            local,
            replicas: replicas.max(1),
            retained: Mutex::new(HashMap::new()),
        }
    }

    /// The bucket, created if no node has yet.
    ///
    /// It is created as the stream a key-value bucket is (`KV_{bucket}`,
    /// one message per subject, rollups allowed, direct gets) rather than
    /// with `create_key_value`, which first asks for the account's limits
    /// in a shape NATS 2.9 (Debian 12's) does not answer in.
    async fn bucket(&self) -> Result<async_nats::jetstream::kv::Store, String> {
        if let Ok(bucket) = self.jetstream.get_key_value(BUCKET).await {
            return Ok(bucket);
        }
        let config = |replicas| async_nats::jetstream::stream::Config {
            name: format!("KV_{BUCKET}"),
            description: Some("bluetick: retained presence/{user}, one key per user".to_owned()),
            subjects: vec![format!("$KV.{BUCKET}.>")],
            max_messages_per_subject: 1,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: async_nats::jetstream::stream::DiscardPolicy::New,
            num_replicas: replicas,
            ..Default::default()
        };
        let created = match self.jetstream.create_stream(config(self.replicas)).await {
            Ok(_) => Ok(()),
            // A NATS without enough JetStream servers for the replicas
            // (a single development server): one copy beats none.
            Err(e) if self.replicas > 1 => {
                tracing::warn!(error = %e, "cluster: presence bucket with {} replicas refused; creating it with 1", self.replicas);
                self.jetstream
                    .create_stream(config(1))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        // Another node may have created it meanwhile: opening it decides.
        match self.jetstream.get_key_value(BUCKET).await {
            Ok(bucket) => Ok(bucket),
            Err(e) => Err(created.err().unwrap_or_else(|| e.to_string())),
        }
    }

    /// Out: live presence changes of the local broker into the bucket.
    pub async fn export(&self, mut changes: mpsc::Receiver<Publish>) {
        let mut bucket = None;
        while let Some(publish) = changes.recv().await {
            let Some(user) = topics::presence_target(&publish.topic) else {
                continue;
            };
            let value = publish.payload;
            {
                let mut retained = self.lock();
                if retained.get(user) == Some(&value) {
                    // What the watcher just put here: not a change of ours.
                    continue;
                }
                retained.insert(user.to_owned(), value.clone());
            }
            // A bucket just created may have no leader yet (its replicas
            // are still electing one), and NATS may be between servers:
            // retry for a while rather than lose the change.
            let mut stored = false;
            let give_up = tokio::time::Instant::now() + PUT_PATIENCE;
            while tokio::time::Instant::now() < give_up {
                if bucket.is_none() {
                    bucket = self.bucket().await.ok();
                }
                if let Some(store) = &bucket {
                    match tokio::time::timeout(PUT_TIMEOUT, store.put(user, value.clone())).await {
                        Ok(Ok(_)) => {
                            stored = true;
                            break;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, user, "cluster: presence put failed; retrying")
                        }
                        Err(_) => {
                            tracing::debug!(user, "cluster: presence put timed out; retrying")
                        }
                    }
                }
                tokio::time::sleep(PUT_RETRY).await;
            }
            if stored {
                metrics::counter!("bluetick_cluster_presence_total", "way" => "out").increment(1);
            } else {
                metrics::counter!("bluetick_cluster_events_dropped_total", "where" => "presence_out")
                    .increment(1);
                tracing::warn!(user, "cluster: presence change not stored in the bucket; other nodes keep the previous one");
            }
        }
    }

    /// In: every value of the bucket, then every change, retained into the
    /// local broker. Watches again after any failure (NATS away).
    pub async fn import(&self) {
        loop {
            match self.watch_once().await {
                Ok(()) => tracing::info!("cluster: presence watch ended; watching again"),
                Err(e) => tracing::debug!(error = %e, "cluster: presence watch failed; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn watch_once(&self) -> Result<(), String> {
        let bucket = self.bucket().await?;
        let mut entries = bucket
            .watch_with_history(">")
            .await
            .map_err(|e| e.to_string())?;
        while let Some(entry) = entries.next().await {
            let entry = entry.map_err(|e| e.to_string())?;
            if entry.operation != async_nats::jetstream::kv::Operation::Put {
                continue;
            }
            if topics::presence_target(&topics::presence_topic(&entry.key)).is_none() {
                continue;
            }
            {
                let mut retained = self.lock();
                if retained.get(&entry.key) == Some(&entry.value) {
                    continue;
                }
                retained.insert(entry.key.clone(), entry.value.clone());
            }
            let topic = topics::presence_topic(&entry.key);
            match self
                .local
                .publish(topic, QoS::AtLeastOnce, true, entry.value.to_vec())
                .await
            {
                Ok(()) => {
                    metrics::counter!("bluetick_cluster_presence_total", "way" => "in").increment(1)
                }
                Err(e) => tracing::warn!(error = %e, "cluster: cannot retain presence locally"),
            }
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Bytes>> {
        self.retained
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Longest a presence put waits for JetStream's answer.
const PUT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one presence change is retried before it is given up (counted
/// and logged; the next change of that user goes out as usual).
const PUT_PATIENCE: Duration = Duration::from_secs(10);
/// Pause between two tries of a presence put.
const PUT_RETRY: Duration = Duration::from_millis(250);
