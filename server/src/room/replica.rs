//! A cluster room's state as its snapshot holds it: the board, the classroom, the hand
//! queue and the teacher's cursor cap, taken at a position of the room's log and given back to a room loading from it.
//! What a replica applies from the log after that position rebuilds the rest.

use loro::LoroEncodeError;

use super::{Key, Room, doc};
use crate::cluster::snapshot::Snapshot;

impl Room {
    /// The room's state, covering its log up to `upto_seq` (the caller knows the position:
    /// it is what the room's log consumer last handed over).
    pub fn replica(&self, upto_seq: u64) -> Result<Snapshot, LoroEncodeError> {
        Ok(Snapshot {
            room: self.id.to_string(),
            upto_seq,
            doc: doc::snapshot_of(&self.doc)?,
            class: self.class.export(),
            hands: self.hands.clone(),
            cursor_cap: self.spotlight.chosen(),
        })
    }

    /// The hand queue and the teacher's cursor cap of the snapshot the room was loaded from
    /// (before anyone joined: nobody is told).
    pub fn restore(&mut self, hands: Vec<Key>, cursor_cap: Option<u16>) {
        self.hands = hands;
        self.spotlight.choose(cursor_cap);
    }

    /// Whether the document may hold updates that were refused storage (then it is no
    /// snapshot of the log).
    pub fn store_failed(&self) -> bool {
        self.store_failed
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use easel_proto::Message;
    use easel_proto::message::{ChatSend, HandRaise, Role, SetCursorCap};

    use super::super::testing::{Sim, edit, room};
    use super::super::{Act, ClassEvent, Config};
    use super::*;
    use crate::class::Class;

    #[test]
    fn a_room_rebuilt_from_its_replica_has_its_board_chat_and_hands() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let a = sim.join_as(t0, "ada", Role::Teacher);
        sim.room.handle_update(t0, a, 1, edit("x"));
        sim.room.handle_class(t0, a, Message::from(ChatSend { client_msg_id: 1, text: "hi".into() }));
        sim.room.handle_class(t0, a, Message::from(HandRaise {}));
        sim.room.handle_class(t0, a, Message::from(SetCursorCap { cap: Some(4) }));
        sim.drain();
        let snapshot = sim.room.replica(7).expect("export");
        assert_eq!(snapshot.upto_seq, 7);
        assert_eq!(snapshot.hands.len(), 1, "ada's hand");
        let kinds: Vec<&str> = snapshot.class.records.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(kinds, ["chat", "attendance"], "her message and her presence");
        assert_eq!(snapshot.class.memberships.values().filter(|u| *u == "ada").count(), 1);

        let class = Class::restore(snapshot.class.clone(), 30, t0, 1_000);
        let mut copy = Room::new(
            "room".into(),
            Config::default(),
            Some((snapshot.upto_seq, snapshot.doc.clone())),
            Vec::new(),
            class,
            t0,
            1_000,
        )
        .expect("load");
        copy.restore(snapshot.hands.clone(), snapshot.cursor_cap);
        assert_eq!(copy.version(), sim.room.version(), "the same board");
        let again = copy.replica(7).expect("export");
        assert_eq!(again.class, snapshot.class, "the same classroom");
        assert_eq!(again.hands, snapshot.hands);
        assert_eq!((again.cursor_cap, copy.spotlight.cap()), (Some(4), Some(4)), "the teacher's cursor cap");
        // Ada is still present in the copy: her departure from the log closes her interval.
        let by = sim.room.actor(a, sim.room.members.get(&a).expect("ada"));
        copy.handle_class_event(t0, 2_000, ClassEvent { by, act: Act::Depart { at_ms: 2_000 } });
        let ada = copy.attendance().into_iter().find(|r| r.user == "ada").expect("ada's record");
        assert_eq!(ada.intervals.last().and_then(|i| i.1), Some(2_000));
    }
}
