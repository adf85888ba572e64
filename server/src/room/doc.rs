//! The room's Loro document: updates checked and imported (one import for a batch queued
//! together), durable writes asked for and acked once done, state transfers for joiners and
//! `Sync`, snapshots for compaction.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use easel_proto::message::{Ack, Reject, RemoteUpdate, Role, SyncKind};
use easel_proto::{ErrorCode, Message};
use loro::{ExportMode, LoroDoc, LoroEncodeError, LoroError, VersionVector};

use super::{Metric, Output, Room};
use crate::store::UpdateRecord;
use easel_proto::message::clip_reason;

/// The `from` of an update whose author is connected to another node (cluster mode): its
/// participant numbers are that node's own.
pub const REMOTE_AUTHOR: u16 = u16::MAX;

/// A room's state for a joining client (sent on a snapshot stream).
#[derive(Debug, Clone)]
pub struct SnapshotPayload {
    /// Updates since the client's version, or a whole snapshot.
    pub sync: SyncKind,
    /// The Loro export (a whole snapshot is shared by the joiners at one version).
    pub data: Bytes,
    /// The encoded version vector the payload brings the client to.
    pub version: Vec<u8>,
}

/// A durable write the driver must perform before the room acks.
#[derive(Debug)]
#[non_exhaustive]
pub enum Persist {
    /// Append this update; then report it with [`Room::handle_committed`].
    Append {
        /// Author.
        participant: u16,
        /// Author's op id.
        op_id: u64,
        /// What to store.
        record: UpdateRecord,
        /// When the update arrived (for the ingest-to-send latency histogram).
        received: Instant,
    },
    /// A duplicate: ack once everything before it is durable; then report it with
    /// [`Room::handle_committed`].
    Barrier {
        /// Author.
        participant: u16,
        /// Author's op id.
        op_id: u64,
    },
}

/// A snapshot the driver must store (compaction).
#[derive(Debug)]
pub struct SnapshotWrite {
    /// The last stored update the snapshot covers.
    pub upto_seq: u64,
    /// Loro snapshot export.
    pub data: Vec<u8>,
}

/// Loro bytes that could not be imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// Loro refused them.
    #[error(transparent)]
    Loro(#[from] LoroError),
    /// Loro panicked on them (hostile bytes).
    #[error("update could not be decoded")]
    Undecodable,
}

/// A room whose stored state does not rebuild.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The stored snapshot.
    #[error("snapshot: {0}")]
    Snapshot(#[source] ImportError),
    /// A stored update.
    #[error("update {seq}: {source}")]
    Update {
        /// Its sequence number in the log.
        seq: u64,
        /// Why.
        source: ImportError,
    },
}

impl LoadError {
    /// The log position that failed (0: the snapshot).
    pub fn seq(&self) -> u64 {
        match self {
            Self::Snapshot(_) => 0,
            Self::Update { seq, .. } => *seq,
        }
    }
}

/// A document rebuilt from the store: the document, the last stored sequence number and how
/// many updates were replayed on top of the snapshot.
pub(super) fn load(
    snapshot: Option<(u64, Vec<u8>)>,
    updates: Vec<(u64, Vec<u8>)>,
) -> Result<(LoroDoc, u64, u64), LoadError> {
    let doc = LoroDoc::new();
    // The server keeps the oplog, not the state (see `snapshot_of`).
    doc.detach();
    let mut last_seq = 0;
    if let Some((seq, data)) = snapshot {
        import(&doc, &data).map_err(LoadError::Snapshot)?;
        last_seq = seq;
    }
    let replayed = updates.len() as u64;
    for (seq, data) in updates {
        import(&doc, &data).map_err(|source| LoadError::Update { seq, source })?;
        last_seq = last_seq.max(seq);
    }
    Ok((doc, last_seq, replayed))
}

/// Everything the document holds, as Loro bytes a client imports into an empty document.
/// The room's document is kept detached: an import then only appends to the oplog, while an
/// attached document also computes each update's effect on the state, whose cost grows with
/// the concurrent editors (three quarters of the server's CPU with 50 people drawing). The
/// server never needs the state, so it sends the whole oplog rather than a Loro snapshot:
/// bringing a detached state up to date for one costs far more than the imports it saved
/// (154 s in a debug build for one 700 KiB paste, against 18 ms to import it attached).
pub(super) fn snapshot_of(doc: &LoroDoc) -> Result<Vec<u8>, LoroEncodeError> {
    doc.export(ExportMode::all_updates())
}

/// Imports Loro bytes; returns whether some of it is pending (missing dependencies). A panic
/// inside Loro on hostile bytes is turned into an error rather than killing the room.
fn import(doc: &LoroDoc, data: &[u8]) -> Result<bool, ImportError> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| doc.import(data))) {
        Ok(Ok(status)) => Ok(status.pending.is_some()),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(ImportError::Undecodable),
    }
}

impl Room {
    /// The document's current version, encoded.
    pub fn version(&self) -> Vec<u8> {
        self.doc.oplog_vv().encode()
    }

    /// What a client at `since` lacks: updates since its version, a whole snapshot when it
    /// has none, nothing when it is current.
    /// A whole snapshot is exported once per document version and shared: a join storm
    /// costs one export, not one per joiner.
    pub(super) fn sync_payload(
        &mut self,
        since: Option<&[u8]>,
    ) -> Result<Option<SnapshotPayload>, LoroEncodeError> {
        let server = self.doc.oplog_vv();
        let client = since.and_then(|b| VersionVector::decode(b).ok());
        let (sync, data) = match client {
            Some(vv) if vv >= server => return Ok(None),
            Some(vv) => (SyncKind::Updates, self.doc.export(ExportMode::updates(&vv))),
            None if server.is_empty() => return Ok(None),
            None => {
                if let Some((at, shared)) = &self.shared_snapshot
                    && *at == server
                {
                    return Ok(Some(shared.clone()));
                }
                (SyncKind::Snapshot, snapshot_of(&self.doc))
            }
        };
        let payload = SnapshotPayload { sync, data: Bytes::from(data?), version: server.encode() };
        if sync == SyncKind::Snapshot {
            self.shared_snapshot = Some((server, payload.clone()));
        }
        Ok(Some(payload))
    }

    /// Sends a member what it lacks after `since` (a `Sync` request).
    pub fn handle_sync(&mut self, now: Instant, member: u16, since: &[u8]) {
        self.handle_touch(now, member);
        match self.sync_payload(Some(since)) {
            Ok(Some(payload)) => {
                if self.members.get(&member).is_some_and(|m| m.is_linked()) {
                    self.push(Output::Snapshot { to: member, payload });
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(room = %self.id, "export for sync failed: {e}"),
        }
    }

    /// A member's board update: imported into the document and, unless refused, an
    /// [`Output::Persist`] (the ack and fan-out wait for [`Room::handle_committed`]).
    pub fn handle_update(&mut self, now: Instant, member: u16, op_id: u64, data: Vec<u8>) {
        self.metric(Metric::OpsIn(1));
        self.update(now, member, op_id, data);
    }

    /// Several members' updates queued together: one Loro import for the lot, then one
    /// [`Output::Persist`] each, in order. An update whose version range the document already
    /// held is a duplicate (acked after a barrier, not stored again).
    pub fn handle_updates(&mut self, now: Instant, ops: Vec<(u16, u64, Vec<u8>)>) {
        self.metric(Metric::OpsIn(ops.len() as u64));
        if ops.len() == 1 {
            for (member, op_id, data) in ops {
                self.update(now, member, op_id, data);
            }
            return;
        }
        let mut accepted = Vec::with_capacity(ops.len());
        for (index, op_id, data) in ops {
            if self.may_edit(now, index, op_id) {
                accepted.push((index, op_id, data));
            }
        }
        let before = self.doc.oplog_vv();
        // Whether each one is already in the document, decided before anything is imported
        // (`None`: its header does not even decode).
        let held: Vec<Option<bool>> = accepted
            .iter()
            .map(|(_, _, data)| {
                let meta =
                    std::panic::catch_unwind(|| LoroDoc::decode_import_blob_meta(data, false)).ok()?.ok()?;
                Some(
                    meta.partial_end_vv
                        .iter()
                        .all(|(peer, counter)| before.get(peer).is_some_and(|c| c >= counter)),
                )
            })
            .collect();
        let batch: Vec<Vec<u8>> = accepted
            .iter()
            .zip(&held)
            .filter(|(_, h)| **h == Some(false))
            .map(|((_, _, data), _)| data.clone())
            .collect();
        let imported =
            matches!(std::panic::catch_unwind(AssertUnwindSafe(|| self.doc.import_batch(&batch))), Ok(Ok(_)));
        for ((index, op_id, data), held) in accepted.into_iter().zip(held) {
            if held == Some(true) && !self.store_failed {
                self.push(Output::Persist(Persist::Barrier { participant: index, op_id }));
                continue;
            }
            // Outside a batch that worked, each one alone: a bad one is refused, the others
            // (perhaps already applied by the batch) are stored all the same.
            if (held.is_none() || !imported)
                && let Err(e) = import(&self.doc, &data)
            {
                self.metric(Metric::OpRejected);
                self.reject(index, op_id, ErrorCode::InvalidUpdate, e.to_string());
                continue;
            }
            self.append(now, index, op_id, data);
        }
    }

    fn update(&mut self, now: Instant, index: u16, op_id: u64, data: Vec<u8>) {
        if !self.may_edit(now, index, op_id) {
            return;
        }
        let before = self.doc.oplog_vv();
        match import(&self.doc, &data) {
            Err(e) => {
                self.metric(Metric::OpRejected);
                self.reject(index, op_id, ErrorCode::InvalidUpdate, e.to_string());
            }
            Ok(pending) if !pending && self.doc.oplog_vv() == before && !self.store_failed => {
                self.push(Output::Persist(Persist::Barrier { participant: index, op_id }));
            }
            Ok(_) => self.append(now, index, op_id, data),
        }
    }

    fn append(&mut self, now: Instant, index: u16, op_id: u64, data: Vec<u8>) {
        let Some(member) = self.members.get(&index) else { return };
        let record =
            UpdateRecord { client_id: member.client_id.clone(), op_id, user: member.info.user.clone(), data };
        self.push(Output::Persist(Persist::Append { participant: index, op_id, record, received: now }));
    }

    /// Whether the member's role and moderation let it edit (it is alive either way); a
    /// refusal is sent to it.
    fn may_edit(&mut self, now: Instant, index: u16, op_id: u64) -> bool {
        self.heard(now, index);
        let Some(member) = self.members.get_mut(&index) else { return false };
        let refuse = match (member.info.role, member.info.read_only) {
            (Role::Viewer, _) => (ErrorCode::Forbidden, "viewers cannot edit the board"),
            (_, true) => (ErrorCode::ReadOnly, "a teacher made you read-only"),
            _ => return true,
        };
        self.reject(index, op_id, refuse.0, refuse.1.into());
        false
    }

    fn reject(&mut self, index: u16, op_id: u64, code: ErrorCode, message: String) {
        self.send(index, Message::from(Reject { op_id, code: code.to_u16(), message: clip_reason(message) }));
    }

    /// A durable write finished (`stored`: its sequence number and bytes; `None` for a
    /// barrier): the author is acked, the others get the update, and a snapshot is asked for
    /// when compaction is due.
    pub fn handle_committed(&mut self, member: u16, op_id: u64, stored: Option<(u64, Vec<u8>)>) {
        // A barrier proves its update durable only if every write before it was stored.
        if stored.is_none() && self.store_failed {
            self.handle_persist_failed(member, op_id);
            return;
        }
        self.send(member, Message::from(Ack { op_ids: vec![op_id] }));
        let Some((seq, data)) = stored else { return };
        self.last_seq = self.last_seq.max(seq);
        self.ops_since_snapshot += 1;
        self.metric(Metric::OpsOut(self.members.len().saturating_sub(1) as u64));
        self.broadcast(Some(member), &Message::from(RemoteUpdate { from: member, data }));
        if self.ops_since_snapshot >= self.config.snapshot_every
            && let Some(snapshot) = self.snapshot()
        {
            self.push(Output::SnapshotWrite(snapshot));
        }
    }

    /// Cluster mode: an update another node made durable, at its stream sequence: imported and
    /// sent to every member, from its `author` (the origin and its number there) as this room
    /// numbers that member, or [`REMOTE_AUTHOR`] when it does not know it (not listed yet, or
    /// gone). One the document already held (it came back another way) is not sent again.
    /// Bytes Loro refuses are an error and change nothing (the origin checked them: only a
    /// hostile or broken publisher sends such).
    pub fn handle_remote(
        &mut self,
        seq: u64,
        data: Vec<u8>,
        author: Option<(Arc<str>, u16)>,
    ) -> Result<(), ImportError> {
        let before = self.doc.oplog_vv();
        let pending = import(&self.doc, &data)?;
        self.last_seq = self.last_seq.max(seq);
        // While loading nobody is there: no frame to encode per update of the history.
        if (pending || self.doc.oplog_vv() != before) && !self.members.is_empty() {
            self.metric(Metric::OpsOut(self.members.len() as u64));
            let from = author.and_then(|(origin, index)| self.remote_number(&origin, index));
            self.broadcast(None, &Message::from(RemoteUpdate { from: from.unwrap_or(REMOTE_AUTHOR), data }));
        }
        Ok(())
    }

    /// A durable write failed: its author is told (and will send it again: the code is
    /// retryable), nobody else hears of it. The document holds it all the same, so from now on
    /// an update it holds is stored again instead of acked on a barrier: the resend must not be
    /// acked as a duplicate of something that was never stored.
    pub fn handle_persist_failed(&mut self, member: u16, op_id: u64) {
        self.store_failed = true;
        self.reject(member, op_id, ErrorCode::StorageUnavailable, "storage unavailable".into());
    }

    /// A snapshot of the document covering every stored update, if there are updates since the
    /// last one.
    pub(super) fn snapshot(&mut self) -> Option<SnapshotWrite> {
        if self.ops_since_snapshot == 0 {
            return None;
        }
        match snapshot_of(&self.doc) {
            Ok(data) => {
                self.ops_since_snapshot = 0;
                Some(SnapshotWrite { upto_seq: self.last_seq, data })
            }
            Err(e) => {
                tracing::error!(room = %self.id, "snapshot export failed: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::super::testing::{Sim, edit, room};
    use super::*;

    #[test]
    fn joiners_at_one_version_share_one_export() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let a = sim.join(t0, "ada");
        assert!(sim.join_with(t0, "bob", 0, None, 64).snapshot.is_none(), "nothing to send yet");
        sim.room.handle_update(t0, a, 1, edit("x"));
        let payload = |sim: &mut Sim, user: &str| {
            let snapshot = sim.join_with(t0, user, 0, None, 64).snapshot.expect("a snapshot");
            assert_eq!(snapshot.sync, SyncKind::Snapshot);
            snapshot
        };
        let (c, d) = (payload(&mut sim, "cyd"), payload(&mut sim, "dan"));
        assert_eq!(c.data.as_ptr(), d.data.as_ptr(), "exported once, shared");
        sim.room.handle_update(t0, a, 2, edit("y"));
        let e = payload(&mut sim, "eve");
        assert_ne!(e.data.as_ptr(), c.data.as_ptr(), "a new version is exported anew");
        assert_ne!(e.version, c.version);
        let doc = LoroDoc::new();
        doc.import(&e.data).expect("import");
        assert_eq!(doc.oplog_vv(), sim.room.doc.oplog_vv(), "and holds everything");
    }

    #[test]
    fn invalid_updates_leave_the_doc_untouched() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let a = sim.join(t0, "ada");
        let before = sim.room.version();
        sim.room.handle_update(t0, a, 1, b"garbage".to_vec());
        sim.drain();
        assert!(!sim.take_other().iter().any(|o| matches!(o, Output::Persist(_))), "nothing to store");
        assert_eq!(sim.room.version(), before);
        let rejected = sim.messages(a).into_iter().any(|m| {
            matches!(m, Message::Reject(r) if r.op_id == 1 && r.code == ErrorCode::InvalidUpdate.to_u16())
        });
        assert!(rejected);
    }

    #[test]
    fn updates_queued_together_import_once_and_are_told_apart() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let a = sim.join(t0, "ada");
        let (old, fresh, also) = (edit("old"), edit("fresh"), edit("also"));
        sim.room.handle_update(t0, a, 1, old.clone());
        sim.drain();
        assert!(sim.take_other().iter().any(|o| matches!(o, Output::Persist(Persist::Append { .. }))));
        sim.messages(a);
        let batch = vec![(a, 2, fresh), (a, 3, old), (a, 4, b"garbage".to_vec()), (a, 5, also)];
        sim.room.handle_updates(t0, batch);
        sim.drain();
        let kinds: Vec<(u64, &str)> = sim
            .take_other()
            .iter()
            .filter_map(|p| match p {
                Output::Persist(Persist::Append { op_id, .. }) => Some((*op_id, "append")),
                Output::Persist(Persist::Barrier { op_id, .. }) => Some((*op_id, "barrier")),
                _ => None,
            })
            .collect();
        assert_eq!(kinds, [(2, "append"), (3, "barrier"), (5, "append")], "the resend is a duplicate");
        let rejected: Vec<u64> = sim
            .messages(a)
            .into_iter()
            .filter_map(|m| match m {
                Message::Reject(r) if r.code == ErrorCode::InvalidUpdate.to_u16() => Some(r.op_id),
                _ => None,
            })
            .collect();
        assert_eq!(rejected, [4], "the bad one alone is refused");
        // What a joiner gets: the room keeps only the oplog, its snapshot brings the state.
        let joiner = LoroDoc::new();
        joiner.import(&snapshot_of(&sim.room.doc).expect("snapshot")).expect("import");
        let text = joiner.get_text("t").to_string();
        assert!(text.contains("fresh") && text.contains("also") && !text.contains("garbage"), "{text}");
    }

    #[test]
    fn after_a_failed_write_a_resend_is_stored_again_not_acked_as_a_duplicate() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let a = sim.join(t0, "ada");
        let data = edit("lost to a full disk");
        sim.room.handle_update(t0, a, 1, data.clone());
        sim.drain();
        sim.take_other();
        sim.room.handle_persist_failed(a, 1);
        let refused = sim.messages(a);
        assert!(refused.iter().any(|m| matches!(m, Message::Reject(r) if r.op_id == 1)), "{refused:?}");
        // The document holds it all the same; the resend must reach the disk.
        let persisted = |sim: &mut Sim| -> Vec<&'static str> {
            sim.drain();
            sim.take_other()
                .iter()
                .filter_map(|p| match p {
                    Output::Persist(Persist::Append { .. }) => Some("append"),
                    Output::Persist(Persist::Barrier { .. }) => Some("barrier"),
                    _ => None,
                })
                .collect()
        };
        sim.room.handle_update(t0, a, 1, data.clone());
        assert_eq!(persisted(&mut sim), ["append"], "alone");
        sim.room.handle_updates(t0, vec![(a, 1, data), (a, 2, edit("new"))]);
        assert_eq!(persisted(&mut sim), ["append", "append"], "in a batch");
        // A barrier that was queued before the failure proves nothing either.
        sim.room.handle_committed(a, 7, None);
        let answer = sim.messages(a);
        assert!(
            answer.iter().any(|m| matches!(m, Message::Reject(r) if r.op_id == 7 && r.code == ErrorCode::StorageUnavailable.to_u16())),
            "{answer:?}"
        );
    }

    #[test]
    fn an_update_is_acked_and_fanned_out_only_once_it_is_durable() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let a = sim.join(t0, "ada");
        let b = sim.join(t0, "bob");
        sim.messages(a);
        sim.messages(b);
        let data = edit("hello");
        sim.room.handle_update(t0, a, 9, data.clone());
        let outputs: Vec<Output> = std::iter::from_fn(|| sim.room.poll_output()).collect();
        let [
            Output::Metric(Metric::OpsIn(1)),
            Output::Persist(Persist::Append { participant, op_id, record, .. }),
        ] = &outputs[..]
        else {
            panic!("one write and nothing sent: {outputs:?}")
        };
        assert_eq!((*participant, *op_id, &record.data), (a, 9, &data));

        sim.room.handle_committed(a, 9, Some((1, data.clone())));
        let outputs: Vec<Output> = std::iter::from_fn(|| sim.room.poll_output()).collect();
        assert!(
            matches!(&outputs[0], Output::Send { to, message: Message::Ack(ack) } if *to == a && ack.op_ids == [9]),
            "{outputs:?}"
        );
        assert!(matches!(&outputs[1], Output::Metric(Metric::OpsOut(1))));
        assert!(matches!(&outputs[2], Output::Broadcast { except: Some(x), .. } if *x == a));
        assert_eq!(outputs.len(), 3);
    }

    #[test]
    fn a_failed_write_is_refused_to_its_author_alone() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let a = sim.join(t0, "ada");
        let b = sim.join(t0, "bob");
        sim.messages(a);
        sim.messages(b);
        sim.room.handle_persist_failed(a, 4);
        sim.drain();
        let refused = sim.messages(a).into_iter().any(|m| {
            matches!(m, Message::Reject(r) if r.op_id == 4 && r.code == ErrorCode::StorageUnavailable.to_u16())
        });
        assert!(refused);
        assert!(sim.messages(b).is_empty());
    }

    #[test]
    fn another_nodes_update_reaches_every_member_once_and_garbage_none() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let a = sim.join(t0, "ada");
        let b = sim.join(t0, "bob");
        sim.messages(a);
        sim.messages(b);
        let remote = |m: &Message| matches!(m, Message::RemoteUpdate(u) if u.from == REMOTE_AUTHOR);
        let data = edit("from elsewhere");
        sim.room.handle_remote(5, data.clone(), None).expect("imported");
        sim.drain();
        assert!(sim.messages(a).iter().any(remote), "a gets it");
        assert!(sim.messages(b).iter().any(remote), "b too: its author is on no local member");
        // Held already (it came back another way): nobody is sent it again.
        sim.room.handle_remote(6, data, None).expect("a no-op");
        sim.drain();
        assert!(!sim.messages(a).iter().any(remote));
        let before = sim.room.version();
        assert!(sim.room.handle_remote(7, b"garbage".to_vec(), None).is_err());
        sim.drain();
        assert!(!sim.messages(a).iter().any(remote));
        assert_eq!(sim.room.version(), before, "the document is untouched");
    }

    #[test]
    fn compaction_asks_for_a_snapshot_every_so_many_commits() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config { snapshot_every: 2, ..Config::default() }, t0));
        let a = sim.join(t0, "ada");
        for (seq, text) in [(1, "a"), (2, "b")] {
            sim.room.handle_update(t0, a, seq, edit(text));
            sim.drain();
            sim.room.handle_committed(a, seq, Some((seq, edit(text))));
            sim.drain();
        }
        let snapshots: Vec<u64> = sim
            .take_other()
            .iter()
            .filter_map(|o| match o {
                Output::SnapshotWrite(s) => Some(s.upto_seq),
                _ => None,
            })
            .collect();
        assert_eq!(snapshots, [2]);
    }
}
