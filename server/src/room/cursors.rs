//! Cursors and presence: the newest of each member's kept with a room-wide version, and a
//! tick that sends each member what changed since its last batch (SPEC §8). Members at the
//! same marks share one encoding; a member whose datagram buffer is full is skipped and its
//! next batch carries the newest state, never a queue.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use easel_proto::Datagram;
use easel_proto::datagram::{
    Cursor, CursorBatch, CursorEntry, Heartbeat, PresenceBatch, PresenceEntry, is_newer,
};

use super::{Metric, Output, Room};

/// A member's cursor, as last heard.
pub(super) struct CursorState {
    pub(super) seq: u16,
    pub(super) x: i32,
    pub(super) y: i32,
    pub(super) changed: Instant,
    pub(super) settled: bool,
}

/// What one member is sent in a tick: the same for every member with the same slot and marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct BatchKey {
    slot: u16,
    /// Cursor versions after this one.
    cursors: u64,
    /// Presence versions after this one; `None`: every entry (the periodic refresh).
    presence: Option<u64>,
}

/// A tick's datagrams for one member, encoded once and shared by every member at the same
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
    /// A member's cursor datagram: kept if newer than the one held, and a tick asked for.
    pub fn handle_cursor(&mut self, now: Instant, member: u16, c: &Cursor) {
        let Some(m) = self.members.get_mut(&member) else { return };
        m.last_seen = now;
        if m.cursor.as_ref().is_some_and(|old| !is_newer(c.seq, old.seq)) {
            self.metric(Metric::StaleCursor);
            return;
        }
        m.cursor = Some(CursorState { seq: c.seq, x: c.x, y: c.y, changed: now, settled: false });
        self.bump_cursor(member);
        self.schedule_tick(now);
    }

    fn bump_cursor(&mut self, index: u16) {
        self.version += 1;
        if let Some(old) = self.cursor_version_of.insert(index, self.version) {
            self.cursor_versions.remove(&old);
        }
        self.cursor_versions.insert(self.version, index);
    }

    /// A member's presence heartbeat: a tick is asked for when its status or tool changed.
    pub fn handle_heartbeat(&mut self, now: Instant, member: u16, h: &Heartbeat) {
        let Some(m) = self.members.get_mut(&member) else { return };
        m.last_seen = now;
        let entry = PresenceEntry { participant: member, seq: h.seq, status: h.status, tool: h.tool };
        match &m.presence {
            Some(old) if !is_newer(h.seq, old.seq) => return,
            Some(old) if old.status == entry.status && old.tool == entry.tool => {
                m.presence = Some(entry);
                return;
            }
            _ => m.presence = Some(entry),
        }
        self.bump_presence(member);
        self.schedule_tick(now);
    }

    fn bump_presence(&mut self, index: u16) {
        self.version += 1;
        if let Some(old) = self.presence_version_of.insert(index, self.version) {
            self.presence_versions.remove(&old);
        }
        self.presence_versions.insert(self.version, index);
    }

    /// One tick: each linked member gets the cursors and presence that changed since what it
    /// was last sent, as few datagrams as fit. Its marks move on now; a skip reported back
    /// ([`Room::congested`]) puts them back.
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
            if let Some(c) = self.members.get_mut(&index).and_then(|m| m.cursor.as_mut()) {
                c.settled = true;
            }
            self.bump_cursor(index);
        }
        let refresh =
            self.last_presence_refresh.is_none_or(|t| now.duration_since(t) >= self.config.presence_refresh);
        if refresh {
            self.last_presence_refresh = Some(now);
        }

        // Members that were last sent the same versions get the same batches: each distinct
        // batch is built and encoded once per tick and its bytes shared (a batch may carry the
        // receiver's own cursor, which receivers ignore: SPEC §8.3). In a busy room everyone
        // is at the same mark, so one encoding serves the whole class.
        let mut encoded = std::mem::take(&mut self.encoded);
        encoded.clear();
        let version = self.version;
        let indices: Vec<u16> = self.members.keys().copied().collect();
        for to in indices {
            let Some(member) = self.members.get(&to) else { continue };
            let Some(slot) = member.slot() else { continue };
            let key = BatchKey {
                slot,
                cursors: member.cursor_mark,
                presence: (!refresh).then_some(member.presence_mark),
            };
            let batch = match encoded.get(&key) {
                Some(batch) => batch.clone(),
                None => encoded.entry(key).or_insert_with(|| self.encode(key)).clone(),
            };
            if batch.is_empty() {
                continue;
            }
            if let Some(member) = self.members.get_mut(&to) {
                member.marks_before = (member.cursor_mark, member.presence_mark);
                member.cursor_mark = version;
                member.presence_mark = version;
            }
            self.push(Output::Datagrams { to, batch });
        }
        self.encoded = encoded;
        if self.members.values().any(|m| m.cursor.as_ref().is_some_and(|c| !c.settled)) {
            self.schedule_tick(now);
        }
    }

    /// The datagrams of one batch: cursors changed after `key.cursors`, presence changed
    /// after `key.presence` (or all of it, for a refresh).
    fn encode(&self, key: BatchKey) -> DatagramBatch {
        let cursors: Vec<CursorEntry> = self
            .cursor_versions
            .range(key.cursors + 1..)
            .filter_map(|(_, i)| {
                let c = self.members.get(i)?.cursor.as_ref()?;
                Some(CursorEntry { participant: *i, seq: c.seq, x: c.x, y: c.y })
            })
            .collect();
        let presence: Vec<PresenceEntry> = match key.presence {
            None => self.members.values().filter_map(|m| m.presence).collect(),
            Some(mark) => self
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
    /// so its next batch, a tick later, carries everything newer.
    pub(super) fn congested(&mut self, index: u16) {
        let Some(member) = self.members.get_mut(&index) else { return };
        (member.cursor_mark, member.presence_mark) = member.marks_before;
        self.schedule_tick(self.last_tick);
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

    #[test]
    fn cursors_are_coalesced_per_tick_newest_wins() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let a = sim.join(t0, "ada");
        let b = sim.join(t0, "bob");
        for (seq, x) in [(1, 10), (2, 20), (3, 30)] {
            sim.room.handle_cursor(t0, a, &cursor(seq, x));
        }
        sim.drain();
        // An older datagram arriving late changes nothing.
        sim.room.handle_cursor(t0, a, &cursor(2, 999));
        assert!(matches!(sim.room.poll_output(), Some(Output::Metric(Metric::StaleCursor))));
        sim.tick(t0);
        let got = sim.cursors(b);
        assert_eq!(got.len(), 1, "one entry per cursor per tick");
        assert_eq!((got[0].participant, got[0].seq, got[0].x), (a, 3, 30));
        // A's batch is B's batch: it may carry A's own entry, which receivers ignore.
        assert!(sim.cursors(a).iter().all(|c| c.participant == a));
        // Nothing changed: the next tick sends nothing.
        sim.tick(t0 + Duration::from_millis(16));
        assert!(sim.cursors(b).is_empty());
        // Once settled, the last position is repeated once (repairs a lost final datagram).
        sim.tick(t0 + Duration::from_millis(200));
        assert_eq!(sim.cursors(b).iter().map(|c| c.x).collect::<Vec<_>>(), [30]);
        sim.tick(t0 + Duration::from_millis(400));
        assert!(sim.cursors(b).is_empty());
    }

    #[test]
    fn a_slow_subscriber_gets_fewer_fresher_frames() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let a = sim.join(t0, "ada");
        let b = sim.join(t0, "bob");
        sim.set_space(b, 0);
        for seq in 1..=10u16 {
            let now = t0 + Duration::from_millis(u64::from(seq) * 16);
            sim.room.handle_cursor(now, a, &cursor(seq, i32::from(seq)));
            sim.tick(now);
        }
        assert!(sim.datagrams(b).is_empty(), "no room in the send buffer: skipped, not queued");
        sim.set_space(b, 64 * 1024);
        sim.tick(t0 + Duration::from_millis(176));
        let got = sim.cursors(b);
        assert_eq!(got.iter().map(|c| c.seq).collect::<Vec<_>>(), [10], "only the newest position");
    }

    #[test]
    fn a_skipped_subscriber_is_retried_a_tick_later() {
        let t0 = Instant::now();
        let config = Config::default();
        let mut sim = Sim::new(room(config.clone(), t0));
        let a = sim.join(t0, "ada");
        let b = sim.join(t0, "bob");
        sim.set_space(b, 0);
        sim.room.handle_cursor(t0, a, &cursor(1, 1));
        sim.tick(t0);
        // Settled already, so only the skip asks for another tick.
        let later = t0 + config.settle;
        sim.tick(later);
        assert_eq!(sim.room.next_tick, Some(later + config.tick));
    }

    #[test]
    fn a_300_cursor_tick_splits_at_the_mtu() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let members: Vec<u16> =
            (0..301).map(|i| sim.join_with(t0, &format!("u{i}"), 0, None, 1024).participant).collect();
        for m in &members[1..] {
            sim.room.handle_cursor(t0, *m, &cursor(1, 5));
        }
        sim.tick(t0);
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
        let mut sim = Sim::new(room(Config::default(), t0));
        let a = sim.join(t0, "ada");
        let b = sim.join(t0, "bob");
        let c = sim.join(t0, "cyd");
        sim.drain();
        sim.room.handle_cursor(t0, a, &cursor(1, 1));
        sim.room.handle_timeout(t0 + Config::default().tick);
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
    fn poll_timeout_reports_the_next_tick_after_a_cursor_moves() {
        let t0 = Instant::now();
        let config = Config::default();
        let mut sim = Sim::new(room(config.clone(), t0));
        let a = sim.join(t0, "ada");
        sim.tick(t0);
        sim.room.handle_timeout(t0);
        sim.drain();
        assert_eq!(sim.room.poll_timeout(), Some(t0 + Duration::from_secs(1)), "only housekeeping");
        let t1 = t0 + Duration::from_millis(5);
        sim.room.handle_cursor(t1, a, &cursor(1, 1));
        assert_eq!(sim.room.poll_timeout(), Some(t1 + config.tick));
    }
}
