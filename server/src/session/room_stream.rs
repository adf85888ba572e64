//! One room stream: a `Join`, then the member's writer (what the room queues for it) and
//! reader (its frames, routed by the core) until either ends the membership, and the snapshot
//! streams that carry state transfers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use easel_proto::message::{Join, Joined, Left, SnapshotBegin, SnapshotChunk, SyncKind};
use easel_proto::{ErrorCode, Kind, Message};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use easel_transport::Session;
use easel_transport::framed::{Read, Reader, write};

use super::core::{Exit, Route, fault};
use super::{Ctx, end_stream};
use crate::auth::Claims;
use crate::room::{self, Arrival, BroadcastGap, Command, JoinRequest, Link, Outbound, SnapshotPayload};

/// Queued room-stream frames are coalesced into writes of up to about this many bytes.
const WRITE_BATCH: usize = 64 * 1024;

/// Bytes per snapshot chunk frame.
const CHUNK: usize = 256 * 1024;

/// A joined room, as its stream task holds it.
struct Membership {
    room: String,
    slot: u16,
    handle: room::Handle,
    participant: u16,
}

/// Serves a room stream the client opened, to its end.
pub(super) async fn run<S: Session + Clone>(ctx: Arc<Ctx>, session: S, mut send: S::Send, recv: S::Recv) {
    let mut reader = Reader::new(recv, ctx.shared.config.max_frame as usize);
    // Boxed, a function of its own: what the join needs (the request, the claims, loading the
    // room) is then not part of this task's state, which lives as long as the membership.
    let joining = Box::pin(join_room(&ctx, &session, &mut send, &mut reader)).await;
    let Some((member, joined, rx)) = joining else { return };
    let (exit, writer) = serve_member(&ctx, &session, &member, joined, (send, rx), &mut reader).await;
    let code = match exit {
        Exit::Leave(code) => Some(code),
        // Every room is settled at once by the session's end: a lost connection keeps them.
        Exit::Gone if ctx.ending(&session) => return,
        Exit::Gone => Some(ErrorCode::Normal),
        Exit::Ended => None,
    };
    end_membership(&ctx, &member, code, writer).await;
}

/// Reads the stream's `Join` and joins the room; returns the membership, what the room
/// answered and the member's queue, or `None` once it has answered a refusal (or the stream
/// or the session ended).
async fn join_room<S: Session + Clone>(
    ctx: &Arc<Ctx>,
    session: &S,
    send: &mut S::Send,
    reader: &mut Reader<S::Recv>,
) -> Option<(Membership, room::Joined, mpsc::Receiver<Outbound>)> {
    let join = match reader.next().await {
        Read::Message(Message::Join(j)) => j,
        Read::Message(other) => {
            let kind = other.kind().to_u8();
            end_stream(send, &fault(ErrorCode::NotJoined, kind, 0, "a room stream starts with Join")).await;
            return None;
        }
        Read::Bad(e) => {
            end_stream(send, &fault(e.code(), Kind::Join.to_u8(), 0, e.to_string())).await;
            return None;
        }
        Read::End => return None,
    };
    let refuse = |code: ErrorCode, why: String| fault(code, Kind::Join.to_u8(), 0, why);
    let admitted = ctx.core().admit(&join.room);
    let slot = match admitted {
        Ok(slot) => slot,
        Err((code, why)) => {
            crate::telemetry::refused(code);
            end_stream(send, &refuse(code, why)).await;
            return None;
        }
    };
    let (tx, rx) = mpsc::channel(ctx.shared.config.outbound_queue as usize);
    let link = Link { tx, datagrams: session.datagram_sender(), kill: ctx.slow.clone() };
    // Boxed: loading a room (from the store, or a cluster's snapshot and log) is the join's
    // largest state by far.
    let (handle, joined, used) = match Box::pin(enter(ctx, &join, slot, link)).await {
        Ok(ok) => ok,
        Err(code) => {
            crate::telemetry::refused(code);
            ctx.core().free(slot);
            end_stream(send, &refuse(code, format!("cannot join {}", join.room))).await;
            return None;
        }
    };
    let member = Membership { room: join.room, slot, handle, participant: joined.participant };
    if !register(ctx, &member, &used).await {
        return None;
    }
    Some((member, joined, rx))
}

/// Joins the room, or re-attaches the member a resumed session held there; returns the claims
/// the room was given.
async fn enter(
    ctx: &Ctx,
    join: &Join,
    slot: u16,
    link: Link,
) -> Result<(room::Handle, room::Joined, Claims), ErrorCode> {
    let (claims, client_id, resume) = {
        let mut core = ctx.core();
        (core.claims().clone(), core.client_id().to_owned(), core.take_held(&join.room))
    };
    let name = if join.name.is_empty() {
        claims.name.clone().unwrap_or_else(|| claims.sub.clone())
    } else {
        join.name.clone()
    };
    let request = || JoinRequest {
        arrival: Arrival {
            user: claims.sub.clone(),
            name: name.clone(),
            role: claims.role(),
            client_id: client_id.clone(),
            since: join.since.clone(),
            resume,
            session: ctx.session_id,
            expires_ms: claims.exp.saturating_mul(1000),
            conn: ctx.conn,
            slot,
        },
        link: link.clone(),
    };
    // `link` drops on return, leaving the room the only holder of the sender: when the room
    // lets go of the member, the writer ends.
    let (handle, joined) = ctx.shared.rooms.join(&join.room, request).await?;
    Ok((handle, joined, claims))
}

/// Records the membership where datagrams, refreshes and the session's end find it, and
/// tells the room what a refresh during the join means for it (`used`: the claims the join
/// was made with). Returns false if the session ended meanwhile, having settled this room as
/// it settled the others.
async fn register(ctx: &Ctx, member: &Membership, used: &Claims) -> bool {
    let found = (member.handle.clone(), member.participant);
    let registered = ctx.core().joined(member.slot, &member.room, found, used);
    // Either way: a detached session's resume must find this room too.
    ctx.shared.resumes.set_room(&ctx.resume_token, &member.room, Some(member.participant));
    let (command, serve) = match registered {
        Err(settle) => (Some(settle.command(member.participant, ctx.conn)), false),
        Ok(recheck) => (recheck.map(|r| r.command(member.participant, ctx.conn)), true),
    };
    if let Some(command) = command {
        let _ = member.handle.send(command).await;
    }
    serve
}

/// Ends a membership from the stream's side: leaves with `code` (`None`: the room already
/// ended it) and forgets the room.
async fn end_membership(
    ctx: &Ctx,
    member: &Membership,
    code: Option<ErrorCode>,
    writer: Option<JoinHandle<bool>>,
) {
    if let Some(code) = code {
        let leave = Command::Leave { participant: member.participant, conn: ctx.conn, code };
        let _ = member.handle.send(leave).await;
    }
    // Let the writer flush what is queued (Left included) before the stream goes away.
    let released = match writer {
        Some(writer) => writer.await.unwrap_or(false),
        None => false,
    };
    if !released {
        release(ctx, &member.room, member.slot);
    }
}

/// Forgets a room the connection no longer holds, so it may join it again. Done once per
/// membership: by the writer before it writes `Left`, else by the stream's end.
fn release(ctx: &Ctx, room: &str, slot: u16) {
    ctx.shared.resumes.set_room(&ctx.resume_token, room, None);
    ctx.core().free(slot);
}

/// Answers `Joined`, then runs the member's writer and reader until either ends. Returns how,
/// and the writer if it was started.
async fn serve_member<S: Session + Clone>(
    ctx: &Arc<Ctx>,
    session: &S,
    member: &Membership,
    joined: room::Joined,
    (mut send, rx): (S::Send, mpsc::Receiver<Outbound>),
    reader: &mut Reader<S::Recv>,
) -> (Exit, Option<JoinHandle<bool>>) {
    let role = ctx.core().claims().role();
    let sync = joined.snapshot.as_ref().map_or(SyncKind::None, |s| s.sync);
    let reply = Joined {
        slot: member.slot,
        room: member.room.clone(),
        participant: member.participant,
        role,
        resumed: joined.resumed,
        sync,
    };
    if write(&mut send, &Message::from(reply)).await.is_err() {
        return (Exit::Gone, None);
    }
    if let Some(payload) = joined.snapshot {
        tokio::spawn(snapshot_stream(session.clone(), member.slot, payload));
    }
    // The writer drains the room's queue; the reader feeds the room.
    let (left_tx, left_rx) = oneshot::channel();
    let release = {
        let (ctx, room, slot) = (ctx.clone(), member.room.clone(), member.slot);
        move || release(&ctx, &room, slot)
    };
    let gap = member.handle.broadcast_gap();
    let writer = tokio::spawn(write_room((session.clone(), member.slot), send, rx, gap, (left_tx, release)));
    let exit = tokio::select! {
        exit = read_room(ctx, &member.handle, member.participant, reader) => exit,
        // The writer failed without the room ending the membership: the stream broke.
        left = left_rx => if left.is_ok() { Exit::Ended } else { Exit::Gone },
    };
    (exit, Some(writer))
}

/// Writes what the room queues for the member until the room ends the membership (then it
/// reports on `left`) or lets go of the member. Returns whether it released the room: before
/// `Left` is written, so a client that rejoins as soon as it reads `Left` is not refused as
/// still joined.
async fn write_room<S: Session + Clone>(
    (session, slot): (S, u16),
    mut send: S::Send,
    mut rx: mpsc::Receiver<Outbound>,
    gap: BroadcastGap,
    (left, release): (oneshot::Sender<()>, impl FnOnce()),
) -> bool {
    let mut release = Some(release);
    // Everything queued goes out in one write: a burst of frames then costs a few packets, not
    // one write per frame. The batch is made per wake-up, not kept: an idle member would hold
    // it between batches (16 KiB each was 160 MB at 10,000 idle members), and one allocation
    // per batch is noise next to encoding and writing it.
    while let Some(first) = rx.recv().await {
        let mut batch = Batch::default();
        batch.add(first, &session, slot);
        if batch.bytes.is_empty() && !batch.ended {
            // A ride for nothing held (or a snapshot, on a stream of its own).
            continue;
        }
        if let Some(due) = hold_until(Instant::now(), gap.get(), batch.urgent) {
            // Boxed: the hold's timer and select would otherwise size every idle member's
            // writer task.
            Box::pin(hold_broadcasts(&mut rx, &mut batch, due, (&session, slot))).await;
        }
        while !batch.ended && batch.bytes.len() < WRITE_BATCH {
            let Ok(out) = rx.try_recv() else { break };
            batch.add(out, &session, slot);
        }
        if batch.ended
            && let Some(release) = release.take()
        {
            release();
        }
        if send.write_all(&batch.bytes).await.is_err() {
            return batch.ended;
        }
        if batch.ended {
            let _ = send.shutdown().await;
            let _ = left.send(());
            return true;
        }
    }
    false
}

/// Adds to `batch` what the room queues until the member's next cursor batch leaves or `due`,
/// or until something comes that may not wait (or the batch is full, or ends).
async fn hold_broadcasts<S: Session + Clone>(
    rx: &mut mpsc::Receiver<Outbound>,
    batch: &mut Batch,
    due: Instant,
    (session, slot): (&S, u16),
) {
    let until = tokio::time::sleep_until(due.into());
    tokio::pin!(until);
    while !batch.urgent && !batch.ended && batch.bytes.len() < WRITE_BATCH {
        tokio::select! {
            () = &mut until => return,
            next = rx.recv() => match next {
                Some(out) => batch.add(out, session, slot),
                None => return,
            },
        }
    }
}

/// One write's worth of what the room queued.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    /// It goes out at once: it holds something other than a broadcast, or the member's cursor
    /// batch is leaving ([`Outbound::Ride`]).
    urgent: bool,
    /// It ends with `Left`: nothing may follow.
    ended: bool,
}

impl Batch {
    fn add<S: Session + Clone>(&mut self, out: Outbound, session: &S, slot: u16) {
        if let Some(payload) = self.take(out) {
            tokio::spawn(snapshot_stream(session.clone(), slot, *payload));
        }
    }

    /// Takes `out` into the batch; a snapshot is returned, for a stream of its own.
    fn take(&mut self, out: Outbound) -> Option<Box<SnapshotPayload>> {
        self.urgent |= !matches!(out, Outbound::Broadcast(_));
        match out {
            Outbound::Message(m) => {
                if let Err(e) = m.encode_into(&mut self.bytes) {
                    tracing::error!("encode {:?}: {e}", m.kind());
                }
            }
            Outbound::Frame(bytes) | Outbound::Broadcast(bytes) => self.bytes.extend_from_slice(&bytes),
            Outbound::Snapshot(payload) => return Some(payload),
            Outbound::Left(code, why) => {
                let message = Message::from(Left { code: code.to_u16(), message: why });
                let _ = message.encode_into(&mut self.bytes);
                self.ended = true;
            }
            Outbound::Ride => {}
        }
        None
    }
}

/// Until when a member's writer holds a write, apart from the clock (`None`: write now).
/// Anything but broadcasts goes at once (acks, replies, errors, `Left`). Broadcasts wait for
/// the member's next cursor batch, to share its packet ([`Outbound::Ride`]), at most one `gap` (the
/// room's cursor pace), taking along whatever the room queues meanwhile: a
/// member gets about one write of broadcasts per pace, in the packets of its cursors.
fn hold_until(now: Instant, gap: Duration, urgent: bool) -> Option<Instant> {
    (!urgent && !gap.is_zero()).then(|| now + gap)
}

/// Feeds a room stream's frames to the room, as the core routes them, until the membership
/// ends.
async fn read_room<R: tokio::io::AsyncRead + Unpin>(
    ctx: &Ctx,
    handle: &room::Handle,
    participant: u16,
    reader: &mut Reader<R>,
) -> Exit {
    loop {
        let read = reader.next().await;
        let route = ctx.core().route(participant, read, Instant::now());
        let cmd = match route {
            Route::Room(cmd) => cmd,
            Route::RateLimited(cmd) => {
                metrics::counter!("easel_ops_rejected_total").increment(1);
                cmd
            }
            Route::Exit(exit) => return exit,
        };
        if handle.send(cmd).await.is_err() {
            return Exit::Ended;
        }
    }
}

async fn snapshot_stream<S: Session>(session: S, slot: u16, payload: SnapshotPayload) {
    let Ok(mut send) = session.open_uni().await else { return };
    let begin = SnapshotBegin {
        slot,
        sync: payload.sync,
        total_len: payload.data.len() as u64,
        version: payload.version,
    };
    if write(&mut send, &Message::from(begin)).await.is_err() {
        return;
    }
    for chunk in payload.data.chunks(CHUNK) {
        if write(&mut send, &Message::from(SnapshotChunk { data: chunk.to_vec() })).await.is_err() {
            return;
        }
    }
    let _ = send.shutdown().await;
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_broadcast_waits_at_most_one_gap_for_a_ride() {
        let (t0, gap) = (Instant::now(), 30 * MS);
        assert_eq!(hold_until(t0, gap, false), Some(t0 + gap));
        assert_eq!(hold_until(t0 + 40 * MS, gap, false), Some(t0 + 70 * MS), "from when it came");
    }

    #[test]
    fn a_ride_ends_a_hold_and_writes_nothing_of_its_own() {
        let mut batch = Batch::default();
        assert!(batch.take(Outbound::Broadcast(Bytes::from_static(b"echo"))).is_none());
        assert!(!batch.urgent, "a broadcast may wait");
        batch.take(Outbound::Ride);
        assert!(batch.urgent, "the cursor batch is leaving: what is held goes with it");
        assert_eq!(batch.bytes, b"echo", "the ride itself is not written");
    }

    #[test]
    fn anything_but_a_broadcast_is_never_held() {
        let (t0, gap) = (Instant::now(), 30 * MS);
        assert_eq!(hold_until(t0, gap, true), None, "an ack goes at once");
        assert_eq!(hold_until(t0, Duration::ZERO, false), None, "no gap, no hold");
    }
}
