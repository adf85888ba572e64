//! `easel-probe`: starts the real `easel` binary on loopback and measures what a user feels —
//! connect-to-Welcome time, reconnect-to-resumed time (a dropped session coming back inside the
//! grace window: new connection, resumed `Welcome`, resumed `Joined`), cursor datagram latency
//! between participants, op ack latency (which includes the fsync), and server memory per idle
//! session. Bounded in count and time.
//!
//! ```sh
//! cargo build --release -p easel-server -p easel-benches
//! target/release/easel-probe --server target/release/easel --transport quic
//! # only the memory of 10,000 idle sessions, in classes of 30 (see scripts/bench-idle.sh)
//! target/release/easel-probe --only idle --idle-sessions 10000 --transport ws
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser as _;
use easel_benches::{histogram, rss_kib, token};
use easel_proto::datagram::{Cursor, Heartbeat, Status, Tool};
use easel_proto::message::Update;
use easel_proto::{Datagram, Message};
use easel_transport::client::{Connection, Options, RoomStream, Transport};
use futures::StreamExt as _;
use hdrhistogram::Histogram;
use loro::{ExportMode, LoroDoc};
use tokio::io::{AsyncBufReadExt as _, BufReader};

const SECRET: &str = "easel-probe-secret-easel-probe-secret-0123";

/// Measures a real easel server on loopback.
#[derive(Debug, clap::Parser)]
struct Args {
    /// The `easel` binary to start.
    #[arg(long, default_value = "target/release/easel")]
    server: PathBuf,
    /// quic, wt or ws.
    #[arg(long, default_value = "quic")]
    transport: String,
    /// Sequential connects to time.
    #[arg(long, default_value_t = 200)]
    connects: u32,
    /// Sequential drop-and-resume cycles to time.
    #[arg(long, default_value_t = 200)]
    resumes: u32,
    /// Cursor latency samples to collect (each is one sender's position seen by one receiver).
    #[arg(long, default_value_t = 20_000)]
    cursor_samples: u64,
    /// Participants moving cursors at once.
    #[arg(long, default_value_t = 10)]
    cursor_clients: u32,
    /// Cursor send rate per participant (Hz).
    #[arg(long, default_value_t = 60)]
    cursor_hz: u32,
    /// Server tick rate (--tick-hz of the server).
    #[arg(long, default_value_t = 60)]
    tick_hz: u32,
    /// Sequential ops (one in flight) whose ack latency is measured.
    #[arg(long, default_value_t = 1000)]
    ops: u64,
    /// Idle sessions opened to measure memory per session.
    #[arg(long, default_value_t = 500)]
    idle_sessions: u32,
    /// Idle sessions per room once they join (a class); each room is its own.
    #[arg(long, default_value_t = 30)]
    idle_room_size: u32,
    /// Idle sessions connecting (or joining) at once.
    #[arg(long, default_value_t = 32)]
    idle_concurrency: usize,
    /// Seconds to let the server settle after the connects and after the joins before its
    /// RSS is read (keep-alives, presence refreshes and deferred frees happen in this time).
    #[arg(long, default_value_t = 10)]
    idle_settle_secs: u64,
    /// The measurements to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "connect,resume,cursor,ops,idle")]
    only: Vec<Measure>,
    /// Write the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One of the probe's measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Measure {
    Connect,
    Resume,
    Cursor,
    Ops,
    Idle,
}

struct Server {
    child: tokio::process::Child,
    options: Options,
    pid: u32,
    http: std::net::SocketAddr,
}

async fn start(args: &Args, transport: Transport, dir: &std::path::Path) -> anyhow::Result<Server> {
    let mut child = tokio::process::Command::new(&args.server)
        .args(["--data-dir", &dir.display().to_string()])
        .args(["--wt-addr", "127.0.0.1:0", "--quic-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .args(["--tick-hz", &args.tick_hz.to_string()])
        .args(["--ops-per-sec", "100000", "--ops-burst", "100000"])
        .args(["--datagrams-per-sec", "100000", "--datagrams-burst", "100000"])
        .env("EASEL_JWT_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", args.server.display()))?;
    let pid = child.id().context("server pid")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["event"] == "ready"
            {
                return Ok(v);
            }
        }
        bail!("server exited before it was ready")
    })
    .await
    .context("server not ready within 30 s")??;
    let key = match transport {
        Transport::Quic => "quic",
        Transport::WebTransport => "wt",
        _ => "http",
    };
    let addr = ready[key].as_str().context("address")?.parse()?;
    let options =
        Options::new(addr, transport).with_cert_hash(ready["cert_sha256"].as_str().context("hash")?)?;
    let http = ready["http"].as_str().context("http address")?.parse()?;
    Ok(Server { child, options, pid, http })
}

/// One gauge from the server's `/metrics`, summed over its labelled series.
async fn gauge(server: &Server, name: &str) -> anyhow::Result<f64> {
    easel_benches::metric(server.http, name).await?.context("gauge missing")
}

fn summary(h: &Histogram<u64>) -> serde_json::Value {
    let ms = |v: u64| v as f64 / 1000.0;
    serde_json::json!({
        "samples": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
    })
}

async fn connect_latency(args: &Args, server: &Server) -> anyhow::Result<Histogram<u64>> {
    let mut h = histogram();
    let tok = token(SECRET, "probe/connect/x", "connector")?;
    for i in 0..args.connects {
        let started = Instant::now();
        let conn = Connection::connect(&server.options, &tok, &format!("c{i}")).await?;
        h.record(started.elapsed().as_micros() as u64)?;
        conn.close(easel_proto::ErrorCode::Normal);
    }
    Ok(h)
}

/// Time from starting a new connection after a drop to being back in the room with the old
/// participant number (what the SDK does after it notices the loss and its backoff expires).
async fn resume_latency(args: &Args, server: &Server) -> anyhow::Result<Histogram<u64>> {
    let room = "probe/resume/x";
    let tok = token(SECRET, room, "roamer")?;
    let mut h = histogram();
    let mut conn = Connection::connect(&server.options, &tok, "roamer").await?;
    let mut stream = conn.join(room, None).await?;
    let participant = stream.joined().participant;
    for _ in 0..args.resumes {
        let resume = conn.welcome().resume_token.clone();
        let vv = LoroDoc::new().oplog_vv().encode();
        // A non-zero close code is a drop, not a leave: the server holds the session.
        conn.close(easel_proto::ErrorCode::Internal);
        drop(stream);
        let started = Instant::now();
        conn = Connection::connect_resuming(&server.options, &tok, "roamer", Some(resume)).await?;
        stream = conn.join(room, Some(vv)).await?;
        h.record(started.elapsed().as_micros() as u64)?;
        let joined = stream.joined();
        if !conn.welcome().resumed || !joined.resumed || joined.participant != participant {
            bail!(
                "not resumed: welcome {} joined {} participant {}",
                conn.welcome().resumed,
                joined.resumed,
                joined.participant
            );
        }
    }
    conn.close(easel_proto::ErrorCode::Normal);
    Ok(h)
}

async fn cursor_latency(args: &Args, server: &Server) -> anyhow::Result<(Histogram<u64>, u64)> {
    let room = "probe/cursor/x";
    let mut members: Vec<(Arc<Connection>, RoomStream)> = Vec::new();
    for i in 0..args.cursor_clients {
        let conn =
            Connection::connect(&server.options, &token(SECRET, room, &format!("u{i}"))?, &format!("u{i}"))
                .await?;
        let stream = conn.join(room, None).await?;
        members.push((Arc::new(conn), stream));
    }
    // (participant, seq) → when it was sent; shared clock, one process.
    let sent: Arc<Mutex<HashMap<(u16, u16), Instant>>> = Arc::default();
    let hist = Arc::new(Mutex::new(histogram()));
    let target = args.cursor_samples;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tasks = tokio::task::JoinSet::new();
    for (member, stream) in &members {
        let (conn, sent_at) = (member.clone(), sent.clone());
        let (me, slot) = (stream.joined().participant, stream.joined().slot);
        let period = Duration::from_secs(1) / args.cursor_hz;
        let hist_for_sender = hist.clone();
        tasks.spawn(async move {
            let mut every = tokio::time::interval(period);
            let mut seq = 0u16;
            while Instant::now() < deadline && hist_for_sender.lock().map_or(0, |h| h.len()) < target {
                every.tick().await;
                seq = seq.wrapping_add(1);
                if let Ok(mut s) = sent_at.lock() {
                    s.insert((me, seq), Instant::now());
                }
                let _ = conn.send_datagram(&Datagram::from(Cursor { slot, seq, x: i32::from(seq), y: 0 }));
            }
            0u64
        });
        let (conn, sent, hist) = (member.clone(), sent.clone(), hist.clone());
        tasks.spawn(async move {
            let mut received = 0u64;
            while Instant::now() < deadline && hist.lock().map_or(0, |h| h.len()) < target {
                let Ok(Ok(d)) = tokio::time::timeout(Duration::from_millis(500), conn.recv_datagram()).await
                else {
                    continue;
                };
                let at = Instant::now();
                if let Datagram::CursorBatch(batch) = d {
                    // A batch may carry our own cursor (SPEC §8.3): not a delivery.
                    for c in batch.cursors.into_iter().filter(|c| c.participant != me) {
                        let when = sent.lock().ok().and_then(|s| s.get(&(c.participant, c.seq)).copied());
                        if let (Some(when), Ok(mut h)) = (when, hist.lock()) {
                            let _ = h.record(at.duration_since(when).as_micros() as u64);
                            received += 1;
                        }
                    }
                }
            }
            received
        });
    }
    while tasks.join_next().await.is_some() {}
    let h = hist.lock().map(|h| h.clone()).unwrap_or_else(|_| histogram());
    Ok((h, members.len() as u64))
}

async fn op_latency(args: &Args, server: &Server) -> anyhow::Result<Histogram<u64>> {
    let room = "probe/ops/x";
    let conn = Connection::connect(&server.options, &token(SECRET, room, "writer")?, "writer").await?;
    let mut stream = conn.join(room, None).await?;
    let doc = LoroDoc::new();
    let mut vv = doc.oplog_vv();
    let mut h = histogram();
    for op in 1..=args.ops {
        doc.get_text("t").insert(0, "x")?;
        doc.commit();
        let data = doc.export(ExportMode::updates(&vv))?;
        vv = doc.oplog_vv();
        let started = Instant::now();
        stream.send(&Message::from(Update { op_id: op, data })).await?;
        loop {
            match stream.next().await? {
                Some(Message::Ack(a)) if a.op_ids.contains(&op) => break,
                Some(Message::Reject(r)) => bail!("op rejected: {r:?}"),
                Some(_) => {}
                None => bail!("room stream closed"),
            }
        }
        h.record(started.elapsed().as_micros() as u64)?;
    }
    Ok(h)
}

/// Server memory held by idle sessions: first only connected (past `Welcome`), then each
/// joined to a room of `--idle-room-size` (a class of idle students, the realistic case) and
/// sending presence heartbeats as an idle app does (without them the server evicts a member
/// after the presence TTL). `empty_kib` is the server's RSS before any session connected.
async fn memory_per_session(
    args: &Args,
    server: &Server,
    empty_kib: u64,
) -> anyhow::Result<serde_json::Value> {
    let n = args.idle_sessions;
    let settle = Duration::from_secs(args.idle_settle_secs);
    let room_of = |i: u32| format!("probe/idle/class{}", i / args.idle_room_size.max(1));
    // Warm up allocator pools and a room before the baseline.
    let warm_room = "probe/idle/warm";
    let warm = Connection::connect(&server.options, &token(SECRET, warm_room, "warm")?, "warm").await?;
    let _warm_room = warm.join(warm_room, None).await?;
    let before = rss_kib(server.pid)?;

    let started = Instant::now();
    let mut conns: Vec<Connection> = futures::stream::iter(0..n)
        .map(|i| async move {
            let tok = token(SECRET, &room_of(i), &format!("idle{i}"))?;
            let conn = Connection::connect(&server.options, &tok, &format!("idle{i}")).await;
            conn.with_context(|| format!("idle session {i}"))
        })
        .buffered(args.idle_concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let sessions = gauge(server, "easel_sessions").await?;
    let connected = rss_kib(server.pid)?;

    let started = Instant::now();
    let rooms: Vec<RoomStream> = futures::stream::iter(conns.iter().zip(0..n))
        .map(|(conn, i)| async move {
            conn.join(&room_of(i), None).await.with_context(|| format!("idle session {i} joining"))
        })
        .buffered(args.idle_concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let join_secs = started.elapsed().as_secs_f64();
    let members: Vec<(&Connection, u16)> =
        conns.iter().zip(&rooms).map(|(c, r)| (c, r.joined().slot)).collect();
    let every = Duration::from_millis(u64::from(warm.welcome().limits.heartbeat_ms));
    let heartbeats_failed = heartbeats(&members, every, settle).await;
    let participants = gauge(server, "easel_participants").await?;
    let joined = rss_kib(server.pid)?;

    drop(members);
    drop(rooms);
    for conn in conns.drain(..) {
        conn.close(easel_proto::ErrorCode::Normal);
    }
    let per = |rss: u64| {
        let kib = rss.saturating_sub(before) as f64 / f64::from(n.max(1));
        (kib * 10.0).round() / 10.0
    };
    Ok(serde_json::json!({
        "sessions": n,
        "room_size": args.idle_room_size,
        "sessions_on_server": sessions,
        "participants_on_server": participants,
        "heartbeats_failed": heartbeats_failed,
        "connect_secs": (connect_secs * 10.0).round() / 10.0,
        "join_secs": (join_secs * 10.0).round() / 10.0,
        "rss_empty_kib": empty_kib,
        "rss_before_kib": before,
        "rss_connected_kib": connected,
        "rss_joined_kib": joined,
        "kib_per_connected_session": per(connected),
        "kib_per_joined_session": per(joined),
    }))
}

/// Sends each member's idle presence once per `every`, spread evenly over it, for `duration`;
/// returns how many heartbeats could not be sent.
async fn heartbeats(members: &[(&Connection, u16)], every: Duration, duration: Duration) -> u64 {
    const CHUNK: usize = 100;
    let chunks = members.len().div_ceil(CHUNK).max(1);
    let mut tick = tokio::time::interval(every / chunks as u32);
    let deadline = Instant::now() + duration;
    let (mut seq, mut failed) = (0u16, 0);
    for chunk in members.chunks(CHUNK).cycle() {
        tick.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        seq = seq.wrapping_add(1);
        for (conn, slot) in chunk {
            let beat = Heartbeat { slot: *slot, seq, status: Status::Idle, tool: Tool::Pointer };
            // A full buffer drops a heartbeat; the next one carries the same state.
            if conn.send_datagram(&Datagram::from(beat)).is_err() {
                failed += 1;
            }
        }
    }
    failed
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let transport = match args.transport.as_str() {
        "quic" => Transport::Quic,
        "wt" | "webtransport" => Transport::WebTransport,
        "ws" | "websocket" => Transport::WebSocket,
        other => bail!("--transport must be quic, wt or ws, not {other:?}"),
    };
    let dir = tempfile::tempdir()?;
    let mut server = start(&args, transport, dir.path()).await?;
    let empty = rss_kib(server.pid)?;
    let runs = |m: Measure| args.only.contains(&m);

    let mut report = serde_json::json!({ "transport": args.transport, "tick_hz": args.tick_hz });
    if runs(Measure::Connect) {
        let connect = connect_latency(&args, &server).await?;
        eprintln!("connect → Welcome: {}", summary(&connect));
        report["connect_to_welcome"] = summary(&connect);
    }
    if runs(Measure::Resume) {
        let resume = resume_latency(&args, &server).await?;
        eprintln!("reconnect → resumed Joined: {}", summary(&resume));
        report["reconnect_to_resumed"] = summary(&resume);
    }
    if runs(Measure::Cursor) {
        let (cursor, senders) = cursor_latency(&args, &server).await?;
        eprintln!("cursor A → B: {}", summary(&cursor));
        report["cursor_latency"] =
            serde_json::json!({ "clients": senders, "send_hz": args.cursor_hz, "latency": summary(&cursor) });
    }
    if runs(Measure::Ops) {
        let ops = op_latency(&args, &server).await?;
        eprintln!("op → ack (fsync): {}", summary(&ops));
        report["op_ack_latency"] = summary(&ops);
    }
    if runs(Measure::Idle) {
        let memory = memory_per_session(&args, &server, empty).await?;
        eprintln!("memory: {memory}");
        report["memory_per_idle_session"] = memory;
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    server.child.kill().await?;
    Ok(())
}
