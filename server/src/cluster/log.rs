//! The rooms' board log on JetStream (cluster mode): one stream, [`STREAM`], a subject per
//! room ([`subject`]). A node publishes each board update it is about to ack and acks it only
//! once the stream has it (the PubAck); every node with the room loaded follows the room's
//! subject with an ordered consumer and imports what the other nodes published.
//!
//! A message is one [`UpdateRecord`], encoded as in the redb log, with two headers:
//! `Nats-Msg-Id` ([`msg_id`]: the same write sent again after a lost ack is stored once) and
//! [`ORIGIN`], the node and its start that published it (a node skips its own, which it
//! applied before publishing); or a batch of classroom events ([`super::batch`], marked by
//! its header), which every node applies as it comes, its own included. What to do with a
//! message is decided by [`classify`], sans IO.
//!
//! Rooms' snapshots ([`super::snapshot`]) are objects in the bucket [`BUCKET`]: a node loads a
//! room from its snapshot and follows the subject from the sequence after it; storing one
//! purges the subject one snapshot behind.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use base64::Engine as _;
use futures::StreamExt as _;
use tokio::sync::mpsc;

use super::snapshot::{self, BUCKET, Marks, Snapshot, SnapshotError};
use super::{batch, class, error};
use crate::room::ClassEvent;
use crate::store::{StoreError, UpdateRecord, decode_record, encode_record};

/// The stream holding every room's log.
pub const STREAM: &str = "EASEL_ROOMS";
/// The header naming the node (and its start) that published a message.
pub const ORIGIN: &str = "Easel-Origin";
/// The header of an update naming its author by its participant number at the origin, so
/// every node names the author as it numbers that member.
pub const AUTHOR: &str = "Easel-Author";
/// How long a write waits for the stream's ack before it is refused as not durable.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long loading a room waits for each message of its history.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a follower checks whether NATS came back.
const CONNECTION_CHECK: Duration = Duration::from_millis(250);
/// Messages read ahead of the room actor.
const TAIL_QUEUE: usize = 1024;
/// How long reading or storing a whole snapshot object may take.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(30);

/// A room's subject: `easel.room.<token>.ops`.
pub fn subject(room: &str) -> String {
    format!("easel.room.{}.ops", token(room))
}

/// A room's token in its subjects: its id in base64url without padding (ids hold `.`, NATS's
/// separator).
pub fn token(room: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(room)
}

/// The id JetStream deduplicates a write by (within the stream's duplicate window): the same
/// update of the same author's installation, however often it is sent and to whichever node.
pub fn msg_id(room: &str, record: &UpdateRecord) -> String {
    format!("{}:{}:{}:{}", subject(room), record.user, record.client_id, record.op_id)
}

/// What one message on a room's subject is to a node.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Classified {
    /// An update to import.
    Import(UpdateRecord),
    /// Classroom events to apply in order (this node's own too: nothing was applied before).
    Class(Vec<ClassEvent>),
    /// This node's own write, already in its document.
    Own,
    /// Not a room log message: dropped.
    Malformed(&'static str),
}

/// Sorts a message by its [`ORIGIN`] and [`class::KIND`] headers and payload. `replaying`:
/// the room is being loaded, when this node's own earlier writes are imported too (it may
/// have unloaded the room since).
pub fn classify(
    origin: Option<&str>,
    kind: Option<&str>,
    payload: &[u8],
    me: &str,
    replaying: bool,
) -> Classified {
    let Some(origin) = origin.filter(|o| !o.is_empty()) else {
        return Classified::Malformed("no Easel-Origin header");
    };
    match kind {
        None => {}
        Some(batch::BATCH) => {
            return batch::decode(payload, origin).map_or_else(Classified::Malformed, Classified::Class);
        }
        // One event a message, as nodes before group commit wrote them.
        Some(class::CLASS) => {
            return class::decode(payload, origin)
                .map_or_else(Classified::Malformed, |event| Classified::Class(vec![event]));
        }
        Some(_) => return Classified::Malformed("an unknown Easel-Kind"),
    }
    if origin == me && !replaying {
        return Classified::Own;
    }
    match decode_record(payload) {
        Ok(record) => Classified::Import(record),
        Err(_) => Classified::Malformed("not an update record"),
    }
}

/// What a room's consumer hands its actor.
#[derive(Debug)]
#[non_exhaustive]
pub enum Remote {
    /// An update.
    Update {
        /// Its stream sequence.
        seq: u64,
        /// Loro update bytes.
        data: Vec<u8>,
        /// Its author: the origin (`id@start_ms`) and the author's number there, when the
        /// message says.
        author: Option<(Arc<str>, u16)>,
    },
    /// Classroom events, one message's.
    Class {
        /// Its stream sequence.
        seq: u64,
        /// When the stream stored it, Unix ms: the time every node applies them at.
        at_ms: u64,
        /// The events, in order.
        events: Vec<ClassEvent>,
    },
    /// A message with nothing for the room (this node's own update, or a malformed one),
    /// passed at this stream sequence.
    Passed {
        /// Its stream sequence.
        seq: u64,
    },
    /// Everything stored when the room was loaded has been handed over.
    CaughtUp,
    /// The subject was purged past what the follower had read (it was away from NATS for
    /// longer than two snapshots took): the room must be loaded again. Nothing follows.
    Lost,
}

/// The room log of this node: publishes writes and follows rooms. Cheap to clone.
#[derive(Clone)]
pub struct RoomLog {
    client: async_nats::Client,
    js: jetstream::Context,
    /// This node's [`ORIGIN`]: its id and start, so a restarted node replays its own writes.
    origin: Arc<str>,
}

impl std::fmt::Debug for RoomLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomLog").field("origin", &self.origin).finish_non_exhaustive()
    }
}

/// Makes the stream and the snapshots' bucket if they are missing (file storage: they
/// outlive a NATS restart).
pub(super) async fn open_stream(js: &jetstream::Context) -> Result<(), String> {
    if js.get_object_store(BUCKET).await.is_err() {
        let config = jetstream::object_store::Config {
            bucket: BUCKET.to_owned(),
            description: Some("Easel rooms' snapshots, one object per room".into()),
            storage: stream::StorageType::File,
            ..Default::default()
        };
        js.create_object_store(config).await.map_err(|e| format!("bucket {BUCKET}: {e}"))?;
    }
    let config = stream::Config {
        name: STREAM.to_owned(),
        description: Some(
            "Easel rooms: each room's board updates and classroom events, one subject per room".into(),
        ),
        subjects: vec!["easel.room.*.ops".to_owned()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    js.get_or_create_stream(config).await.map(drop).map_err(|e| e.to_string())
}

impl RoomLog {
    pub(super) fn new(client: async_nats::Client, origin: String) -> Self {
        let js = jetstream::context::ContextBuilder::new().timeout(ACK_TIMEOUT).build(client.clone());
        Self { client, js, origin: origin.into() }
    }

    /// Publishes an update; resolves with its stream sequence once the stream has it. An
    /// error (NATS away, no ack within [`ACK_TIMEOUT`]) means it may or may not be stored: the
    /// author is refused and sends it again, under the same id.
    pub async fn append(&self, room: &str, record: &UpdateRecord, author: u16) -> Result<u64, StoreError> {
        let payload = encode_record(record)?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id(room, record).as_str());
        headers.insert(AUTHOR, author.to_string().as_str());
        self.publish(room, headers, payload).await.map(|ack| ack.sequence)
    }

    /// Publishes a batch of classroom events ([`batch`], each encoded by [`class::encode`])
    /// as one message; resolves once the stream has it, with whether it was a resend the
    /// stream already had (then it is not delivered again). Nothing of it is applied here:
    /// it is, when it comes back from the room's subject.
    pub async fn publish_class(
        &self,
        room: &str,
        events: &[ClassEvent],
        encoded: &[Vec<u8>],
    ) -> Result<bool, StoreError> {
        let payload = batch::encode(encoded).map_err(StoreError::Log)?;
        let mut headers = async_nats::HeaderMap::new();
        if let Some(id) = batch::msg_id(room, events, &payload) {
            headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        }
        headers.insert(class::KIND, batch::BATCH);
        self.publish(room, headers, payload).await.map(|ack| ack.duplicate)
    }

    async fn publish(
        &self,
        room: &str,
        mut headers: async_nats::HeaderMap,
        payload: Vec<u8>,
    ) -> Result<jetstream::publish::PublishAck, StoreError> {
        headers.insert(ORIGIN, &*self.origin);
        let publish = async {
            let ack = self.js.publish_with_headers(subject(room), headers, payload.into()).await;
            ack.map_err(|e| e.to_string())?.await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(ACK_TIMEOUT, publish).await {
            Ok(Ok(ack)) => Ok(ack),
            Ok(Err(e)) => Err(StoreError::Log(e)),
            Err(_) => Err(StoreError::Log("no ack in time".into())),
        }
    }

    /// Follows a room's subject from sequence `from`: every message, as [`Remote`]s, with
    /// [`Remote::CaughtUp`] once what was stored at the start has been handed over. Ends when
    /// the receiver is dropped (the room unloads).
    pub async fn follow(&self, room: &str, from: u64) -> Result<mpsc::Receiver<Remote>, StoreError> {
        let subject = subject(room);
        let (messages, pending) = self.consume(&subject, from).await.map_err(StoreError::Log)?;
        let (tx, rx) = mpsc::channel(TAIL_QUEUE);
        let follower =
            Follower { log: self.clone(), room: room.to_owned(), subject, tx, next: from, replaying: true };
        tokio::spawn(follower.run(messages, pending));
        Ok(rx)
    }

    /// The room's snapshot object: its marks and what it decodes to (`None`: there is none).
    pub async fn snapshot(
        &self,
        room: &str,
    ) -> Result<Option<(Marks, Result<Snapshot, SnapshotError>)>, StoreError> {
        use tokio::io::AsyncReadExt as _;
        let read = async {
            let store = self.js.get_object_store(BUCKET).await.map_err(|e| e.to_string())?;
            let Some(marks) = marks(&store, room).await? else { return Ok(None) };
            let mut object = match store.get(token(room)).await {
                Ok(object) => object,
                Err(e) if e.kind() == jetstream::object_store::GetErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.to_string()),
            };
            let mut bytes = Vec::new();
            // A digest that does not match is an unreadable snapshot, not a NATS failure.
            let decoded = match object.read_to_end(&mut bytes).await {
                Ok(_) => snapshot::decode(&bytes, room),
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(SnapshotError::Digest),
                Err(e) => return Err(e.to_string()),
            };
            Ok(Some((marks, decoded)))
        };
        let found = tokio::time::timeout(SNAPSHOT_TIMEOUT, read)
            .await
            .map_err(|_| StoreError::Log("no snapshot in time".into()))?
            .map_err(StoreError::Log)?;
        if let Some((_, Err(e))) = &found {
            tracing::warn!(room, "cluster: the room's snapshot is unreadable: {e}");
            error("snapshot");
        }
        Ok(found)
    }

    /// The marks of the room's snapshot object, if there is one.
    pub async fn marks(&self, room: &str) -> Result<Option<Marks>, StoreError> {
        let read = async {
            let store = self.js.get_object_store(BUCKET).await.map_err(|e| e.to_string())?;
            marks(&store, room).await
        };
        tokio::time::timeout(REPLAY_TIMEOUT, read)
            .await
            .map_err(|_| StoreError::Log("no snapshot marks in time".into()))?
            .map_err(StoreError::Log)
    }

    /// Stores a room's snapshot covering its subject up to `upto`, unless the one stored
    /// already covers as much; then purges the subject below the new object's floor (one
    /// snapshot behind). Returns whether it was stored.
    pub async fn store_snapshot(&self, room: &str, upto: u64, bytes: Vec<u8>) -> Result<bool, StoreError> {
        let write = async {
            let store = self.js.get_object_store(BUCKET).await.map_err(|e| e.to_string())?;
            let previous = marks(&store, room).await?;
            if previous.and_then(|p| p.upto).is_some_and(|p| p >= upto) {
                return Ok(false);
            }
            let next = Marks::next(previous, upto);
            let meta = jetstream::object_store::ObjectMetadata {
                name: token(room),
                description: Some(format!("Easel room {room} up to sequence {upto}")),
                metadata: next.metadata(),
                ..Default::default()
            };
            store.put(meta, &mut bytes.as_slice()).await.map_err(|e| e.to_string())?;
            if let Some(floor) = next.floor.filter(|f| *f > 1) {
                let stream = self.js.get_stream(STREAM).await.map_err(|e| e.to_string())?;
                stream
                    .purge()
                    .filter(subject(room))
                    .sequence(floor)
                    .await
                    .map_err(|e| format!("purge: {e}"))?;
            }
            Ok(true)
        };
        tokio::time::timeout(SNAPSHOT_TIMEOUT, write)
            .await
            .map_err(|_| StoreError::Log("snapshot not stored in time".into()))?
            .map_err(StoreError::Log)
    }

    /// An ordered consumer of `subject` from sequence `from`, and how many messages it has
    /// to deliver now.
    async fn consume(&self, subject: &str, from: u64) -> Result<(consumer::pull::Ordered, u64), String> {
        let open = async {
            let stream = self.js.get_stream(STREAM).await.map_err(|e| e.to_string())?;
            let config = consumer::pull::OrderedConfig {
                filter_subject: subject.to_owned(),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: from },
                // Resumes at once after a NATS restart (the default stalls for a minute).
                max_expires: Duration::from_secs(2),
                ..Default::default()
            };
            let consumer = stream.create_consumer(config).await.map_err(|e| e.to_string())?;
            let pending = consumer.cached_info().num_pending;
            let messages = consumer.messages().await.map_err(|e| e.to_string())?;
            Ok((messages, pending))
        };
        tokio::time::timeout(REPLAY_TIMEOUT, open).await.map_err(|_| "no answer in time".to_owned())?
    }
}

/// The marks of `room`'s object in `store` (`None`: there is none, or it was deleted).
async fn marks(store: &jetstream::object_store::ObjectStore, room: &str) -> Result<Option<Marks>, String> {
    match store.info(token(room)).await {
        Ok(info) if info.deleted => Ok(None),
        Ok(info) => Ok(Some(Marks::of(&info.metadata))),
        Err(e) if e.kind() == jetstream::object_store::InfoErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// The task following one room's subject for its actor.
struct Follower {
    log: RoomLog,
    room: String,
    subject: String,
    tx: mpsc::Sender<Remote>,
    /// The next stream sequence expected (where to resume if the consumer ends).
    next: u64,
    replaying: bool,
}

impl Follower {
    async fn run(mut self, mut messages: consumer::pull::Ordered, mut pending: u64) {
        // The ordered consumer notices a restarted NATS lost it only after missed heartbeats
        // (seconds, or a minute), so a connection that comes back reopens it at once.
        let mut check = tokio::time::interval(CONNECTION_CHECK);
        // The connection the consumer was opened (or last checked) on, by NATS's count.
        let mut connects = self.connects();
        // The ordered consumer also recreates itself, from the sequence after the last it
        // delivered, and a purge meanwhile would pass unseen: after a reconnection or a
        // consumer error, what comes is taken only once the purge floor is known to be
        // behind what was read.
        let mut suspect = false;
        loop {
            if self.replaying && pending == 0 {
                self.replaying = false;
                if self.tx.send(Remote::CaughtUp).await.is_err() {
                    return;
                }
            }
            let item = tokio::select! {
                () = self.tx.closed() => return,
                item = messages.next() => item,
                _ = check.tick() => {
                    let up = self.log.client.connection_state() == async_nats::connection::State::Connected;
                    let now = self.connects();
                    if up && now != connects {
                        tracing::debug!(subject = self.subject, seq = self.next, "cluster: NATS is back; reopening the room log");
                        match self.reopen().await {
                            Some((again, left)) => (messages, pending, connects, suspect) = (again, left, now, false),
                            None => return,
                        }
                    }
                    continue;
                }
            };
            match item {
                Some(Ok(message)) => {
                    if suspect || self.connects() != connects {
                        let now = self.connects();
                        match self.purged_past().await {
                            Ok(true) => return,
                            Ok(false) => (suspect, connects) = (false, now),
                            // Unknown yet: the reopen once the connection is back checks it.
                            Err(e) => {
                                suspect = true;
                                tracing::debug!(subject = self.subject, "cluster: room log marks: {e}");
                            }
                        }
                    }
                    let Some(left) = self.take(&message, pending).await else { return };
                    pending = left;
                }
                // The ordered consumer recreates itself where it was (after a NATS restart).
                Some(Err(e)) => {
                    suspect = true;
                    tracing::debug!(subject = self.subject, "cluster: room log consumer: {e}");
                }
                None => {
                    tracing::warn!(subject = self.subject, "cluster: room log consumer ended; reopening");
                    error("watch");
                    match self.reopen().await {
                        Some((again, left)) => (messages, pending) = (again, left),
                        None => return,
                    }
                }
            }
        }
    }

    /// Hands one message over (or drops it); returns what the server says is still pending
    /// (`pending` if it does not say), or `None` once the actor is gone.
    async fn take(&mut self, message: &jetstream::Message, pending: u64) -> Option<u64> {
        let Ok(info) = message.info() else {
            tracing::warn!(
                subject = self.subject,
                "cluster: dropping a room log message without stream info"
            );
            error("malformed");
            return Some(pending);
        };
        let (seq, pending) = (info.stream_sequence, info.pending);
        self.next = seq + 1;
        let header = |name| message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str());
        match classify(
            header(ORIGIN),
            header(class::KIND),
            &message.payload,
            &self.log.origin,
            self.replaying,
        ) {
            Classified::Import(record) => {
                let author = header(ORIGIN).zip(header(AUTHOR).and_then(|a| a.parse().ok()));
                let author = author.map(|(origin, index)| (Arc::from(origin), index));
                self.tx.send(Remote::Update { seq, data: record.data, author }).await.ok()?;
            }
            Classified::Class(events) => {
                let at_ms = u64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
                self.tx.send(Remote::Class { seq, at_ms, events }).await.ok()?;
            }
            Classified::Own => self.tx.send(Remote::Passed { seq }).await.ok()?,
            Classified::Malformed(why) => {
                tracing::warn!(
                    subject = self.subject,
                    seq,
                    "cluster: dropping a malformed room log message: {why}"
                );
                error("malformed");
                self.tx.send(Remote::Passed { seq }).await.ok()?;
            }
        }
        Some(pending)
    }

    /// A new consumer from where the last one stopped, retried every half second until the
    /// actor is gone.
    /// How many times the client has connected to NATS.
    fn connects(&self) -> u64 {
        self.log.client.statistics().connects.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the subject was purged past what was read (then the actor was told).
    async fn purged_past(&self) -> Result<bool, StoreError> {
        Ok(match self.log.marks(&self.room).await? {
            Some(marks) => self.lost(marks).await,
            None => false,
        })
    }

    /// Whether `marks` purge what this follower has not read yet: if so the actor is told
    /// ([`Remote::Lost`]) and the follower is to end.
    async fn lost(&self, marks: Marks) -> bool {
        if marks.floor.is_none_or(|floor| floor <= self.next) {
            return false;
        }
        tracing::error!(
            subject = self.subject,
            seq = self.next,
            floor = marks.floor,
            "cluster: the room log was purged past what this node had read"
        );
        let _ = self.tx.send(Remote::Lost).await;
        true
    }

    /// A consumer that would start past a purge has lost what lies between: the actor is
    /// told ([`Remote::Lost`]) and the follower ends.
    async fn reopen(&self) -> Option<(consumer::pull::Ordered, u64)> {
        loop {
            let open = async {
                let open = self.log.consume(&self.subject, self.next).await.map_err(StoreError::Log)?;
                Ok::<_, StoreError>((open, self.log.marks(&self.room).await?))
            };
            match open.await {
                Ok((_, Some(marks))) if self.lost(marks).await => return None,
                Ok((open, _)) => return Some(open),
                Err(e) => tracing::debug!(subject = self.subject, "cluster: reopening the room log: {e}"),
            }
            tokio::select! {
                () = self.tx.closed() => return None,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(op_id: u64) -> UpdateRecord {
        UpdateRecord { client_id: "dev".into(), op_id, user: "ada".into(), data: vec![1, 2, 3] }
    }

    #[test]
    fn subjects_are_one_token_per_room() {
        let s = subject("uni-a/math-101/2026.11.23");
        assert_eq!(s, "easel.room.dW5pLWEvbWF0aC0xMDEvMjAyNi4xMS4yMw.ops");
        assert_eq!(s.split('.').count(), 4, "the id's dots do not split the subject");
    }

    #[test]
    fn the_same_write_has_the_same_id_and_another_does_not() {
        assert_eq!(msg_id("r", &record(1)), msg_id("r", &record(1)));
        assert_ne!(msg_id("r", &record(1)), msg_id("r", &record(2)));
        assert_ne!(msg_id("r", &record(1)), msg_id("s", &record(1)));
    }

    #[test]
    fn messages_are_imported_skipped_or_dropped() {
        let bytes = encode_record(&record(7)).expect("encode");
        assert_eq!(classify(Some("b@1"), None, &bytes, "a@1", false), Classified::Import(record(7)));
        assert_eq!(classify(Some("a@1"), None, &bytes, "a@1", false), Classified::Own);
        // Loading: this node's own earlier writes are part of the room.
        assert_eq!(classify(Some("a@1"), None, &bytes, "a@1", true), Classified::Import(record(7)));
        assert!(matches!(classify(None, None, &bytes, "a@1", false), Classified::Malformed(_)));
        assert!(matches!(classify(Some(""), None, &bytes, "a@1", false), Classified::Malformed(_)));
        assert!(matches!(classify(Some("b@1"), None, b"garbage", "a@1", false), Classified::Malformed(_)));
    }

    #[test]
    fn classroom_events_are_applied_by_every_node_its_own_included() {
        use crate::room::{Act, Actor, Key};
        let by = Actor {
            key: Key { origin: "a@1".into(), index: 0 },
            user: "ada".into(),
            client: "dev".into(),
            name: "Ada".into(),
            role: easel_proto::message::Role::Student,
        };
        let event = ClassEvent { by, act: Act::Arrive };
        let one = class::encode(&event).expect("encode");
        let bytes = batch::encode(&[one.clone(), one.clone()]).expect("encode");
        let kind = Some(batch::BATCH);
        let both = Classified::Class(vec![event.clone(), event.clone()]);
        assert_eq!(classify(Some("a@1"), kind, &bytes, "a@1", false), both);
        assert_eq!(classify(Some("a@1"), kind, &bytes, "b@1", false), both);
        assert!(matches!(classify(Some("a@1"), kind, b"garbage", "b@1", false), Classified::Malformed(_)));
        let board = encode_record(&record(1)).expect("encode");
        assert!(matches!(classify(Some("a@1"), kind, &board, "b@1", false), Classified::Malformed(_)));
        assert!(matches!(classify(Some("a@1"), Some("x"), &bytes, "b@1", false), Classified::Malformed(_)));
        // A stream written before group commit: one event a message.
        let old = classify(Some("a@1"), Some(class::CLASS), &one, "b@1", false);
        assert_eq!(old, Classified::Class(vec![event]));
        assert!(matches!(
            classify(Some("a@1"), Some(class::CLASS), &bytes, "b@1", false),
            Classified::Malformed(_)
        ));
    }
}
