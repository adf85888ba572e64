//! The core's outputs as plain JavaScript objects, shaped as the `.d.ts` in the crate root
//! says (`EaselEvent`, `Transmit`, `StoreOp`): a `type` string and camelCase fields; every
//! `u64` is a `bigint`, wire codes are numbers with a `codeName`.

use easel_client::Event;
use easel_client::session::{StoreOp, Transmit};
use easel_proto::message::{ChatMessage, Participant, PollResults, PollStarted};
use easel_proto::{Datagram, Message};
use wasm_bindgen::JsValue;

use crate::js::{Obj, array, name};

/// A transmit with its bytes ready for the wire, or why it could not be encoded.
pub(crate) fn transmit(t: &Transmit) -> Result<JsValue, easel_proto::Error> {
    Ok(match t {
        Transmit::Control(m) => Obj::typed("control").bytes("bytes", &m.encode()?),
        Transmit::Join(join) => Obj::typed("join")
            .set("room", join.room.as_str())
            .bytes("bytes", &Message::from(join.clone()).encode()?),
        Transmit::Room { room, message } => {
            Obj::typed("room").set("room", room.as_str()).bytes("bytes", &message.encode()?)
        }
        Transmit::Datagram(d) => Obj::typed("datagram").bytes("bytes", &Datagram::encode(d)?),
    }
    .build())
}

pub(crate) fn store(op: StoreOp) -> JsValue {
    match op {
        StoreOp::Save { room, op_id, data } => {
            Obj::typed("save").set("room", room).set("opId", op_id).bytes("data", &data)
        }
        StoreOp::Remove { room, op_ids } => {
            Obj::typed("remove").set("room", room).set("opIds", array(op_ids, JsValue::from))
        }
    }
    .build()
}

/// Every [`Event`] variant; one the core adds later arrives as `{ type: "unknown" }` until it
/// is mapped here.
pub(crate) fn event(event: Event) -> JsValue {
    match event {
        Event::Connected { transport, resumed } => {
            Obj::typed("connected").set("transport", transport.label()).set("resumed", resumed)
        }
        Event::Disconnected { code, reason, retry_in } => {
            let o = Obj::typed("disconnected").set("reason", reason).set("retryInMs", millis(retry_in));
            match code {
                Some(code) => o.code(code),
                None => o,
            }
        }
        Event::TokenRefreshed { expires_ms } => Obj::typed("tokenRefreshed").set("expiresMs", expires_ms),
        Event::Joined { room, participant, resumed, participants } => Obj::typed("joined")
            .set("room", room)
            .set("participant", participant)
            .set("resumed", resumed)
            .set("participants", array(participants, participant_obj)),
        Event::JoinFailed { room, code, message } => {
            Obj::typed("joinFailed").set("room", room).code(code).set("message", message)
        }
        Event::Left { room, code, reason } => {
            Obj::typed("left").set("room", room).code(code).set("reason", reason)
        }
        Event::ParticipantJoined { room, participant } => {
            Obj::typed("participantJoined").set("room", room).set("participant", participant_obj(participant))
        }
        Event::ParticipantLeft { room, index, code } => {
            Obj::typed("participantLeft").set("room", room).set("index", index).code(code)
        }
        Event::ParticipantUpdated { room, participant } => Obj::typed("participantUpdated")
            .set("room", room)
            .set("participant", participant_obj(participant)),
        Event::Cursors { room, cursors } => Obj::typed("cursors").set("room", room).set(
            "cursors",
            array(cursors, |c| {
                Obj::new().set("participant", c.participant).set("x", c.x).set("y", c.y).build()
            }),
        ),
        Event::Presence { room, participant, status, tool } => Obj::typed("presence")
            .set("room", room)
            .set("participant", participant)
            .set("status", name(status))
            .set("tool", name(tool)),
        Event::RemoteUpdate { room, from } => Obj::typed("remoteUpdate").set("room", room).set("from", from),
        Event::Synced { room } => Obj::typed("synced").set("room", room),
        Event::Acked { room, op_ids } => {
            Obj::typed("acked").set("room", room).set("opIds", array(op_ids, JsValue::from))
        }
        Event::Rejected { room, op_id, code, message } => {
            Obj::typed("rejected").set("room", room).set("opId", op_id).code(code).set("message", message)
        }
        Event::Chat { room, message } => Obj::typed("chat").set("room", room).set("message", chat(message)),
        Event::ChatDeleted { room, id, by } => {
            Obj::typed("chatDeleted").set("room", room).set("id", id).set("by", by)
        }
        Event::ChatPage { room, messages, more } => {
            Obj::typed("chatPage").set("room", room).set("messages", array(messages, chat)).set("more", more)
        }
        Event::PollStarted { room, poll } => {
            Obj::typed("pollStarted").set("room", room).set("poll", poll_obj(poll))
        }
        Event::PollAnswered { room, poll_id, attempt_id } => {
            Obj::typed("pollAnswered").set("room", room).set("pollId", poll_id).set("attemptId", attempt_id)
        }
        Event::PollResults { room, results } => {
            Obj::typed("pollResults").set("room", room).set("results", results_obj(results))
        }
        Event::HandQueue { room, queue } => {
            Obj::typed("handQueue").set("room", room).set("queue", array(queue, JsValue::from))
        }
        Event::CursorCap { room, cap, by } => {
            Obj::typed("cursorCap").set("room", room).set("cap", cap).set("by", by)
        }
        Event::Moderated { room, target, action, by, reason } => Obj::typed("moderated")
            .set("room", room)
            .set("target", target)
            .set("action", name(action))
            .set("by", by)
            .set("reason", reason),
        Event::SfuGrant { room, can_publish, ice_servers } => Obj::typed("sfuGrant")
            .set("room", room)
            .set("canPublish", can_publish)
            .set("iceServers", array(ice_servers, JsValue::from)),
        Event::SfuSdp { room, feed, kind, sdp } => {
            Obj::typed("sfuSdp").set("room", room).set("feed", feed).set("kind", name(kind)).set("sdp", sdp)
        }
        Event::SfuCandidate { room, feed, candidate, mid, mline_index } => Obj::typed("sfuCandidate")
            .set("room", room)
            .set("feed", feed)
            .set("candidate", candidate)
            .set("mid", mid)
            .set("mlineIndex", mline_index),
        Event::SfuEvent { room, participant, feed, event } => Obj::typed("sfuEvent")
            .set("room", room)
            .set("participant", participant)
            .set("feed", feed)
            .set("event", name(event)),
        Event::SfuStatus { room, reachable, fallback_url } => Obj::typed("sfuStatus")
            .set("room", room)
            .set("reachable", reachable)
            .set("fallbackUrl", fallback_url),
        Event::Refused { room, code, kind, reference, message } => Obj::typed("refused")
            .set("room", room)
            .code(code)
            .set("kind", kind)
            .set("reference", reference)
            .set("message", message),
        Event::Error { room, code, message } => {
            let o = Obj::typed("error").code(code).set("message", message);
            match room {
                Some(room) => o.set("room", room),
                None => o,
            }
        }
        _ => Obj::typed("unknown"),
    }
    .build()
}

/// Milliseconds as a JavaScript number (exact up to 2^53 ms).
pub(crate) fn millis(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn participant_obj(p: Participant) -> JsValue {
    Obj::new()
        .set("index", p.index)
        .set("user", p.user)
        .set("name", p.name)
        .set("role", name(p.role))
        .set("readOnly", p.read_only)
        .set("chatMuted", p.chat_muted)
        .set("camera", p.camera)
        .set("handRaised", p.hand_raised)
        .build()
}

fn chat(m: ChatMessage) -> JsValue {
    Obj::new()
        .set("id", m.id)
        .set("from", m.from)
        .set("user", m.user)
        .set("name", m.name)
        .set("text", m.text)
        .set("sentMs", m.sent_ms)
        .set("clientMsgId", m.client_msg_id)
        .build()
}

fn poll_obj(p: PollStarted) -> JsValue {
    Obj::new()
        .set("pollId", p.poll_id)
        .set("request", p.request)
        .set("by", p.by)
        .set("question", p.question)
        .set("options", array(p.options, JsValue::from))
        .set("multiple", p.multiple)
        .set("closesAtMs", p.closes_at_ms)
        .set("live", p.live)
        .build()
}

fn results_obj(r: PollResults) -> JsValue {
    Obj::new()
        .set("pollId", r.poll_id)
        .set("counts", array(r.counts, JsValue::from))
        .set("respondents", r.respondents)
        .set("closed", r.closed)
        .build()
}
