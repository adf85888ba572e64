//! The classroom on a member's room stream: chat and polls (decided by [`crate::class`]),
//! raised hands, moderation and the lecture's cursor cap. What must be durable first leaves as
//! [`Output::Side`] and is echoed only when the driver reports it stored
//! ([`Room::handle_side_committed`]).

use std::time::Instant;

use easel_proto::message::{HandQueue, Kind, ModAction, Moderate, Moderated, ParticipantUpdated, Role};
use easel_proto::{ErrorCode, Message};

use super::{Output, Room};
use crate::class::{self, Deliver, Outcome, Who};
use crate::sfu::SfuOp;
use easel_proto::message::clip_reason;

impl Room {
    /// A classroom request on a member's room stream: chat, polls, hands, moderation.
    pub fn handle_class(&mut self, now: Instant, member: u16, message: Message) {
        self.handle_touch(now, member);
        let now_ms = self.wall_ms(now);
        let Some(m) = self.members.get(&member) else { return };
        let info = m.info.clone();
        let who = Who {
            index: member,
            user: &info.user,
            name: &info.name,
            role: info.role,
            chat_muted: info.chat_muted,
        };
        let answered = matches!(message, Message::PollAnswer(_));
        let outcome = match message {
            Message::ChatSend(c) => self.class.chat_send(who, c.client_msg_id, c.text, now, now_ms),
            Message::ChatDelete(d) => self.class.chat_delete(who, d.id),
            Message::ChatHistory(h) => self.class.chat_history(who, h.before, h.limit),
            Message::PollStart(p) => self.class.poll_start(who, p, now, now_ms),
            Message::PollAnswer(a) => self.class.poll_answer(who, a.poll_id, a.attempt_id, a.choices),
            Message::PollClose(c) => self.class.poll_close(who, c.poll_id),
            Message::HandRaise(_) => return self.hand(member, member, true),
            Message::HandLower(l) => {
                if l.participant != member && info.role != Role::Teacher {
                    let why = "only a teacher lowers others' hands";
                    return self.refuse(member, Kind::HandLower, 0, ErrorCode::Forbidden, why);
                }
                return self.hand(member, l.participant, false);
            }
            Message::Moderate(m) => return self.moderate(now, member, info.role, m),
            Message::SetCursorCap(c) if info.role == Role::Teacher => {
                return self.set_cursor_cap(now, member, c.cap);
            }
            Message::SetCursorCap(_) => {
                let why = "only a teacher sets the cursor cap";
                return self.refuse(member, Kind::SetCursorCap, 0, ErrorCode::Forbidden, why);
            }
            other => {
                let why = format!("{} is not a classroom request", other.kind());
                return self.refuse(member, other.kind(), 0, ErrorCode::UnexpectedMessage, &why);
            }
        };
        let Outcome { reply, writes, then } = outcome;
        self.deliver(reply);
        self.store_side(writes, then);
        if answered {
            // Live counts go out now if the last broadcast is old enough, else at its timer.
            self.class_tick(now);
        }
    }

    /// Classroom records are durable: what waited for them goes out.
    pub fn handle_side_committed(&mut self, then: Vec<Deliver>) {
        self.deliver(then);
    }

    fn deliver(&mut self, messages: Vec<Deliver>) {
        for d in messages {
            match d {
                Deliver::To(to, message) => self.send(to, message),
                Deliver::All(message) => self.broadcast(None, &message),
            }
        }
    }

    /// Asks for `writes` to be stored, then `then` to be delivered (nothing if both are empty).
    pub(super) fn store_side(&mut self, writes: Vec<class::Write>, then: Vec<Deliver>) {
        if !writes.is_empty() || !then.is_empty() {
            self.push(Output::Side { writes, then });
        }
    }

    /// Poll timers and live poll counts.
    pub(super) fn class_tick(&mut self, now: Instant) {
        for outcome in self.class.tick(now) {
            self.store_side(outcome.writes, outcome.then);
        }
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
    fn moderate(&mut self, now: Instant, by: u16, role: Role, m: Moderate) {
        let kind = Kind::Moderate;
        let target_ref = u64::from(m.target);
        if role != Role::Teacher {
            return self.refuse(by, kind, target_ref, ErrorCode::Forbidden, "only a teacher moderates");
        }
        let Some(target) = self.members.get_mut(&m.target) else {
            return self.refuse(by, kind, target_ref, ErrorCode::NotFound, "no such participant");
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
            self.push(Output::Sfu(SfuOp::Unpublish { participant: m.target }));
        }
        let write = self.class.set_flags(&user, |f| match m.action {
            ModAction::MuteChat | ModAction::UnmuteChat => f.chat_muted = info.chat_muted,
            ModAction::ReadOnly | ModAction::ReadWrite => f.read_only = info.read_only,
            ModAction::Remove => f.removed_until_ms = Some(expires_ms),
            ModAction::StopMedia => {}
        });
        if m.action == ModAction::Remove {
            // The target hears why on its own stream; it is gone before the broadcast.
            self.remove(now, m.target, ErrorCode::Removed, Some(clip_reason(m.reason.clone())));
        }
        let mut then = vec![Deliver::All(Message::from(Moderated {
            target: m.target,
            action: m.action,
            by,
            reason: m.reason,
        }))];
        if m.action != ModAction::Remove {
            then.push(Deliver::All(Message::from(ParticipantUpdated { participant: info })));
        }
        self.push(Output::Side { writes: write.into_iter().collect(), then });
    }
}

#[cfg(test)]
mod tests {
    use easel_proto::message::Role;
    use easel_proto::message::{ChatSend, HandLower, HandRaise};

    use super::super::Config;
    use super::super::testing::{Sim, room};
    use super::*;

    #[test]
    fn a_chat_message_is_echoed_only_once_it_is_stored() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let a = sim.join(t0, "ada");
        let b = sim.join(t0, "bob");
        sim.messages(a);
        sim.messages(b);
        sim.take_other();
        let chat = ChatSend { client_msg_id: 1, text: "hello".into() };
        sim.room.handle_class(t0, a, Message::from(chat));
        sim.drain();
        assert!(sim.messages(a).is_empty() && sim.messages(b).is_empty(), "nothing before it is durable");
        let other = sim.take_other();
        let [Output::Side { writes, then }] = &other[..] else { panic!("one classroom write: {other:?}") };
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].kind, class::kind::CHAT);

        sim.room.handle_side_committed(then.clone());
        sim.drain();
        for m in [a, b] {
            let echoed = sim
                .messages(m)
                .into_iter()
                .any(|m| matches!(m, Message::ChatMessage(c) if c.text == "hello"));
            assert!(echoed, "{m} hears it once it is stored");
        }
    }

    #[test]
    fn hands_queue_in_order_and_only_a_teacher_lowers_others() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let t = sim.join_as(t0, "tess", Role::Teacher);
        let a = sim.join(t0, "ada");
        let b = sim.join(t0, "bob");
        sim.room.handle_class(t0, b, Message::from(HandRaise {}));
        sim.room.handle_class(t0, a, Message::from(HandRaise {}));
        sim.drain();
        let queues = |sim: &mut Sim, m: u16| -> Vec<Vec<u16>> {
            sim.messages(m)
                .into_iter()
                .filter_map(|m| match m {
                    Message::HandQueue(q) => Some(q.queue),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(queues(&mut sim, t), [vec![b], vec![b, a]]);
        sim.room.handle_class(t0, a, Message::from(HandLower { participant: b }));
        sim.drain();
        let refused = sim
            .messages(a)
            .into_iter()
            .any(|m| matches!(m, Message::Fault(f) if f.code == ErrorCode::Forbidden.to_u16()));
        assert!(refused);
        sim.room.handle_class(t0, t, Message::from(HandLower { participant: b }));
        sim.drain();
        assert_eq!(queues(&mut sim, t), [vec![a]]);
    }

    #[test]
    fn a_removed_member_hears_why_and_others_hear_of_it_once_it_is_stored() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let t = sim.join_as(t0, "tess", Role::Teacher);
        let a = sim.join(t0, "ada");
        sim.messages(t);
        sim.take_other();
        let remove = Moderate { target: a, action: ModAction::Remove, reason: "spam".into() };
        sim.room.handle_class(t0, t, Message::from(remove));
        sim.drain();
        assert_eq!(sim.left(a), Some((ErrorCode::Removed, "spam".into())));
        assert!(!sim.messages(t).iter().any(|m| matches!(m, Message::Moderated(_))), "not yet stored");
        let then: Vec<Deliver> = sim
            .take_other()
            .into_iter()
            .filter_map(|o| match o {
                Output::Side { writes, then } if !then.is_empty() => {
                    assert!(writes.iter().any(|w| w.kind == class::kind::FLAGS));
                    Some(then)
                }
                _ => None,
            })
            .flatten()
            .collect();
        sim.room.handle_side_committed(then);
        sim.drain();
        assert!(sim.messages(t).iter().any(|m| matches!(m, Message::Moderated(m) if m.target == a)));
        // The removal holds for the user until its token expires.
        sim.room.handle_join(t0, sim.arrival("ada", 0, None));
        assert!(matches!(sim.room.poll_output(), Some(Output::JoinAnswer(Err(ErrorCode::Removed)))));
    }
}
