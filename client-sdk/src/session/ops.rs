//! Local edits as ops: each commit gets an op id unique to this installation, stays pending
//! (and in the offline store) until acked, goes out within the op rate the server announced,
//! is resent once after every reconnect (the server acks duplicates without applying them
//! twice) and is sent again when refused for a passing reason.

use std::collections::BTreeMap;

use easel_proto::message::Update;
use easel_proto::{ErrorCode, Message};
use web_time::Instant;

use super::doc::Document;
use super::rooms::{Phase, RoomState};
use super::{Event, Link, Session, SessionError, StoreOp, Transmit};

pub(super) struct Pending {
    data: Vec<u8>,
    sent: bool,
}

impl<D> RoomState<D> {
    /// Whether ops wait to be sent (for the op rate to allow them).
    pub(super) fn has_unsent(&self) -> bool {
        self.phase == Phase::Joined && self.pending.values().any(|p| !p.sent)
    }

    /// The connection is gone: unacked ops go again on the next one.
    pub(super) fn unsend_all(&mut self) {
        for op in self.pending.values_mut() {
            op.sent = false;
        }
    }
}

impl<D: Document> Session<D> {
    /// Applies ops restored from the offline store to `doc` and returns them as pending; new
    /// ops never reuse their ids.
    pub(super) fn restore(
        &mut self,
        room: &str,
        doc: &D,
        restored: Vec<(u64, Vec<u8>)>,
    ) -> BTreeMap<u64, Pending> {
        let mut pending = BTreeMap::new();
        for (op_id, data) in restored {
            if let Err(e) = doc.import(&data) {
                self.events.push_back(Event::Error {
                    room: Some(room.to_owned()),
                    code: ErrorCode::InvalidUpdate,
                    message: format!("stored op {op_id} does not import: {e}"),
                });
                continue;
            }
            self.next_op_id = self.next_op_id.max(op_id + 1);
            pending.insert(op_id, Pending { data, sent: false });
        }
        pending
    }

    /// Unacked op ids of `room`, oldest first.
    pub fn pending(&self, room: &str) -> Vec<u64> {
        self.rooms.get(room).map(|r| r.pending.keys().copied().collect()).unwrap_or_default()
    }

    /// The next op id that will be used (persisted by the offline store).
    pub fn next_op_id(&self) -> u64 {
        self.next_op_id
    }

    /// Turns local edits the room documents queued themselves ([`Document::take_local`]) into
    /// ops: numbered, stored, and sent when the rate allows.
    pub fn flush_local(&mut self, now: Instant) {
        let local: Vec<(String, Vec<u8>)> = self
            .rooms
            .iter()
            .flat_map(|(id, room)| room.doc.take_local().into_iter().map(move |data| (id.clone(), data)))
            .collect();
        for (room, data) in local {
            self.new_op(&room, data);
        }
        self.pump(now);
    }

    /// A local commit of `room`'s document (its update bytes), handed over by a driver whose
    /// document does not queue its own: it becomes an op like those of
    /// [`Session::flush_local`]. Returns the op id.
    pub fn local_update(&mut self, now: Instant, room: &str, data: Vec<u8>) -> Result<u64, SessionError> {
        let op_id = self.new_op(room, data).ok_or_else(|| SessionError::NotJoined(room.to_owned()))?;
        self.pump(now);
        Ok(op_id)
    }

    /// Numbers a local update of `room` and stores it; `None` if not in the room.
    fn new_op(&mut self, room: &str, data: Vec<u8>) -> Option<u64> {
        let state = self.rooms.get_mut(room)?;
        let op_id = self.next_op_id;
        self.next_op_id += 1;
        self.store.push_back(StoreOp::Save { room: room.to_owned(), op_id, data: data.clone() });
        state.pending.insert(op_id, Pending { data, sent: false });
        Some(op_id)
    }

    /// Sends unsent pending ops of joined rooms, oldest first, within the op rate.
    pub(super) fn pump(&mut self, now: Instant) {
        let Link::Up { ops, .. } = &mut self.link else { return };
        for (id, room) in &mut self.rooms {
            if room.phase != Phase::Joined || room.resend_at.is_some_and(|at| at > now) {
                continue;
            }
            room.resend_at = None;
            for (op_id, op) in &mut room.pending {
                if op.sent {
                    continue;
                }
                if !ops.take(now) {
                    return;
                }
                op.sent = true;
                self.transmits.push_back(Transmit::Room {
                    room: id.clone(),
                    message: Message::from(Update { op_id: *op_id, data: op.data.clone() }),
                });
            }
        }
    }

    pub(super) fn acked(&mut self, now: Instant, room: &str, op_ids: Vec<u64>) {
        let Some(state) = self.rooms.get_mut(room) else { return };
        let settled: Vec<u64> = op_ids.into_iter().filter(|id| state.pending.remove(id).is_some()).collect();
        if !settled.is_empty() {
            // The server stores again: what it refused may go out now.
            state.resend_at = None;
            self.resend.reset();
            self.store.push_back(StoreOp::Remove { room: room.to_owned(), op_ids: settled.clone() });
            self.events.push_back(Event::Acked { room: room.to_owned(), op_ids: settled });
        }
        self.pump(now);
    }

    pub(super) fn rejected(&mut self, now: Instant, room: &str, op_id: u64, code: u16, message: String) {
        let code = ErrorCode::from_u16(code).unwrap_or(ErrorCode::Internal);
        let Some(state) = self.rooms.get_mut(room) else { return };
        if code.is_retryable() || code == ErrorCode::RateLimited {
            // Not applied: send it again when the rate allows, and after a refusal to store it
            // (the server's storage is failing) not before a backoff, so a class does not
            // hammer a server that cannot ack at its full op rate. The ops refused together
            // share one wait.
            if let Some(op) = state.pending.get_mut(&op_id) {
                op.sent = false;
            }
            if code != ErrorCode::RateLimited && state.resend_at.is_none_or(|at| at <= now) {
                state.resend_at = Some(now + self.resend.next(None));
            }
            self.pump(now);
            return;
        }
        if state.pending.remove(&op_id).is_some() {
            self.store.push_back(StoreOp::Remove { room: room.to_owned(), op_ids: vec![op_id] });
        }
        self.events.push_back(Event::Rejected { room: room.to_owned(), op_id, code, message });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use easel_proto::message::{Ack, Reject};
    use loro::{LoroDoc, VersionVector};

    use super::*;
    use crate::Transport;
    use crate::session::testing::{Harness, ROOM, joined, welcome};

    #[test]
    fn local_edits_become_ops_that_settle_on_ack() {
        let (mut h, doc) = Harness::in_room();
        h.edit(&doc, "circle");
        assert_eq!(h.updates(), vec![1]);
        assert!(matches!(&h.store()[..], [StoreOp::Save { op_id: 1, .. }]));
        assert_eq!(h.session.pending(ROOM), vec![1]);
        h.session.handle_room(h.now, ROOM, Message::from(Ack { op_ids: vec![1] }));
        assert_eq!(h.events(), vec![Event::Acked { room: ROOM.into(), op_ids: vec![1] }]);
        assert_eq!(h.store(), vec![StoreOp::Remove { room: ROOM.into(), op_ids: vec![1] }]);
        assert!(h.session.pending(ROOM).is_empty());
    }

    #[test]
    fn unacked_ops_are_resent_once_after_a_reconnect_with_the_same_ids() {
        let (mut h, doc) = Harness::in_room();
        h.edit(&doc, "a");
        h.edit(&doc, "b");
        assert_eq!(h.updates(), vec![1, 2]);
        h.session.handle_room(h.now, ROOM, Message::from(Ack { op_ids: vec![1] }));
        h.session.disconnected(h.now, None, "wifi gone", None);
        h.edit(&doc, "made offline");
        assert!(h.updates().is_empty(), "offline: nothing goes out");
        h.now += Duration::from_secs(1);
        h.session.connected(h.now, Transport::WebSocket, &welcome(true, 2));
        let sent = h.transmits();
        let Some(Transmit::Join(join)) = sent.first() else { panic!("rejoin first: {sent:?}") };
        let since = VersionVector::decode(join.since.as_ref().expect("since")).unwrap();
        assert_eq!(since, doc.oplog_vv(), "the rejoin names everything we hold");
        h.session.handle_room(h.now, ROOM, joined(3, true));
        assert_eq!(h.updates(), vec![2, 3], "the unacked op and the offline one, once each");
        h.advance(Duration::from_secs(1));
        assert!(h.updates().is_empty(), "no resend without another reconnect");
    }

    #[test]
    fn ops_stay_within_the_announced_rate() {
        let (mut h, doc) = Harness::in_room();
        for i in 0..5 {
            h.edit(&doc, &format!("shape {i}"));
        }
        assert_eq!(h.updates(), vec![1, 2, 3], "the burst of 3 goes at once");
        h.advance(Duration::from_millis(100));
        assert_eq!(h.updates(), vec![4], "10 per second after that");
        h.advance(Duration::from_millis(100));
        assert_eq!(h.updates(), vec![5]);
    }

    #[test]
    fn rejections_settle_or_retry_by_code() {
        let (mut h, doc) = Harness::in_room();
        h.edit(&doc, "a");
        h.edit(&doc, "b");
        h.updates();
        h.store();
        let reject = |op_id, code: ErrorCode| {
            Message::from(Reject { op_id, code: code.to_u16(), message: "no".into() })
        };
        h.session.handle_room(h.now, ROOM, reject(1, ErrorCode::RateLimited));
        h.advance(Duration::from_millis(100));
        assert_eq!(h.updates(), vec![1], "a rate-limited op is sent again");
        h.session.handle_room(h.now, ROOM, reject(2, ErrorCode::ReadOnly));
        assert!(matches!(&h.events()[..], [Event::Rejected { op_id: 2, code: ErrorCode::ReadOnly, .. }]));
        assert_eq!(h.store(), vec![StoreOp::Remove { room: ROOM.into(), op_ids: vec![2] }]);
        assert_eq!(h.session.pending(ROOM), vec![1]);
    }

    #[test]
    fn ops_the_server_could_not_store_are_resent_after_a_growing_jittered_wait() {
        let (mut h, doc) = Harness::in_room();
        let refuse = |h: &mut Harness, op_id| {
            let code = ErrorCode::StorageUnavailable.to_u16();
            h.session.handle_room(h.now, ROOM, Message::from(Reject { op_id, code, message: "disk".into() }));
        };
        // Runs the session's timers until it sends ops again; how long that took.
        let resent_after = |h: &mut Harness| {
            let from = h.now;
            loop {
                h.now = h.session.poll_timeout().expect("a timer is due");
                h.session.handle_timeout(h.now);
                let sent = h.updates();
                if !sent.is_empty() {
                    assert_eq!(sent, vec![1, 2], "both resent together");
                    return h.now - from;
                }
            }
        };
        h.edit(&doc, "a");
        h.edit(&doc, "b");
        assert_eq!(h.updates(), vec![1, 2]);
        // Refused together: one wait for both, not a resend at the op rate.
        refuse(&mut h, 1);
        refuse(&mut h, 2);
        assert!(h.updates().is_empty(), "nothing resent at once");
        let mut waits = Vec::new();
        for _ in 0..8 {
            waits.push(resent_after(&mut h));
            refuse(&mut h, 1);
            refuse(&mut h, 2);
        }
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(10)), "bounded: {waits:?}");
        assert!(waits[5..].iter().any(|w| *w > Duration::from_millis(400)), "the bound grows: {waits:?}");
        // Stored again: the next refusal starts from the floor.
        resent_after(&mut h);
        h.session.handle_room(h.now, ROOM, Message::from(Ack { op_ids: vec![1] }));
        refuse(&mut h, 2);
        let from = h.now;
        let wait = loop {
            h.now = h.session.poll_timeout().expect("due");
            h.session.handle_timeout(h.now);
            if h.updates() == vec![2] {
                break h.now - from;
            }
        };
        assert!(wait <= Duration::from_millis(250), "reset by the ack: {wait:?}");
    }

    #[test]
    fn updates_handed_over_by_the_driver_are_ops_like_commits() {
        let (mut h, _doc) = Harness::in_room();
        let other = LoroDoc::new();
        other.get_list("shapes").push("from js").unwrap();
        other.commit();
        let data = other.export(loro::ExportMode::all_updates()).unwrap();
        assert_eq!(h.session.local_update(h.now, ROOM, data.clone()), Ok(1));
        assert_eq!(h.store(), vec![StoreOp::Save { room: ROOM.into(), op_id: 1, data }]);
        assert_eq!(h.updates(), vec![1]);
        assert_eq!(h.session.pending(ROOM), vec![1]);
        assert_eq!(
            h.session.local_update(h.now, "school/other", vec![1]),
            Err(SessionError::NotJoined("school/other".into()))
        );
        assert_eq!(h.session.next_op_id(), 2, "a refused update uses no id");
    }

    #[test]
    fn restored_ops_apply_locally_and_are_sent_after_joining() {
        let source = LoroDoc::new();
        source.get_list("shapes").push("from last run").unwrap();
        source.commit();
        let data = source.export(loro::ExportMode::all_updates()).unwrap();
        let mut h = Harness::new();
        let doc = h.join(ROOM, vec![(41, data)]).unwrap();
        assert_eq!(doc.get_list("shapes").len(), 1, "the stored edit shows at once");
        h.session.connected(h.now, Transport::Quic, &welcome(false, 1));
        h.session.handle_room(h.now, ROOM, joined(0, false));
        assert_eq!(h.updates(), vec![41]);
        assert_eq!(h.session.next_op_id(), 42, "new ops never reuse a stored id");
    }
}
