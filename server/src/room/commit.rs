//! The room actor's durable writes as futures ([`Committing`]): a board update through the
//! [`Board`], classroom records through the [`Store`], a batch of classroom events to the room
//! log (cluster mode), a snapshot. The actor runs them in submission order and hands each
//! [`Committed`] back to the room.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use super::stats::Ingest;
use super::{ClassEvent, Persist, SnapshotWrite};
use crate::board::Board;
use crate::class::Deliver;
use crate::store::{Store, StoreError};

pub(super) type Committing = Pin<Box<dyn Future<Output = Committed> + Send>>;

/// A durable write that finished, in submission order.
pub(super) enum Committed {
    /// A board update (or a duplicate's barrier).
    Op {
        participant: u16,
        op_id: u64,
        result: Result<Option<(u64, Vec<u8>)>, StoreError>,
        received: Option<Instant>,
    },
    /// Classroom records, and what waited for them; with the request that caused them and its
    /// ingest, for the latency histograms.
    Side { result: Result<(), StoreError>, then: Vec<Deliver>, asked: Option<(Ingest, Instant)> },
    /// Cluster mode: a batch of classroom events published (`Ok(false)`), found a resend of
    /// one the stream already had (`Ok(true)`), or not published.
    ClassLog(Vec<ClassEvent>, Result<bool, StoreError>),
}

/// Stores a board update by `participant`, or waits for every write before a duplicate's
/// barrier.
pub(super) fn persist(board: &Board, room: &str, p: Persist) -> Committing {
    let (board, room) = (board.clone(), room.to_owned());
    Box::pin(async move {
        match p {
            Persist::Append { participant, op_id, record, received } => {
                let data = record.data.clone();
                let result = board.append(&room, record, participant).await.map(|seq| Some((seq, data)));
                Committed::Op { participant, op_id, result, received: Some(received) }
            }
            Persist::Barrier { participant, op_id } => {
                let result = board.flush().await.map(|()| None);
                Committed::Op { participant, op_id, result, received: None }
            }
        }
    })
}

/// Publishes a batch of classroom events to the room log as one message; one node alone has
/// none (the room applied the events itself), so this is never asked there.
pub(super) fn publish_class(board: &Board, room: &str, batch: Vec<(ClassEvent, Vec<u8>)>) -> Committing {
    let (board, room) = (board.clone(), room.to_owned());
    Box::pin(async move {
        let (events, encoded): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let result = match &board {
            Board::Cluster(log) => log.publish_class(&room, &events, &encoded).await,
            Board::Local(_) => Err(StoreError::Log("no room log on one node alone".into())),
        };
        Committed::ClassLog(events, result)
    })
}

/// Stores classroom records (one node alone), then what waited for them may go out.
pub(super) fn side(
    store: &Store,
    room: &str,
    writes: Vec<crate::class::Write>,
    then: Vec<Deliver>,
    asked: Option<(Ingest, Instant)>,
) -> Committing {
    let (store, room) = (store.clone(), room.to_owned());
    Box::pin(async move {
        let result = if writes.is_empty() { Ok(()) } else { store.side(&room, writes).await };
        Committed::Side { result, then, asked }
    })
}

/// Stores a document snapshot; a failure is logged and the next one is tried later.
pub(super) async fn write_snapshot(board: &Board, room: &str, snapshot: SnapshotWrite) {
    if let Err(e) = board.snapshot(room, snapshot.upto_seq, snapshot.data).await {
        tracing::error!(room, "snapshot write failed: {e}");
    }
}
