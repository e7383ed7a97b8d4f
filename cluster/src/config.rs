//! The `[cluster]` section of bluetick's configuration: whether and how
//! this node joins others through NATS (bluetick's `src/config.rs`
//! composes it with the other sections; docs/scaling.md).

use serde::{Deserialize, Serialize};

/// The `[cluster]` section: nodes routing live events through NATS
/// (docs/scaling.md). Off by default: one node needs no NATS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// NATS servers, comma-separated (`nats://10.0.0.1:4222,nats://10.0.0.2:4222`).
    /// Empty: cluster mode is off.
    pub nats_urls: String,
    /// This node's name on the bus; empty means the top-level `node`.
    /// Unique among nodes.
    pub node: String,
    /// Committed batches waiting to be published to NATS, and events from
    /// other nodes waiting to be republished here, at most; past that they
    /// are dropped (counted) and devices recover them by sync.
    pub queue: usize,
    /// Copies of the presence key-value bucket JetStream keeps, when the
    /// first node creates it (at most the number of NATS servers).
    pub presence_replicas: usize,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            nats_urls: String::new(),
            node: String::new(),
            queue: 10_000,
            presence_replicas: 3,
        }
    }
}

impl ClusterSettings {
    /// The NATS URLs, or none when cluster mode is off.
    pub fn urls(&self) -> Vec<String> {
        self.nats_urls
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect()
    }
}
