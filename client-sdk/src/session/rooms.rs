//! Rooms: joining, and rejoining after every reconnect with the document's version vector (so
//! the server sends only what is missing); leaving; the server's slot numbers; who is in the
//! room (kept from the server's batched `Participants` frames, reported per member); and the
//! frames of a room stream.

use std::collections::BTreeMap;

use easel_proto::message::{Join, Joined, Leave, Participant, Participants};
use easel_proto::{ErrorCode, Message};
use web_time::Instant;

use super::cursors::{OutCursor, OutPresence, Seen};
use super::doc::Document;
use super::ops::Pending;
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

pub(super) struct RoomState<D> {
    pub(super) doc: D,
    pub(super) phase: Phase,
    pub(super) slot: Option<u16>,
    pub(super) me: Option<u16>,
    pub(super) participants: BTreeMap<u16, Participant>,
    /// Between `Joined` and the whole list that follows it: the room's events meanwhile,
    /// held so the app hears `Event::Joined` (with everyone) first.
    pub(super) unlisted: Option<Unlisted>,
    pub(super) pending: BTreeMap<u64, Pending>,
    /// After the server could not store an op: no op goes out before this.
    pub(super) resend_at: Option<Instant>,
    pub(super) cursor: OutCursor,
    pub(super) presence: OutPresence,
    pub(super) seen: Seen,
    /// Remote updates not imported yet: imported together, because Loro's cost per import
    /// grows with the document's history and a busy room delivers them in bursts.
    pub(super) inbox: Vec<(u16, Vec<u8>)>,
}

/// A joined room still waiting for its list of participants.
#[derive(Debug)]
pub(super) struct Unlisted {
    participant: u16,
    resumed: bool,
    held: Vec<Event>,
}

impl<D> RoomState<D> {
    fn new(doc: D, pending: BTreeMap<u64, Pending>) -> Self {
        Self {
            doc,
            phase: Phase::Joining { sent: false },
            slot: None,
            me: None,
            participants: BTreeMap::new(),
            unlisted: None,
            pending,
            resend_at: None,
            cursor: OutCursor::new(),
            presence: OutPresence::new(),
            seen: Seen::default(),
            inbox: Vec::new(),
        }
    }
}

impl<D: Document> Session<D> {
    /// Joins `room` (now, or when connected) with `doc` as its document: remote edits are
    /// imported into it, its version vector names what we hold on every rejoin, and its local
    /// commits ([`Document::take_local`] or [`Session::local_update`]) are sent. `restored`
    /// are unacked ops from the offline store: they are applied to the document and resent.
    pub fn join(&mut self, room: &str, doc: D, restored: Vec<(u64, Vec<u8>)>) -> Result<(), SessionError> {
        easel_proto::room::validate_id(room)
            .map_err(|reason| SessionError::InvalidRoom { room: room.to_owned(), reason })?;
        if self.rooms.contains_key(room) {
            return Err(SessionError::AlreadyJoined(room.to_owned()));
        }
        let pending = self.restore(room, &doc, restored);
        self.rooms.insert(room.to_owned(), RoomState::new(doc, pending));
        if self.is_connected() {
            self.send_join(room);
        }
        Ok(())
    }

    pub(super) fn send_join(&mut self, id: &str) {
        let Some(room) = self.rooms.get_mut(id) else { return };
        if room.phase == Phase::Leaving {
            return;
        }
        let since = room.doc.version();
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
        let before = self.events.len();
        let listing = matches!(message, Message::Joined(_) | Message::Participants(_));
        self.room_frame(now, room, message);
        if !listing && let Some(unlisted) = self.rooms.get_mut(room).and_then(|r| r.unlisted.as_mut()) {
            unlisted.held.extend(self.events.drain(before..));
        }
    }

    fn room_frame(&mut self, now: Instant, room: &str, message: Message) {
        match message {
            Message::Joined(j) => self.joined(now, room, j),
            Message::Participants(p) => self.participants(room, p),
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
                let leaving = self.rooms.get(room).is_some_and(|r| r.phase == Phase::Leaving);
                match code {
                    // A shutdown ends the membership with the connection; the reconnect rejoins.
                    ErrorCode::ShuttingDown => {}
                    // Evicted for silence (heartbeats lost, or a path that stalled past the
                    // presence TTL but not the idle timeout) while we are evidently here: the
                    // app never asked to leave, so join again by version, as after a reconnect.
                    ErrorCode::PresenceTimeout if !leaving => self.rejoin(room),
                    _ => {
                        self.forget(room);
                        self.events.push_back(Event::Left { room: room.to_owned(), code, reason: l.message });
                    }
                }
            }
            Message::Ack(a) => self.acked(now, room, a.op_ids),
            Message::Reject(r) => self.rejected(now, room, r.op_id, r.code, r.message),
            Message::RemoteUpdate(u) => {
                if let Some(state) = self.rooms.get_mut(room) {
                    state.inbox.push((u.from, u.data));
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
        // Held events of an earlier connection's join that never got its list stay first.
        let held = room.unlisted.take().map(|u| u.held).unwrap_or_default();
        room.unlisted = Some(Unlisted { participant: j.participant, resumed: j.resumed, held });
        if !j.resumed {
            room.seen.clear();
        }
        // Presence and the last cursor position are restored at once.
        room.presence.next_at = Some(now);
        room.cursor.rejoined(now);
        self.take_early_snapshot(id, j.slot);
        // A session that got into a room is healthy: the next failure starts backoff afresh.
        self.backoff.reset();
        self.pump(now);
        self.heartbeats(now);
    }

    /// A membership frame (SPEC §6.4): the whole list replaces what is held (the first after
    /// `Joined` completes the join); a delta is reported per member. Applying one is
    /// idempotent: only a number not held is reported joined, only one held reported gone.
    fn participants(&mut self, id: &str, p: Participants) {
        let Some(room) = self.rooms.get_mut(id) else { return };
        if p.full {
            room.participants = p.joined.iter().map(|p| (p.index, p.clone())).collect();
            if let Some(Unlisted { participant, resumed, held }) = room.unlisted.take() {
                self.events.push_back(Event::Joined {
                    room: id.to_owned(),
                    participant,
                    resumed,
                    participants: p.joined,
                });
                self.events.extend(held);
            }
            return;
        }
        // Before the list, a delta only prepares what the list will replace.
        let report = room.unlisted.is_none();
        for participant in p.joined {
            let new = room.participants.insert(participant.index, participant.clone()).is_none();
            if report && new {
                self.events.push_back(Event::ParticipantJoined { room: id.to_owned(), participant });
            }
        }
        for gone in p.left {
            room.seen.forget(gone.index);
            if room.participants.remove(&gone.index).is_some() && report {
                let code = ErrorCode::from_u16(gone.code).unwrap_or(ErrorCode::Normal);
                self.events.push_back(Event::ParticipantLeft {
                    room: id.to_owned(),
                    index: gone.index,
                    code,
                });
            }
        }
    }

    /// The server ended our membership for a passing reason: its slot is gone, unacked ops go
    /// again (the server acks duplicates without applying them twice) after a new `Join`.
    fn rejoin(&mut self, id: &str) {
        let Some(room) = self.rooms.get_mut(id) else { return };
        if let (Link::Up { slots, .. }, Some(slot)) = (&mut self.link, room.slot.take()) {
            slots.remove(&slot);
        }
        room.unsend_all();
        self.send_join(id);
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

    use easel_proto::message::{Fault, HandQueue, Left, ParticipantGone};

    use super::*;
    use crate::Transport;
    use crate::session::testing::{Harness, ROOM, joined, list, participant, welcome};

    fn delta(joined: &[u16], left: &[u16]) -> Message {
        let left = left.iter().map(|i| ParticipantGone { index: *i, code: ErrorCode::Normal.to_u16() });
        Message::from(Participants {
            full: false,
            joined: joined.iter().map(|i| participant(*i)).collect(),
            left: left.collect(),
        })
    }

    #[test]
    fn a_join_is_reported_with_its_list_and_the_rooms_events_wait_for_it() {
        let mut h = Harness::new();
        h.join(ROOM, Vec::new()).unwrap();
        h.session.connected(h.now, Transport::Quic, &welcome(false, 1));
        h.events();
        h.session.handle_room(h.now, ROOM, joined(3, false));
        h.session.handle_room(h.now, ROOM, Message::from(HandQueue { queue: vec![1] }));
        h.session.handle_room(h.now, ROOM, delta(&[3, 4], &[]));
        assert_eq!(h.events(), [], "nothing before the list");
        h.session.handle_room(h.now, ROOM, list(&[1, 3, 4]));
        let events = h.events();
        let everyone: Vec<Participant> = [1, 3, 4].map(participant).into();
        let want =
            Event::Joined { room: ROOM.into(), participant: 3, resumed: false, participants: everyone };
        assert_eq!(events.first(), Some(&want), "{events:?}");
        assert!(matches!(&events[1..], [Event::HandQueue { queue, .. }] if queue == &[1]), "{events:?}");
    }

    #[test]
    fn a_batch_is_reported_per_member_once() {
        let (mut h, _doc) = Harness::in_room();
        h.session.handle_room(h.now, ROOM, delta(&[1], &[]));
        h.events();
        h.session.handle_room(h.now, ROOM, delta(&[4, 5], &[1]));
        let events = h.events();
        let joined: Vec<u16> = events
            .iter()
            .filter_map(|e| match e {
                Event::ParticipantJoined { participant, .. } => Some(participant.index),
                _ => None,
            })
            .collect();
        assert_eq!(joined, [4, 5]);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::ParticipantLeft { index: 1, code: ErrorCode::Normal, .. }))
        );
        assert_eq!(events.len(), 3);
        h.session.handle_room(h.now, ROOM, delta(&[4, 5], &[1]));
        assert_eq!(h.events(), [], "what is held already is not news");
        h.session.handle_room(h.now, ROOM, list(&[3, 5]));
        assert_eq!(h.events(), [], "a later list replaces quietly");
        let held: Vec<u16> = h.session.rooms.get(ROOM).unwrap().participants.keys().copied().collect();
        assert_eq!(held, [3, 5]);
    }

    /// Seen in the reconnect storm (`easel-storm`): members whose heartbeats did not get
    /// through for the presence TTL were evicted on a live connection, and the SDK forgot
    /// their rooms for good — they never came back.
    #[test]
    fn an_eviction_for_silence_rejoins_by_version_and_resends_unacked_ops() {
        let (mut h, doc) = Harness::in_room();
        h.edit(&doc, "unacked");
        let sent = h.updates();
        assert_eq!(sent.len(), 1);
        h.transmits();
        let left = Left { code: ErrorCode::PresenceTimeout.to_u16(), message: String::new() };
        h.session.handle_room(h.now, ROOM, Message::from(left));
        assert!(!h.events().iter().any(|e| matches!(e, Event::Left { .. })), "not gone for the app");
        let out = h.transmits();
        let since = doc.oplog_vv().encode();
        assert!(
            matches!(&out[..], [Transmit::Join(j)] if j.room == ROOM && j.since.as_deref() == Some(&since[..])),
            "{out:?}"
        );
        h.session.handle_room(h.now, ROOM, joined(7, false));
        h.session.handle_room(h.now, ROOM, list(&[7]));
        assert!(h.events().iter().any(|e| matches!(e, Event::Joined { participant: 7, .. })));
        assert_eq!(h.updates(), sent, "the unacked op goes again");

        // Leaving meanwhile: the eviction completes the leave.
        h.session.leave(ROOM).unwrap();
        let left = Left { code: ErrorCode::PresenceTimeout.to_u16(), message: String::new() };
        h.session.handle_room(h.now, ROOM, Message::from(left));
        assert!(h.events().iter().any(|e| matches!(e, Event::Left { .. })));
        assert_eq!(h.session.rooms().count(), 0);
    }

    #[test]
    fn a_refused_join_is_reported_and_forgotten() {
        let mut h = Harness::new();
        h.join(ROOM, Vec::new()).unwrap();
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
        assert!(h.join("../bad", Vec::new()).is_err(), "ids are validated locally");
    }
}
