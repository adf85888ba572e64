//! Rooms: joining, and rejoining after every reconnect with the document's version vector (so
//! the server sends only what is missing); leaving; the server's slot numbers; who is in the
//! room; and the frames of a room stream.

use std::collections::BTreeMap;
use std::time::Instant;

use easel_proto::message::{Join, Joined, Leave, Participant};
use easel_proto::{ErrorCode, Message};
use loro::LoroDoc;

use super::cursors::{OutCursor, OutPresence, Seen};
use super::ops::{LocalUpdates, Pending};
use super::{Event, Link, Session, SessionError, StoreOp, Transmit};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for a connection, or for `Joined` on it.
    Joining {
        sent: bool,
    },
    Joined,
    /// `Leave` sent; waiting for `Left`.
    Leaving,
}

pub(super) struct RoomState {
    pub(super) doc: LoroDoc,
    pub(super) local: LocalUpdates,
    pub(super) phase: Phase,
    pub(super) slot: Option<u16>,
    pub(super) me: Option<u16>,
    pub(super) participants: BTreeMap<u16, Participant>,
    pub(super) pending: BTreeMap<u64, Pending>,
    pub(super) cursor: OutCursor,
    pub(super) presence: OutPresence,
    pub(super) seen: Seen,
    /// Remote updates not imported yet: imported together, because Loro's cost per import
    /// grows with the document's history and a busy room delivers them in bursts.
    pub(super) inbox: Vec<(u16, Vec<u8>)>,
}

impl RoomState {
    fn new(doc: LoroDoc, local: LocalUpdates, pending: BTreeMap<u64, Pending>) -> Self {
        Self {
            doc,
            local,
            phase: Phase::Joining { sent: false },
            slot: None,
            me: None,
            participants: BTreeMap::new(),
            pending,
            cursor: OutCursor::new(),
            presence: OutPresence::new(),
            seen: Seen::default(),
            inbox: Vec::new(),
        }
    }
}

impl Session {
    /// Joins `room` (now, or when connected). Returns the room's local document, shared with
    /// the session: edit it and `commit()`; the session sends what was committed. `restored`
    /// are unacked ops from the offline store: they are applied to the document and resent.
    pub fn join(&mut self, room: &str, restored: Vec<(u64, Vec<u8>)>) -> Result<LoroDoc, SessionError> {
        easel_proto::room::validate_id(room)
            .map_err(|reason| SessionError::InvalidRoom { room: room.to_owned(), reason })?;
        if self.rooms.contains_key(room) {
            return Err(SessionError::AlreadyJoined(room.to_owned()));
        }
        let doc = LoroDoc::new();
        let local = LocalUpdates::new(&doc, self.waker.clone());
        let pending = self.restore(room, &doc, restored);
        self.rooms.insert(room.to_owned(), RoomState::new(doc.clone(), local, pending));
        if self.is_connected() {
            self.send_join(room);
        }
        Ok(doc)
    }

    pub(super) fn send_join(&mut self, id: &str) {
        let Some(room) = self.rooms.get_mut(id) else { return };
        if room.phase == Phase::Leaving {
            return;
        }
        let vv = room.doc.oplog_vv();
        let since = (!vv.is_empty()).then(|| vv.encode());
        room.phase = Phase::Joining { sent: true };
        self.transmits.push_back(Transmit::Join(Join {
            room: id.to_owned(),
            name: self.config.name.clone(),
            since,
        }));
    }

    /// Leaves `room`. Unacked ops of the room are dropped from the store.
    pub fn leave(&mut self, room: &str) -> Result<(), SessionError> {
        let state = self.rooms.get_mut(room).ok_or_else(|| SessionError::NotJoined(room.to_owned()))?;
        let ops: Vec<u64> = state.pending.keys().copied().collect();
        state.pending.clear();
        if !ops.is_empty() {
            self.store.push_back(StoreOp::Remove { room: room.to_owned(), op_ids: ops });
        }
        if state.phase == Phase::Joined {
            state.phase = Phase::Leaving;
            self.transmits
                .push_back(Transmit::Room { room: room.to_owned(), message: Message::from(Leave {}) });
        } else {
            self.rooms.remove(room);
            self.events.push_back(Event::Left {
                room: room.to_owned(),
                code: ErrorCode::Normal,
                reason: String::new(),
            });
        }
        Ok(())
    }

    /// The rooms the session is in or joining.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(String::as_str)
    }

    /// A frame arrived on the room stream of `room`.
    pub fn handle_room(&mut self, now: Instant, room: &str, message: Message) {
        if !self.rooms.contains_key(room) {
            return;
        }
        match message {
            Message::Joined(j) => self.joined(now, room, j),
            Message::Fault(f) => {
                let code = ErrorCode::from_u16(f.code).unwrap_or(ErrorCode::Internal);
                let joining = self.rooms.get(room).is_some_and(|r| matches!(r.phase, Phase::Joining { .. }));
                if joining {
                    self.rooms.remove(room);
                    self.events.push_back(Event::JoinFailed {
                        room: room.to_owned(),
                        code,
                        message: f.message,
                    });
                } else {
                    self.events.push_back(Event::Refused {
                        room: room.to_owned(),
                        code,
                        kind: f.kind,
                        reference: f.reference,
                        message: f.message,
                    });
                }
            }
            Message::Left(l) => {
                let code = ErrorCode::from_u16(l.code).unwrap_or(ErrorCode::Internal);
                // A shutdown ends the membership with the connection; the reconnect rejoins.
                if code != ErrorCode::ShuttingDown {
                    self.forget(room);
                    self.events.push_back(Event::Left { room: room.to_owned(), code, reason: l.message });
                }
            }
            Message::Ack(a) => self.acked(now, room, a.op_ids),
            Message::Reject(r) => self.rejected(now, room, r.op_id, r.code, r.message),
            Message::RemoteUpdate(u) => {
                if let Some(state) = self.rooms.get_mut(room) {
                    state.inbox.push((u.from, u.data));
                }
            }
            Message::ParticipantJoined(p) => {
                if let Some(state) = self.rooms.get_mut(room) {
                    state.participants.insert(p.participant.index, p.participant.clone());
                    self.events.push_back(Event::ParticipantJoined {
                        room: room.to_owned(),
                        participant: p.participant,
                    });
                }
            }
            Message::ParticipantLeft(p) => {
                if let Some(state) = self.rooms.get_mut(room) {
                    state.participants.remove(&p.index);
                    state.seen.forget(p.index);
                    let code = ErrorCode::from_u16(p.code).unwrap_or(ErrorCode::Normal);
                    self.events.push_back(Event::ParticipantLeft {
                        room: room.to_owned(),
                        index: p.index,
                        code,
                    });
                }
            }
            Message::ParticipantUpdated(p) => {
                if let Some(state) = self.rooms.get_mut(room) {
                    state.participants.insert(p.participant.index, p.participant.clone());
                    self.events.push_back(Event::ParticipantUpdated {
                        room: room.to_owned(),
                        participant: p.participant,
                    });
                }
            }
            other => self.classroom(room, other),
        }
    }

    fn joined(&mut self, now: Instant, id: &str, j: Joined) {
        let Link::Up { slots, .. } = &mut self.link else { return };
        let Some(room) = self.rooms.get_mut(id) else { return };
        slots.insert(j.slot, id.to_owned());
        room.phase = Phase::Joined;
        room.slot = Some(j.slot);
        room.me = Some(j.participant);
        room.participants = j.participants.iter().map(|p| (p.index, p.clone())).collect();
        if !j.resumed {
            room.seen.clear();
        }
        // Presence and the last cursor position are restored at once.
        room.presence.next_at = Some(now);
        room.cursor.rejoined(now);
        // A session that got into a room is healthy: the next failure starts backoff afresh.
        self.backoff.reset();
        self.events.push_back(Event::Joined {
            room: id.to_owned(),
            participant: j.participant,
            resumed: j.resumed,
            participants: j.participants,
        });
        self.pump(now);
        self.heartbeats(now);
    }

    /// The server ended our membership: the room and its unacked ops are gone.
    fn forget(&mut self, room: &str) {
        if let Some(state) = self.rooms.remove(room) {
            let ops: Vec<u64> = state.pending.into_keys().collect();
            if !ops.is_empty() {
                self.store.push_back(StoreOp::Remove { room: room.to_owned(), op_ids: ops });
            }
            if let (Link::Up { slots, .. }, Some(slot)) = (&mut self.link, state.slot) {
                slots.remove(&slot);
            }
        }
    }

    /// The connection is gone: every room waits to be rejoined on the next one, except those
    /// being left, which are gone with it.
    pub(super) fn rooms_lost(&mut self) {
        for room in self.rooms.values_mut() {
            room.slot = None;
            room.phase = match room.phase {
                Phase::Leaving => Phase::Leaving,
                _ => Phase::Joining { sent: false },
            };
            room.unsend_all();
        }
        let leaving: Vec<String> =
            self.rooms.iter().filter(|(_, r)| r.phase == Phase::Leaving).map(|(id, _)| id.clone()).collect();
        for room in leaving {
            self.rooms.remove(&room);
            self.events.push_back(Event::Left { room, code: ErrorCode::Normal, reason: String::new() });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use easel_proto::message::Fault;

    use super::*;
    use crate::Transport;
    use crate::session::testing::{Harness, ROOM, welcome};

    #[test]
    fn a_refused_join_is_reported_and_forgotten() {
        let mut h = Harness::new();
        h.session.join(ROOM, Vec::new()).unwrap();
        h.session.connected(h.now, Transport::Quic, &welcome(false, 1));
        let fault = Fault {
            code: ErrorCode::RoomNotAllowed.to_u16(),
            kind: 0x10,
            reference: 0,
            message: "no".into(),
        };
        h.session.handle_room(h.now, ROOM, Message::from(fault));
        assert!(
            h.events().iter().any(|e| matches!(e, Event::JoinFailed { code: ErrorCode::RoomNotAllowed, .. }))
        );
        assert_eq!(h.session.rooms().count(), 0);
        assert!(h.session.join("../bad", Vec::new()).is_err(), "ids are validated locally");
    }
}
