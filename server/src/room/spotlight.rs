//! The active-cursor cap of a lecture (SPEC §8.5): every teacher's cursor is shown, and of the
//! others only the `cap` whose cursors most recently *started* moving. The rest are kept (the
//! newest position wins as always) but neither sent nor paced, so 2,000 viewers cost no more
//! cursor traffic than `cap` of them. Ranking by start, not by latest move, keeps the shown set
//! steady: a cursor that keeps moving holds its place until newer ones start, instead of the
//! set flickering with every datagram.
//!
//! The cap applies by default while a teacher is in the room (a lecture; a room of peers sees
//! everyone), and a teacher can set it for the room.

use std::collections::{BTreeMap, HashMap, HashSet};

/// Who of a room's cursors are shown.
#[derive(Debug)]
pub(super) struct Spotlight {
    /// The server's cap, applied while a teacher is in the room; 0: none.
    default_cap: u16,
    /// A teacher's choice for this room, over the default; `Some(0)`: every cursor.
    chosen: Option<u16>,
    /// Teachers in the room.
    teachers: u32,
    /// Non-teachers whose cursor has moved, by start number (newest last).
    starts: BTreeMap<u64, u16>,
    start_of: HashMap<u16, u64>,
    next_start: u64,
    /// While capped: the `cap` newest starters.
    shown: HashSet<u16>,
    /// Whether `shown` was in force at the last refresh.
    capped: bool,
}

impl Spotlight {
    pub(super) fn new(default_cap: u16) -> Self {
        Self {
            default_cap,
            chosen: None,
            teachers: 0,
            starts: BTreeMap::new(),
            start_of: HashMap::new(),
            next_start: 0,
            shown: HashSet::new(),
            capped: false,
        }
    }

    /// The cap in force: `None` shows every cursor.
    pub(super) fn cap(&self) -> Option<u16> {
        match self.chosen {
            Some(0) => None,
            Some(cap) => Some(cap),
            None if self.teachers > 0 && self.default_cap > 0 => Some(self.default_cap),
            None => None,
        }
    }

    /// A teacher's choice for the room, if any (`Some(0)`: every cursor).
    pub(super) fn chosen(&self) -> Option<u16> {
        self.chosen
    }

    /// Whether a non-teacher's cursor is shown (a teacher's always is).
    pub(super) fn shows(&self, index: u16) -> bool {
        self.cap().is_none() || self.shown.contains(&index)
    }

    /// A teacher joined; the members this newly shows, if any.
    pub(super) fn teacher_joined(&mut self) -> Vec<u16> {
        self.teachers += 1;
        self.refresh()
    }

    /// A member left (a teacher, or a non-teacher who may have been shown); who is newly shown.
    pub(super) fn left(&mut self, index: u16, teacher: bool) -> Vec<u16> {
        if teacher {
            self.teachers = self.teachers.saturating_sub(1);
        }
        if let Some(start) = self.start_of.remove(&index) {
            self.starts.remove(&start);
        }
        self.shown.remove(&index);
        self.refresh()
    }

    /// A non-teacher's cursor started moving (its first move, or the first since it settled):
    /// it becomes the newest starter.
    pub(super) fn started(&mut self, index: u16) {
        self.next_start += 1;
        if let Some(old) = self.start_of.insert(index, self.next_start) {
            self.starts.remove(&old);
        }
        self.starts.insert(self.next_start, index);
        if let Some(cap) = self.cap()
            && !self.shown.contains(&index)
        {
            // The shown are the `cap` newest starters: the newest is in, the one it pushed
            // past the cap is out.
            self.shown.insert(index);
            if let Some(out) = self.starts.values().rev().nth(usize::from(cap)) {
                self.shown.remove(out);
            }
        }
    }

    /// A teacher's choice for the room (`None`: back to the server's default); who is newly
    /// shown.
    pub(super) fn choose(&mut self, cap: Option<u16>) -> Vec<u16> {
        self.chosen = cap;
        self.refresh()
    }

    /// Recomputes the shown set after the cap or the starters changed; returns who was hidden
    /// and now is shown (their cursors are owed to everyone again).
    fn refresh(&mut self) -> Vec<u16> {
        let Some(cap) = self.cap() else {
            // Uncapped: everyone hidden until now is shown.
            let newly = if self.capped {
                self.starts.values().filter(|i| !self.shown.contains(i)).copied().collect()
            } else {
                Vec::new()
            };
            self.shown.clear();
            self.capped = false;
            return newly;
        };
        let now: HashSet<u16> = self.starts.values().rev().take(usize::from(cap)).copied().collect();
        // Coming from uncapped, everyone shown now was shown already.
        let newly = if self.capped {
            now.iter().filter(|i| !self.shown.contains(i)).copied().collect()
        } else {
            Vec::new()
        };
        self.shown = now;
        self.capped = true;
        newly
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use easel_proto::datagram::{Cursor, CursorEntry};
    use easel_proto::message::{CursorCap, Fault, Role, SetCursorCap};
    use easel_proto::{Datagram, ErrorCode, Message};

    use super::super::testing::{Sim, room};
    use super::super::{Config, Metric, Output};
    use super::*;

    fn cursor(seq: u16, x: i32) -> Cursor {
        Cursor { slot: 0, seq, x, y: 0 }
    }

    /// A room with a cap of 2, `names` joined in order with their roles; the join tick run.
    fn lecture(t0: Instant, names: &[(&str, Role)]) -> (Sim, Vec<u16>) {
        let config = Config { active_cursors: 2, ..Config::default() };
        let mut sim = Sim::new(room(config.clone(), t0));
        sim.room.handle_timeout(t0);
        let members: Vec<u16> = names.iter().map(|(n, role)| sim.join_as(t0, n, *role)).collect();
        sim.advance(t0 + config.tick);
        for m in &members {
            sim.datagrams(*m);
        }
        (sim, members)
    }

    /// Whose cursors (participant, x) reached `to` since the last call.
    fn seen(sim: &mut Sim, to: u16) -> Vec<(u16, i32)> {
        let mut got: Vec<(u16, i32)> = sim
            .datagrams(to)
            .into_iter()
            .filter_map(|d| match d {
                Datagram::CursorBatch(b) => Some(b.cursors),
                _ => None,
            })
            .flatten()
            .filter(|e: &CursorEntry| e.participant != to)
            .map(|e| (e.participant, e.x))
            .collect();
        got.sort_unstable();
        got
    }

    #[test]
    fn the_newest_starters_are_shown_and_steady_movers_keep_their_place() {
        let mut s = Spotlight::new(2);
        assert_eq!(s.cap(), None, "no teacher: every cursor");
        for i in [1, 2, 3] {
            s.started(i);
        }
        assert!(s.shows(1) && s.shows(3));
        assert!(s.teacher_joined().is_empty(), "all were shown until now");
        assert_eq!(s.cap(), Some(2));
        assert!(!s.shows(1) && s.shows(2) && s.shows(3));
        // 2 and 3 keep moving (no new start): nothing changes; 1 starts again: 2 is out.
        s.started(1);
        assert!(s.shows(1) && !s.shows(2) && s.shows(3));
        // A shown one leaves: the newest hidden one takes its place.
        assert_eq!(s.left(3, false), [2]);
        assert!(s.shows(1) && s.shows(2));
        // The last teacher leaves: everyone is shown again.
        s.started(4);
        assert!(!s.shows(2));
        assert_eq!(s.left(99, true), [2]);
        assert!(s.shows(2) && s.shows(4));
    }

    #[test]
    fn a_room_without_a_teacher_shows_every_cursor() {
        let t0 = Instant::now();
        let names =
            [("ada", Role::Student), ("bob", Role::Student), ("cyd", Role::Student), ("dan", Role::Student)];
        let (mut sim, m) = lecture(t0, &names);
        let t1 = t0 + Duration::from_millis(500);
        sim.room.handle_cursors(t1, m[..3].iter().map(|&i| (i, cursor(1, i32::from(i) + 10))));
        assert_eq!(seen(&mut sim, m[3]).len(), 3, "a cap of 2 does not apply without a teacher");
    }

    #[test]
    fn a_lecture_shows_every_teacher_and_the_newest_starters_only() {
        let t0 = Instant::now();
        let names = [
            ("tea", Role::Teacher),
            ("ada", Role::Student),
            ("bob", Role::Student),
            ("cyd", Role::Student),
            ("vic", Role::Viewer),
        ];
        let (mut sim, m) = lecture(t0, &names);
        let (teacher, ada, bob, cyd, viewer) = (m[0], m[1], m[2], m[3], m[4]);
        let t1 = t0 + Duration::from_millis(500);
        for (k, who) in [ada, bob, cyd, teacher].into_iter().enumerate() {
            sim.room.handle_cursor(
                t1 + Duration::from_millis(k as u64 * 20),
                who,
                &cursor(1, 100 + k as i32),
            );
        }
        // Ada's start was pushed past the cap of 2 by Bob's and Cyd's.
        sim.advance(t1 + Duration::from_millis(100));
        let got = seen(&mut sim, viewer);
        assert!(got.contains(&(teacher, 103)), "the teacher is always shown: {got:?}");
        assert!(got.contains(&(bob, 101)) && got.contains(&(cyd, 102)), "{got:?}");
        // Ada keeps moving: kept, counted, never sent.
        sim.room.handle_cursor(t1 + Duration::from_millis(110), ada, &cursor(2, 555));
        let hidden = std::iter::from_fn(|| sim.room.poll_output())
            .filter(|o| matches!(o, Output::Metric(Metric::CursorHidden)))
            .count();
        assert_eq!(hidden, 1);
        sim.advance(t1 + Duration::from_millis(130));
        assert!(!seen(&mut sim, viewer).iter().any(|(p, _)| *p == ada));
        // Bob leaves: Ada takes his place at her newest position.
        sim.room.handle_leave(t1 + Duration::from_millis(140), bob, 0, ErrorCode::Normal);
        sim.advance(t1 + Duration::from_millis(160));
        assert!(seen(&mut sim, viewer).contains(&(ada, 555)));
    }

    #[test]
    fn a_teacher_lifts_the_cap_and_a_student_may_not() {
        let t0 = Instant::now();
        let names =
            [("tea", Role::Teacher), ("ada", Role::Student), ("bob", Role::Student), ("cyd", Role::Student)];
        let (mut sim, m) = lecture(t0, &names);
        let (teacher, ada, bob, cyd) = (m[0], m[1], m[2], m[3]);
        let t1 = t0 + Duration::from_millis(500);
        for (k, who) in [ada, bob, cyd].into_iter().enumerate() {
            sim.room.handle_cursor(t1, who, &cursor(1, 200 + k as i32));
        }
        // Ada's first move went out while she was among the newest two; this one is hidden.
        sim.room.handle_cursor(t1 + Duration::from_millis(10), ada, &cursor(2, 250));
        sim.advance(t1 + Duration::from_millis(50));
        assert!(!seen(&mut sim, teacher).contains(&(ada, 250)), "ada is past the cap");

        let t2 = t1 + Duration::from_millis(60);
        sim.room.handle_class(t2, bob, Message::from(SetCursorCap { cap: Some(0) }));
        let refused = sim.messages(bob);
        assert!(
            refused.iter().any(
                |f| matches!(f, Message::Fault(Fault { code, .. }) if *code == ErrorCode::Forbidden.to_u16())
            ),
            "{refused:?}"
        );
        sim.room.handle_class(t2, teacher, Message::from(SetCursorCap { cap: Some(0) }));
        for to in [ada, bob, cyd] {
            assert!(sim.messages(to).contains(&Message::from(CursorCap { cap: 0, by: teacher })));
        }
        sim.advance(t2 + Duration::from_millis(20));
        assert!(seen(&mut sim, teacher).contains(&(ada, 250)), "the hidden cursor is revealed at once");

        // Back to the server's default: the cap of 2 again.
        sim.room.handle_class(t2, teacher, Message::from(SetCursorCap { cap: None }));
        assert!(sim.messages(ada).contains(&Message::from(CursorCap { cap: 2, by: teacher })));
    }
}
