//! Rooms: a sans-IO [`Room`] state machine (participants, presence, cursors, the Loro document)
//! and the actor that drives it ([`spawn`], [`Handle`]).
//!
//! The state machine takes time as an argument and never awaits: it talks to members through
//! their [`Link`] (a bounded queue for the room stream plus a non-blocking datagram sender),
//! hands durable writes back to the driver as [`Persist`] requests, and SFU work as
//! [`SfuOp`]s that the actor passes to the room's SFU driver ([`crate::sfu`]). The actor owns one `Room`,
//! receives [`Command`]s over a bounded channel, runs group-committed writes through the
//! [`Store`] in order, and ticks cursors and presence.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use easel_sfu_bridge::{Access, PeerEvent, Sfu};

use bytes::Bytes;
use easel_proto::datagram::{
    Cursor, CursorBatch, CursorEntry, Heartbeat, PresenceBatch, PresenceEntry, is_newer,
};
use easel_proto::message::{
    Ack, Fault, HandQueue, Kind, ModAction, Moderated, Participant, ParticipantJoined, ParticipantLeft,
    ParticipantUpdated, Reject, RemoteUpdate, Role, SfuEvent, SfuEventKind, SyncKind,
};
use easel_proto::{Datagram, ErrorCode, Message};
use easel_transport::DatagramSender;
use futures::stream::{FuturesOrdered, StreamExt as _};
use loro::{ExportMode, LoroDoc, VersionVector};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::class::{self, Class, Deliver, Outcome, Who};
use crate::sfu::{SfuNews, SfuOp};
use crate::store::{Store, StoreError, UpdateRecord};

/// Most queued updates the actor applies in one import.
const UPDATE_BATCH: usize = 256;

/// Tunables of every room.
#[derive(Debug, Clone)]
pub struct Config {
    /// Cursor and presence tick period (1 / `--tick-hz`).
    pub tick: Duration,
    /// Silence after which a participant is evicted.
    pub presence_ttl: Duration,
    /// Most participants in one room.
    pub max_participants: usize,
    /// After a cursor stops moving, its last position is sent once more this much later, so a
    /// lost final datagram does not leave a stale cursor.
    pub settle: Duration,
    /// Presence entries are re-sent to everyone this often even unchanged (loss repair).
    pub presence_refresh: Duration,
    /// Committed updates between snapshots (compaction).
    pub snapshot_every: u64,
    /// A room with nobody in it for this long is unloaded.
    pub idle_unload: Duration,
    /// How long a member whose connection was lost keeps its place for a resume (SPEC §5.4).
    pub resume_grace: Duration,
    /// Chat messages per minute per user.
    pub chat_per_min: u32,
    /// Whether students may publish video through the SFU (teachers always may, viewers never).
    pub students_publish: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(1) / 60,
            presence_ttl: Duration::from_secs(10),
            max_participants: 2000,
            settle: Duration::from_millis(150),
            presence_refresh: Duration::from_secs(2),
            snapshot_every: 1000,
            idle_unload: Duration::from_secs(60),
            resume_grace: Duration::from_secs(30),
            chat_per_min: 30,
            students_publish: true,
        }
    }
}

/// What a member's room-stream writer receives.
#[derive(Debug)]
pub enum Outbound {
    /// A frame for the room stream.
    Message(Message),
    /// A frame already encoded: a broadcast is encoded once and its bytes shared by every
    /// member's queue.
    Frame(Bytes),
    /// A state transfer for a new snapshot stream.
    Snapshot(SnapshotPayload),
    /// The membership ended: send `Left { code }` and finish the stream.
    Left(ErrorCode, String),
}

/// A room's state for a joining client (sent on a snapshot stream).
#[derive(Debug, Clone)]
pub struct SnapshotPayload {
    /// Updates since the client's version, or a whole snapshot.
    pub sync: SyncKind,
    /// The Loro export.
    pub data: Vec<u8>,
    /// The encoded version vector the payload brings the client to.
    pub version: Vec<u8>,
}

/// How the room reaches one member without ever awaiting.
#[derive(Clone)]
pub struct Link {
    /// Room-stream messages, bounded.
    pub tx: mpsc::Sender<Outbound>,
    /// Datagrams to the member's session.
    pub datagrams: Arc<dyn DatagramSender>,
    /// Cancelled when the room gives up on the member (its queue overflowed): the session is
    /// then closed with `SlowConsumer`.
    pub kill: CancellationToken,
    /// The member's connection-local slot for this room (datagrams carry it).
    pub slot: u16,
    /// The connection this link belongs to. Commands that end a membership carry it, so one
    /// from a connection the member has since left behind (by resuming) is ignored.
    pub conn: u64,
}

/// Who is joining.
pub struct JoinRequest {
    /// Token subject.
    pub user: String,
    /// Display name.
    pub name: String,
    /// Role from the token.
    pub role: Role,
    /// The client's installation id (op ids are unique per client id).
    pub client_id: String,
    /// The client's encoded version vector, if any.
    pub since: Option<Vec<u8>>,
    /// The participant number a resumed session held here: if that member is still in the
    /// room (for the same user), it is re-attached instead of joining anew.
    pub resume: Option<u16>,
    /// When the member's token expires (Unix ms): a removal holds until then.
    pub expires_ms: u64,
    /// How to reach it.
    pub link: Link,
}

/// A successful join.
#[derive(Debug)]
pub struct Joined {
    /// The member's participant number.
    pub participant: u16,
    /// Everyone, the member included.
    pub participants: Vec<Participant>,
    /// What the member lacks, if anything.
    pub snapshot: Option<SnapshotPayload>,
    /// Whether an existing member was re-attached (others were told nothing).
    pub resumed: bool,
}

/// A durable write the driver must perform before the room acks.
#[derive(Debug)]
pub enum Persist {
    /// Append this update; then call [`Room::committed`].
    Append {
        /// Author.
        participant: u16,
        /// Author's op id.
        op_id: u64,
        /// What to store.
        record: UpdateRecord,
        /// When the update arrived (for the ingest-to-send latency histogram).
        received: Instant,
    },
    /// A duplicate: ack once everything before it is durable; then call [`Room::committed`].
    Barrier {
        /// Author.
        participant: u16,
        /// Author's op id.
        op_id: u64,
    },
}

/// A snapshot the driver must store (compaction).
#[derive(Debug)]
pub struct SnapshotWrite {
    /// The last stored update the snapshot covers.
    pub upto_seq: u64,
    /// Loro snapshot export.
    pub data: Vec<u8>,
}

/// What one member is sent in a tick: the same for every member with the same slot and marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Batch {
    slot: u16,
    /// Cursor versions after this one.
    cursors: u64,
    /// Presence versions after this one; `None`: every entry (the periodic refresh).
    presence: Option<u64>,
}

struct CursorState {
    seq: u16,
    x: i32,
    y: i32,
    changed: Instant,
    settled: bool,
}

/// How the room reaches a member.
enum Reach {
    /// Through its connection.
    Linked(Link),
    /// Its connection was lost: it keeps its place, unseen by others, until `until` (the end
    /// of the resume grace window); what it misses it catches up on by version vector.
    Detached {
        /// When it is evicted unless re-attached.
        until: Instant,
        /// When the connection was lost (its attendance ends there if it never comes back).
        lost: Instant,
    },
}

struct Member {
    info: Participant,
    client_id: String,
    /// Token expiry, Unix ms.
    expires_ms: u64,
    reach: Reach,
    /// The connection the member was last attached through (see [`Link::conn`]).
    conn: u64,
    last_seen: Instant,
    cursor: Option<CursorState>,
    presence: Option<PresenceEntry>,
    /// Highest cursor version already sent to this member.
    cursor_mark: u64,
    /// Highest presence version already sent to this member.
    presence_mark: u64,
    /// Whether it is in the SFU room.
    in_sfu: bool,
    /// The feed it publishes, while its camera is on.
    feed: Option<u64>,
}

impl Member {
    fn link(&self) -> Option<&Link> {
        match &self.reach {
            Reach::Linked(link) => Some(link),
            Reach::Detached { .. } => None,
        }
    }
}

/// One room's state: members, cursors, presence and the document.
pub struct Room {
    id: Arc<str>,
    config: Config,
    doc: LoroDoc,
    members: BTreeMap<u16, Member>,
    next_index: u16,
    /// Cursor versions: version → participant, one entry per cursor at its latest version.
    cursor_versions: BTreeMap<u64, u16>,
    cursor_version_of: HashMap<u16, u64>,
    presence_versions: BTreeMap<u64, u16>,
    presence_version_of: HashMap<u16, u64>,
    version: u64,
    last_presence_refresh: Option<Instant>,
    last_seq: u64,
    ops_since_snapshot: u64,
    empty_since: Option<Instant>,
    class: Class,
    /// The wall clock at a point of the room's clock, so times on the wire and in records
    /// (Unix ms) follow from the `Instant`s the room is given.
    wall: (Instant, u64),
    /// Classroom writes waiting for the driver (see [`Room::take_side`]).
    side: Vec<Outcome>,
    /// The teacher-visible queue of raised hands, first raised first.
    hands: Vec<u16>,
    /// SFU work waiting for the driver (see [`Room::take_sfu`]).
    sfu: Vec<SfuOp>,
}

impl Room {
    /// A room whose document is rebuilt from `snapshot` and `updates` (from the store).
    pub fn new(
        id: Arc<str>,
        config: Config,
        snapshot: Option<(u64, Vec<u8>)>,
        updates: Vec<(u64, Vec<u8>)>,
        class: Class,
        now: Instant,
        now_ms: u64,
    ) -> Result<Self, String> {
        let doc = LoroDoc::new();
        let mut last_seq = 0;
        if let Some((seq, data)) = snapshot {
            import(&doc, &data).map_err(|e| format!("snapshot: {e}"))?;
            last_seq = seq;
        }
        let replayed = updates.len() as u64;
        for (seq, data) in updates {
            import(&doc, &data).map_err(|e| format!("update {seq}: {e}"))?;
            last_seq = last_seq.max(seq);
        }
        Ok(Self {
            id,
            config,
            doc,
            members: BTreeMap::new(),
            next_index: 0,
            cursor_versions: BTreeMap::new(),
            cursor_version_of: HashMap::new(),
            presence_versions: BTreeMap::new(),
            presence_version_of: HashMap::new(),
            version: 0,
            last_presence_refresh: None,
            last_seq,
            ops_since_snapshot: replayed,
            empty_since: Some(now),
            class,
            wall: (now, now_ms),
            side: Vec::new(),
            hands: Vec::new(),
            sfu: Vec::new(),
        })
    }

    /// The room id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Members now.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether nobody is in the room.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The document's current version, encoded.
    pub fn version(&self) -> Vec<u8> {
        self.doc.oplog_vv().encode()
    }

    /// The deepest member queue of room-stream messages not yet written.
    pub fn outbound_depth(&self) -> usize {
        self.members
            .values()
            .filter_map(Member::link)
            .map(|l| l.tx.max_capacity() - l.tx.capacity())
            .max()
            .unwrap_or(0)
    }

    /// Whether the room has been empty for the idle-unload period.
    pub fn idle(&self, now: Instant) -> bool {
        self.empty_since.is_some_and(|t| now.duration_since(t) >= self.config.idle_unload)
    }

    /// Adds a member; others see `ParticipantJoined`. A resumed session's member still in the
    /// room is re-attached instead, and others see nothing (SPEC §5.4).
    pub fn join(&mut self, now: Instant, req: JoinRequest) -> Result<Joined, ErrorCode> {
        if let Some(index) = req.resume
            && self.members.get(&index).is_some_and(|m| m.info.user == req.user)
        {
            return self.reattach(now, index, req);
        }
        let now_ms = self.wall_ms(now);
        if self.class.removed(&req.user, now_ms) {
            return Err(ErrorCode::Removed);
        }
        if self.members.len() >= self.config.max_participants {
            return Err(ErrorCode::RoomFull);
        }
        let index = self.allocate_index().ok_or(ErrorCode::RoomFull)?;
        let flags = self.class.flags(&req.user);
        let info = Participant {
            index,
            user: req.user,
            name: req.name,
            role: req.role,
            read_only: flags.read_only,
            chat_muted: flags.chat_muted,
            camera: false,
            hand_raised: false,
        };
        let snapshot = self.sync_payload(req.since.as_deref()).map_err(|e| {
            tracing::error!(room = %self.id, "export for join failed: {e}");
            ErrorCode::Internal
        })?;
        self.broadcast(Some(index), &Message::from(ParticipantJoined { participant: info.clone() }));
        let arrived = self.class.arrive(&info.user, &info.name, now_ms);
        self.store_side(arrived.into_iter().collect());
        self.members.insert(
            index,
            Member {
                info,
                client_id: req.client_id,
                expires_ms: req.expires_ms,
                conn: req.link.conn,
                reach: Reach::Linked(req.link),
                last_seen: now,
                cursor: None,
                presence: None,
                cursor_mark: 0,
                presence_mark: 0,
                in_sfu: false,
                feed: None,
            },
        );
        self.empty_since = None;
        crate::telemetry::participant_joined();
        self.send_side_state(index);
        Ok(Joined {
            participant: index,
            participants: self.members.values().map(|m| m.info.clone()).collect(),
            snapshot,
            resumed: false,
        })
    }

    /// Gives an existing member a new link: same number and flags, nothing broadcast. The old
    /// link is dropped, which ends the old connection's writer for this room.
    fn reattach(&mut self, now: Instant, index: u16, req: JoinRequest) -> Result<Joined, ErrorCode> {
        let snapshot = self.sync_payload(req.since.as_deref()).map_err(|e| {
            tracing::error!(room = %self.id, "export for resume failed: {e}");
            ErrorCode::Internal
        })?;
        let member = self.members.get_mut(&index).ok_or(ErrorCode::Internal)?;
        member.client_id = req.client_id;
        member.expires_ms = req.expires_ms;
        member.conn = req.link.conn;
        member.reach = Reach::Linked(req.link);
        member.last_seen = now;
        // Marks at zero: the next tick sends every cursor and presence entry, which it missed.
        member.cursor_mark = 0;
        member.presence_mark = 0;
        // What was said and asked while it was away it would otherwise never see.
        self.send_side_state(index);
        Ok(Joined {
            participant: index,
            participants: self.members.values().map(|m| m.info.clone()).collect(),
            snapshot,
            resumed: true,
        })
    }

    fn allocate_index(&mut self) -> Option<u16> {
        // Fresh numbers first, so a reused number never inherits a stale cursor sequence.
        for _ in 0..=u16::MAX {
            let index = self.next_index;
            self.next_index = self.next_index.wrapping_add(1);
            if !self.members.contains_key(&index) {
                return Some(index);
            }
        }
        None
    }

    fn sync_payload(&self, since: Option<&[u8]>) -> Result<Option<SnapshotPayload>, String> {
        let server = self.doc.oplog_vv();
        let client = since.and_then(|b| VersionVector::decode(b).ok());
        let (sync, data) = match client {
            Some(vv) if vv >= server => return Ok(None),
            Some(vv) => (SyncKind::Updates, self.doc.export(ExportMode::updates(&vv))),
            None if server.is_empty() => return Ok(None),
            None => (SyncKind::Snapshot, self.doc.export(ExportMode::Snapshot)),
        };
        Ok(Some(SnapshotPayload { sync, data: data.map_err(|e| e.to_string())?, version: server.encode() }))
    }

    /// Connection `conn` ends a membership: others see `ParticipantLeft { code }` and the
    /// member's stream gets `Left { code }`. Ignored if the member has since been re-attached
    /// through another connection.
    pub fn leave(&mut self, now: Instant, index: u16, conn: u64, code: ErrorCode) {
        if self.members.get(&index).is_some_and(|m| m.conn == conn) {
            self.remove(now, index, code, true);
        }
    }

    /// Connection `conn` was lost: the member keeps its place until the resume grace window
    /// passes, and nobody is told. Ignored if it has since been re-attached elsewhere.
    pub fn detach(&mut self, now: Instant, index: u16, conn: u64) {
        let until = now + self.config.resume_grace;
        if let Some(m) = self.members.get_mut(&index)
            && m.conn == conn
        {
            m.reach = Reach::Detached { until, lost: now };
        }
    }

    /// Removes a member; others see `ParticipantLeft { code }`. The member's stream gets
    /// `Left { code }` unless it is already gone.
    fn remove(&mut self, now: Instant, index: u16, code: ErrorCode, tell_member: bool) {
        let Some(member) = self.members.remove(&index) else { return };
        crate::telemetry::participant_left();
        let left_at = match member.reach {
            Reach::Detached { lost, .. } => lost,
            Reach::Linked(_) => now,
        };
        if member.in_sfu {
            self.sfu.push(SfuOp::Leave { participant: index });
        }
        let departed = self.class.depart(&member.info.user, self.wall_ms(left_at));
        self.store_side(departed.into_iter().collect());
        if let Some(at) = self.hands.iter().position(|h| *h == index) {
            self.hands.remove(at);
            self.broadcast(None, &Message::from(HandQueue { queue: self.hands.clone() }));
        }
        if tell_member && let Some(link) = member.link() {
            let _ = link.tx.try_send(Outbound::Left(code, String::new()));
        }
        if let Some(v) = self.cursor_version_of.remove(&index) {
            self.cursor_versions.remove(&v);
        }
        if let Some(v) = self.presence_version_of.remove(&index) {
            self.presence_versions.remove(&v);
        }
        self.broadcast(None, &Message::from(ParticipantLeft { index, code: code.to_u16() }));
        if self.members.is_empty() {
            self.empty_since = Some(now);
        }
    }

    /// Sends a member what it lacks after `since` (a `Sync` request).
    pub fn sync(&mut self, now: Instant, index: u16, since: &[u8]) {
        self.touch(now, index);
        match self.sync_payload(Some(since)) {
            Ok(Some(payload)) => {
                if let Some(link) = self.members.get(&index).and_then(Member::link)
                    && let Err(e) = link.tx.try_send(Outbound::Snapshot(payload))
                {
                    self.undeliverable(index, &e);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(room = %self.id, "export for sync failed: {e}"),
        }
    }

    /// Marks a member alive (any frame or datagram from it).
    pub fn touch(&mut self, now: Instant, index: u16) {
        if let Some(m) = self.members.get_mut(&index) {
            m.last_seen = now;
        }
    }

    /// Applies a member's update to the document. `Ok` asks for a durable write; `Err` is the
    /// rejection already sent.
    pub fn update(&mut self, now: Instant, index: u16, op_id: u64, data: Vec<u8>) -> Option<Persist> {
        if !self.may_edit(now, index, op_id) {
            return None;
        }
        let before = self.doc.oplog_vv();
        match import(&self.doc, &data) {
            Err(e) => {
                metrics::counter!("easel_ops_rejected_total").increment(1);
                self.reject(index, op_id, ErrorCode::InvalidUpdate, e);
                None
            }
            Ok(pending) if !pending && self.doc.oplog_vv() == before => {
                Some(Persist::Barrier { participant: index, op_id })
            }
            Ok(_) => {
                let member = self.members.get(&index)?;
                let record = UpdateRecord {
                    client_id: member.client_id.clone(),
                    op_id,
                    user: member.info.user.clone(),
                    data,
                };
                Some(Persist::Append { participant: index, op_id, record, received: now })
            }
        }
    }

    /// Applies several members' updates at once (those queued together): one Loro import for
    /// the lot. Returns the durable writes to make, in order. An update whose version range
    /// the document already held is a duplicate (acked after a barrier, not stored again).
    pub fn updates(&mut self, now: Instant, ops: Vec<(u16, u64, Vec<u8>)>) -> Vec<Persist> {
        if ops.len() == 1 {
            return ops
                .into_iter()
                .filter_map(|(index, op_id, data)| self.update(now, index, op_id, data))
                .collect();
        }
        let mut accepted = Vec::with_capacity(ops.len());
        for (index, op_id, data) in ops {
            if self.may_edit(now, index, op_id) {
                accepted.push((index, op_id, data));
            }
        }
        let before = self.doc.oplog_vv();
        // Whether each one is already in the document, decided before anything is imported
        // (`None`: its header does not even decode).
        let held: Vec<Option<bool>> = accepted
            .iter()
            .map(|(_, _, data)| {
                let meta =
                    std::panic::catch_unwind(|| LoroDoc::decode_import_blob_meta(data, false)).ok()?.ok()?;
                Some(
                    meta.partial_end_vv
                        .iter()
                        .all(|(peer, counter)| before.get(peer).is_some_and(|c| c >= counter)),
                )
            })
            .collect();
        let batch: Vec<Vec<u8>> = accepted
            .iter()
            .zip(&held)
            .filter(|(_, h)| **h == Some(false))
            .map(|((_, _, data), _)| data.clone())
            .collect();
        let imported =
            matches!(std::panic::catch_unwind(AssertUnwindSafe(|| self.doc.import_batch(&batch))), Ok(Ok(_)));
        let mut out = Vec::with_capacity(accepted.len());
        for ((index, op_id, data), held) in accepted.into_iter().zip(held) {
            if held == Some(true) {
                out.push(Persist::Barrier { participant: index, op_id });
                continue;
            }
            // Outside a batch that worked, each one alone: a bad one is refused, the others
            // (perhaps already applied by the batch) are stored all the same.
            if (held.is_none() || !imported)
                && let Err(e) = import(&self.doc, &data)
            {
                metrics::counter!("easel_ops_rejected_total").increment(1);
                self.reject(index, op_id, ErrorCode::InvalidUpdate, e);
                continue;
            }
            let Some(member) = self.members.get(&index) else { continue };
            let record = UpdateRecord {
                client_id: member.client_id.clone(),
                op_id,
                user: member.info.user.clone(),
                data,
            };
            out.push(Persist::Append { participant: index, op_id, record, received: now });
        }
        out
    }

    /// Whether the member's role and moderation let it edit (it is alive either way); a
    /// refusal is sent to it.
    fn may_edit(&mut self, now: Instant, index: u16, op_id: u64) -> bool {
        let Some(member) = self.members.get_mut(&index) else { return false };
        member.last_seen = now;
        let refuse = match (member.info.role, member.info.read_only) {
            (Role::Viewer, _) => (ErrorCode::Forbidden, "viewers cannot edit the board"),
            (_, true) => (ErrorCode::ReadOnly, "a teacher made you read-only"),
            _ => return true,
        };
        self.reject(index, op_id, refuse.0, refuse.1.into());
        false
    }

    fn reject(&mut self, index: u16, op_id: u64, code: ErrorCode, message: String) {
        self.send(index, Message::from(Reject { op_id, code: code.to_u16(), message: clip_reason(message) }));
    }

    /// A durable write finished: ack the author and fan the update out. Returns a snapshot to
    /// store when compaction is due.
    pub fn committed(
        &mut self,
        participant: u16,
        op_id: u64,
        stored: Option<(u64, Vec<u8>)>,
    ) -> Option<SnapshotWrite> {
        self.send(participant, Message::from(Ack { op_ids: vec![op_id] }));
        let (seq, data) = stored?;
        self.last_seq = self.last_seq.max(seq);
        self.ops_since_snapshot += 1;
        metrics::counter!("easel_ops_out_total").increment(self.members.len().saturating_sub(1) as u64);
        self.broadcast(Some(participant), &Message::from(RemoteUpdate { from: participant, data }));
        (self.ops_since_snapshot >= self.config.snapshot_every).then(|| self.snapshot()).flatten()
    }

    /// A snapshot of the document covering every stored update, if there are updates since the
    /// last one.
    pub fn snapshot(&mut self) -> Option<SnapshotWrite> {
        if self.ops_since_snapshot == 0 {
            return None;
        }
        match self.doc.export(ExportMode::Snapshot) {
            Ok(data) => {
                self.ops_since_snapshot = 0;
                Some(SnapshotWrite { upto_seq: self.last_seq, data })
            }
            Err(e) => {
                tracing::error!(room = %self.id, "snapshot export failed: {e}");
                None
            }
        }
    }

    /// A member's cursor datagram. Returns whether a tick should be scheduled.
    pub fn cursor(&mut self, now: Instant, index: u16, c: &Cursor) -> bool {
        let Some(member) = self.members.get_mut(&index) else { return false };
        member.last_seen = now;
        if member.cursor.as_ref().is_some_and(|old| !is_newer(c.seq, old.seq)) {
            metrics::counter!("easel_stale_cursors_dropped_total").increment(1);
            return false;
        }
        member.cursor = Some(CursorState { seq: c.seq, x: c.x, y: c.y, changed: now, settled: false });
        self.bump_cursor(index);
        true
    }

    fn bump_cursor(&mut self, index: u16) {
        self.version += 1;
        if let Some(old) = self.cursor_version_of.insert(index, self.version) {
            self.cursor_versions.remove(&old);
        }
        self.cursor_versions.insert(self.version, index);
    }

    /// A member's presence heartbeat. Returns whether a tick should be scheduled.
    pub fn heartbeat(&mut self, now: Instant, index: u16, h: &Heartbeat) -> bool {
        let Some(member) = self.members.get_mut(&index) else { return false };
        member.last_seen = now;
        let entry = PresenceEntry { participant: index, seq: h.seq, status: h.status, tool: h.tool };
        match &member.presence {
            Some(old) if !is_newer(h.seq, old.seq) => return false,
            Some(old) if old.status == entry.status && old.tool == entry.tool => {
                member.presence = Some(entry);
                return false;
            }
            _ => member.presence = Some(entry),
        }
        self.bump_presence(index);
        true
    }

    fn bump_presence(&mut self, index: u16) {
        self.version += 1;
        if let Some(old) = self.presence_version_of.insert(index, self.version) {
            self.presence_versions.remove(&old);
        }
        self.presence_versions.insert(self.version, index);
    }

    /// One tick: each member gets the cursors and presence that changed since what it was last
    /// sent, as few datagrams as fit. A member whose datagram buffer is full is skipped; its
    /// next batch carries the newest state. Returns whether another tick is needed.
    pub fn tick(&mut self, now: Instant) -> bool {
        let settle: Vec<u16> = self
            .members
            .iter()
            .filter(|(_, m)| {
                m.cursor
                    .as_ref()
                    .is_some_and(|c| !c.settled && now.duration_since(c.changed) >= self.config.settle)
            })
            .map(|(i, _)| *i)
            .collect();
        for index in settle {
            if let Some(c) = self.members.get_mut(&index).and_then(|m| m.cursor.as_mut()) {
                c.settled = true;
            }
            self.bump_cursor(index);
        }
        let refresh =
            self.last_presence_refresh.is_none_or(|t| now.duration_since(t) >= self.config.presence_refresh);
        if refresh {
            self.last_presence_refresh = Some(now);
        }

        // Members that were last sent the same versions get the same batches: each distinct
        // batch is built and encoded once per tick and its bytes shared (a batch may carry the
        // receiver's own cursor, which receivers ignore: SPEC §8.3). In a busy room everyone
        // is at the same mark, so one encoding serves the whole class.
        let plan: Vec<(u16, Batch)> = self
            .members
            .iter()
            .filter_map(|(to, m)| {
                let slot = m.link()?.slot;
                Some((
                    *to,
                    Batch { slot, cursors: m.cursor_mark, presence: (!refresh).then_some(m.presence_mark) },
                ))
            })
            .collect();
        let mut encoded: HashMap<Batch, Vec<Bytes>> = HashMap::new();
        for (_, batch) in &plan {
            if !encoded.contains_key(batch) {
                encoded.insert(*batch, self.encode(*batch));
            }
        }
        let (mut again, mut sent, mut skipped) = (false, 0u64, 0u64);
        let version = self.version;
        for (to, batch) in plan {
            let datagrams = encoded.get(&batch).map_or(&[][..], Vec::as_slice);
            if datagrams.is_empty() {
                continue;
            }
            let Some(member) = self.members.get_mut(&to) else { continue };
            let Some(link) = member.link() else { continue };
            let need: usize = datagrams.iter().map(Bytes::len).sum();
            if link.datagrams.buffer_space() < need {
                // Its next batch carries the newest state instead.
                skipped += 1;
                again = true;
                continue;
            }
            for d in datagrams {
                if link.datagrams.send(d.clone()).is_err() {
                    break;
                }
                sent += 1;
            }
            member.cursor_mark = version;
            member.presence_mark = version;
        }
        metrics::counter!("easel_datagrams_out_total").increment(sent);
        if skipped > 0 {
            metrics::counter!("easel_datagram_ticks_skipped_total").increment(skipped);
        }
        again || self.members.values().any(|m| m.cursor.as_ref().is_some_and(|c| !c.settled))
    }

    /// The datagrams of one batch: cursors changed after `batch.cursors`, presence changed
    /// after `batch.presence` (or all of it, for a refresh).
    fn encode(&self, batch: Batch) -> Vec<Bytes> {
        let cursors: Vec<CursorEntry> = self
            .cursor_versions
            .range(batch.cursors + 1..)
            .filter_map(|(_, i)| {
                let c = self.members.get(i)?.cursor.as_ref()?;
                Some(CursorEntry { participant: *i, seq: c.seq, x: c.x, y: c.y })
            })
            .collect();
        let presence: Vec<PresenceEntry> = match batch.presence {
            None => self.members.values().filter_map(|m| m.presence).collect(),
            Some(mark) => self
                .presence_versions
                .range(mark + 1..)
                .filter_map(|(_, i)| self.members.get(i)?.presence)
                .collect(),
        };
        CursorBatch::split(batch.slot, &cursors)
            .map(Datagram::from)
            .chain(PresenceBatch::split(batch.slot, &presence).map(Datagram::from))
            .filter_map(|d| d.encode().ok().map(Bytes::from))
            .collect()
    }

    /// Evicts members silent for longer than the presence TTL, and detached members whose
    /// resume grace window has passed. A detached member's silence is not counted: a lost
    /// connection is given the whole window (SPEC §6.3).
    pub fn expire(&mut self, now: Instant) {
        let gone: Vec<u16> = self
            .members
            .iter()
            .filter(|(_, m)| match m.reach {
                Reach::Linked(_) => now.duration_since(m.last_seen) > self.config.presence_ttl,
                Reach::Detached { until, .. } => now >= until,
            })
            .map(|(i, _)| *i)
            .collect();
        for index in gone {
            tracing::info!(room = %self.id, index, "presence timeout");
            self.remove(now, index, ErrorCode::PresenceTimeout, true);
        }
    }

    fn wall_ms(&self, now: Instant) -> u64 {
        let (at, ms) = self.wall;
        if now >= at {
            ms.saturating_add(now.duration_since(at).as_millis() as u64)
        } else {
            ms.saturating_sub(at.duration_since(now).as_millis() as u64)
        }
    }

    fn store_side(&mut self, writes: Vec<class::Write>) {
        if !writes.is_empty() {
            self.side.push(Outcome { writes, ..Outcome::default() });
        }
    }

    /// Classroom writes to make durable, each with what to deliver once it is: the driver
    /// calls this after every input and hands the `then` part back to [`Room::deliver`].
    pub fn take_side(&mut self) -> Vec<Outcome> {
        std::mem::take(&mut self.side)
    }

    /// Sends what durable classroom writes were waiting to confirm.
    pub fn deliver(&mut self, then: Vec<Deliver>) {
        for d in then {
            match d {
                Deliver::To(to, message) => self.send(to, message),
                Deliver::All(message) => self.broadcast(None, &message),
            }
        }
    }

    /// The room's side state for a member that just joined or came back (SPEC §6.2).
    fn send_side_state(&mut self, index: u16) {
        for message in self.class.on_join() {
            self.send(index, message);
        }
        if !self.hands.is_empty() {
            self.send(index, Message::from(HandQueue { queue: self.hands.clone() }));
        }
        // Feed ids are only in SfuEvents: a newcomer needs the current publishers' to subscribe.
        let publishing: Vec<(u16, u64)> = self
            .members
            .iter()
            .filter_map(|(i, m)| Some((*i, m.feed?)))
            .filter(|(i, _)| *i != index)
            .collect();
        for (participant, feed) in publishing {
            let event = SfuEvent { participant, feed, event: SfuEventKind::Publishing };
            self.send(index, Message::from(event));
        }
    }

    /// A classroom request on a member's room stream: chat, polls, hands, moderation.
    pub fn class(&mut self, now: Instant, index: u16, message: Message) {
        self.touch(now, index);
        let now_ms = self.wall_ms(now);
        let Some(member) = self.members.get(&index) else { return };
        let info = member.info.clone();
        let who =
            Who { index, user: &info.user, name: &info.name, role: info.role, chat_muted: info.chat_muted };
        let outcome = match message {
            Message::ChatSend(c) => self.class.chat_send(who, c.client_msg_id, c.text, now, now_ms),
            Message::ChatDelete(d) => self.class.chat_delete(who, d.id),
            Message::ChatHistory(h) => self.class.chat_history(who, h.before, h.limit),
            Message::PollStart(p) => self.class.poll_start(who, p, now, now_ms),
            Message::PollAnswer(a) => self.class.poll_answer(who, a.poll_id, a.attempt_id, a.choices),
            Message::PollClose(c) => self.class.poll_close(who, c.poll_id),
            Message::HandRaise(_) => return self.hand(index, index, true),
            Message::HandLower(l) => {
                if l.participant != index && info.role != Role::Teacher {
                    return self.refuse(
                        index,
                        Kind::HandLower,
                        0,
                        ErrorCode::Forbidden,
                        "only a teacher lowers others' hands",
                    );
                }
                return self.hand(index, l.participant, false);
            }
            Message::Moderate(m) => return self.moderate(now, index, info.role, m),
            other => {
                let why = format!("{} is not a classroom request", other.kind());
                return self.refuse(index, other.kind(), 0, ErrorCode::UnexpectedMessage, &why);
            }
        };
        let Outcome { reply, writes, then } = outcome;
        self.deliver(reply);
        if !writes.is_empty() || !then.is_empty() {
            self.side.push(Outcome { writes, then, ..Outcome::default() });
        }
    }

    fn refuse(&mut self, to: u16, kind: Kind, reference: u64, code: ErrorCode, why: &str) {
        let fault = Fault {
            code: code.to_u16(),
            kind: kind.to_u8(),
            reference,
            message: clip_reason(why.to_owned()),
        };
        self.send(to, Message::from(fault));
    }

    /// Raises or lowers `whose` hand; everyone sees the new queue and the flag change.
    fn hand(&mut self, by: u16, whose: u16, raise: bool) {
        let Some(member) = self.members.get_mut(&whose) else {
            return self.refuse(by, Kind::HandLower, 0, ErrorCode::NotFound, "no such participant");
        };
        let queued = self.hands.contains(&whose);
        if raise == queued {
            return;
        }
        if raise {
            self.hands.push(whose);
        } else {
            self.hands.retain(|h| *h != whose);
        }
        member.info.hand_raised = raise;
        let updated = Message::from(ParticipantUpdated { participant: member.info.clone() });
        self.broadcast(None, &Message::from(HandQueue { queue: self.hands.clone() }));
        self.broadcast(None, &updated);
    }

    /// A teacher's moderation (SPEC §12): effects hold at once, and per user, so they survive
    /// a reconnect.
    fn moderate(&mut self, now: Instant, by: u16, role: Role, m: easel_proto::message::Moderate) {
        let kind = Kind::Moderate;
        if role != Role::Teacher {
            return self.refuse(
                by,
                kind,
                u64::from(m.target),
                ErrorCode::Forbidden,
                "only a teacher moderates",
            );
        }
        let Some(target) = self.members.get_mut(&m.target) else {
            return self.refuse(by, kind, u64::from(m.target), ErrorCode::NotFound, "no such participant");
        };
        let user = target.info.user.clone();
        let expires_ms = target.expires_ms;
        match m.action {
            ModAction::MuteChat | ModAction::UnmuteChat => {
                target.info.chat_muted = m.action == ModAction::MuteChat
            }
            ModAction::ReadOnly | ModAction::ReadWrite => {
                target.info.read_only = m.action == ModAction::ReadOnly
            }
            // Removal takes it out of the SFU room with the room (see `remove`); the camera
            // flag follows the SFU's word that the publisher is gone.
            ModAction::Remove | ModAction::StopMedia => {}
        }
        let info = target.info.clone();
        if m.action == ModAction::StopMedia && target.in_sfu {
            self.sfu.push(SfuOp::Unpublish { participant: m.target });
        }
        let write = self.class.set_flags(&user, |f| match m.action {
            ModAction::MuteChat | ModAction::UnmuteChat => f.chat_muted = info.chat_muted,
            ModAction::ReadOnly | ModAction::ReadWrite => f.read_only = info.read_only,
            ModAction::Remove => f.removed_until_ms = Some(expires_ms),
            ModAction::StopMedia => {}
        });
        let mut then = Vec::new();
        if m.action == ModAction::Remove {
            // The target hears why on its own stream; it is gone before the broadcast.
            if let Some(link) = self.members.get(&m.target).and_then(Member::link) {
                let _ = link.tx.try_send(Outbound::Left(ErrorCode::Removed, clip_reason(m.reason.clone())));
            }
            self.remove(now, m.target, ErrorCode::Removed, false);
        }
        let moderated = Message::from(Moderated { target: m.target, action: m.action, by, reason: m.reason });
        then.insert(0, Deliver::All(moderated));
        if m.action != ModAction::Remove {
            then.push(Deliver::All(Message::from(ParticipantUpdated { participant: info })));
        }
        self.side.push(Outcome { writes: write.into_iter().collect(), then, ..Outcome::default() });
    }

    /// SFU signalling on a member's room stream (SPEC §13). `SfuJoin` is checked against the
    /// role here (a viewer asking to publish is refused with `Forbidden`); the rest needs an
    /// `SfuJoin` first. What passes is queued for the SFU driver ([`Room::take_sfu`]).
    pub fn sfu(&mut self, now: Instant, index: u16, message: Message) {
        self.touch(now, index);
        let students_publish = self.config.students_publish;
        let Some(member) = self.members.get_mut(&index) else { return };
        let op = match message {
            Message::SfuJoin(j) => {
                let access = Access::for_role(member.info.role, students_publish);
                if j.publish && !access.can_publish() {
                    let why = format!("a {:?} may not publish video here", member.info.role).to_lowercase();
                    return self.refuse(index, Kind::SfuJoin, 0, ErrorCode::Forbidden, &why);
                }
                member.in_sfu = true;
                SfuOp::Join {
                    participant: index,
                    display: member.info.name.clone(),
                    access,
                    publish: j.publish,
                }
            }
            other if !member.in_sfu => {
                let why = "not in the SFU room: send SfuJoin first";
                return self.refuse(index, other.kind(), 0, ErrorCode::UnexpectedMessage, why);
            }
            message => SfuOp::Signal { participant: index, message },
        };
        self.sfu.push(op);
    }

    /// What the SFU driver reports for participant `index`: a reply for it alone, or an
    /// SFU-side event everyone hears (`SfuEvent`), with the camera flag following publishing.
    pub fn sfu_news(&mut self, index: u16, news: SfuNews) {
        let event = match news {
            SfuNews::Reply(message) => return self.send(index, message),
            SfuNews::Event(PeerEvent::Candidate { feed, candidate }) => {
                return self.send(index, crate::sfu::candidate_message(feed, candidate));
            }
            SfuNews::Event(event) => event,
        };
        let member = self.members.get_mut(&index);
        let (kind, feed, camera) = match event {
            PeerEvent::Joined => (SfuEventKind::Joined, 0, None),
            PeerEvent::Publishing { feed } => (SfuEventKind::Publishing, feed, Some(true)),
            PeerEvent::Unpublished { feed } => (SfuEventKind::Unpublished, feed, Some(false)),
            PeerEvent::Left => (SfuEventKind::Left, 0, Some(false)),
            PeerEvent::Candidate { .. } => return,
        };
        let Some(member) = member else {
            // Gone from the room already: others still learn its feed is gone.
            if matches!(kind, SfuEventKind::Unpublished | SfuEventKind::Left) {
                let event = SfuEvent { participant: index, feed, event: kind };
                self.broadcast(None, &Message::from(event));
            }
            return;
        };
        match kind {
            SfuEventKind::Publishing => member.feed = Some(feed),
            SfuEventKind::Unpublished => member.feed = None,
            SfuEventKind::Left => {
                member.feed = None;
                member.in_sfu = false;
            }
            SfuEventKind::Joined => {}
        }
        let updated = match camera {
            Some(on) if member.info.camera != on => {
                member.info.camera = on;
                Some(ParticipantUpdated { participant: member.info.clone() })
            }
            _ => None,
        };
        self.broadcast(None, &Message::from(SfuEvent { participant: index, feed, event: kind }));
        if let Some(updated) = updated {
            self.broadcast(None, &Message::from(updated));
        }
    }

    /// SFU work for the driver: the actor calls this after every input.
    pub fn take_sfu(&mut self) -> Vec<SfuOp> {
        std::mem::take(&mut self.sfu)
    }

    /// Everyone's attendance, open intervals included.
    pub fn attendance(&self) -> Vec<class::Attendance> {
        self.class.attendance().cloned().collect()
    }

    /// When [`Room::class_tick`] is next due (a poll timer).
    pub fn class_deadline(&self) -> Option<Instant> {
        self.class.next_deadline()
    }

    /// Poll timers and live poll counts.
    pub fn class_tick(&mut self, now: Instant) {
        let outcomes = self.class.tick(now);
        self.side.extend(outcomes);
    }

    /// Queues a message to one member; a full queue closes that member as a slow consumer.
    fn send(&mut self, to: u16, message: Message) {
        let Some(link) = self.members.get(&to).and_then(Member::link) else { return };
        if let Err(e) = link.tx.try_send(Outbound::Message(message)) {
            self.undeliverable(to, &e);
        }
    }

    /// Queues a message to every member except `except`.
    fn broadcast(&mut self, except: Option<u16>, message: &Message) {
        let frame = match message.encode() {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) => {
                tracing::error!(room = %self.id, "encode {:?}: {e}", message.kind());
                return;
            }
        };
        let mut failed = Vec::new();
        for (index, member) in &self.members {
            let Some(link) = member.link().filter(|_| Some(*index) != except) else { continue };
            if let Err(e) = link.tx.try_send(Outbound::Frame(frame.clone())) {
                failed.push((*index, e));
            }
        }
        for (index, e) in failed {
            self.undeliverable(index, &e);
        }
    }

    /// A member's queue refused a message: full means a slow consumer (closed); closed means
    /// its stream is already gone. Its connection then either leaves or detaches it, but that
    /// command may still be on its way, and a lost connection must not show as a leave: so it
    /// is detached quietly meanwhile.
    fn undeliverable(&mut self, index: u16, e: &mpsc::error::TrySendError<Outbound>) {
        // Time inside the state machine comes from its inputs: the member's last sign of life.
        let Some(member) = self.members.get_mut(&index) else { return };
        let now = member.last_seen;
        match e {
            mpsc::error::TrySendError::Full(_) => {
                tracing::warn!(room = %self.id, index, "reliable queue overflowed: closing slow consumer");
                metrics::counter!("easel_slow_consumers_total").increment(1);
                if let Some(link) = member.link() {
                    link.kill.cancel();
                }
                self.remove(now, index, ErrorCode::SlowConsumer, false);
            }
            mpsc::error::TrySendError::Closed(_) => {
                member.reach = Reach::Detached { until: now + self.config.resume_grace, lost: now };
            }
        }
    }
}

/// Cuts a human-readable reason to the wire limit, on a character boundary.
pub(crate) fn clip_reason(mut reason: String) -> String {
    let max = easel_proto::limits::MAX_REASON_LEN;
    if reason.len() > max {
        let end = (0..=max).rev().find(|&i| reason.is_char_boundary(i)).unwrap_or(0);
        reason.truncate(end);
    }
    reason
}

/// Imports Loro bytes; returns whether some of it is pending (missing dependencies). A panic
/// inside Loro on hostile bytes is turned into an error rather than killing the room.
fn import(doc: &LoroDoc, data: &[u8]) -> Result<bool, String> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| doc.import(data))) {
        Ok(Ok(status)) => Ok(status.pending.is_some()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("update could not be decoded".into()),
    }
}

/// A message to a room actor.
pub enum Command {
    /// Join; the reply carries the participant number and what the client lacks.
    Join(JoinRequest, oneshot::Sender<Result<Joined, ErrorCode>>),
    /// Leave: the stream or session ended cleanly.
    Leave {
        /// Who.
        participant: u16,
        /// The connection ending it (see [`Link::conn`]).
        conn: u64,
        /// Why.
        code: ErrorCode,
    },
    /// The connection was lost: keep the place for the resume grace window.
    Detach {
        /// Who.
        participant: u16,
        /// The lost connection (see [`Link::conn`]).
        conn: u64,
    },
    /// A board update.
    Update {
        /// Author.
        participant: u16,
        /// Its op id.
        op_id: u64,
        /// Loro bytes.
        data: Vec<u8>,
    },
    /// A heartbeat datagram.
    Heartbeat(u16, Heartbeat),
    /// Some other sign of life.
    Touch(u16),
    /// Queue this message to the participant, in order with the room's own (refusals decided
    /// by the connection, e.g. rate limits).
    Reply(u16, Message),
    /// Send the participant what it lacks after `since` on a snapshot stream.
    Sync {
        /// Who.
        participant: u16,
        /// Its encoded version vector.
        since: Vec<u8>,
    },
    /// A classroom request (chat, polls, hands, moderation) from a participant.
    Class(u16, Message),
    /// SFU signalling (`SfuJoin`, `SfuSdp`, `SfuCandidate`, `SfuSubscribe`, `SfuLeave`) from a
    /// participant.
    Sfu(u16, Message),
    /// What the SFU driver reports for a participant.
    SfuNews(u16, SfuNews),
    /// The room's attendance, as it is now.
    Attendance(oneshot::Sender<Vec<class::Attendance>>),
    /// Persist everything and stop (server shutdown).
    Shutdown(oneshot::Sender<()>),
}

/// A connection's handle to a room actor.
#[derive(Clone)]
pub struct Handle {
    id: Arc<str>,
    tx: mpsc::Sender<Command>,
    cursors: Arc<CursorInbox>,
}

/// Cursor positions on their way to a room: one per participant, the newest. Cursor datagrams
/// can arrive at any rate (300 participants at 30 Hz is 9,000 a second); queued one command
/// each, they would fill the room's queue and hold reliable traffic (edits, chat) behind
/// thousands of positions the next tick replaces anyway. Here they coalesce before the room,
/// which takes them all at once.
#[derive(Debug, Default)]
pub struct CursorInbox {
    latest: Mutex<HashMap<u16, Cursor>>,
    ready: tokio::sync::Notify,
}

impl CursorInbox {
    /// Keeps `cursor` unless a newer one of the participant is already waiting.
    fn offer(&self, participant: u16, cursor: Cursor) {
        {
            let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
            match latest.get(&participant) {
                Some(waiting) if !is_newer(cursor.seq, waiting.seq) => return,
                _ => latest.insert(participant, cursor),
            };
        }
        self.ready.notify_one();
    }

    fn take(&self) -> HashMap<u16, Cursor> {
        std::mem::take(&mut *self.latest.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Handle {
    /// Hands a participant's cursor datagram to the room (latest wins; never blocks).
    pub fn cursor(&self, participant: u16, cursor: Cursor) {
        self.cursors.offer(participant, cursor);
    }

    /// The room id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Sends a command, waiting for queue space (reliable-stream messages exert backpressure on
    /// their stream). Fails if the room has stopped.
    pub async fn send(&self, cmd: Command) -> Result<(), Command> {
        self.tx.send(cmd).await.map_err(|e| e.0)
    }

    /// Sends a datagram-borne command without waiting; a full queue drops it (latest-wins data).
    pub fn offer(&self, cmd: Command) {
        if self.tx.try_send(cmd).is_err() {
            metrics::counter!("easel_datagrams_dropped_total", "reason" => "room_busy").increment(1);
        }
    }

    /// Whether the actor has stopped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Whether both handles reach the same actor (a reloaded room is a different one).
    pub fn same(&self, other: &Self) -> bool {
        self.tx.same_channel(&other.tx)
    }
}

/// Loads a room from the store and starts its actor, with the SFU its members' video goes to,
/// if any. `on_exit` runs when the actor stops (idle unload or shutdown), before its channel
/// closes for good.
pub async fn spawn(
    id: Arc<str>,
    config: Config,
    store: Store,
    sfu: Option<Arc<dyn Sfu>>,
    on_exit: impl FnOnce(&Handle) + Send + 'static,
) -> Result<Handle, StoreError> {
    let (log, side) = {
        let (store, room) = (store.clone(), id.clone());
        tokio::task::spawn_blocking(move || {
            Ok::<_, StoreError>((store.load(&room)?, store.load_side(&room)?))
        })
        .await
        .map_err(|e| StoreError::Corrupt {
            room: id.to_string(),
            seq: 0,
            reason: e.to_string(),
        })??
    };
    let snapshot = log.snapshot.map(|s| (s.upto_seq, s.data));
    let updates = log.updates.into_iter().map(|(seq, r)| (seq, r.data)).collect();
    let (now, now_ms) = (Instant::now(), unix_ms());
    let class = Class::load(side, config.chat_per_min, now, now_ms);
    let room = Room::new(id.clone(), config, snapshot, updates, class, now, now_ms)
        .map_err(|reason| StoreError::Corrupt { room: id.to_string(), seq: 0, reason })?;
    let (tx, rx) = mpsc::channel(4096);
    let handle = Handle { id, tx, cursors: Arc::default() };
    metrics::gauge!("easel_rooms").increment(1.0);
    let sfu = sfu.map(|sfu| Bridge { sfu, driver: None });
    tokio::spawn(run(room, rx, store, sfu, handle.clone(), on_exit));
    Ok(handle)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

type Committing = std::pin::Pin<Box<dyn std::future::Future<Output = Committed> + Send>>;

/// A durable write that finished, in submission order.
enum Committed {
    /// A board update (or a duplicate's barrier).
    Op {
        participant: u16,
        op_id: u64,
        result: Result<Option<(u64, Vec<u8>)>, StoreError>,
        received: Option<Instant>,
    },
    /// Classroom records, and what waited for them.
    Side { result: Result<(), StoreError>, then: Vec<Deliver> },
}

fn side(store: &Store, room: &str, outcome: Outcome) -> Committing {
    let (store, room) = (store.clone(), room.to_owned());
    Box::pin(async move {
        let result = if outcome.writes.is_empty() { Ok(()) } else { store.side(&room, outcome.writes).await };
        Committed::Side { result, then: outcome.then }
    })
}

/// The SFU a room's video goes to, and its driver once a member has used it.
struct Bridge {
    sfu: Arc<dyn Sfu>,
    driver: Option<mpsc::UnboundedSender<SfuOp>>,
}

impl Bridge {
    /// Hands the room's SFU work to the driver, starting it on first use.
    fn pass(&mut self, room: &mut Room, handle: &Handle) {
        for op in room.take_sfu() {
            let driver =
                self.driver.get_or_insert_with(|| crate::sfu::spawn(self.sfu.clone(), handle.clone()));
            let _ = driver.send(op);
        }
    }
}

async fn run(
    mut room: Room,
    mut rx: mpsc::Receiver<Command>,
    store: Store,
    mut sfu: Option<Bridge>,
    handle: Handle,
    on_exit: impl FnOnce(&Handle) + Send + 'static,
) {
    let mut committing: FuturesOrdered<Committing> = FuturesOrdered::new();
    let mut next_tick: Option<tokio::time::Instant> = None;
    let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let tick = room.config.tick;
    let mut shutdown: Option<oneshot::Sender<()>> = None;

    loop {
        for outcome in room.take_side() {
            committing.push_back(side(&store, room.id(), outcome));
        }
        if let Some(sfu) = &mut sfu {
            sfu.pass(&mut room, &handle);
        }
        let tick_at = next_tick;
        let class_at = room.class_deadline().map(tokio::time::Instant::from_std);
        tokio::select! {
            () = handle.cursors.ready.notified(), if shutdown.is_none() => {
                let now = Instant::now();
                let mut moved = false;
                for (participant, cursor) in handle.cursors.take() {
                    moved |= room.cursor(now, participant, &cursor);
                }
                if moved {
                    next_tick.get_or_insert_with(|| tokio::time::Instant::now() + tick);
                }
            }
            cmd = rx.recv(), if shutdown.is_none() => {
                let Some(mut cmd) = cmd else { break };
                let now = Instant::now();
                loop {
                let Command::Update { participant, op_id, data } = cmd else {
                match cmd {
                    Command::Join(req, reply) => {
                        let _ = reply.send(room.join(now, req));
                        next_tick.get_or_insert_with(|| tokio::time::Instant::now() + tick);
                    }
                    Command::Leave { participant, conn, code } => room.leave(now, participant, conn, code),
                    Command::Detach { participant, conn } => room.detach(now, participant, conn),
                    Command::Update { .. } => {}
                    Command::Heartbeat(i, h) => {
                        if room.heartbeat(now, i, &h) {
                            next_tick.get_or_insert_with(|| tokio::time::Instant::now() + tick);
                        }
                    }
                    Command::Touch(i) => room.touch(now, i),
                    Command::Reply(i, message) => {
                        room.touch(now, i);
                        room.send(i, message);
                    }
                    Command::Sync { participant, since } => room.sync(now, participant, &since),
                    Command::Class(participant, message) => room.class(now, participant, message),
                    Command::Sfu(participant, message) => room.sfu(now, participant, message),
                    Command::SfuNews(participant, news) => room.sfu_news(participant, news),
                    Command::Attendance(reply) => {
                        let _ = reply.send(room.attendance());
                    }
                    Command::Shutdown(done) => shutdown = Some(done),
                }
                break;
                };
                // The updates queued behind this one go with it: Loro's cost per import grows
                // with the room's history, and one import of the lot pays it once.
                let mut ops = vec![(participant, op_id, data)];
                let mut next = None;
                while ops.len() < UPDATE_BATCH {
                    match rx.try_recv() {
                        Ok(Command::Update { participant, op_id, data }) => ops.push((participant, op_id, data)),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                metrics::counter!("easel_ops_in_total").increment(ops.len() as u64);
                for p in room.updates(now, ops) {
                    committing.push_back(persist(&store, room.id(), p));
                }
                match next {
                    Some(c) => cmd = c,
                    None => break,
                }
                }
            }
            Some(c) = committing.next() => match c {
                Committed::Op { participant, op_id, result: Ok(stored), received } => {
                    if let Some(received) = received {
                        metrics::histogram!("easel_op_ingest_to_send_seconds").record(received.elapsed().as_secs_f64());
                    }
                    if let Some(snap) = room.committed(participant, op_id, stored) {
                        write_snapshot(&store, room.id(), snap).await;
                    }
                }
                Committed::Op { participant, op_id, result: Err(e), .. } => {
                    tracing::error!(room = %room.id(), op_id, "durable write failed: {e}");
                    room.reject(participant, op_id, ErrorCode::StorageUnavailable, "storage unavailable".into());
                }
                Committed::Side { result: Ok(()), then } => room.deliver(then),
                // Nothing that waited on it is confirmed; the requesters see no echo.
                Committed::Side { result: Err(e), .. } => {
                    tracing::error!(room = %room.id(), "classroom write failed: {e}");
                }
            },
            () = async { if let Some(at) = class_at { tokio::time::sleep_until(at).await } }, if class_at.is_some() => {
                room.class_tick(Instant::now());
            }
            () = async { if let Some(at) = tick_at { tokio::time::sleep_until(at).await } }, if tick_at.is_some() => {
                next_tick = room.tick(Instant::now()).then(|| tokio::time::Instant::now() + tick);
            }
            _ = housekeeping.tick() => {
                let now = Instant::now();
                metrics::histogram!("easel_room_queue_depth").record(rx.len() as f64);
                metrics::histogram!("easel_outbound_queue_depth").record(room.outbound_depth() as f64);
                room.expire(now);
                room.class_tick(now);
                if room.idle(now) && committing.is_empty() && rx.is_empty() {
                    break;
                }
            }
        }
        if shutdown.is_some() && committing.is_empty() {
            break;
        }
    }
    // Stop taking commands before the final snapshot so nothing is accepted and then lost.
    rx.close();
    // Acks and echoes first, while everyone is still there to get them; then the leaves,
    // whose attendance records are stored before the room is gone.
    for round in 0..2 {
        for outcome in room.take_side() {
            committing.push_back(side(&store, room.id(), outcome));
        }
        while let Some(c) = committing.next().await {
            match c {
                Committed::Op { participant, op_id, result: Ok(stored), .. } => {
                    let _ = room.committed(participant, op_id, stored);
                }
                Committed::Side { result: Ok(()), then } => room.deliver(then),
                Committed::Op { .. } | Committed::Side { .. } => {}
            }
        }
        if round == 0 {
            if let Some(snap) = room.snapshot() {
                write_snapshot(&store, room.id(), snap).await;
            }
            let members: Vec<u16> = room.members.keys().copied().collect();
            for index in members {
                room.remove(Instant::now(), index, ErrorCode::ShuttingDown, true);
            }
        }
    }
    // The leaves above take their members out of the SFU; dropping the driver's sender then
    // ends it once they are done.
    if let Some(sfu) = &mut sfu {
        sfu.pass(&mut room, &handle);
    }
    metrics::gauge!("easel_rooms").decrement(1.0);
    on_exit(&handle);
    if let Some(done) = shutdown {
        let _ = done.send(());
    }
}

fn persist(store: &Store, room: &str, p: Persist) -> Committing {
    let (store, room) = (store.clone(), room.to_owned());
    Box::pin(async move {
        match p {
            Persist::Append { participant, op_id, record, received } => {
                let data = record.data.clone();
                let result = store.append(&room, record).await.map(|seq| Some((seq, data)));
                Committed::Op { participant, op_id, result, received: Some(received) }
            }
            Persist::Barrier { participant, op_id } => {
                let result = store.flush().await.map(|()| None);
                Committed::Op { participant, op_id, result, received: None }
            }
        }
    })
}

async fn write_snapshot(store: &Store, room: &str, snap: SnapshotWrite) {
    if let Err(e) = store.snapshot(room, snap.upto_seq, snap.data).await {
        tracing::error!(room, "snapshot write failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use easel_proto::datagram::{Status, Tool};
    use easel_transport::TransportError;

    use super::*;

    /// Captures datagrams; `space` is what `buffer_space` reports.
    struct Capture {
        sent: Mutex<Vec<Datagram>>,
        space: Mutex<usize>,
    }

    impl DatagramSender for Capture {
        fn send(&self, datagram: Bytes) -> Result<(), TransportError> {
            let d = Datagram::decode(&datagram).expect("the room sends valid datagrams");
            self.sent.lock().expect("lock").push(d);
            Ok(())
        }

        fn buffer_space(&self) -> usize {
            *self.space.lock().expect("lock")
        }
    }

    impl Capture {
        fn take(&self) -> Vec<Datagram> {
            std::mem::take(&mut *self.sent.lock().expect("lock"))
        }

        fn cursors(&self) -> Vec<CursorEntry> {
            self.take()
                .into_iter()
                .filter_map(|d| match d {
                    Datagram::CursorBatch(b) => Some(b.cursors),
                    _ => None,
                })
                .flatten()
                .collect()
        }
    }

    struct Member {
        index: u16,
        rx: mpsc::Receiver<Outbound>,
        datagrams: Arc<Capture>,
    }

    impl Member {
        fn messages(&mut self) -> Vec<Message> {
            let mut out = Vec::new();
            while let Ok(o) = self.rx.try_recv() {
                match o {
                    Outbound::Message(m) => out.push(m),
                    Outbound::Frame(bytes) => {
                        let mut decoder = easel_proto::FrameDecoder::new(easel_proto::limits::MAX_FRAME_LEN);
                        decoder.push(&bytes);
                        out.push(decoder.decode().expect("a valid frame").expect("a whole frame"));
                    }
                    Outbound::Snapshot(_) | Outbound::Left(..) => {}
                }
            }
            out
        }
    }

    fn room(config: Config, t0: Instant) -> Room {
        Room::new(Arc::from("s/c/r"), config, None, Vec::new(), Class::default(), t0, 0).expect("empty room")
    }

    fn join(room: &mut Room, now: Instant, user: &str, capacity: usize) -> Member {
        join_on(room, now, user, 0, None, capacity).1
    }

    /// Joins through connection `conn`, resuming participant `resume` if given.
    fn join_on(
        room: &mut Room,
        now: Instant,
        user: &str,
        conn: u64,
        resume: Option<u16>,
        capacity: usize,
    ) -> (Joined, Member) {
        let (tx, rx) = mpsc::channel(capacity);
        let datagrams = Arc::new(Capture { sent: Mutex::default(), space: Mutex::new(64 * 1024) });
        let link = Link { tx, datagrams: datagrams.clone(), kill: CancellationToken::new(), slot: 0, conn };
        let req = JoinRequest {
            user: user.into(),
            name: user.into(),
            role: Role::Student,
            client_id: format!("{user}-client"),
            since: None,
            resume,
            expires_ms: u64::MAX,
            link,
        };
        let joined = room.join(now, req).expect("join");
        let member = Member { index: joined.participant, rx, datagrams };
        (joined, member)
    }

    /// Membership changes a member was told of: (index, code) for leaves, (index, 0) for joins.
    fn membership(m: &mut Member) -> Vec<(&'static str, u16, u16)> {
        m.messages()
            .into_iter()
            .filter_map(|m| match m {
                Message::ParticipantJoined(j) => Some(("joined", j.participant.index, 0)),
                Message::ParticipantLeft(l) => Some(("left", l.index, l.code)),
                _ => None,
            })
            .collect()
    }

    fn linked(room: &Room, index: u16) -> bool {
        room.members.get(&index).is_some_and(|m| m.link().is_some())
    }

    fn cursor(seq: u16, x: i32) -> Cursor {
        Cursor { slot: 0, seq, x, y: 0 }
    }

    #[test]
    fn cursors_are_coalesced_per_tick_newest_wins() {
        let t0 = Instant::now();
        let mut room = room(Config::default(), t0);
        let a = join(&mut room, t0, "ada", 64);
        let b = join(&mut room, t0, "bob", 64);
        for (seq, x) in [(1, 10), (2, 20), (3, 30)] {
            assert!(room.cursor(t0, a.index, &cursor(seq, x)));
        }
        // An older datagram arriving late changes nothing.
        assert!(!room.cursor(t0, a.index, &cursor(2, 999)));
        room.tick(t0);
        let got = b.datagrams.cursors();
        assert_eq!(got.len(), 1, "one entry per cursor per tick");
        assert_eq!((got[0].participant, got[0].seq, got[0].x), (a.index, 3, 30));
        // A's batch is B's batch: it may carry A's own entry, which receivers ignore.
        assert!(a.datagrams.cursors().iter().all(|c| c.participant == a.index));
        // Nothing changed: the next tick sends nothing.
        room.tick(t0 + Duration::from_millis(16));
        assert!(b.datagrams.cursors().is_empty());
        // Once settled, the last position is repeated once (repairs a lost final datagram).
        room.tick(t0 + Duration::from_millis(200));
        assert_eq!(b.datagrams.cursors().iter().map(|c| c.x).collect::<Vec<_>>(), [30]);
        room.tick(t0 + Duration::from_millis(400));
        assert!(b.datagrams.cursors().is_empty());
    }

    #[test]
    fn a_slow_subscriber_gets_fewer_fresher_frames() {
        let t0 = Instant::now();
        let mut room = room(Config::default(), t0);
        let a = join(&mut room, t0, "ada", 64);
        let b = join(&mut room, t0, "bob", 64);
        *b.datagrams.space.lock().expect("lock") = 0;
        for seq in 1..=10u16 {
            let now = t0 + Duration::from_millis(u64::from(seq) * 16);
            room.cursor(now, a.index, &cursor(seq, i32::from(seq)));
            room.tick(now);
        }
        assert!(b.datagrams.take().is_empty(), "no room in the send buffer: skipped, not queued");
        *b.datagrams.space.lock().expect("lock") = 64 * 1024;
        room.tick(t0 + Duration::from_millis(176));
        let got = b.datagrams.cursors();
        assert_eq!(got.iter().map(|c| c.seq).collect::<Vec<_>>(), [10], "only the newest position");
    }

    #[test]
    fn a_300_cursor_tick_splits_at_the_mtu() {
        let t0 = Instant::now();
        let mut room = room(Config::default(), t0);
        let members: Vec<Member> = (0..301).map(|i| join(&mut room, t0, &format!("u{i}"), 1024)).collect();
        for m in &members[1..] {
            room.cursor(t0, m.index, &cursor(1, 5));
        }
        room.tick(t0);
        let datagrams = members[0].datagrams.take();
        let batches: Vec<usize> = datagrams
            .iter()
            .filter_map(|d| match d {
                Datagram::CursorBatch(b) => Some(b.cursors.len()),
                _ => None,
            })
            .collect();
        assert_eq!(batches.iter().sum::<usize>(), 300);
        assert_eq!(batches.len(), 300usize.div_ceil(CursorBatch::MAX_ENTRIES));
        assert!(
            datagrams
                .iter()
                .all(|d| d.encode().expect("encode").len() <= easel_proto::limits::MAX_DATAGRAM_LEN)
        );
    }

    #[test]
    fn silence_past_the_ttl_evicts_and_tells_everyone() {
        let t0 = Instant::now();
        let config = Config { presence_ttl: Duration::from_secs(10), ..Config::default() };
        let mut room = room(config, t0);
        let mut a = join(&mut room, t0, "ada", 64);
        let b = join(&mut room, t0, "bob", 64);
        a.messages();
        let beat = Heartbeat { slot: 0, seq: 1, status: Status::Active, tool: Tool::Pen };
        room.heartbeat(t0 + Duration::from_secs(8), a.index, &beat);
        room.expire(t0 + Duration::from_secs(11));
        assert_eq!(room.len(), 1, "bob was silent for 11 s");
        let left: Vec<(u16, u16)> = a
            .messages()
            .into_iter()
            .filter_map(|m| match m {
                Message::ParticipantLeft(l) => Some((l.index, l.code)),
                _ => None,
            })
            .collect();
        assert_eq!(left, [(b.index, ErrorCode::PresenceTimeout.to_u16())]);
    }

    #[test]
    fn full_rooms_refuse_and_full_queues_close_the_slow_consumer() {
        let t0 = Instant::now();
        let config = Config { max_participants: 2, ..Config::default() };
        let mut room = room(config, t0);
        let a = join(&mut room, t0, "ada", 64);
        let _b = join(&mut room, t0, "bob", 2);
        let (tx, _rx) = mpsc::channel(4);
        let link =
            Link { tx, datagrams: a.datagrams.clone(), kill: CancellationToken::new(), slot: 0, conn: 0 };
        let req = JoinRequest {
            user: "cyd".into(),
            name: "cyd".into(),
            role: Role::Student,
            client_id: "c".into(),
            since: None,
            resume: None,
            expires_ms: u64::MAX,
            link,
        };
        assert_eq!(room.join(t0, req).err(), Some(ErrorCode::RoomFull));

        // Bob never reads: his 2-slot queue overflows and he is removed, not waited for.
        let kill = room.members.get(&1).and_then(|m| m.link()).map(|l| l.kill.clone()).expect("bob");
        for i in 0..5 {
            room.broadcast(Some(a.index), &Message::from(Ack { op_ids: vec![i] }));
        }
        assert!(kill.is_cancelled(), "bob's session is closed as a slow consumer");
        assert_eq!(room.len(), 1);
    }

    #[test]
    fn sfu_signalling_is_checked_by_role_and_sfu_events_drive_the_camera_flag() {
        use easel_proto::message::{SfuJoin, SfuLeave};
        let t0 = Instant::now();
        let mut room = room(Config { students_publish: false, ..Config::default() }, t0);
        let mut a = join(&mut room, t0, "ada", 64);
        let mut b = join(&mut room, t0, "bob", 64);
        a.messages();
        b.messages();
        let faults = |m: &mut Member| -> Vec<(u16, u8)> {
            m.messages()
                .into_iter()
                .filter_map(|m| match m {
                    Message::Fault(f) => Some((f.code, f.kind)),
                    _ => None,
                })
                .collect()
        };

        room.sfu(t0, a.index, Message::from(SfuJoin { publish: true }));
        assert_eq!(
            faults(&mut a),
            [(ErrorCode::Forbidden.to_u16(), Kind::SfuJoin.to_u8())],
            "students may not here"
        );
        room.sfu(t0, a.index, Message::from(SfuLeave { feed: 0 }));
        assert_eq!(faults(&mut a), [(ErrorCode::UnexpectedMessage.to_u16(), Kind::SfuLeave.to_u8())]);
        assert!(room.take_sfu().is_empty(), "nothing refused reaches the SFU");

        room.sfu(t0, a.index, Message::from(SfuJoin { publish: false }));
        let asked = SfuOp::Join {
            participant: a.index,
            display: "ada".into(),
            access: Access::Subscribe,
            publish: false,
        };
        assert_eq!(room.take_sfu(), [asked]);

        room.sfu_news(a.index, SfuNews::Event(PeerEvent::Publishing { feed: 7 }));
        let seen: Vec<String> = b
            .messages()
            .into_iter()
            .filter_map(|m| match m {
                Message::SfuEvent(e) => Some(format!("{:?} {} {}", e.event, e.participant, e.feed)),
                Message::ParticipantUpdated(u) => {
                    Some(format!("camera {} {}", u.participant.index, u.participant.camera))
                }
                _ => None,
            })
            .collect();
        assert_eq!(seen, [format!("Publishing {} 7", a.index), format!("camera {} true", a.index)]);
        let mut c = join(&mut room, t0, "cyd", 64);
        let told = c.messages().into_iter().any(|m| {
            matches!(m, Message::SfuEvent(e) if e.participant == a.index && e.feed == 7 && e.event == SfuEventKind::Publishing)
        });
        assert!(told, "a newcomer learns who publishes which feed");

        room.leave(t0, a.index, 0, ErrorCode::Normal);
        assert_eq!(
            room.take_sfu(),
            [SfuOp::Leave { participant: a.index }],
            "leaving the room leaves the SFU"
        );
    }

    #[test]
    fn reasons_are_clipped_on_a_character_boundary() {
        let long = "é".repeat(200); // 400 bytes, every other byte mid-character
        let clipped = clip_reason(long);
        assert!(clipped.len() <= easel_proto::limits::MAX_REASON_LEN);
        assert_eq!(clipped, "é".repeat(128));
        assert_eq!(clip_reason("short".into()), "short");
    }

    #[test]
    fn invalid_updates_leave_the_doc_untouched() {
        let t0 = Instant::now();
        let mut room = room(Config::default(), t0);
        let mut a = join(&mut room, t0, "ada", 64);
        let before = room.version();
        assert!(room.update(t0, a.index, 1, b"garbage".to_vec()).is_none());
        assert_eq!(room.version(), before);
        let rejected = a.messages().into_iter().any(|m| {
            matches!(m, Message::Reject(r) if r.op_id == 1 && r.code == ErrorCode::InvalidUpdate.to_u16())
        });
        assert!(rejected);
    }

    #[test]
    fn updates_queued_together_import_once_and_are_told_apart() {
        let t0 = Instant::now();
        let mut room = room(Config::default(), t0);
        let mut a = join(&mut room, t0, "ada", 64);
        let edit = |text: &str| {
            let doc = LoroDoc::new();
            doc.get_text("t").insert(0, text).expect("insert");
            doc.export(ExportMode::all_updates()).expect("export")
        };
        let (old, fresh, also) = (edit("old"), edit("fresh"), edit("also"));
        assert!(matches!(room.update(t0, a.index, 1, old.clone()), Some(Persist::Append { .. })));
        a.messages();
        let batch = vec![
            (a.index, 2, fresh),
            (a.index, 3, old),
            (a.index, 4, b"garbage".to_vec()),
            (a.index, 5, also),
        ];
        let out = room.updates(t0, batch);
        let kinds: Vec<(u64, &str)> = out
            .iter()
            .map(|p| match p {
                Persist::Append { op_id, .. } => (*op_id, "append"),
                Persist::Barrier { op_id, .. } => (*op_id, "barrier"),
            })
            .collect();
        assert_eq!(kinds, [(2, "append"), (3, "barrier"), (5, "append")], "the resend is a duplicate");
        let rejected: Vec<u64> = a
            .messages()
            .into_iter()
            .filter_map(|m| match m {
                Message::Reject(r) if r.code == ErrorCode::InvalidUpdate.to_u16() => Some(r.op_id),
                _ => None,
            })
            .collect();
        assert_eq!(rejected, [4], "the bad one alone is refused");
        let text = room.doc.get_text("t").to_string();
        assert!(text.contains("fresh") && text.contains("also") && !text.contains("garbage"), "{text}");
    }

    #[test]
    fn a_detached_member_is_reattached_with_its_number_and_nobody_is_told() {
        let t0 = Instant::now();
        let mut room = room(Config::default(), t0);
        let (_, mut a) = join_on(&mut room, t0, "ada", 1, None, 64);
        let (_, mut b) = join_on(&mut room, t0, "bob", 2, None, 64);
        membership(&mut a);
        membership(&mut b);

        room.detach(t0 + Duration::from_secs(1), a.index, 1);
        assert!(!linked(&room, a.index));
        assert!(
            matches!(a.rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)),
            "the old link is dropped, which ends the old writer"
        );
        // Messages meanwhile are discarded for it; the others notice nothing.
        room.broadcast(Some(b.index), &Message::from(Ack { op_ids: vec![7] }));
        assert_eq!(room.len(), 2);

        let (joined, mut a2) = join_on(&mut room, t0 + Duration::from_secs(5), "ada", 3, Some(a.index), 64);
        assert!(joined.resumed);
        assert_eq!(joined.participant, a.index, "same participant number");
        assert_eq!(joined.participants.len(), 2);
        assert!(linked(&room, a.index));
        assert_eq!(membership(&mut b), [], "no ParticipantLeft or ParticipantJoined for a resume");
        room.broadcast(Some(b.index), &Message::from(Ack { op_ids: vec![8] }));
        assert_eq!(a2.messages().len(), 1, "the new link gets what is sent after the resume");

        // Resuming someone else's place is a normal join.
        let (joined, _) = join_on(&mut room, t0, "eve", 4, Some(b.index), 64);
        assert!(!joined.resumed);
        assert_ne!(joined.participant, b.index);
    }

    #[test]
    fn a_detached_member_is_evicted_at_the_grace_deadline() {
        let t0 = Instant::now();
        let config = Config {
            resume_grace: Duration::from_secs(30),
            presence_ttl: Duration::from_secs(100),
            ..Config::default()
        };
        let mut room = room(config, t0);
        let (_, a) = join_on(&mut room, t0, "ada", 1, None, 64);
        let (_, mut b) = join_on(&mut room, t0, "bob", 2, None, 64);
        membership(&mut b);
        let lost = t0 + Duration::from_secs(1);
        room.detach(lost, a.index, 1);
        room.expire(lost + Duration::from_millis(29_999));
        assert_eq!(room.len(), 2, "held for the whole window");
        assert_eq!(membership(&mut b), []);
        room.expire(lost + Duration::from_secs(30));
        assert_eq!(room.len(), 1);
        assert_eq!(membership(&mut b), [("left", a.index, ErrorCode::PresenceTimeout.to_u16())]);
        // Too late: a resume now is a normal join under a new number.
        let (joined, _) = join_on(&mut room, lost + Duration::from_secs(31), "ada", 3, Some(a.index), 64);
        assert!(!joined.resumed);
        assert_eq!(membership(&mut b), [("joined", joined.participant, 0)]);
    }

    #[test]
    fn a_detached_member_outlives_the_presence_ttl() {
        let t0 = Instant::now();
        let config = Config {
            resume_grace: Duration::from_secs(30),
            presence_ttl: Duration::from_secs(10),
            ..Config::default()
        };
        let mut room = room(config, t0);
        let (_, a) = join_on(&mut room, t0, "ada", 1, None, 64);
        let (_, mut b) = join_on(&mut room, t0, "bob", 2, None, 64);
        room.detach(t0, a.index, 1);
        for secs in [9, 18, 27] {
            let now = t0 + Duration::from_secs(secs);
            room.touch(now, b.index);
            room.expire(now + Duration::from_secs(2));
        }
        assert_eq!(room.len(), 2, "27 s of silence inside the grace window is not a timeout");
        assert_eq!(membership(&mut b), []);
        // Re-attached, it is alive again from then on.
        let (joined, _) = join_on(&mut room, t0 + Duration::from_secs(29), "ada", 3, Some(a.index), 64);
        assert!(joined.resumed);
        room.touch(t0 + Duration::from_secs(38), b.index);
        room.expire(t0 + Duration::from_secs(38));
        assert_eq!(room.len(), 2, "9 s since the re-attach");
        room.expire(t0 + Duration::from_secs(40));
        assert_eq!(membership(&mut b), [("left", a.index, ErrorCode::PresenceTimeout.to_u16())]);
    }

    #[test]
    fn stale_leave_and_detach_from_an_old_connection_are_ignored() {
        let t0 = Instant::now();
        let mut room = room(Config::default(), t0);
        let (_, mut a) = join_on(&mut room, t0, "ada", 1, None, 64);
        let (_, mut b) = join_on(&mut room, t0, "bob", 2, None, 64);
        membership(&mut a);
        membership(&mut b);
        // Resumed on connection 3 while connection 1 still looked live (a takeover).
        let (_, mut a3) = join_on(&mut room, t0, "ada", 3, Some(a.index), 64);
        assert!(matches!(a.rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)));

        room.leave(t0, a.index, 1, ErrorCode::Normal);
        room.detach(t0, a.index, 1);
        assert!(linked(&room, a.index), "connection 1 no longer speaks for ada");
        assert_eq!(membership(&mut b), []);

        room.leave(t0, b.index, 2, ErrorCode::Normal);
        assert_eq!(membership(&mut a3), [("left", b.index, 0)], "the current link gets the news");
        room.leave(t0, a.index, 3, ErrorCode::Normal);
        assert!(room.is_empty(), "the current connection does");
    }
}
