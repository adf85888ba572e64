//! What every session shares: the validated configuration, the token verifier, the registry
//! of loaded rooms ([`Rooms`]), resumable sessions, admission control and the shutdown signal.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use easel_proto::ErrorCode;
use easel_sfu_bridge::Sfu;
use tokio_util::sync::CancellationToken;

use crate::admission::Admission;
use crate::auth::Verifier;
use crate::board::Board;
use crate::class::{Attendance, RecordError};
use crate::cluster::Relay;
use crate::config::ServerConfig;
use crate::resume::Resumes;
use crate::room::{self, Command, Handle, JoinRequest, Joined};
use crate::store::{Store, StoreError};

/// Why a room's attendance could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AttendanceError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record does not decode.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The blocking read failed (panicked or was cancelled).
    #[error("reading task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Cluster mode: the room could not be loaded from its snapshot and log, or did not answer.
    #[error("the room could not be loaded: {0}")]
    Load(ErrorCode),
}

/// State every session shares.
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) verifier: Verifier,
    /// The server's storage (rooms hold it too; this is for server-wide records).
    pub(crate) store: Store,
    pub(crate) rooms: Rooms,
    /// Resumable sessions by resume token.
    pub(crate) resumes: Resumes,
    /// Numbers connections, so rooms can tell a resumed member's old connection from its new.
    pub(crate) next_conn: AtomicU64,
    /// Who may connect (session caps, per-IP handshake rate).
    pub(crate) admission: Admission,
    pub(crate) shutdown: CancellationToken,
}

/// The loaded rooms, by id; loads a room on first join and forgets it when its actor stops.
pub(crate) struct Rooms {
    loaded: Arc<Mutex<HashMap<String, Handle>>>,
    /// Serialises loading so two first joins do not load one room twice.
    loading: tokio::sync::Mutex<()>,
    /// Classroom records.
    store: Store,
    /// Board updates.
    board: Board,
    /// Cluster mode: members, cursors and presence across nodes.
    relay: Option<Relay>,
    config: room::Config,
    /// Where members' video goes, if an SFU is configured.
    sfu: Option<Arc<dyn Sfu>>,
}

impl Rooms {
    /// A room's attendance: from its actor when loaded (the live state, with writes still in
    /// flight), else from the store.
    pub(crate) async fn attendance(&self, id: &str) -> Result<Vec<Attendance>, AttendanceError> {
        // A cluster's records are in the room log, not this node's file: a room no member
        // holds here is loaded (from its snapshot and the log after it) to answer, and
        // unloads again when idle.
        let handle = match self.loaded(id) {
            None if !self.board.snapshots() => {
                Some(Box::pin(self.handle(id)).await.map_err(AttendanceError::Load)?)
            }
            loaded => loaded,
        };
        if let Some(handle) = handle {
            let (reply, answer) = tokio::sync::oneshot::channel();
            if handle.send(Command::Attendance(reply)).await.is_ok()
                && let Ok(attendance) = answer.await
            {
                return Ok(attendance);
            }
            if !self.board.snapshots() {
                return Err(AttendanceError::Load(ErrorCode::Internal));
            }
        }
        let (store, id) = (self.store.clone(), id.to_owned());
        let records = tokio::task::spawn_blocking(move || store.load_side(&id)).await??;
        Ok(crate::class::attendance_of(records)?)
    }

    /// A loaded room's own numbers; `None` when it is not loaded (or stopped meanwhile).
    pub(crate) async fn stats(&self, id: &str) -> Option<room::Stats> {
        let handle = self.loaded(id)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        handle.send(Command::Stats(reply)).await.ok()?;
        answer.await.ok()
    }

    pub(crate) fn new(
        store: Store,
        board: Board,
        relay: Option<Relay>,
        config: room::Config,
        sfu: Option<Arc<dyn Sfu>>,
    ) -> Self {
        Self {
            loaded: Arc::default(),
            loading: tokio::sync::Mutex::new(()),
            store,
            board,
            relay,
            config,
            sfu,
        }
    }

    /// Whether SFU signalling goes anywhere.
    pub(crate) fn has_sfu(&self) -> bool {
        self.sfu.is_some()
    }

    fn loaded(&self, id: &str) -> Option<Handle> {
        let map = self.loaded.lock().ok()?;
        map.get(id).filter(|h| !h.is_closed()).cloned()
    }

    async fn handle(&self, id: &str) -> Result<Handle, ErrorCode> {
        if let Some(h) = self.loaded(id) {
            return Ok(h);
        }
        let _guard = self.loading.lock().await;
        if let Some(h) = self.loaded(id) {
            return Ok(h);
        }
        let loaded = self.loaded.clone();
        let on_exit = move |gone: &Handle| {
            if let Ok(mut map) = loaded.lock()
                && map.get(gone.id()).is_some_and(|h| h.same(gone))
            {
                map.remove(gone.id());
            }
        };
        let (store, board) = (self.store.clone(), self.board.clone());
        let relay = self.relay.clone();
        let handle =
            room::spawn(Arc::from(id), self.config.clone(), store, board, relay, self.sfu.clone(), on_exit)
                .await
                .map_err(|e| {
                    tracing::error!(room = id, "cannot load room: {e}");
                    ErrorCode::StorageUnavailable
                })?;
        if let Ok(mut map) = self.loaded.lock() {
            map.insert(id.to_owned(), handle.clone());
        }
        Ok(handle)
    }

    /// Joins `id`, loading it if needed. `request` is called again if the room unloads
    /// between lookup and join.
    pub(crate) async fn join(
        &self,
        id: &str,
        request: impl Fn() -> JoinRequest,
    ) -> Result<(Handle, Joined), ErrorCode> {
        for _ in 0..3 {
            let handle = self.handle(id).await?;
            let (reply, rx) = tokio::sync::oneshot::channel();
            if handle.send(Command::Join(request(), reply)).await.is_err() {
                continue;
            }
            match rx.await {
                Ok(joined) => return joined.map(|j| (handle, j)),
                Err(_) => continue,
            }
        }
        Err(ErrorCode::Internal)
    }

    /// Every loaded room.
    pub(crate) fn all(&self) -> Vec<Handle> {
        self.loaded.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }
}

/// Milliseconds since the Unix epoch, by this host's clock (0 if it reads before 1970).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
