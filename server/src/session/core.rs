//! The decisions of one client session, sans-IO: what a `Hello` gets, what each control-stream
//! frame is answered with, which slot a join takes, where each room-stream frame and datagram
//! goes, and what the session's end means for its rooms. Time comes in as arguments; nothing
//! here awaits, locks or touches a socket. The driver ([`super`]) owns the streams and tasks and
//! asks this module at every step.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use easel_proto::datagram::{Cursor, Heartbeat};
use easel_proto::message::{
    Fault, GoAway, Hello, Kind, Pong, Reject, Role, SessionLimits, TokenRefreshed, Welcome,
};
use easel_proto::{Datagram, ErrorCode, Message, PROTOCOL_VERSION, limits};

use crate::auth::{Claims, Verifier};
use crate::config::ServerConfig;
use crate::room::Command;
use easel_proto::rate::TokenBucket;
use easel_transport::Closure;
use easel_transport::framed::Read;

/// How long a client told to go away by a shutdown should wait before reconnecting.
const RECONNECT_HINT_MS: u32 = 1000;

/// A refused request or session: the code and reason, and the `Fault` to answer with (none
/// when the peer is already gone).
#[derive(Debug)]
pub(crate) struct Refusal {
    /// Close or refusal code.
    pub(crate) code: ErrorCode,
    /// Why, for the peer and the log.
    pub(crate) why: String,
    /// What to write before finishing the stream (boxed: refusals are rare, messages large).
    pub(crate) reply: Option<Box<Message>>,
}

/// Why an established session ended; it decides what happens to the session's rooms.
#[derive(Debug)]
pub(crate) enum Ending {
    /// The server ended it (shutdown, token expiry, slow consumer, a fatal protocol error).
    Server(ErrorCode, String),
    /// The peer or the network ended it: how the transport closed decides.
    Peer(String),
    /// A resume on another connection took the session over.
    TakenOver,
}

impl Ending {
    pub(crate) fn server(code: ErrorCode, why: impl Into<String>) -> Self {
        Self::Server(code, why.into())
    }

    pub(crate) fn peer(why: impl Into<String>) -> Self {
        Self::Peer(why.into())
    }
}

/// What the end of a session does to its rooms (SPEC §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    /// Leave each at once, others told with this code; the session cannot be resumed.
    Leave(ErrorCode),
    /// Keep each place, unannounced, for the resume grace window.
    Detach,
}

impl Settle {
    /// The command that tells a room what the session's end means for member `participant`
    /// of connection `conn`.
    pub(crate) fn command(self, participant: u16, conn: u64) -> Command {
        match self {
            Self::Leave(code) => Command::Leave { participant, conn, code },
            Self::Detach => Command::Detach { participant, conn },
        }
    }
}

/// What a refreshed token means for one joined room (SPEC §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recheck {
    /// The new token does not grant the room: the membership ends with the code a `Join`
    /// would have got.
    Leave(ErrorCode),
    /// It does: the member has this role (changed or not) and token expiry (Unix ms) now.
    Keep(Role, u64),
}

impl Recheck {
    /// What `claims` mean for a membership of `room`.
    fn of(claims: &Claims, room: &str) -> Self {
        if claims.grants(room) {
            Self::Keep(claims.role(), claims.exp.saturating_mul(1000))
        } else {
            Self::Leave(ErrorCode::RoomNotAllowed)
        }
    }

    /// The command that tells the room, for member `participant` of connection `conn`.
    pub(crate) fn command(self, participant: u16, conn: u64) -> Command {
        match self {
            Self::Leave(code) => Command::Leave { participant, conn, code },
            Self::Keep(role, expires_ms) => Command::Refreshed { participant, conn, role, expires_ms },
        }
    }
}

/// What the control stream does next.
#[derive(Debug)]
pub(crate) enum Control<H> {
    /// Write this reply and go on.
    Reply(Message),
    /// A token refresh was accepted: tell each room what it means for its member, then write
    /// the reply (`TokenRefreshed`).
    Refresh(Message, Vec<(H, u16, Recheck)>),
    /// Nothing to say; go on.
    Quiet,
    /// Write `reply` if any, then end the session.
    End(Option<Message>, Ending),
}

/// How a room stream's membership ended, seen from the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// The client sent `Leave`, or broke the stream's framing: leave with this code.
    Leave(ErrorCode),
    /// The room already ended the membership.
    Ended,
    /// The stream ended or broke without a word: the client finished it, or the connection
    /// is going (then the session's end decides).
    Gone,
}

/// Where a room-stream frame goes.
pub(crate) enum Route {
    /// To the room.
    Room(Command),
    /// An update over the connection's op rate: its `Reject`, to the room (which queues it in
    /// order with the member's other replies).
    RateLimited(Command),
    /// Nowhere: the membership ends.
    Exit(Exit),
}

/// Where a datagram goes.
#[derive(Debug)]
pub(crate) enum DatagramRoute<H> {
    /// A member's cursor, to its room.
    Cursor(H, u16, Cursor),
    /// A member's heartbeat, to its room.
    Heartbeat(H, u16, Heartbeat),
    /// Dropped, for this reason (a metrics label).
    Drop(&'static str),
}

/// What the session's end settled: its rooms and how to close the connection.
#[derive(Debug)]
pub(crate) struct Settled<H> {
    /// What every room is told.
    pub(crate) settle: Settle,
    /// The close code.
    pub(crate) code: ErrorCode,
    /// The close reason.
    pub(crate) why: String,
    /// The memberships to settle.
    pub(crate) rooms: Vec<(H, u16)>,
}

/// A connection-local room number's state. A join reserves its slot (with the room id) before
/// it awaits the room, so concurrent joins — a resumed client rejoins all its rooms at once —
/// neither share a slot, nor join one room twice, nor overshoot the room limit.
#[derive(Debug)]
enum Slot<H> {
    Free,
    Reserved(String),
    Joined { room: String, handle: H, participant: u16 },
}

impl<H> Slot<H> {
    fn is_room(&self, id: &str) -> bool {
        match self {
            Self::Free => false,
            Self::Reserved(room) | Self::Joined { room, .. } => room == id,
        }
    }
}

/// The first control frame: a `Hello` in a version the server speaks, with a valid token.
pub(crate) fn hello(read: Read, verifier: &Verifier, now_secs: u64) -> Result<(Hello, Claims), Refusal> {
    let refuse = |code: ErrorCode, why: String| Refusal {
        reply: Some(Box::new(fault(code, Kind::Hello.to_u8(), 0, why.clone()))),
        code,
        why,
    };
    let hello = match read {
        Read::Message(Message::Hello(h)) => h,
        Read::Message(other) => {
            return Err(refuse(
                ErrorCode::UnexpectedMessage,
                format!("expected Hello, got {:?}", other.kind()),
            ));
        }
        Read::Bad(e) => return Err(refuse(e.code(), e.to_string())),
        Read::End => {
            return Err(Refusal { code: ErrorCode::Normal, why: "closed before Hello".into(), reply: None });
        }
    };
    if !hello.versions.contains(&PROTOCOL_VERSION) {
        return Err(refuse(ErrorCode::UnsupportedVersion, format!("server speaks {PROTOCOL_VERSION}")));
    }
    match verifier.verify(&hello.token, now_secs) {
        Ok(claims) => Ok((hello, claims)),
        Err(e) => Err(refuse(e.code(), e.to_string())),
    }
}

/// The `Welcome` for a verified session.
pub(crate) fn welcome(
    config: &ServerConfig,
    claims: &Claims,
    session_id: u64,
    resume_token: Vec<u8>,
    resumed: bool,
    now_ms: u64,
) -> Welcome {
    Welcome {
        version: PROTOCOL_VERSION,
        session_id,
        user: claims.sub.clone(),
        server_time_ms: now_ms,
        token_expires_ms: claims.exp.saturating_mul(1000),
        resume_token,
        resumed,
        limits: session_limits(config),
    }
}

/// The limits a `Welcome` announces. The conversions cannot saturate: `ServerConfig::validate`
/// bounds every value well inside the wire types.
fn session_limits(config: &ServerConfig) -> SessionLimits {
    let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    SessionLimits {
        max_frame_len: config.max_frame,
        max_datagram_len: limits::MAX_DATAGRAM_LEN as u16,
        max_rooms: config.max_rooms,
        max_participants: config.max_participants,
        ops_per_sec: config.ops.per_sec,
        ops_burst: config.ops.burst,
        datagrams_per_sec: config.datagrams.per_sec,
        datagrams_burst: config.datagrams.burst,
        chat_per_min: config.chat_per_min,
        tick_hz: config.tick_hz,
        heartbeat_ms: ms(config.heartbeat),
        presence_ttl_ms: ms(config.presence_ttl),
        resume_grace_ms: ms(config.resume_grace),
    }
}

/// A `Fault` message (its reason clipped to the wire limit).
pub(crate) fn fault(code: ErrorCode, kind: u8, reference: u64, message: impl Into<String>) -> Message {
    Message::from(Fault::new(code, kind, reference, message))
}

/// The state of one established session, behind the driver's one lock. `H` is how the driver
/// reaches a room (its handle).
#[derive(Debug)]
pub(crate) struct Core<H> {
    claims: Claims,
    client_id: String,
    slots: Vec<Slot<H>>,
    max_rooms: u16,
    has_sfu: bool,
    ops: TokenBucket,
    datagrams: TokenBucket,
    /// Rooms of a resumed session not rejoined yet: room id → participant number.
    held: HashMap<String, u16>,
    /// Set when the session ends: a join that completes afterwards settles its room the same way.
    settled: Option<Settle>,
}

impl<H: Clone> Core<H> {
    /// A session that passed its handshake, holding `held` rooms of a resumed one.
    pub(crate) fn new(
        config: &ServerConfig,
        has_sfu: bool,
        (claims, client_id): (Claims, String),
        held: HashMap<String, u16>,
        now: Instant,
    ) -> Self {
        Self {
            claims,
            client_id,
            slots: Vec::new(),
            max_rooms: config.max_rooms,
            has_sfu,
            ops: TokenBucket::new(config.ops.per_sec, config.ops.burst, now),
            datagrams: TokenBucket::new(config.datagrams.per_sec, config.datagrams.burst, now),
            held,
            settled: None,
        }
    }

    /// The token's claims as they are now (a refresh replaces them).
    pub(crate) fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The client's installation id.
    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Whether the session's end has been decided.
    pub(crate) fn is_settled(&self) -> bool {
        self.settled.is_some()
    }

    /// How long until the token expires, from `now_secs` (Unix seconds).
    pub(crate) fn token_left(&self, now_secs: u64) -> Duration {
        Duration::from_secs(self.claims.exp.saturating_sub(now_secs))
    }

    /// The control stream's answer to `read`.
    pub(crate) fn control(&mut self, read: Read, verifier: &Verifier, now_ms: u64) -> Control<H> {
        let message = match read {
            Read::End => return Control::End(None, Ending::peer("control stream closed")),
            Read::Bad(e) => {
                let reply = fault(e.code(), 0, 0, e.to_string());
                return Control::End(Some(reply), Ending::server(e.code(), e.to_string()));
            }
            Read::Message(m) => m,
        };
        match message {
            Message::Ping(p) => Control::Reply(Message::from(Pong { nonce: p.nonce, time_ms: now_ms })),
            Message::RefreshToken(r) => self.refresh(&r.token, verifier, now_ms / 1000),
            Message::Pong(_) => Control::Quiet,
            other => {
                let kind = other.kind();
                let why = format!("{kind} is not valid on the control stream");
                Control::Reply(fault(ErrorCode::UnexpectedMessage, kind.to_u8(), 0, why))
            }
        }
    }

    /// A new token for the same subject replaces the claims, and every joined room is checked
    /// against it as a `Join` would be; a refused one keeps the old token and changes nothing.
    fn refresh(&mut self, token: &str, verifier: &Verifier, now_secs: u64) -> Control<H> {
        let kind = Kind::RefreshToken.to_u8();
        let claims = match verifier.verify(token, now_secs) {
            Ok(claims) if claims.sub == self.claims.sub => claims,
            Ok(_) => {
                let why = "refreshed token names another subject";
                return Control::Reply(fault(ErrorCode::InvalidToken, kind, 0, why));
            }
            Err(e) => return Control::Reply(fault(e.code(), kind, 0, e.to_string())),
        };
        let rooms = self
            .slots
            .iter()
            .filter_map(|slot| match slot {
                Slot::Joined { room, handle, participant } => {
                    Some((handle.clone(), *participant, Recheck::of(&claims, room)))
                }
                // A join under way is checked when it completes (see `joined`).
                Slot::Free | Slot::Reserved(_) => None,
            })
            .collect();
        let expires_ms = claims.exp.saturating_mul(1000);
        self.claims = claims;
        Control::Refresh(Message::from(TokenRefreshed { expires_ms }), rooms)
    }

    /// Checks a `Join` for `room` against the token and the connection's rooms, and reserves
    /// a slot for it.
    pub(crate) fn admit(&mut self, room: &str) -> Result<u16, (ErrorCode, String)> {
        if !self.claims.grants(room) {
            return Err((ErrorCode::RoomNotAllowed, format!("token does not grant {room}")));
        }
        if self.slots.iter().any(|s| s.is_room(room)) {
            return Err((ErrorCode::AlreadyJoined, room.to_owned()));
        }
        if self.slots.iter().filter(|s| !matches!(s, Slot::Free)).count() >= usize::from(self.max_rooms) {
            return Err((ErrorCode::TooManyRooms, "too many rooms on this connection".into()));
        }
        let free = self.slots.iter().position(|s| matches!(s, Slot::Free)).unwrap_or(self.slots.len());
        if free == self.slots.len() {
            self.slots.push(Slot::Free);
        }
        self.slots[free] = Slot::Reserved(room.to_owned());
        Ok(free as u16)
    }

    /// The participant number a resumed session held in `room`, once.
    pub(crate) fn take_held(&mut self, room: &str) -> Option<u16> {
        self.held.remove(room)
    }

    /// Records a completed join, made with the claims `used`, where datagrams, refreshes and
    /// the session's end find it. If the session ended meanwhile, the slot is freed instead and
    /// the settle this room must get is the error. If a refresh came meanwhile, what it means
    /// for this room is returned.
    pub(crate) fn joined(
        &mut self,
        slot: u16,
        room: &str,
        (handle, participant): (H, u16),
        used: &Claims,
    ) -> Result<Option<Recheck>, Settle> {
        if let Some(settle) = self.settled {
            self.free(slot);
            return Err(settle);
        }
        if let Some(entry) = self.slots.get_mut(usize::from(slot)) {
            *entry = Slot::Joined { room: room.to_owned(), handle, participant };
        }
        // A refresh before the join read the claims may have taken the grant the slot was
        // reserved under: check the grant itself, not only a change.
        let now = Recheck::of(&self.claims, room);
        let changed = matches!(now, Recheck::Leave(_)) || now != Recheck::of(used, room);
        Ok(changed.then_some(now))
    }

    /// Frees a slot (a refused join, or a membership that ended).
    pub(crate) fn free(&mut self, slot: u16) {
        if let Some(entry) = self.slots.get_mut(usize::from(slot)) {
            *entry = Slot::Free;
        }
    }

    /// Where a room-stream frame from member `participant` goes; `now` for the op rate.
    pub(crate) fn route(&mut self, participant: u16, read: Read, now: Instant) -> Route {
        let message = match read {
            Read::End => return Route::Exit(Exit::Gone),
            // The stream cannot be resynchronised after an oversized frame (SPEC §3.1).
            Read::Bad(e) if e.code() == ErrorCode::FrameTooLarge => {
                return Route::Exit(Exit::Leave(ErrorCode::FrameTooLarge));
            }
            // The frame boundary is intact: report and go on (SPEC §3.1).
            Read::Bad(e) => {
                return Route::Room(Command::Reply(participant, fault(e.code(), 0, 0, e.to_string())));
            }
            Read::Message(m) => m,
        };
        let kind = message.kind().to_u8();
        Route::Room(match message {
            Message::Update(u) if self.ops.take(now) => {
                Command::Update { participant, op_id: u.op_id, data: u.data }
            }
            Message::Update(u) => {
                let reject = Reject {
                    op_id: u.op_id,
                    code: ErrorCode::RateLimited.to_u16(),
                    message: "rate limited".into(),
                };
                return Route::RateLimited(Command::Reply(participant, Message::from(reject)));
            }
            Message::Leave(_) => return Route::Exit(Exit::Leave(ErrorCode::Normal)),
            Message::Sync(s) => Command::Sync { participant, since: s.since },
            Message::SfuJoin(_)
            | Message::SfuSubscribe(_)
            | Message::SfuSdp(_)
            | Message::SfuCandidate(_)
            | Message::SfuLeave(_) => {
                if self.has_sfu {
                    Command::Sfu(participant, message)
                } else {
                    Command::Reply(
                        participant,
                        fault(ErrorCode::SfuUnavailable, kind, 0, "no SFU is configured"),
                    )
                }
            }
            Message::ChatSend(_)
            | Message::ChatDelete(_)
            | Message::ChatHistory(_)
            | Message::PollStart(_)
            | Message::PollAnswer(_)
            | Message::PollClose(_)
            | Message::HandRaise(_)
            | Message::HandLower(_)
            | Message::Moderate(_)
            | Message::SetCursorCap(_) => Command::Class(participant, message),
            other => {
                let why = format!("{} is not valid from a client here", other.kind());
                Command::Reply(participant, fault(ErrorCode::UnexpectedMessage, kind, 0, why))
            }
        })
    }

    /// Where a datagram goes: rate-limited, decoded, and sent to the room its slot names.
    pub(crate) fn route_datagram(&mut self, bytes: &[u8], now: Instant) -> DatagramRoute<H> {
        if !self.datagrams.take(now) {
            return DatagramRoute::Drop("rate");
        }
        let unknown = DatagramRoute::Drop("unknown_slot");
        match Datagram::decode(bytes) {
            Ok(Datagram::Cursor(c)) => match self.member(c.slot) {
                Some((handle, participant)) => DatagramRoute::Cursor(handle, participant, c),
                None => unknown,
            },
            Ok(Datagram::Heartbeat(h)) => match self.member(h.slot) {
                Some((handle, participant)) => DatagramRoute::Heartbeat(handle, participant, h),
                None => unknown,
            },
            Ok(_) | Err(_) => DatagramRoute::Drop("invalid"),
        }
    }

    /// The membership a slot holds.
    fn member(&self, slot: u16) -> Option<(H, u16)> {
        match self.slots.get(usize::from(slot))? {
            Slot::Joined { handle, participant, .. } => Some((handle.clone(), *participant)),
            Slot::Free | Slot::Reserved(_) => None,
        }
    }

    /// Decides what the session's end does to its rooms (`closure`: how the transport ended,
    /// if it has) and releases them all; later joins get the same settle.
    pub(crate) fn settle(&mut self, ending: Ending, closure: Option<Closure>) -> Settled<H> {
        let (settle, code, why) = match ending {
            Ending::Server(code, why) => {
                let leave = if code == ErrorCode::ShuttingDown { code } else { ErrorCode::Normal };
                (Settle::Leave(leave), code, why)
            }
            Ending::Peer(why) if closure == Some(Closure::Lost) => (Settle::Detach, ErrorCode::Normal, why),
            // Closed with code 0, or only the control stream was finished: the peer meant to end.
            Ending::Peer(why) => (Settle::Leave(ErrorCode::Normal), ErrorCode::Normal, why),
            // The registry entry has moved to the new connection, which re-attaches each member.
            Ending::TakenOver => (Settle::Detach, ErrorCode::Normal, "resumed on another connection".into()),
        };
        self.settled = Some(settle);
        let rooms = self
            .slots
            .iter_mut()
            .filter_map(|slot| match std::mem::replace(slot, Slot::Free) {
                Slot::Joined { handle, participant, .. } => Some((handle, participant)),
                Slot::Free | Slot::Reserved(_) => None,
            })
            .collect();
        Settled { settle, code, why, rooms }
    }
}

/// The `GoAway` and ending of a session whose token expired.
pub(crate) fn token_expired() -> (Message, Ending) {
    let go =
        GoAway { code: ErrorCode::TokenExpired.to_u16(), retry_after_ms: 0, message: "token expired".into() };
    (Message::from(go), Ending::server(ErrorCode::TokenExpired, "token expired"))
}

/// The `GoAway` and ending of a session whose token an operator revoked (SPEC §5.3).
pub(crate) fn token_revoked() -> (Message, Ending) {
    let go =
        GoAway { code: ErrorCode::TokenRevoked.to_u16(), retry_after_ms: 0, message: "token revoked".into() };
    (Message::from(go), Ending::server(ErrorCode::TokenRevoked, "token revoked"))
}

/// The answer to a connection the admission gate refused for capacity, sent in place of
/// `Welcome` before its `Hello` is read (no token is verified).
pub(crate) fn overloaded(retry_after: Duration) -> Message {
    let retry_after_ms = u32::try_from(retry_after.as_millis()).unwrap_or(u32::MAX);
    let go = GoAway {
        code: ErrorCode::Overloaded.to_u16(),
        retry_after_ms,
        message: "server overloaded: reconnect after the hint".into(),
    };
    Message::from(go)
}

/// The `GoAway` and ending of every session when the server shuts down.
pub(crate) fn shutting_down() -> (Message, Ending) {
    let go = GoAway {
        code: ErrorCode::ShuttingDown.to_u16(),
        retry_after_ms: RECONNECT_HINT_MS,
        message: "server shutting down".into(),
    };
    (Message::from(go), Ending::server(ErrorCode::ShuttingDown, "server shutting down"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use easel_proto::datagram::{Status, Tool};
    use easel_proto::message::{Ping, RefreshToken, Update};

    use super::*;
    use crate::auth::Issuer;

    const SECRET: &[u8] = b"session-core-test-secret-0123456789";
    const NOW: u64 = 1_800_000_000;

    fn claims(sub: &str, room: &str, exp: u64) -> Claims {
        Claims::new(sub, room, "student", exp)
    }

    fn token(claims: &Claims) -> String {
        Issuer::hs256(SECRET).mint(claims).expect("mint")
    }

    fn verifier() -> Verifier {
        Verifier::new(SECRET, None).expect("verifier")
    }

    fn hello_with(versions: Vec<u16>, token: String) -> Read {
        Read::Message(Message::from(Hello {
            versions,
            client_id: "device".into(),
            token,
            resume: None,
            client: String::new(),
        }))
    }

    fn core(config: &ServerConfig, room: &str, t0: Instant) -> Core<&'static str> {
        Core::new(config, false, (claims("ada", room, NOW + 60), "device".into()), HashMap::new(), t0)
    }

    fn fault_code(message: &Message) -> u16 {
        match message {
            Message::Fault(f) => f.code,
            other => panic!("not a fault: {other:?}"),
        }
    }

    #[test]
    fn a_hello_needs_a_spoken_version_and_a_valid_token() {
        let good = token(&claims("ada", "s/*", NOW + 60));
        let (accepted, verified) =
            hello(hello_with(vec![PROTOCOL_VERSION], good.clone()), &verifier(), NOW).expect("ok");
        assert_eq!((accepted.client_id.as_str(), verified.sub.as_str()), ("device", "ada"));

        let old = hello(hello_with(vec![PROTOCOL_VERSION + 1], good), &verifier(), NOW).expect_err("version");
        assert_eq!(old.code, ErrorCode::UnsupportedVersion);
        assert_eq!(old.reply.as_deref().map(fault_code), Some(ErrorCode::UnsupportedVersion.to_u16()));

        let late = token(&claims("ada", "s/*", NOW - 1));
        let expired = hello(hello_with(vec![PROTOCOL_VERSION], late), &verifier(), NOW).expect_err("expired");
        assert_eq!(expired.code, ErrorCode::TokenExpired);

        let ping = Read::Message(Message::from(Ping { nonce: 1 }));
        assert_eq!(
            hello(ping, &verifier(), NOW).expect_err("not a hello").code,
            ErrorCode::UnexpectedMessage
        );
        let gone = hello(Read::End, &verifier(), NOW).expect_err("closed");
        assert!(gone.reply.is_none(), "nobody to answer");
    }

    #[test]
    fn the_control_stream_answers_pings_refreshes_and_strangers() {
        let t0 = Instant::now();
        let config = ServerConfig::default();
        let mut core = core(&config, "s/*", t0);
        match core.control(Read::Message(Message::from(Ping { nonce: 9 })), &verifier(), 5_000) {
            Control::Reply(Message::Pong(p)) => assert_eq!((p.nonce, p.time_ms), (9, 5_000)),
            other => panic!("{other:?}"),
        }
        let longer = token(&claims("ada", "s/*", NOW + 3600));
        let refresh = Read::Message(Message::from(RefreshToken { token: longer }));
        match core.control(refresh, &verifier(), NOW * 1000) {
            Control::Refresh(Message::TokenRefreshed(r), rooms) => {
                assert_eq!(r.expires_ms, (NOW + 3600) * 1000);
                assert!(rooms.is_empty(), "no rooms joined");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(core.token_left(NOW), Duration::from_secs(3600), "the new expiry holds");
        let update = Read::Message(Message::from(Update { op_id: 1, data: vec![] }));
        match core.control(update, &verifier(), 0) {
            Control::Reply(reply) => assert_eq!(fault_code(&reply), ErrorCode::UnexpectedMessage.to_u16()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(core.control(Read::End, &verifier(), 0), Control::End(None, Ending::Peer(_))));
    }

    fn refresh(core: &mut Core<&'static str>, claims: &Claims) -> Control<&'static str> {
        let refresh = Read::Message(Message::from(RefreshToken { token: token(claims) }));
        core.control(refresh, &verifier(), NOW * 1000)
    }

    #[test]
    fn a_not_yet_valid_token_is_refused_at_hello_and_at_refresh_beyond_the_leeway() {
        use crate::auth::NBF_LEEWAY_SECS;
        let early = |nbf| Claims { nbf: Some(nbf), ..claims("ada", "s/*", NOW + 7200) };
        let within =
            hello(hello_with(vec![PROTOCOL_VERSION], token(&early(NOW + NBF_LEEWAY_SECS))), &verifier(), NOW);
        assert!(within.is_ok(), "within the leeway");
        let hour = hello(hello_with(vec![PROTOCOL_VERSION], token(&early(NOW + 3600))), &verifier(), NOW);
        let refused = hour.expect_err("an hour early");
        assert_eq!(refused.code, ErrorCode::InvalidToken);
        assert!(refused.why.contains("not valid before"), "{}", refused.why);

        let config = ServerConfig::default();
        let mut core = core(&config, "s/*", Instant::now());
        match refresh(&mut core, &early(NOW + 3600)) {
            Control::Reply(reply) => assert_eq!(fault_code(&reply), ErrorCode::InvalidToken.to_u16()),
            other => panic!("{other:?}"),
        }
        assert_eq!(core.token_left(NOW), Duration::from_secs(60), "the old token holds");
    }

    #[test]
    fn a_refresh_rechecks_every_joined_room_and_carries_the_new_role() {
        let config = ServerConfig::default();
        let mut core = core(&config, "s/*", Instant::now());
        let a = core.admit("s/a").expect("slot");
        let used = core.claims().clone();
        assert_eq!(core.joined(a, "s/a", ("room-a", 1), &used), Ok(None));
        let b = core.admit("s/b").expect("slot");
        assert_eq!(core.joined(b, "s/b", ("room-b", 2), &used), Ok(None));
        let pending = core.admit("s/c").expect("a join under way");

        let teacher_of_a = Claims { role: "teacher".into(), ..claims("ada", "s/a", NOW + 3600) };
        let mut rooms = match refresh(&mut core, &teacher_of_a) {
            Control::Refresh(Message::TokenRefreshed(_), rooms) => rooms,
            other => panic!("{other:?}"),
        };
        rooms.sort_by_key(|r| r.1);
        let keep = Recheck::Keep(Role::Teacher, (NOW + 3600) * 1000);
        assert_eq!(rooms, [("room-a", 1, keep), ("room-b", 2, Recheck::Leave(ErrorCode::RoomNotAllowed))]);
        assert!(matches!(
            Recheck::Leave(ErrorCode::RoomNotAllowed).command(2, 9),
            Command::Leave { participant: 2, conn: 9, code: ErrorCode::RoomNotAllowed }
        ));
        assert!(matches!(
            keep.command(1, 9),
            Command::Refreshed { participant: 1, conn: 9, role: Role::Teacher, .. }
        ));
        // The join under way was made with the old claims: it completes, then is told.
        let late = core.joined(pending, "s/c", ("room-c", 3), &used);
        assert_eq!(late, Ok(Some(Recheck::Leave(ErrorCode::RoomNotAllowed))));
        assert_eq!(core.admit("s/d").map_err(|e| e.0), Err(ErrorCode::RoomNotAllowed), "the new grant");
    }

    #[test]
    fn a_refresh_for_another_subject_is_refused_and_changes_nothing() {
        let config = ServerConfig::default();
        let mut core = core(&config, "s/*", Instant::now());
        let a = core.admit("s/a").expect("slot");
        let used = core.claims().clone();
        assert_eq!(core.joined(a, "s/a", ("room-a", 1), &used), Ok(None));
        match refresh(&mut core, &Claims { role: "teacher".into(), ..claims("bob", "other/*", NOW + 3600) }) {
            Control::Reply(reply) => assert_eq!(fault_code(&reply), ErrorCode::InvalidToken.to_u16()),
            other => panic!("{other:?}"),
        }
        assert_eq!(core.claims(), &used, "the old token holds");
    }

    #[test]
    fn joins_take_distinct_slots_within_the_grant_and_the_room_limit() {
        let config = ServerConfig { max_rooms: 2, ..ServerConfig::default() };
        let mut core = core(&config, "s/*", Instant::now());
        assert_eq!(core.admit("other/room").map_err(|e| e.0), Err(ErrorCode::RoomNotAllowed));
        assert_eq!(core.admit("s/a"), Ok(0));
        assert_eq!(core.admit("s/a").map_err(|e| e.0), Err(ErrorCode::AlreadyJoined), "reserved counts");
        assert_eq!(core.admit("s/b"), Ok(1));
        assert_eq!(core.admit("s/c").map_err(|e| e.0), Err(ErrorCode::TooManyRooms));
        core.free(0);
        assert_eq!(core.admit("s/c"), Ok(0), "a freed slot is reused");
    }

    #[test]
    fn updates_over_the_op_rate_are_rejected_and_oversized_frames_leave() {
        let t0 = Instant::now();
        let config =
            ServerConfig { ops: crate::config::Rate { per_sec: 1, burst: 2 }, ..ServerConfig::default() };
        let mut core = core(&config, "s/*", t0);
        let update = |op_id| Read::Message(Message::from(Update { op_id, data: vec![1] }));
        assert!(matches!(
            core.route(3, update(1), t0),
            Route::Room(Command::Update { participant: 3, op_id: 1, .. })
        ));
        assert!(matches!(core.route(3, update(2), t0), Route::Room(Command::Update { .. })));
        match core.route(3, update(3), t0) {
            Route::RateLimited(Command::Reply(3, Message::Reject(r))) => {
                assert_eq!((r.op_id, r.code), (3, ErrorCode::RateLimited.to_u16()));
            }
            _ => panic!("the third update in a burst of two is rejected"),
        }
        let later = t0 + Duration::from_secs(1);
        assert!(matches!(core.route(3, update(4), later), Route::Room(Command::Update { .. })), "refilled");
        let oversized = Read::Bad(easel_proto::Error::FrameTooLarge { len: 1 << 30, max: 1 << 20 });
        assert!(matches!(
            core.route(3, oversized, later),
            Route::Exit(Exit::Leave(ErrorCode::FrameTooLarge))
        ));
        let sfu = Read::Message(Message::from(easel_proto::message::SfuLeave { feed: 1 }));
        match core.route(3, sfu, later) {
            Route::Room(Command::Reply(3, reply)) => {
                assert_eq!(fault_code(&reply), ErrorCode::SfuUnavailable.to_u16())
            }
            _ => panic!("no SFU is configured"),
        }
    }

    #[test]
    fn datagrams_reach_the_room_their_slot_holds() {
        let t0 = Instant::now();
        let config = ServerConfig::default();
        let mut core = core(&config, "s/*", t0);
        let beat = |slot| {
            let h = Heartbeat { slot, seq: 1, status: Status::Active, tool: Tool::Pen };
            Datagram::from(h).encode().expect("encode")
        };
        assert!(matches!(core.route_datagram(&beat(0), t0), DatagramRoute::Drop("unknown_slot")));
        let slot = core.admit("s/a").expect("slot");
        assert!(
            matches!(core.route_datagram(&beat(slot), t0), DatagramRoute::Drop("unknown_slot")),
            "reserved"
        );
        assert_eq!(core.joined(slot, "s/a", ("room-a", 7), &core.claims().clone()), Ok(None));
        assert!(matches!(core.route_datagram(&beat(slot), t0), DatagramRoute::Heartbeat("room-a", 7, _)));
        assert!(matches!(core.route_datagram(&[0xff, 1, 2], t0), DatagramRoute::Drop("invalid")));
    }

    #[test]
    fn the_end_decides_leave_or_detach_and_late_joins_follow_it() {
        let cases = [
            (Ending::server(ErrorCode::ShuttingDown, "bye"), None, Settle::Leave(ErrorCode::ShuttingDown)),
            (Ending::server(ErrorCode::SlowConsumer, "slow"), None, Settle::Leave(ErrorCode::Normal)),
            (Ending::peer("lost"), Some(Closure::Lost), Settle::Detach),
            (Ending::peer("closed"), Some(Closure::Clean), Settle::Leave(ErrorCode::Normal)),
            (Ending::peer("control finished"), None, Settle::Leave(ErrorCode::Normal)),
            (Ending::TakenOver, None, Settle::Detach),
        ];
        for (ending, closure, want) in cases {
            let config = ServerConfig::default();
            let mut core = core(&config, "s/*", Instant::now());
            let a = core.admit("s/a").expect("slot");
            let used = core.claims().clone();
            assert_eq!(core.joined(a, "s/a", ("room-a", 1), &used), Ok(None));
            let late = core.admit("s/b").expect("slot");
            let settled = core.settle(ending, closure);
            assert_eq!(settled.settle, want);
            assert_eq!(settled.rooms, vec![("room-a", 1)]);
            let late = core.joined(late, "s/b", ("room-b", 2), &used);
            assert_eq!(late, Err(want), "a join that completes late");
            assert!(core.settle(Ending::peer("again"), None).rooms.is_empty(), "released once");
        }
    }
}
