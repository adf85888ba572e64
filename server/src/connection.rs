//! One client session, generic over the transport: handshake on the control stream, one task
//! per room stream, a datagram loop, and the rules that tie them (limits, auth, shutdown).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use easel_proto::message::{
    Fault, GoAway, Hello, Joined, Pong, Reject, SessionLimits, SnapshotBegin, SnapshotChunk, TokenRefreshed,
    Welcome,
};
use easel_proto::{Datagram, ErrorCode, Kind, Message, PROTOCOL_VERSION, limits};
use easel_transport::framed::{Read, Reader, write};
use easel_transport::{Closure, Session};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::auth::Claims;
use crate::config::Serve;
use crate::limit::TokenBucket;
use crate::resume::Held;
use crate::room::{self, Command, JoinRequest, Link, Outbound, SnapshotPayload};
use crate::server::Shared;

/// How long a client told to go away by a shutdown should wait before reconnecting.
const RECONNECT_HINT_MS: u32 = 1000;

/// Queued room-stream frames are coalesced into writes of up to about this many bytes.
const WRITE_BATCH: usize = 64 * 1024;

/// Bytes per snapshot chunk frame.
const CHUNK: usize = 256 * 1024;

/// Why a handshake failed, for the close code.
struct End(ErrorCode, String);

/// Why an established session ended; it decides what happens to the session's rooms.
enum Ending {
    /// The server ended it (shutdown, token expiry, slow consumer, a fatal protocol error).
    Server(ErrorCode, String),
    /// The peer or the network ended it: how the transport closed decides.
    Peer(String),
    /// A resume on another connection took the session over.
    TakenOver,
}

impl Ending {
    fn server(code: ErrorCode, why: impl Into<String>) -> Self {
        Self::Server(code, why.into())
    }

    fn peer(why: impl Into<String>) -> Self {
        Self::Peer(why.into())
    }
}

/// What the end of a session does to its rooms (SPEC §5.4).
#[derive(Debug, Clone, Copy)]
enum Settle {
    /// Leave each at once, others told with this code; the session cannot be resumed.
    Leave(ErrorCode),
    /// Keep each place, unannounced, for the resume grace window.
    Detach,
}

impl End {
    fn new(code: ErrorCode, why: impl Into<String>) -> Self {
        Self(code, why.into())
    }
}

fn fault(code: ErrorCode, kind: u8, reference: u64, message: impl Into<String>) -> Message {
    Message::from(Fault { code: code.to_u16(), kind, reference, message: room::clip_reason(message.into()) })
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// State the session's tasks share.
struct Ctx {
    shared: Arc<Shared>,
    client_id: String,
    claims: Mutex<Claims>,
    /// Joined rooms by slot.
    slots: Mutex<Vec<Slot>>,
    ops: Mutex<TokenBucket>,
    datagrams: Mutex<TokenBucket>,
    /// Cancelled by a room when this session's reliable queue overflows.
    slow: CancellationToken,
    /// This connection's number (see `room::Link::conn`).
    conn: u64,
    /// The resume token of this connection's `Welcome`: the session's key in the registry.
    resume_token: Vec<u8>,
    /// Rooms of a resumed session not rejoined yet: room id → participant number.
    held: Mutex<HashMap<String, u16>>,
    /// Cancelled when a resume on another connection takes this session over.
    takeover: CancellationToken,
    /// Set when the session ends, before its rooms are settled: a join that completes
    /// afterwards settles its own room the same way.
    settled: OnceLock<Settle>,
}

impl Ctx {
    fn claims(&self) -> Claims {
        self.claims.lock().map(|c| c.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Tells a room what the session's end means for this member.
    async fn settle_room(&self, handle: &room::Handle, participant: u16, settle: Settle) {
        let conn = self.conn;
        let cmd = match settle {
            Settle::Leave(code) => Command::Leave { participant, conn, code },
            Settle::Detach => Command::Detach { participant, conn },
        };
        let _ = handle.send(cmd).await;
    }
}

/// Whether the session is ending, so its end (not a room stream) decides each room's fate.
fn ending<S: Session>(ctx: &Ctx, session: &S) -> bool {
    ctx.settled.get().is_some() || session.closure().is_some()
}

/// Runs a session to its end.
pub(crate) async fn run<S: Session + Clone>(shared: Arc<Shared>, session: S) {
    let transport = session.kind().label();
    metrics::gauge!("easel_sessions", "transport" => transport).increment(1.0);
    let started = Instant::now();
    let timeout = shared.config.handshake_timeout();
    let handshake = tokio::time::timeout(timeout, handshake(&shared, &session)).await;
    let (ctx, control) = match handshake {
        Ok(Ok(ok)) => ok,
        Ok(Err(End(code, why))) => {
            metrics::counter!("easel_connects_total", "transport" => transport, "result" => "failed")
                .increment(1);
            tracing::info!(transport, %code, "handshake refused: {why}");
            session.close(code, &why);
            metrics::gauge!("easel_sessions", "transport" => transport).decrement(1.0);
            return;
        }
        Err(_) => {
            metrics::counter!("easel_connects_total", "transport" => transport, "result" => "failed")
                .increment(1);
            session.close(ErrorCode::HandshakeTimeout, "handshake timeout");
            metrics::gauge!("easel_sessions", "transport" => transport).decrement(1.0);
            return;
        }
    };
    metrics::counter!("easel_connects_total", "transport" => transport, "result" => "ok").increment(1);
    metrics::histogram!("easel_handshake_seconds").record(started.elapsed().as_secs_f64());

    let ctx = Arc::new(ctx);
    let ending = tokio::select! {
        end = serve_control(&ctx, control) => end,
        end = accept_rooms(&ctx, &session) => end,
        end = datagrams(&ctx, &session) => end,
        () = ctx.slow.cancelled() => Ending::server(ErrorCode::SlowConsumer, "reliable queue overflowed"),
        () = ctx.takeover.cancelled() => Ending::TakenOver,
    };
    let (code, why) = settle(&ctx, &session, ending).await;
    session.close(code, &why);
    metrics::gauge!("easel_sessions", "transport" => transport).decrement(1.0);
}

/// Decides what the session's end does to its rooms and tells each; returns the code and
/// reason to close the connection with.
async fn settle<S: Session>(ctx: &Ctx, session: &S, ending: Ending) -> (ErrorCode, String) {
    let (settle, code, why) = match ending {
        Ending::Server(code, why) => {
            let leave = if code == ErrorCode::ShuttingDown { code } else { ErrorCode::Normal };
            (Settle::Leave(leave), code, why)
        }
        Ending::Peer(why) if session.closure() == Some(Closure::Lost) => {
            (Settle::Detach, ErrorCode::Normal, why)
        }
        // Closed with code 0, or only the control stream was finished: the peer meant to end.
        Ending::Peer(why) => (Settle::Leave(ErrorCode::Normal), ErrorCode::Normal, why),
        // The registry entry has moved to the new connection, which re-attaches each member.
        Ending::TakenOver => (Settle::Detach, ErrorCode::Normal, "resumed on another connection".into()),
    };
    tracing::debug!(conn = ctx.conn, ?settle, "session ended: {why}");
    // The registry first: once anyone sees this session leave, it must not be resumable.
    let resumes = &ctx.shared.resumes;
    match settle {
        Settle::Leave(_) => resumes.end(&ctx.resume_token),
        Settle::Detach => resumes.detach(&ctx.resume_token, Instant::now()),
    }
    let _ = ctx.settled.set(settle);
    let joined: Vec<(room::Handle, u16)> = ctx
        .slots
        .lock()
        .map(|mut slots| slots.iter_mut().filter_map(Slot::release).collect())
        .unwrap_or_default();
    for (handle, participant) in joined {
        ctx.settle_room(&handle, participant, settle).await;
    }
    (code, why)
}

type Control<S> = (Reader<<S as Session>::Recv>, <S as Session>::Send);

async fn handshake<S: Session>(shared: &Arc<Shared>, session: &S) -> Result<(Ctx, Control<S>), End> {
    let (mut send, recv) =
        session.accept_bi().await.map_err(|e| End::new(ErrorCode::Normal, e.to_string()))?;
    let mut reader = Reader::new(recv, limits::MAX_PREAUTH_FRAME_LEN);
    let hello = match reader.next().await {
        Read::Message(Message::Hello(h)) => h,
        Read::Message(other) => {
            return refuse(
                &mut send,
                ErrorCode::UnexpectedMessage,
                format!("expected Hello, got {:?}", other.kind()),
            )
            .await;
        }
        Read::Bad(e) => return refuse(&mut send, e.code(), e.to_string()).await,
        Read::End => return Err(End::new(ErrorCode::Normal, "closed before Hello")),
    };
    let Hello { versions, client_id, token, resume, .. } = hello;
    if !versions.contains(&PROTOCOL_VERSION) {
        return refuse(&mut send, ErrorCode::UnsupportedVersion, format!("server speaks {PROTOCOL_VERSION}"))
            .await;
    }
    let now = SystemTime::now();
    let claims =
        match shared.verifier.verify(&token, now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())) {
            Ok(c) => c,
            Err(e) => return refuse(&mut send, e.code(), e.to_string()).await,
        };
    let config = &shared.config;
    let t = Instant::now();
    let claimed = resume.and_then(|token| shared.resumes.claim(&token, &claims.sub, t));
    let resumed = claimed.is_some();
    let held = claimed.unwrap_or_else(|| Held { session_id: rand::random(), rooms: HashMap::new() });
    let mut resume_token = vec![0u8; 32];
    rand::fill(&mut resume_token[..]);
    let welcome = Welcome {
        version: PROTOCOL_VERSION,
        session_id: held.session_id,
        user: claims.sub.clone(),
        server_time_ms: unix_ms(now),
        token_expires_ms: claims.exp.saturating_mul(1000),
        resume_token: resume_token.clone(),
        resumed,
        limits: session_limits(config),
    };
    write(&mut send, &Message::from(welcome))
        .await
        .map_err(|_| End::new(ErrorCode::Normal, "closed during handshake"))?;
    // Registered only now: the handshake timeout may cancel the write above, and nothing
    // would then remove a live entry. There is no await from here on.
    let takeover = CancellationToken::new();
    shared.resumes.open(resume_token.clone(), claims.sub.clone(), held.clone(), takeover.clone());
    if resumed {
        metrics::counter!("easel_resumes_total").increment(1);
        tracing::info!(session_id = held.session_id, rooms = held.rooms.len(), "session resumed");
    }
    reader.set_max_frame(config.max_frame as usize);
    let ctx = Ctx {
        shared: shared.clone(),
        client_id,
        claims: Mutex::new(claims),
        slots: Mutex::new(Vec::new()),
        ops: Mutex::new(TokenBucket::new(config.ops_per_sec, config.ops_burst, t)),
        datagrams: Mutex::new(TokenBucket::new(config.datagrams_per_sec, config.datagrams_burst, t)),
        slow: CancellationToken::new(),
        conn: shared.next_conn.fetch_add(1, Ordering::Relaxed),
        resume_token,
        held: Mutex::new(held.rooms),
        takeover,
        settled: OnceLock::new(),
    };
    Ok((ctx, (reader, send)))
}

fn session_limits(config: &Serve) -> SessionLimits {
    SessionLimits {
        max_frame_len: config.max_frame,
        max_datagram_len: limits::MAX_DATAGRAM_LEN as u16,
        max_rooms: config.max_rooms,
        max_participants: config.max_participants,
        ops_per_sec: config.ops_per_sec,
        ops_burst: config.ops_burst,
        datagrams_per_sec: config.datagrams_per_sec,
        datagrams_burst: config.datagrams_burst,
        chat_per_min: config.chat_per_min,
        tick_hz: config.tick_hz,
        heartbeat_ms: config.heartbeat_ms,
        presence_ttl_ms: (config.presence_ttl_secs * 1000) as u32,
        resume_grace_ms: config.resume_grace_ms,
    }
}

async fn refuse<W: AsyncWrite + Unpin, T>(send: &mut W, code: ErrorCode, why: String) -> Result<T, End> {
    end_stream(send, fault(code, Kind::Hello.to_u8(), 0, why.clone())).await;
    Err(End(code, why))
}

/// Answers a refused request with its `Fault` and finishes the stream.
async fn end_stream<W: AsyncWrite + Unpin>(send: &mut W, fault: Message) {
    let _ = write(send, &fault).await;
    let _ = send.shutdown().await;
}

async fn serve_control<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    ctx: &Ctx,
    control: (Reader<R>, W),
) -> Ending {
    let (mut reader, mut send) = control;
    loop {
        let expires = ctx.claims().exp;
        let left =
            expires.saturating_sub(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
        let read = tokio::select! {
            read = reader.next() => read,
            () = tokio::time::sleep(Duration::from_secs(left)) => {
                let go = GoAway { code: ErrorCode::TokenExpired.to_u16(), retry_after_ms: 0, message: "token expired".into() };
                let _ = write(&mut send, &Message::from(go)).await;
                return Ending::server(ErrorCode::TokenExpired, "token expired");
            }
            () = ctx.shared.shutdown.cancelled() => {
                let go = GoAway {
                    code: ErrorCode::ShuttingDown.to_u16(),
                    retry_after_ms: RECONNECT_HINT_MS,
                    message: "server shutting down".into(),
                };
                let _ = write(&mut send, &Message::from(go)).await;
                return Ending::server(ErrorCode::ShuttingDown, "server shutting down");
            }
        };
        let reply = match read {
            Read::End => return Ending::peer("control stream closed"),
            Read::Bad(e) => {
                let _ = write(&mut send, &fault(e.code(), 0, 0, e.to_string())).await;
                return Ending::server(e.code(), e.to_string());
            }
            Read::Message(Message::Ping(p)) => {
                Message::from(Pong { nonce: p.nonce, time_ms: unix_ms(SystemTime::now()) })
            }
            Read::Message(Message::RefreshToken(r)) => refresh(ctx, &r.token),
            Read::Message(Message::Pong(_)) => continue,
            Read::Message(other) => {
                let kind = other.kind();
                fault(
                    ErrorCode::UnexpectedMessage,
                    kind.to_u8(),
                    0,
                    format!("{kind} is not valid on the control stream"),
                )
            }
        };
        if write(&mut send, &reply).await.is_err() {
            return Ending::peer("control stream closed");
        }
    }
}

fn refresh(ctx: &Ctx, token: &str) -> Message {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let kind = Kind::RefreshToken.to_u8();
    match ctx.shared.verifier.verify(token, now) {
        Ok(claims) if claims.sub == ctx.claims().sub => {
            let expires_ms = claims.exp.saturating_mul(1000);
            if let Ok(mut c) = ctx.claims.lock() {
                *c = claims;
            }
            Message::from(TokenRefreshed { expires_ms })
        }
        Ok(_) => fault(ErrorCode::InvalidToken, kind, 0, "refreshed token names another subject"),
        Err(e) => fault(e.code(), kind, 0, e.to_string()),
    }
}

async fn accept_rooms<S: Session + Clone>(ctx: &Arc<Ctx>, session: &S) -> Ending {
    loop {
        match session.accept_bi().await {
            Ok((send, recv)) => {
                let (ctx, session) = (ctx.clone(), session.clone());
                tokio::spawn(async move { room_stream(ctx, session, send, recv).await });
            }
            Err(e) => return Ending::peer(e.to_string()),
        }
    }
}

async fn datagrams<S: Session>(ctx: &Ctx, session: &S) -> Ending {
    loop {
        let bytes = match session.recv_datagram().await {
            Ok(b) => b,
            Err(e) => return Ending::peer(e.to_string()),
        };
        metrics::counter!("easel_datagrams_in_total").increment(1);
        let allowed = ctx.datagrams.lock().is_ok_and(|mut b| b.take(Instant::now()));
        if !allowed {
            metrics::counter!("easel_datagrams_dropped_total", "reason" => "rate").increment(1);
            continue;
        }
        let datagram = match Datagram::decode(&bytes) {
            Ok(d @ (Datagram::Cursor(_) | Datagram::Heartbeat(_))) => d,
            Ok(_) | Err(_) => {
                metrics::counter!("easel_datagrams_dropped_total", "reason" => "invalid").increment(1);
                continue;
            }
        };
        let slot = match &datagram {
            Datagram::Cursor(c) => c.slot,
            Datagram::Heartbeat(h) => h.slot,
            _ => continue,
        };
        let target = ctx.slots.lock().ok().and_then(|s| match s.get(usize::from(slot)) {
            Some(Slot::Joined(handle, participant)) => Some((handle.clone(), *participant)),
            _ => None,
        });
        let Some((handle, participant)) = target else {
            metrics::counter!("easel_datagrams_dropped_total", "reason" => "unknown_slot").increment(1);
            continue;
        };
        match datagram {
            Datagram::Cursor(c) => handle.cursor(participant, c),
            Datagram::Heartbeat(h) => handle.offer(Command::Heartbeat(participant, h)),
            _ => continue,
        }
    }
}

/// A connection-local room number's state. A join reserves its slot (with the room id) before
/// it awaits the room, so concurrent joins — a resumed client rejoins all its rooms at once —
/// neither share a slot, nor join one room twice, nor overshoot the room limit.
enum Slot {
    Free,
    Reserved(String),
    Joined(room::Handle, u16),
}

impl Slot {
    fn is_room(&self, room: &str) -> bool {
        match self {
            Self::Free => false,
            Self::Reserved(r) => r == room,
            Self::Joined(h, _) => h.id() == room,
        }
    }

    /// Frees the slot, returning the membership it held.
    fn release(&mut self) -> Option<(room::Handle, u16)> {
        match std::mem::replace(self, Self::Free) {
            Self::Joined(handle, participant) => Some((handle, participant)),
            Self::Free | Self::Reserved(_) => None,
        }
    }
}

/// Reserves a free slot for `room`, in one step with the checks that depend on the others.
fn take_slot(ctx: &Ctx, room: &str, max: u16) -> Result<u16, (ErrorCode, String)> {
    let internal = || (ErrorCode::Internal, "slot table unavailable".to_owned());
    let mut slots = ctx.slots.lock().map_err(|_| internal())?;
    if slots.iter().any(|s| s.is_room(room)) {
        return Err((ErrorCode::AlreadyJoined, room.to_owned()));
    }
    if slots.iter().filter(|s| !matches!(s, Slot::Free)).count() >= usize::from(max) {
        return Err((ErrorCode::TooManyRooms, "too many rooms on this connection".into()));
    }
    let free = slots.iter().position(|s| matches!(s, Slot::Free)).unwrap_or(slots.len());
    if free == slots.len() {
        slots.push(Slot::Free);
    }
    slots[free] = Slot::Reserved(room.to_owned());
    Ok(free as u16)
}

/// A joined room, as its stream task holds it.
struct Membership {
    room: String,
    slot: u16,
    handle: room::Handle,
    participant: u16,
}

/// How a room stream's membership ended, seen from the stream.
enum Exit {
    /// The client sent `Leave`, or broke the stream's framing: leave with this code.
    Leave(ErrorCode),
    /// The room already ended the membership.
    Ended,
    /// The stream ended or broke without a word: the client finished it, or the connection
    /// is going (then the session's end decides).
    Gone,
}

async fn room_stream<S: Session + Clone>(ctx: Arc<Ctx>, session: S, mut send: S::Send, recv: S::Recv) {
    let mut reader = Reader::new(recv, ctx.shared.config.max_frame as usize);
    let join = match reader.next().await {
        Read::Message(Message::Join(j)) => j,
        Read::Message(other) => {
            let kind = other.kind().to_u8();
            return end_stream(
                &mut send,
                fault(ErrorCode::NotJoined, kind, 0, "a room stream starts with Join"),
            )
            .await;
        }
        Read::Bad(e) => {
            return end_stream(&mut send, fault(e.code(), Kind::Join.to_u8(), 0, e.to_string())).await;
        }
        Read::End => return,
    };
    let refuse = |code: ErrorCode, why: String| fault(code, Kind::Join.to_u8(), 0, why);
    let slot = match admit(&ctx, &join.room) {
        Ok(slot) => slot,
        Err((code, why)) => return end_stream(&mut send, refuse(code, why)).await,
    };
    let (tx, rx) = mpsc::channel(ctx.shared.config.outbound_queue as usize);
    let link =
        Link { tx, datagrams: session.datagram_sender(), kill: ctx.slow.clone(), slot, conn: ctx.conn };
    let joined = enter(&ctx, &join, link).await;
    let (handle, joined) = match joined {
        Ok(ok) => ok,
        Err(code) => {
            if let Ok(mut s) = ctx.slots.lock() {
                s[usize::from(slot)] = Slot::Free;
            }
            return end_stream(&mut send, refuse(code, format!("cannot join {}", join.room))).await;
        }
    };
    let member = Membership { room: join.room, slot, handle, participant: joined.participant };
    if !register(&ctx, &member).await {
        return;
    }
    let (exit, writer) = serve_member(&ctx, &session, &member, joined, (send, rx), &mut reader).await;
    let code = match exit {
        Exit::Leave(code) => Some(code),
        // Every room is settled at once by the session's end: a lost connection keeps them.
        Exit::Gone if ending(&ctx, &session) => return,
        Exit::Gone => Some(ErrorCode::Normal),
        Exit::Ended => None,
    };
    end_membership(&ctx, &member, code, writer).await;
}

/// Ends a membership from the stream's side: leaves with `code` (`None`: the room already
/// ended it) and forgets the room.
async fn end_membership(
    ctx: &Ctx,
    member: &Membership,
    code: Option<ErrorCode>,
    writer: Option<tokio::task::JoinHandle<()>>,
) {
    if let Some(code) = code {
        let leave = Command::Leave { participant: member.participant, conn: ctx.conn, code };
        let _ = member.handle.send(leave).await;
    }
    // Let the writer flush what is queued (Left included) before the stream goes away.
    if let Some(writer) = writer {
        let _ = writer.await;
    }
    ctx.shared.resumes.set_room(&ctx.resume_token, &member.room, None);
    if let Ok(mut s) = ctx.slots.lock()
        && let Some(entry) = s.get_mut(usize::from(member.slot))
    {
        *entry = Slot::Free;
    }
}

/// Checks a `Join` against the token and the connection's rooms; reserves a slot.
fn admit(ctx: &Ctx, room: &str) -> Result<u16, (ErrorCode, String)> {
    if !ctx.claims().grants(room) {
        return Err((ErrorCode::RoomNotAllowed, format!("token does not grant {room}")));
    }
    take_slot(ctx, room, ctx.shared.config.max_rooms)
}

/// Joins the room, or re-attaches the member a resumed session held there.
async fn enter(
    ctx: &Ctx,
    join: &easel_proto::message::Join,
    link: Link,
) -> Result<(room::Handle, room::Joined), ErrorCode> {
    let claims = ctx.claims();
    let name = if join.name.is_empty() {
        claims.name.clone().unwrap_or_else(|| claims.sub.clone())
    } else {
        join.name.clone()
    };
    let resume = ctx.held.lock().ok().and_then(|mut held| held.remove(&join.room));
    let request = || JoinRequest {
        user: claims.sub.clone(),
        name: name.clone(),
        role: claims.role(),
        client_id: ctx.client_id.clone(),
        since: join.since.clone(),
        resume,
        expires_ms: claims.exp.saturating_mul(1000),
        link: link.clone(),
    };
    // `link` drops on return, leaving the room the only holder of the sender: when the room
    // lets go of the member, the writer ends.
    ctx.shared.rooms.join(&join.room, request).await
}

/// Records the membership where datagrams and the session's end find it. Returns false if
/// the session ended meanwhile, having settled this room as it settled the others.
async fn register(ctx: &Ctx, member: &Membership) -> bool {
    if let Ok(mut s) = ctx.slots.lock() {
        s[usize::from(member.slot)] = Slot::Joined(member.handle.clone(), member.participant);
    }
    ctx.shared.resumes.set_room(&ctx.resume_token, &member.room, Some(member.participant));
    // After the slot is visible: either the session's end took it, or this sees the end.
    match ctx.settled.get() {
        Some(&settle) => {
            ctx.settle_room(&member.handle, member.participant, settle).await;
            false
        }
        None => true,
    }
}

/// Answers `Joined`, then runs the member's writer and reader until either ends. Returns how,
/// and the writer if it was started.
async fn serve_member<S: Session + Clone>(
    ctx: &Ctx,
    session: &S,
    member: &Membership,
    joined: room::Joined,
    (mut send, rx): (S::Send, mpsc::Receiver<Outbound>),
    reader: &mut Reader<S::Recv>,
) -> (Exit, Option<tokio::task::JoinHandle<()>>) {
    let claims = ctx.claims();
    let sync = joined.snapshot.as_ref().map_or(easel_proto::message::SyncKind::None, |s| s.sync);
    let reply = Joined {
        slot: member.slot,
        room: member.room.clone(),
        participant: member.participant,
        role: claims.role(),
        resumed: joined.resumed,
        participants: joined.participants,
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
    let writer = tokio::spawn(write_room(session.clone(), member.slot, send, rx, left_tx));
    let exit = tokio::select! {
        exit = read_room(ctx, &member.handle, member.participant, reader) => exit,
        // The writer failed without the room ending the membership: the stream broke.
        left = left_rx => if left.is_ok() { Exit::Ended } else { Exit::Gone },
    };
    (exit, Some(writer))
}

/// Writes what the room queues for the member until the room ends the membership (then it
/// reports on `left`) or lets go of the member.
async fn write_room<S: Session + Clone>(
    session: S,
    slot: u16,
    mut send: S::Send,
    mut rx: mpsc::Receiver<Outbound>,
    left: oneshot::Sender<()>,
) {
    // Everything queued goes out in one write: a join storm of hundreds of
    // ParticipantJoined frames then costs a few packets, not one write per frame.
    let mut batch = Vec::with_capacity(16 * 1024);
    while let Some(first) = rx.recv().await {
        batch.clear();
        let mut next = Some(first);
        let mut ended = false;
        while let Some(out) = next.take() {
            match out {
                Outbound::Message(m) => {
                    if let Err(e) = m.encode_into(&mut batch) {
                        tracing::error!("encode {:?}: {e}", m.kind());
                    }
                }
                Outbound::Frame(bytes) => batch.extend_from_slice(&bytes),
                Outbound::Snapshot(p) => {
                    tokio::spawn(snapshot_stream(session.clone(), slot, p));
                }
                Outbound::Left(code, why) => {
                    let message =
                        Message::from(easel_proto::message::Left { code: code.to_u16(), message: why });
                    let _ = message.encode_into(&mut batch);
                    ended = true;
                    break;
                }
            }
            if batch.len() < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if send.write_all(&batch).await.is_err() {
            return;
        }
        if ended {
            let _ = send.shutdown().await;
            let _ = left.send(());
            return;
        }
    }
}

/// Feeds a room stream's frames to the room until the membership ends.
async fn read_room<R: AsyncRead + Unpin>(
    ctx: &Ctx,
    handle: &room::Handle,
    participant: u16,
    reader: &mut Reader<R>,
) -> Exit {
    loop {
        let message = match reader.next().await {
            Read::End => return Exit::Gone,
            // The stream cannot be resynchronised after an oversized frame (SPEC §3.1).
            Read::Bad(e) if e.code() == ErrorCode::FrameTooLarge => {
                return Exit::Leave(ErrorCode::FrameTooLarge);
            }
            Read::Bad(e) => {
                // The frame boundary is intact: report and go on (SPEC §3.1).
                let reply = fault(e.code(), 0, 0, e.to_string());
                if handle.send(Command::Reply(participant, reply)).await.is_err() {
                    return Exit::Ended;
                }
                continue;
            }
            Read::Message(m) => m,
        };
        let kind = message.kind().to_u8();
        let cmd = match message {
            Message::Update(u) => {
                let allowed = ctx.ops.lock().is_ok_and(|mut b| b.take(Instant::now()));
                if allowed {
                    Command::Update { participant, op_id: u.op_id, data: u.data }
                } else {
                    metrics::counter!("easel_ops_rejected_total").increment(1);
                    let reject = Reject {
                        op_id: u.op_id,
                        code: ErrorCode::RateLimited.to_u16(),
                        message: "rate limited".into(),
                    };
                    Command::Reply(participant, Message::from(reject))
                }
            }
            Message::Leave(_) => return Exit::Leave(ErrorCode::Normal),
            Message::Sync(s) => Command::Sync { participant, since: s.since },
            Message::SfuJoin(_)
            | Message::SfuSubscribe(_)
            | Message::SfuSdp(_)
            | Message::SfuCandidate(_)
            | Message::SfuLeave(_) => {
                if ctx.shared.rooms.has_sfu() {
                    Command::Sfu(participant, message)
                } else {
                    let refusal = fault(ErrorCode::SfuUnavailable, kind, 0, "no SFU is configured");
                    Command::Reply(participant, refusal)
                }
            }
            Message::ChatSend(_)
            | Message::ChatDelete(_)
            | Message::ChatHistory(_)
            | Message::PollStart(_)
            | Message::PollAnswer(_)
            | Message::PollClose(_)
            | Message::HandRaise(_)
            | Message::HandLower(_)
            | Message::Moderate(_) => Command::Class(participant, message),
            other => Command::Reply(
                participant,
                fault(
                    ErrorCode::UnexpectedMessage,
                    kind,
                    0,
                    format!("{} is not valid from a client here", other.kind()),
                ),
            ),
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
