//! Durable storage: one `redb` database under the data dir holding, per room, an append-only log
//! of Loro updates and the latest snapshot (compaction deletes the log entries it covers), and
//! the classroom records beside the board (chat, polls, moderation flags, attendance) in a side
//! table keyed by `(room, kind, key)`.
//!
//! Writes go through one committer thread that batches whatever is queued into a single write
//! transaction with an fsync (group commit). [`Store::append`] resolves only after the commit
//! that covers it, so an ack sent after it is never lost, even to `kill -9`.
//!
//! A failed write (a full disk, a failing fsync) fails only the requests of its batch. After an
//! I/O error redb refuses every later write until the database is opened again, so the
//! committer reopens it before the next batch: once the disk has room again, writes succeed
//! without a restart. Whether storage is failing is logged once per change, not per request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Instant;

use redb::{Database, Durability, ReadableTable as _, TableDefinition};
use tokio::sync::oneshot;

/// `(room, seq)` → an encoded [`UpdateRecord`].
const UPDATES: TableDefinition<'static, (&'static str, u64), &'static [u8]> = TableDefinition::new("updates");
/// `room` → `(upto_seq, Loro snapshot)`.
const SNAPSHOTS: TableDefinition<'static, &'static str, (u64, &'static [u8])> =
    TableDefinition::new("snapshots");
/// `(room, kind, key)` → a classroom record (JSON, see [`crate::class`]).
const SIDE: TableDefinition<'static, (&'static str, &'static str, &'static str), &'static [u8]> =
    TableDefinition::new("side");
/// `room` → last assigned update sequence number.
const ROOMS: TableDefinition<'static, &'static str, u64> = TableDefinition::new("rooms");

/// Most requests folded into one transaction (bounds commit latency under a flood).
const MAX_BATCH: usize = 4096;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("database: {0}")]
    Database(String),
    /// Stored bytes did not decode; the room cannot be loaded as it was.
    #[error("room {room}: stored record {seq} is corrupt: {reason}")]
    Corrupt {
        /// Room id.
        room: String,
        /// The record's sequence number (0 for the snapshot).
        seq: u64,
        /// What was wrong.
        reason: String,
    },
    /// The data file exists but is not a readable Easel database: another program's file, or
    /// damaged beyond what the database repairs by itself.
    #[error(
        "{path} is not a readable Easel data file ({reason}); restore it from a backup, or move it aside to start with no rooms"
    )]
    Unreadable {
        /// The data file.
        path: PathBuf,
        /// What the database said.
        reason: String,
    },
    /// The store has been closed.
    #[error("store closed")]
    Closed,
    /// Cluster mode: the room log (JetStream) did not take the write, or could not be read.
    #[error("cluster room log: {0}")]
    Log(String),
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

/// One stored CRDT update and who sent it.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct UpdateRecord {
    /// The author's client installation id.
    pub client_id: String,
    /// The author's op id.
    pub op_id: u64,
    /// The author's user id.
    pub user: String,
    /// Loro update bytes.
    pub data: Vec<u8>,
}

/// A stored snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The highest update sequence number the snapshot covers.
    pub upto_seq: u64,
    /// Loro snapshot bytes.
    pub data: Vec<u8>,
}

/// Everything stored for one room.
#[derive(Debug, Default)]
pub struct RoomLog {
    /// The latest snapshot.
    pub snapshot: Option<Snapshot>,
    /// Updates after the snapshot, in sequence order.
    pub updates: Vec<(u64, UpdateRecord)>,
}

enum Request {
    Append { room: String, record: UpdateRecord, reply: oneshot::Sender<Result<u64, StoreError>> },
    Snapshot { room: String, upto_seq: u64, data: Vec<u8>, reply: oneshot::Sender<Result<(), StoreError>> },
    Flush { reply: oneshot::Sender<Result<(), StoreError>> },
    Side { room: String, writes: Vec<crate::class::Write>, reply: oneshot::Sender<Result<(), StoreError>> },
}

/// The database handle; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// Shared with the committer, which replaces the database when it reopens it.
    slot: Arc<Slot>,
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    committer: Mutex<Option<JoinHandle<()>>>,
}

/// The open database, and how to open it again.
struct Slot {
    db: std::sync::RwLock<Db>,
    path: PathBuf,
}

enum Db {
    Open(Arc<Database>),
    /// Closing it to reopen worked, opening it again did not (yet): the reason.
    Reopening(String),
    Closed,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.inner.slot.path).finish_non_exhaustive()
    }
}

impl Slot {
    fn current(&self) -> Result<Arc<Database>, StoreError> {
        match &*self.db.read().map_err(|_| StoreError::Closed)? {
            Db::Open(db) => Ok(db.clone()),
            Db::Reopening(reason) => Err(db_err(format!("storage is failing: {reason}"))),
            Db::Closed => Err(StoreError::Closed),
        }
    }

    /// Closes the database and opens it again (redb refuses writes after an I/O error until
    /// then). Gives up for now, keeping the open one, while a reader still holds it.
    fn reopen(&self) -> Result<(), StoreError> {
        let mut guard = self.db.write().map_err(|_| StoreError::Closed)?;
        match std::mem::replace(&mut *guard, Db::Closed) {
            Db::Open(db) => match Arc::try_unwrap(db) {
                Ok(db) => drop(db),
                Err(db) => {
                    *guard = Db::Open(db);
                    return Err(db_err("the database is in use by a reader; reopening it later"));
                }
            },
            Db::Reopening(_) => {}
            Db::Closed => return Err(StoreError::Closed),
        }
        match open_database(&self.path) {
            Ok(db) => {
                *guard = Db::Open(Arc::new(db));
                Ok(())
            }
            Err(e) => {
                *guard = Db::Reopening(e.to_string());
                Err(e)
            }
        }
    }
}

impl Store {
    /// Opens (or creates) `easel.redb` in `dir`, creating the directory if needed.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| db_err(format!("{}: {e}", dir.display())))?;
        let path = dir.join("easel.redb");
        let db = open_database(&path)?;
        let txn = db.begin_write().map_err(db_err)?;
        {
            // A redb file of another program may hold tables of these names with other types.
            let foreign =
                |e: redb::TableError| StoreError::Unreadable { path: path.clone(), reason: e.to_string() };
            txn.open_table(UPDATES).map_err(foreign)?;
            txn.open_table(SNAPSHOTS).map_err(foreign)?;
            txn.open_table(SIDE).map_err(foreign)?;
            txn.open_table(ROOMS).map_err(foreign)?;
        }
        txn.commit().map_err(db_err)?;
        let slot = Arc::new(Slot { db: std::sync::RwLock::new(Db::Open(Arc::new(db))), path });
        let (tx, rx) = mpsc::channel();
        let committer = {
            let slot = slot.clone();
            std::thread::Builder::new()
                .name("easel-store".into())
                .spawn(move || commit_loop(&slot, &rx))
                .map_err(db_err_io)?
        };
        Ok(Self {
            inner: Arc::new(Inner { slot, tx: Mutex::new(Some(tx)), committer: Mutex::new(Some(committer)) }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.slot.path
    }

    fn submit(&self, request: Request) -> Result<(), StoreError> {
        let tx = self.inner.tx.lock().map_err(|_| StoreError::Closed)?;
        tx.as_ref().ok_or(StoreError::Closed)?.send(request).map_err(|_| StoreError::Closed)
    }

    /// Appends an update to a room's log; resolves with its sequence number once it is durable.
    pub async fn append(&self, room: &str, record: UpdateRecord) -> Result<u64, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Request::Append { room: room.to_owned(), record, reply })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Resolves once everything submitted before it is durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Request::Flush { reply })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Stores classroom records (replacing those with the same kind and key); resolves once
    /// they are durable.
    pub async fn side(&self, room: &str, writes: Vec<crate::class::Write>) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Request::Side { room: room.to_owned(), writes, reply })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// A room's classroom records, `(kind, key, JSON)`, in key order (blocking).
    pub fn load_side(&self, room: &str) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
        let txn = self.db()?.begin_read().map_err(db_err)?;
        let table = txn.open_table(SIDE).map_err(db_err)?;
        let mut out = Vec::new();
        // Every kind and key of this room: the empty string sorts first, U+FFFF-led last.
        for entry in table.range((room, "", "")..=(room, "\u{ffff}", "")).map_err(db_err)? {
            let (k, v) = entry.map_err(db_err)?;
            let (_, kind, key) = k.value();
            out.push((kind.to_owned(), key.to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Stores a snapshot covering updates up to `upto_seq` and deletes those updates.
    pub async fn snapshot(&self, room: &str, upto_seq: u64, data: Vec<u8>) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Request::Snapshot { room: room.to_owned(), upto_seq, data, reply })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.inner.slot.current()
    }

    /// Reads a room's snapshot and the updates after it (blocking; call off the runtime).
    pub fn load(&self, room: &str) -> Result<RoomLog, StoreError> {
        let txn = self.db()?.begin_read().map_err(db_err)?;
        let snapshot = txn.open_table(SNAPSHOTS).map_err(db_err)?.get(room).map_err(db_err)?.map(|v| {
            let (upto_seq, data) = v.value();
            Snapshot { upto_seq, data: data.to_vec() }
        });
        let after = snapshot.as_ref().map_or(0, |s| s.upto_seq);
        let updates_table = txn.open_table(UPDATES).map_err(db_err)?;
        let mut updates = Vec::new();
        for entry in
            updates_table.range((room, after.saturating_add(1))..=(room, u64::MAX)).map_err(db_err)?
        {
            let (key, value) = entry.map_err(db_err)?;
            let seq = key.value().1;
            let record = decode_record(value.value()).map_err(|reason| StoreError::Corrupt {
                room: room.to_owned(),
                seq,
                reason: reason.to_string(),
            })?;
            updates.push((seq, record));
        }
        Ok(RoomLog { snapshot, updates })
    }

    /// Every room with stored state (blocking).
    pub fn rooms(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.db()?.begin_read().map_err(db_err)?;
        let table = txn.open_table(ROOMS).map_err(db_err)?;
        let mut rooms = Vec::new();
        for entry in table.iter().map_err(db_err)? {
            rooms.push(entry.map_err(db_err)?.0.value().to_owned());
        }
        Ok(rooms)
    }

    /// Stops the committer after it has committed everything queued, and releases the
    /// database file (blocking). Later calls fail with [`StoreError::Closed`].
    pub fn close(&self) {
        if let Ok(mut tx) = self.inner.tx.lock() {
            tx.take();
        }
        let handle = self.inner.committer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        if let Ok(mut db) = self.inner.slot.db.write() {
            *db = Db::Closed;
        }
    }
}

/// Opens (or creates) the data file, telling a file that is not ours from other failures.
fn open_database(path: &Path) -> Result<Database, StoreError> {
    Database::create(path).map_err(|e| match e {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(reason)) => {
            StoreError::Unreadable { path: path.to_owned(), reason }
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::InvalidData =>
        {
            StoreError::Unreadable { path: path.to_owned(), reason: io.to_string() }
        }
        other => db_err(format!("{}: {other}", path.display())),
    })
}

fn db_err_io(e: std::io::Error) -> StoreError {
    db_err(format!("starting the committer: {e}"))
}

pub(crate) fn encode_record(record: &UpdateRecord) -> Result<Vec<u8>, StoreError> {
    rkyv::to_bytes::<rkyv::rancor::Error>(record).map(|b| b.to_vec()).map_err(db_err)
}

pub(crate) fn decode_record(bytes: &[u8]) -> Result<UpdateRecord, rkyv::rancor::Error> {
    // Stored bytes may be unaligned in redb pages; copy into an aligned buffer first.
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<UpdateRecord, rkyv::rancor::Error>(&aligned)
}

/// The committer: waits for a request, takes everything else queued, commits once, replies.
fn commit_loop(slot: &Slot, rx: &mpsc::Receiver<Request>) {
    let mut last_seq: HashMap<String, u64> = HashMap::new();
    let mut health = Health::default();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let size = batch.len();
        let result = health.ready(slot).and_then(|db| write_batch(&db, &batch, &mut last_seq));
        match result {
            Ok(seqs) => {
                health.succeeded();
                metrics::histogram!("easel_store_commit_seconds").record(started.elapsed().as_secs_f64());
                metrics::histogram!("easel_store_batch_ops").record(size as f64);
                metrics::counter!("easel_store_commits_total").increment(1);
                for (request, seq) in batch.into_iter().zip(seqs) {
                    match request {
                        Request::Append { reply, .. } => {
                            let _ = reply.send(Ok(seq));
                        }
                        Request::Snapshot { reply, .. }
                        | Request::Flush { reply }
                        | Request::Side { reply, .. } => {
                            let _ = reply.send(Ok(()));
                        }
                    }
                }
            }
            Err(e) => {
                health.failed(&e, size);
                // Sequence numbers handed out in the failed transaction were not stored.
                last_seq.clear();
                for request in batch {
                    let err = StoreError::Database(e.to_string());
                    match request {
                        Request::Append { reply, .. } => {
                            let _ = reply.send(Err(err));
                        }
                        Request::Snapshot { reply, .. }
                        | Request::Flush { reply }
                        | Request::Side { reply, .. } => {
                            let _ = reply.send(Err(err));
                        }
                    }
                }
            }
        }
    }
}

/// Whether writes are failing, so the log says it once when it starts and once when it ends
/// (a full disk fails every write of every room; one line each would bury everything else).
#[derive(Default)]
struct Health {
    /// Since when, and how many batches failed.
    failing: Option<(Instant, u64)>,
    /// The last failure was an I/O error: the database must be reopened before it writes.
    reopen: bool,
}

impl Health {
    /// The database to write the next batch with, reopened first if an I/O error poisoned it.
    fn ready(&mut self, slot: &Slot) -> Result<Arc<Database>, BatchError> {
        if self.reopen {
            slot.reopen()
                .map_err(|e| BatchError { io: true, message: format!("reopening the database: {e}") })?;
            self.reopen = false;
        }
        slot.current().map_err(|e| BatchError { io: false, message: e.to_string() })
    }

    fn succeeded(&mut self) {
        if let Some((since, batches)) = self.failing.take() {
            tracing::info!(
                "storage recovered: writes succeed again after {batches} failed commits over {:.1} s",
                since.elapsed().as_secs_f64()
            );
            metrics::gauge!("easel_store_failing").set(0.0);
        }
    }

    fn failed(&mut self, e: &BatchError, size: usize) {
        metrics::counter!("easel_store_errors_total").increment(1);
        self.reopen |= e.io;
        match &mut self.failing {
            Some((_, batches)) => {
                *batches += 1;
                tracing::debug!("group commit of {size} requests failed: {e}");
            }
            None => {
                tracing::error!(
                    "storage failing: group commit of {size} requests failed: {e}; writes are refused \
                     with StorageUnavailable until one succeeds (logged again when it does)"
                );
                metrics::gauge!("easel_store_failing").set(1.0);
                self.failing = Some((Instant::now(), 1));
            }
        }
    }
}

/// Why a batch was not committed; `io` when redb must be reopened before the next write.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct BatchError {
    io: bool,
    message: String,
}

impl<E: Into<redb::Error>> From<E> for BatchError {
    fn from(e: E) -> Self {
        let e: redb::Error = e.into();
        Self { io: matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo), message: e.to_string() }
    }
}

/// Writes one batch in one fsynced transaction; returns each request's sequence number (0 for
/// requests that have none).
fn write_batch(
    db: &Database,
    batch: &[Request],
    last_seq: &mut HashMap<String, u64>,
) -> Result<Vec<u64>, BatchError> {
    let mut seqs = Vec::with_capacity(batch.len());
    let needs_write = batch.iter().any(|r| !matches!(r, Request::Flush { .. }));
    if !needs_write {
        // Everything before a flush was committed by an earlier batch.
        return Ok(vec![0; batch.len()]);
    }
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    {
        let mut updates = txn.open_table(UPDATES)?;
        let mut snapshots = txn.open_table(SNAPSHOTS)?;
        let mut rooms = txn.open_table(ROOMS)?;
        let mut side = txn.open_table(SIDE)?;
        for request in batch {
            match request {
                Request::Append { room, record, .. } => {
                    let last = match last_seq.get(room.as_str()) {
                        Some(s) => *s,
                        None => rooms.get(room.as_str())?.map_or(0, |v| v.value()),
                    };
                    let seq = last + 1;
                    updates.insert(
                        (room.as_str(), seq),
                        encode_record(record)
                            .map_err(|e| BatchError { io: false, message: e.to_string() })?
                            .as_slice(),
                    )?;
                    rooms.insert(room.as_str(), seq)?;
                    last_seq.insert(room.clone(), seq);
                    seqs.push(seq);
                }
                Request::Snapshot { room, upto_seq, data, .. } => {
                    snapshots.insert(room.as_str(), (*upto_seq, data.as_slice()))?;
                    if rooms.get(room.as_str())?.is_none() {
                        rooms.insert(room.as_str(), *upto_seq)?;
                    }
                    updates.retain_in((room.as_str(), 0)..=(room.as_str(), *upto_seq), |_, _| false)?;
                    seqs.push(0);
                }
                Request::Side { room, writes, .. } => {
                    for w in writes {
                        side.insert((room.as_str(), w.kind, w.key.as_str()), w.value.as_slice())?;
                    }
                    seqs.push(0);
                }
                Request::Flush { .. } => seqs.push(0),
            }
        }
    }
    txn.commit()?;
    Ok(seqs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(op_id: u64, data: &[u8]) -> UpdateRecord {
        UpdateRecord { client_id: "c1".into(), op_id, user: "u1".into(), data: data.to_vec() }
    }

    #[tokio::test]
    async fn append_load_snapshot_compact_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(store.append("r/a", record(1, b"one")).await.expect("append"), 1);
        assert_eq!(store.append("r/a", record(2, b"two")).await.expect("append"), 2);
        assert_eq!(store.append("r/b", record(1, b"b1")).await.expect("append"), 1);
        let log = store.load("r/a").expect("load");
        assert!(log.snapshot.is_none());
        assert_eq!(log.updates, vec![(1, record(1, b"one")), (2, record(2, b"two"))]);

        store.snapshot("r/a", 1, b"snap".to_vec()).await.expect("snapshot");
        let log = store.load("r/a").expect("load");
        assert_eq!(log.snapshot, Some(Snapshot { upto_seq: 1, data: b"snap".to_vec() }));
        assert_eq!(log.updates, vec![(2, record(2, b"two"))], "compaction drops covered updates");
        store.close();
        assert!(matches!(store.append("r/a", record(3, b"x")).await, Err(StoreError::Closed)));

        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.append("r/a", record(3, b"three")).await.expect("append"), 3, "sequence survives");
        let log = store.load("r/a").expect("load");
        assert_eq!(log.updates.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![2, 3]);
        let mut rooms = store.rooms().expect("rooms");
        rooms.sort();
        assert_eq!(rooms, vec!["r/a".to_owned(), "r/b".to_owned()]);
        store.flush().await.expect("flush");
    }

    #[tokio::test]
    async fn concurrent_appends_are_group_committed_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let appends = (0..200u64).map(|i| {
            let store = store.clone();
            async move { store.append("room", record(i, &i.to_le_bytes())).await }
        });
        let mut seqs: Vec<u64> =
            futures::future::join_all(appends).await.into_iter().map(|r| r.expect("append")).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=200).collect::<Vec<_>>(), "every append gets a distinct sequence");
        assert_eq!(store.load("room").expect("load").updates.len(), 200);
    }

    #[test]
    fn corrupt_record_is_a_typed_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        {
            let txn = store.db().expect("open").begin_write().expect("txn");
            txn.open_table(UPDATES)
                .expect("table")
                .insert(("bad", 1), &b"\xff\x00garbage"[..])
                .expect("insert");
            txn.commit().expect("commit");
        }
        match store.load("bad") {
            Err(StoreError::Corrupt { room, seq, .. }) => assert_eq!((room.as_str(), seq), ("bad", 1)),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn a_data_file_that_is_not_ours_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("easel.redb");
        let unreadable = |what: &str| match Store::open(dir.path()) {
            Err(e @ StoreError::Unreadable { .. }) => {
                assert!(e.to_string().contains("easel.redb is not a readable Easel data file"), "{e}");
            }
            Err(other) => panic!("{what}: expected Unreadable, got {other}"),
            Ok(_) => panic!("{what}: opened"),
        };
        std::fs::write(&path, b"SQLite format 3\0 and then some bytes that are not a database")
            .expect("write");
        unreadable("another program's file");
        std::fs::write(&path, vec![0x5a; 64 * 1024]).expect("write");
        unreadable("garbage");
        // A redb file of another program, with a table of our name and another type.
        std::fs::remove_file(&path).expect("remove");
        {
            let db = Database::create(&path).expect("create");
            let txn = db.begin_write().expect("txn");
            let theirs: TableDefinition<'_, u64, u64> = TableDefinition::new("updates");
            txn.open_table(theirs).expect("table").insert(1, 2).expect("insert");
            txn.commit().expect("commit");
        }
        unreadable("a foreign redb file");
    }
}
