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
//! - per room a [`Document`] (a Rust `LoroDoc` natively, the app's `loro-crdt` `LoroDoc` in
//!   the browser; the core only moves bytes): local commits become `Update`s with op ids
//!   that stay pending until acked, are resent after every reconnect (the server acks
//!   duplicates without applying them twice) and go to the offline store; remote updates and
//!   snapshots are imported;
//! - cursor throttling (newest position wins, at most `cursor_hz` datagrams per second per
//!   room), presence heartbeats, latest-wins filtering of incoming cursor and presence batches;
//! - the op rate the server announced (a token bucket), so the SDK never trips `RateLimited`;
//! - reconnect timing: exponential backoff with full jitter, honouring `GoAway` hints.

mod backoff;
mod classroom;
mod cursors;
mod doc;
mod event;
#[cfg(any(feature = "native", test))]
mod loro;
mod ops;
mod rooms;
mod sync;
#[cfg(test)]
mod testing;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use easel_proto::message::{Hello, Join, Welcome};
use easel_proto::rate::TokenBucket;
use easel_proto::{Datagram, ErrorCode, Message, PROTOCOL_VERSION};
use web_time::Instant;

use self::backoff::Backoff;
pub use self::doc::{Document, ImportError};
pub use self::event::{Event, RemoteCursor};
#[cfg(any(feature = "native", test))]
pub use self::loro::LoroDocument;
use self::rooms::RoomState;
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

enum Link {
    /// `dialing`: an attempt is under way (the driver bounds it); nothing is due until it ends.
    Down { next_at: Instant, dialing: bool },
    /// `ops` is the op rate the server announced in `Welcome`.
    Up {
        slots: HashMap<u16, String>,
        /// Snapshots that came before their room stream's `Joined`: the two arrive on
        /// different streams, in either order (at most [`sync::EARLY_SNAPSHOTS`]).
        early: Vec<(u16, Vec<u8>)>,
        ops: TokenBucket,
        heartbeat: Duration,
    },
}

/// The client session state machine, its rooms' documents of type `D`. See the module docs.
pub struct Session<D> {
    config: Config,
    link: Link,
    backoff: Backoff,
    /// Resending ops the server could not store (a retryable refusal such as
    /// `StorageUnavailable`): the same full-jitter doubling as reconnects, reset by an ack.
    resend: Backoff,
    resume_token: Option<Vec<u8>>,
    /// The last `GoAway` of the current connection: why it ends and when to come back.
    go_away: Option<(ErrorCode, Duration)>,
    next_op_id: u64,
    rooms: BTreeMap<String, RoomState<D>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    store: VecDeque<StoreOp>,
}

impl<D: Document> std::fmt::Debug for Session<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("client_id", &self.config.client_id)
            .field("connected", &self.is_connected())
            .field("rooms", &self.rooms.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<D: Document> Session<D> {
    /// A disconnected session that may connect at once.
    pub fn new(config: Config, now: Instant) -> Self {
        Self {
            backoff: Backoff::new(&config),
            resend: Backoff::new(&Config { seed: config.seed.wrapping_add(1), ..config.clone() }),
            next_op_id: config.first_op_id.max(1),
            config,
            link: Link::Down { next_at: now, dialing: false },
            resume_token: None,
            go_away: None,
            rooms: BTreeMap::new(),
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
        matches!(self.link, Link::Down { next_at, dialing: false } if now >= next_at)
    }

    /// The driver started a connection attempt. Until it ends ([`Session::connected`] or
    /// [`Session::disconnected`]) no timeout is due: the attempt's due time has passed, and a
    /// driver waiting on it would wake at once, again and again, for as long as the attempt
    /// takes (a core per client while the network is down).
    pub fn connecting(&mut self) {
        if let Link::Down { dialing, .. } = &mut self.link {
            *dialing = true;
        }
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
            early: Vec::new(),
            ops: TokenBucket::new(limits.ops_per_sec, limits.ops_burst, now),
            heartbeat,
        };
        if self.rooms.is_empty() {
            self.backoff.reset();
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
            Message::TokenRefreshed(t) => {
                self.events.push_back(Event::TokenRefreshed { expires_ms: t.expires_ms });
            }
            Message::Pong(_) => {}
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
        self.rooms_lost();
        let retry_in = self.backoff.next(retry_after);
        self.link = Link::Down { next_at: now + retry_in, dialing: false };
        self.events.push_back(Event::Disconnected { code, reason: reason.to_owned(), retry_in });
    }

    /// Asks the server to accept a fresh JWT for the same subject.
    pub fn refresh_token(&mut self, token: &str) {
        self.transmits.push_back(Transmit::Control(Message::from(easel_proto::message::RefreshToken {
            token: token.to_owned(),
        })));
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
            Link::Down { dialing: true, .. } => None,
            Link::Down { next_at, .. } => Some(*next_at),
            Link::Up { ops, .. } => {
                let interval = self.cursor_interval();
                let rooms = self.rooms.values().filter(|r| r.slot.is_some());
                rooms
                    .flat_map(|room| {
                        let op = room.has_unsent().then(|| {
                            let token = ops.next_token();
                            room.resend_at.map_or(token, |at| at.max(token))
                        });
                        [room.cursor.due(interval), room.presence.next_at, op]
                    })
                    .flatten()
                    .min()
            }
        }
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

    /// The document of `room`.
    pub fn document(&self, room: &str) -> Option<&D> {
        self.rooms.get(room).map(|r| &r.doc)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::testing::{Harness, ROOM, joined, list, welcome};
    use super::*;

    #[test]
    fn nothing_is_due_while_an_attempt_is_under_way() {
        let mut h = Harness::new();
        let due = h.session.poll_timeout().expect("the first attempt is due");
        assert!(h.session.should_connect(h.now) && due <= h.now);
        // The attempt hangs (the network is down): a past due time would wake the driver at
        // once, again and again, until the attempt gives up.
        h.session.connecting();
        assert_eq!(h.session.poll_timeout(), None);
        assert!(!h.session.should_connect(h.now + Duration::from_secs(5)), "one attempt at a time");
        h.session.disconnected(h.now + Duration::from_secs(10), None, "no answer", None);
        let next = h.session.poll_timeout().expect("the next attempt is scheduled");
        assert!(next > h.now + Duration::from_secs(10), "after a backoff");
        assert!(h.session.should_connect(next));
    }

    #[test]
    fn joins_on_connect_and_asks_to_resume_on_the_next() {
        let mut h = Harness::new();
        assert!(h.session.should_connect(h.now), "a new session connects at once");
        assert_eq!(h.session.hello("jwt").resume, None);
        h.join(ROOM, Vec::new()).unwrap();
        assert!(h.transmits().is_empty(), "nothing is sent while offline");
        h.session.connected(h.now, Transport::Quic, &welcome(false, 9));
        let sent = h.transmits();
        assert!(matches!(&sent[..], [Transmit::Join(j)] if j.room == ROOM && j.since.is_none()), "{sent:?}");
        assert_eq!(h.session.hello("jwt").resume, Some(vec![9; 32]));
        h.session.handle_room(h.now, ROOM, joined(3, false));
        h.session.handle_room(h.now, ROOM, list(&[3]));
        let events = h.events();
        assert!(events.contains(&Event::Connected { transport: Transport::Quic, resumed: false }));
        assert!(events.iter().any(|e| matches!(e, Event::Joined { participant: 3, .. })));
    }

    /// The app (the browser SDK's refresh timer) times the next refresh by the new expiry.
    #[test]
    fn a_refreshed_token_reports_its_expiry() {
        let mut h = Harness::new();
        h.session.connected(h.now, Transport::Quic, &welcome(false, 1));
        h.session.refresh_token("jwt2");
        assert!(
            matches!(&h.transmits()[..], [Transmit::Control(Message::RefreshToken(r))] if r.token == "jwt2")
        );
        h.events();
        let refreshed = easel_proto::message::TokenRefreshed { expires_ms: 1_234_000 };
        h.session.handle_control(Message::from(refreshed));
        assert_eq!(h.events(), [Event::TokenRefreshed { expires_ms: 1_234_000 }]);
    }
}
