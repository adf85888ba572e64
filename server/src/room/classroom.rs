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
            client: &by.client,
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

    /// Cluster mode: the room log may hold a resend twice (its first send went in another
    /// batch); applied, it changes nothing and its sender gets what the first earned.
    #[test]
    fn a_resend_the_log_holds_twice_is_applied_once() {
        use easel_proto::message::{PollAnswer, PollClose, PollStart};

        use super::super::classlog::{Actor, Key};
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config { relay: Some("a@1".into()), ..Config::default() }, t0));
        let t = sim.join_as(t0, "tess", Role::Teacher);
        let a = sim.join(t0, "ada");
        let by = |index, user: &str, client: &str, role| Actor {
            key: Key { origin: "a@1".into(), index },
            user: user.into(),
            client: client.into(),
            name: user.into(),
            role,
        };
        let apply = |sim: &mut Sim, by: Actor, m: Message| {
            sim.room.handle_class_event(t0, 1_000, ClassEvent { by, act: Act::Request(m) });
            sim.drain();
        };
        sim.messages(t);
        sim.messages(a);
        let chat = Message::from(ChatSend { client_msg_id: 7, text: "hi".into() });
        apply(&mut sim, by(a, "ada", "dev", Role::Student), chat.clone());
        apply(&mut sim, by(a, "ada", "dev", Role::Student), chat.clone());
        // The same id from her other installation is another message.
        apply(&mut sim, by(a, "ada", "phone", Role::Student), chat);
        let chats = |sim: &mut Sim, m: u16| -> Vec<u64> {
            let messages = sim.messages(m).into_iter();
            messages.filter_map(|m| if let Message::ChatMessage(c) = m { Some(c.id) } else { None }).collect()
        };
        assert_eq!(chats(&mut sim, t), [1, 2], "posted once per installation");
        assert_eq!(chats(&mut sim, a), [1, 1, 2], "the resend is answered with the first");

        let start = PollStart {
            request: 3,
            question: "?".into(),
            options: vec!["x".into(), "y".into()],
            multiple: false,
            duration_ms: 0,
            live: false,
        };
        apply(&mut sim, by(t, "tess", "dev", Role::Teacher), Message::from(start.clone()));
        apply(&mut sim, by(t, "tess", "dev", Role::Teacher), Message::from(start));
        let started = |sim: &mut Sim, m: u16| {
            sim.messages(m)
                .into_iter()
                .filter(|m| matches!(m, Message::PollStarted(p) if p.poll_id == 1))
                .count()
        };
        assert_eq!((started(&mut sim, t), started(&mut sim, a)), (2, 1), "one poll; its teacher told again");
        let answer = Message::from(PollAnswer { poll_id: 1, attempt_id: 5, choices: vec![1] });
        apply(&mut sim, by(a, "ada", "dev", Role::Student), answer.clone());
        apply(&mut sim, by(t, "tess", "dev", Role::Teacher), Message::from(PollClose { poll_id: 1 }));
        // After the close too: what the first earned, not a refusal.
        apply(&mut sim, by(a, "ada", "dev", Role::Student), answer);
        let at_ada = sim.messages(a);
        let acks = at_ada.iter().filter(|m| matches!(m, Message::PollAnswered(p) if p.attempt_id == 5));
        assert_eq!(acks.count(), 2, "{at_ada:?}");
        assert!(!at_ada.iter().any(|m| matches!(m, Message::Fault(_))), "{at_ada:?}");
        let finals = at_ada.iter().find_map(|m| match m {
            Message::PollResults(r) if r.closed => Some((r.counts.clone(), r.respondents)),
            _ => None,
        });
        assert_eq!(finals, Some((vec![0, 1], 1)));
    }

    /// Cluster mode: a batch's fate on the room log is every one of its events' fate.
    #[test]
    fn a_batch_refused_or_found_resent_answers_every_event_of_it() {
        use easel_proto::message::PollAnswer;

        use super::super::classlog::Published;
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config { relay: Some("a@1".into()), ..Config::default() }, t0));
        let members = [sim.join(t0, "ada"), sim.join(t0, "bob"), sim.join(t0, "cyd")];
        sim.take_other();
        for (i, m) in members.iter().enumerate() {
            let answer = PollAnswer { poll_id: 1, attempt_id: 10 + i as u64, choices: vec![0] };
            sim.room.handle_class(t0, *m, Message::from(answer));
        }
        sim.drain();
        let events: Vec<ClassEvent> = sim
            .take_other()
            .into_iter()
            .filter_map(|o| if let Output::ClassLog(e) = o { Some(e) } else { None })
            .collect();
        assert_eq!(events.len(), 3, "published, not applied");
        let answers = |sim: &mut Sim, m: u16| {
            sim.messages(m).into_iter().filter(|m| !matches!(m, Message::Participants(_))).collect::<Vec<_>>()
        };

        sim.room.handle_class_published(t0, events.clone(), Published::Refused);
        sim.drain();
        for m in members {
            let code = ErrorCode::StorageUnavailable.to_u16();
            let refused = answers(&mut sim, m);
            assert!(matches!(&refused[..], [Message::Fault(f)] if f.code == code), "{m}: {refused:?}");
        }
        sim.room.handle_class_published(t0, events.clone(), Published::Resent);
        sim.drain();
        for (i, m) in members.into_iter().enumerate() {
            let acked = answers(&mut sim, m);
            let attempt = 10 + i as u64;
            assert!(matches!(&acked[..], [Message::PollAnswered(a)] if a.attempt_id == attempt), "{acked:?}");
        }
        sim.room.handle_class_published(t0, events, Published::Stored);
        sim.drain();
        assert!(members.iter().all(|m| answers(&mut sim, *m).is_empty()), "they come back from the log");
    }
}
