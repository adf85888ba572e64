//! Cluster mode (`easel serve --cluster nats://…`): nodes meet through NATS. Each node
//! announces itself in the JetStream key-value bucket [`BUCKET`] (key: its id; value: a
//! [`NodeInfo`] as JSON) every heartbeat, and watches the bucket to keep its view of the others
//! ([`members::Membership`], sans IO). A node silent for the time-to-live is counted out; one
//! that shuts down withdraws its entry so the others see it go at once; one that comes back
//! announces itself again and is counted in.
//!
//! [`Cluster`] is what the rest of the server reads: this node's id, the nodes it sees, and
//! whether NATS is reachable (`/healthz`, the `easel_cluster_*` metrics). The driver
//! ([`driver`]) does the IO.
//!
//! Rooms: every node with members in a room holds a replica of it; board updates and
//! classroom events go through the JetStream stream of [`log`], and every replica applies
//! them from there; rooms load from their [`snapshot`]s in the object store. Members,
//! cursors and presence cross nodes on core NATS ([`relay`]).

pub mod batch;
pub mod class;
mod driver;
pub mod log;
pub mod members;
pub mod relay;
pub mod resume;
pub mod snapshot;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

pub use driver::ConnectError;
pub(crate) use driver::{connect, run};
pub use log::RoomLog;
pub use relay::Relay;

/// The JetStream key-value bucket nodes announce themselves in.
pub const BUCKET: &str = "easel_nodes";

/// The `kind` label's values of `easel_cluster_nats_errors_total`: `connect` (NATS
/// unreachable at start), `disconnected` (the connection dropped), `heartbeat` (an
/// announcement was not stored), `watch` (the bucket's watch failed), `malformed` (an entry
/// that is not a node announcement, or a room log message that is not one), `resume` (a
/// resume entry was not written), `snapshot` (a room's snapshot unreadable, or not stored).
pub const ERROR_KINDS: [&str; 7] =
    ["connect", "disconnected", "heartbeat", "watch", "malformed", "resume", "snapshot"];

/// What a node announces about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its id, also its key in the bucket.
    pub id: String,
    /// Its raw QUIC address.
    pub quic: String,
    /// Its WebTransport address.
    pub wt: String,
    /// Its HTTP address (WebSocket, `/healthz`).
    pub http: String,
    /// When it started, Unix milliseconds: a restart under the same id is a new start.
    pub started_at_ms: u64,
    /// Its `easel` version.
    pub version: String,
}

/// Whether `c` may be in a node id: a bucket key allows more, but ids also go into NATS
/// subjects and metrics, so only the characters safe everywhere.
pub fn node_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// The default node id: the host name and the QUIC port, so restarting the same configuration
/// on the same host comes back as the same node; characters a key cannot hold become `_`.
pub fn default_node_id(quic_port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "easel".to_owned());
    let host: String = host.chars().take(48).map(|c| if node_id_char(c) { c } else { '_' }).collect();
    format!("{host}-{quic_port}")
}

/// This node's view of the cluster, shared by the driver (writes) and the HTTP port (reads).
#[derive(Debug)]
pub struct Cluster {
    me: String,
    connected: AtomicBool,
    /// Whether the last announcement was stored (false until the first one is).
    announced: AtomicBool,
    nodes: Mutex<Vec<NodeInfo>>,
}

impl Cluster {
    pub(crate) fn new(me: NodeInfo) -> Self {
        Self {
            me: me.id.clone(),
            connected: AtomicBool::new(true),
            announced: AtomicBool::new(false),
            nodes: Mutex::new(vec![me]),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.me
    }

    /// Whether the connection to NATS is up.
    pub fn nats_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Every node this one sees, itself included, by id.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.nodes.lock().map(|n| n.clone()).unwrap_or_default()
    }

    /// Healthy when NATS is reachable and this node's last announcement was stored;
    /// otherwise the others may be counting it out and it cannot see changes.
    pub fn healthy(&self) -> bool {
        self.nats_connected() && self.announced.load(Ordering::Relaxed)
    }

    /// What `/healthz` answers in cluster mode.
    pub fn health_json(&self) -> serde_json::Value {
        let nodes: Vec<serde_json::Value> = self
            .nodes()
            .into_iter()
            .map(|n| {
                let me = n.id == self.me;
                let mut v = serde_json::to_value(n).unwrap_or_default();
                v["self"] = me.into();
                v
            })
            .collect();
        serde_json::json!({
            "status": if self.healthy() { "ok" } else { "degraded" },
            "cluster": {
                "node_id": self.me,
                "nats_connected": self.nats_connected(),
                "nodes": nodes,
            },
        })
    }

    fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
        metrics::gauge!("easel_cluster_nats_connected").set(if up { 1.0 } else { 0.0 });
    }

    fn set_announced(&self, ok: bool) {
        self.announced.store(ok, Ordering::Relaxed);
    }

    fn set_nodes(&self, nodes: Vec<NodeInfo>) {
        metrics::gauge!("easel_cluster_nodes").set(nodes.len() as f64);
        if let Ok(mut held) = self.nodes.lock() {
            *held = nodes;
        }
    }
}

/// Counts a NATS failure (`kind`: one of [`ERROR_KINDS`]).
pub(crate) fn error(kind: &'static str) {
    metrics::counter!("easel_cluster_nats_errors_total", "kind" => kind).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_node_id_is_stable_and_a_valid_key() {
        let id = default_node_id(4434);
        assert_eq!(id, default_node_id(4434), "same config, same id");
        assert!(id.ends_with("-4434"));
        assert_ne!(id, default_node_id(4435));
        assert!(id.chars().all(node_id_char), "{id}");
    }

    #[test]
    fn health_says_degraded_until_announced_and_while_nats_is_down() {
        let me = NodeInfo {
            id: "a".into(),
            quic: String::new(),
            wt: String::new(),
            http: String::new(),
            started_at_ms: 1,
            version: "v".into(),
        };
        let cluster = Cluster::new(me);
        assert_eq!(cluster.health_json()["status"], "degraded");
        cluster.set_announced(true);
        assert_eq!(cluster.health_json()["status"], "ok");
        assert_eq!(cluster.health_json()["cluster"]["nodes"][0]["self"], true);
        cluster.set_connected(false);
        let health = cluster.health_json();
        assert_eq!(health["status"], "degraded");
        assert_eq!(health["cluster"]["nats_connected"], false);
    }
}
