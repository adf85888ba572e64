//! Cursors and presence: the newest of each member's kept with a room-wide version, and
//! batches that send each member what changed since its last one (SPEC §8). Cursors are
//! paced per receiver: one whose last batch left a pace ago gets a moved cursor at once, the
//! others in their next slot, latest wins; the pace follows the room's size under its datagram
//! budget. Presence goes on the tick. Members at the same marks share one encoding; a member
//! whose datagram buffer is full is skipped and its next batch carries the newest state, never
//! a queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use easel_proto::Datagram;
use easel_proto::datagram::{
    Cursor, CursorBatch, CursorEntry, Heartbeat, PresenceBatch, PresenceEntry, Status, Tool, is_newer,
};

use easel_proto::Message;
use easel_proto::message::{CursorCap, Role};

use super::members::Member;
use super::{Metric, Output, Room};

/// A member's cursor, as last heard.
pub(super) struct CursorState {
    pub(super) seq: u16,
    pub(super) x: i32,
    pub(super) y: i32,
    pub(super) changed: Instant,
    pub(super) settled: bool,
}

/// What one member is sent in a send round: the same for every member with the same slot and
/// marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct BatchKey {
    slot: u16,
    /// Cursor versions after this one; `None`: no cursors (none changed, or not due yet).
    cursors: Option<u64>,
    presence: PresencePart,
}

/// The presence part of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PresencePart {
    /// None (a cursor round between ticks).
    Skip,
    /// Entries changed after this version.
    Since(u64),
    /// Every entry (the periodic refresh).
    All,
}

/// What a batch of `datagrams` costs against the datagram budgets, in thirds of a lone
/// datagram: the first counts whole, each further one two thirds. Why: a member's datagrams
/// of one round go out in one `sendmsg` (segmentation offload); measured on one core, a lone
/// datagram cost the server 12 µs all told (50 clients, 17,400 a second at 21%) and a round
/// of three 1,200-byte ones 31 µs (300 clients, 10,300 rounds at 32%). Budgets stay in
/// datagrams, as the operator reads them; big rooms, whose batches fill several, are paced
/// by what they cost.
fn batch_cost(datagrams: usize) -> u32 {
    let extra = u32::try_from(datagrams.saturating_sub(1)).unwrap_or(u32::MAX);
    3u32.saturating_add(extra.saturating_mul(2))
}

/// A batch's datagrams for one member, encoded once and shared by every member at the same
/// marks.
#[derive(Debug, Clone)]
pub struct DatagramBatch {
    datagrams: Arc<[Bytes]>,
    len: usize,
}

impl DatagramBatch {
    fn new(datagrams: Vec<Bytes>) -> Self {
        let len = datagrams.iter().map(Bytes::len).sum();
        Self { datagrams: datagrams.into(), len }
    }

    /// The datagrams, in order.
    pub fn datagrams(&self) -> &[Bytes] {
        &self.datagrams
    }

    /// Their bytes together: what a member's datagram buffer must have room for.
    pub fn len_bytes(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }
}

impl Room {
    /// A member's cursor datagram: kept if newer than the one held, and sent at once to every
    /// receiver whose pace allows (the others get it in their next slot).
    pub fn handle_cursor(&mut self, now: Instant, member: u16, c: &Cursor) {
        if self.take_cursor(now, member, c) {
            self.cursors_moved(now);
        }
    }

    /// Cursor datagrams that arrived together (the driver's inbox): like
    /// [`Room::handle_cursor`] for each, with one send round for them all.
    pub fn handle_cursors(&mut self, now: Instant, cursors: impl IntoIterator<Item = (u16, Cursor)>) {
        let mut moved = false;
        for (member, c) in cursors {
            moved |= self.take_cursor(now, member, &c);
        }
        if moved {
            self.cursors_moved(now);
        }
    }

    /// A send round now, unless no receiver can be due before the quiet time: then one at it.
    /// In a busy room everyone was sent in the last round, so cursors arriving within a pace
    /// cost no scan of the members.
    pub(super) fn cursors_moved(&mut self, now: Instant) {
        match self.cursors_quiet_until {
            Some(quiet) if now < quiet => {
                self.next_cursors = Some(self.next_cursors.map_or(quiet, |n| n.min(quiet)));
            }
            _ => self.send_round(now, false),
        }
    }

    /// Keeps the cursor if newer than the one held; whether others are owed it (a cursor
    /// hidden by a lecture's cap is kept but not owed).
    fn take_cursor(&mut self, now: Instant, member: u16, c: &Cursor) -> bool {
        // A detached member's cursor can only be a stale one from its lost connection.
        if !self.members.get(&member).is_some_and(Member::is_linked) {
            return false;
        }
        self.heard(now, member);
        let Some(m) = self.members.get_mut(&member) else { return false };
        if m.cursor.as_ref().is_some_and(|old| !is_newer(c.seq, old.seq)) {
            self.metric(Metric::StaleCursor);
            return false;
        }
        self.relay_changed(now, member);
        self.keep_cursor(
            now,
            member,
            CursorState { seq: c.seq, x: c.x, y: c.y, changed: now, settled: false },
        )
    }

    /// Holds a member's newer cursor (a local one's, or another node's member's); whether
    /// others are owed it, which a lecture's cap may hide.
    pub(super) fn keep_cursor(&mut self, now: Instant, member: u16, cursor: CursorState) -> bool {
        let Some(m) = self.members.get_mut(&member) else { return false };
        let starting = m.cursor.as_ref().is_none_or(|old| old.settled);
        m.cursor = Some(cursor);
        if m.info.role != Role::Teacher {
            if starting {
                self.spotlight.started(member);
            }
            if !self.spotlight.shows(member) {
                self.metric(Metric::CursorHidden);
                // Watched to settle all the same, so its next move counts as a start.
                self.schedule_tick(now);
                return false;
            }
        }
        self.bump_cursor(member);
        // The tick watches for the cursor to settle.
        self.schedule_tick(now);
        true
    }

    /// A member joined: a teacher's arrival puts a lecture's default cap in force.
    pub(super) fn spotlight_joined(&mut self, now: Instant, role: Role) {
        if role == Role::Teacher {
            let shown = self.spotlight.teacher_joined();
            self.reveal(now, shown);
        }
    }

    /// A member left: a place under the cap may have freed up, or the cap ended with the last
    /// teacher.
    pub(super) fn spotlight_left(&mut self, now: Instant, index: u16, role: Role) {
        let shown = self.spotlight.left(index, role == Role::Teacher);
        self.reveal(now, shown);
    }

    /// A teacher sets the room's active-cursor cap (`None`: the server's default, `Some(0)`:
    /// none); everyone hears the cap now in force (0: none).
    pub(super) fn set_cursor_cap(&mut self, now: Instant, by: u16, cap: Option<u16>) {
        let shown = self.spotlight.choose(cap);
        self.reveal(now, shown);
        let cap = self.spotlight.cap().unwrap_or(0);
        self.broadcast(None, &Message::from(CursorCap { cap, by }));
    }

    /// Cursors hidden until now are owed to everyone at their newest position.
    fn reveal(&mut self, now: Instant, shown: Vec<u16>) {
        let mut moved = false;
        for index in shown {
            if self.members.get(&index).is_some_and(|m| m.cursor.is_some()) {
                self.bump_cursor(index);
                moved = true;
            }
        }
        if moved {
            self.cursors_moved(now);
        }
    }

    fn bump_cursor(&mut self, index: u16) {
        self.version += 1;
        if let Some(old) = self.cursor_version_of.insert(index, self.version) {
            self.cursor_versions.remove(&old);
        }
        self.cursor_versions.insert(self.version, index);
    }

    /// A member's presence heartbeat: published if newer than its last one and its status or
    /// tool changed. A detached member has no connection: a heartbeat for it is a stale one
    /// from the lost connection, and must not undo its away state.
    pub fn handle_heartbeat(&mut self, now: Instant, member: u16, h: &Heartbeat) {
        if !self.members.get(&member).is_some_and(Member::is_linked) {
            return;
        }
        self.heard(now, member);
        let Some(m) = self.members.get_mut(&member) else { return };
        if m.heard.is_some_and(|seq| !is_newer(h.seq, seq)) {
            return;
        }
        m.heard = Some(h.seq);
        self.publish_presence(now, member, h.status, h.tool);
    }

    /// Makes `status` and `tool` the member's presence, if they changed: everyone gets it on
    /// the next tick. The room numbers each member's entries itself, +1 per published state,
    /// rather than copying the heartbeat's `seq`: entries it writes for the member (away while
    /// detached, back on a resume) and the member's own then follow one order, and receivers
    /// take each as newer (SPEC §8.2, §8.4).
    pub(super) fn publish_presence(&mut self, now: Instant, member: u16, status: Status, tool: Tool) {
        let Some(m) = self.members.get_mut(&member) else { return };
        if m.presence.is_some_and(|p| p.status == status && p.tool == tool) {
            return;
        }
        let seq = m.presence.map_or(1, |p| p.seq.wrapping_add(1));
        m.presence = Some(PresenceEntry { participant: member, seq, status, tool });
        self.bump_presence(member);
        self.relay_changed(now, member);
        self.schedule_tick(now);
    }

    fn bump_presence(&mut self, index: u16) {
        self.version += 1;
        if let Some(old) = self.presence_version_of.insert(index, self.version) {
            self.presence_versions.remove(&old);
        }
        self.presence_versions.insert(self.version, index);
    }

    /// The tick: cursors that stopped a while ago are sent once more (settle), then a send
    /// round with presence.
    pub(super) fn tick(&mut self, now: Instant) {
        self.last_tick = now;
        let settle: Vec<u16> = self
            .members
            .iter()
            .filter(|(_, m)| {
                m.cursor
                    .as_ref()
                    .is_some_and(|c| !c.settled && now.duration_since(c.changed) >= self.config.settle)
            })
            .map(|(i, _)| *i)
            .collect();
        for index in settle {
            let Some(m) = self.members.get_mut(&index) else { continue };
            if let Some(c) = m.cursor.as_mut() {
                c.settled = true;
            }
            // A detached member's pointer is hidden: repeating it would bring a ghost back.
            if m.shows_pointer() && (m.info.role == Role::Teacher || self.spotlight.shows(index)) {
                self.bump_cursor(index);
            }
        }
        self.send_round(now, true);
        if self.members.values().any(|m| m.cursor.as_ref().is_some_and(|c| !c.settled)) {
            self.schedule_tick(now);
        }
    }

    /// One send round: each linked member owed cursors and due (its last cursor batch left a
    /// pace ago) gets those changed since its last batch; on a tick (`presence`), each also
    /// gets the presence changed since its last one (or all of it, for a refresh). Marks move
    /// on now; a skip reported back ([`Room::congested`]) puts them back. Then the pace is
    /// recomputed and the next due member noted for [`Room::poll_timeout`].
    pub(super) fn send_round(&mut self, now: Instant, presence: bool) {
        let refresh = presence
            && self
                .last_presence_refresh
                .is_none_or(|t| now.duration_since(t) >= self.config.presence_refresh);
        if refresh {
            self.last_presence_refresh = Some(now);
        }
        let version = self.version;
        let cursor_top = self.cursor_versions.last_key_value().map_or(0, |(v, _)| *v);
        let presence_top = self.presence_versions.last_key_value().map_or(0, |(v, _)| *v);
        let pace = self.pace;

        // Who gets what. `None`: only its own cursor changed, which it is not sent alone (a
        // batch may carry it, and receivers ignore it: SPEC §8.3); its mark moves on.
        let mut plan = std::mem::take(&mut self.plan);
        plan.clear();
        let mut next: Option<Instant> = None;
        let mut receivers = 0u32;
        for (&to, m) in &self.members {
            let Some(slot) = m.slot() else { continue };
            receivers += 1;
            let mut cursors = None;
            if m.cursor_mark < cursor_top {
                let own_only = self
                    .cursor_versions
                    .range(m.cursor_mark + 1..)
                    .next()
                    .is_some_and(|(v, i)| *i == to && *v == cursor_top);
                if own_only {
                    plan.push((to, None));
                } else {
                    match m.last_sent.map(|t| t + pace).filter(|due| *due > now) {
                        Some(due) => next = Some(next.map_or(due, |n| n.min(due))),
                        None => cursors = Some(m.cursor_mark),
                    }
                }
            }
            let presence = if refresh {
                PresencePart::All
            } else if presence && m.presence_mark < presence_top {
                PresencePart::Since(m.presence_mark)
            } else {
                PresencePart::Skip
            };
            if cursors.is_some() || presence != PresencePart::Skip {
                plan.push((to, Some(BatchKey { slot, cursors, presence })));
            }
        }

        // Members at the same marks get the same batches: each distinct batch is built and
        // encoded once per round and its bytes shared. In a busy room everyone is sent in
        // the same rounds, so one encoding serves the whole class.
        let mut encoded = std::mem::take(&mut self.encoded);
        encoded.clear();
        let mut per_batch = 0usize;
        for &(to, key) in &plan {
            let Some(key) = key else {
                if let Some(m) = self.members.get_mut(&to) {
                    m.cursor_mark = version;
                }
                continue;
            };
            let batch = match encoded.get(&key) {
                Some(batch) => batch.clone(),
                None => encoded.entry(key).or_insert_with(|| self.encode(key)).clone(),
            };
            let Some(m) = self.members.get_mut(&to) else { continue };
            m.marks_before = (m.cursor_mark, m.presence_mark);
            if key.cursors.is_some() {
                m.cursor_mark = version;
            }
            if key.presence != PresencePart::Skip {
                m.presence_mark = version;
            }
            if batch.is_empty() {
                continue;
            }
            if key.cursors.is_some() {
                m.last_sent = Some(now);
                per_batch = per_batch.max(batch.datagrams().len());
            }
            self.push(Output::Datagrams { to, batch });
        }
        self.encoded = encoded;
        self.plan = plan;
        self.next_cursors = next;
        if per_batch > 0 {
            self.pace = self.pace_for(receivers.saturating_mul(batch_cost(per_batch)));
            self.cursor_round = Some((now, receivers));
        }
        // The earliest any linked receiver can be due again; none while one was never sent.
        let pace = self.pace;
        self.cursors_quiet_until = self
            .members
            .values()
            .filter(|m| m.slot().is_some())
            .try_fold(None, |quiet: Option<Instant>, m| {
                let due = m.last_sent? + pace;
                Some(Some(quiet.map_or(due, |q| q.min(due))))
            })
            .flatten();
    }

    /// The pace at which a round costing `thirds` (of a lone datagram, see [`batch_cost`])
    /// keeps the room within its budget (between the shortest pace and the floor, the tick)
    /// and within its share of the server's (which may go past the tick, up to the slowest
    /// pace).
    fn pace_for(&self, thirds: u32) -> Duration {
        let over = |budget: u32| Duration::from_secs(1) * thirds / budget.max(1).saturating_mul(3);
        let own = over(self.config.datagram_budget).min(self.config.tick);
        let shared = self.budget_share.map_or(Duration::ZERO, |s| over(s).min(self.config.slowest_pace));
        own.max(shared).max(self.config.min_pace)
    }

    /// How long a member's writer may hold broadcasts for its next cursor batch (see
    /// `handle::BroadcastGap`): the cursor pace while cursor batches go out, the shortest pace
    /// once they have stopped for two paces. Why: the pace is kept from the last round, and a
    /// big room whose cursors stopped would otherwise hold every edit echo and chat message a
    /// whole (budget-stretched) pace for a batch that never comes.
    pub fn broadcast_gap(&self, now: Instant) -> Duration {
        match self.cursor_round {
            Some((at, _)) if now.saturating_duration_since(at) < self.pace * 2 => self.pace,
            _ => self.config.min_pace,
        }
    }

    /// The room's share of the server-wide datagram budget (`None`: no limit), from the next
    /// send round on.
    pub fn set_budget_share(&mut self, share: Option<u32>) {
        self.budget_share = share;
    }

    /// How many receivers this room's moving cursors reach, for its claim on the server's
    /// budget: those of its last round with cursors, if that was less than a second ago.
    pub fn busy_receivers(&self, now: Instant) -> u32 {
        self.cursor_round
            .filter(|(at, _)| now.saturating_duration_since(*at) < Duration::from_secs(1))
            .map_or(0, |(_, receivers)| receivers)
    }

    /// The datagrams of one batch: cursors changed after `key.cursors`, presence changed
    /// after `key.presence` (or all of it, for a refresh).
    fn encode(&self, key: BatchKey) -> DatagramBatch {
        let cursors: Vec<CursorEntry> = match key.cursors {
            None => Vec::new(),
            Some(mark) => self
                .cursor_versions
                .range(mark + 1..)
                .filter_map(|(_, i)| {
                    let c = self.members.get(i)?.cursor.as_ref()?;
                    Some(CursorEntry { participant: *i, seq: c.seq, x: c.x, y: c.y })
                })
                .collect(),
        };
        let presence: Vec<PresenceEntry> = match key.presence {
            PresencePart::Skip => Vec::new(),
            PresencePart::All => self.members.values().filter_map(|m| m.presence).collect(),
            PresencePart::Since(mark) => self
                .presence_versions
                .range(mark + 1..)
                .filter_map(|(_, i)| self.members.get(i)?.presence)
                .collect(),
        };
        let datagrams = CursorBatch::split(key.slot, &cursors)
            .map(Datagram::from)
            .chain(PresenceBatch::split(key.slot, &presence).map(Datagram::from))
            .filter_map(|d| d.encode().ok().map(Bytes::from))
            .collect();
        DatagramBatch::new(datagrams)
    }

    /// The member's last batch was skipped (its datagram buffer was full): its marks go back,
    /// so its next batch carries everything newer — cursors a pace after the skipped one
    /// (its slot was spent), presence on the next tick.
    pub(super) fn congested(&mut self, index: u16) {
        let Some(member) = self.members.get_mut(&index) else { return };
        let (cursor_mark, presence_mark) = member.marks_before;
        let cursors_back = cursor_mark != member.cursor_mark;
        let presence_back = presence_mark != member.presence_mark;
        (member.cursor_mark, member.presence_mark) = member.marks_before;
        if cursors_back && let Some(t) = member.last_sent {
            let due = t + self.pace;
            self.next_cursors = Some(self.next_cursors.map_or(due, |n| n.min(due)));
        }
        if presence_back {
            self.schedule_tick(self.last_tick);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::Config;
    use super::super::testing::{Sim, room};
    use super::*;

    fn cursor(seq: u16, x: i32) -> Cursor {
        Cursor { slot: 0, seq, x, y: 0 }
    }

    const MS: Duration = Duration::from_millis(1);

    /// A room whose start-up housekeeping is done, with `names` joined and the join tick run:
    /// nothing is due before the next housekeeping.
    fn quiet(config: Config, t0: Instant, names: &[&str]) -> (Sim, Vec<u16>) {
        let mut sim = Sim::new(room(config.clone(), t0));
        sim.room.handle_timeout(t0);
        let members: Vec<u16> =
            names.iter().map(|n| sim.join_with(t0, n, 0, None, 4096).participant).collect();
        sim.advance(t0 + config.tick);
        for m in &members {
            sim.datagrams(*m);
        }
        (sim, members)
    }

    /// The cursor batches (datagrams) sent to the member since the last call.
    fn batches(sim: &mut Sim, member: u16) -> Vec<Vec<CursorEntry>> {
        sim.datagrams(member)
            .into_iter()
            .filter_map(|d| match d {
                Datagram::CursorBatch(b) => Some(b.cursors),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_lone_cursor_in_a_quiet_room_goes_out_at_once() {
        let t0 = Instant::now();
        let (mut sim, m) = quiet(Config::default(), t0, &["ada", "bob", "cyd"]);
        let (a, b, c) = (m[0], m[1], m[2]);
        let t1 = t0 + Duration::from_millis(500);
        sim.room.handle_cursor(t1, a, &cursor(1, 10));
        // Same drain, no timeout run: no tick to wait for.
        for to in [b, c] {
            let got = sim.cursors(to);
            assert_eq!(got.iter().map(|e| (e.participant, e.seq, e.x)).collect::<Vec<_>>(), [(a, 1, 10)]);
        }
        assert!(sim.cursors(a).is_empty(), "its own cursor alone is not echoed to the mover");
    }

    #[test]
    fn cursors_are_coalesced_per_slot_newest_wins() {
        let t0 = Instant::now();
        let config = Config::default();
        let (mut sim, m) = quiet(config.clone(), t0, &["ada", "bob"]);
        let (a, b) = (m[0], m[1]);
        let t1 = t0 + Duration::from_millis(100);
        for (seq, x) in [(1, 10), (2, 20), (3, 30)] {
            sim.room.handle_cursor(t1, a, &cursor(seq, x));
        }
        // The first went at once; the next two wait for B's next slot, where only the newest goes.
        assert_eq!(sim.cursors(b).iter().map(|c| (c.seq, c.x)).collect::<Vec<_>>(), [(1, 10)]);
        // An older datagram arriving late changes nothing.
        sim.room.handle_cursor(t1, a, &cursor(2, 999));
        assert!(matches!(sim.room.poll_output(), Some(Output::Metric(Metric::StaleCursor))));
        sim.advance(t1 + config.min_pace);
        let got = sim.cursors(b);
        assert_eq!(got.len(), 1, "one entry per cursor per slot");
        assert_eq!((got[0].participant, got[0].seq, got[0].x), (a, 3, 30));
        assert!(sim.cursors(a).is_empty());
        // Nothing changed: nothing more is sent until the cursor settles.
        sim.advance(t1 + Duration::from_millis(100));
        assert!(sim.cursors(b).is_empty());
        // Once settled, the last position is repeated once (repairs a lost final datagram).
        sim.advance(t1 + Duration::from_millis(200));
        assert_eq!(sim.cursors(b).iter().map(|c| c.x).collect::<Vec<_>>(), [30]);
        sim.advance(t1 + Duration::from_millis(400));
        assert!(sim.cursors(b).is_empty());
    }

    #[test]
    fn broadcasts_wait_for_a_ride_only_while_cursor_batches_go_out() {
        let t0 = Instant::now();
        let config = Config { min_pace: MS, datagram_budget: 200, ..Config::default() };
        let (mut sim, m) = quiet(config.clone(), t0, &["ada", "bob", "cyd"]);
        assert_eq!(sim.room.broadcast_gap(t0), config.min_pace, "no cursors yet");
        let t1 = t0 + Duration::from_millis(100);
        sim.room.handle_cursor(t1, m[0], &cursor(1, 1));
        sim.advance(t1);
        // A round to three receivers within 200 datagrams a second: one every 15 ms.
        let pace = sim.room.broadcast_gap(t1);
        assert_eq!(pace, 15 * MS, "batches are going out: hold for the next");
        assert_eq!(sim.room.broadcast_gap(t1 + pace), pace);
        assert_eq!(sim.room.broadcast_gap(t1 + 2 * pace), config.min_pace, "the cursors stopped");
    }

    #[test]
    fn a_burst_within_one_pace_is_coalesced_into_one_batch_per_receiver() {
        let t0 = Instant::now();
        let config = Config { min_pace: 5 * MS, ..Config::default() };
        let (mut sim, m) = quiet(config, t0, &["ada", "bob", "cyd", "dan"]);
        let (a, b, c, d) = (m[0], m[1], m[2], m[3]);
        let t1 = t0 + Duration::from_millis(100);
        // Opens everyone's slot: each is sent these at once.
        sim.room.handle_cursors(t1, [(a, cursor(100, 1)), (d, cursor(1, 1))]);
        for to in [a, b, c, d] {
            assert_eq!(batches(&mut sim, to).len(), 1);
        }
        // A burst from three senders within the pace.
        for step in 1..=4u16 {
            let at = t1 + MS * u32::from(step);
            for (who, base) in [(a, 100), (b, 200), (c, 300)] {
                sim.room.handle_cursor(at, who, &cursor(step + 100, base + i32::from(step)));
            }
        }
        for to in [a, b, c, d] {
            assert!(sim.datagrams(to).is_empty(), "nothing before the next slot");
        }
        assert_eq!(sim.room.poll_timeout(), Some(t1 + 5 * MS), "the next slot is due a pace after the last");
        sim.advance(t1 + 5 * MS);
        for to in [a, b, c, d] {
            let got = batches(&mut sim, to);
            assert_eq!(got.len(), 1, "one batch for the whole burst");
            let mut others: Vec<(u16, u16, i32)> =
                got[0].iter().filter(|e| e.participant != to).map(|e| (e.participant, e.seq, e.x)).collect();
            others.sort_unstable();
            let want: Vec<(u16, u16, i32)> =
                [(a, 104, 104), (b, 104, 204), (c, 104, 304)].into_iter().filter(|e| e.0 != to).collect();
            assert_eq!(others, want, "only the newest positions");
        }
    }

    /// Inputs every 0.5 ms, round-robin among the members, for two virtual seconds; the
    /// second is counted.
    fn run(members: usize, budget: u32, tick: Duration) -> (usize, Duration) {
        run_shared(members, budget, tick, None).0
    }

    /// `members` moving their cursors every 0.5 ms in turn (see above) under `budget` and the
    /// server budget's `share`: datagrams in the second second, the pace, and the receivers
    /// the room claims at the end and a second after.
    fn run_shared(
        members: usize,
        budget: u32,
        tick: Duration,
        share: Option<u32>,
    ) -> ((usize, Duration), [u32; 2]) {
        {
            let t0 = Instant::now();
            let config = Config { datagram_budget: budget, tick, ..Config::default() };
            let names: Vec<String> = (0..members).map(|i| format!("u{i}")).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let (mut sim, m) = quiet(config, t0, &names);
            sim.room.set_budget_share(share);
            let start = t0 + Duration::from_secs(1);
            let (from, to) = (start + Duration::from_secs(1), start + Duration::from_secs(2));
            let mut count = 0;
            let mut seq = 0u16;
            let mut at = start;
            while at < to {
                if at == from {
                    sim.advance(at - Duration::from_nanos(1));
                    for who in &m {
                        sim.datagrams(*who);
                    }
                }
                sim.advance(at);
                let who = m[usize::from(seq) % m.len()];
                seq = seq.wrapping_add(1);
                sim.room.handle_cursor(at, who, &cursor(seq / m.len() as u16 + 1, i32::from(seq)));
                at += MS / 2;
            }
            sim.advance(to - Duration::from_nanos(1));
            for who in &m {
                count += sim.datagrams(*who).len();
            }
            let busy = [sim.room.busy_receivers(to), sim.room.busy_receivers(to + Duration::from_secs(1))];
            ((count, sim.room.pace), busy)
        }
    }

    #[test]
    fn the_room_stays_within_its_datagram_budget() {
        // 40 receivers under a 2,000/s budget: a 20 ms pace, above the floor.
        let tick = Duration::from_secs(1) / 30;
        let (sent, pace) = run(40, 2000, tick);
        assert_eq!(pace, 20 * MS);
        assert!(sent <= 2000, "{sent} datagrams in a second, over the budget");
        assert!(sent >= 1900, "{sent}: the budget is used");
        // 200 receivers would need a 100 ms pace: the floor (30 Hz) holds instead.
        let (sent, pace) = run(200, 2000, tick);
        assert_eq!(pace, tick);
        assert!(sent <= 200 * 30, "{sent} datagrams in a second, over the floor rate");
    }

    #[test]
    fn batches_of_several_datagrams_are_paced_by_what_they_cost() {
        // 150 receivers of 149 moving cursors: two datagrams a batch (at most 98 entries
        // each), which cost one and two thirds of a lone datagram against the budget.
        let (sent, pace) = run(150, 3_000, Duration::from_millis(200));
        assert_eq!(pace, Duration::from_secs(1) * 150 * 5 / (3 * 3_000));
        // Counted whole, two datagrams a batch would have held them to 3,000 a second.
        assert!((3_300..=3_750).contains(&sent), "{sent} datagrams in a second");
    }

    #[test]
    fn a_share_of_the_server_budget_slows_a_busy_room_past_the_tick() {
        let tick = Duration::from_secs(1) / 60;
        // 40 receivers, one datagram a batch: its own budget alone paces them at 4 ms.
        let ((sent, pace), busy) = run_shared(40, 10_000, tick, Some(1_000));
        assert_eq!(pace, 40 * MS, "40 receivers on a share of 1,000 a second");
        assert!(sent <= 1_000, "{sent} datagrams in a second, over the share");
        assert!(sent >= 950, "{sent}: the share is used");
        assert_eq!(busy, [40, 0], "it claims its receivers while its cursors move, and no longer");
        // A share too small for 10 batches a second each: the slowest pace holds instead.
        let ((sent, pace), _) = run_shared(40, 10_000, tick, Some(100));
        assert_eq!(pace, Config::default().slowest_pace);
        assert!(sent <= 40 * 10, "{sent} datagrams in a second, over 10 a second each");
        // A share larger than the room's own budget changes nothing.
        let ((_, pace), _) = run_shared(40, 2_000, Duration::from_secs(1) / 30, Some(50_000));
        assert_eq!(pace, 20 * MS);
    }

    #[test]
    fn a_congested_receiver_gets_fewer_fresher_batches() {
        let t0 = Instant::now();
        let config = Config { min_pace: 2 * MS, ..Config::default() };
        let (mut sim, m) = quiet(config, t0, &["ada", "bob", "cyd"]);
        let (a, b, c) = (m[0], m[1], m[2]);
        let t1 = t0 + Duration::from_millis(100);
        sim.set_space(c, 0);
        let mut at = t1;
        let mut seq = 0u16;
        while at < t1 + Duration::from_millis(50) {
            sim.advance(at);
            seq += 1;
            sim.room.handle_cursor(at, a, &cursor(seq, i32::from(seq)));
            at += MS / 4;
        }
        sim.advance(at);
        let healthy = batches(&mut sim, b).len();
        assert!(batches(&mut sim, c).is_empty(), "no room in the send buffer: skipped, not queued");
        let skipped = sim.skipped(c);
        assert!(skipped > 0 && skipped <= healthy, "tried at most once a pace: {skipped} vs {healthy}");
        assert!(healthy <= 26, "one batch a pace: {healthy}");
        sim.set_space(c, 64 * 1024);
        sim.advance(at + Duration::from_millis(2));
        let got = batches(&mut sim, c);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].iter().map(|e| e.seq).collect::<Vec<_>>(), [seq], "only the newest position");
    }

    #[test]
    fn a_skipped_subscriber_is_retried_a_pace_later() {
        let t0 = Instant::now();
        let config = Config { min_pace: 4 * MS, ..Config::default() };
        let (mut sim, m) = quiet(config, t0, &["ada", "bob"]);
        let (a, b) = (m[0], m[1]);
        let t1 = t0 + Duration::from_millis(100);
        sim.set_space(b, 0);
        sim.room.handle_cursor(t1, a, &cursor(1, 1));
        assert_eq!(sim.skipped(b), 1);
        assert_eq!(sim.room.next_cursors, Some(t1 + 4 * MS), "retried a pace later, not at once");
        sim.set_space(b, 64 * 1024);
        sim.room.handle_cursor(t1 + MS, a, &cursor(2, 2));
        assert!(sim.cursors(b).is_empty(), "its slot was spent on the skipped batch");
        sim.advance(t1 + 4 * MS);
        assert_eq!(sim.cursors(b).iter().map(|c| c.seq).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn a_300_cursor_batch_splits_at_the_mtu() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let members: Vec<u16> =
            (0..301).map(|i| sim.join_with(t0, &format!("u{i}"), 0, None, 1024).participant).collect();
        sim.room.handle_cursors(t0, members[1..].iter().map(|m| (*m, cursor(1, 5))));
        let datagrams = sim.datagrams(members[0]);
        let batches: Vec<usize> = datagrams
            .iter()
            .filter_map(|d| match d {
                Datagram::CursorBatch(b) => Some(b.cursors.len()),
                _ => None,
            })
            .collect();
        assert_eq!(batches.iter().sum::<usize>(), 300);
        assert_eq!(batches.len(), 300usize.div_ceil(CursorBatch::MAX_ENTRIES));
        assert!(
            datagrams
                .iter()
                .all(|d| d.encode().expect("encode").len() <= easel_proto::limits::MAX_DATAGRAM_LEN)
        );
    }

    #[test]
    fn members_at_the_same_marks_share_one_encoding() {
        let t0 = Instant::now();
        let (mut sim, m) = quiet(Config::default(), t0, &["ada", "bob", "cyd"]);
        let (a, b, c) = (m[0], m[1], m[2]);
        sim.room.handle_cursors(t0, [(a, cursor(1, 1)), (b, cursor(1, 2))]);
        let batches: Vec<(u16, DatagramBatch)> = std::iter::from_fn(|| sim.room.poll_output())
            .filter_map(|o| match o {
                Output::Datagrams { to, batch } => Some((to, batch)),
                _ => None,
            })
            .collect();
        assert_eq!(batches.iter().map(|(to, _)| *to).collect::<Vec<_>>(), [a, b, c]);
        assert!(batches.windows(2).all(|w| Arc::ptr_eq(&w[0].1.datagrams, &w[1].1.datagrams)));
    }

    #[test]
    fn poll_timeout_reports_the_next_due_send() {
        let t0 = Instant::now();
        let config = Config::default();
        let (mut sim, m) = quiet(config.clone(), t0, &["ada", "bob"]);
        let (a, b) = (m[0], m[1]);
        assert_eq!(sim.room.poll_timeout(), Some(t0 + Duration::from_secs(1)), "only housekeeping");
        let t1 = t0 + Duration::from_millis(20);
        sim.room.handle_cursor(t1, a, &cursor(1, 1));
        assert_eq!(sim.cursors(b).len(), 1);
        assert_eq!(sim.room.poll_timeout(), Some(t1 + config.tick), "the tick that watches it settle");
        let t2 = t1 + Duration::from_micros(100);
        sim.room.handle_cursor(t2, a, &cursor(2, 2));
        assert!(sim.cursors(b).is_empty());
        let due = t1 + sim.room.pace;
        assert!(due < t1 + config.tick);
        assert_eq!(sim.room.poll_timeout(), Some(due), "B's next slot");
        sim.room.handle_timeout(due);
        assert_eq!(sim.cursors(b).iter().map(|c| c.seq).collect::<Vec<_>>(), [2]);
        assert_eq!(sim.room.poll_timeout(), Some(t1 + config.tick));
    }
}
