//! The server-wide datagram budget (`--datagram-budget`): what the cursor batches of every
//! room may cost together. A room whose cursors are moving claims a share in proportion to
//! its receivers, and its pace follows from that share as from its own budget (SPEC §8.3),
//! so a server with many busy rooms sends every room's cursors a little less often instead
//! of falling behind on all of them (and on handshakes, joins and edits with them).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Datagrams per second for the whole server, and the receivers of busy rooms claiming them.
#[derive(Debug)]
pub struct DatagramBudget {
    /// 0: unlimited.
    per_second: u64,
    receivers: AtomicU64,
}

impl DatagramBudget {
    /// A budget of `per_second` datagrams for every room together.
    pub fn new(per_second: u32) -> Arc<Self> {
        Arc::new(Self { per_second: per_second.into(), receivers: AtomicU64::new(0) })
    }

    /// No server-wide limit: each room is paced by its own budget only.
    pub fn unlimited() -> Arc<Self> {
        Self::new(0)
    }

    /// The receivers of every busy room together.
    pub fn receivers(&self) -> u64 {
        self.receivers.load(Ordering::Relaxed)
    }
}

/// One room's claim on the budget; dropping it gives the claim back.
pub(super) struct Claim {
    budget: Arc<DatagramBudget>,
    mine: u64,
}

impl Claim {
    pub(super) fn new(budget: Arc<DatagramBudget>) -> Self {
        Self { budget, mine: 0 }
    }

    /// Claims for `receivers` (0: the room's cursors are still) in place of the last claim,
    /// and returns the room's share: datagrams per second, `None` while it claims nothing or
    /// the budget is unlimited.
    pub(super) fn update(&mut self, receivers: u32) -> Option<u32> {
        let want = u64::from(receivers);
        if want > self.mine {
            self.budget.receivers.fetch_add(want - self.mine, Ordering::Relaxed);
        } else if want < self.mine {
            self.budget.receivers.fetch_sub(self.mine - want, Ordering::Relaxed);
        }
        self.mine = want;
        if want == 0 || self.budget.per_second == 0 {
            return None;
        }
        // Another room's claim may not be counted yet: never less than this room's own.
        let all = self.budget.receivers().max(want);
        Some(u32::try_from(self.budget.per_second * want / all).unwrap_or(u32::MAX).max(1))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.budget.receivers.fetch_sub(self.mine, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_rooms_share_the_budget_by_receivers_and_give_it_back() {
        let budget = DatagramBudget::new(40_000);
        let (mut lecture, mut seminar) = (Claim::new(budget.clone()), Claim::new(budget.clone()));
        assert_eq!(lecture.update(300), Some(40_000), "alone, the whole budget");
        assert_eq!(seminar.update(100), Some(10_000), "a quarter of the receivers");
        assert_eq!(lecture.update(300), Some(30_000));
        assert_eq!(seminar.update(0), None, "still cursors claim nothing");
        assert_eq!(lecture.update(300), Some(40_000));
        drop(lecture);
        assert_eq!(budget.receivers(), 0, "a room gone gives its claim back");
    }

    #[test]
    fn an_unlimited_budget_leaves_rooms_to_their_own() {
        let budget = DatagramBudget::unlimited();
        let mut room = Claim::new(budget.clone());
        assert_eq!(room.update(2_000), None);
        assert_eq!(budget.receivers(), 2_000, "still counted");
    }
}
