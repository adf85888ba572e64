//! Where a room's board updates are made durable: the node's own redb log ([`Store`], one
//! node alone) or the cluster's room log on JetStream ([`RoomLog`], `--cluster`). The room
//! actor talks to a [`Board`] and does not know which. Classroom records go to the node's
//! store on one node alone; in cluster mode the classroom's events go to the same room log
//! (see [`crate::cluster::class`]), and a room loads from its snapshot in the object store
//! (see [`crate::cluster::snapshot`]), which the room actor writes.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::cluster::RoomLog;
use crate::cluster::log::Remote;
use crate::cluster::snapshot::{self, Snapshot, Start};
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
    /// Cluster mode: the room's history (after `replica`, if any), then what the others
    /// publish.
    pub remote: Option<mpsc::Receiver<Remote>>,
    /// Cluster mode: the snapshot the room starts from.
    pub replica: Option<Snapshot>,
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
                Ok(Loaded { stored, remote: None, replica: None })
            }
            Self::Cluster(log) => {
                let replica = match snapshot::start(log.snapshot(room).await?) {
                    Start::Snapshot(s) => Some(*s),
                    Start::Log => None,
                    Start::Lost(reason) => {
                        return Err(StoreError::Corrupt { room: room.to_owned(), seq: 0, reason });
                    }
                };
                let from = replica.as_ref().map_or(1, |s| s.upto_seq + 1);
                Ok(Loaded { stored: Stored::default(), remote: Some(log.follow(room, from).await?), replica })
            }
        }
    }

    /// Appends an update by participant `author`; resolves with its sequence number once it
    /// is durable.
    pub async fn append(&self, room: &str, record: UpdateRecord, author: u16) -> Result<u64, StoreError> {
        match self {
            Self::Local(store) => store.append(room, record).await,
            Self::Cluster(log) => log.append(room, &record, author).await,
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

    /// Stores a snapshot covering the log up to `upto_seq` (compaction). A cluster room's
    /// snapshot holds its classroom too: the room actor writes it ([`RoomLog::store_snapshot`]).
    pub async fn snapshot(&self, room: &str, upto_seq: u64, data: Vec<u8>) -> Result<(), StoreError> {
        match self {
            Self::Local(store) => store.snapshot(room, upto_seq, data).await,
            Self::Cluster(_) => Ok(()),
        }
    }

    /// Whether a room compacts into document snapshots here (the cluster's hold more).
    pub fn snapshots(&self) -> bool {
        matches!(self, Self::Local(_))
    }
}
