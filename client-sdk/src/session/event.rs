//! What the app hears from a session: [`Event`], and the cursor positions a batch carries.

use std::time::Duration;

use easel_proto::ErrorCode;
use easel_proto::datagram::{Status, Tool};
use easel_proto::message::{
    ChatMessage, ModAction, Participant, PollResults, PollStarted, SdpKind, SfuEventKind,
};

use crate::Transport;

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
    /// The server accepted a refreshed token (`refresh_token`): the session now lasts until
    /// the new token expires.
    TokenRefreshed {
        /// When the new token expires, ms since the Unix epoch.
        expires_ms: u64,
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
    /// Other participants' cursors moved: the newer positions of one server batch (board
    /// pixels), so an app redraws once per batch rather than once per cursor. Batches come
    /// as the server paces them (SPEC §8.3), not on a fixed tick.
    Cursors {
        /// Room id.
        room: String,
        /// The positions, one per participant.
        cursors: Vec<RemoteCursor>,
    },
    /// Another participant's presence changed. `tool` = [`Tool::Hidden`]: do not draw its
    /// cursor. Whose connection was lost is reported so, `Away` and `Hidden`, while the server
    /// keeps its place for a resume (SPEC §8.4): no [`Event::ParticipantLeft`] comes unless the
    /// resume grace window passes, and if it comes back, its next `Presence` says so.
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
    /// A teacher set the room's active-cursor cap (SPEC §8.5).
    CursorCap {
        /// Room id.
        room: String,
        /// Cursors shown besides the teachers'; 0: every cursor.
        cap: u16,
        /// Which teacher.
        by: u16,
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
    /// The room's video provider became unreachable (with the server's fallback link, if it
    /// has one, e.g. a meeting URL) or reachable again (SPEC §13).
    SfuStatus {
        /// Room id.
        room: String,
        /// Whether the SFU answers.
        reachable: bool,
        /// Where to meet while it does not; empty when none is configured or it is back.
        fallback_url: String,
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
