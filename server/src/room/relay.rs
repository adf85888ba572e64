//! Cluster mode: presence across nodes. This node's members go out to the other nodes holding
//! the room as one [`RelayBatch`] per pace, and only when something changed (a cursor moved,
//! a member came, went or changed presence), plus the whole local roster every presence
//! refresh, which repairs loss (the relay is at-most-once) and keeps them alive at the others.
//! The other nodes' members come in the same way and are held here without a link: each gets
//! a participant number of this room's own, so local clients only ever see this node's
//! numbers; they are in membership frames, presence and cursor batches (under the lecture's
//! cap) like a local member, and are sent nothing. A remote member is known by its user and
//! session id, not its node's number: one whose node dies and who resumes on another node
//! keeps its number here. They go when their node says so or when its refreshes stop for the
//! presence TTL; when the cluster counts their node out they are away (pointer hidden) for the
//! resume grace, and go if they have not reappeared from another node by then.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use easel_proto::ErrorCode;
use easel_proto::datagram::{Status, Tool, is_newer};
use easel_proto::message::{Participant, Role};

use super::cursors::CursorState;
use super::members::{Member, Reach};
use super::{Act, ClassEvent, Key, Output, Room};

/// One node's members of one room, as it tells the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayBatch {
    /// The node and its start (`id@start_ms`): numbers are the start's own.
    pub origin: String,
    /// The node's id, as the cluster's membership names it.
    pub node: String,
    /// Every member of the node in the room: whoever is not listed is gone.
    pub full: bool,
    /// Members that changed (or all of them, when `full`).
    pub members: Vec<Relayed>,
    /// Members that left since the last batch: their number on the origin and the code.
    pub left: Vec<(u16, u16)>,
}

/// One member as its node tells the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    /// Its participant number on its node.
    pub index: u16,
    /// Token subject.
    pub user: String,
    /// Its session id: with the user, who it is across nodes.
    pub session: u64,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Presence, once it has one.
    pub presence: Option<(Status, Tool)>,
    /// Cursor `(seq, x, y)`, while its pointer shows.
    pub cursor: Option<(u16, i32, i32)>,
    /// Whether it is in the room's SFU room (its node's bridge let it in).
    pub in_sfu: bool,
    /// The feed it publishes, while its camera is on: the SFU's id, the same on every node
    /// that shares the SFU.
    pub feed: Option<u64>,
}

/// The relay's state in a room of a clustered node.
pub(super) struct Relay {
    /// This node's origin: batches from it are its own, ignored.
    origin: Arc<str>,
    node: Arc<str>,
    /// Local members changed since the last batch.
    changed: BTreeSet<u16>,
    /// Local members gone since the last batch, with the code.
    left: Vec<(u16, u16)>,
    /// When the last batch, and the last full one, went out.
    last: Option<Instant>,
    last_full: Option<Instant>,
    /// When the next batch is due.
    pub(super) next: Option<Instant>,
    /// Remote members: (user, session) → this room's number.
    numbers: HashMap<(String, u64), u16>,
    /// Members that left lately, newest last: a classroom event naming one that comes from
    /// the room log after its leave came by presence still names it by the number it had.
    departed: VecDeque<Departed>,
    /// The origins heard from: a new one (a node that just loaded the room, or restarted)
    /// is sent this node's whole roster at the next pace rather than at the next refresh,
    /// so its members see this node's at once.
    heard: HashSet<Arc<str>>,
}

/// A member that left, as [`Relay::departed`] remembers it.
struct Departed {
    key: Key,
    user: String,
    number: u16,
    at: Instant,
}

/// How many departed members a room remembers, and for how long: a leave by presence is
/// ahead of the room log by a round trip to NATS, not by minutes.
const DEPARTED_MAX: usize = 256;
const DEPARTED_FOR: std::time::Duration = std::time::Duration::from_secs(60);

impl Relay {
    /// `origin`: this node's `id@start_ms`.
    pub(super) fn new(origin: &str) -> Self {
        let node = origin.split_once('@').map_or(origin, |(node, _)| node);
        Self {
            origin: origin.into(),
            node: node.into(),
            changed: BTreeSet::new(),
            left: Vec::new(),
            last: None,
            last_full: None,
            next: None,
            numbers: HashMap::new(),
            departed: VecDeque::new(),
            heard: HashSet::new(),
        }
    }
}

impl Room {
    /// Another node's batch for this room: its members are added, updated or removed, their
    /// cursors and presence go to local members as a local member's do. A batch of this
    /// node's own is ignored.
    pub fn handle_remote_presence(&mut self, now: Instant, batch: RelayBatch) {
        let Some(relay) = &self.relay else { return };
        if *batch.origin == *relay.origin {
            return;
        }
        let origin: Arc<str> = batch.origin.into();
        let node: Arc<str> = batch.node.into();
        if let Some(relay) = &mut self.relay
            && relay.heard.insert(origin.clone())
        {
            relay.last_full = None;
            self.relay_due(now);
        }
        let until = now + self.config.presence_ttl;
        let listed: BTreeSet<u16> = batch.members.iter().map(|m| m.index).collect();
        // A node that restarted numbers afresh: its earlier start's members are gone.
        let mut gone = Vec::new();
        for (index, m) in self.members.iter_mut() {
            if let Reach::Remote { origin: o, node: n, index: theirs, until: u, lost } = &mut m.reach {
                if *o == origin {
                    // One whose node was counted out waits out the grace (or its next node).
                    if lost.is_none() {
                        *u = until;
                    }
                    if batch.full && !listed.contains(theirs) {
                        gone.push((*index, ErrorCode::Normal));
                    }
                } else if *n == node {
                    gone.push((*index, ErrorCode::PresenceTimeout));
                }
            }
        }
        for (theirs, code) in batch.left {
            if let Some(index) = self.remote_number(&origin, theirs) {
                gone.push((index, ErrorCode::from_u16(code).unwrap_or(ErrorCode::Normal)));
            }
        }
        for (index, code) in gone {
            self.remove(now, index, code, None);
        }
        let mut moved = false;
        for member in batch.members {
            moved |= self.take_remote(now, &origin, &node, member, until);
        }
        if moved {
            self.cursors_moved(now);
        }
    }

    /// The cluster counted `node` out: its members are away, pointer hidden, for the resume
    /// grace (they may resume on another node), and go when it passes.
    pub fn handle_node_left(&mut self, now: Instant, node: &str) {
        if let Some(relay) = &mut self.relay {
            relay.heard.retain(|o| o.split_once('@').map_or(&**o, |(n, _)| n) != node);
        }
        let until = now + self.config.resume_grace;
        let mut away = Vec::new();
        for (index, m) in self.members.iter_mut() {
            if let Reach::Remote { node: n, until: u, lost, .. } = &mut m.reach
                && **n == *node
                && lost.is_none()
            {
                *lost = Some(m.presence.map(|p| (p.status, p.tool)));
                *u = until;
                away.push(*index);
            }
        }
        for index in away {
            self.publish_presence(now, index, Status::Away, Tool::Hidden);
            // Its node's SFU session died with it: so did its feed and subscriptions.
            self.remote_sfu(index, false, None);
        }
    }

    /// When a member of a counted-out node was lost: its wait ends a resume grace after.
    pub(super) fn lost_at(&self, until: Instant) -> Instant {
        until.checked_sub(self.config.resume_grace).unwrap_or(until)
    }

    /// The remote member of `user`'s session `session`, if any.
    pub(super) fn remote_by_session(&self, user: &str, session: u64) -> Option<u16> {
        self.relay.as_ref()?.numbers.get(&(user.to_owned(), session)).copied()
    }

    /// The remote member `origin` numbers `theirs`.
    pub(super) fn remote_number(&self, origin: &Arc<str>, theirs: u16) -> Option<u16> {
        self.members.iter().find_map(|(i, m)| match &m.reach {
            Reach::Remote { origin: o, index, .. } if o == origin && *index == theirs => Some(*i),
            _ => None,
        })
    }

    /// One remote member in: added under a number of ours (or found under the one it had,
    /// from whichever node), its presence and cursor taken; whether its cursor is owed to the
    /// local members.
    fn take_remote(
        &mut self,
        now: Instant,
        origin: &Arc<str>,
        node: &Arc<str>,
        r: Relayed,
        until: Instant,
    ) -> bool {
        let index = match self.remote_by_session(&r.user, r.session) {
            Some(index) => {
                let Some(m) = self.members.get_mut(&index) else { return false };
                let Reach::Remote { origin: o, node: n, index: theirs, until: u, lost } = &mut m.reach else {
                    return false;
                };
                if o != origin {
                    // It moved: its new node numbers it afresh; its cursor sequence too.
                    m.cursor = None;
                }
                let shown = lost.take().flatten();
                (*o, *n, *theirs, *u) = (origin.clone(), node.clone(), r.index, until);
                if let (Some((status, tool)), None) = (shown, r.presence) {
                    self.publish_presence(now, index, status, tool);
                }
                index
            }
            None => {
                // Another member under a number of the origin's: the one before left unseen.
                if let Some(held) = self.remote_number(origin, r.index) {
                    self.remove(now, held, ErrorCode::Normal, None);
                }
                let local = self
                    .members
                    .iter()
                    .find(|(_, m)| !m.is_remote() && m.info.user == r.user && m.session == r.session);
                match local.map(|(i, _)| *i) {
                    // Resumed there while its connection here was lost: the other node's now.
                    Some(index) if self.cede(now, index, (origin, node), &r, until) => index,
                    // Still connected here: this node's member is the one.
                    Some(_) => return false,
                    None => {
                        let Some(index) = self.add_remote(now, origin, node, &r, until) else { return false };
                        index
                    }
                }
            }
        };
        if let Some((status, tool)) = r.presence {
            self.publish_presence(now, index, status, tool);
        }
        self.remote_sfu(index, r.in_sfu, r.feed);
        let Some((seq, x, y)) = r.cursor else { return false };
        let Some(m) = self.members.get_mut(&index) else { return false };
        if m.cursor.as_ref().is_some_and(|old| !is_newer(seq, old.seq)) {
            return false;
        }
        self.keep_cursor(now, index, CursorState { seq, x, y, changed: now, settled: false })
    }

    fn add_remote(
        &mut self,
        now: Instant,
        origin: &Arc<str>,
        node: &Arc<str>,
        r: &Relayed,
        until: Instant,
    ) -> Option<u16> {
        if self.members.len() >= self.config.max_participants {
            return None;
        }
        let index = self.allocate_index()?;
        let flags = self.class.flags(&r.user);
        let key = Key { origin: origin.clone(), index: r.index };
        let hand_raised = self.hands.contains(&key);
        let info = Participant {
            index,
            user: r.user.clone(),
            name: r.name.clone(),
            role: r.role,
            read_only: flags.read_only,
            chat_muted: flags.chat_muted,
            camera: false,
            hand_raised,
        };
        let reach =
            Reach::Remote { origin: origin.clone(), node: node.clone(), index: r.index, until, lost: None };
        let mut member = Member::new(info, reach, now);
        // No local connection speaks for it (connection ids count up from 0).
        member.conn = u64::MAX;
        member.session = r.session;
        self.members.insert(index, member);
        if let Some(relay) = &mut self.relay {
            relay.numbers.insert((r.user.clone(), r.session), index);
        }
        self.spotlight_joined(now, r.role);
        self.announce_join(now, index);
        if hand_raised {
            // Its hand came by the room log before its member by presence: shown now.
            let queue = self.hand_queue();
            self.broadcast(None, &easel_proto::Message::from(easel_proto::message::HandQueue { queue }));
        }
        Some(index)
    }

    /// A member whose connection here was lost resumed on `origin`'s node: it becomes that
    /// node's member here, under the same number, with no membership news; its attendance
    /// here ends when its connection was lost. False if it is still connected here.
    fn cede(
        &mut self,
        now: Instant,
        index: u16,
        (origin, node): (&Arc<str>, &Arc<str>),
        r: &Relayed,
        until: Instant,
    ) -> bool {
        let Some(m) = self.members.get(&index) else { return false };
        let Reach::Detached { lost, .. } = m.reach else { return false };
        // Named as this node's member, as its classroom events so far were.
        let by = self.actor(index, m);
        let Some(m) = self.members.get_mut(&index) else { return false };
        m.reach =
            Reach::Remote { origin: origin.clone(), node: node.clone(), index: r.index, until, lost: None };
        // No local connection speaks for it now.
        m.conn = u64::MAX;
        let (user, in_sfu) = (m.info.user.clone(), m.in_sfu);
        if in_sfu {
            self.push(Output::Sfu(super::SfuOp::Leave { participant: index }));
        }
        // Its SFU session here ends (what the bridge reports of it is not heard: see
        // `handle_sfu_news`); its new node's batches tell its SFU state from now on.
        self.remote_sfu(index, false, None);
        if let Some(relay) = &mut self.relay {
            relay.changed.remove(&index);
            relay.numbers.insert((user.clone(), r.session), index);
        }
        self.metric(super::Metric::ParticipantLeft);
        // Its hand, like its attendance, is its node's.
        self.drop_hand(&by.key);
        let at_ms = self.wall_ms(lost);
        self.submit(now, ClassEvent { by, act: Act::Depart { at_ms } });
        true
    }

    /// A remote member resumed here (its node died): it is this node's member from now on,
    /// under the same number, and the other nodes hear of it from here.
    pub(super) fn adopt_remote(&mut self, now: Instant, index: u16) {
        let Some(m) = self.members.get(&index) else { return };
        let (user, session) = (m.info.user.clone(), m.session);
        if let Some(relay) = &mut self.relay {
            relay.numbers.remove(&(user.clone(), session));
        }
        self.metric(super::Metric::ParticipantJoined);
        // Its feed was its old node's SFU session's, gone with that node.
        self.remote_sfu(index, false, None);
        self.relay_changed(now, index);
        if let Some(m) = self.members.get(&index) {
            let by = self.actor(index, m);
            self.submit(now, ClassEvent { by, act: Act::Arrive });
        }
    }

    /// A remote member was removed: its user and session are free.
    pub(super) fn forget_remote(&mut self, user: &str, session: u64) {
        if let Some(relay) = &mut self.relay {
            relay.numbers.remove(&(user.to_owned(), session));
        }
    }

    /// A member left (cluster mode): its number is remembered for a while, by its node's
    /// key and user, for classroom events about it still on their way (see
    /// [`Self::departed_number`]).
    pub(super) fn remember_departed(&mut self, now: Instant, key: Key, user: &str, number: u16) {
        let Some(relay) = &mut self.relay else { return };
        while relay.departed.len() >= DEPARTED_MAX
            || relay.departed.front().is_some_and(|d| now.saturating_duration_since(d.at) > DEPARTED_FOR)
        {
            relay.departed.pop_front();
        }
        relay.departed.push_back(Departed { key, user: user.to_owned(), number, at: now });
    }

    /// The number a member that left lately had here, named by its node's key and its user.
    pub(super) fn departed_number(&self, key: &Key, user: &str) -> Option<u16> {
        let relay = self.relay.as_ref()?;
        relay.departed.iter().rev().find(|d| d.key == *key && d.user == user).map(|d| d.number)
    }

    /// A local member changed (moved, came, changed presence): the other nodes hear of it in
    /// the next batch.
    pub(super) fn relay_changed(&mut self, now: Instant, index: u16) {
        if self.members.get(&index).is_none_or(Member::is_remote) {
            return;
        }
        let Some(relay) = &mut self.relay else { return };
        relay.changed.insert(index);
        self.relay_due(now);
    }

    /// A local member left: the other nodes hear of it in the next batch.
    pub(super) fn relay_left(&mut self, now: Instant, index: u16, code: ErrorCode) {
        let Some(relay) = &mut self.relay else { return };
        relay.changed.remove(&index);
        relay.left.push((index, code.to_u16()));
        self.relay_due(now);
    }

    /// The next batch a pace after the last one (now, if that was longer ago).
    fn relay_due(&mut self, now: Instant) {
        let pace = self.pace;
        let Some(relay) = &mut self.relay else { return };
        let due = relay.last.map(|t| t + pace).filter(|due| *due > now).unwrap_or(now);
        relay.next = Some(relay.next.map_or(due, |n| n.min(due)));
    }

    /// The batch: whole every presence refresh, else what changed; then the next refresh is
    /// due, while the room has local members.
    pub(super) fn send_relay(&mut self, now: Instant) {
        let refresh = self.config.presence_refresh;
        let Some(relay) = &mut self.relay else { return };
        relay.next = None;
        let full = relay.last_full.is_none_or(|t| now.duration_since(t) >= refresh);
        let changed = std::mem::take(&mut relay.changed);
        let left = std::mem::take(&mut relay.left);
        let local: Vec<Relayed> = self
            .members
            .iter()
            .filter(|(i, m)| !m.is_remote() && (full || changed.contains(i)))
            .map(|(i, m)| Relayed {
                index: *i,
                user: m.info.user.clone(),
                session: m.session,
                name: m.info.name.clone(),
                role: m.info.role,
                presence: m.presence.map(|p| (p.status, p.tool)),
                cursor: m.cursor.as_ref().filter(|_| m.is_linked()).map(|c| (c.seq, c.x, c.y)),
                in_sfu: m.in_sfu,
                feed: m.feed,
            })
            .collect();
        let has_local = self.members.values().any(|m| !m.is_remote());
        let Some(relay) = &mut self.relay else { return };
        if full || !local.is_empty() || !left.is_empty() {
            let batch = RelayBatch {
                origin: relay.origin.to_string(),
                node: relay.node.to_string(),
                full,
                members: local,
                left,
            };
            relay.last = Some(now);
            if full {
                relay.last_full = Some(now);
            }
            self.push(Output::Relay(batch));
        }
        let Some(relay) = &mut self.relay else { return };
        if has_local {
            let at = relay.last_full.map_or(now, |t| t + refresh);
            relay.next = Some(relay.next.map_or(at, |n| n.min(at)));
        } else {
            // Nobody here: the others stop hearing of this room and their last batch's
            // `left` emptied it there; a newcomer makes the next batch full again.
            relay.last_full = None;
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use easel_proto::Datagram;
    use easel_proto::datagram::{Cursor, Heartbeat};

    use easel_proto::Message;

    use super::super::Arrival;
    use super::super::doc::REMOTE_AUTHOR;
    use super::super::testing::{Sim, clustered};
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    pub(in super::super) fn zoe(cursor: Option<(u16, i32, i32)>) -> Relayed {
        Relayed {
            index: 7,
            user: "zoe".into(),
            session: 70,
            name: "Zoe".into(),
            role: Role::Student,
            presence: Some((Status::Active, Tool::Pen)),
            cursor,
            in_sfu: false,
            feed: None,
        }
    }

    pub(in super::super) fn from_b(full: bool, members: Vec<Relayed>, left: Vec<(u16, u16)>) -> RelayBatch {
        RelayBatch { origin: "b@1".into(), node: "b".into(), full, members, left }
    }

    /// A cluster room with ada joined and her first membership frames read.
    fn clustered_with_ada(t0: Instant) -> (Sim, u16) {
        let mut sim = clustered(t0);
        let ada = sim.join_with(t0, "ada", 1, None, 4096).participant;
        sim.advance(t0 + sim.room.config.tick);
        sim.membership(ada);
        (sim, ada)
    }

    /// Zoe, on node b, as a local member is told of her: her number here.
    fn zoe_here(sim: &mut Sim, local: u16) -> u16 {
        let joined = sim.membership(local);
        joined
            .iter()
            .find(|(what, i, _)| {
                *what == "joined" && sim.room.members.get(i).is_some_and(|m| m.info.user == "zoe")
            })
            .map(|(_, i, _)| *i)
            .expect("zoe is announced")
    }

    fn relayed(sim: &mut Sim) -> Vec<RelayBatch> {
        sim.drain();
        sim.take_other()
            .into_iter()
            .filter_map(|o| match o {
                Output::Relay(b) => Some(b),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_remote_member_is_in_the_roster_and_its_cursor_is_paced_to_local_members() {
        let t0 = Instant::now();
        let mut sim = clustered(t0);
        let tick = sim.room.config.tick;
        // A pace of a tick, as in a busy room.
        sim.room.config.min_pace = tick;
        let ada = sim.join_with(t0, "ada", 1, None, 4096).participant;
        sim.advance(t0 + tick);
        sim.datagrams(ada);
        sim.membership(ada);

        let t1 = t0 + Duration::from_secs(1);
        sim.room.handle_remote_presence(t1, from_b(true, vec![zoe(Some((1, 10, 20)))], vec![]));
        let z = zoe_here(&mut sim, ada);
        assert_ne!(z, 7, "a number of this node's, not the origin's (7 is free here too)");
        let m = &sim.room.members[&z];
        assert_eq!((m.info.name.as_str(), m.info.role), ("Zoe", Role::Student));
        assert!(!sim.linked(z), "a remote member has no link here");
        let got = sim.cursors(ada);
        assert!(got.iter().any(|c| c.participant == z && (c.x, c.y) == (10, 20)), "at once: {got:?}");

        // Moves within a pace of that batch reach ada once, a pace later, latest wins.
        sim.room.handle_remote_presence(t1 + MS, from_b(false, vec![zoe(Some((2, 11, 20)))], vec![]));
        sim.room.handle_remote_presence(t1 + 2 * MS, from_b(false, vec![zoe(Some((3, 12, 20)))], vec![]));
        assert_eq!(sim.cursors(ada), [], "not before the pace");
        sim.advance(t1 + tick);
        let got: Vec<(i32, u16)> =
            sim.cursors(ada).iter().filter(|c| c.participant == z).map(|c| (c.x, c.seq)).collect();
        assert_eq!(got, [(12, 3)], "one batch, the newest position");
        // A stale cursor (older seq) is not taken.
        sim.room.handle_remote_presence(t1 + tick, from_b(false, vec![zoe(Some((2, 99, 0)))], vec![]));
        assert_eq!(sim.room.members[&z].cursor.as_ref().map(|c| c.x), Some(12));
    }

    #[test]
    fn a_remote_update_names_its_author_as_this_room_numbers_it() {
        let t0 = Instant::now();
        let (mut sim, ada) = clustered_with_ada(t0);
        sim.room.handle_remote_presence(t0 + Duration::from_secs(1), from_b(true, vec![zoe(None)], vec![]));
        let z = zoe_here(&mut sim, ada);
        sim.messages(ada);
        let from = |sim: &mut Sim| {
            sim.drain();
            let m = sim.messages(ada);
            m.iter()
                .find_map(|m| match m {
                    Message::RemoteUpdate(u) => Some(u.from),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("the update is sent: {m:?}"))
        };
        let by = |index| Some((Arc::from("b@1"), index));
        sim.room.handle_remote(1, super::super::testing::edit("by zoe"), by(7)).expect("imported");
        assert_eq!(from(&mut sim), z, "zoe, as this room numbers her");
        sim.room.handle_remote(2, super::super::testing::edit("by someone"), by(8)).expect("imported");
        assert_eq!(from(&mut sim), REMOTE_AUTHOR, "not listed here");
        sim.room.handle_remote(3, super::super::testing::edit("unsaid"), None).expect("imported");
        assert_eq!(from(&mut sim), REMOTE_AUTHOR, "no author given");
    }

    #[test]
    fn the_mapping_is_stable_across_refreshes_and_a_leave_removes() {
        let t0 = Instant::now();
        let (mut sim, ada) = clustered_with_ada(t0);
        let t1 = t0 + Duration::from_secs(1);
        sim.room.handle_remote_presence(t1, from_b(true, vec![zoe(None)], vec![]));
        let z = zoe_here(&mut sim, ada);
        for secs in [2, 4, 6] {
            let at = t0 + Duration::from_secs(secs);
            sim.room.handle_remote_presence(at, from_b(true, vec![zoe(None)], vec![]));
            sim.advance(at + sim.room.config.tick);
        }
        assert_eq!(sim.membership(ada), [], "refreshes announce nobody again");
        assert_eq!(sim.room.len(), 2);
        assert!(sim.room.members.get(&z).is_some_and(|m| m.info.user == "zoe"), "same number");

        let at = t0 + Duration::from_secs(7);
        sim.room.handle_remote_presence(at, from_b(false, vec![], vec![(7, ErrorCode::Normal.to_u16())]));
        sim.advance(at + sim.room.config.tick);
        assert_eq!(sim.membership(ada), [("left", z, 0)]);
        assert_eq!(sim.room.len(), 1);
    }

    #[test]
    fn remote_members_expire_when_their_node_goes_quiet_or_is_counted_out() {
        let t0 = Instant::now();
        let (mut sim, ada) = clustered_with_ada(t0);
        let t1 = t0 + Duration::from_secs(1);
        sim.room.handle_remote_presence(t1, from_b(true, vec![zoe(None)], vec![]));
        let z = zoe_here(&mut sim, ada);
        // Ada stays alive; b falls silent.
        for secs in [3, 6, 9] {
            sim.room.handle_touch(t0 + Duration::from_secs(secs), ada);
        }
        sim.expire(t1 + Duration::from_millis(9_999));
        assert_eq!(sim.room.len(), 2, "inside the presence TTL");
        sim.expire(t1 + Duration::from_secs(10));
        assert_eq!(sim.room.len(), 1, "b's refreshes stopped for the TTL");
        assert_eq!(sim.membership(ada), [("left", z, ErrorCode::PresenceTimeout.to_u16())]);

        let at = t1 + Duration::from_secs(10);
        sim.room.handle_remote_presence(at, from_b(true, vec![zoe(None)], vec![]));
        sim.room.handle_node_left(at, "c");
        sim.drain();
        assert_eq!(sim.room.len(), 2, "another node's loss is not b's");
        sim.membership(ada);
        sim.room.handle_node_left(at, "b");
        sim.advance(at + sim.room.config.tick);
        assert_eq!(sim.room.len(), 2, "b counted out: zoe is away for the resume grace");
        let away: Vec<_> = sim.presence(ada).into_iter().filter(|p| p.participant != ada).collect();
        assert!(away.iter().all(|p| (p.status, p.tool) == (Status::Away, Tool::Hidden)), "{away:?}");
        assert!(!away.is_empty());
        sim.room.handle_touch(at + Duration::from_secs(29), ada);
        sim.expire(at + Duration::from_secs(29));
        assert_eq!(sim.room.len(), 2, "inside the grace");
        sim.room.handle_touch(at + Duration::from_secs(30), ada);
        sim.expire(at + Duration::from_secs(30));
        assert_eq!(sim.room.len(), 1, "gone once the grace passes without her");
        let gone: Vec<_> = sim.membership(ada).into_iter().filter(|m| m.0 == "left").collect();
        assert_eq!(gone, [("left", gone[0].1, ErrorCode::PresenceTimeout.to_u16())]);
    }

    fn from_c(members: Vec<Relayed>) -> RelayBatch {
        RelayBatch { origin: "c@5".into(), node: "c".into(), full: true, members, left: vec![] }
    }

    #[test]
    fn a_member_whose_node_died_keeps_its_number_when_another_node_relays_it() {
        let t0 = Instant::now();
        let (mut sim, ada) = clustered_with_ada(t0);
        let t1 = t0 + Duration::from_secs(1);
        sim.room.handle_remote_presence(t1, from_b(true, vec![zoe(Some((5, 1, 2)))], vec![]));
        let z = zoe_here(&mut sim, ada);
        sim.room.handle_node_left(t1 + MS, "b");
        sim.advance(t1 + MS + sim.room.config.tick);
        sim.presence(ada);

        // She resumed on c, which numbers her 2 and counts her cursor afresh.
        let t1 = t0 + Duration::from_secs(2);
        let moved = Relayed { index: 2, ..zoe(Some((1, 30, 40))) };
        sim.room.handle_remote_presence(t1, from_c(vec![moved]));
        sim.advance(t1 + sim.room.config.tick);
        assert_eq!(sim.membership(ada), [], "no leave, no join: the same member");
        assert_eq!(sim.room.len(), 2);
        let datagrams = sim.datagrams(ada);
        let back: Vec<_> = datagrams
            .iter()
            .filter_map(|d| match d {
                Datagram::PresenceBatch(b) => Some(b.entries.clone()),
                _ => None,
            })
            .flatten()
            .filter(|p| p.participant == z)
            .collect();
        assert_eq!(
            back.iter().map(|p| (p.status, p.tool)).collect::<Vec<_>>(),
            [(Status::Active, Tool::Pen)]
        );
        let cursor = datagrams.iter().any(|d| {
            matches!(d, Datagram::CursorBatch(b) if b.cursors.iter().any(|c| c.participant == z && (c.x, c.y) == (30, 40)))
        });
        assert!(cursor, "her pointer shows again: {datagrams:?}");
        // Past the grace she stays: c speaks for her now; and b's numbers are not hers.
        sim.room.handle_remote_presence(
            t0 + Duration::from_secs(31),
            from_c(vec![Relayed { index: 2, ..zoe(None) }]),
        );
        sim.room.handle_touch(t0 + Duration::from_secs(31), ada);
        sim.expire(t0 + Duration::from_secs(31));
        assert_eq!(sim.room.len(), 2);
        sim.room.handle_remote_presence(t1, from_b(false, vec![], vec![(7, 0)]));
        assert_eq!(sim.room.len(), 2, "a leave of b's number 7 is not hers any more");
    }

    #[test]
    fn a_remote_member_resuming_here_is_reattached_under_its_number() {
        let t0 = Instant::now();
        let (mut sim, ada) = clustered_with_ada(t0);
        let session = sim.arrival("zoe", 0, None).session;
        let zoe_b = Relayed { session, ..zoe(None) };
        sim.room
            .handle_remote_presence(t0 + Duration::from_secs(1), from_b(true, vec![zoe_b.clone()], vec![]));
        let z = zoe_here(&mut sim, ada);
        relayed(&mut sim);

        // Her node died; her resume token held her room (under b's number, meaningless here).
        let t1 = t0 + Duration::from_secs(2);
        let joined = sim.join_with(t1, "zoe", 9, Some(7), 4096);
        assert!(joined.resumed, "resumed, not joined anew");
        assert_eq!(joined.participant, z, "the number she had here");
        assert!(sim.linked(z), "this node's member now");
        sim.advance(t1 + sim.room.config.tick);
        assert_eq!(sim.membership(ada), [], "others see no leave and no join");
        let out = relayed(&mut sim);
        assert!(
            out.iter()
                .any(|b| b.members.iter().any(|m| m.user == "zoe" && m.session == session && m.index == z)),
            "{out:?}"
        );
        // Her old node's stale batch does not add her twice.
        sim.room.handle_remote_presence(t1, from_b(true, vec![zoe_b], vec![]));
        assert_eq!(sim.room.len(), 2);
        // Another session of hers, holding her number, is not her.
        let other = Arrival { session: session + 1, ..sim.arrival("zoe", 3, Some(z)) };
        let other = sim.answer_of(t1, other, 4096);
        assert!(!other.resumed && other.participant != z);
    }

    #[test]
    fn a_member_lost_here_that_resumed_on_another_node_becomes_that_nodes_under_its_number() {
        let t0 = Instant::now();
        let mut sim = clustered(t0);
        let ada = sim.join_with(t0, "ada", 1, None, 4096).participant;
        let z = sim.join_with(t0, "zoe", 2, None, 4096).participant;
        sim.advance(t0 + sim.room.config.tick);
        sim.membership(ada);
        relayed(&mut sim);
        let t1 = t0 + Duration::from_secs(1);
        let session = sim.arrival("zoe", 0, None).session;
        let on_b = || from_b(true, vec![Relayed { session, ..zoe(None) }], vec![]);

        // Still connected here, she is this node's: a batch naming her changes nothing.
        sim.room.handle_remote_presence(t1, on_b());
        assert!(sim.linked(z));
        assert_eq!(sim.room.len(), 2, "not twice");

        // Her connection here is lost and she resumed on b.
        sim.room.handle_detach(t1, z, 2);
        sim.room.handle_remote_presence(t1, on_b());
        assert!(sim.room.members[&z].is_remote(), "b's member now, under her number");
        sim.advance(t1 + sim.room.config.tick);
        assert_eq!(sim.membership(ada), [], "no join, no leave");
        assert_eq!(sim.room.len(), 2);

        // Past her grace here she is still in the room: b speaks for her.
        let t2 = t1 + sim.room.config.resume_grace + Duration::from_secs(1);
        sim.room.handle_remote_presence(t2, on_b());
        sim.room.handle_touch(t2, ada);
        sim.expire(t2);
        assert!(sim.room.members.get(&z).is_some_and(|m| m.is_remote() && m.info.user == "zoe"));
        let out = relayed(&mut sim);
        assert!(
            out.iter().all(|b| b.members.iter().all(|m| m.user != "zoe")),
            "no longer this node's: {out:?}"
        );
        sim.room.handle_remote_presence(t2, from_b(false, vec![], vec![(7, 0)]));
        sim.advance(t2 + sim.room.config.tick);
        assert_eq!(sim.membership(ada), [("left", z, 0)], "she leaves when b says so");
    }

    #[test]
    fn this_nodes_own_batch_is_ignored() {
        let t0 = Instant::now();
        let mut sim = clustered(t0);
        sim.join_with(t0, "ada", 1, None, 4096);
        sim.drain();
        let own = RelayBatch {
            origin: "a@1".into(),
            node: "a".into(),
            full: true,
            members: vec![zoe(None)],
            left: vec![],
        };
        sim.room.handle_remote_presence(t0, own);
        sim.drain();
        assert_eq!(sim.room.len(), 1, "zoe of its own batch is not added");
    }

    #[test]
    fn local_changes_go_out_once_a_pace_and_whole_every_refresh() {
        let t0 = Instant::now();
        let mut sim = clustered(t0);
        let ada = sim.join_with(t0, "ada", 1, None, 4096).participant;
        sim.advance(t0 + MS);
        let first = relayed(&mut sim);
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(first[0].full && first[0].members.iter().any(|m| m.user == "ada"));
        let t1 = t0 + Duration::from_millis(100);
        sim.room.handle_cursor(t1, ada, &Cursor { slot: 0, seq: 1, x: 5, y: 6 });
        sim.room.handle_cursor(t1, ada, &Cursor { slot: 0, seq: 2, x: 7, y: 6 });
        let beat = Heartbeat { slot: 0, seq: 1, status: Status::Active, tool: Tool::Pen };
        sim.room.handle_heartbeat(t1, ada, &beat);
        sim.advance(t1 + sim.room.config.tick);
        let batches = relayed(&mut sim);
        assert_eq!(batches.len(), 1, "one message for the lot: {batches:?}");
        assert!(!batches[0].full);
        assert_eq!(batches[0].members.len(), 1);
        assert_eq!(batches[0].members[0].cursor, Some((2, 7, 6)));
        assert_eq!(batches[0].members[0].presence, Some((Status::Active, Tool::Pen)));
        // Nothing changed: nothing until the refresh, which is whole.
        sim.advance(t1 + Duration::from_secs(1));
        assert_eq!(relayed(&mut sim), []);
        sim.advance(t0 + Duration::from_secs(2) + MS);
        let refresh = relayed(&mut sim);
        assert!(refresh.len() == 1 && refresh[0].full, "{refresh:?}");
        sim.room.handle_leave(t0 + Duration::from_secs(3), ada, 1, ErrorCode::Normal);
        sim.advance(t0 + Duration::from_secs(3) + MS);
        let last = relayed(&mut sim);
        assert_eq!(last.last().map(|b| b.left.clone()), Some(vec![(ada, 0)]), "{last:?}");
    }

    #[test]
    fn a_node_new_to_the_room_is_sent_the_whole_roster_at_the_next_pace() {
        let t0 = Instant::now();
        let mut sim = clustered(t0);
        sim.join_with(t0, "ada", 1, None, 4096);
        sim.advance(t0 + MS);
        assert!(relayed(&mut sim).iter().any(|b| b.full), "the first batch is whole");
        // Long before the refresh, node b loads the room: its first batch comes.
        let t1 = t0 + Duration::from_millis(500);
        sim.room.handle_remote_presence(t1, from_b(true, vec![zoe(None)], vec![]));
        sim.advance(t1 + sim.room.config.tick);
        let answer = relayed(&mut sim);
        assert!(
            answer.len() == 1 && answer[0].full && answer[0].members.iter().any(|m| m.user == "ada"),
            "ada's node tells b its whole roster now: {answer:?}"
        );
        // b is known now: its next batches change nothing here.
        let t2 = t1 + Duration::from_millis(200);
        sim.room.handle_remote_presence(t2, from_b(false, vec![zoe(Some((1, 2, 3)))], vec![]));
        sim.advance(t2 + sim.room.config.tick);
        assert!(relayed(&mut sim).iter().all(|b| !b.full));
    }
}
