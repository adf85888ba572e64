//! One client session, generic over the transport. The decisions live in [`core`] (sans-IO);
//! this driver runs the handshake on the control stream, then the control stream, one task per
//! room stream ([`room_stream`]) and the datagram loop, until one of them ends the session,
//! and settles its rooms.

mod core;
mod room_stream;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use easel_proto::{ErrorCode, Message, limits};
use easel_transport::Session;
use easel_transport::framed::{Read, Reader, write};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use tracing::field::Empty;

use self::core::{Control, Core, DatagramRoute, Ending, Refusal};
use crate::admission::Entry;
use crate::resume::Held;
use crate::room;
use crate::shared::Shared;
use crate::telemetry;

/// State the session's tasks share: the core behind one lock, and what the driver needs to
/// reach the rest of the server.
struct Ctx {
    shared: Arc<Shared>,
    core: Mutex<Core<room::Handle>>,
    /// Cancelled by a room when this session's reliable queue overflows.
    slow: CancellationToken,
    /// This connection's number (see `room::Arrival::conn`).
    conn: u64,
    /// The session id (see `room::Arrival::session`).
    session_id: u64,
    /// The resume token of this connection's `Welcome`: the session's key in the registry.
    resume_token: Vec<u8>,
    /// Cancelled when a resume on another connection takes this session over.
    takeover: CancellationToken,
}

impl Ctx {
    /// The core; a panic elsewhere while it was held leaves it usable (its state is plain data
    /// changed in single steps).
    fn core(&self) -> MutexGuard<'_, Core<room::Handle>> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the session is ending, so its end (not a room stream) decides each room's fate.
    fn ending<S: Session>(&self, session: &S) -> bool {
        self.core().is_settled() || session.closure().is_some()
    }
}

/// Answers a refused request with its `Fault` and finishes the stream.
async fn end_stream<W: AsyncWrite + Unpin>(send: &mut W, fault: &Message) {
    let _ = write(send, fault).await;
    let _ = send.shutdown().await;
}

fn unix_now() -> std::time::Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Serves a connection as the admission gate decided: an admitted one runs to its end and then
/// frees its slot; one over a session cap is told `Overloaded` with the hint.
pub(crate) async fn enter<S: Session + Clone>(
    shared: Arc<Shared>,
    session: S,
    entry: Entry,
    remote: std::net::SocketAddr,
) {
    match entry {
        Entry::Admitted(ticket) => {
            run(shared, session, remote).await;
            drop(ticket);
        }
        // The accept loops drop shed attempts before this; should one get here, it is told.
        Entry::Overloaded(retry_after) | Entry::Shed(retry_after) => {
            overloaded(&shared, &session, retry_after).await;
        }
    }
}

/// Answers the client's control stream with `GoAway { Overloaded, retry_after_ms }` without
/// reading its `Hello` (no JWT is verified), waits for it to close, and closes.
async fn overloaded<S: Session>(shared: &Shared, session: &S, retry_after: Duration) {
    let transport = session.kind().label();
    telemetry::session_opened(transport);
    metrics::counter!("easel_connects_total", "transport" => transport, "result" => "failed").increment(1);
    telemetry::refused(ErrorCode::Overloaded);
    let answer = async {
        let Ok((mut send, recv)) = session.accept_bi().await else { return };
        let mut reader = Reader::new(recv, limits::MAX_PREAUTH_FRAME_LEN);
        if write(&mut send, &core::overloaded(retry_after)).await.is_ok() {
            let _ = send.shutdown().await;
            farewell(&mut reader).await;
        }
    };
    let _ = tokio::time::timeout(shared.config.handshake_timeout, answer).await;
    tracing::debug!(transport, ?retry_after, "refused: overloaded");
    session.close(ErrorCode::Overloaded, "server overloaded");
    telemetry::session_closed(transport);
}

/// Runs a session to its end, in a span (transport, the peer's address; user, session id and
/// connection number once the handshake knows them) that its room streams share: one user's
/// logs can be followed.
async fn run<S: Session + Clone>(shared: Arc<Shared>, session: S, remote: std::net::SocketAddr) {
    let transport = session.kind().label();
    let span =
        tracing::info_span!("session", transport, %remote, user = Empty, session_id = Empty, conn = Empty);
    serve(shared, session, transport).instrument(span).await;
}

async fn serve<S: Session + Clone>(shared: Arc<Shared>, session: S, transport: &'static str) {
    telemetry::session_opened(transport);
    let started = Instant::now();
    let Some((ctx, control)) = established(&shared, &session, transport).await else { return };
    metrics::counter!("easel_connects_total", "transport" => transport, "result" => "ok").increment(1);
    tracing::debug!("session established");
    metrics::histogram!("easel_handshake_seconds").record(started.elapsed().as_secs_f64());

    let ending = tokio::select! {
        end = serve_control(&ctx, control) => end,
        end = accept_rooms(&ctx, &session) => end,
        end = datagrams(&ctx, &session) => end,
        () = ctx.slow.cancelled() => Ending::server(ErrorCode::SlowConsumer, "reliable queue overflowed"),
        () = ctx.takeover.cancelled() => Ending::TakenOver,
    };
    let (code, why) = settle(&ctx, &session, ending).await;
    session.close(code, &why);
    telemetry::session_closed(transport);
}

/// Runs the handshake, within the configured time; a refused or timed-out session is closed
/// and counted here. A function of its own so that its result's place (the context, before
/// it is shared) is not part of the session task's state for the connection's life.
async fn established<S: Session + Clone>(
    shared: &Arc<Shared>,
    session: &S,
    transport: &'static str,
) -> Option<(Arc<Ctx>, ControlStream<S>)> {
    let timeout = shared.config.handshake_timeout;
    // Boxed, here and below: a task's future is as large as its largest state, and a session
    // task lives for the connection. The handshake's (a resume claim in NATS, in cluster mode)
    // would otherwise be held by every idle session (BENCHMARKS.md, "Memory per idle session").
    let handshake = tokio::time::timeout(timeout, Box::pin(handshake(shared, session))).await;
    match handshake {
        Ok(Ok((ctx, control))) => Some((Arc::new(ctx), control)),
        Ok(Err(Refusal { code, why, reply })) => {
            // One answered with a Fault was counted before it (see `handshake`).
            if reply.is_none() {
                handshake_failed(transport, code);
            }
            tracing::info!(transport, %code, "handshake refused: {why}");
            session.close(code, &why);
            telemetry::session_closed(transport);
            None
        }
        Err(_) => {
            metrics::counter!("easel_connects_total", "transport" => transport, "result" => "failed")
                .increment(1);
            telemetry::refused(ErrorCode::HandshakeTimeout);
            session.close(ErrorCode::HandshakeTimeout, "handshake timeout");
            telemetry::session_closed(transport);
            None
        }
    }
}

/// Counts a failed handshake. `Normal`: the peer went away mid-handshake; nothing was refused.
fn handshake_failed(transport: &'static str, code: ErrorCode) {
    metrics::counter!("easel_connects_total", "transport" => transport, "result" => "failed").increment(1);
    if code != ErrorCode::Normal {
        telemetry::refused(code);
    }
}

/// Settles the session's rooms as its end decides; returns the code and reason to close the
/// connection with.
async fn settle<S: Session>(ctx: &Ctx, session: &S, ending: Ending) -> (ErrorCode, String) {
    // The registry first: once anyone sees this session leave, it must not be resumable.
    let closure = session.closure();
    let resumes = &ctx.shared.resumes;
    let settled = {
        let mut core = ctx.core();
        let settled = core.settle(ending, closure);
        match settled.settle {
            core::Settle::Leave(_) => resumes.end(&ctx.resume_token),
            core::Settle::Detach => resumes.detach(&ctx.resume_token, Instant::now()),
        }
        settled
    };
    tracing::debug!(conn = ctx.conn, settle = ?settled.settle, "session ended: {}", settled.why);
    for (handle, participant) in settled.rooms {
        let _ = handle.send(settled.settle.command(participant, ctx.conn)).await;
    }
    (settled.code, settled.why)
}

type ControlStream<S> = (Reader<<S as Session>::Recv>, <S as Session>::Send);

async fn handshake<S: Session>(
    shared: &Arc<Shared>,
    session: &S,
) -> Result<(Ctx, ControlStream<S>), Refusal> {
    let (mut send, recv) = session.accept_bi().await.map_err(|e| Refusal {
        code: ErrorCode::Normal,
        why: e.to_string(),
        reply: None,
    })?;
    let mut reader = Reader::new(recv, limits::MAX_PREAUTH_FRAME_LEN);
    let now = unix_now();
    let (hello, claims) = match core::hello(reader.next().await, &shared.verifier, now.as_secs()) {
        Ok(ok) => {
            tracing::Span::current().record("user", ok.1.sub.as_str());
            ok
        }
        Err(refusal) => {
            if let Some(fault) = &refusal.reply {
                // Counted first: whoever reads the Fault sees the count.
                handshake_failed(session.kind().label(), refusal.code);
                end_stream(&mut send, fault).await;
                // As after any last word: closing at once would discard the Fault.
                farewell(&mut reader).await;
            }
            return Err(refusal);
        }
    };
    let config = &shared.config;
    let t = Instant::now();
    if hello.resume.is_some() {
        metrics::counter!("easel_resume_attempts_total").increment(1);
    }
    let claimed = match hello.resume {
        Some(token) => shared.resumes.claim(&token, &claims.sub, t).await,
        None => None,
    };
    let resumed = claimed.is_some();
    // Counted before Welcome goes out: whoever sees Welcome sees the count.
    if resumed {
        metrics::counter!("easel_resumes_total").increment(1);
    }
    let held = claimed.unwrap_or_else(|| Held { session_id: rand::random(), rooms: HashMap::new() });
    let mut resume_token = vec![0u8; 32];
    rand::fill(&mut resume_token[..]);
    let welcome = core::welcome(
        config,
        &claims,
        held.session_id,
        resume_token.clone(),
        resumed,
        now.as_millis() as u64,
    );
    write(&mut send, &Message::from(welcome)).await.map_err(|_| Refusal {
        code: ErrorCode::Normal,
        why: "closed during handshake".into(),
        reply: None,
    })?;
    // Registered only now: the handshake timeout may cancel the write above, and nothing
    // would then remove a live entry. There is no await from here on.
    let takeover = CancellationToken::new();
    shared.resumes.open(resume_token.clone(), claims.sub.clone(), held.clone(), takeover.clone());
    if resumed {
        tracing::info!(session_id = held.session_id, rooms = held.rooms.len(), "session resumed");
    }
    reader.set_max_frame(config.max_frame as usize);
    let core = Core::new(config, shared.rooms.has_sfu(), (claims, hello.client_id), held.rooms, t);
    let ctx = Ctx {
        shared: shared.clone(),
        core: Mutex::new(core),
        slow: CancellationToken::new(),
        conn: shared.next_conn.fetch_add(1, Ordering::Relaxed),
        session_id: held.session_id,
        resume_token,
        takeover,
    };
    tracing::Span::current().record("session_id", held.session_id).record("conn", ctx.conn);
    Ok((ctx, (reader, send)))
}

/// How long a session the server ends waits, after its last word (`GoAway`, a fatal `Fault`),
/// for the peer to close: a close discards stream data not yet acknowledged, so closing at once
/// loses that word over QUIC and WebTransport. A round trip is enough; a peer that stays is
/// closed after this.
const FAREWELL: Duration = Duration::from_millis(250);

/// Waits, at most [`FAREWELL`], for the peer to end the control stream (it closes on reading
/// the server's last word), reading and ignoring anything it still sends. A stream that cannot
/// be read on (a frame over the limit stays undecodable: `next` would answer at once, forever,
/// and the timeout never get its turn) is waited out instead.
async fn farewell<R: AsyncRead + Unpin>(reader: &mut Reader<R>) {
    let drain = async {
        loop {
            match reader.next().await {
                Read::End => return,
                Read::Message(_) => {}
                Read::Bad(_) => std::future::pending::<()>().await,
            }
        }
    };
    let _ = tokio::time::timeout(FAREWELL, drain).await;
}

async fn serve_control<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    ctx: &Ctx,
    (mut reader, mut send): (Reader<R>, W),
) -> Ending {
    let revocations = ctx.shared.verifier.revocations();
    let mut revoked = revocations.watch();
    loop {
        let left = ctx.core().token_left(unix_now().as_secs());
        let step = tokio::select! {
            read = reader.next() => {
                let now_ms = unix_now().as_millis() as u64;
                ctx.core().control(read, &ctx.shared.verifier, now_ms)
            }
            () = tokio::time::sleep(left) => {
                let (go, ending) = core::token_expired();
                Control::End(Some(go), ending)
            }
            () = ctx.shared.shutdown.cancelled() => {
                let (go, ending) = core::shutting_down();
                Control::End(Some(go), ending)
            }
            Ok(()) = revoked.changed() => {
                if revocations.revokes(ctx.core().claims()) {
                    let (go, ending) = core::token_revoked();
                    Control::End(Some(go), ending)
                } else {
                    Control::Quiet
                }
            }
        };
        match step {
            Control::Refresh(reply, rooms) => {
                // The rooms first: by the time the client reads the reply, each has it queued.
                // Boxed: the room's send is the largest state of this loop, which every
                // session holds for its life, and a refresh is rare.
                for (handle, participant, recheck) in rooms {
                    let _ = Box::pin(handle.send(recheck.command(participant, ctx.conn))).await;
                }
                if write(&mut send, &reply).await.is_err() {
                    return Ending::peer("control stream closed");
                }
            }
            Control::Reply(reply) => {
                if write(&mut send, &reply).await.is_err() {
                    return Ending::peer("control stream closed");
                }
            }
            Control::Quiet => {}
            Control::End(reply, ending) => {
                // Not at shutdown: the rooms are closing, and an edit the client sent in the
                // meantime would be refused there instead of resent after the restart.
                if let Some(reply) = reply
                    && write(&mut send, &reply).await.is_ok()
                    && !ctx.shared.shutdown.is_cancelled()
                {
                    farewell(&mut reader).await;
                }
                return ending;
            }
        }
    }
}

async fn accept_rooms<S: Session + Clone>(ctx: &Arc<Ctx>, session: &S) -> Ending {
    loop {
        match session.accept_bi().await {
            Ok((send, recv)) => {
                let (ctx, session) = (ctx.clone(), session.clone());
                tokio::spawn(
                    async move { room_stream::run(ctx, session, send, recv).await }.in_current_span(),
                );
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
        let route = ctx.core().route_datagram(&bytes, Instant::now());
        match route {
            DatagramRoute::Cursor(handle, participant, c) => handle.cursor(participant, c),
            DatagramRoute::Heartbeat(handle, participant, h) => handle.heartbeat(participant, h),
            DatagramRoute::Drop(reason) => {
                metrics::counter!("easel_datagrams_dropped_total", "reason" => reason).increment(1);
            }
        }
    }
}
