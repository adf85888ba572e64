//! The classroom as events. Every classroom act that changes state is one [`ClassEvent`],
//! applied by one entry, [`Room::handle_class_event`]: at once on one node alone, and in
//! cluster mode by every node holding the room (the acting one included) as it comes back
//! from the room log, in stream order and at the stream's time, so every replica decides
//! the same. What a node decides alone before an act is published stays in `classroom`:
//! rates, roles, and which member a participant number names. Events name members by their
//! node's origin and number ([`Key`]) and by user id, never by this node's numbers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use easel_proto::message::{
    HandQueue, Kind, ModAction, Moderated, ParticipantUpdated, PollAnswered, Role, clip_reason,
};
use easel_proto::{ErrorCode, Message};

use super::doc::REMOTE_AUTHOR;
use super::members::{Member, Reach};
use super::{HOUSEKEEPING, Output, Room};
use crate::class::{Deliver, Outcome, Who};
use crate::sfu::SfuOp;

/// How long a removal holds when the removing node does not know the removed member's token
/// expiry (the member is on another node): a class day.
pub(super) const REMOVAL_UNKNOWN_EXPIRY: Duration = Duration::from_secs(24 * 60 * 60);

/// A member as the node it is connected to names it: that node's origin (`id@start_ms`, or
/// empty on one node alone) and number there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The node (and its start) the member is connected to.
    pub origin: Arc<str>,
    /// Its participant number there.
    pub index: u16,
}

impl Key {
    /// The membership this key names, as attendance counts it: `<origin>/<number>`.
    pub fn membership(&self) -> String {
        format!("{}/{}", self.origin, self.index)
    }
}

/// Who acted: a member, or the room itself (a poll's deadline), named by its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The acting member as its node names it.
    pub key: Key,
    /// Token subject (empty for the room's own events).
    pub user: String,
    /// The installation it acted from (resends of the same act share it).
    pub client: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
}

/// One classroom act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassEvent {
    /// Who did it.
    pub by: Actor,
    /// What.
    pub act: Act,
}

/// What a [`ClassEvent`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Act {
    /// A member's request as its client sent it: `ChatSend` (admitted by its node's rate),
    /// `ChatDelete`, `PollStart`, `PollAnswer`, `PollClose` or `HandRaise`.
    Request(Message),
    /// A hand lowered (its owner's own, or a teacher's doing).
    HandLower {
        /// Whose.
        whose: Key,
    },
    /// A teacher's moderation of a member.
    Moderate {
        /// The member.
        target: Key,
        /// Its user: the flags follow the user.
        user: String,
        /// What.
        action: ModAction,
        /// Why, for people.
        reason: String,
        /// A removal holds until then, Unix ms.
        until_ms: u64,
        /// The target as the teacher's node numbers it (the reference of a refusal).
        asked: u16,
    },
    /// A poll's timer ran out (proposed by whichever node's timer fired first).
    PollDeadline {
        /// The poll.
        poll_id: u64,
    },
    /// A teacher's `SetCursorCap` (SPEC §8.5): every replica's cap, so each node's members
    /// see the same cap in force.
    CursorCap {
        /// The cap asked for: `None` is the server's default, `Some(0)` none.
        cap: Option<u16>,
    },
    /// A membership began (attendance).
    Arrive,
    /// A membership ended at `at_ms` (attendance).
    Depart {
        /// When, Unix ms (a lost connection's member left when it was lost).
        at_ms: u64,
    },
}

impl ClassEvent {
    /// The request a refusal of this event answers: its kind and reference (`None`: no
    /// member asked for it).
    pub fn asked(&self) -> Option<(Kind, u64)> {
        match &self.act {
            Act::Request(m) => Some((m.kind(), reference(m))),
            Act::HandLower { .. } => Some((Kind::HandLower, 0)),
            Act::Moderate { asked, .. } => Some((Kind::Moderate, u64::from(*asked))),
            Act::CursorCap { .. } => Some((Kind::SetCursorCap, 0)),
            Act::PollDeadline { .. } | Act::Arrive | Act::Depart { .. } => None,
        }
    }
}

/// The reference a `Fault` about a classroom request carries (SPEC §9–12).
fn reference(m: &Message) -> u64 {
    match m {
        Message::ChatSend(c) => c.client_msg_id,
        Message::ChatDelete(d) => d.id,
        Message::PollStart(p) => p.request,
        Message::PollAnswer(a) => a.attempt_id,
        Message::PollClose(c) => c.poll_id,
        _ => 0,
    }
}

impl Room {
    /// Cluster mode: a classroom event from the room log, stored at `at_ms` (the stream's
    /// time). Applied the same at every node; its replies reach the acting member only at
    /// its own node.
    pub fn handle_class_event(&mut self, now: Instant, at_ms: u64, event: ClassEvent) {
        let at = self.instant_of(at_ms);
        self.apply(now, at, at_ms, event);
    }

    /// Cluster mode: an event that did not reach the room log (NATS away, no ack in time).
    /// Nothing of it was applied; the member that asked is told nothing was stored, and a
    /// poll's deadline is proposed again at the next housekeeping.
    pub fn handle_class_unpublished(&mut self, now: Instant, event: ClassEvent) {
        match (&event.act, event.asked()) {
            (Act::PollDeadline { poll_id }, _) => self.class.rearm(*poll_id, now + HOUSEKEEPING),
            (_, Some((kind, reference))) if *event.by.key.origin == *self.origin() => {
                let why = "durable storage is unavailable; nothing was acked";
                self.refuse(event.by.key.index, kind, reference, ErrorCode::StorageUnavailable, why);
            }
            _ => {
                tracing::warn!(room = %self.id, user = event.by.user, "cluster: attendance not recorded: the room log is unreachable")
            }
        }
    }

    /// Cluster mode: a resend the room log already had, so it does not come back. What its
    /// first send earned the member is given again: a poll answer's ack, or the chat
    /// message's echo once applied here (a resend after a lost echo is not posted twice).
    pub fn handle_class_resent(&mut self, event: ClassEvent) {
        if *event.by.key.origin != *self.origin() {
            return;
        }
        let to = event.by.key.index;
        match event.act {
            Act::Request(Message::PollAnswer(a)) => {
                let answered = PollAnswered { poll_id: a.poll_id, attempt_id: a.attempt_id };
                self.send(to, Message::from(answered));
            }
            Act::Request(Message::ChatSend(c)) => {
                if let Some(echo) = self.class.chat_of(&event.by.user, c.client_msg_id) {
                    self.send(to, Message::from(echo));
                }
            }
            _ => {}
        }
    }

    /// Cluster mode: what became of one message of this node's events on the room log (a
    /// batch, [`crate::cluster::batch`]): every event of it shares the outcome.
    pub(super) fn handle_class_published(
        &mut self,
        now: Instant,
        events: Vec<ClassEvent>,
        outcome: Published,
    ) {
        for event in events {
            match outcome {
                Published::Stored => {}
                Published::Resent => self.handle_class_resent(event),
                Published::Refused => self.handle_class_unpublished(now, event),
            }
        }
    }

    /// This node's origin in events (empty on one node alone).
    pub(super) fn origin(&self) -> Arc<str> {
        self.config.relay.clone().unwrap_or_else(|| Arc::from(""))
    }

    /// Whether classroom events go through the cluster's room log.
    pub(super) fn clustered(&self) -> bool {
        self.config.relay.is_some()
    }

    /// An act of this node's: published to the room log (cluster mode) or applied at once.
    pub(super) fn submit(&mut self, now: Instant, event: ClassEvent) {
        if self.clustered() {
            self.push(Output::ClassLog(event));
        } else {
            let now_ms = self.wall_ms(now);
            self.apply(now, now, now_ms, event);
        }
    }

    /// The actor a member acts as.
    pub(super) fn actor(&self, index: u16, m: &Member) -> Actor {
        let key = match &m.reach {
            Reach::Remote { origin, index, .. } => Key { origin: origin.clone(), index: *index },
            _ => Key { origin: self.origin(), index },
        };
        let info = &m.info;
        Actor {
            key,
            user: info.user.clone(),
            client: m.client_id.clone(),
            name: info.name.clone(),
            role: info.role,
        }
    }

    /// The room's own actor (a poll's deadline).
    fn room_actor(&self) -> Actor {
        let key = Key { origin: self.origin(), index: REMOTE_AUTHOR };
        Actor { key, user: String::new(), client: String::new(), name: String::new(), role: Role::Teacher }
    }

    /// This room's number for a member named by its node, if it is here.
    pub(super) fn number_of(&self, key: &Key) -> Option<u16> {
        if *key.origin == *self.origin() {
            return self.members.contains_key(&key.index).then_some(key.index);
        }
        self.remote_number(&key.origin, key.index)
    }

    /// The hand queue in this room's numbers (hands of members not listed here yet are
    /// kept in their place and shown once they are).
    pub(super) fn hand_queue(&self) -> Vec<u16> {
        self.hands.iter().filter_map(|k| self.number_of(k)).collect()
    }

    /// The single entry both modes share: applies one event at `at` (`at_ms` on the wall).
    fn apply(&mut self, now: Instant, at: Instant, at_ms: u64, event: ClassEvent) {
        let ClassEvent { by, act } = event;
        let index = self.number_of(&by.key).unwrap_or(REMOTE_AUTHOR);
        let chat_muted = self.class.flags(&by.user).chat_muted;
        let (user, client, name) = (&by.user, &by.client, &by.name);
        let who = Who { index, user, client, name, role: by.role, chat_muted };
        // A resend the log holds twice (another batch than the first) is applied once; the
        // member gets what its first send earned. Every replica decides the same.
        if self.clustered()
            && let Act::Request(request) = &act
            && let Some(again) = self.class.resent(who, request)
        {
            return self.settle(again);
        }
        let answered = matches!(act, Act::Request(Message::PollAnswer(_)));
        let outcome = match act {
            Act::Request(Message::ChatSend(c)) => self.class.chat_post(who, c.client_msg_id, c.text, at_ms),
            Act::Request(Message::ChatDelete(d)) => self.class.chat_delete(who, d.id),
            Act::Request(Message::PollStart(p)) => self.class.poll_start(who, p, at, at_ms),
            Act::Request(Message::PollAnswer(a)) => {
                self.class.poll_answer(who, a.poll_id, a.attempt_id, a.choices)
            }
            Act::Request(Message::PollClose(c)) => self.class.poll_close(who, c.poll_id),
            Act::Request(Message::HandRaise(_)) => return self.hand(by.key, true),
            Act::Request(other) => {
                tracing::warn!(room = %self.id, kind = other.kind().name(), "not a classroom event: ignored");
                return;
            }
            Act::HandLower { whose } => return self.hand(whose, false),
            Act::Moderate { target, user, action, reason, until_ms, .. } => {
                let moderation = Moderation { target, user, action, reason, until_ms };
                return self.moderated(now, who.index, moderation);
            }
            Act::PollDeadline { poll_id } => self.class.poll_deadline(poll_id),
            // Its node checked the role; a node of another mind is not followed.
            Act::CursorCap { cap } if by.role == Role::Teacher => {
                return self.set_cursor_cap(now, index, cap);
            }
            Act::CursorCap { .. } => {
                return tracing::warn!(room = %self.id, user = by.user, "a cursor cap not set by a teacher: ignored");
            }
            Act::Arrive => Outcome {
                writes: self
                    .class
                    .arrive(&by.key.membership(), &by.user, &by.name, at_ms)
                    .into_iter()
                    .collect(),
                ..Outcome::default()
            },
            Act::Depart { at_ms } => Outcome {
                writes: self.class.depart(&by.key.membership(), at_ms).into_iter().collect(),
                ..Outcome::default()
            },
        };
        self.settle(outcome);
        if answered {
            // Live counts go out now if the last broadcast is old enough, else at its timer.
            self.class_tick(now);
        }
    }

    /// What an applied event produced: stored first, then delivered (one node alone); in
    /// cluster mode it came from the room log, so it is durable already and goes out now.
    pub(super) fn settle(&mut self, outcome: Outcome) {
        let Outcome { reply, writes, then } = outcome;
        self.deliver(reply);
        if self.clustered() {
            self.deliver(then);
        } else {
            self.store_side(writes, then);
        }
    }

    pub(super) fn deliver(&mut self, messages: Vec<Deliver>) {
        for d in messages {
            match d {
                Deliver::To(to, message) => self.send(to, message),
                Deliver::All(message) => self.broadcast(None, &message),
            }
        }
    }

    /// Poll timers (closed here, or proposed to the room log) and live poll counts.
    pub(super) fn class_tick(&mut self, now: Instant) {
        for poll_id in self.class.due(now) {
            let event = ClassEvent { by: self.room_actor(), act: Act::PollDeadline { poll_id } };
            self.submit(now, event);
        }
        if let Some(outcome) = self.class.tick(now) {
            self.settle(outcome);
        }
    }

    /// Raises or lowers a hand; everyone sees the new queue and the flag change.
    fn hand(&mut self, whose: Key, raise: bool) {
        let queued = self.hands.contains(&whose);
        if raise == queued {
            return;
        }
        let number = self.number_of(&whose);
        if raise {
            self.hands.push(whose);
        } else {
            self.hands.retain(|h| *h != whose);
        }
        let queue = self.hand_queue();
        self.broadcast(None, &Message::from(HandQueue { queue }));
        if let Some(member) = number.and_then(|n| self.members.get_mut(&n)) {
            member.info.hand_raised = raise;
            let updated = Message::from(ParticipantUpdated { participant: member.info.clone() });
            self.broadcast(None, &updated);
        }
    }

    /// A member left: its hand leaves the queue (every node sees the leave, by presence).
    pub(super) fn drop_hand(&mut self, whose: &Key) {
        if let Some(at) = self.hands.iter().position(|h| h == whose) {
            self.hands.remove(at);
            let queue = self.hand_queue();
            self.broadcast(None, &Message::from(HandQueue { queue }));
        }
    }

    /// A teacher's moderation (SPEC §12), applied: the flags follow the user everywhere; the
    /// target's own node (and only it) removes it or stops its media, and the others hear of
    /// a removal from its leave.
    fn moderated(&mut self, now: Instant, by: u16, m: Moderation) {
        let Moderation { target, user, action, reason, until_ms } = m;
        let write = self.class.set_flags(&user, |f| match action {
            ModAction::MuteChat | ModAction::UnmuteChat => f.chat_muted = action == ModAction::MuteChat,
            ModAction::ReadOnly | ModAction::ReadWrite => f.read_only = action == ModAction::ReadOnly,
            ModAction::Remove => f.removed_until_ms = Some(until_ms),
            ModAction::StopMedia => {}
        });
        let number =
            self.number_of(&target).filter(|n| self.members.get(n).is_some_and(|m| m.info.user == user));
        let mut info = None;
        let mut remove = false;
        if let Some(n) = number
            && let Some(member) = self.members.get_mut(&n)
        {
            match action {
                ModAction::MuteChat | ModAction::UnmuteChat => {
                    member.info.chat_muted = action == ModAction::MuteChat
                }
                ModAction::ReadOnly | ModAction::ReadWrite => {
                    member.info.read_only = action == ModAction::ReadOnly
                }
                // Removal takes it out of the SFU room with the room (see `remove`); the
                // camera flag follows the SFU's word that the publisher is gone.
                ModAction::Remove | ModAction::StopMedia => {}
            }
            info = Some(member.info.clone());
            remove = action == ModAction::Remove && !member.is_remote();
            // Another node's member's publisher is its node's SFU session's to tear down.
            if action == ModAction::StopMedia && member.in_sfu && !member.is_remote() {
                self.push(Output::Sfu(SfuOp::Unpublish { participant: n }));
            }
        }
        if let (true, Some(n)) = (remove, number) {
            // The target hears why on its own stream; it is gone before the broadcast.
            self.remove(now, n, ErrorCode::Removed, Some(clip_reason(reason.clone())));
        }
        // A target that left by presence before this event came is named by the number it
        // had here.
        let target = number.or_else(|| self.departed_number(&target, &user)).unwrap_or(REMOTE_AUTHOR);
        let mut then = vec![Deliver::All(Message::from(Moderated { target, action, by, reason }))];
        if let (false, Some(info)) = (action == ModAction::Remove, info) {
            then.push(Deliver::All(Message::from(ParticipantUpdated { participant: info })));
        }
        self.settle(Outcome { writes: write.into_iter().collect(), then, ..Outcome::default() });
    }

    /// The room's clock at a wall time (the room log's timestamps).
    fn instant_of(&self, at_ms: u64) -> Instant {
        let (at, ms) = self.wall;
        if at_ms >= ms {
            at + Duration::from_millis(at_ms - ms)
        } else {
            at.checked_sub(Duration::from_millis(ms - at_ms)).unwrap_or(at)
        }
    }
}

/// What the room log did with a message of this node's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Published {
    /// Stored: the events come back from the log and are applied then.
    Stored,
    /// A resend the log already had: it does not come back.
    Resent,
    /// Not stored (NATS away, no ack in time).
    Refused,
}

/// An applied moderation.
struct Moderation {
    target: Key,
    user: String,
    action: ModAction,
    reason: String,
    until_ms: u64,
}

#[cfg(test)]
mod tests {
    use easel_proto::message::{CursorCap, Moderate, Moderated, SetCursorCap};

    use super::super::relay::tests::{from_b, zoe};
    use super::super::testing::{Sim, clustered};
    use super::*;
    use crate::room::Relayed;

    /// The classroom events the room asked to publish.
    fn published(sim: &mut Sim) -> Vec<ClassEvent> {
        sim.take_other()
            .into_iter()
            .filter_map(|o| match o {
                Output::ClassLog(event) => Some(event),
                _ => None,
            })
            .collect()
    }

    fn zoe_number(sim: &Sim) -> u16 {
        sim.room.members.iter().find(|(_, m)| m.info.user == "zoe").map(|(i, _)| *i).expect("zoe is here")
    }

    #[test]
    fn a_counted_out_nodes_member_that_comes_back_nowhere_is_departed_at_its_loss() {
        let t0 = Instant::now();
        let mut sim = clustered(t0);
        sim.room.config.resume_grace = Duration::from_secs(30);
        sim.join(t0, "ada");
        sim.room.handle_remote_presence(t0, from_b(true, vec![zoe(None)], vec![]));
        let t1 = t0 + Duration::from_secs(1);
        sim.room.handle_node_left(t1, "b");
        let zoes = |sim: &mut Sim| -> Vec<ClassEvent> {
            sim.drain();
            published(sim).into_iter().filter(|e| e.by.user == "zoe").collect()
        };
        sim.advance(t1 + Duration::from_secs(29));
        assert_eq!(zoes(&mut sim), [], "within the grace she may come back elsewhere");
        sim.advance(t1 + Duration::from_secs(31));
        let departed = zoes(&mut sim);
        assert_eq!(departed.len(), 1, "{departed:?}");
        assert_eq!(departed[0].by.key, Key { origin: "b@1".into(), index: 7 }, "her membership at b");
        assert_eq!(departed[0].act, Act::Depart { at_ms: 1_000 }, "when b was counted out");
    }

    #[test]
    fn a_removal_whose_target_left_by_presence_first_names_the_number_it_had() {
        let t0 = Instant::now();
        let mut sim = clustered(t0);
        let tess = sim.join_as(t0, "tess", Role::Teacher);
        sim.room.handle_remote_presence(t0, from_b(true, vec![zoe(None)], vec![]));
        let z = zoe_number(&sim);
        published(&mut sim);
        let remove = Moderate { target: z, action: ModAction::Remove, reason: "spam".into() };
        sim.room.handle_class(t0, tess, Message::from(remove));
        let [event] = <[ClassEvent; 1]>::try_from(published(&mut sim)).expect("one event");

        // Her node carried the removal out, and its leave came by presence before the log's
        // event came back here.
        let removed = ErrorCode::Removed.to_u16();
        sim.room.handle_remote_presence(t0, from_b(false, vec![], vec![(7, removed)]));
        assert!(!sim.room.members.contains_key(&z));
        sim.drain();
        sim.messages(tess);
        sim.room.handle_class_event(t0, 1_000, event);
        sim.drain();
        let echoed: Vec<u16> = sim
            .messages(tess)
            .into_iter()
            .filter_map(|m| match m {
                Message::Moderated(Moderated { target, .. }) => Some(target),
                _ => None,
            })
            .collect();
        assert_eq!(echoed, [z], "named by the number she had here, not {REMOTE_AUTHOR}");
    }

    #[test]
    fn the_default_cap_holds_where_the_only_teacher_is_another_nodes() {
        let t0 = Instant::now();
        let mut sim = clustered(t0);
        let ada = sim.join(t0, "ada");
        let zoe_teacher = Relayed { role: Role::Teacher, ..zoe(None) };
        sim.room.handle_remote_presence(t0, from_b(true, vec![zoe_teacher], vec![]));
        let z = zoe_number(&sim);
        assert_eq!(sim.room.spotlight.cap(), Some(32), "a lecture: the default cap");
        let by = Actor {
            key: Key { origin: "b@1".into(), index: 7 },
            user: "zoe".into(),
            client: "zoe-device".into(),
            name: "Zoe".into(),
            role: Role::Teacher,
        };
        sim.messages(ada);
        for (cap, shown) in [(Some(0), 0), (None, 32)] {
            let event = ClassEvent { by: by.clone(), act: Act::CursorCap { cap } };
            sim.room.handle_class_event(t0, 1_000, event);
            sim.drain();
            let heard: Vec<(u16, u16)> = sim
                .messages(ada)
                .into_iter()
                .filter_map(|m| match m {
                    Message::CursorCap(c) => Some((c.cap, c.by)),
                    _ => None,
                })
                .collect();
            assert_eq!(heard, [(shown, z)], "{cap:?}");
        }
    }

    #[test]
    fn a_teachers_cursor_cap_goes_through_the_log_and_applies_at_every_node() {
        let t0 = Instant::now();
        let mut sim = clustered(t0);
        let tess = sim.join_as(t0, "tess", Role::Teacher);
        let ada = sim.join(t0, "ada");
        let zoe_teacher = Relayed { role: Role::Teacher, ..zoe(None) };
        sim.room.handle_remote_presence(t0, from_b(true, vec![zoe_teacher], vec![]));
        let z = zoe_number(&sim);
        published(&mut sim);
        sim.messages(ada);
        let caps = |sim: &mut Sim, member: u16| -> Vec<(u16, u16)> {
            sim.drain();
            sim.messages(member)
                .into_iter()
                .filter_map(|m| match m {
                    Message::CursorCap(CursorCap { cap, by }) => Some((cap, by)),
                    _ => None,
                })
                .collect()
        };

        // This node's teacher: published, applied only when it comes back from the log.
        sim.room.handle_class(t0, tess, Message::from(SetCursorCap { cap: Some(2) }));
        let [event] = <[ClassEvent; 1]>::try_from(published(&mut sim)).expect("one event");
        assert_eq!(event.act, Act::CursorCap { cap: Some(2) });
        assert_eq!(caps(&mut sim, ada), [], "not before the log has it");
        sim.room.handle_class_event(t0, 1_000, event);
        assert_eq!(caps(&mut sim, ada), [(2, tess)]);
        assert_eq!(sim.room.spotlight.cap(), Some(2));

        // Another node's teacher: named by this node's number for her.
        let by = |role| Actor {
            key: Key { origin: "b@1".into(), index: 7 },
            user: "zoe".into(),
            client: "zoe-device".into(),
            name: "Zoe".into(),
            role,
        };
        let cap = |cap| Act::CursorCap { cap };
        sim.room.handle_class_event(t0, 2_000, ClassEvent { by: by(Role::Teacher), act: cap(Some(1)) });
        assert_eq!(caps(&mut sim, ada), [(1, z)]);
        assert_eq!(sim.room.spotlight.cap(), Some(1));
        // A student's, which no node should have published, is not followed.
        sim.room.handle_class_event(t0, 3_000, ClassEvent { by: by(Role::Student), act: cap(Some(0)) });
        assert_eq!(caps(&mut sim, ada), []);
        assert_eq!(sim.room.spotlight.cap(), Some(1));
    }
}
