//! Rooms: a sans-IO core ([`Room`]) and the actor that drives it ([`spawn`], [`Handle`]).
//!
//! The core owns one room's state — members, presence, cursors, the Loro document, the
//! classroom — and does no IO. Each `handle_*` input takes the time it happens at; what the
//! room wants done leaves through one queue of [`Output`]s, which the driver drains with
//! [`Room::poll_output`] after every input; [`Room::poll_timeout`] says when
//! [`Room::handle_timeout`] is next due. Members are participant numbers: how to reach them
//! (queues, datagram senders, the session's kill switch), the store and the SFU belong to the
//! actor, which reports back what the IO said ([`Room::handle_committed`],
//! [`Room::handle_undeliverable`], …).
//!
//! One concern per file: `members` (joining, resuming, detaching, leaving, eviction),
//! `roster` (batched membership frames), `doc` (the Loro document, durable writes,
//! snapshots), `cursors` (paced cursor batches, presence ticks), `spotlight` (a lecture's
//! active-cursor cap), `classroom` (chat, polls, hands, moderation: what the acting node
//! decides), `classlog` (the classroom's events, applied alike on one node and from the
//! cluster's room log), `replica` (a cluster room's state as its snapshot holds it), `sfu`
//! (SFU signalling),
//! `handle` (what connections hold), `stats` (the room's own numbers) and `actor` (the task).

mod actor;
mod budget;
mod classlog;
mod classroom;
mod commit;
mod cursors;
mod doc;
mod handle;
mod members;
mod refresh;
mod relay;
mod replica;
mod riders;
mod roster;
mod sfu;
mod silence;
mod spotlight;
mod stats;
#[cfg(test)]
mod testing;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use easel_proto::message::{Fault, Kind};
use easel_proto::{ErrorCode, Message};
use loro::LoroDoc;

pub use self::actor::{SpawnError, spawn};
pub use self::budget::DatagramBudget;
pub use self::classlog::{Act, Actor, ClassEvent, Key};
use self::cursors::BatchKey;
pub use self::cursors::DatagramBatch;
pub use self::doc::{ImportError, LoadError, Persist, REMOTE_AUTHOR, SnapshotPayload, SnapshotWrite};
pub use self::handle::{BroadcastGap, Command, DatagramInbox, Handle, JoinRequest, Link, Outbound};
use self::members::Member;
pub use self::members::{Arrival, Joined};
pub use self::relay::{RelayBatch, Relayed};
use self::spotlight::Spotlight;
pub use self::stats::Stats;
use crate::class::{self, Class, Deliver};
use crate::sfu::SfuOp;

/// How often the room looks for silent members, idleness and poll timers, and samples its
/// queue depths.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// Tunables of every room.
#[derive(Debug, Clone)]
pub struct Config {
    /// Presence tick period, and the cursor pace floor: the longest a receiver waits for a
    /// moved cursor (1 / `--tick-hz`).
    pub tick: Duration,
    /// Datagrams per second the room's cursor batches may cost (`--room-datagram-budget`):
    /// the pace is the receivers' count over this, kept between `min_pace` and `tick`.
    pub datagram_budget: u32,
    /// The shortest pace: cursors arriving closer together than this are coalesced even in a
    /// quiet room.
    pub min_pace: Duration,
    /// What every room's cursor batches may cost together (`--datagram-budget`): a busy
    /// room's share of it may slow its pace past `tick`, down to `slowest_pace`.
    pub server_budget: Arc<DatagramBudget>,
    /// The longest pace the server-wide budget may impose.
    pub slowest_pace: Duration,
    /// Silence after which a participant is evicted.
    pub presence_ttl: Duration,
    /// Most participants in one room.
    pub max_participants: usize,
    /// After a cursor stops moving, its last position is sent once more this much later, so a
    /// lost final datagram does not leave a stale cursor.
    pub settle: Duration,
    /// Presence entries are re-sent to everyone this often even unchanged (loss repair).
    pub presence_refresh: Duration,
    /// Committed updates between snapshots (compaction); in cluster mode the room actor
    /// counts room log messages instead.
    pub snapshot_every: u64,
    /// A room with nobody in it for this long is unloaded.
    pub idle_unload: Duration,
    /// How long a member whose connection was lost keeps its place for a resume (SPEC §5.4).
    pub resume_grace: Duration,
    /// Chat messages per minute per user.
    pub chat_per_min: u32,
    /// Whether students may publish video through the SFU (teachers always may, viewers never).
    pub students_publish: bool,
    /// While a teacher is in the room, how many other cursors are shown (the most recently
    /// started) besides every teacher's; 0: all (`--room-active-cursors`, SPEC §8.5).
    pub active_cursors: u16,
    /// Where the class meets while its SFU is out (`--sfu-fallback-url`); empty: nowhere.
    pub sfu_fallback_url: String,
    /// Cluster mode: this node's `id@start_ms`, under which the room's members go out to the
    /// other nodes (and the others' come in); `None`: one node alone.
    pub relay: Option<Arc<str>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(1) / 60,
            datagram_budget: 10_000,
            min_pace: Duration::from_millis(1),
            server_budget: DatagramBudget::unlimited(),
            slowest_pace: Duration::from_millis(100),
            presence_ttl: Duration::from_secs(10),
            max_participants: 2000,
            settle: Duration::from_millis(150),
            presence_refresh: Duration::from_secs(2),
            snapshot_every: 1000,
            idle_unload: Duration::from_secs(60),
            resume_grace: Duration::from_secs(30),
            chat_per_min: 30,
            students_publish: true,
            active_cursors: 32,
            sfu_fallback_url: String::new(),
            relay: None,
        }
    }
}

/// What the room wants done, in the order it must happen.
#[derive(Debug)]
#[non_exhaustive]
pub enum Output {
    /// Queue a message on one member's room stream; if the queue refuses it, report
    /// [`Undeliverable::QueueFull`] or [`Undeliverable::QueueClosed`].
    Send {
        /// The member.
        to: u16,
        /// The message.
        message: Message,
    },
    /// Queue encoded frames, shared with other members, on one member's room stream; report
    /// a refusal as for [`Output::Send`].
    Frame {
        /// The member.
        to: u16,
        /// The encoded messages.
        frame: Bytes,
    },
    /// Queue one encoded frame, shared, on the room stream of every linked member but
    /// `except`; report each queue that refuses it, as for [`Output::Send`].
    Broadcast {
        /// The encoded message.
        frame: Bytes,
        /// Who does not get it (the author of what it relays, say).
        except: Option<u16>,
    },
    /// Send a member a batch of datagrams, unless its datagram buffer lacks room for all of
    /// them: then skip it and report [`Undeliverable::Congested`], so its next batch carries
    /// the newest state instead (latest wins, never a queue).
    Datagrams {
        /// The member.
        to: u16,
        /// What it is sent, encoded once for every member at the same marks.
        batch: DatagramBatch,
    },
    /// Send a member a state transfer on a new snapshot stream.
    Snapshot {
        /// The member.
        to: u16,
        /// What it lacks.
        payload: SnapshotPayload,
    },
    /// The answer to the [`Room::handle_join`] just made. On success the joiner's link
    /// reaches the member from here on (a resumed member's old link is let go).
    JoinAnswer(Result<Joined, ErrorCode>),
    /// A membership ended: queue `Left { code, reason }` if there is room, then let go of the
    /// member's link, which ends its writer once it has written what was queued.
    Left {
        /// The member.
        member: u16,
        /// Why (a wire code).
        code: ErrorCode,
        /// Why, for people.
        reason: String,
    },
    /// Let go of a member's link without a word (its connection was lost, or it was closed as
    /// a slow consumer).
    Release {
        /// The member.
        member: u16,
    },
    /// Close the member's session as a slow consumer (its reliable queue overflowed).
    SlowConsumer {
        /// The member.
        member: u16,
    },
    /// Make a board update durable, in order with every other write; then report it with
    /// [`Room::handle_committed`] (or [`Room::handle_persist_failed`]).
    Persist(Persist),
    /// Store a snapshot of the document (compaction), before anything else is done.
    SnapshotWrite(SnapshotWrite),
    /// Store classroom records, in order with every other write; once they are durable, hand
    /// `then` to [`Room::handle_side_committed`] (an echo confirms a write: SPEC §9).
    Side {
        /// Records to store.
        writes: Vec<class::Write>,
        /// What waits for them.
        then: Vec<Deliver>,
    },
    /// Cluster mode: publish this classroom event to the room's log; nothing of it is applied
    /// until it comes back ([`Room::handle_class_event`]); if it cannot be published, report
    /// it with [`Room::handle_class_unpublished`].
    ClassLog(ClassEvent),
    /// Work for the room's SFU driver.
    Sfu(SfuOp),
    /// Cluster mode: publish this batch of the room's local members to the other nodes.
    Relay(RelayBatch),
    /// A metric to record.
    Metric(Metric),
    /// The room has been empty for the idle-unload period: unload it once no write is in
    /// flight and no command waits.
    Idle,
}

/// What the room counts; the driver records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Metric {
    /// A participant joined (not a resume).
    ParticipantJoined,
    /// A participant left.
    ParticipantLeft,
    /// Board updates received.
    OpsIn(u64),
    /// Board updates fanned out (one per recipient).
    OpsOut(u64),
    /// A board update refused as invalid.
    OpRejected,
    /// A cursor older than the one held.
    StaleCursor,
    /// A cursor kept but not sent: a lecture's active-cursor cap hides it (SPEC §8.5).
    CursorHidden,
    /// A member closed because its reliable queue overflowed.
    SlowConsumer,
    /// Time to sample the depths of the room's queues (the driver owns them).
    SampleQueues,
}

/// Why the driver could not deliver an output to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Undeliverable {
    /// Its room-stream queue is full: a slow consumer, closed.
    QueueFull,
    /// Its room-stream queue is closed: its stream is gone.
    QueueClosed,
    /// Its datagram buffer had no room for a batch: it was skipped.
    Congested,
}

/// One room's state: members, cursors, presence, the document and the classroom.
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
    /// The batches of the last send round, kept for their allocation.
    encoded: HashMap<BatchKey, DatagramBatch>,
    /// Who the last send round sent what, kept for its allocation.
    plan: Vec<(u16, Option<BatchKey>)>,
    /// The cursor pace: a receiver gets at most one cursor batch this often (SPEC §8.3).
    pace: Duration,
    /// This room's share of the server-wide datagram budget, per second (`None`: no limit).
    budget_share: Option<u32>,
    /// The last send round with cursors: when, and to how many receivers.
    cursor_round: Option<(Instant, u32)>,
    /// When the next receiver owed cursors is due its batch, if any is.
    next_cursors: Option<Instant>,
    /// Before this, no receiver is due a cursor batch (each was sent one less than a pace
    /// ago), so a cursor arriving earlier waits for a round then instead of scanning every
    /// member; `None`: someone may be due now.
    cursors_quiet_until: Option<Instant>,
    /// Whose cursors are shown under a lecture's active-cursor cap.
    spotlight: Spotlight,
    last_seq: u64,
    ops_since_snapshot: u64,
    /// A durable write failed since the room loaded: the document may hold updates that are
    /// not stored, so holding an update no longer proves it durable (see `doc`).
    store_failed: bool,
    empty_since: Option<Instant>,
    class: Class,
    /// The wall clock at a point of the room's clock, so times on the wire and in records
    /// (Unix ms) follow from the `Instant`s the room is given.
    wall: (Instant, u64),
    /// The teacher-visible queue of raised hands, first raised first, by the members' nodes
    /// (the same at every node in cluster mode).
    hands: Vec<Key>,
    /// Membership changes not yet sent, and the membership frame's pacing.
    roster: roster::Roster,
    /// The last whole-document export for joiners, at the version it was made: joiners
    /// until the document changes share it.
    shared_snapshot: Option<(loro::VersionVector, SnapshotPayload)>,
    /// When the next tick (presence, settling cursors) is due, if one is needed.
    next_tick: Option<Instant>,
    /// When the last tick ran (a subscriber whose presence was skipped is retried one period
    /// later).
    last_tick: Instant,
    /// When housekeeping is next due.
    housekeeping: Instant,
    out: VecDeque<Output>,
    /// What follows from an undeliverable output, which goes out before anything queued
    /// after that output (see [`Room::handle_undeliverable`]).
    urgent: VecDeque<Output>,
    reacting: bool,
    /// The room's SFU stopped answering and no probe has reached it since.
    sfu_out: bool,
    /// Cluster mode: presence across nodes.
    relay: Option<relay::Relay>,
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
    ) -> Result<Self, LoadError> {
        let (doc, last_seq, replayed) = doc::load(snapshot, updates)?;
        let (pace, active_cursors) = (config.min_pace, config.active_cursors);
        let relay = config.relay.as_deref().map(relay::Relay::new);
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
            encoded: HashMap::new(),
            plan: Vec::new(),
            pace,
            budget_share: None,
            cursor_round: None,
            next_cursors: None,
            cursors_quiet_until: None,
            spotlight: Spotlight::new(active_cursors),
            last_seq,
            ops_since_snapshot: replayed,
            store_failed: false,
            empty_since: Some(now),
            class,
            wall: (now, now_ms),
            hands: Vec::new(),
            roster: roster::Roster::default(),
            shared_snapshot: None,
            next_tick: None,
            last_tick: now,
            // Due at once, like the first tick of an interval.
            housekeeping: now,
            out: VecDeque::new(),
            urgent: VecDeque::new(),
            reacting: false,
            sfu_out: false,
            relay,
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

    /// Everyone's attendance, open intervals included.
    pub fn attendance(&self) -> Vec<class::Attendance> {
        self.class.attendance().cloned().collect()
    }

    /// The next thing to do, if any: call until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.urgent.pop_front().or_else(|| self.out.pop_front())
    }

    /// When [`Room::handle_timeout`] is next due: a receiver's paced cursor batch, the
    /// presence tick, the membership frame, a poll timer, or housekeeping (evictions,
    /// idleness, queue samples).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let relay = self.relay.as_ref().and_then(|r| r.next);
        let timers = [self.next_cursors, self.next_tick, self.roster.next, self.class.next_deadline(), relay];
        timers.into_iter().flatten().chain([self.housekeeping]).min()
    }

    /// Runs whatever [`Room::poll_timeout`] said was due by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.roster.next.is_some_and(|at| at <= now) {
            self.send_membership(now);
        }
        if self.next_tick.is_some_and(|at| at <= now) {
            self.next_tick = None;
            self.tick(now);
        } else if self.next_cursors.is_some_and(|at| at <= now) {
            self.send_round(now, false);
        }
        if self.relay.as_ref().and_then(|r| r.next).is_some_and(|at| at <= now) {
            self.send_relay(now);
        }
        let housekeeping = self.housekeeping <= now;
        if housekeeping || self.class.next_deadline().is_some_and(|at| at <= now) {
            self.class_tick(now);
        }
        if housekeeping {
            self.housekeeping = now + HOUSEKEEPING;
            self.push(Output::Metric(Metric::SampleQueues));
            self.expire(now);
            if self.idle(now) {
                self.push(Output::Idle);
            }
        }
    }

    /// The room is closing (server shutdown or unload), after every write in flight was
    /// reported: a last snapshot, then everyone leaves with `ShuttingDown`, so their
    /// attendance is stored before the room is gone.
    pub fn handle_shutdown(&mut self, now: Instant) {
        if let Some(snapshot) = self.snapshot() {
            self.push(Output::SnapshotWrite(snapshot));
        }
        let members: Vec<u16> = self.members.keys().copied().collect();
        for index in members {
            self.remove(now, index, ErrorCode::ShuttingDown, Some(String::new()));
        }
        // The other nodes hear of the leaves now, not at their presence TTL.
        if self.relay.as_ref().is_some_and(|r| r.next.is_some()) {
            self.send_relay(now);
        }
        self.relay = None;
        self.next_tick = None;
        self.next_cursors = None;
        self.cursors_quiet_until = None;
        self.roster = roster::Roster::default();
    }

    /// A member's queue or datagram buffer refused an output. A full queue means a slow
    /// consumer, closed and removed; a closed one means its stream is gone: its connection
    /// will leave or detach it, but that command may still be on its way and a lost
    /// connection must not show as a leave, so it is detached quietly meanwhile. A congested
    /// datagram buffer keeps the member's marks where they were, so its next batch carries
    /// everything it missed.
    ///
    /// What follows goes out before anything queued after the refused output, as if the
    /// room had seen the refusal at once: nothing more is queued for a member given up on.
    pub fn handle_undeliverable(&mut self, member: u16, why: Undeliverable) {
        self.reacting = true;
        match why {
            Undeliverable::QueueFull => self.slow_consumer(member),
            Undeliverable::QueueClosed => self.lost(member),
            Undeliverable::Congested => self.congested(member),
        }
        self.reacting = false;
    }

    fn push(&mut self, output: Output) {
        if self.reacting { self.urgent.push_back(output) } else { self.out.push_back(output) }
    }

    fn metric(&mut self, metric: Metric) {
        self.push(Output::Metric(metric));
    }

    /// Queues a message to one member, if it is linked.
    fn send(&mut self, to: u16, message: Message) {
        if self.members.get(&to).is_some_and(Member::is_linked) {
            self.push(Output::Send { to, message });
        }
    }

    /// Queues a message, encoded once, to every linked member except `except`.
    fn broadcast(&mut self, except: Option<u16>, message: &Message) {
        // Nobody knows of a member whose join is still to be announced: the membership frame
        // that announces it carries its state then.
        if let Message::ParticipantUpdated(u) = message
            && self.roster.is_unannounced(u.participant.index)
        {
            return;
        }
        match message.encode() {
            Ok(bytes) => self.push(Output::Broadcast { frame: Bytes::from(bytes), except }),
            Err(e) => tracing::error!(room = %self.id, "encode {:?}: {e}", message.kind()),
        }
    }

    /// Refuses a member's request with a `Fault`.
    fn refuse(&mut self, to: u16, kind: Kind, reference: u64, code: ErrorCode, why: &str) {
        self.send(to, Message::from(Fault::new(code, kind.to_u8(), reference, why)));
    }

    /// Whether the room has been empty for the idle-unload period.
    fn idle(&self, now: Instant) -> bool {
        self.empty_since.is_some_and(|t| now.duration_since(t) >= self.config.idle_unload)
    }

    /// Asks for a tick one period from `now`, unless one is already due.
    fn schedule_tick(&mut self, now: Instant) {
        self.next_tick.get_or_insert(now + self.config.tick);
    }

    fn wall_ms(&self, now: Instant) -> u64 {
        let (at, ms) = self.wall;
        if now >= at {
            ms.saturating_add(now.duration_since(at).as_millis() as u64)
        } else {
            ms.saturating_sub(at.duration_since(now).as_millis() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Sim, room};
    use super::*;

    #[test]
    fn poll_timeout_reports_housekeeping_then_the_next_tick() {
        let t0 = Instant::now();
        let mut room = room(Config::default(), t0);
        assert_eq!(room.poll_timeout(), Some(t0), "housekeeping is due at once");
        room.handle_timeout(t0);
        let outputs: Vec<Output> = std::iter::from_fn(|| room.poll_output()).collect();
        assert!(matches!(outputs[..], [Output::Metric(Metric::SampleQueues)]), "{outputs:?}");
        assert_eq!(room.poll_timeout(), Some(t0 + HOUSEKEEPING));

        let mut sim = Sim::new(room);
        let t1 = t0 + Duration::from_millis(100);
        sim.join(t1, "ada");
        assert_eq!(sim.room.poll_timeout(), Some(t1 + Config::default().tick), "a join asks for a tick");
    }

    #[test]
    fn an_empty_room_asks_to_be_unloaded_after_the_idle_period() {
        let t0 = Instant::now();
        let mut room = room(Config { idle_unload: Duration::from_secs(60), ..Config::default() }, t0);
        let idle = |room: &mut Room, at: Instant| {
            room.handle_timeout(at);
            std::iter::from_fn(|| room.poll_output()).any(|o| matches!(o, Output::Idle))
        };
        assert!(!idle(&mut room, t0 + Duration::from_secs(59)));
        assert!(idle(&mut room, t0 + Duration::from_secs(60)));
    }

    #[test]
    fn shutdown_stores_a_snapshot_then_everyone_leaves() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let a = sim.join(t0, "ada");
        let b = sim.join(t0, "bob");
        sim.room.handle_update(t0, a, 1, super::testing::edit("x"));
        sim.drain();
        let Some(Output::Persist(Persist::Append { .. })) = sim.take_other().pop() else {
            panic!("the update asks for a write")
        };
        sim.room.handle_committed(a, 1, Some((1, super::testing::edit("x"))));
        sim.take_other();
        sim.room.handle_shutdown(t0);
        sim.drain();
        let other = sim.take_other();
        assert!(matches!(other.first(), Some(Output::SnapshotWrite(s)) if s.upto_seq == 1), "{other:?}");
        assert_eq!(sim.left(a), Some((ErrorCode::ShuttingDown, String::new())));
        assert_eq!(sim.left(b), Some((ErrorCode::ShuttingDown, String::new())));
        assert!(sim.room.is_empty());
    }
}
