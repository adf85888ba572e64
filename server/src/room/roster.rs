//! Membership news, batched (SPEC §6.4): joins and leaves are collected and go out as one
//! `Participants` delta per membership slot, encoded once and shared by every member; the
//! members who arrived (or came back) since the last slot get the whole list, also encoded
//! once for all of them. A lone change in a quiet room goes out at once; while a join storm
//! lasts, changes are coalesced into one frame a pace, and the pace widens with the room so
//! its cost stays within [`FRAMES_PER_SEC`]. Each member thus gets O(1) membership frames a
//! slot however many join, and nobody's queue fills because of a storm.

use std::time::{Duration, Instant};

use bytes::Bytes;
use easel_proto::Message;
use easel_proto::message::{Participant, ParticipantGone, Participants};

use super::{Output, Room};

/// Room-stream frames a second that membership news may cost a room (one frame to each
/// member per slot): 2,000 members get a frame every 200 ms at most.
const FRAMES_PER_SEC: u32 = 10_000;

/// Participants per frame: well inside the frame limit even with the longest names
/// (1,024 × ~170 bytes).
const PER_FRAME: usize = 1024;

/// What changed since the last membership frame.
#[derive(Debug, Default)]
pub(super) struct Roster {
    /// Joined since the last frame, in order: nobody but themselves knows of them yet.
    joined: Vec<u16>,
    /// Left since the last frame, having been announced before.
    left: Vec<ParticipantGone>,
    /// Members owed the whole list at the next frame (new, or re-attached by a resume).
    newcomers: Vec<u16>,
    /// When the last frame went out.
    last: Option<Instant>,
    /// When the next frame is due, if a change waits for one.
    pub(super) next: Option<Instant>,
}

impl Roster {
    /// Whether `index` joined since the last frame (so nobody has been told of it yet).
    pub(super) fn is_unannounced(&self, index: u16) -> bool {
        self.joined.contains(&index)
    }
}

impl Room {
    /// A member joined: the next frame announces it, and sends it the list.
    pub(super) fn announce_join(&mut self, now: Instant, index: u16) {
        self.roster.joined.push(index);
        self.roster.newcomers.push(index);
        self.membership_changed(now);
    }

    /// A member came back through a resume: nobody else is told; it gets the list.
    pub(super) fn announce_return(&mut self, now: Instant, index: u16) {
        if !self.roster.newcomers.contains(&index) {
            self.roster.newcomers.push(index);
        }
        self.membership_changed(now);
    }

    /// A member left: the next frame says so, unless it joined since the last one, when
    /// nobody hears of it at all.
    pub(super) fn announce_leave(&mut self, now: Instant, index: u16, code: u16) {
        self.roster.newcomers.retain(|i| *i != index);
        match self.roster.joined.iter().position(|i| *i == index) {
            Some(at) => {
                self.roster.joined.remove(at);
            }
            None => self.roster.left.push(ParticipantGone { index, code }),
        }
        self.membership_changed(now);
    }

    /// Sends the membership frame now if the last one left at least a pace ago, or asks for
    /// it in the next slot.
    fn membership_changed(&mut self, now: Instant) {
        if self.roster.next.is_some() {
            return;
        }
        let due = self.roster.last.map(|t| t + self.membership_pace()).filter(|due| *due > now);
        match due {
            Some(due) => self.roster.next = Some(due),
            None => self.send_membership(now),
        }
    }

    /// The shortest time between two membership frames: the presence tick, widened so that
    /// one frame to every member, each pace, stays within [`FRAMES_PER_SEC`].
    fn membership_pace(&self) -> Duration {
        let members = u32::try_from(self.members.len()).unwrap_or(u32::MAX);
        (Duration::from_secs(1) * members / FRAMES_PER_SEC).max(self.config.tick)
    }

    /// The membership frame: everyone gets the delta (newcomers too: the list that follows
    /// replaces it), then each newcomer the whole list, the same bytes for all of them.
    pub(super) fn send_membership(&mut self, now: Instant) {
        self.roster.next = None;
        let joined = std::mem::take(&mut self.roster.joined);
        let left = std::mem::take(&mut self.roster.left);
        let newcomers = std::mem::take(&mut self.roster.newcomers);
        if joined.is_empty() && left.is_empty() && newcomers.is_empty() {
            return;
        }
        self.roster.last = Some(now);
        if !joined.is_empty() || !left.is_empty() {
            // Their state now: a change to one of them while unannounced was not broadcast.
            let joined = joined.iter().filter_map(|i| self.members.get(i)).map(|m| m.info.clone()).collect();
            if let Some(frame) = self.encode_membership(false, joined, left) {
                self.push(Output::Broadcast { frame, except: None });
            }
        }
        if newcomers.is_empty() {
            return;
        }
        let everyone = self.members.values().map(|m| m.info.clone()).collect();
        let Some(list) = self.encode_membership(true, everyone, Vec::new()) else { return };
        for index in newcomers {
            if self.members.get(&index).is_some_and(|m| m.is_linked()) {
                self.push(Output::Frame { to: index, frame: list.clone() });
            }
        }
    }

    /// One or more `Participants` frames, encoded into one buffer: a list longer than
    /// [`PER_FRAME`] continues in deltas that only join.
    fn encode_membership(
        &self,
        full: bool,
        joined: Vec<Participant>,
        left: Vec<ParticipantGone>,
    ) -> Option<Bytes> {
        let mut out = Vec::new();
        let mut chunks = joined.chunks(PER_FRAME);
        let mut message =
            Participants { full, joined: chunks.next().map(<[_]>::to_vec).unwrap_or_default(), left };
        loop {
            if let Err(e) = Message::from(message).encode_into(&mut out) {
                tracing::error!(room = %self.id, "encode Participants: {e}");
                return None;
            }
            let Some(chunk) = chunks.next() else { break };
            message = Participants { full: false, joined: chunk.to_vec(), left: Vec::new() };
        }
        Some(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use easel_proto::ErrorCode;
    use easel_proto::message::HandRaise;

    use super::super::Config;
    use super::super::testing::{Sim, room};
    use super::*;

    /// A room with ada and bob in it, quiet since `t0`; returns it, their numbers and a time
    /// a second later.
    fn quiet_room(t0: Instant) -> (Sim, u16, u16, Instant) {
        let mut sim = Sim::new(room(Config::default(), t0));
        let a = sim.join(t0, "ada");
        let b = sim.join(t0, "bob");
        sim.membership(a);
        sim.membership(b);
        (sim, a, b, t0 + Duration::from_secs(1))
    }

    #[test]
    fn a_lone_join_in_a_quiet_room_goes_out_at_once() {
        let t0 = Instant::now();
        let (mut sim, a, b, t1) = quiet_room(t0);
        let c = sim.arrive(t1, "cyd", 64).participant;
        assert_eq!(sim.membership(a), [("joined", c, 0)], "without waiting for a slot");
        assert_eq!(sim.membership(b), [("joined", c, 0)]);
        assert_eq!(sim.lists(c).into_iter().map(|(l, _)| l).collect::<Vec<_>>(), [vec![a, b, c]]);
        assert_eq!(sim.room.roster.next, None, "nothing waits");
    }

    #[test]
    fn a_burst_of_joins_within_a_slot_is_one_frame_to_each_member() {
        let t0 = Instant::now();
        let (mut sim, a, b, t1) = quiet_room(t0);
        // Queues of four: one frame per joiner per member would close everyone.
        let burst: Vec<u16> = (0..100).map(|i| sim.arrive(t1, &format!("s{i}"), 4).participant).collect();
        let first = sim.membership_frames(a);
        assert_eq!(first.len(), 1, "the first join of the burst goes out at once");
        assert_eq!(first[0].joined.iter().map(|p| p.index).collect::<Vec<_>>(), [burst[0]]);
        sim.advance(t1 + Config::default().tick);
        for member in [a, b].into_iter().chain(burst.iter().copied()) {
            assert!(!sim.killed(member), "{member} was closed by the storm");
        }
        let frames = sim.membership_frames(a);
        assert_eq!(frames.len(), 1, "one frame for the rest of the burst: {frames:?}");
        let joined: Vec<u16> = frames[0].joined.iter().map(|p| p.index).collect();
        assert_eq!(joined, burst[1..], "listing every joiner, in order");
        assert_eq!(sim.room.len(), 102);
    }

    #[test]
    fn a_join_and_leave_within_one_slot_cancel() {
        let t0 = Instant::now();
        let (mut sim, a, _, t1) = quiet_room(t0);
        let c = sim.arrive(t1, "cyd", 64).participant;
        sim.membership(a);
        let d = sim.arrive(t1, "dan", 64).participant;
        let e = sim.arrive(t1, "eve", 64).participant;
        sim.room.handle_leave(t1, d, 0, ErrorCode::Normal);
        sim.room.handle_leave(t1, c, 0, ErrorCode::Normal);
        sim.advance(t1 + Config::default().tick);
        let normal = ErrorCode::Normal.to_u16();
        assert_eq!(sim.membership(a), [("joined", e, 0), ("left", c, normal)], "dan came and went unseen");
        let lists: Vec<Vec<u16>> = sim.lists(e).into_iter().map(|(l, _)| l).collect();
        assert!(lists.iter().all(|l| !l.contains(&d) && !l.contains(&c)), "{lists:?}");
    }

    #[test]
    fn the_joiners_of_one_slot_share_one_encoded_list() {
        let t0 = Instant::now();
        let (mut sim, a, b, t1) = quiet_room(t0);
        let c = sim.arrive(t1, "cyd", 64).participant;
        let d = sim.arrive(t1, "dan", 64).participant;
        let e = sim.arrive(t1, "eve", 64).participant;
        sim.advance(t1 + Config::default().tick);
        let (list_d, bytes_d) = sim.lists(d).pop().expect("dan's list");
        let (list_e, bytes_e) = sim.lists(e).pop().expect("eve's list");
        assert_eq!(list_d, [a, b, c, d, e]);
        assert_eq!(list_d, list_e);
        assert_eq!(bytes_d.as_ptr(), bytes_e.as_ptr(), "encoded once, the same bytes queued to both");
        assert_eq!(sim.lists(c).len(), 1, "cyd's list went out with its own join");
    }

    #[test]
    fn a_change_to_an_unannounced_member_goes_out_with_its_announcement() {
        let t0 = Instant::now();
        let (mut sim, a, _, t1) = quiet_room(t0);
        sim.arrive(t1, "cyd", 64);
        let d = sim.arrive(t1, "dan", 64).participant;
        sim.membership(a);
        sim.room.handle_class(t1, d, Message::from(HandRaise {}));
        let early = sim.messages(a);
        assert!(!early.iter().any(|m| matches!(m, Message::ParticipantUpdated(_))), "{early:?}");
        sim.advance(t1 + Config::default().tick);
        let frames = sim.membership_frames(a);
        let dan = frames.iter().flat_map(|f| &f.joined).find(|p| p.index == d).expect("dan announced");
        assert!(dan.hand_raised, "with his hand raised");
    }

    #[test]
    fn the_pace_widens_with_the_room() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        assert_eq!(sim.room.membership_pace(), Config::default().tick);
        for i in 0..2000 {
            sim.arrive(t0, &format!("s{i}"), 4096);
        }
        assert_eq!(sim.room.membership_pace(), Duration::from_millis(200), "2,000 members under the budget");
    }
}
