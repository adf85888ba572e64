//! One client session, generic over the transport: handshake on the control stream, one task
//! per room stream, a datagram loop, and the rules that tie them (limits, auth, shutdown).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use easel_proto::message::{
    Fault, GoAway, Hello, Joined, Pong, Reject, SessionLimits, SnapshotBegin, SnapshotChunk, TokenRefreshed,
    Welcome,
};
use easel_proto::{Datagram, ErrorCode, FrameDecoder, Kind, Message, PROTOCOL_VERSION, limits};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::auth::Claims;
use crate::limit::TokenBucket;
use crate::room::{self, Command, JoinRequest, Link, Outbound, SnapshotPayload};
use crate::server::Shared;
use crate::transport::Session;

/// How long a client told to go away by a shutdown should wait before reconnecting.
const RECONNECT_HINT_MS: u32 = 1000;

/// Queued room-stream frames are coalesced into writes of up to about this many bytes.
const WRITE_BATCH: usize = 64 * 1024;

/// Bytes per snapshot chunk frame.
const CHUNK: usize = 256 * 1024;

/// Why a session ended, for the close code.
struct End(ErrorCode, String);

impl End {
    fn new(code: ErrorCode, why: impl Into<String>) -> Self {
        Self(code, why.into())
    }
}

/// A frame reader over one stream.
struct Reader<R> {
    recv: R,
    decoder: FrameDecoder,
    buf: Vec<u8>,
}

/// What reading a stream produced.
enum Read {
    Message(Message),
    /// A frame that did not decode; the stream can go on unless the error says otherwise.
    Bad(easel_proto::Error),
    /// The peer finished the stream (or it broke).
    End,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    fn new(recv: R, max_frame: usize) -> Self {
        Self { recv, decoder: FrameDecoder::new(max_frame), buf: vec![0; 16 * 1024] }
    }

    async fn next(&mut self) -> Read {
        loop {
            match self.decoder.decode() {
                Ok(Some(m)) => return Read::Message(m),
                Ok(None) => {}
                Err(e) => return Read::Bad(e),
            }
            match self.recv.read(&mut self.buf).await {
                Ok(0) | Err(_) => return Read::End,
                Ok(n) => self.decoder.push(&self.buf[..n]),
            }
        }
    }
}

async fn write<W: AsyncWrite + Unpin>(send: &mut W, message: &Message) -> Result<(), ()> {
    let bytes = message.encode().map_err(|e| tracing::error!("encode {:?}: {e}", message.kind()))?;
    send.write_all(&bytes).await.map_err(|_| ())
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
    slots: Mutex<Vec<Option<(room::Handle, u16)>>>,
    ops: Mutex<TokenBucket>,
    datagrams: Mutex<TokenBucket>,
    /// Cancelled by a room when this session's reliable queue overflows.
    slow: CancellationToken,
}

impl Ctx {
    fn claims(&self) -> Claims {
        self.claims.lock().map(|c| c.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }
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
    let end = tokio::select! {
        end = serve_control(&ctx, control) => end,
        end = accept_rooms(&ctx, &session) => end,
        end = datagrams(&ctx, &session) => end,
        () = ctx.slow.cancelled() => End::new(ErrorCode::SlowConsumer, "reliable queue overflowed"),
    };
    leave_all(&ctx, end.0).await;
    session.close(end.0, &end.1);
    metrics::gauge!("easel_sessions", "transport" => transport).decrement(1.0);
}

async fn leave_all(ctx: &Ctx, code: ErrorCode) {
    let joined: Vec<(room::Handle, u16)> = match ctx.slots.lock() {
        Ok(mut slots) => slots.iter_mut().filter_map(Option::take).collect(),
        Err(_) => return,
    };
    let code = if code == ErrorCode::ShuttingDown { ErrorCode::ShuttingDown } else { ErrorCode::Normal };
    for (handle, participant) in joined {
        let _ = handle.send(Command::Leave { participant, code }).await;
    }
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
    let Hello { versions, client_id, token, .. } = hello;
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
    let mut resume_token = vec![0u8; 32];
    rand::fill(&mut resume_token[..]);
    let welcome = Welcome {
        version: PROTOCOL_VERSION,
        session_id: rand::random(),
        user: claims.sub.clone(),
        server_time_ms: unix_ms(now),
        token_expires_ms: claims.exp.saturating_mul(1000),
        resume_token,
        resumed: false,
        limits: SessionLimits {
            max_frame_len: config.max_frame,
            max_datagram_len: limits::MAX_DATAGRAM_LEN as u16,
            max_rooms: config.max_rooms,
            max_participants: config.max_participants,
            ops_per_sec: config.ops_per_sec,
            ops_burst: config.ops_burst,
            datagrams_per_sec: config.datagrams_per_sec,
            datagrams_burst: config.datagrams_burst,
            chat_per_min: 30,
            tick_hz: config.tick_hz,
            heartbeat_ms: config.heartbeat_ms,
            presence_ttl_ms: (config.presence_ttl_secs * 1000) as u32,
            resume_grace_ms: 30_000,
        },
    };
    write(&mut send, &Message::from(welcome))
        .await
        .map_err(|()| End::new(ErrorCode::Normal, "closed during handshake"))?;
    reader.decoder.set_max_frame(config.max_frame as usize);
    let t = Instant::now();
    let ctx = Ctx {
        shared: shared.clone(),
        client_id,
        claims: Mutex::new(claims),
        slots: Mutex::new(Vec::new()),
        ops: Mutex::new(TokenBucket::new(config.ops_per_sec, config.ops_burst, t)),
        datagrams: Mutex::new(TokenBucket::new(config.datagrams_per_sec, config.datagrams_burst, t)),
        slow: CancellationToken::new(),
    };
    Ok((ctx, (reader, send)))
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
) -> End {
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
                return End::new(ErrorCode::TokenExpired, "token expired");
            }
            () = ctx.shared.shutdown.cancelled() => {
                let go = GoAway {
                    code: ErrorCode::ShuttingDown.to_u16(),
                    retry_after_ms: RECONNECT_HINT_MS,
                    message: "server shutting down".into(),
                };
                let _ = write(&mut send, &Message::from(go)).await;
                return End::new(ErrorCode::ShuttingDown, "server shutting down");
            }
        };
        let reply = match read {
            Read::End => return End::new(ErrorCode::Normal, "control stream closed"),
            Read::Bad(e) => {
                let _ = write(&mut send, &fault(e.code(), 0, 0, e.to_string())).await;
                return End::new(e.code(), e.to_string());
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
            return End::new(ErrorCode::Normal, "control stream closed");
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

async fn accept_rooms<S: Session + Clone>(ctx: &Arc<Ctx>, session: &S) -> End {
    loop {
        match session.accept_bi().await {
            Ok((send, recv)) => {
                let (ctx, session) = (ctx.clone(), session.clone());
                tokio::spawn(async move { room_stream(ctx, session, send, recv).await });
            }
            Err(e) => return End::new(ErrorCode::Normal, e.to_string()),
        }
    }
}

async fn datagrams<S: Session>(ctx: &Ctx, session: &S) -> End {
    loop {
        let bytes = match session.recv_datagram().await {
            Ok(b) => b,
            Err(e) => return End::new(ErrorCode::Normal, e.to_string()),
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
        let target = ctx.slots.lock().ok().and_then(|s| s.get(usize::from(slot)).cloned().flatten());
        let Some((handle, participant)) = target else {
            metrics::counter!("easel_datagrams_dropped_total", "reason" => "unknown_slot").increment(1);
            continue;
        };
        handle.offer(match datagram {
            Datagram::Cursor(c) => Command::Cursor(participant, c),
            Datagram::Heartbeat(h) => Command::Heartbeat(participant, h),
            _ => continue,
        });
    }
}

/// Takes a free slot, or `None` when the connection has its maximum of rooms.
fn take_slot(ctx: &Ctx, max: u16) -> Option<u16> {
    let mut slots = ctx.slots.lock().ok()?;
    if slots.iter().filter(|s| s.is_some()).count() >= usize::from(max) {
        return None;
    }
    // Reserve with a placeholder so two concurrent joins cannot take the same slot.
    let free = slots.iter().position(Option::is_none).unwrap_or(slots.len());
    if free == slots.len() {
        slots.push(None);
    }
    Some(free as u16)
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
    let claims = ctx.claims();
    let refuse = |code: ErrorCode, why: String| fault(code, Kind::Join.to_u8(), 0, why);
    if !claims.grants(&join.room) {
        let why = format!("token does not grant {}", join.room);
        return end_stream(&mut send, refuse(ErrorCode::RoomNotAllowed, why)).await;
    }
    let already = ctx.slots.lock().is_ok_and(|s| s.iter().flatten().any(|(h, _)| h.id() == join.room));
    if already {
        return end_stream(&mut send, refuse(ErrorCode::AlreadyJoined, join.room.clone())).await;
    }
    let Some(slot) = take_slot(&ctx, ctx.shared.config.max_rooms) else {
        let why = "too many rooms on this connection".into();
        return end_stream(&mut send, refuse(ErrorCode::TooManyRooms, why)).await;
    };
    let (tx, mut rx) = mpsc::channel(ctx.shared.config.outbound_queue as usize);
    let link = Link { tx, datagrams: session.datagram_sender(), kill: ctx.slow.clone(), slot };
    let name = if join.name.is_empty() {
        claims.name.clone().unwrap_or_else(|| claims.sub.clone())
    } else {
        join.name.clone()
    };
    let request = || JoinRequest {
        user: claims.sub.clone(),
        name: name.clone(),
        role: claims.role(),
        client_id: ctx.client_id.clone(),
        since: join.since.clone(),
        link: link.clone(),
    };
    let joined = ctx.shared.rooms.join(&join.room, request).await;
    // Only the room may hold the sender now: when it drops the member, the writer ends.
    drop(link);
    let (handle, joined) = match joined {
        Ok(ok) => ok,
        Err(code) => {
            if let Ok(mut s) = ctx.slots.lock() {
                s[usize::from(slot)] = None;
            }
            return end_stream(&mut send, refuse(code, format!("cannot join {}", join.room))).await;
        }
    };
    let participant = joined.participant;
    if let Ok(mut s) = ctx.slots.lock() {
        s[usize::from(slot)] = Some((handle.clone(), participant));
    }
    let sync = joined.snapshot.as_ref().map_or(easel_proto::message::SyncKind::None, |s| s.sync);
    let reply = Joined {
        slot,
        room: join.room.clone(),
        participant,
        role: claims.role(),
        resumed: false,
        participants: joined.participants,
        sync,
    };
    if write(&mut send, &Message::from(reply)).await.is_ok() {
        if let Some(payload) = joined.snapshot {
            tokio::spawn(snapshot_stream(session.clone(), slot, payload));
        }
        // The writer drains the room's queue; the reader feeds the room.
        let (left_tx, left_rx) = oneshot::channel();
        let writer = tokio::spawn(async move {
            // Everything queued goes out in one write: a join storm of hundreds of
            // ParticipantJoined frames then costs a few packets, not one write per frame.
            let mut batch = Vec::with_capacity(16 * 1024);
            while let Some(first) = rx.recv().await {
                batch.clear();
                let mut next = Some(first);
                let mut left = None;
                while let Some(out) = next.take() {
                    match out {
                        Outbound::Message(m) => {
                            if let Err(e) = m.encode_into(&mut batch) {
                                tracing::error!("encode {:?}: {e}", m.kind());
                            }
                        }
                        Outbound::Snapshot(p) => {
                            tokio::spawn(snapshot_stream(session.clone(), slot, p));
                        }
                        Outbound::Left(code, why) => {
                            let message = Message::from(easel_proto::message::Left {
                                code: code.to_u16(),
                                message: why,
                            });
                            let _ = message.encode_into(&mut batch);
                            left = Some(());
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
                if left.is_some() {
                    let _ = send.shutdown().await;
                    let _ = left_tx.send(());
                    return;
                }
            }
        });
        let code = tokio::select! {
            code = read_room(&ctx, &handle, participant, &mut reader) => code,
            _ = left_rx => None,
        };
        if let Some(code) = code {
            let _ = handle.send(Command::Leave { participant, code }).await;
        }
        // Let the writer flush what is queued (Left included) before the stream goes away.
        let _ = writer.await;
    } else {
        let _ = handle.send(Command::Leave { participant, code: ErrorCode::Normal }).await;
    }
    if let Ok(mut s) = ctx.slots.lock()
        && let Some(entry) = s.get_mut(usize::from(slot))
    {
        *entry = None;
    }
}

/// Feeds a room stream's frames to the room. Returns the code to leave with, or `None` if the
/// room already ended the membership.
async fn read_room<R: AsyncRead + Unpin>(
    ctx: &Ctx,
    handle: &room::Handle,
    participant: u16,
    reader: &mut Reader<R>,
) -> Option<ErrorCode> {
    loop {
        let message = match reader.next().await {
            Read::End => return Some(ErrorCode::Normal),
            // The stream cannot be resynchronised after an oversized frame (SPEC §3.1).
            Read::Bad(e) if e.code() == ErrorCode::FrameTooLarge => return Some(ErrorCode::FrameTooLarge),
            Read::Bad(e) => {
                // The frame boundary is intact: report and go on (SPEC §3.1).
                let reply = fault(e.code(), 0, 0, e.to_string());
                if handle.send(Command::Reply(participant, reply)).await.is_err() {
                    return None;
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
            Message::Leave(_) => {
                let _ = handle.send(Command::Leave { participant, code: ErrorCode::Normal }).await;
                return None;
            }
            Message::Sync(s) => Command::Sync { participant, since: s.since },
            Message::SfuJoin(_)
            | Message::SfuSubscribe(_)
            | Message::SfuSdp(_)
            | Message::SfuCandidate(_)
            | Message::SfuLeave(_) => {
                Command::Reply(participant, fault(ErrorCode::SfuUnavailable, kind, 0, "no SFU is configured"))
            }
            Message::ChatSend(_)
            | Message::ChatDelete(_)
            | Message::ChatHistory(_)
            | Message::PollStart(_)
            | Message::PollAnswer(_)
            | Message::PollClose(_)
            | Message::HandRaise(_)
            | Message::HandLower(_)
            | Message::Moderate(_) => Command::Reply(
                participant,
                fault(ErrorCode::UnexpectedMessage, kind, 0, "not supported by this server version yet"),
            ),
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
            return None;
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
