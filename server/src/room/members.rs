//! Membership: joining, resuming (re-attaching a member kept through a lost connection),
//! detaching, leaving, and what the driver's refusals mean for a member. Silence and
//! eviction are `silence`'s.

use std::sync::Arc;
use std::time::Instant;

use easel_proto::ErrorCode;
use easel_proto::Message;
use easel_proto::datagram::{PresenceEntry, Status, Tool};
use easel_proto::message::{HandQueue, Participant, Role, SfuEvent, SfuEventKind};

use super::cursors::CursorState;
use super::doc::SnapshotPayload;
use super::{Act, ClassEvent, Metric, Output, Room};
use crate::sfu::SfuOp;

/// Who is joining, as the room sees it: plain data, the link stays with the driver.
#[derive(Debug, Clone)]
pub struct Arrival {
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
    /// The session id (kept across resumes, on any node): another node's member of the same
    /// user and session is this one, come over from a node that died (cluster mode).
    pub session: u64,
    /// When the member's token expires (Unix ms): a removal holds until then.
    pub expires_ms: u64,
    /// The connection joining. Inputs that end a membership carry it, so one from a
    /// connection the member has since left behind (by resuming) is ignored.
    pub conn: u64,
    /// The member's connection-local slot for this room (datagrams carry it).
    pub slot: u16,
}

/// A successful join. Who is in the room follows on the member's queue, in the next
/// membership frame (see `roster`).
#[derive(Debug)]
pub struct Joined {
    /// The member's participant number.
    pub participant: u16,
    /// What the member lacks, if anything.
    pub snapshot: Option<SnapshotPayload>,
    /// Whether an existing member was re-attached (others were told nothing).
    pub resumed: bool,
}

/// How the room reaches a member.
#[derive(Debug, Clone)]
pub(super) enum Reach {
    /// Through its connection's link (the driver holds it), with this slot.
    Linked {
        /// The slot its datagrams carry.
        slot: u16,
    },
    /// Its connection was lost: it keeps its place until `until` (the end of the resume grace
    /// window), shown to others as away with its pointer hidden; what it misses it catches up
    /// on by version vector.
    Detached {
        /// When it is evicted unless re-attached.
        until: Instant,
        /// When the connection was lost (its attendance ends there if it never comes back).
        lost: Instant,
        /// The presence it showed before, given back on a resume.
        shown: Shown,
    },
    /// Another node's member (cluster mode): sent nothing, shown to local members.
    Remote {
        /// Its node's start (`id@start_ms`), which numbers it.
        origin: Arc<str>,
        /// Its node's id.
        node: Arc<str>,
        /// Its number on its node.
        index: u16,
        /// When it is dropped unless its node is heard from again.
        until: Instant,
        /// Its node was counted out: it is away, pointer hidden, until it reappears from
        /// another node (resumed there) or the resume grace passes; the presence it showed
        /// before is kept to give back.
        lost: Option<Option<(Status, Tool)>>,
    },
}

/// The presence (status, tool) a member showed before the room showed it away, if any.
pub(super) type Shown = Option<(Status, Tool)>;

pub(super) struct Member {
    pub(super) info: Participant,
    pub(super) client_id: String,
    /// Its session id (see [`Arrival::session`]).
    pub(super) session: u64,
    /// Token expiry, Unix ms.
    pub(super) expires_ms: u64,
    pub(super) reach: Reach,
    /// The connection the member was last attached through (see [`Arrival::conn`]).
    pub(super) conn: u64,
    pub(super) last_seen: Instant,
    /// Set while a linked member is shown away for its silence (SPEC §6.3): the presence it
    /// showed before, given back when it is heard from again.
    pub(super) hushed: Option<Shown>,
    pub(super) cursor: Option<CursorState>,
    /// Its presence as others see it, numbered by the room (see `Room::publish_presence`).
    pub(super) presence: Option<PresenceEntry>,
    /// The sequence number of its last heartbeat taken: its own numbering, which orders only
    /// its heartbeats (a stale one from a lost connection can still be on its way).
    pub(super) heard: Option<u16>,
    /// Highest cursor version already sent to this member.
    pub(super) cursor_mark: u64,
    /// Highest presence version already sent to this member.
    pub(super) presence_mark: u64,
    /// The marks before its last batch, restored if that batch was skipped.
    pub(super) marks_before: (u64, u64),
    /// When its last batch with cursors left (or was skipped as congested): the next one is
    /// due a pace later (SPEC §8.3). `None`: never, so the next one goes at once.
    pub(super) last_sent: Option<Instant>,
    /// Whether it is in the SFU room.
    pub(super) in_sfu: bool,
    /// The feed it publishes, while its camera is on.
    pub(super) feed: Option<u64>,
}

impl Member {
    /// A member with nothing sent, heard or stored yet.
    pub(super) fn new(info: Participant, reach: Reach, now: Instant) -> Self {
        Self {
            info,
            client_id: String::new(),
            session: 0,
            expires_ms: u64::MAX,
            reach,
            conn: 0,
            last_seen: now,
            hushed: None,
            cursor: None,
            presence: None,
            heard: None,
            cursor_mark: 0,
            presence_mark: 0,
            marks_before: (0, 0),
            last_sent: None,
            in_sfu: false,
            feed: None,
        }
    }

    pub(super) fn is_remote(&self) -> bool {
        matches!(self.reach, Reach::Remote { .. })
    }

    /// Whether its pointer may be shown: not while its connection (or its node) is lost, or
    /// while it is silent.
    pub(super) fn shows_pointer(&self) -> bool {
        !matches!(self.reach, Reach::Detached { .. } | Reach::Remote { lost: Some(_), .. })
            && self.hushed.is_none()
    }

    pub(super) fn is_linked(&self) -> bool {
        matches!(self.reach, Reach::Linked { .. })
    }

    pub(super) fn slot(&self) -> Option<u16> {
        match self.reach {
            Reach::Linked { slot } => Some(slot),
            Reach::Detached { .. } | Reach::Remote { .. } => None,
        }
    }
}

impl Room {
    /// Adds a member; everyone hears of it in the next membership frame. A resumed session's member still in the
    /// room is re-attached instead, and others see nothing (SPEC §5.4). The answer is an
    /// [`Output::JoinAnswer`], ahead of what the member is sent on arrival.
    pub fn handle_join(&mut self, now: Instant, arrival: Arrival) {
        // Marks start at zero: the next tick (or cursor round) sends the member every cursor
        // and presence entry.
        self.schedule_tick(now);
        if let Err(code) = self.join(now, arrival) {
            self.push(Output::JoinAnswer(Err(code)));
        }
    }

    fn join(&mut self, now: Instant, arrival: Arrival) -> Result<(), ErrorCode> {
        if let Some(index) = self.resumed_member(&arrival) {
            return self.reattach(now, index, arrival);
        }
        let now_ms = self.wall_ms(now);
        if self.class.removed(&arrival.user, now_ms) {
            return Err(ErrorCode::Removed);
        }
        if self.members.len() >= self.config.max_participants {
            return Err(ErrorCode::RoomFull);
        }
        let index = self.allocate_index().ok_or(ErrorCode::RoomFull)?;
        let flags = self.class.flags(&arrival.user);
        let info = Participant {
            index,
            user: arrival.user,
            name: arrival.name,
            role: arrival.role,
            read_only: flags.read_only,
            chat_muted: flags.chat_muted,
            camera: false,
            hand_raised: false,
        };
        let snapshot = self.sync_payload(arrival.since.as_deref()).map_err(|e| {
            tracing::error!(room = %self.id, "export for join failed: {e}");
            ErrorCode::Internal
        })?;
        let role = info.role;
        let mut member = Member::new(info, Reach::Linked { slot: arrival.slot }, now);
        (member.client_id, member.session, member.expires_ms, member.conn) =
            (arrival.client_id, arrival.session, arrival.expires_ms, arrival.conn);
        self.members.insert(index, member);
        self.empty_since = None;
        self.relay_changed(now, index);
        self.spotlight_joined(now, role);
        // Never sent a batch, so due at once.
        self.cursors_quiet_until = None;
        self.metric(Metric::ParticipantJoined);
        // The answer first: the driver links the newcomer, which then gets the membership
        // frame (and, should that frame close a slow consumer, hears it leave).
        self.push(Output::JoinAnswer(Ok(Joined { participant: index, snapshot, resumed: false })));
        self.announce_join(now, index);
        if let Some(m) = self.members.get(&index) {
            let by = self.actor(index, m);
            self.submit(now, ClassEvent { by, act: Act::Arrive });
        }
        self.send_side_state(index);
        Ok(())
    }

    /// Gives an existing member a new link: same number and flags, no membership news; the
    /// presence it showed before its connection was lost is given back on the next tick, so
    /// others see it return without waiting for its heartbeat. The driver lets the old link
    /// go, which ends the old connection's writer for this room.
    fn reattach(&mut self, now: Instant, index: u16, arrival: Arrival) -> Result<(), ErrorCode> {
        let snapshot = self.sync_payload(arrival.since.as_deref()).map_err(|e| {
            tracing::error!(room = %self.id, "export for resume failed: {e}");
            ErrorCode::Internal
        })?;
        // A remote member resuming here: its membership at its old node ends when it was lost
        // there (that node died, or cedes it: proposed either way, counted once), after its
        // membership here begins, so its attendance runs on across the move as across a
        // resume on one node.
        let ended = self.members.get(&index).and_then(|m| match m.reach {
            Reach::Remote { until, lost, .. } => {
                let at = if lost.is_some() { self.lost_at(until) } else { now };
                Some(ClassEvent { by: self.actor(index, m), act: Act::Depart { at_ms: self.wall_ms(at) } })
            }
            _ => None,
        });
        let member = self.members.get_mut(&index).ok_or(ErrorCode::Internal)?;
        let (shown, was_remote) = match &member.reach {
            Reach::Detached { shown, .. } => (*shown, false),
            // Still linked, as far as this room knew: it may have been shown away as silent.
            Reach::Linked { .. } => (member.hushed.flatten(), false),
            Reach::Remote { lost, .. } => (lost.flatten(), true),
        };
        member.hushed = None;
        member.client_id = arrival.client_id;
        member.expires_ms = arrival.expires_ms;
        member.conn = arrival.conn;
        member.reach = Reach::Linked { slot: arrival.slot };
        member.last_seen = now;
        // Marks at zero: the next tick sends every cursor and presence entry, which it missed.
        member.cursor_mark = 0;
        member.presence_mark = 0;
        member.last_sent = None;
        self.cursors_quiet_until = None;
        if was_remote {
            self.adopt_remote(now, index);
        }
        if let Some(departure) = ended {
            self.submit(now, departure);
        }
        if let Some((status, tool)) = shown {
            self.publish_presence(now, index, status, tool);
        }
        self.push(Output::JoinAnswer(Ok(Joined { participant: index, snapshot, resumed: true })));
        self.announce_return(now, index);
        // The new connection's token may have another role than the lost one's.
        self.handle_refreshed(now, index, arrival.conn, arrival.role, arrival.expires_ms);
        self.send_side_state(index);
        Ok(())
    }

    /// The member a resumed session re-attaches to: the one it held here (same number, user
    /// and session), or in cluster mode another node's member of the same user and session
    /// (its node died and it resumed here).
    fn resumed_member(&self, arrival: &Arrival) -> Option<u16> {
        let held = arrival.resume?;
        let same = |m: &Member| m.info.user == arrival.user && m.session == arrival.session;
        if self.members.get(&held).is_some_and(|m| !m.is_remote() && same(m)) {
            return Some(held);
        }
        self.remote_by_session(&arrival.user, arrival.session)
    }

    pub(super) fn allocate_index(&mut self) -> Option<u16> {
        // Fresh numbers first, so a reused number never inherits a stale cursor sequence.
        for _ in 0..=u16::MAX {
            let index = self.next_index;
            self.next_index = self.next_index.wrapping_add(1);
            // The last number names another node's members (cluster mode).
            if index != super::doc::REMOTE_AUTHOR && !self.members.contains_key(&index) {
                return Some(index);
            }
        }
        None
    }

    /// The room's side state for a member that just joined or came back (SPEC §6.2): what
    /// was said and asked before it came, or while it was away.
    fn send_side_state(&mut self, index: u16) {
        for message in self.class.on_join() {
            self.send(index, message);
        }
        if !self.hands.is_empty() {
            self.send(index, Message::from(HandQueue { queue: self.hand_queue() }));
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
        if let Some(outage) = self.sfu_outage() {
            self.send(index, outage);
        }
    }

    /// Connection `conn` ends a membership: others hear of it in the next membership frame,
    /// and the member's stream gets `Left { code }`. Ignored if the member has since been
    /// re-attached through another connection.
    pub fn handle_leave(&mut self, now: Instant, member: u16, conn: u64, code: ErrorCode) {
        if self.members.get(&member).is_some_and(|m| m.conn == conn) {
            self.remove(now, member, code, Some(String::new()));
        }
    }

    /// Connection `conn` was lost: the member keeps its place until the resume grace window
    /// passes, with no membership news; others see it away, pointer hidden, on the next tick
    /// (SPEC §8.4). Ignored if it has since been re-attached elsewhere.
    pub fn handle_detach(&mut self, now: Instant, member: u16, conn: u64) {
        if self.members.get(&member).is_some_and(|m| m.conn == conn) {
            self.detach(now, member);
        }
    }

    fn detach(&mut self, lost: Instant, index: u16) {
        let until = lost + self.config.resume_grace;
        let Some(member) = self.members.get_mut(&index) else { return };
        let (was_linked, shown) = match member.reach {
            Reach::Linked { .. } => {
                let before = member.presence.map(|p| (p.status, p.tool));
                (true, member.hushed.take().unwrap_or(before))
            }
            Reach::Detached { shown, .. } => (false, shown),
            Reach::Remote { .. } => return,
        };
        member.reach = Reach::Detached { until, lost, shown };
        if was_linked {
            self.push(Output::Release { member: index });
            // Not a frozen cursor for the whole window: nobody is behind it now.
            self.publish_presence(lost, index, Status::Away, Tool::Hidden);
        }
    }

    /// Queues `message` to the member, in order with the room's own (refusals decided by its
    /// connection, e.g. rate limits); it is alive.
    pub fn handle_reply(&mut self, now: Instant, member: u16, message: Message) {
        self.handle_touch(now, member);
        self.send(member, message);
    }

    /// Removes a member; others hear of it (with `code`) in the next membership frame. A
    /// linked member's stream gets `Left { code, reason }` if `reason` is given; its link is
    /// let go either way.
    pub(super) fn remove(&mut self, now: Instant, index: u16, code: ErrorCode, reason: Option<String>) {
        let Some(member) = self.members.remove(&index) else { return };
        let by = self.actor(index, &member);
        if member.is_linked() {
            self.push(match reason {
                Some(reason) => Output::Left { member: index, code, reason },
                None => Output::Release { member: index },
            });
        }
        self.remember_departed(now, by.key.clone(), &by.user, index);
        let left_at = match &member.reach {
            Reach::Detached { lost, .. } => *lost,
            Reach::Linked { .. } => now,
            Reach::Remote { .. } => {
                // Its node keeps its attendance (and its SFU session); here it only leaves
                // the lists, and its feed with it.
                self.drop_hand(&by.key);
                self.forget_remote(&member.info.user, member.session);
                self.remote_sfu_gone(index, member.in_sfu, member.feed);
                self.unlist(now, index, &member, code);
                return;
            }
        };
        self.metric(Metric::ParticipantLeft);
        self.relay_left(now, index, code);
        if member.in_sfu {
            self.push(Output::Sfu(SfuOp::Leave { participant: index }));
        }
        let at_ms = self.wall_ms(left_at);
        self.drop_hand(&by.key);
        self.submit(now, ClassEvent { by, act: Act::Depart { at_ms } });
        self.unlist(now, index, &member, code);
    }

    /// A removed member leaves the cursors, presence, the cap and the roster; a room left with
    /// no member of this node's is empty (other nodes' members do not keep it loaded).
    fn unlist(&mut self, now: Instant, index: u16, member: &Member, code: ErrorCode) {
        if let Some(v) = self.cursor_version_of.remove(&index) {
            self.cursor_versions.remove(&v);
        }
        if let Some(v) = self.presence_version_of.remove(&index) {
            self.presence_versions.remove(&v);
        }
        self.spotlight_left(now, index, member.info.role);
        self.announce_leave(now, index, code.to_u16());
        if self.empty_since.is_none() && self.members.values().all(Member::is_remote) {
            self.empty_since = Some(now);
        }
    }

    /// The member's queue overflowed: it is closed and removed, not waited for.
    pub(super) fn slow_consumer(&mut self, index: u16) {
        // Time inside the core comes from its inputs: the member's last sign of life.
        let Some(now) = self.members.get(&index).map(|m| m.last_seen) else { return };
        tracing::warn!(room = %self.id, index, "reliable queue overflowed: closing slow consumer");
        self.metric(Metric::SlowConsumer);
        if self.members.get(&index).is_some_and(Member::is_linked) {
            self.push(Output::SlowConsumer { member: index });
        }
        self.remove(now, index, ErrorCode::SlowConsumer, None);
    }

    /// The member's stream is gone: detached quietly until its connection says more.
    pub(super) fn lost(&mut self, index: u16) {
        if let Some(now) = self.members.get(&index).map(|m| m.last_seen) {
            self.detach(now, index);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use easel_proto::datagram::{Heartbeat, Status, Tool};
    use easel_proto::message::Ack;

    use super::super::testing::{Sim, room};
    use super::super::{Config, Undeliverable};
    use super::*;

    #[test]
    fn full_rooms_refuse_and_full_queues_close_the_slow_consumer() {
        let t0 = Instant::now();
        let config = Config { max_participants: 2, ..Config::default() };
        let mut sim = Sim::new(room(config, t0));
        let a = sim.join(t0, "ada");
        let b = sim.join_with(t0, "bob", 0, None, 2).participant;
        sim.room.handle_join(t0, sim.arrival("cyd", 0, None));
        let answer = sim.room.poll_output();
        assert!(matches!(answer, Some(Output::JoinAnswer(Err(ErrorCode::RoomFull)))), "{answer:?}");

        // Bob never reads: his 2-slot queue overflows and he is removed, not waited for.
        for i in 0..5 {
            sim.room.broadcast(Some(a), &Message::from(Ack { op_ids: vec![i] }));
        }
        sim.drain();
        assert!(sim.killed(b), "bob's session is closed as a slow consumer");
        assert_eq!(sim.room.len(), 1);
        assert!(!sim.linked(b), "and his link let go");
        let metrics = sim.take_other();
        assert!(metrics.iter().any(|o| matches!(o, Output::Metric(Metric::SlowConsumer))));
    }

    #[test]
    fn what_follows_a_refusal_goes_out_before_what_was_queued_after_it() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let a = sim.join(t0, "ada");
        let b = sim.join(t0, "bob");
        sim.membership(a);
        sim.room.send(b, Message::from(Ack { op_ids: vec![1] }));
        sim.room.send(b, Message::from(Ack { op_ids: vec![2] }));
        let first = sim.room.poll_output();
        assert!(matches!(first, Some(Output::Send { to, .. }) if to == b));
        // The driver found bob's queue full.
        sim.room.handle_undeliverable(b, Undeliverable::QueueFull);
        let next: Vec<Output> = std::iter::from_fn(|| sim.room.poll_output()).collect();
        let slow = next.iter().position(|o| matches!(o, Output::SlowConsumer { member } if *member == b));
        let release = next.iter().position(|o| matches!(o, Output::Release { member } if *member == b));
        let queued = next.iter().position(|o| matches!(o, Output::Send { to, .. } if *to == b));
        assert!(slow < release && release < queued, "{next:?}");
        sim.advance(t0 + Config::default().tick);
        let slow = ErrorCode::SlowConsumer.to_u16();
        assert_eq!(sim.membership(a), [("left", b, slow)], "ada hears bob left in the next slot");
    }

    #[test]
    fn a_newcomer_hears_of_the_slow_consumer_the_membership_frame_closed() {
        let t0 = Instant::now();
        let tick = Config::default().tick;
        let mut sim = Sim::new(room(Config::default(), t0));
        let a = sim.join(t0, "ada");
        let b = sim.arrive(t0, "bob", 1).participant;
        sim.room.broadcast(None, &Message::from(Ack { op_ids: vec![1] }));
        sim.drain();
        // Bob's one-slot queue is full: the frame announcing him and cyd overflows it.
        let cyd = sim.arrive(t0, "cyd", 64).participant;
        sim.advance(t0 + tick);
        assert!(sim.killed(b));
        let lists = sim.lists(cyd);
        assert!(
            lists.iter().any(|(list, _)| list == &[a, b, cyd]),
            "bob was there for cyd's list: {lists:?}"
        );
        sim.membership(cyd);
        sim.advance(t0 + 2 * tick);
        assert_eq!(sim.membership(cyd), [("left", b, ErrorCode::SlowConsumer.to_u16())]);
    }

    #[test]
    fn a_closed_queue_detaches_quietly() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let a = sim.join(t0, "ada");
        let b = sim.join(t0, "bob");
        sim.messages(a);
        sim.room.handle_undeliverable(b, Undeliverable::QueueClosed);
        sim.drain();
        assert!(!sim.linked(b));
        assert_eq!(sim.room.len(), 2, "kept for a resume");
        assert_eq!(sim.membership(a), []);
    }

    #[test]
    fn a_detached_member_is_reattached_with_its_number_and_nobody_is_told() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let a = sim.join_with(t0, "ada", 1, None, 64).participant;
        let b = sim.join_with(t0, "bob", 2, None, 64).participant;
        sim.membership(a);
        sim.membership(b);

        sim.room.handle_detach(t0 + Duration::from_secs(1), a, 1);
        sim.drain();
        let released =
            sim.take_other().iter().any(|o| matches!(o, Output::Release { member } if *member == a));
        assert!(released, "the old link is let go, which ends the old writer");
        assert!(!sim.linked(a));
        assert!(!sim.room.members.get(&a).is_some_and(Member::is_linked));
        // Messages meanwhile are discarded for it; the others notice nothing.
        sim.room.broadcast(Some(b), &Message::from(Ack { op_ids: vec![7] }));
        sim.drain();
        assert_eq!(sim.room.len(), 2);

        let joined = sim.join_with(t0 + Duration::from_secs(5), "ada", 3, Some(a), 64);
        assert!(joined.resumed);
        assert_eq!(joined.participant, a, "same participant number");
        let lists: Vec<Vec<u16>> = sim.lists(a).into_iter().map(|(list, _)| list).collect();
        assert_eq!(lists, [vec![a, b]], "the resumed member gets the whole list again");
        sim.messages(a);
        assert!(sim.room.members.get(&a).is_some_and(Member::is_linked));
        assert_eq!(sim.membership_frames(b), [], "no membership news for a resume");
        sim.room.broadcast(Some(b), &Message::from(Ack { op_ids: vec![8] }));
        sim.drain();
        assert_eq!(sim.messages(a).len(), 1, "the new link gets what is sent after the resume");

        // Resuming someone else's place is a normal join.
        let joined = sim.join_with(t0, "eve", 4, Some(b), 64);
        assert!(!joined.resumed);
        assert_ne!(joined.participant, b);
    }

    /// Ada and bob in a room (connections 1 and 2), ada's presence `Active`/`Pen` known to
    /// bob after the first tick; returns them with ada's entry as bob got it.
    pub(in super::super) fn ada_shown_to_bob(sim: &mut Sim, t0: Instant) -> (u16, u16, PresenceEntry) {
        let a = sim.join_with(t0, "ada", 1, None, 64).participant;
        let b = sim.join_with(t0, "bob", 2, None, 64).participant;
        sim.membership(b);
        let beat = Heartbeat { slot: 0, seq: 7, status: Status::Active, tool: Tool::Pen };
        sim.room.handle_heartbeat(t0, a, &beat);
        sim.advance(t0 + sim.room.config.tick);
        let shown = sim.presence(b).into_iter().find(|e| e.participant == a).expect("ada's presence");
        assert_eq!((shown.status, shown.tool), (Status::Active, Tool::Pen));
        (a, b, shown)
    }

    /// The one entry of `who` in `entries`, which must be newer than `than` (SPEC §8.2).
    pub(in super::super) fn newer_entry(
        entries: &[PresenceEntry],
        who: u16,
        than: &PresenceEntry,
    ) -> PresenceEntry {
        let mine: Vec<&PresenceEntry> = entries.iter().filter(|e| e.participant == who).collect();
        assert_eq!(mine.len(), 1, "{entries:?}");
        assert!(easel_proto::datagram::is_newer(mine[0].seq, than.seq), "{:?} after {than:?}", mine[0]);
        *mine[0]
    }

    #[test]
    fn a_lost_connection_shows_the_member_away_and_hidden_on_the_next_tick() {
        let t0 = Instant::now();
        let config = Config { presence_ttl: Duration::from_secs(10), ..Config::default() };
        let tick = config.tick;
        assert!(tick < config.presence_ttl);
        let mut sim = Sim::new(room(config, t0));
        let (a, b, shown) = ada_shown_to_bob(&mut sim, t0);
        let lost = t0 + Duration::from_secs(1);
        let cursor = |seq| easel_proto::datagram::Cursor { slot: 0, seq, x: 1, y: 1 };
        sim.room.handle_cursor(lost, a, &cursor(1));
        assert_eq!(sim.cursors(b).len(), 1, "its last move");
        sim.room.handle_detach(lost, a, 1);
        sim.advance(lost + tick);
        let away = newer_entry(&sim.presence(b), a, &shown);
        assert_eq!((away.status, away.tool), (Status::Away, Tool::Hidden), "one tick after the loss");
        assert_eq!(sim.membership_frames(b), [], "away is presence, not a leave");
        assert_eq!(sim.room.len(), 2, "its place is kept");
        // Still queued from the lost connection: a heartbeat does not bring the ghost back.
        let stale = Heartbeat { slot: 0, seq: 8, status: Status::Active, tool: Tool::Pen };
        sim.room.handle_heartbeat(lost, a, &stale);
        sim.room.handle_cursor(lost, a, &cursor(2));
        // Nor does the repeat of a stopped cursor (SPEC §8.3).
        sim.advance(lost + sim.room.config.settle + 2 * tick);
        assert_eq!(sim.datagrams(b), [], "nothing of the lost connection is sent");
    }

    #[test]
    fn a_resume_restores_the_previous_presence_at_once_without_membership_news() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let tick = sim.room.config.tick;
        let (a, b, shown) = ada_shown_to_bob(&mut sim, t0);
        let lost = t0 + Duration::from_secs(1);
        sim.room.handle_detach(lost, a, 1);
        sim.advance(lost + tick);
        let away = newer_entry(&sim.presence(b), a, &shown);

        let back_at = lost + Duration::from_secs(5);
        assert!(sim.join_with(back_at, "ada", 3, Some(a), 64).resumed);
        sim.advance(back_at + tick);
        let back = newer_entry(&sim.presence(b), a, &away);
        assert_eq!((back.status, back.tool), (Status::Active, Tool::Pen), "before any heartbeat of its own");
        assert_eq!(sim.membership_frames(b), [], "no leave, no join");
        let mine = newer_entry(&sim.presence(a), a, &shown);
        assert_eq!(mine, back, "the resumed member gets the same state");

        // Its own heartbeats, numbered on from the old connection's, still win.
        let beat = Heartbeat { slot: 0, seq: 8, status: Status::Active, tool: Tool::Laser };
        sim.room.handle_heartbeat(back_at + tick, a, &beat);
        sim.advance(back_at + 2 * tick);
        let laser = newer_entry(&sim.presence(b), a, &back);
        assert_eq!(laser.tool, Tool::Laser);
    }

    #[test]
    fn a_detached_member_is_evicted_at_the_grace_deadline() {
        let t0 = Instant::now();
        let config = Config {
            resume_grace: Duration::from_secs(30),
            presence_ttl: Duration::from_secs(100),
            ..Config::default()
        };
        let mut sim = Sim::new(room(config, t0));
        let a = sim.join_with(t0, "ada", 1, None, 64).participant;
        let b = sim.join_with(t0, "bob", 2, None, 64).participant;
        sim.membership(b);
        let lost = t0 + Duration::from_secs(1);
        sim.room.handle_detach(lost, a, 1);
        sim.expire(lost + Duration::from_millis(29_999));
        assert_eq!(sim.room.len(), 2, "held for the whole window");
        assert_eq!(sim.membership(b), []);
        sim.expire(lost + Duration::from_secs(30));
        assert_eq!(sim.room.len(), 1);
        assert_eq!(sim.membership(b), [("left", a, ErrorCode::PresenceTimeout.to_u16())]);
        // Too late: a resume now is a normal join under a new number.
        let joined = sim.join_with(lost + Duration::from_secs(31), "ada", 3, Some(a), 64);
        assert!(!joined.resumed);
        assert_eq!(sim.membership(b), [("joined", joined.participant, 0)]);
    }

    #[test]
    fn a_detached_member_outlives_the_presence_ttl() {
        let t0 = Instant::now();
        let config = Config {
            resume_grace: Duration::from_secs(30),
            presence_ttl: Duration::from_secs(10),
            ..Config::default()
        };
        let mut sim = Sim::new(room(config, t0));
        let a = sim.join_with(t0, "ada", 1, None, 64).participant;
        let b = sim.join_with(t0, "bob", 2, None, 64).participant;
        sim.membership(b);
        sim.room.handle_detach(t0, a, 1);
        for secs in [9, 18, 27] {
            let now = t0 + Duration::from_secs(secs);
            sim.room.handle_touch(now, b);
            sim.expire(now + Duration::from_secs(2));
        }
        assert_eq!(sim.room.len(), 2, "27 s of silence inside the grace window is not a timeout");
        assert_eq!(sim.membership(b), []);
        // Re-attached, it is alive again from then on.
        let joined = sim.join_with(t0 + Duration::from_secs(29), "ada", 3, Some(a), 64);
        assert!(joined.resumed);
        sim.room.handle_touch(t0 + Duration::from_secs(58), b);
        sim.expire(t0 + Duration::from_secs(58));
        assert_eq!(sim.room.len(), 2, "29 s since the re-attach: silent, inside the window");
        sim.expire(t0 + Duration::from_secs(60));
        assert_eq!(sim.membership(b), [("left", a, ErrorCode::PresenceTimeout.to_u16())]);
    }

    #[test]
    fn stale_leave_and_detach_from_an_old_connection_are_ignored() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let a = sim.join_with(t0, "ada", 1, None, 64).participant;
        let b = sim.join_with(t0, "bob", 2, None, 64).participant;
        sim.membership(a);
        sim.membership(b);
        // Resumed on connection 3 while connection 1 still looked live (a takeover).
        sim.join_with(t0, "ada", 3, Some(a), 64);
        assert_eq!(sim.replaced(), 1, "the old link is let go");

        sim.room.handle_leave(t0, a, 1, ErrorCode::Normal);
        sim.room.handle_detach(t0, a, 1);
        sim.drain();
        assert!(sim.linked(a), "connection 1 no longer speaks for ada");
        assert_eq!(sim.membership(b), []);

        sim.room.handle_leave(t0, b, 2, ErrorCode::Normal);
        sim.advance(t0 + Config::default().tick);
        assert_eq!(sim.membership(a), [("left", b, 0)], "the current link gets the news");
        sim.room.handle_leave(t0, a, 3, ErrorCode::Normal);
        sim.drain();
        assert!(sim.room.is_empty(), "the current connection does");
    }
}
