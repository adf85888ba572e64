//! Remote edits into the room documents: updates wait in each room's inbox and are imported
//! in batches; snapshots and catch-up transfers are imported whole. Bytes that do not import
//! become [`Event::Error`]s, never panics.

use easel_proto::ErrorCode;

use super::doc::Document;
use super::{Event, Link, Session};

/// Snapshots kept for slots whose `Joined` has not come yet: the server sends one per join,
/// right after `Joined`, so more than a few waiting means they are stale.
pub(super) const EARLY_SNAPSHOTS: usize = 4;

impl<D: Document> Session<D> {
    /// Imports every room's waiting remote updates, one batch per room, and reports them.
    pub(super) fn flush_imports(&mut self) {
        for (id, room) in &mut self.rooms {
            if room.inbox.is_empty() {
                continue;
            }
            let (froms, batch): (Vec<u16>, Vec<Vec<u8>>) =
                std::mem::take(&mut room.inbox).into_iter().unzip();
            if room.doc.import_batch(&batch).is_ok() {
                for from in froms {
                    self.events.push_back(Event::RemoteUpdate { room: id.clone(), from });
                }
                continue;
            }
            // One of them is bad: import them one by one to tell which.
            for (from, data) in froms.into_iter().zip(batch) {
                match room.doc.import(&data) {
                    Ok(()) => self.events.push_back(Event::RemoteUpdate { room: id.clone(), from }),
                    Err(e) => self.events.push_back(Event::Error {
                        room: Some(id.clone()),
                        code: ErrorCode::InvalidUpdate,
                        message: e.to_string(),
                    }),
                }
            }
        }
    }

    /// A snapshot stream for `slot` arrived whole. If its room stream has not said `Joined`
    /// yet, it waits for it.
    pub fn handle_snapshot(&mut self, slot: u16, data: &[u8]) {
        let Link::Up { slots, early, .. } = &mut self.link else { return };
        let Some(room) = slots.get(&slot).cloned() else {
            if early.len() == EARLY_SNAPSHOTS {
                early.remove(0);
            }
            early.push((slot, data.to_vec()));
            return;
        };
        self.synced(&room, data);
    }

    /// A room's stream said `Joined` on `slot`: a snapshot that came first is imported now.
    pub(super) fn take_early_snapshot(&mut self, room: &str, slot: u16) {
        let Link::Up { early, .. } = &mut self.link else { return };
        let Some(at) = early.iter().position(|(s, _)| *s == slot) else { return };
        let (_, data) = early.remove(at);
        self.synced(room, &data);
    }

    fn synced(&mut self, id: &str, data: &[u8]) {
        let Some(room) = self.rooms.get(id) else { return };
        if let Err(e) = room.doc.import(data) {
            self.events.push_back(Event::Error {
                room: Some(id.to_owned()),
                code: ErrorCode::InvalidUpdate,
                message: e.to_string(),
            });
        }
        self.events.push_back(Event::Synced { room: id.to_owned() });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use easel_proto::Message;
    use easel_proto::message::{ParticipantGone, Participants, RemoteUpdate};
    use loro::LoroDoc;

    use super::*;
    use crate::Transport;
    use crate::session::testing::{Harness, ROOM, joined, list, participant, welcome};

    #[test]
    fn remote_updates_import_and_bad_ones_are_errors() {
        let (mut h, doc) = Harness::in_room();
        let other = LoroDoc::new();
        other.get_list("shapes").push("theirs").unwrap();
        other.commit();
        let data = other.export(loro::ExportMode::all_updates()).unwrap();
        h.session.handle_room(h.now, ROOM, Message::from(RemoteUpdate { from: 5, data }));
        assert!(matches!(&h.events()[..], [Event::RemoteUpdate { from: 5, .. }]), "imported, then reported");
        assert_eq!(doc.get_list("shapes").len(), 1);
        let again = other.export(loro::ExportMode::all_updates()).unwrap();
        h.session.handle_room(h.now, ROOM, Message::from(RemoteUpdate { from: 5, data: again }));
        h.session.handle_room(h.now, ROOM, Message::from(RemoteUpdate { from: 5, data: vec![0xff; 40] }));
        let events = h.events();
        assert!(matches!(events[0], Event::RemoteUpdate { from: 5, .. }));
        assert!(events.iter().any(|e| matches!(e, Event::Error { code: ErrorCode::InvalidUpdate, .. })));
        let joined = Participants { full: false, joined: vec![participant(5)], left: Vec::new() };
        h.session.handle_room(h.now, ROOM, Message::from(joined));
        h.events();
        let gone = ParticipantGone { index: 5, code: 306 };
        h.session.handle_room(
            h.now,
            ROOM,
            Message::from(Participants { full: false, joined: vec![], left: vec![gone] }),
        );
        assert!(matches!(
            &h.events()[..],
            [Event::ParticipantLeft { index: 5, code: ErrorCode::PresenceTimeout, .. }]
        ));
    }

    #[test]
    fn a_snapshot_that_comes_before_its_joined_is_imported_once_joined() {
        let mut h = Harness::new();
        let doc = h.join(ROOM, Vec::new()).unwrap();
        h.session.connected(h.now, Transport::Quic, &welcome(false, 1));
        let theirs = LoroDoc::new();
        theirs.get_list("shapes").push("drawn before we came").unwrap();
        theirs.commit();
        // The snapshot's stream won the race against the room stream's `Joined` (slot 0).
        h.session.handle_snapshot(0, &theirs.export(loro::ExportMode::all_updates()).unwrap());
        h.events();
        assert_eq!(doc.get_list("shapes").len(), 0, "nothing to import it into yet");
        h.session.handle_room(h.now, ROOM, joined(3, false));
        assert!(h.events().iter().any(|e| matches!(e, Event::Synced { .. })), "synced once joined");
        assert_eq!(doc.get_list("shapes").len(), 1);
        h.session.handle_room(h.now, ROOM, list(&[3]));
        assert!(h.events().iter().any(|e| matches!(e, Event::Joined { .. })));
    }
}
