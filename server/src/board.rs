//! Where a room's board updates are made durable: the node's own redb log ([`Store`], one
//! node alone) or the cluster's room log on JetStream ([`RoomLog`], `--cluster`). The room
//! actor talks to a [`Board`] and does not know which. Classroom records go to the node's
//! store on one node alone; in cluster mode the classroom's events go to the same room log
//! (see [`crate::cluster::class`]).

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::cluster::RoomLog;
use crate::cluster::log::Remote;
use crate::store::{RoomLog as Stored, Store, StoreError, UpdateRecord};

/// A room's durable board log.
#[derive(Debug, Clone)]
pub enum Board {
    /// This node's redb store: its log and snapshots are the room.
    Local(Store),
    /// The cluster's stream: the room is its subject, shared by every node holding the room.
    Cluster(Arc<RoomLog>),
}

/// A room's board as loaded: what is stored here, and (cluster mode) the room's subject,
/// which replays the room's history and then brings the other nodes' updates.
pub struct Loaded {
    /// The stored snapshot and updates (empty in cluster mode: they come by `remote`).
    pub stored: Stored,
    /// Cluster mode: the room's history, then what the others publish.
    pub remote: Option<mpsc::Receiver<Remote>>,
}

impl Board {
    /// Loads a room's board.
    pub async fn load(&self, room: &str) -> Result<Loaded, StoreError> {
        match self {
            Self::Local(store) => {
                let (store, room) = (store.clone(), room.to_owned());
                let stored = tokio::task::spawn_blocking(move || store.load(&room))
                    .await
                    .map_err(|e| StoreError::Database(format!("loading task: {e}")))??;
                Ok(Loaded { stored, remote: None })
            }
            Self::Cluster(log) => {
                Ok(Loaded { stored: Stored::default(), remote: Some(log.follow(room).await?) })
            }
        }
    }

    /// Appends an update; resolves with its sequence number once it is durable.
    pub async fn append(&self, room: &str, record: UpdateRecord) -> Result<u64, StoreError> {
        match self {
            Self::Local(store) => store.append(room, record).await,
            Self::Cluster(log) => log.append(room, &record).await,
        }
    }

    /// Resolves once everything appended before it is durable. The cluster's appends are
    /// awaited in order by the room, so there is nothing left to wait for.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match self {
            Self::Local(store) => store.flush().await,
            Self::Cluster(_) => Ok(()),
        }
    }

    /// Stores a snapshot covering the log up to `upto_seq` (compaction). The cluster's
    /// snapshots are a later step: its rooms load by replaying their subject.
    pub async fn snapshot(&self, room: &str, upto_seq: u64, data: Vec<u8>) -> Result<(), StoreError> {
        match self {
            Self::Local(store) => store.snapshot(room, upto_seq, data).await,
            Self::Cluster(_) => Ok(()),
        }
    }

    /// Whether a room compacts into snapshots here.
    pub fn snapshots(&self) -> bool {
        matches!(self, Self::Local(_))
    }
}
