//! The sans-IO session core: everything a client decides, with no sockets and no clock.
//!
//! [`Session`] takes in what happened — a connection opened (`Welcome`), a frame on a room
//! stream, a snapshot, a datagram, the connection dropped, time passed — and gives out what to
//! send ([`Transmit`]), what the app should hear ([`Event`]), what the offline store should
//! write ([`StoreOp`]) and when it next needs to be woken ([`Session::poll_timeout`]). The tokio
//! driver in [`crate::client`] is a thin loop around it; tests drive it with virtual time.
//!
//! What it owns:
//! - the handshake's inputs and outputs (the `Hello` with the last resume token; the `Welcome`);
//! - per room a local [`LoroDoc`]: local commits become `Update`s with op ids that stay pending
//!   until acked, are resent after every reconnect (the server acks duplicates without applying
//!   them twice) and go to the offline store; remote updates and snapshots are imported;
//! - cursor throttling (newest position wins, at most `cursor_hz` datagrams per second per
//!   room), presence heartbeats, latest-wins filtering of incoming cursor and presence batches;
//! - the op rate the server announced (a token bucket), so the SDK never trips `RateLimited`;
//! - reconnect timing: exponential backoff with full jitter, honouring `GoAway` hints.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use easel_proto::datagram::{Cursor, Heartbeat, Status, Tool, dequantise, is_newer, quantise};
use easel_proto::message::{
    ChatMessage, Hello, Join, Leave, ModAction, Participant, PollResults, PollStarted, SdpKind, SfuEventKind,
    Update, Welcome,
};
use easel_proto::{Datagram, ErrorCode, Message, PROTOCOL_VERSION};
use loro::{LoroDoc, Subscription, VersionVector};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::Transport;

/// Tunables of a [`Session`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Stable id of this installation; op ids are unique within it (SPEC §7.1).
    pub client_id: String,
    /// Display name sent in `Join` (empty: the token's `name` or subject).
    pub name: String,
    /// Most cursor datagrams per second per room; extra positions are coalesced, newest wins.
    pub cursor_hz: u32,
    /// First reconnect delay bound; doubles per failed attempt.
    pub backoff_min: Duration,
    /// Largest reconnect delay bound.
    pub backoff_max: Duration,
    /// The first op id to use (the offline store continues where the last run stopped).
    pub first_op_id: u64,
    /// Seed of the jitter generator (tests pin it; the driver draws it at random).
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            client_id: String::new(),
            name: String::new(),
            cursor_hz: 30,
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            first_op_id: 1,
            seed: 0,
        }
    }
}

/// Something to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Transmit {
    /// Open a room stream and send this `Join` as its first frame.
    Join(Join),
    /// A frame on the room stream of `room`.
    Room {
        /// The room id.
        room: String,
        /// The frame.
        message: Message,
    },
    /// A frame on the control stream.
    Control(Message),
    /// A datagram (cursor or heartbeat).
    Datagram(Datagram),
}

/// A write for the offline store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Keep this unacked op (and that op ids up to it are used).
    Save {
        /// Room id.
        room: String,
        /// Op id.
        op_id: u64,
        /// Loro update bytes.
        data: Vec<u8>,
    },
    /// These ops are settled (acked, or refused for good).
    Remove {
        /// Room id.
        room: String,
        /// Op ids.
        op_ids: Vec<u64>,
    },
}

/// What the app hears.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A connection is open and the session is established.
    Connected {
        /// Which transport carries it.
        transport: Transport,
        /// Whether the server gave back the previous session (rooms keep their places and
        /// others saw nothing).
        resumed: bool,
    },
    /// The connection dropped or could not be made; the next attempt is in `retry_in`.
    Disconnected {
        /// The wire code, when the server gave one.
        code: Option<ErrorCode>,
        /// Why, for humans.
        reason: String,
        /// When the next attempt starts.
        retry_in: Duration,
    },
    /// The room is joined (again, after a reconnect).
    Joined {
        /// Room id.
        room: String,
        /// Own participant number.
        participant: u16,
        /// Whether the old place was kept (a resume).
        resumed: bool,
        /// Everyone in the room, self included.
        participants: Vec<Participant>,
    },
    /// The server refused to let us into the room; it is forgotten.
    JoinFailed {
        /// Room id.
        room: String,
        /// Why.
        code: ErrorCode,
        /// Detail.
        message: String,
    },
    /// We are out of the room (own leave, or the server ended the membership).
    Left {
        /// Room id.
        room: String,
        /// Why (`Normal` for an own leave).
        code: ErrorCode,
        /// The server's explanation (a teacher's reason for a removal), possibly empty.
        reason: String,
    },
    /// Someone joined.
    ParticipantJoined {
        /// Room id.
        room: String,
        /// Who.
        participant: Participant,
    },
    /// Someone left.
    ParticipantLeft {
        /// Room id.
        room: String,
        /// Their number.
        index: u16,
        /// Why.
        code: ErrorCode,
    },
    /// Someone's state changed.
    ParticipantUpdated {
        /// Room id.
        room: String,
        /// The new state.
        participant: Participant,
    },
    /// Other participants' cursors moved: the newer positions of one server tick (board
    /// pixels), so an app redraws once per batch rather than once per cursor.
    Cursors {
        /// Room id.
        room: String,
        /// The positions, one per participant.
        cursors: Vec<RemoteCursor>,
    },
    /// Another participant's presence changed.
    Presence {
        /// Room id.
        room: String,
        /// Whose.
        participant: u16,
        /// Status.
        status: Status,
        /// Pointer tool.
        tool: Tool,
    },
    /// A remote edit was imported into the room's document.
    RemoteUpdate {
        /// Room id.
        room: String,
        /// Its author.
        from: u16,
    },
    /// A snapshot or catch-up transfer was imported into the room's document.
    Synced {
        /// Room id.
        room: String,
    },
    /// These local ops are durable on the server.
    Acked {
        /// Room id.
        room: String,
        /// Op ids.
        op_ids: Vec<u64>,
    },
    /// The server refused a local op for good; the server's document does not have it.
    Rejected {
        /// Room id.
        room: String,
        /// The op.
        op_id: u64,
        /// Why (`Forbidden`, `ReadOnly`, `InvalidUpdate`, …).
        code: ErrorCode,
        /// Detail.
        message: String,
    },
    /// A chat message (ours included: the echo is the confirmation).
    Chat {
        /// Room id.
        room: String,
        /// The message.
        message: ChatMessage,
    },
    /// A teacher deleted a chat message.
    ChatDeleted {
        /// Room id.
        room: String,
        /// The message's id.
        id: u64,
        /// Who deleted it.
        by: u16,
    },
    /// A page of chat history (on join, or asked for), oldest first.
    ChatPage {
        /// Room id.
        room: String,
        /// The messages.
        messages: Vec<ChatMessage>,
        /// Whether older ones exist.
        more: bool,
    },
    /// A poll started (or was open when we joined).
    PollStarted {
        /// Room id.
        room: String,
        /// The poll.
        poll: PollStarted,
    },
    /// Our answer to a poll is recorded.
    PollAnswered {
        /// Room id.
        room: String,
        /// Which poll.
        poll_id: u64,
        /// The answer's attempt id.
        attempt_id: u64,
    },
    /// Poll counts: live while open, final when `results.closed`.
    PollResults {
        /// Room id.
        room: String,
        /// The counts.
        results: PollResults,
    },
    /// The queue of raised hands changed, first raised first.
    HandQueue {
        /// Room id.
        room: String,
        /// Participant numbers.
        queue: Vec<u16>,
    },
    /// A teacher's moderation took effect.
    Moderated {
        /// Room id.
        room: String,
        /// Whom it applies to.
        target: u16,
        /// What was done.
        action: ModAction,
        /// Which teacher.
        by: u16,
        /// The teacher's reason.
        reason: String,
    },
    /// SFU access granted (the answer to [`crate::Room::sfu_join`]).
    SfuGrant {
        /// Room id.
        room: String,
        /// Whether our role lets us publish.
        can_publish: bool,
        /// ICE server URLs (STUN/TURN) for our peer connections.
        ice_servers: Vec<String>,
    },
    /// An SDP from the SFU: the answer to our publisher's offer (`feed` 0), or the SFU's offer
    /// for a feed we subscribed to (answer it with [`crate::Room::sfu_sdp`]).
    SfuSdp {
        /// Room id.
        room: String,
        /// Which peer connection: 0 for our publisher, else the subscribed feed.
        feed: u64,
        /// Offer or answer.
        kind: SdpKind,
        /// The SDP.
        sdp: String,
    },
    /// A trickle ICE candidate from the SFU; an empty `candidate` ends them.
    SfuCandidate {
        /// Room id.
        room: String,
        /// Which peer connection (as in [`Event::SfuSdp`]).
        feed: u64,
        /// The `candidate:` line.
        candidate: String,
        /// Its media id (`sdpMid`).
        mid: String,
        /// Its m-line index.
        mline_index: u16,
    },
    /// Someone's SFU state changed: joined, publishing `feed` (camera on), unpublished, left.
    SfuEvent {
        /// Room id.
        room: String,
        /// Who.
        participant: u16,
        /// Their feed id (0 when not publishing).
        feed: u64,
        /// What changed.
        event: SfuEventKind,
    },
    /// The server refused a request in a room (`Fault`): `kind` is the refused message's kind
    /// byte, `reference` its own id (chat `client_msg_id`, poll `request`, `attempt_id`, …).
    Refused {
        /// Room id.
        room: String,
        /// Why.
        code: ErrorCode,
        /// Kind byte of the refused message (0 when none applies).
        kind: u8,
        /// The refused request's id, or 0.
        reference: u64,
        /// Detail.
        message: String,
    },
    /// An error that is not tied to one op (a `Fault`, an update that did not import).
    Error {
        /// Room id, when the error concerns one.
        room: Option<String>,
        /// Wire code.
        code: ErrorCode,
        /// Detail.
        message: String,
    },
}

/// Another participant's cursor position (see [`Event::Cursors`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteCursor {
    /// Whose.
    pub participant: u16,
    /// Board x, in board pixels.
    pub x: f64,
    /// Board y.
    pub y: f64,
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The room id is not valid (SPEC §6.1).
    #[error("invalid room id {room:?}: {reason}")]
    InvalidRoom {
        /// The id.
        room: String,
        /// Why.
        reason: String,
    },
    /// The room is already joined (or being joined).
    #[error("already in room {0}")]
    AlreadyJoined(String),
    /// The room is not joined.
    #[error("not in room {0}")]
    NotJoined(String),
    /// The room is joined but the connection is down: the request was not sent (chat, polls
    /// and moderation are live actions; only board edits are queued offline).
    #[error("room {0} is offline; try again when connected")]
    Offline(String),
}

/// A token bucket (the server's op rate, announced in `Welcome`).
#[derive(Debug)]
struct Bucket {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(per_sec: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self { per_sec: f64::from(per_sec.max(1)), burst, tokens: burst, at: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        self.at = now;
    }

    fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When one token will be there.
    fn next(&self) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        self.at + Duration::from_secs_f64(missing / self.per_sec)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a connection, or for `Joined` on it.
    Joining {
        sent: bool,
    },
    Joined,
    /// `Leave` sent; waiting for `Left`.
    Leaving,
}

struct Pending {
    data: Vec<u8>,
    sent: bool,
}

struct OutCursor {
    seq: u16,
    /// The newest position (quantised).
    pos: Option<(i32, i32)>,
    /// Whether `pos` has not been sent yet.
    dirty: bool,
    /// Throttle (GCRA): the theoretical time of the next send. A send is allowed up to half
    /// an interval early, so an app that moves the cursor at exactly the throttle rate, with
    /// its timer's jitter, is never held back a whole interval; the average stays at the rate.
    next_at: Option<Instant>,
}

struct OutPresence {
    seq: u16,
    status: Status,
    tool: Tool,
    next_at: Option<Instant>,
}

struct RoomState {
    doc: LoroDoc,
    local: Arc<Mutex<Vec<Vec<u8>>>>,
    _subscription: Subscription,
    phase: Phase,
    slot: Option<u16>,
    me: Option<u16>,
    participants: BTreeMap<u16, Participant>,
    pending: BTreeMap<u64, Pending>,
    cursor: OutCursor,
    presence: OutPresence,
    seen_cursors: HashMap<u16, u16>,
    seen_presence: HashMap<u16, (u16, Status, Tool)>,
    /// Remote updates not imported yet: imported together, because Loro's cost per import
    /// grows with the document's history and a busy room delivers them in bursts.
    inbox: Vec<(u16, Vec<u8>)>,
}

enum Link {
    Down { next_at: Instant },
    Up { slots: HashMap<u16, String>, ops: Bucket, heartbeat: Duration },
}

/// The client session state machine. See the module docs.
pub struct Session {
    config: Config,
    rng: StdRng,
    link: Link,
    /// Failed attempts since the last healthy session (one that joined a room).
    attempt: u32,
    resume_token: Option<Vec<u8>>,
    /// The last `GoAway` of the current connection: why it ends and when to come back.
    go_away: Option<(ErrorCode, Duration)>,
    next_op_id: u64,
    rooms: BTreeMap<String, RoomState>,
    waker: Arc<dyn Fn() + Send + Sync>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    store: VecDeque<StoreOp>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("client_id", &self.config.client_id)
            .field("connected", &self.is_connected())
            .field("rooms", &self.rooms.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A disconnected session that may connect at once. `waker` is called (from whatever thread
    /// commits to a room's document) when local edits are waiting for [`Session::flush_local`].
    pub fn new(config: Config, now: Instant, waker: Arc<dyn Fn() + Send + Sync>) -> Self {
        Self {
            rng: StdRng::seed_from_u64(config.seed),
            next_op_id: config.first_op_id.max(1),
            config,
            link: Link::Down { next_at: now },
            attempt: 0,
            resume_token: None,
            go_away: None,
            rooms: BTreeMap::new(),
            waker,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            store: VecDeque::new(),
        }
    }

    /// Whether a connection is up.
    pub fn is_connected(&self) -> bool {
        matches!(self.link, Link::Up { .. })
    }

    /// Whether the driver should start a connection attempt now.
    pub fn should_connect(&self, now: Instant) -> bool {
        matches!(self.link, Link::Down { next_at, .. } if now >= next_at)
    }

    /// The `Hello` for the next connection: it asks to resume the last session, if any.
    pub fn hello(&self, token: &str) -> Hello {
        Hello {
            versions: vec![PROTOCOL_VERSION],
            client_id: self.config.client_id.clone(),
            client: format!("easel-client/{}", env!("CARGO_PKG_VERSION")),
            token: token.to_owned(),
            resume: self.resume_token.clone(),
        }
    }

    /// A connection is up and the server answered `welcome`: rejoin every room.
    pub fn connected(&mut self, now: Instant, transport: Transport, welcome: &Welcome) {
        self.resume_token = Some(welcome.resume_token.clone());
        let limits = &welcome.limits;
        let heartbeat = Duration::from_millis(u64::from(limits.heartbeat_ms.max(100)));
        self.link = Link::Up {
            slots: HashMap::new(),
            ops: Bucket::new(limits.ops_per_sec, limits.ops_burst, now),
            heartbeat,
        };
        if self.rooms.is_empty() {
            self.attempt = 0;
        }
        self.events.push_back(Event::Connected { transport, resumed: welcome.resumed });
        // The rejoin's version vector must count everything already received.
        self.flush_imports();
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room in rooms {
            self.send_join(&room);
        }
    }

    /// A message on the control stream: `GoAway` (its hint times the reconnect), a fatal
    /// `Fault`, token-refresh answers.
    pub fn handle_control(&mut self, message: Message) {
        match message {
            Message::GoAway(g) => {
                let code = ErrorCode::from_u16(g.code).unwrap_or(ErrorCode::ShuttingDown);
                self.go_away = Some((code, Duration::from_millis(u64::from(g.retry_after_ms))));
            }
            Message::Fault(f) => {
                let code = ErrorCode::from_u16(f.code).unwrap_or(ErrorCode::Internal);
                self.events.push_back(Event::Error { room: None, code, message: f.message });
            }
            Message::TokenRefreshed(_) | Message::Pong(_) => {}
            other => self.events.push_back(Event::Error {
                room: None,
                code: ErrorCode::UnexpectedMessage,
                message: format!("ignored {:?} on the control stream", other.kind()),
            }),
        }
    }

    /// The connection dropped (or an attempt failed). `code` is the server's wire code when it
    /// gave one; `retry_after` a server's hint (a `GoAway` received before counts too).
    /// Schedules the next attempt.
    pub fn disconnected(
        &mut self,
        now: Instant,
        code: Option<ErrorCode>,
        reason: &str,
        retry_after: Option<Duration>,
    ) {
        let go_away = self.go_away.take();
        let code = go_away.map(|g| g.0).or(code);
        let retry_after = retry_after.or(go_away.map(|g| g.1));
        for room in self.rooms.values_mut() {
            room.slot = None;
            room.phase = match room.phase {
                Phase::Leaving => Phase::Leaving,
                _ => Phase::Joining { sent: false },
            };
            for op in room.pending.values_mut() {
                op.sent = false;
            }
        }
        // Rooms we were leaving are gone with the connection.
        let leaving: Vec<String> =
            self.rooms.iter().filter(|(_, r)| r.phase == Phase::Leaving).map(|(id, _)| id.clone()).collect();
        for room in leaving {
            self.rooms.remove(&room);
            self.events.push_back(Event::Left { room, code: ErrorCode::Normal, reason: String::new() });
        }
        let retry_in = self.backoff(self.attempt, retry_after);
        self.attempt = self.attempt.saturating_add(1);
        self.link = Link::Down { next_at: now + retry_in };
        self.events.push_back(Event::Disconnected { code, reason: reason.to_owned(), retry_in });
    }

    /// Full jitter (uniform in `[0, bound]`), the bound doubling per failed attempt, so that a
    /// thousand clients of a dead server do not come back in one instant; a server hint `h`
    /// becomes `h` plus uniform `[0, h]` (SPEC §5.5).
    fn backoff(&mut self, attempt: u32, hint: Option<Duration>) -> Duration {
        if let Some(h) = hint.filter(|h| !h.is_zero()) {
            return h + h.mul_f64(self.rng.random::<f64>());
        }
        let bound = self.config.backoff_min.saturating_mul(1 << attempt.min(16)).min(self.config.backoff_max);
        bound.mul_f64(self.rng.random::<f64>())
    }

    /// Joins `room` (now, or when connected). Returns the room's local document, shared with
    /// the session: edit it and `commit()`; the session sends what was committed. `restored`
    /// are unacked ops from the offline store: they are applied to the document and resent.
    pub fn join(&mut self, room: &str, restored: Vec<(u64, Vec<u8>)>) -> Result<LoroDoc, SessionError> {
        easel_proto::room::validate_id(room)
            .map_err(|reason| SessionError::InvalidRoom { room: room.to_owned(), reason })?;
        if self.rooms.contains_key(room) {
            return Err(SessionError::AlreadyJoined(room.to_owned()));
        }
        let doc = LoroDoc::new();
        let local: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let subscription = {
            let (local, waker) = (local.clone(), self.waker.clone());
            doc.subscribe_local_update(Box::new(move |bytes| {
                if let Ok(mut q) = local.lock() {
                    q.push(bytes.clone());
                }
                waker();
                true
            }))
        };
        let mut pending = BTreeMap::new();
        for (op_id, data) in restored {
            if let Err(e) = doc.import(&data) {
                self.events.push_back(Event::Error {
                    room: Some(room.to_owned()),
                    code: ErrorCode::InvalidUpdate,
                    message: format!("stored op {op_id} does not import: {e}"),
                });
                continue;
            }
            self.next_op_id = self.next_op_id.max(op_id + 1);
            pending.insert(op_id, Pending { data, sent: false });
        }
        self.rooms.insert(
            room.to_owned(),
            RoomState {
                doc: doc.clone(),
                local,
                _subscription: subscription,
                phase: Phase::Joining { sent: false },
                slot: None,
                me: None,
                participants: BTreeMap::new(),
                pending,
                cursor: OutCursor { seq: 0, pos: None, dirty: false, next_at: None },
                presence: OutPresence { seq: 0, status: Status::Active, tool: Tool::Pointer, next_at: None },
                seen_cursors: HashMap::new(),
                seen_presence: HashMap::new(),
                inbox: Vec::new(),
            },
        );
        if self.is_connected() {
            self.send_join(room);
        }
        Ok(doc)
    }

    fn send_join(&mut self, id: &str) {
        let Some(room) = self.rooms.get_mut(id) else { return };
        if room.phase == Phase::Leaving {
            return;
        }
        let vv = room.doc.oplog_vv();
        let since = (!vv.is_empty()).then(|| vv.encode());
        room.phase = Phase::Joining { sent: true };
        self.transmits.push_back(Transmit::Join(Join {
            room: id.to_owned(),
            name: self.config.name.clone(),
            since,
        }));
    }

    /// Leaves `room`. Unacked ops of the room are dropped from the store.
    pub fn leave(&mut self, room: &str) -> Result<(), SessionError> {
        let state = self.rooms.get_mut(room).ok_or_else(|| SessionError::NotJoined(room.to_owned()))?;
        let ops: Vec<u64> = state.pending.keys().copied().collect();
        state.pending.clear();
        if !ops.is_empty() {
            self.store.push_back(StoreOp::Remove { room: room.to_owned(), op_ids: ops });
        }
        if state.phase == Phase::Joined {
            state.phase = Phase::Leaving;
            self.transmits
                .push_back(Transmit::Room { room: room.to_owned(), message: Message::from(Leave {}) });
        } else {
            self.rooms.remove(room);
            self.events.push_back(Event::Left {
                room: room.to_owned(),
                code: ErrorCode::Normal,
                reason: String::new(),
            });
        }
        Ok(())
    }

    /// The rooms the session is in or joining.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(String::as_str)
    }

    /// Unacked op ids of `room`, oldest first.
    pub fn pending(&self, room: &str) -> Vec<u64> {
        self.rooms.get(room).map(|r| r.pending.keys().copied().collect()).unwrap_or_default()
    }

    /// Turns committed local edits into ops: numbered, stored, and sent when the rate allows.
    pub fn flush_local(&mut self, now: Instant) {
        for (id, room) in &mut self.rooms {
            let updates = room.local.lock().map(|mut q| std::mem::take(&mut *q)).unwrap_or_default();
            for data in updates {
                let op_id = self.next_op_id;
                self.next_op_id += 1;
                self.store.push_back(StoreOp::Save { room: id.clone(), op_id, data: data.clone() });
                room.pending.insert(op_id, Pending { data, sent: false });
            }
        }
        self.pump(now);
    }

    /// Sends unsent pending ops of joined rooms, oldest first, within the op rate.
    fn pump(&mut self, now: Instant) {
        let Link::Up { ops, .. } = &mut self.link else { return };
        for (id, room) in &mut self.rooms {
            if room.phase != Phase::Joined {
                continue;
            }
            for (op_id, op) in &mut room.pending {
                if op.sent {
                    continue;
                }
                if !ops.take(now) {
                    return;
                }
                op.sent = true;
                self.transmits.push_back(Transmit::Room {
                    room: id.clone(),
                    message: Message::from(Update { op_id: *op_id, data: op.data.clone() }),
                });
            }
        }
    }

    /// Sets our cursor in `room` (board pixels). Sent at once if the throttle allows, else the
    /// newest position goes out when it does.
    pub fn cursor(&mut self, now: Instant, room: &str, x: f64, y: f64) -> Result<(), SessionError> {
        let state = self.rooms.get_mut(room).ok_or_else(|| SessionError::NotJoined(room.to_owned()))?;
        state.cursor.pos = Some((quantise(x), quantise(y)));
        state.cursor.dirty = true;
        self.flush_cursors(now);
        Ok(())
    }

    /// Sets our presence in `room`; a heartbeat carrying it goes out at once.
    pub fn presence(
        &mut self,
        now: Instant,
        room: &str,
        status: Status,
        tool: Tool,
    ) -> Result<(), SessionError> {
        let state = self.rooms.get_mut(room).ok_or_else(|| SessionError::NotJoined(room.to_owned()))?;
        state.presence.status = status;
        state.presence.tool = tool;
        state.presence.next_at = Some(now);
        self.heartbeats(now);
        Ok(())
    }

    fn cursor_interval(&self) -> Duration {
        Duration::from_secs(1) / self.config.cursor_hz.max(1)
    }

    fn flush_cursors(&mut self, now: Instant) {
        if !self.is_connected() {
            return;
        }
        let interval = self.cursor_interval();
        for room in self.rooms.values_mut() {
            let (Some(slot), Some((x, y))) = (room.slot, room.cursor.pos) else { continue };
            if !room.cursor.dirty || room.cursor.next_at.is_some_and(|t| now + interval / 2 < t) {
                continue;
            }
            room.cursor.seq = room.cursor.seq.wrapping_add(1);
            room.cursor.dirty = false;
            room.cursor.next_at = Some(room.cursor.next_at.map_or(now, |t| t.max(now)) + interval);
            self.transmits.push_back(Transmit::Datagram(Datagram::from(Cursor {
                slot,
                seq: room.cursor.seq,
                x,
                y,
            })));
        }
    }

    fn heartbeats(&mut self, now: Instant) {
        let Link::Up { heartbeat, .. } = self.link else { return };
        for room in self.rooms.values_mut() {
            let Some(slot) = room.slot else { continue };
            let p = &mut room.presence;
            if p.next_at.is_some_and(|t| now < t) {
                continue;
            }
            p.seq = p.seq.wrapping_add(1);
            p.next_at = Some(now + heartbeat);
            self.transmits.push_back(Transmit::Datagram(Datagram::from(Heartbeat {
                slot,
                seq: p.seq,
                status: p.status,
                tool: p.tool,
            })));
        }
    }

    /// Time passed: throttled cursors, heartbeats, rate-delayed ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.flush_local(now);
        self.flush_cursors(now);
        self.heartbeats(now);
    }

    /// When [`Session::handle_timeout`] (or a connection attempt) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.link {
            Link::Down { next_at, .. } => Some(*next_at),
            Link::Up { ops, .. } => {
                let interval = self.cursor_interval();
                let mut at: Option<Instant> = None;
                let mut earliest = |t: Instant| at = Some(at.map_or(t, |a| a.min(t)));
                for room in self.rooms.values().filter(|r| r.slot.is_some()) {
                    if room.cursor.dirty {
                        earliest(room.cursor.next_at.map_or(ops.at, |t| t - interval / 2));
                    }
                    if let Some(t) = room.presence.next_at {
                        earliest(t);
                    }
                    if room.phase == Phase::Joined && room.pending.values().any(|p| !p.sent) {
                        earliest(ops.next());
                    }
                }
                at
            }
        }
    }

    /// A frame arrived on the room stream of `room`.
    pub fn handle_room(&mut self, now: Instant, room: &str, message: Message) {
        if !self.rooms.contains_key(room) {
            return;
        }
        match message {
            Message::Joined(j) => self.joined(now, room, j),
            Message::Fault(f) => {
                let code = ErrorCode::from_u16(f.code).unwrap_or(ErrorCode::Internal);
                let joining = self.rooms.get(room).is_some_and(|r| matches!(r.phase, Phase::Joining { .. }));
                if joining {
                    self.rooms.remove(room);
                    self.events.push_back(Event::JoinFailed {
                        room: room.to_owned(),
                        code,
                        message: f.message,
                    });
                } else {
                    self.events.push_back(Event::Refused {
                        room: room.to_owned(),
                        code,
                        kind: f.kind,
                        reference: f.reference,
                        message: f.message,
                    });
                }
            }
            Message::Left(l) => {
                let code = ErrorCode::from_u16(l.code).unwrap_or(ErrorCode::Internal);
                // A shutdown ends the membership with the connection; the reconnect rejoins.
                if code != ErrorCode::ShuttingDown {
                    self.forget(room);
                    self.events.push_back(Event::Left { room: room.to_owned(), code, reason: l.message });
                }
            }
            Message::Ack(a) => self.acked(now, room, a.op_ids),
            Message::Reject(r) => self.rejected(now, room, r.op_id, r.code, r.message),
            Message::RemoteUpdate(u) => {
                if let Some(state) = self.rooms.get_mut(room) {
                    state.inbox.push((u.from, u.data));
                }
            }
            Message::ParticipantJoined(p) => {
                if let Some(state) = self.rooms.get_mut(room) {
                    state.participants.insert(p.participant.index, p.participant.clone());
                    self.events.push_back(Event::ParticipantJoined {
                        room: room.to_owned(),
                        participant: p.participant,
                    });
                }
            }
            Message::ParticipantLeft(p) => {
                if let Some(state) = self.rooms.get_mut(room) {
                    state.participants.remove(&p.index);
                    state.seen_cursors.remove(&p.index);
                    state.seen_presence.remove(&p.index);
                    let code = ErrorCode::from_u16(p.code).unwrap_or(ErrorCode::Normal);
                    self.events.push_back(Event::ParticipantLeft {
                        room: room.to_owned(),
                        index: p.index,
                        code,
                    });
                }
            }
            Message::ParticipantUpdated(p) => {
                if let Some(state) = self.rooms.get_mut(room) {
                    state.participants.insert(p.participant.index, p.participant.clone());
                    self.events.push_back(Event::ParticipantUpdated {
                        room: room.to_owned(),
                        participant: p.participant,
                    });
                }
            }
            other => self.classroom(room, other),
        }
    }

    /// Classroom and SFU news on a room stream, as events.
    fn classroom(&mut self, room: &str, message: Message) {
        let room = room.to_owned();
        let event = match message {
            Message::ChatMessage(message) => Event::Chat { room, message },
            Message::ChatDeleted(d) => Event::ChatDeleted { room, id: d.id, by: d.by },
            Message::ChatPage(p) => Event::ChatPage { room, messages: p.messages, more: p.more },
            Message::PollStarted(poll) => Event::PollStarted { room, poll },
            Message::PollAnswered(a) => {
                Event::PollAnswered { room, poll_id: a.poll_id, attempt_id: a.attempt_id }
            }
            Message::PollResults(results) => Event::PollResults { room, results },
            Message::HandQueue(q) => Event::HandQueue { room, queue: q.queue },
            Message::Moderated(m) => {
                Event::Moderated { room, target: m.target, action: m.action, by: m.by, reason: m.reason }
            }
            Message::SfuGrant(g) => {
                Event::SfuGrant { room, can_publish: g.can_publish, ice_servers: g.ice_servers }
            }
            Message::SfuSdp(s) => Event::SfuSdp { room, feed: s.feed, kind: s.kind, sdp: s.sdp },
            Message::SfuCandidate(c) => Event::SfuCandidate {
                room,
                feed: c.feed,
                candidate: c.candidate,
                mid: c.mid,
                mline_index: c.mline_index,
            },
            Message::SfuEvent(e) => {
                Event::SfuEvent { room, participant: e.participant, feed: e.feed, event: e.event }
            }
            other => Event::Error {
                room: Some(room),
                code: ErrorCode::UnexpectedMessage,
                message: format!("ignored {:?} on the room stream", other.kind()),
            },
        };
        self.events.push_back(event);
    }

    /// Sends a classroom or SFU request (chat, polls, hands, moderation, SFU signalling) on
    /// `room`'s stream. These are live actions: while the room is not joined on a live
    /// connection they are refused rather than queued.
    pub fn request(&mut self, room: &str, message: Message) -> Result<(), SessionError> {
        let state = self.rooms.get(room).ok_or_else(|| SessionError::NotJoined(room.to_owned()))?;
        if state.phase != Phase::Joined {
            return Err(SessionError::Offline(room.to_owned()));
        }
        self.transmits.push_back(Transmit::Room { room: room.to_owned(), message });
        Ok(())
    }

    fn joined(&mut self, now: Instant, id: &str, j: easel_proto::message::Joined) {
        let Link::Up { slots, .. } = &mut self.link else { return };
        let Some(room) = self.rooms.get_mut(id) else { return };
        slots.insert(j.slot, id.to_owned());
        room.phase = Phase::Joined;
        room.slot = Some(j.slot);
        room.me = Some(j.participant);
        room.participants = j.participants.iter().map(|p| (p.index, p.clone())).collect();
        if !j.resumed {
            room.seen_cursors.clear();
            room.seen_presence.clear();
        }
        // Presence and the last cursor position are restored at once.
        room.presence.next_at = Some(now);
        room.cursor.dirty = room.cursor.pos.is_some();
        room.cursor.next_at = None;
        // A session that got into a room is healthy: the next failure starts backoff afresh.
        self.attempt = 0;
        self.events.push_back(Event::Joined {
            room: id.to_owned(),
            participant: j.participant,
            resumed: j.resumed,
            participants: j.participants,
        });
        self.pump(now);
        self.heartbeats(now);
    }

    fn acked(&mut self, now: Instant, room: &str, op_ids: Vec<u64>) {
        let Some(state) = self.rooms.get_mut(room) else { return };
        let settled: Vec<u64> = op_ids.into_iter().filter(|id| state.pending.remove(id).is_some()).collect();
        if !settled.is_empty() {
            self.store.push_back(StoreOp::Remove { room: room.to_owned(), op_ids: settled.clone() });
            self.events.push_back(Event::Acked { room: room.to_owned(), op_ids: settled });
        }
        self.pump(now);
    }

    fn rejected(&mut self, now: Instant, room: &str, op_id: u64, code: u16, message: String) {
        let code = ErrorCode::from_u16(code).unwrap_or(ErrorCode::Internal);
        let Some(state) = self.rooms.get_mut(room) else { return };
        if code.is_retryable() || code == ErrorCode::RateLimited {
            // Not applied: send it again when the rate allows.
            if let Some(op) = state.pending.get_mut(&op_id) {
                op.sent = false;
            }
            self.pump(now);
            return;
        }
        if state.pending.remove(&op_id).is_some() {
            self.store.push_back(StoreOp::Remove { room: room.to_owned(), op_ids: vec![op_id] });
        }
        self.events.push_back(Event::Rejected { room: room.to_owned(), op_id, code, message });
    }

    fn forget(&mut self, room: &str) {
        if let Some(state) = self.rooms.remove(room) {
            let ops: Vec<u64> = state.pending.into_keys().collect();
            if !ops.is_empty() {
                self.store.push_back(StoreOp::Remove { room: room.to_owned(), op_ids: ops });
            }
            if let (Link::Up { slots, .. }, Some(slot)) = (&mut self.link, state.slot) {
                slots.remove(&slot);
            }
        }
    }

    /// Imports every room's waiting remote updates, one batch per room, and reports them.
    fn flush_imports(&mut self) {
        for (id, room) in &mut self.rooms {
            if room.inbox.is_empty() {
                continue;
            }
            let (froms, batch): (Vec<u16>, Vec<Vec<u8>>) =
                std::mem::take(&mut room.inbox).into_iter().unzip();
            let doc = room.doc.clone();
            let together =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| doc.import_batch(&batch)));
            if matches!(together, Ok(Ok(_))) {
                for from in froms {
                    self.events.push_back(Event::RemoteUpdate { room: id.clone(), from });
                }
                continue;
            }
            // One of them is bad: import them one by one to tell which.
            for (from, data) in froms.into_iter().zip(batch) {
                match import_one(&doc, &data) {
                    Ok(()) => self.events.push_back(Event::RemoteUpdate { room: id.clone(), from }),
                    Err(message) => self.events.push_back(Event::Error {
                        room: Some(id.clone()),
                        code: ErrorCode::InvalidUpdate,
                        message,
                    }),
                }
            }
        }
    }

    fn import(&mut self, room: &str, doc: &LoroDoc, data: &[u8]) {
        if let Err(message) = import_one(doc, data) {
            self.events.push_back(Event::Error {
                room: Some(room.to_owned()),
                code: ErrorCode::InvalidUpdate,
                message,
            });
        }
    }

    /// A snapshot stream for `slot` arrived whole.
    pub fn handle_snapshot(&mut self, slot: u16, data: &[u8]) {
        let Link::Up { slots, .. } = &self.link else { return };
        let Some(room) = slots.get(&slot).cloned() else { return };
        let Some(doc) = self.rooms.get(&room).map(|r| r.doc.clone()) else { return };
        self.import(&room, &doc, data);
        self.events.push_back(Event::Synced { room });
    }

    /// A datagram arrived: cursor and presence batches, filtered latest-wins (SPEC §8.2).
    pub fn handle_datagram(&mut self, datagram: Datagram) {
        let Link::Up { slots, .. } = &self.link else { return };
        let slot = match &datagram {
            Datagram::CursorBatch(b) => b.slot,
            Datagram::PresenceBatch(b) => b.slot,
            _ => return,
        };
        let Some(id) = slots.get(&slot).cloned() else { return };
        let Some(room) = self.rooms.get_mut(&id) else { return };
        match datagram {
            Datagram::CursorBatch(b) => {
                let mut cursors = Vec::with_capacity(b.cursors.len());
                for c in b.cursors {
                    if Some(c.participant) == room.me {
                        continue;
                    }
                    let seen = room.seen_cursors.get(&c.participant).copied();
                    if seen.is_some_and(|s| !is_newer(c.seq, s)) {
                        continue;
                    }
                    room.seen_cursors.insert(c.participant, c.seq);
                    cursors.push(RemoteCursor {
                        participant: c.participant,
                        x: dequantise(c.x),
                        y: dequantise(c.y),
                    });
                }
                if !cursors.is_empty() {
                    self.events.push_back(Event::Cursors { room: id, cursors });
                }
            }
            Datagram::PresenceBatch(b) => {
                for e in b.entries {
                    let seen = room.seen_presence.get(&e.participant).copied();
                    if seen.is_some_and(|(s, _, _)| !is_newer(e.seq, s)) {
                        continue;
                    }
                    room.seen_presence.insert(e.participant, (e.seq, e.status, e.tool));
                    // Periodic re-sends of an unchanged state are not news.
                    if seen.is_some_and(|(_, status, tool)| status == e.status && tool == e.tool) {
                        continue;
                    }
                    self.events.push_back(Event::Presence {
                        room: id.clone(),
                        participant: e.participant,
                        status: e.status,
                        tool: e.tool,
                    });
                }
            }
            _ => {}
        }
    }

    /// Asks the server to accept a fresh JWT for the same subject.
    pub fn refresh_token(&mut self, token: &str) {
        self.transmits.push_back(Transmit::Control(Message::from(easel_proto::message::RefreshToken {
            token: token.to_owned(),
        })));
    }

    /// The next thing to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the app (remote updates received so far are imported first).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.flush_imports();
        self.events.pop_front()
    }

    /// The next write for the offline store.
    pub fn poll_store(&mut self) -> Option<StoreOp> {
        self.store.pop_front()
    }

    /// The next op id that will be used (persisted by the offline store).
    pub fn next_op_id(&self) -> u64 {
        self.next_op_id
    }

    /// The version vector of `room`'s local document.
    pub fn version(&self, room: &str) -> Option<VersionVector> {
        self.rooms.get(room).map(|r| r.doc.oplog_vv())
    }
}

/// Imports Loro bytes. Loro may panic on hostile bytes; a bad update from the network must not
/// take the app down.
fn import_one(doc: &LoroDoc, data: &[u8]) -> Result<(), String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| doc.import(data))) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("update could not be decoded".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use easel_proto::datagram::{CursorBatch, CursorEntry, PresenceBatch, PresenceEntry};
    use easel_proto::message::{
        Ack, Fault, GoAway, Joined, ParticipantLeft, Reject, RemoteUpdate, Role, SessionLimits, SyncKind,
    };

    use super::*;

    const ROOM: &str = "school/math/monday";

    fn welcome(resumed: bool, token: u8) -> Welcome {
        Welcome {
            version: 1,
            session_id: 7,
            user: "ada".into(),
            server_time_ms: 0,
            token_expires_ms: 0,
            resume_token: vec![token; 32],
            resumed,
            limits: SessionLimits {
                max_frame_len: 1 << 20,
                max_datagram_len: 1200,
                max_rooms: 16,
                max_participants: 2000,
                ops_per_sec: 10,
                ops_burst: 3,
                datagrams_per_sec: 120,
                datagrams_burst: 240,
                chat_per_min: 30,
                tick_hz: 60,
                heartbeat_ms: 2000,
                presence_ttl_ms: 10_000,
                resume_grace_ms: 30_000,
            },
        }
    }

    fn joined(participant: u16, resumed: bool) -> Message {
        Message::from(Joined {
            slot: 0,
            room: ROOM.into(),
            participant,
            role: Role::Student,
            resumed,
            participants: Vec::new(),
            sync: SyncKind::None,
        })
    }

    struct Harness {
        session: Session,
        now: Instant,
    }

    impl Harness {
        fn new() -> Self {
            let now = Instant::now();
            let config = Config { client_id: "test".into(), seed: 42, ..Config::default() };
            Self { session: Session::new(config, now, Arc::new(|| {})), now }
        }

        fn advance(&mut self, by: Duration) {
            self.now += by;
            self.session.handle_timeout(self.now);
        }

        fn transmits(&mut self) -> Vec<Transmit> {
            std::iter::from_fn(|| self.session.poll_transmit()).collect()
        }

        fn events(&mut self) -> Vec<Event> {
            std::iter::from_fn(|| self.session.poll_event()).collect()
        }

        fn store(&mut self) -> Vec<StoreOp> {
            std::iter::from_fn(|| self.session.poll_store()).collect()
        }

        fn updates(&mut self) -> Vec<u64> {
            self.transmits()
                .into_iter()
                .filter_map(|t| match t {
                    Transmit::Room { message: Message::Update(u), .. } => Some(u.op_id),
                    _ => None,
                })
                .collect()
        }

        fn datagrams(&mut self) -> Vec<Datagram> {
            self.transmits()
                .into_iter()
                .filter_map(|t| match t {
                    Transmit::Datagram(d) => Some(d),
                    _ => None,
                })
                .collect()
        }

        /// Connected and joined as participant 3; outputs drained.
        fn in_room() -> (Self, LoroDoc) {
            let mut h = Self::new();
            let doc = h.session.join(ROOM, Vec::new()).unwrap();
            h.session.connected(h.now, Transport::Quic, &welcome(false, 1));
            h.session.handle_room(h.now, ROOM, joined(3, false));
            h.transmits();
            h.events();
            (h, doc)
        }

        fn edit(&mut self, doc: &LoroDoc, text: &str) {
            doc.get_list("shapes").push(text).unwrap();
            doc.commit();
            self.session.flush_local(self.now);
        }
    }

    #[test]
    fn joins_on_connect_and_asks_to_resume_on_the_next() {
        let mut h = Harness::new();
        assert!(h.session.should_connect(h.now), "a new session connects at once");
        assert_eq!(h.session.hello("jwt").resume, None);
        h.session.join(ROOM, Vec::new()).unwrap();
        assert!(h.transmits().is_empty(), "nothing is sent while offline");
        h.session.connected(h.now, Transport::Quic, &welcome(false, 9));
        let sent = h.transmits();
        assert!(matches!(&sent[..], [Transmit::Join(j)] if j.room == ROOM && j.since.is_none()), "{sent:?}");
        assert_eq!(h.session.hello("jwt").resume, Some(vec![9; 32]));
        h.session.handle_room(h.now, ROOM, joined(3, false));
        let events = h.events();
        assert!(events.contains(&Event::Connected { transport: Transport::Quic, resumed: false }));
        assert!(events.iter().any(|e| matches!(e, Event::Joined { participant: 3, .. })));
    }

    #[test]
    fn local_edits_become_ops_that_settle_on_ack() {
        let (mut h, doc) = Harness::in_room();
        h.edit(&doc, "circle");
        assert_eq!(h.updates(), vec![1]);
        assert!(matches!(&h.store()[..], [StoreOp::Save { op_id: 1, .. }]));
        assert_eq!(h.session.pending(ROOM), vec![1]);
        h.session.handle_room(h.now, ROOM, Message::from(Ack { op_ids: vec![1] }));
        assert_eq!(h.events(), vec![Event::Acked { room: ROOM.into(), op_ids: vec![1] }]);
        assert_eq!(h.store(), vec![StoreOp::Remove { room: ROOM.into(), op_ids: vec![1] }]);
        assert!(h.session.pending(ROOM).is_empty());
    }

    #[test]
    fn unacked_ops_are_resent_once_after_a_reconnect_with_the_same_ids() {
        let (mut h, doc) = Harness::in_room();
        h.edit(&doc, "a");
        h.edit(&doc, "b");
        assert_eq!(h.updates(), vec![1, 2]);
        h.session.handle_room(h.now, ROOM, Message::from(Ack { op_ids: vec![1] }));
        h.session.disconnected(h.now, None, "wifi gone", None);
        h.edit(&doc, "made offline");
        assert!(h.updates().is_empty(), "offline: nothing goes out");
        h.now += Duration::from_secs(1);
        h.session.connected(h.now, Transport::WebSocket, &welcome(true, 2));
        let sent = h.transmits();
        let Some(Transmit::Join(join)) = sent.first() else { panic!("rejoin first: {sent:?}") };
        let since = VersionVector::decode(join.since.as_ref().expect("since")).unwrap();
        assert_eq!(since, doc.oplog_vv(), "the rejoin names everything we hold");
        h.session.handle_room(h.now, ROOM, joined(3, true));
        assert_eq!(h.updates(), vec![2, 3], "the unacked op and the offline one, once each");
        h.advance(Duration::from_secs(1));
        assert!(h.updates().is_empty(), "no resend without another reconnect");
    }

    #[test]
    fn cursors_are_throttled_and_the_newest_position_wins() {
        let (mut h, _doc) = Harness::in_room();
        h.session.cursor(h.now, ROOM, 1.0, 1.0).unwrap();
        h.session.cursor(h.now, ROOM, 2.0, 2.0).unwrap();
        h.session.cursor(h.now, ROOM, 3.0, 3.5).unwrap();
        let first = h.datagrams();
        assert!(
            matches!(&first[..], [Datagram::Cursor(c)] if c.x == quantise(1.0) && c.seq == 1),
            "{first:?}"
        );
        let (t0, interval) = (h.now, Duration::from_secs(1) / 30);
        let due = h.session.poll_timeout().expect("a flush is scheduled");
        assert_eq!(due, t0 + interval - interval / 2, "half an interval of tolerance");
        h.advance(Duration::from_millis(10));
        assert!(h.datagrams().is_empty(), "inside the interval nothing more is sent");
        h.advance(Duration::from_millis(7));
        let second = h.datagrams();
        // The average stays at the rate: the third send is due a whole interval after the second.
        h.session.cursor(h.now, ROOM, 4.0, 4.0).unwrap();
        assert!(h.datagrams().is_empty());
        assert_eq!(h.session.poll_timeout(), Some(t0 + 2 * interval - interval / 2));
        assert!(
            matches!(&second[..], [Datagram::Cursor(c)] if c.x == quantise(3.0) && c.y == quantise(3.5) && c.seq == 2),
            "{second:?}"
        );
    }

    #[test]
    fn incoming_cursors_and_presence_are_latest_wins() {
        let (mut h, _doc) = Harness::in_room();
        let batch = |seq, x| {
            Datagram::from(CursorBatch {
                slot: 0,
                cursors: vec![
                    CursorEntry { participant: 5, seq, x, y: 0 },
                    CursorEntry { participant: 3, seq, x, y: 0 },
                ],
            })
        };
        h.session.handle_datagram(batch(10, 160));
        h.session.handle_datagram(batch(9, 320));
        h.session.handle_datagram(batch(10, 320));
        let cursors = h.events();
        assert_eq!(
            cursors,
            vec![Event::Cursors {
                room: ROOM.into(),
                cursors: vec![RemoteCursor { participant: 5, x: 10.0, y: 0.0 }]
            }],
            "older and duplicate entries dropped, our own cursor ignored"
        );
        let presence = |seq, status| {
            Datagram::from(PresenceBatch {
                slot: 0,
                entries: vec![PresenceEntry { participant: 5, seq, status, tool: Tool::Pen }],
            })
        };
        h.session.handle_datagram(presence(1, Status::Active));
        h.session.handle_datagram(presence(2, Status::Active));
        h.session.handle_datagram(presence(3, Status::Away));
        h.session.handle_datagram(presence(2, Status::Idle));
        let events = h.events();
        assert_eq!(events.len(), 2, "first state and the change only: {events:?}");
        assert!(matches!(events[1], Event::Presence { status: Status::Away, .. }));
    }

    #[test]
    fn heartbeats_follow_the_announced_interval_and_changes_go_at_once() {
        let (mut h, _doc) = Harness::in_room();
        h.advance(Duration::from_millis(1999));
        assert!(h.datagrams().is_empty());
        h.advance(Duration::from_millis(1));
        assert!(matches!(&h.datagrams()[..], [Datagram::Heartbeat(b)] if b.seq == 2));
        h.session.presence(h.now, ROOM, Status::Away, Tool::Laser).unwrap();
        assert!(
            matches!(&h.datagrams()[..], [Datagram::Heartbeat(b)] if b.status == Status::Away && b.tool == Tool::Laser)
        );
    }

    #[test]
    fn ops_stay_within_the_announced_rate() {
        let (mut h, doc) = Harness::in_room();
        for i in 0..5 {
            h.edit(&doc, &format!("shape {i}"));
        }
        assert_eq!(h.updates(), vec![1, 2, 3], "the burst of 3 goes at once");
        h.advance(Duration::from_millis(100));
        assert_eq!(h.updates(), vec![4], "10 per second after that");
        h.advance(Duration::from_millis(100));
        assert_eq!(h.updates(), vec![5]);
    }

    #[test]
    fn rejections_settle_or_retry_by_code() {
        let (mut h, doc) = Harness::in_room();
        h.edit(&doc, "a");
        h.edit(&doc, "b");
        h.updates();
        h.store();
        let reject = |op_id, code: ErrorCode| {
            Message::from(Reject { op_id, code: code.to_u16(), message: "no".into() })
        };
        h.session.handle_room(h.now, ROOM, reject(1, ErrorCode::RateLimited));
        h.advance(Duration::from_millis(100));
        assert_eq!(h.updates(), vec![1], "a rate-limited op is sent again");
        h.session.handle_room(h.now, ROOM, reject(2, ErrorCode::ReadOnly));
        assert!(matches!(&h.events()[..], [Event::Rejected { op_id: 2, code: ErrorCode::ReadOnly, .. }]));
        assert_eq!(h.store(), vec![StoreOp::Remove { room: ROOM.into(), op_ids: vec![2] }]);
        assert_eq!(h.session.pending(ROOM), vec![1]);
    }

    #[test]
    fn a_refused_join_is_reported_and_forgotten() {
        let mut h = Harness::new();
        h.session.join(ROOM, Vec::new()).unwrap();
        h.session.connected(h.now, Transport::Quic, &welcome(false, 1));
        let fault = Fault {
            code: ErrorCode::RoomNotAllowed.to_u16(),
            kind: 0x10,
            reference: 0,
            message: "no".into(),
        };
        h.session.handle_room(h.now, ROOM, Message::from(fault));
        assert!(
            h.events().iter().any(|e| matches!(e, Event::JoinFailed { code: ErrorCode::RoomNotAllowed, .. }))
        );
        assert_eq!(h.session.rooms().count(), 0);
        assert!(h.session.join("../bad", Vec::new()).is_err(), "ids are validated locally");
    }

    #[test]
    fn restored_ops_apply_locally_and_are_sent_after_joining() {
        let source = LoroDoc::new();
        source.get_list("shapes").push("from last run").unwrap();
        source.commit();
        let data = source.export(loro::ExportMode::all_updates()).unwrap();
        let mut h = Harness::new();
        let doc = h.session.join(ROOM, vec![(41, data)]).unwrap();
        assert_eq!(doc.get_list("shapes").len(), 1, "the stored edit shows at once");
        h.session.connected(h.now, Transport::Quic, &welcome(false, 1));
        h.session.handle_room(h.now, ROOM, joined(0, false));
        assert_eq!(h.updates(), vec![41]);
        assert_eq!(h.session.next_op_id(), 42, "new ops never reuse a stored id");
    }

    #[test]
    fn remote_updates_import_and_bad_ones_are_errors() {
        let (mut h, doc) = Harness::in_room();
        let other = LoroDoc::new();
        other.get_list("shapes").push("theirs").unwrap();
        other.commit();
        let data = other.export(loro::ExportMode::all_updates()).unwrap();
        h.session.handle_room(h.now, ROOM, Message::from(RemoteUpdate { from: 5, data }));
        assert!(matches!(&h.events()[..], [Event::RemoteUpdate { from: 5, .. }]), "imported, then reported");
        assert_eq!(doc.get_list("shapes").len(), 1);
        let again = other.export(loro::ExportMode::all_updates()).unwrap();
        h.session.handle_room(h.now, ROOM, Message::from(RemoteUpdate { from: 5, data: again }));
        h.session.handle_room(h.now, ROOM, Message::from(RemoteUpdate { from: 5, data: vec![0xff; 40] }));
        let events = h.events();
        assert!(matches!(events[0], Event::RemoteUpdate { from: 5, .. }));
        assert!(events.iter().any(|e| matches!(e, Event::Error { code: ErrorCode::InvalidUpdate, .. })));
        h.session.handle_room(h.now, ROOM, Message::from(ParticipantLeft { index: 5, code: 306 }));
        assert!(matches!(
            &h.events()[..],
            [Event::ParticipantLeft { index: 5, code: ErrorCode::PresenceTimeout, .. }]
        ));
    }

    #[test]
    fn reconnect_backoff_is_jittered_bounded_and_honours_go_away() {
        let mut h = Harness::new();
        let mut bounds = Vec::new();
        for _ in 0..8 {
            h.session.disconnected(h.now, None, "refused", None);
            let Some(Event::Disconnected { retry_in, .. }) = h.events().pop() else { panic!() };
            bounds.push(retry_in);
            assert!(
                !h.session.should_connect(h.now + retry_in - Duration::from_nanos(1)) || retry_in.is_zero()
            );
            assert!(h.session.should_connect(h.now + retry_in));
        }
        for (attempt, retry_in) in bounds.iter().enumerate() {
            let bound = Duration::from_millis(250).saturating_mul(1 << attempt).min(Duration::from_secs(10));
            assert!(*retry_in <= bound, "attempt {attempt}: {retry_in:?} > {bound:?}");
        }
        assert!(bounds.windows(2).any(|w| w[0] != w[1]), "jittered: {bounds:?}");
        h.session.connected(h.now, Transport::Quic, &welcome(false, 1));
        let go =
            GoAway { code: ErrorCode::ShuttingDown.to_u16(), retry_after_ms: 1000, message: String::new() };
        h.session.handle_control(Message::from(go));
        h.session.disconnected(h.now, None, "closed", None);
        let Some(Event::Disconnected { retry_in, code, .. }) = h.events().pop() else { panic!() };
        assert_eq!(code, Some(ErrorCode::ShuttingDown));
        assert!((Duration::from_secs(1)..=Duration::from_secs(2)).contains(&retry_in), "{retry_in:?}");
    }
}
