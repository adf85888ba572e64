//! Classroom events on the room log (cluster mode): each [`ClassEvent`] encoded on its own,
//! sent in batches ([`super::batch`]) on the room's subject beside its board updates (so the
//! two are ordered together), told apart by the [`KIND`] header ([`CLASS`]: one event alone,
//! as before group commit). The encoding is rkyv, like the board's records; a member's
//! request in it is the protocol's own frame, so it is checked by the protocol's own limits.
//! What does not decode or check is refused by [`decode`] and never reaches a room.

use std::sync::Arc;

use easel_proto::message::{ModAction, Role};
use easel_proto::{Kind, Message, limits};

use super::log::subject;
use crate::room::{Act, Actor, ClassEvent, Key};

/// The header marking a classroom event (board updates have none).
pub const KIND: &str = "Easel-Kind";
/// Its value for a message of one event (nodes before group commit; still read).
pub const CLASS: &str = "class";

/// Longest user id, installation or origin an event may carry.
const MAX_TEXT: usize = 256;

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Envelope {
    origin: String,
    index: u16,
    user: String,
    client: String,
    name: String,
    role: Role,
    act: WireAct,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
enum WireAct {
    /// A member's request, as a protocol frame (length prefix, kind, body).
    Request(Vec<u8>),
    HandLower {
        origin: String,
        index: u16,
    },
    Moderate {
        origin: String,
        index: u16,
        user: String,
        action: ModAction,
        reason: String,
        until_ms: u64,
        asked: u16,
    },
    PollDeadline(u64),
    Arrive,
    Depart(u64),
    // New variants go last: the earlier ones keep their encoding, so a log written before
    // them still reads.
    CursorCap(Option<u16>),
}

/// The id JetStream deduplicates an event by, if a resend of it must be stored once: the
/// client's ids (`client_msg_id`, request, attempt id) of the acting user's installation,
/// or a poll's id for its deadline, which every node holding the room may propose.
pub fn msg_id(room: &str, event: &ClassEvent) -> Option<String> {
    let by = &event.by;
    let (user, client) = (&by.user, &by.client);
    let what = match &event.act {
        Act::Request(Message::ChatSend(c)) => format!("chat:{user}:{client}:{}", c.client_msg_id),
        Act::Request(Message::ChatDelete(d)) => format!("chat-delete:{}", d.id),
        Act::Request(Message::PollStart(p)) => format!("poll:{user}:{client}:{}", p.request),
        Act::Request(Message::PollAnswer(a)) => format!("answer:{user}:{}:{}", a.poll_id, a.attempt_id),
        Act::Request(Message::PollClose(c)) => format!("close:{user}:{}", c.poll_id),
        Act::PollDeadline { poll_id } => format!("poll-close:{poll_id}"),
        // Hands and moderation carry no client id (applying one twice is a no-op); arrivals
        // and departures are published once, by the member's node.
        _ => return None,
    };
    Some(format!("{}:{what}", subject(room)))
}

/// Encodes an event.
pub fn encode(event: &ClassEvent) -> Result<Vec<u8>, String> {
    let by = &event.by;
    let act = match &event.act {
        Act::Request(m) => WireAct::Request(m.encode().map_err(|e| e.to_string())?),
        Act::HandLower { whose } => {
            WireAct::HandLower { origin: whose.origin.to_string(), index: whose.index }
        }
        Act::Moderate { target, user, action, reason, until_ms, asked } => WireAct::Moderate {
            origin: target.origin.to_string(),
            index: target.index,
            user: user.clone(),
            action: *action,
            reason: reason.clone(),
            until_ms: *until_ms,
            asked: *asked,
        },
        Act::PollDeadline { poll_id } => WireAct::PollDeadline(*poll_id),
        Act::Arrive => WireAct::Arrive,
        Act::Depart { at_ms } => WireAct::Depart(*at_ms),
        Act::CursorCap { cap } => WireAct::CursorCap(*cap),
    };
    let envelope = Envelope {
        origin: by.key.origin.to_string(),
        index: by.key.index,
        user: by.user.clone(),
        client: by.client.clone(),
        name: by.name.clone(),
        role: by.role,
        act,
    };
    rkyv::to_bytes::<rkyv::rancor::Error>(&envelope).map(|b| b.to_vec()).map_err(|e| e.to_string())
}

/// Decodes and checks an event published by `origin` (its [`super::log::ORIGIN`] header):
/// rkyv's validation, the actor is the publishing node's (but in a departure, which the
/// surviving nodes propose for a dead node's members: counted once, see `Class::depart`),
/// bounded texts, and a request is a classroom request the protocol accepts.
pub fn decode(bytes: &[u8], origin: &str) -> Result<ClassEvent, &'static str> {
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    let e =
        rkyv::from_bytes::<Envelope, rkyv::rancor::Error>(&aligned).map_err(|_| "not a classroom event")?;
    if e.origin != origin && !matches!(e.act, WireAct::Depart(_)) {
        return Err("the actor is not the publishing node's");
    }
    let texts = [&e.user, &e.client];
    if texts.iter().any(|t| t.len() > MAX_TEXT) || e.name.len() > limits::MAX_NAME_LEN {
        return Err("a user id or name out of bounds");
    }
    let act = match e.act {
        WireAct::Request(frame) => Act::Request(request(&frame)?),
        WireAct::HandLower { origin, index } => Act::HandLower { whose: key(origin, index)? },
        WireAct::Moderate { origin, index, user, action, reason, until_ms, asked } => {
            if user.is_empty() || user.len() > MAX_TEXT || reason.len() > limits::MAX_REASON_LEN {
                return Err("a moderation's user or reason out of bounds");
            }
            Act::Moderate { target: key(origin, index)?, user, action, reason, until_ms, asked }
        }
        WireAct::PollDeadline(poll_id) => Act::PollDeadline { poll_id },
        WireAct::Arrive => Act::Arrive,
        WireAct::Depart(at_ms) => Act::Depart { at_ms },
        WireAct::CursorCap(cap) => Act::CursorCap { cap },
    };
    if e.user.is_empty() && !matches!(act, Act::PollDeadline { .. }) {
        return Err("a member's act without its user");
    }
    let by = Actor {
        key: Key { origin: e.origin.into(), index: e.index },
        user: e.user,
        client: e.client,
        name: e.name,
        role: e.role,
    };
    Ok(ClassEvent { by, act })
}

fn key(origin: String, index: u16) -> Result<Key, &'static str> {
    if origin.len() > MAX_TEXT {
        return Err("an origin out of bounds");
    }
    Ok(Key { origin: Arc::from(origin), index })
}

/// A member's request from its frame: one whole frame, a classroom request, within the
/// protocol's limits.
fn request(frame: &[u8]) -> Result<Message, &'static str> {
    let (len, used) = easel_proto::varint::decode(frame).ok_or("a request without its length")?;
    let payload =
        frame.get(used..).filter(|p| p.len() as u64 == len).ok_or("a request of the wrong length")?;
    let message = Message::decode_payload(payload).map_err(|_| "a request the protocol refuses")?;
    match message.kind() {
        Kind::ChatSend
        | Kind::ChatDelete
        | Kind::PollStart
        | Kind::PollAnswer
        | Kind::PollClose
        | Kind::HandRaise => Ok(message),
        _ => Err("not a classroom request"),
    }
}

#[cfg(test)]
mod tests {
    use easel_proto::message::{ChatSend, PollAnswer, Update};

    use super::*;

    fn by(origin: &str) -> Actor {
        Actor {
            key: Key { origin: origin.into(), index: 3 },
            user: "ada".into(),
            client: "ada-device".into(),
            name: "Ada".into(),
            role: Role::Student,
        }
    }

    fn chat(id: u64) -> ClassEvent {
        ClassEvent {
            by: by("a@1"),
            act: Act::Request(Message::from(ChatSend { client_msg_id: id, text: "hi".into() })),
        }
    }

    #[test]
    fn events_round_trip() {
        let moderate = Act::Moderate {
            target: Key { origin: "b@2".into(), index: 9 },
            user: "bob".into(),
            action: ModAction::Remove,
            reason: "spam".into(),
            until_ms: 77,
            asked: 4,
        };
        let acts = [
            chat(5).act,
            moderate,
            Act::PollDeadline { poll_id: 2 },
            Act::Depart { at_ms: 8 },
            Act::CursorCap { cap: Some(3) },
            Act::CursorCap { cap: None },
        ];
        for act in acts {
            let event = ClassEvent { by: by("a@1"), act };
            assert_eq!(decode(&encode(&event).expect("encode"), "a@1"), Ok(event));
        }
    }

    #[test]
    fn what_is_not_a_valid_event_is_refused() {
        let bytes = encode(&chat(1)).expect("encode");
        assert!(decode(&bytes, "b@1").is_err(), "another node's actor");
        let departure = ClassEvent { by: by("a@1"), act: Act::Depart { at_ms: 8 } };
        let decoded = decode(&encode(&departure).expect("encode"), "b@1");
        assert_eq!(decoded, Ok(departure), "but a departure b proposes for a's member");
        assert!(decode(b"garbage", "a@1").is_err());
        assert!(decode(&bytes[..bytes.len() - 3], "a@1").is_err(), "truncated");
        let update = Message::from(Update { op_id: 1, data: vec![1] });
        let board = ClassEvent { by: by("a@1"), act: Act::Request(update) };
        assert_eq!(decode(&encode(&board).expect("encode"), "a@1"), Err("not a classroom request"));
        let long = ClassEvent {
            by: by("a@1"),
            act: Act::Request(Message::from(ChatSend {
                client_msg_id: 1,
                text: "x".repeat(limits::MAX_CHAT_LEN + 1),
            })),
        };
        assert!(encode(&long).is_err() || decode(&encode(&long).expect("encode"), "a@1").is_err());
    }

    #[test]
    fn a_resend_has_the_same_id_and_another_act_does_not() {
        assert_eq!(msg_id("r", &chat(1)), msg_id("r", &chat(1)));
        assert_ne!(msg_id("r", &chat(1)), msg_id("r", &chat(2)));
        let answer = |attempt_id| ClassEvent {
            by: by("a@1"),
            act: Act::Request(Message::from(PollAnswer { poll_id: 1, attempt_id, choices: vec![0] })),
        };
        // The same attempt resent to another node is the same write.
        let mut elsewhere = answer(7);
        elsewhere.by.key.origin = "b@1".into();
        assert_eq!(msg_id("r", &answer(7)), msg_id("r", &elsewhere));
        assert_ne!(msg_id("r", &answer(7)), msg_id("r", &answer(8)));
        let deadline = |origin: &str| ClassEvent { by: by(origin), act: Act::PollDeadline { poll_id: 4 } };
        assert_eq!(msg_id("r", &deadline("a@1")), msg_id("r", &deadline("b@1")), "proposed by any node");
    }
}
