//! Which members' writers may be holding broadcasts for their next cursor batch: the room's
//! actor asks for a ride ([`Outbound::Ride`]) only for those.

use std::collections::HashSet;

#[cfg(doc)]
use super::handle::Outbound;

/// Which members were queued broadcasts since their last cursor batch: their next batch asks
/// the writer to let what it holds go with it ([`Outbound::Ride`]), and only that one.
#[derive(Debug, Default)]
pub(super) struct Riders(HashSet<u16>);

impl Riders {
    /// `member` was queued a broadcast.
    pub(super) fn broadcast(&mut self, member: u16) {
        self.0.insert(member);
    }

    /// `member` is sent a cursor batch: whether it should take held broadcasts along.
    pub(super) fn batch(&mut self, member: u16) -> bool {
        self.0.remove(&member)
    }

    /// `member` left the room (its number may be given again).
    pub(super) fn forget(&mut self, member: u16) {
        self.0.remove(&member);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_queued_broadcasts_takes_them_along_with_its_next_cursor_batch_only() {
        let mut riders = Riders::default();
        assert!(!riders.batch(1), "nothing queued, nothing to take along");
        riders.broadcast(1);
        riders.broadcast(1);
        riders.broadcast(2);
        assert!(riders.batch(1), "its next batch takes them along");
        assert!(!riders.batch(1), "once: the writer let them go");
        riders.forget(2);
        assert!(!riders.batch(2), "a member who left is forgotten");
    }
}
