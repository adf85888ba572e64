//! Cursors and presence, the datagram side of a room: our cursor throttled (newest position
//! wins), our presence in heartbeats, and the latest-wins filters on the cursor and presence
//! batches others send (SPEC §8.2).

use std::collections::HashMap;
use std::time::Duration;

use easel_proto::Datagram;
use easel_proto::datagram::{Cursor, Heartbeat, Status, Tool, dequantise, is_newer, quantise};
use web_time::Instant;

use super::doc::Document;
use super::{Event, Link, RemoteCursor, Session, SessionError, Transmit};

pub(super) struct OutCursor {
    seq: u16,
    /// The newest position (quantised).
    pos: Option<(i32, i32)>,
    /// Whether `pos` has not been sent yet.
    dirty: bool,
    /// Throttle (GCRA): the theoretical time of the next send. A send is allowed up to half
    /// an interval early, so an app that moves the cursor at exactly the throttle rate, with
    /// its timer's jitter, is never held back a whole interval; the average stays at the rate.
    /// `None` until the room is joined.
    next_at: Option<Instant>,
}

impl OutCursor {
    pub(super) fn new() -> Self {
        Self { seq: 0, pos: None, dirty: false, next_at: None }
    }

    /// The room is joined (again): the last position, if any, is due at once.
    pub(super) fn rejoined(&mut self, now: Instant) {
        self.dirty = self.pos.is_some();
        self.next_at = Some(now);
    }

    /// When a position waiting to be sent may go.
    pub(super) fn due(&self, interval: Duration) -> Option<Instant> {
        self.next_at.filter(|_| self.dirty).map(|t| t - interval / 2)
    }
}

pub(super) struct OutPresence {
    seq: u16,
    status: Status,
    tool: Tool,
    pub(super) next_at: Option<Instant>,
}

impl OutPresence {
    pub(super) fn new() -> Self {
        Self { seq: 0, status: Status::Active, tool: Tool::Pointer, next_at: None }
    }
}

/// The newest cursor and presence sequence numbers seen per participant of a room.
#[derive(Default)]
pub(super) struct Seen {
    cursors: HashMap<u16, u16>,
    presence: HashMap<u16, (u16, Status, Tool)>,
}

impl Seen {
    /// The participant left; a newcomer may get their number.
    pub(super) fn forget(&mut self, participant: u16) {
        self.cursors.remove(&participant);
        self.presence.remove(&participant);
    }

    /// A fresh membership (not a resume): sequence numbers start over.
    pub(super) fn clear(&mut self) {
        self.cursors.clear();
        self.presence.clear();
    }
}

impl<D: Document> Session<D> {
    /// Sets our cursor in `room` (board pixels). Sent at once if the throttle allows, else the
    /// newest position goes out when it does.
    pub fn cursor(&mut self, now: Instant, room: &str, x: f64, y: f64) -> Result<(), SessionError> {
        let state = self.rooms.get_mut(room).ok_or_else(|| SessionError::NotJoined(room.to_owned()))?;
        state.cursor.pos = Some((quantise(x), quantise(y)));
        state.cursor.dirty = true;
        self.flush_cursors(now);
        Ok(())
    }

    /// Sets our presence in `room`; a heartbeat carrying it goes out at once.
    pub fn presence(
        &mut self,
        now: Instant,
        room: &str,
        status: Status,
        tool: Tool,
    ) -> Result<(), SessionError> {
        let state = self.rooms.get_mut(room).ok_or_else(|| SessionError::NotJoined(room.to_owned()))?;
        state.presence.status = status;
        state.presence.tool = tool;
        state.presence.next_at = Some(now);
        self.heartbeats(now);
        Ok(())
    }

    pub(super) fn cursor_interval(&self) -> Duration {
        Duration::from_secs(1) / self.config.cursor_hz.max(1)
    }

    pub(super) fn flush_cursors(&mut self, now: Instant) {
        if !self.is_connected() {
            return;
        }
        let interval = self.cursor_interval();
        for room in self.rooms.values_mut() {
            let (Some(slot), Some((x, y))) = (room.slot, room.cursor.pos) else { continue };
            if !room.cursor.dirty || room.cursor.next_at.is_some_and(|t| now + interval / 2 < t) {
                continue;
            }
            room.cursor.seq = room.cursor.seq.wrapping_add(1);
            room.cursor.dirty = false;
            room.cursor.next_at = Some(room.cursor.next_at.map_or(now, |t| t.max(now)) + interval);
            self.transmits.push_back(Transmit::Datagram(Datagram::from(Cursor {
                slot,
                seq: room.cursor.seq,
                x,
                y,
            })));
        }
    }

    pub(super) fn heartbeats(&mut self, now: Instant) {
        let Link::Up { heartbeat, .. } = self.link else { return };
        for room in self.rooms.values_mut() {
            let Some(slot) = room.slot else { continue };
            let p = &mut room.presence;
            if p.next_at.is_some_and(|t| now < t) {
                continue;
            }
            p.seq = p.seq.wrapping_add(1);
            p.next_at = Some(now + heartbeat);
            self.transmits.push_back(Transmit::Datagram(Datagram::from(Heartbeat {
                slot,
                seq: p.seq,
                status: p.status,
                tool: p.tool,
            })));
        }
    }

    /// A datagram arrived: cursor and presence batches, filtered latest-wins (SPEC §8.2).
    pub fn handle_datagram(&mut self, datagram: Datagram) {
        let Link::Up { slots, .. } = &self.link else { return };
        let slot = match &datagram {
            Datagram::CursorBatch(b) => b.slot,
            Datagram::PresenceBatch(b) => b.slot,
            _ => return,
        };
        let Some(id) = slots.get(&slot).cloned() else { return };
        let Some(room) = self.rooms.get_mut(&id) else { return };
        match datagram {
            Datagram::CursorBatch(b) => {
                let mut cursors = Vec::with_capacity(b.cursors.len());
                for c in b.cursors {
                    if Some(c.participant) == room.me {
                        continue;
                    }
                    let seen = room.seen.cursors.get(&c.participant).copied();
                    if seen.is_some_and(|s| !is_newer(c.seq, s)) {
                        continue;
                    }
                    room.seen.cursors.insert(c.participant, c.seq);
                    cursors.push(RemoteCursor {
                        participant: c.participant,
                        x: dequantise(c.x),
                        y: dequantise(c.y),
                    });
                }
                if !cursors.is_empty() {
                    self.events.push_back(Event::Cursors { room: id, cursors });
                }
            }
            Datagram::PresenceBatch(b) => {
                // Batches carry our own entry too (one encoding for all); we know our presence.
                for e in b.entries.into_iter().filter(|e| Some(e.participant) != room.me) {
                    let seen = room.seen.presence.get(&e.participant).copied();
                    if seen.is_some_and(|(s, _, _)| !is_newer(e.seq, s)) {
                        continue;
                    }
                    room.seen.presence.insert(e.participant, (e.seq, e.status, e.tool));
                    // Periodic re-sends of an unchanged state are not news.
                    if seen.is_some_and(|(_, status, tool)| status == e.status && tool == e.tool) {
                        continue;
                    }
                    self.events.push_back(Event::Presence {
                        room: id.clone(),
                        participant: e.participant,
                        status: e.status,
                        tool: e.tool,
                    });
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use easel_proto::datagram::{CursorBatch, CursorEntry, PresenceBatch, PresenceEntry};

    use super::*;
    use crate::Transport;
    use crate::session::testing::{Harness, ROOM, joined, list, welcome};

    #[test]
    fn cursors_are_throttled_and_the_newest_position_wins() {
        let (mut h, _doc) = Harness::in_room();
        h.session.cursor(h.now, ROOM, 1.0, 1.0).unwrap();
        h.session.cursor(h.now, ROOM, 2.0, 2.0).unwrap();
        h.session.cursor(h.now, ROOM, 3.0, 3.5).unwrap();
        let first = h.datagrams();
        assert!(
            matches!(&first[..], [Datagram::Cursor(c)] if c.x == quantise(1.0) && c.seq == 1),
            "{first:?}"
        );
        let (t0, interval) = (h.now, Duration::from_secs(1) / 30);
        let due = h.session.poll_timeout().expect("a flush is scheduled");
        assert_eq!(due, t0 + interval - interval / 2, "half an interval of tolerance");
        h.advance(Duration::from_millis(10));
        assert!(h.datagrams().is_empty(), "inside the interval nothing more is sent");
        h.advance(Duration::from_millis(7));
        let second = h.datagrams();
        // The average stays at the rate: the third send is due a whole interval after the second.
        h.session.cursor(h.now, ROOM, 4.0, 4.0).unwrap();
        assert!(h.datagrams().is_empty());
        assert_eq!(h.session.poll_timeout(), Some(t0 + 2 * interval - interval / 2));
        assert!(
            matches!(&second[..], [Datagram::Cursor(c)] if c.x == quantise(3.0) && c.y == quantise(3.5) && c.seq == 2),
            "{second:?}"
        );
    }

    #[test]
    fn incoming_cursors_and_presence_are_latest_wins() {
        let (mut h, _doc) = Harness::in_room();
        let batch = |seq, x| {
            Datagram::from(CursorBatch {
                slot: 0,
                cursors: vec![
                    CursorEntry { participant: 5, seq, x, y: 0 },
                    CursorEntry { participant: 3, seq, x, y: 0 },
                ],
            })
        };
        h.session.handle_datagram(batch(10, 160));
        h.session.handle_datagram(batch(9, 320));
        h.session.handle_datagram(batch(10, 320));
        let cursors = h.events();
        assert_eq!(
            cursors,
            vec![Event::Cursors {
                room: ROOM.into(),
                cursors: vec![RemoteCursor { participant: 5, x: 10.0, y: 0.0 }]
            }],
            "older and duplicate entries dropped, our own cursor ignored"
        );
        let presence = |seq, status| {
            Datagram::from(PresenceBatch {
                slot: 0,
                entries: vec![PresenceEntry { participant: 5, seq, status, tool: Tool::Pen }],
            })
        };
        h.session.handle_datagram(presence(1, Status::Active));
        h.session.handle_datagram(presence(2, Status::Active));
        h.session.handle_datagram(presence(3, Status::Away));
        h.session.handle_datagram(presence(2, Status::Idle));
        let events = h.events();
        assert_eq!(events.len(), 2, "first state and the change only: {events:?}");
        assert!(matches!(events[1], Event::Presence { status: Status::Away, .. }));
    }

    #[test]
    fn a_lost_participant_is_reported_away_and_back_without_leaving() {
        let (mut h, _doc) = Harness::in_room();
        h.session.handle_room(h.now, ROOM, list(&[3, 5]));
        h.events();
        let presence = |seq, status, tool| {
            Datagram::from(PresenceBatch {
                slot: 0,
                entries: vec![
                    PresenceEntry { participant: 5, seq, status, tool },
                    PresenceEntry { participant: 3, seq, status, tool },
                ],
            })
        };
        let state = |status, tool| Event::Presence { room: ROOM.into(), participant: 5, status, tool };
        h.session.handle_datagram(presence(1, Status::Active, Tool::Pen));
        // The server's entries for a lost connection, then for its resume (SPEC §8.4).
        h.session.handle_datagram(presence(2, Status::Away, Tool::Hidden));
        h.session.handle_datagram(presence(3, Status::Active, Tool::Pen));
        assert_eq!(
            h.events(),
            [
                state(Status::Active, Tool::Pen),
                state(Status::Away, Tool::Hidden),
                state(Status::Active, Tool::Pen)
            ],
            "away and back, our own entry not reported, nobody left"
        );
    }

    #[test]
    fn heartbeats_after_a_resume_number_on_from_the_lost_connection() {
        let (mut h, _doc) = Harness::in_room();
        h.session.presence(h.now, ROOM, Status::Active, Tool::Pen).unwrap();
        let last = match &h.datagrams()[..] {
            [Datagram::Heartbeat(b)] => b.seq,
            other => panic!("{other:?}"),
        };
        h.session.disconnected(h.now, None, "wifi", None);
        h.now += Duration::from_secs(1);
        h.session.connected(h.now, Transport::Quic, &welcome(true, 2));
        h.session.handle_room(h.now, ROOM, joined(3, true));
        let beats: Vec<u16> = h
            .datagrams()
            .into_iter()
            .filter_map(|d| match d {
                Datagram::Heartbeat(b) => Some(b.seq),
                _ => None,
            })
            .collect();
        // The server drops a heartbeat not newer than the last it took from us (SPEC §8.4).
        assert_eq!(beats, [last.wrapping_add(1)], "at once, numbered on");
    }

    #[test]
    fn heartbeats_follow_the_announced_interval_and_changes_go_at_once() {
        let (mut h, _doc) = Harness::in_room();
        h.advance(Duration::from_millis(1999));
        assert!(h.datagrams().is_empty());
        h.advance(Duration::from_millis(1));
        assert!(matches!(&h.datagrams()[..], [Datagram::Heartbeat(b)] if b.seq == 2));
        h.session.presence(h.now, ROOM, Status::Away, Tool::Laser).unwrap();
        assert!(
            matches!(&h.datagrams()[..], [Datagram::Heartbeat(b)] if b.status == Status::Away && b.tool == Tool::Laser)
        );
    }
}
