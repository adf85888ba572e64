//! Every message that travels on a reliable stream (SPEC.md §Messages), grouped by channel.
//!
//! Conventions: `slot` is the connection-local room number from [`Joined`]; participant
//! numbers (`participant`, `index`, `from`, `by`, `target`) are room-local indices from
//! [`Participant::index`]; times are Unix milliseconds; `code` fields carry an
//! [`ErrorCode`](crate::ErrorCode) number; "0" means "none" where a field says so.

/// Applies the derives every wire type shares: rkyv (with bytecheck validation), optional
/// serde (golden vectors, tools) and optional proptest strategies.
macro_rules! wire {
    ($($item:item)*) => {$(
        #[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        #[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
        $item
    )*};
}
pub(crate) use wire;

/// The channel a message kind travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// The first bidirectional stream the client opens: handshake and session-wide messages.
    Control,
    /// One bidirectional stream per joined room, opened by the client with [`Join`].
    Room,
    /// A unidirectional stream the server opens to send a room's state.
    Snapshot,
    /// Any stream (only [`Fault`]).
    Any,
    /// An unreliable datagram.
    Datagram,
}

/// Who sends a message kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server.
    ClientToServer,
    /// Server to client.
    ServerToClient,
    /// Either side.
    Both,
}

kinds! {
    /// A message on a reliable stream. Encode with [`Message::encode`], decode with
    /// [`FrameDecoder`](crate::FrameDecoder).
    pub enum Message;
    /// The kind byte of a stream [`Message`].
    pub enum Kind;

    /// Opens the session: versions, identity, JWT, optional resume token.
    0x01 => Hello(Control, ClientToServer),
    /// Accepts the session: chosen version, ids, resume token, limits.
    0x02 => Welcome(Control, ServerToClient),
    /// Liveness and round-trip probe.
    0x03 => Ping(Control, Both),
    /// Answer to a Ping.
    0x04 => Pong(Control, Both),
    /// Replaces the session's JWT before it expires.
    0x05 => RefreshToken(Control, ClientToServer),
    /// The new JWT was accepted.
    0x06 => TokenRefreshed(Control, ServerToClient),
    /// The server will close the session; reconnect after the hinted delay.
    0x07 => GoAway(Control, ServerToClient),
    /// A request failed; on the stream the request came on.
    0x08 => Fault(Any, Both),

    /// First frame of a room stream: join a room.
    0x10 => Join(Room, ClientToServer),
    /// The join succeeded.
    0x11 => Joined(Room, ServerToClient),
    /// Leave the room; the server answers Left and finishes the stream.
    0x12 => Leave(Room, ClientToServer),
    /// This participant is no longer in the room (own leave, removal, shutdown).
    0x13 => Left(Room, ServerToClient),
    /// Someone's role or state changed.
    0x16 => ParticipantUpdated(Room, ServerToClient),
    /// Who joined and left since the last one, or (`full`) everyone in the room.
    0x17 => Participants(Room, ServerToClient),

    /// A local Loro update, with the client's op id.
    0x20 => Update(Room, ClientToServer),
    /// These op ids are durable.
    0x21 => Ack(Room, ServerToClient),
    /// This op was refused; the document is unchanged.
    0x22 => Reject(Room, ServerToClient),
    /// Another participant's update.
    0x23 => RemoteUpdate(Room, ServerToClient),
    /// Ask for what the client lacks after this version vector.
    0x24 => Sync(Room, ClientToServer),
    /// First frame of a snapshot stream.
    0x28 => SnapshotBegin(Snapshot, ServerToClient),
    /// A piece of the snapshot stream's payload.
    0x29 => SnapshotChunk(Snapshot, ServerToClient),

    /// Send a chat message.
    0x30 => ChatSend(Room, ClientToServer),
    /// A chat message (live, or in a history page).
    0x31 => ChatMessage(Room, ServerToClient),
    /// Delete a chat message (teacher).
    0x32 => ChatDelete(Room, ClientToServer),
    /// A chat message was deleted.
    0x33 => ChatDeleted(Room, ServerToClient),
    /// Ask for older chat messages.
    0x34 => ChatHistory(Room, ClientToServer),
    /// A page of chat history.
    0x35 => ChatPage(Room, ServerToClient),

    /// Start a poll (teacher).
    0x40 => PollStart(Room, ClientToServer),
    /// A poll started.
    0x41 => PollStarted(Room, ServerToClient),
    /// Answer a poll, idempotent by attempt id.
    0x42 => PollAnswer(Room, ClientToServer),
    /// The answer is recorded.
    0x43 => PollAnswered(Room, ServerToClient),
    /// Close a poll (teacher).
    0x44 => PollClose(Room, ClientToServer),
    /// Aggregated poll results (live counts or final).
    0x45 => PollResults(Room, ServerToClient),

    /// Raise one's hand.
    0x50 => HandRaise(Room, ClientToServer),
    /// Lower a hand (own, or anyone's for a teacher).
    0x51 => HandLower(Room, ClientToServer),
    /// The ordered queue of raised hands.
    0x52 => HandQueue(Room, ServerToClient),

    /// A moderation action (teacher).
    0x60 => Moderate(Room, ClientToServer),
    /// A moderation action took effect.
    0x61 => Moderated(Room, ServerToClient),
    /// Set the room's active-cursor cap (teacher).
    0x62 => SetCursorCap(Room, ClientToServer),
    /// The room's active-cursor cap changed.
    0x63 => CursorCap(Room, ServerToClient),

    /// Ask for SFU access for this room.
    0x70 => SfuJoin(Room, ClientToServer),
    /// SFU access granted, with what the role allows.
    0x71 => SfuGrant(Room, ServerToClient),
    /// Subscribe to other participants' feeds.
    0x72 => SfuSubscribe(Room, ClientToServer),
    /// An SDP offer or answer, relayed to or from the SFU.
    0x73 => SfuSdp(Room, Both),
    /// A trickle ICE candidate, relayed to or from the SFU.
    0x74 => SfuCandidate(Room, Both),
    /// Stop publishing or drop a subscription.
    0x75 => SfuLeave(Room, ClientToServer),
    /// A participant's SFU state changed.
    0x76 => SfuEvent(Room, ServerToClient),
    /// The room's SFU became unreachable or recovered; a fallback link while it is out.
    0x77 => SfuStatus(Room, ServerToClient),
}

impl Fault {
    /// A fault with `message` clipped to the wire limit ([`clip_reason`]), so building one
    /// from any error text never makes an unencodable frame.
    pub fn new(code: crate::ErrorCode, kind: u8, reference: u64, message: impl Into<String>) -> Self {
        Self { code: code.to_u16(), kind, reference, message: clip_reason(message.into()) }
    }
}

/// Cuts a human-readable reason to [`MAX_REASON_LEN`](crate::limits::MAX_REASON_LEN) bytes,
/// on a character boundary.
///
/// ```
/// let clipped = easel_proto::message::clip_reason("é".repeat(200)); // 400 bytes
/// assert_eq!(clipped, "é".repeat(128));
/// ```
pub fn clip_reason(mut reason: String) -> String {
    let max = crate::limits::MAX_REASON_LEN;
    if reason.len() > max {
        let end = (0..=max).rev().find(|&i| reason.is_char_boundary(i)).unwrap_or(0);
        reason.truncate(end);
    }
    reason
}

impl Message {
    /// Encodes the message as one stream frame: `varint(len) · kind · archive`.
    /// Fails if a field breaks a limit or the frame would exceed [`MAX_FRAME_LEN`].
    ///
    /// [`MAX_FRAME_LEN`]: crate::limits::MAX_FRAME_LEN
    pub fn encode(&self) -> Result<Vec<u8>, crate::Error> {
        let mut out = Vec::new();
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Appends the frame to `out` (which is left unchanged on error).
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), crate::Error> {
        self.validate()?;
        let body = self.archive()?;
        let len = body.len() + 1;
        if len > crate::limits::MAX_FRAME_LEN {
            return Err(crate::Error::FrameTooLarge { len: len as u64, max: crate::limits::MAX_FRAME_LEN });
        }
        out.reserve(crate::varint::len(len as u64) + len);
        crate::varint::encode(len as u64, out);
        out.push(self.kind().to_u8());
        out.extend_from_slice(&body);
        Ok(())
    }

    /// Decodes one frame's kind byte and body (the bytes after the length prefix), checking
    /// structure and limits. `body` need not be aligned.
    pub fn decode_payload(payload: &[u8]) -> Result<Self, crate::Error> {
        let (&byte, body) = payload.split_first().ok_or(crate::Error::Empty)?;
        let kind = Kind::from_u8(byte).ok_or_else(|| match crate::DatagramKind::from_u8(byte) {
            Some(_) => crate::Error::WrongChannel { kind: byte, channel: "a stream" },
            None => crate::Error::UnknownKind(byte),
        })?;
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(body.len());
        aligned.extend_from_slice(body);
        let message = Self::unarchive(kind, &aligned)?;
        message.validate()?;
        Ok(message)
    }
}

wire! {
    /// A participant's role in a room, from its token.
    #[derive(Copy, Hash)]
    pub enum Role {
        /// Edits, moderates, starts polls, may publish video.
        Teacher,
        /// Edits, chats, answers polls, may publish video when the room allows it.
        Student,
        /// Reads and subscribes only: every write is refused with `Forbidden`.
        Viewer,
    }

    /// How a room's state reaches a joining client.
    #[derive(Copy, Hash)]
    pub enum SyncKind {
        /// The client is up to date; no snapshot stream follows.
        None,
        /// A snapshot stream follows carrying Loro updates since the client's version vector.
        Updates,
        /// A snapshot stream follows carrying a Loro snapshot of the whole document.
        Snapshot,
    }

    /// A moderation action.
    #[derive(Copy, Hash)]
    pub enum ModAction {
        /// The target may no longer chat.
        MuteChat,
        /// The target may chat again.
        UnmuteChat,
        /// The target's board updates are refused from now on.
        ReadOnly,
        /// The target may edit the board again (within its role).
        ReadWrite,
        /// The target's session leaves the room; its token is refused for the room until it expires.
        Remove,
        /// The target's SFU publisher is torn down.
        StopMedia,
    }

    /// Whether an SDP blob is an offer or an answer.
    #[derive(Copy, Hash)]
    pub enum SdpKind {
        /// An SDP offer.
        Offer,
        /// An SDP answer.
        Answer,
    }

    /// A participant's SFU state change.
    #[derive(Copy, Hash)]
    pub enum SfuEventKind {
        /// Joined the SFU room (subscriber only so far).
        Joined,
        /// Started publishing a feed (camera on).
        Publishing,
        /// Stopped publishing a feed (camera off).
        Unpublished,
        /// Left the SFU room.
        Left,
    }

    /// Control: opens the session.
    pub struct Hello {
        /// Protocol versions the client speaks, most preferred first (1 to 16 entries).
        pub versions: Vec<u16>,
        /// Stable id of this client installation (≤ 64 bytes), for logs and resume.
        pub client_id: String,
        /// Client software and version, e.g. `easel-client/0.1.0` (≤ 64 bytes).
        pub client: String,
        /// The JWT (≤ 8 KiB). Empty is refused with `Unauthenticated`.
        pub token: String,
        /// Resume token from an earlier Welcome (≤ 256 bytes).
        pub resume: Option<Vec<u8>>,
    }

    /// Limits and rates the server enforces on this session.
    #[derive(Copy, Hash)]
    pub struct SessionLimits {
        /// Largest stream frame the server accepts.
        pub max_frame_len: u32,
        /// Largest datagram the server accepts.
        pub max_datagram_len: u16,
        /// Most rooms this connection may join.
        pub max_rooms: u16,
        /// Most participants a room admits.
        pub max_participants: u32,
        /// Sustained CRDT updates per second.
        pub ops_per_sec: u32,
        /// Update burst allowance.
        pub ops_burst: u32,
        /// Sustained datagrams per second.
        pub datagrams_per_sec: u32,
        /// Datagram burst allowance.
        pub datagrams_burst: u32,
        /// Chat messages per minute.
        pub chat_per_min: u32,
        /// Presence ticks per second; also the floor rate of cursor delivery: moved cursors
        /// reach each participant at least this often, usually sooner (SPEC §8.3).
        pub tick_hz: u16,
        /// How often the client should send a presence heartbeat.
        pub heartbeat_ms: u32,
        /// Silence after which a participant is evicted from presence.
        pub presence_ttl_ms: u32,
        /// How long a dropped session may be resumed.
        pub resume_grace_ms: u32,
    }

    /// Control: the session is open.
    pub struct Welcome {
        /// The version the server will speak (one the client listed).
        pub version: u16,
        /// Server-assigned session id.
        pub session_id: u64,
        /// The token's subject.
        pub user: String,
        /// Server clock, for offset estimation.
        pub server_time_ms: u64,
        /// When the token expires; refresh before then.
        pub token_expires_ms: u64,
        /// Opaque token to resume this session within the grace window (≤ 256 bytes).
        pub resume_token: Vec<u8>,
        /// Whether this is a resumed session (rooms keep their participant numbers).
        pub resumed: bool,
        /// What the server enforces.
        pub limits: SessionLimits,
    }

    /// Control: a probe; the peer answers [`Pong`] with the same nonce.
    #[derive(Copy, Hash)]
    pub struct Ping {
        /// Echoed in the Pong.
        pub nonce: u64,
    }

    /// Control: answer to a [`Ping`].
    #[derive(Copy, Hash)]
    pub struct Pong {
        /// The Ping's nonce.
        pub nonce: u64,
        /// The answering side's clock when it answered.
        pub time_ms: u64,
    }

    /// Control: a fresh JWT for the same subject.
    pub struct RefreshToken {
        /// The new JWT (≤ 8 KiB).
        pub token: String,
    }

    /// Control: the refreshed token was accepted.
    #[derive(Copy, Hash)]
    pub struct TokenRefreshed {
        /// When the new token expires.
        pub expires_ms: u64,
    }

    /// Control: the server is about to close the session.
    pub struct GoAway {
        /// Why (`ShuttingDown`, `Overloaded`, `TokenExpired`, …).
        pub code: u16,
        /// Wait at least this long (plus jitter) before reconnecting; 0 = at once.
        pub retry_after_ms: u32,
        /// Human-readable detail (≤ 256 bytes).
        pub message: String,
    }

    /// Any stream: a request failed. Sent on the stream that carried the request; on the
    /// control stream before closing the session when the failure is fatal.
    pub struct Fault {
        /// The [`ErrorCode`](crate::ErrorCode) number.
        pub code: u16,
        /// Kind byte of the message that failed; 0 when none applies.
        pub kind: u8,
        /// The failed request's own id (op id, client message id, poll id, attempt id…); 0 when none.
        pub reference: u64,
        /// Human-readable detail (≤ 256 bytes).
        pub message: String,
    }

    /// Room: first frame of a room stream.
    pub struct Join {
        /// The room id (see [`crate::room`]).
        pub room: String,
        /// Display name shown to others (≤ 64 bytes).
        pub name: String,
        /// The client's Loro version vector (encoded), if it already holds some of the room's state.
        pub since: Option<Vec<u8>>,
    }

    /// A room member as others see it.
    pub struct Participant {
        /// Room-local number, stable for the participant's stay (and across resumes).
        pub index: u16,
        /// The token's subject.
        pub user: String,
        /// Display name.
        pub name: String,
        /// Role from the token.
        pub role: Role,
        /// Board updates are refused (moderation).
        pub read_only: bool,
        /// Chat is refused (moderation).
        pub chat_muted: bool,
        /// Publishing video through the SFU.
        pub camera: bool,
        /// In the hand-raise queue.
        pub hand_raised: bool,
    }

    /// Room: the join succeeded.
    pub struct Joined {
        /// Connection-local room number used by datagrams and snapshot streams.
        pub slot: u16,
        /// The room id, as joined.
        pub room: String,
        /// This participant's room-local number.
        pub participant: u16,
        /// This participant's role in the room.
        pub role: Role,
        /// True when a resumed session got its old place back (others saw no leave/join).
        pub resumed: bool,
        /// Whether and how a snapshot stream follows.
        pub sync: SyncKind,
    }

    /// Room: leave the room.
    #[derive(Copy, Hash)]
    pub struct Leave {}

    /// Room: this participant is out of the room; the server finishes the stream after it.
    pub struct Left {
        /// `Normal` for an own leave, otherwise why (`Removed`, `ShuttingDown`, …).
        pub code: u16,
        /// Human-readable detail (≤ 256 bytes).
        pub message: String,
    }

    /// A member who left, in a [`Participants`] frame.
    #[derive(Copy, Hash)]
    pub struct ParticipantGone {
        /// Who.
        pub index: u16,
        /// Why: `Normal` (clean leave), `PresenceTimeout`, `Removed`, `SlowConsumer`, ….
        pub code: u16,
    }

    /// Room: membership changes, batched (SPEC §6.4). A delta (`full` false) lists who joined
    /// and who left since the previous frame; someone who joined and left in between is in
    /// neither. A full list (`full` true, `left` empty) is everyone in the room, this
    /// participant included, and replaces what the receiver holds; a newcomer gets one after
    /// its `Joined`, and a list too long for one frame continues in deltas that only join.
    pub struct Participants {
        /// Whether `joined` is the whole room.
        pub full: bool,
        /// Who joined (or, when `full`, everyone), with their state now.
        pub joined: Vec<Participant>,
        /// Who left.
        pub left: Vec<ParticipantGone>,
    }

    /// Room: someone's state changed; replaces what the receiver holds for that index.
    pub struct ParticipantUpdated {
        /// The new state.
        pub participant: Participant,
    }

    /// Room: a local Loro update.
    pub struct Update {
        /// Client-chosen id, unique per client id for the life of the room (resends reuse it).
        pub op_id: u64,
        /// Loro update bytes (`LoroDoc::export(ExportMode::updates…)`).
        pub data: Vec<u8>,
    }

    /// Room: these updates are durable on the server.
    pub struct Ack {
        /// Op ids, in the order they were committed (1 to 4096).
        pub op_ids: Vec<u64>,
    }

    /// Room: an update was refused; the server's document is unchanged by it.
    pub struct Reject {
        /// The refused op.
        pub op_id: u64,
        /// Why (`InvalidUpdate`, `Forbidden`, `ReadOnly`, `RateLimited`, …).
        pub code: u16,
        /// Human-readable detail (≤ 256 bytes).
        pub message: String,
    }

    /// Room: another participant's update, already durable.
    pub struct RemoteUpdate {
        /// Its author.
        pub from: u16,
        /// Loro update bytes.
        pub data: Vec<u8>,
    }

    /// Room: ask for what the client lacks; the server answers with a snapshot stream.
    pub struct Sync {
        /// The client's encoded Loro version vector.
        pub since: Vec<u8>,
    }

    /// Snapshot: the first frame of a snapshot stream.
    pub struct SnapshotBegin {
        /// Which room (from [`Joined::slot`]).
        pub slot: u16,
        /// Updates since the client's version, or a whole snapshot.
        pub sync: SyncKind,
        /// Total payload bytes the [`SnapshotChunk`]s carry.
        pub total_len: u64,
        /// The server's encoded version vector the payload brings the client to.
        pub version: Vec<u8>,
    }

    /// Snapshot: a piece of the payload, in order.
    pub struct SnapshotChunk {
        /// Payload bytes.
        pub data: Vec<u8>,
    }

    /// Room: send a chat message.
    pub struct ChatSend {
        /// Client-chosen id echoed in the broadcast [`ChatMessage`] and any [`Fault`].
        pub client_msg_id: u64,
        /// The text (1 to 2000 bytes).
        pub text: String,
    }

    /// Room: a chat message.
    pub struct ChatMessage {
        /// Server-assigned id, increasing within the room.
        pub id: u64,
        /// Author's participant number at the time.
        pub from: u16,
        /// Author's user id.
        pub user: String,
        /// Author's display name.
        pub name: String,
        /// The text.
        pub text: String,
        /// When the server accepted it.
        pub sent_ms: u64,
        /// The author's [`ChatSend::client_msg_id`].
        pub client_msg_id: u64,
    }

    /// Room: delete a chat message (teacher).
    #[derive(Copy, Hash)]
    pub struct ChatDelete {
        /// The message's id.
        pub id: u64,
    }

    /// Room: a chat message was deleted.
    #[derive(Copy, Hash)]
    pub struct ChatDeleted {
        /// The message's id.
        pub id: u64,
        /// Who deleted it.
        pub by: u16,
    }

    /// Room: ask for a page of history.
    #[derive(Copy, Hash)]
    pub struct ChatHistory {
        /// Messages with ids below this one; 0 = the newest.
        pub before: u64,
        /// Page size (1 to 200).
        pub limit: u16,
    }

    /// Room: a page of history, oldest first.
    pub struct ChatPage {
        /// The messages (≤ 200).
        pub messages: Vec<ChatMessage>,
        /// Whether older messages exist.
        pub more: bool,
    }

    /// Room: start a poll (teacher).
    pub struct PollStart {
        /// Client-chosen id echoed in [`PollStarted`] and any [`Fault`].
        pub request: u64,
        /// The question (1 to 500 bytes).
        pub question: String,
        /// The options (2 to 16, each 1 to 200 bytes).
        pub options: Vec<String>,
        /// Whether an answer may pick several options.
        pub multiple: bool,
        /// Close automatically after this long; 0 = only by [`PollClose`].
        pub duration_ms: u32,
        /// Broadcast counts while the poll is open.
        pub live: bool,
    }

    /// Room: a poll started.
    pub struct PollStarted {
        /// Server-assigned poll id.
        pub poll_id: u64,
        /// The starter's [`PollStart::request`] (0 for others' polls is not guaranteed).
        pub request: u64,
        /// Who started it.
        pub by: u16,
        /// The question.
        pub question: String,
        /// The options.
        pub options: Vec<String>,
        /// Whether an answer may pick several options.
        pub multiple: bool,
        /// When the timer closes it; 0 = no timer.
        pub closes_at_ms: u64,
        /// Whether counts are broadcast while open.
        pub live: bool,
    }

    /// Room: answer a poll. Same attempt id again = no-op; a new attempt id replaces the
    /// participant's previous answer.
    pub struct PollAnswer {
        /// Which poll.
        pub poll_id: u64,
        /// Client-chosen idempotency key.
        pub attempt_id: u64,
        /// Chosen option indices (exactly 1 unless the poll is multiple; no repeats).
        pub choices: Vec<u8>,
    }

    /// Room: the answer is recorded (also for a repeated attempt id).
    #[derive(Copy, Hash)]
    pub struct PollAnswered {
        /// Which poll.
        pub poll_id: u64,
        /// The answer's attempt id.
        pub attempt_id: u64,
    }

    /// Room: close a poll (teacher).
    #[derive(Copy, Hash)]
    pub struct PollClose {
        /// Which poll.
        pub poll_id: u64,
    }

    /// Room: poll results.
    pub struct PollResults {
        /// Which poll.
        pub poll_id: u64,
        /// Answers per option, in option order.
        pub counts: Vec<u32>,
        /// Participants who answered.
        pub respondents: u32,
        /// Whether the poll is closed (final results).
        pub closed: bool,
    }

    /// Room: raise one's hand (joins the end of the queue; no-op if raised).
    #[derive(Copy, Hash)]
    pub struct HandRaise {}

    /// Room: lower a hand.
    #[derive(Copy, Hash)]
    pub struct HandLower {
        /// Whose hand: one's own, or anyone's for a teacher.
        pub participant: u16,
    }

    /// Room: the ordered queue of raised hands, first raised first.
    pub struct HandQueue {
        /// Participant numbers.
        pub queue: Vec<u16>,
    }

    /// Room: a moderation action (teacher).
    pub struct Moderate {
        /// Whom it applies to.
        pub target: u16,
        /// What to do.
        pub action: ModAction,
        /// Shown to the target (≤ 256 bytes).
        pub reason: String,
    }

    /// Room: a moderation action took effect.
    pub struct Moderated {
        /// Whom it applies to.
        pub target: u16,
        /// What was done.
        pub action: ModAction,
        /// Which teacher did it.
        pub by: u16,
        /// The teacher's reason.
        pub reason: String,
    }

    /// Room: set the room's active-cursor cap (teacher): how many cursors besides the teachers'
    /// everyone is shown.
    #[derive(Copy, Hash)]
    pub struct SetCursorCap {
        /// The cap; 0 shows every cursor; `None` goes back to the server's default.
        pub cap: Option<u16>,
    }

    /// Room: the room's active-cursor cap now in force.
    #[derive(Copy, Hash)]
    pub struct CursorCap {
        /// Cursors shown besides the teachers'; 0: every cursor.
        pub cap: u16,
        /// Which teacher set it.
        pub by: u16,
    }

    /// Room: ask for SFU access.
    #[derive(Copy, Hash)]
    pub struct SfuJoin {
        /// Whether the client wants to publish (refused with `Forbidden` for a viewer).
        pub publish: bool,
    }

    /// Room: SFU access granted.
    pub struct SfuGrant {
        /// Whether the role and room allow publishing.
        pub can_publish: bool,
        /// ICE server URLs (STUN/TURN) for the peer connection (≤ 8).
        pub ice_servers: Vec<String>,
    }

    /// Room: subscribe to feeds; the server answers with an [`SfuSdp`] offer per feed.
    pub struct SfuSubscribe {
        /// Feed ids from [`SfuEvent`]s (1 to 64).
        pub feeds: Vec<u64>,
    }

    /// Room: an SDP offer or answer. `feed` 0 is the client's own publisher; otherwise the
    /// subscription to that feed.
    pub struct SfuSdp {
        /// Which peer connection.
        pub feed: u64,
        /// Offer or answer.
        pub kind: SdpKind,
        /// The SDP (≤ 64 KiB).
        pub sdp: String,
    }

    /// Room: a trickle ICE candidate; an empty `candidate` means end of candidates.
    pub struct SfuCandidate {
        /// Which peer connection (as in [`SfuSdp`]).
        pub feed: u64,
        /// The `candidate:` line (≤ 1 KiB).
        pub candidate: String,
        /// Its media id (`sdpMid`).
        pub mid: String,
        /// Its m-line index.
        pub mline_index: u16,
    }

    /// Room: stop publishing (`feed` 0) or drop a subscription.
    #[derive(Copy, Hash)]
    pub struct SfuLeave {
        /// Which peer connection.
        pub feed: u64,
    }

    /// Room: a participant's SFU state changed.
    #[derive(Copy, Hash)]
    pub struct SfuEvent {
        /// Who.
        pub participant: u16,
        /// Their feed id (0 when not publishing).
        pub feed: u64,
        /// What changed.
        pub event: SfuEventKind,
    }

    /// Room: the room's SFU became unreachable (video is out) or recovered.
    pub struct SfuStatus {
        /// Whether the SFU answers again.
        pub reachable: bool,
        /// While unreachable: where the class can meet instead (the server's fallback link,
        /// e.g. a meeting URL), empty when none is configured or the SFU is back (≤ 1024 bytes).
        pub fallback_url: String,
    }
}
