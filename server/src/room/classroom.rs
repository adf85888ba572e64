//! The classroom on a member's room stream: chat and polls (decided by [`crate::class`]),
//! raised hands, moderation and the lecture's cursor cap. What must be durable first leaves as
//! [`Output::Side`] and is echoed only when the driver reports it stored
//! ([`Room::handle_side_committed`]).

use std::time::Instant;

use easel_proto::message::{Kind, Moderate, Role};
use easel_proto::{ErrorCode, Message};

use super::classlog::{Act, ClassEvent, REMOVAL_UNKNOWN_EXPIRY};
use super::{Output, Room};
use crate::class::{self, Deliver, Who};

impl Room {
    /// A classroom request on a member's room stream: chat, polls, hands, moderation. What
    /// only this node can decide (the chat rate, roles, which member a number names) is
    /// decided here; the act itself becomes one event ([`Room::submit`]).
    pub fn handle_class(&mut self, now: Instant, member: u16, message: Message) {
        self.handle_touch(now, member);
        let Some(m) = self.members.get(&member) else { return };
        let by = self.actor(member, m);
        let info = m.info.clone();
        let who = Who {
            index: member,
            user: &info.user,
            name: &info.name,
            role: info.role,
            chat_muted: info.chat_muted,
        };
        let act = match message {
            Message::ChatSend(c) => match self.class.chat_admit(who, c.client_msg_id, now) {
                Ok(()) => Act::Request(Message::ChatSend(c)),
                Err(refused) => return self.deliver(refused.reply),
            },
            Message::ChatHistory(h) => {
                let page = self.class.chat_history(who, h.before, h.limit);
                return self.deliver(page.reply);
            }
            m @ (Message::ChatDelete(_)
            | Message::PollStart(_)
            | Message::PollAnswer(_)
            | Message::PollClose(_)
            | Message::HandRaise(_)) => Act::Request(m),
            Message::HandLower(l) => {
                if l.participant != member && info.role != Role::Teacher {
                    let why = "only a teacher lowers others' hands";
                    return self.refuse(member, Kind::HandLower, 0, ErrorCode::Forbidden, why);
                }
                let Some(whose) = self.members.get(&l.participant).map(|m| self.actor(l.participant, m).key)
                else {
                    let why = "no such participant";
                    return self.refuse(member, Kind::HandLower, 0, ErrorCode::NotFound, why);
                };
                Act::HandLower { whose }
            }
            Message::Moderate(m) => match self.moderation(now, member, info.role, m) {
                Some(act) => act,
                None => return,
            },
            Message::SetCursorCap(c) if info.role == Role::Teacher => Act::CursorCap { cap: c.cap },
            Message::SetCursorCap(_) => {
                let why = "only a teacher sets the cursor cap";
                return self.refuse(member, Kind::SetCursorCap, 0, ErrorCode::Forbidden, why);
            }
            other => {
                let why = format!("{} is not a classroom request", other.kind());
                return self.refuse(member, other.kind(), 0, ErrorCode::UnexpectedMessage, &why);
            }
        };
        self.submit(now, ClassEvent { by, act });
    }

    /// Classroom records are durable: what waited for them goes out.
    pub fn handle_side_committed(&mut self, then: Vec<Deliver>) {
        self.deliver(then);
    }

    /// Asks for `writes` to be stored, then `then` to be delivered (nothing if both are empty).
    pub(super) fn store_side(&mut self, writes: Vec<class::Write>, then: Vec<Deliver>) {
        if !writes.is_empty() || !then.is_empty() {
            self.push(Output::Side { writes, then });
        }
    }

    /// A teacher's moderation (SPEC §12) as an event naming its target by its node and
    /// user, or refused here. A removal holds until the target's token expires, if this
    /// node holds its connection and so knows when.
    fn moderation(&mut self, now: Instant, by: u16, role: Role, m: Moderate) -> Option<Act> {
        let target_ref = u64::from(m.target);
        if role != Role::Teacher {
            self.refuse(by, Kind::Moderate, target_ref, ErrorCode::Forbidden, "only a teacher moderates");
            return None;
        }
        let Some(target) = self.members.get(&m.target) else {
            self.refuse(by, Kind::Moderate, target_ref, ErrorCode::NotFound, "no such participant");
            return None;
        };
        let until_ms = if target.is_remote() {
            self.wall_ms(now).saturating_add(REMOVAL_UNKNOWN_EXPIRY.as_millis() as u64)
        } else {
            target.expires_ms
        };
        let actor = self.actor(m.target, target);
        Some(Act::Moderate {
            target: actor.key,
            user: actor.user,
            action: m.action,
            reason: m.reason,
            until_ms,
            asked: m.target,
        })
    }
}

#[cfg(test)]
mod tests {
    use easel_proto::message::{ChatSend, HandLower, HandRaise, ModAction, Moderate, Role};

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
