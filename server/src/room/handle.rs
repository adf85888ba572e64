//! What connections hold of a room: a [`Handle`] to its actor, the [`Command`]s it takes, and
//! the [`Link`] through which the actor reaches a member.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use easel_proto::datagram::{Cursor, Heartbeat, is_newer};
use easel_proto::message::Role;
use easel_proto::{ErrorCode, Message};
use easel_transport::DatagramSender;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::stats::Stats;
use super::{Arrival, Joined, SnapshotPayload};
use crate::class;
use crate::sfu::SfuNews;

/// What a member's room-stream writer receives. Kept small (the rare large variants boxed):
/// every member's queue allocates its slots in blocks of 32, idle or not.
#[derive(Debug)]
pub enum Outbound {
    /// A frame for the room stream.
    Message(Box<Message>),
    /// A frame already encoded for this member.
    Frame(Bytes),
    /// A frame broadcast to the room, encoded once and its bytes shared by every member's
    /// queue. It may wait for the member's next write slot ([`BroadcastGap`]); anything else
    /// queued behind it ends that wait.
    Broadcast(Bytes),
    /// A state transfer for a new snapshot stream.
    Snapshot(Box<SnapshotPayload>),
    /// The membership ended: send `Left { code }` and finish the stream.
    Left(ErrorCode, String),
    /// The member's next cursor batch is leaving now: broadcasts the writer holds go at once,
    /// to share its packet. Nothing is written for it. Why: at 50 members moving and editing,
    /// the edit echoes went out in packets of their own beside ~400 cursor batches a second
    /// per member, and a packet costs the server about the same with one frame or two (12 µs,
    /// loopback). Sent just before the batch, so the writer's stream write is queued on the
    /// connection by the time its driver builds the packet (a race either may win: at worst
    /// two packets, as before).
    Ride,
}

/// How the room's actor reaches one member without ever awaiting.
#[derive(Clone)]
pub struct Link {
    /// Room-stream messages, bounded.
    pub tx: mpsc::Sender<Outbound>,
    /// Datagrams to the member's session.
    pub datagrams: Arc<dyn DatagramSender>,
    /// Cancelled when the room gives up on the member (its queue overflowed): the session is
    /// then closed with `SlowConsumer`.
    pub kill: CancellationToken,
}

/// Who is joining ([`Arrival`], for the room) and how to reach it ([`Link`], for the actor).
pub struct JoinRequest {
    /// The joiner, as the room sees it.
    pub arrival: Arrival,
    /// How the actor reaches it.
    pub link: Link,
}

/// A message to a room actor.
#[non_exhaustive]
pub enum Command {
    /// Join; the reply carries the participant number and what the client lacks.
    Join(JoinRequest, oneshot::Sender<Result<Joined, ErrorCode>>),
    /// Leave: the stream or session ended cleanly.
    Leave {
        /// Who.
        participant: u16,
        /// The connection ending it (see [`Arrival::conn`]).
        conn: u64,
        /// Why.
        code: ErrorCode,
    },
    /// The connection was lost: keep the place for the resume grace window.
    Detach {
        /// Who.
        participant: u16,
        /// The lost connection (see [`Arrival::conn`]).
        conn: u64,
    },
    /// A board update.
    Update {
        /// Author.
        participant: u16,
        /// Its op id.
        op_id: u64,
        /// Loro bytes.
        data: Vec<u8>,
    },
    /// The member's connection refreshed its token, which still grants the room: the role
    /// and expiry it now has (a changed role holds at once).
    Refreshed {
        /// Who.
        participant: u16,
        /// The connection refreshing (see [`Arrival::conn`]).
        conn: u64,
        /// The role in the new token.
        role: Role,
        /// The new token's expiry, Unix ms.
        expires_ms: u64,
    },
    /// Some other sign of life.
    Touch(u16),
    /// Queue this message to the participant, in order with the room's own (refusals decided
    /// by the connection, e.g. rate limits).
    Reply(u16, Message),
    /// Send the participant what it lacks after `since` on a snapshot stream.
    Sync {
        /// Who.
        participant: u16,
        /// Its encoded version vector.
        since: Vec<u8>,
    },
    /// A classroom request (chat, polls, hands, moderation) from a participant.
    Class(u16, Message),
    /// SFU signalling (`SfuJoin`, `SfuSdp`, `SfuCandidate`, `SfuSubscribe`, `SfuLeave`) from a
    /// participant.
    Sfu(u16, Message),
    /// What the SFU driver reports for a participant.
    SfuNews(u16, SfuNews),
    /// The room's attendance, as it is now.
    Attendance(oneshot::Sender<Vec<class::Attendance>>),
    /// The room's own numbers since it was loaded (`GET /rooms/{id}/stats`).
    Stats(oneshot::Sender<Stats>),
    /// Persist everything and stop (server shutdown).
    Shutdown(oneshot::Sender<()>),
}

/// A command and when it was handed to the room: its ingest, for the latency histograms (the
/// connection reads a frame, decodes it and hands it over at once; the wait for queue space
/// counts as latency).
pub(super) struct Stamped {
    pub(super) at: Instant,
    pub(super) cmd: Command,
}

/// The room's SFU driver reports on the room's own command queue, in order with the rest.
impl From<(u16, SfuNews)> for Stamped {
    fn from((participant, news): (u16, SfuNews)) -> Self {
        Self { at: Instant::now(), cmd: Command::SfuNews(participant, news) }
    }
}

/// A connection's handle to a room actor.
#[derive(Clone)]
pub struct Handle {
    pub(super) id: Arc<str>,
    pub(super) tx: mpsc::Sender<Stamped>,
    pub(super) datagrams: Arc<DatagramInbox>,
    pub(super) gap: BroadcastGap,
}

/// How long a member's room-stream writer may hold the room's broadcasts for the member's
/// next cursor batch ([`Outbound::Ride`]), so that those arriving meanwhile share one write and its
/// packets: the room's cursor pace. Why: at 300 members editing, each edit's echo went out to
/// each member as soon as it was stored, about 110 packets a second per member, which was two
/// thirds of the server's CPU. Paced like the cursors, a member gets about one cursor batch
/// and one write of broadcasts per pace, mostly in the same packets. Set by the room's actor,
/// read by the writers.
#[derive(Clone, Default)]
pub struct BroadcastGap(Arc<AtomicU32>);

impl BroadcastGap {
    /// The gap now.
    pub fn get(&self) -> Duration {
        Duration::from_micros(u64::from(self.0.load(Ordering::Relaxed)))
    }

    pub(super) fn set(&self, gap: Duration) {
        let micros = u32::try_from(gap.as_micros()).unwrap_or(u32::MAX);
        self.0.store(micros, Ordering::Relaxed);
    }
}

impl Handle {
    /// The gap the room's members' writers keep between writes of broadcasts.
    pub fn broadcast_gap(&self) -> BroadcastGap {
        self.gap.clone()
    }

    /// Hands a participant's cursor datagram to the room (latest wins; never blocks).
    pub fn cursor(&self, participant: u16, cursor: Cursor) {
        self.datagrams.cursor(participant, cursor);
    }

    /// Hands a participant's presence heartbeat to the room (latest wins; never blocks).
    pub fn heartbeat(&self, participant: u16, beat: Heartbeat) {
        self.datagrams.heartbeat(participant, beat);
    }

    /// The room id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Sends a command, waiting for queue space (reliable-stream messages exert backpressure on
    /// their stream). Fails if the room has stopped.
    pub async fn send(&self, cmd: Command) -> Result<(), Command> {
        self.tx.send(Stamped { at: Instant::now(), cmd }).await.map_err(|e| e.0.cmd)
    }

    /// Whether the actor has stopped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Whether both handles reach the same actor (a reloaded room is a different one).
    pub fn same(&self, other: &Self) -> bool {
        self.tx.same_channel(&other.tx)
    }
}

/// Cursor positions and presence heartbeats on their way to a room: one of each per
/// participant, the newest. Cursor datagrams can arrive at any rate (300 participants at 30 Hz
/// is 9,000 a second); queued one command each, they would fill the room's queue and hold
/// reliable traffic (edits, chat) behind thousands of positions the next batch replaces
/// anyway. Heartbeats come here for the same reason and one more: dropped by a busy queue (a
/// join storm), they would let live members be evicted for silence. Here they coalesce before
/// the room, which takes them all at once, and nothing is ever refused.
#[derive(Debug, Default)]
pub struct DatagramInbox {
    waiting: Mutex<Waiting>,
    pub(super) ready: tokio::sync::Notify,
}

/// What waits, and since when the oldest has. A cursor keeps its arrival, for the cursor
/// latency histogram.
#[derive(Debug, Default)]
pub(super) struct Waiting {
    pub(super) cursors: HashMap<u16, (Cursor, Instant)>,
    pub(super) heartbeats: HashMap<u16, Heartbeat>,
    since: Option<Instant>,
}

impl DatagramInbox {
    /// Keeps `cursor` unless a newer one of the participant is already waiting.
    fn cursor(&self, participant: u16, cursor: Cursor) {
        let now = Instant::now();
        self.keep(now, |w| {
            let stale = w.cursors.get(&participant).is_some_and(|held| !is_newer(cursor.seq, held.0.seq));
            if !stale {
                w.cursors.insert(participant, (cursor, now));
            }
            !stale
        });
    }

    /// Keeps `beat` unless a newer one of the participant is already waiting.
    fn heartbeat(&self, participant: u16, beat: Heartbeat) {
        self.keep(Instant::now(), |w| {
            let stale = w.heartbeats.get(&participant).is_some_and(|held| !is_newer(beat.seq, held.seq));
            if !stale {
                w.heartbeats.insert(participant, beat);
            }
            !stale
        });
    }

    fn keep(&self, now: Instant, put: impl FnOnce(&mut Waiting) -> bool) {
        {
            let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            if !put(&mut waiting) {
                return;
            }
            waiting.since.get_or_insert(now);
        }
        self.ready.notify_one();
    }

    /// Everything waiting, emptied.
    pub(super) fn take(&self) -> Waiting {
        std::mem::take(&mut *self.waiting.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether something has waited longer than `limit` at `now`.
    pub(super) fn waited_longer(&self, now: Instant, limit: Duration) -> bool {
        let since = self.waiting.lock().unwrap_or_else(PoisonError::into_inner).since;
        since.is_some_and(|since| now.duration_since(since) > limit)
    }
}

// Idle members' queues are the bulk of a lecture's memory: keep the slot small.
const _: () = assert!(std::mem::size_of::<Outbound>() <= 40);

#[cfg(test)]
mod tests {
    use easel_proto::datagram::{Status, Tool};

    use super::*;

    fn beat(seq: u16) -> Heartbeat {
        Heartbeat { slot: 0, seq, status: Status::Active, tool: Tool::Pen }
    }

    #[test]
    fn the_inbox_keeps_the_newest_of_each_and_refuses_nothing() {
        let inbox = DatagramInbox::default();
        // Far more than any command queue holds: all kept, coalesced per participant.
        for seq in 1..=10_000u16 {
            inbox.heartbeat(seq % 2000, beat(seq));
        }
        inbox.heartbeat(7, beat(1));
        inbox.cursor(3, Cursor { slot: 0, seq: 9, x: 1, y: 1 });
        inbox.cursor(3, Cursor { slot: 0, seq: 8, x: 2, y: 2 });
        let waiting = inbox.take();
        assert_eq!(waiting.heartbeats.len(), 2000, "one per participant");
        assert_eq!(waiting.heartbeats[&7].seq, 10_007 - 2000, "a stale one changes nothing");
        assert_eq!(waiting.cursors[&3].0.x, 1, "the newest cursor wins, not the latest to arrive");
        assert!(inbox.take().heartbeats.is_empty(), "taken once");
    }
}
