//! Classroom and SFU traffic on a room stream: requests out (chat, polls, hands, moderation,
//! the cursor cap, SFU signalling), news in, as [`Event`]s. These are live actions, never
//! queued offline.

use easel_proto::{ErrorCode, Message};

use super::doc::Document;
use super::rooms::Phase;
use super::{Event, Session, SessionError, Transmit};

impl<D: Document> Session<D> {
    /// Sends a classroom or SFU request (chat, polls, hands, moderation, SFU signalling) on
    /// `room`'s stream. These are live actions: while the room is not joined on a live
    /// connection they are refused rather than queued.
    pub fn request(&mut self, room: &str, message: Message) -> Result<(), SessionError> {
        let state = self.rooms.get(room).ok_or_else(|| SessionError::NotJoined(room.to_owned()))?;
        if state.phase != Phase::Joined {
            return Err(SessionError::Offline(room.to_owned()));
        }
        self.transmits.push_back(Transmit::Room { room: room.to_owned(), message });
        Ok(())
    }

    /// Classroom and SFU news on a room stream, as events.
    pub(super) fn classroom(&mut self, room: &str, message: Message) {
        let room = room.to_owned();
        let event = match message {
            Message::ChatMessage(message) => Event::Chat { room, message },
            Message::ChatDeleted(d) => Event::ChatDeleted { room, id: d.id, by: d.by },
            Message::ChatPage(p) => Event::ChatPage { room, messages: p.messages, more: p.more },
            Message::PollStarted(poll) => Event::PollStarted { room, poll },
            Message::PollAnswered(a) => {
                Event::PollAnswered { room, poll_id: a.poll_id, attempt_id: a.attempt_id }
            }
            Message::PollResults(results) => Event::PollResults { room, results },
            Message::HandQueue(q) => Event::HandQueue { room, queue: q.queue },
            Message::Moderated(m) => {
                Event::Moderated { room, target: m.target, action: m.action, by: m.by, reason: m.reason }
            }
            Message::CursorCap(c) => Event::CursorCap { room, cap: c.cap, by: c.by },
            Message::SfuGrant(g) => {
                Event::SfuGrant { room, can_publish: g.can_publish, ice_servers: g.ice_servers }
            }
            Message::SfuSdp(s) => Event::SfuSdp { room, feed: s.feed, kind: s.kind, sdp: s.sdp },
            Message::SfuCandidate(c) => Event::SfuCandidate {
                room,
                feed: c.feed,
                candidate: c.candidate,
                mid: c.mid,
                mline_index: c.mline_index,
            },
            Message::SfuStatus(s) => {
                Event::SfuStatus { room, reachable: s.reachable, fallback_url: s.fallback_url }
            }
            Message::SfuEvent(e) => {
                Event::SfuEvent { room, participant: e.participant, feed: e.feed, event: e.event }
            }
            other => Event::Error {
                room: Some(room),
                code: ErrorCode::UnexpectedMessage,
                message: format!("ignored {:?} on the room stream", other.kind()),
            },
        };
        self.events.push_back(event);
    }
}
