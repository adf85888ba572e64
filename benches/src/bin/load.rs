//! `easel-load`: a swarm of SDK clients in one room, as a class would be.
//!
//! N clients (default 300) join one room through `easel_client::Client`; each moves its cursor
//! at 30 Hz and makes one Loro edit every 500 ms. After a warm-up, for `--duration` seconds it
//! measures, with HDR histograms:
//! - cursor delivery latency: sender's cursor call → the position shows at an observer;
//! - op ack latency: local edit → `Acked` (the server's fsync included);
//! - op delivery latency: local edit → the edit is in an observer's document;
//! - delivered / expected for cursors and ops at the observers;
//! - the server's CPU and peak RSS (with `--server-pid`).
//!
//! The first `--observers` clients (default 10) are full SDK clients (`easel_client::Client`:
//! local Loro document, throttled cursors, events): cursor and op delivery are measured where
//! an app sees them. The others are protocol clients on the connection the SDK drives
//! (`easel_transport::client`): they send the same cursors and Loro updates and receive
//! everything the server sends them (datagrams, room stream, snapshots) but keep no document.
//! The server's load is the same either way; the generator's is not — importing 600 updates a
//! second into 300 documents does not fit a 2-core machine that also runs the server, and
//! would measure the generator, not Easel. Op ack latency is measured at every client.
//!
//! Send times travel inside the data: a cursor's x is the sender's clock in ms (1/16 px = 1/16
//! ms precision), an edit appends the sender's clock to the sender's own list in the document.
//! All clients share one process and one clock.
//!
//! ```sh
//! easel-load --url easel+quic://127.0.0.1:4434 --cert-hash HEX --jwt-secret SECRET \
//!     --clients 300 --duration 30 --json load.json
//! ```
//! A progress line is drawn on stderr when it is a terminal; the JSON report goes to stdout
//! (and `--json`).

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser as _;
use easel_benches::{histogram, rss_kib, token};
use easel_client::{Client, Event, Room};
use easel_proto::datagram::{Cursor, quantise};
use easel_proto::message::{Join, Update};
use easel_proto::{Datagram, Message};
use easel_transport::client::{Connection, Options, RoomStream};
use futures::stream::{self, StreamExt as _};
use hdrhistogram::Histogram;
use loro::{ExportMode, LoroDoc};

/// A class of SDK clients against one server.
#[derive(Debug, clap::Parser)]
#[command(name = "easel-load", version, about)]
struct Args {
    /// Server URL (`easel+quic://`, `https://`, `ws://`, or `easel://host` to race).
    #[arg(long)]
    url: String,
    /// SHA-256 of the server certificate, hex (a dev server's `/cert-hash`).
    #[arg(long)]
    cert_hash: Option<String>,
    /// The server's HS256 secret, to mint one token per client.
    #[arg(long, env = "EASEL_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Room id.
    #[arg(long, default_value = "load/bench/room")]
    room: String,
    /// Clients in the room.
    #[arg(long, default_value_t = 300)]
    clients: u32,
    /// Clients whose receive side is measured.
    #[arg(long, default_value_t = 10)]
    observers: u32,
    /// Cursor moves per second per client.
    #[arg(long, default_value_t = 30)]
    cursor_hz: u32,
    /// One edit per client every this many milliseconds.
    #[arg(long, default_value_t = 500)]
    op_every_ms: u64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Seconds measured.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Connection attempts in flight at once while the class arrives.
    #[arg(long, default_value_t = 32)]
    connect_concurrency: usize,
    /// The server's process id, for CPU and RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// A label for the report (e.g. the transport).
    #[arg(long, default_value = "")]
    label: String,
    /// Also write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The shared clock, in ms since the run began.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn ms(self) -> f64 {
        self.0.elapsed().as_secs_f64() * 1000.0
    }
}

/// The measurement window, in clock ms.
#[derive(Clone, Copy)]
struct Window {
    from: f64,
    to: f64,
}

impl Window {
    fn contains(self, ms: f64) -> bool {
        (self.from..self.to).contains(&ms)
    }
}

/// What one client measured.
#[derive(Default)]
struct Tally {
    cursor: Option<Histogram<u64>>,
    op_ack: Option<Histogram<u64>>,
    op_delivery: Option<Histogram<u64>>,
    cursors_sent: u64,
    ops_sent: u64,
    cursors_seen: u64,
    ops_seen: u64,
}

/// A client of the swarm.
enum Member {
    /// A full SDK client (an observer).
    Sdk(Client, Room),
    /// A protocol client.
    Raw(Box<(Connection, RoomStream)>),
}

async fn connect(args: &Args, i: u32, observer: bool) -> anyhow::Result<(Member, f64)> {
    let started = Instant::now();
    if !observer {
        let endpoint = easel_client::endpoint::parse(&args.url)?
            .into_iter()
            .next()
            .context("the URL names no transport")?;
        let mut options = Options::new(endpoint.resolve().await?, endpoint.transport);
        options.server_name = endpoint.host.clone();
        options.tls = endpoint.tls;
        if let Some(hash) = &args.cert_hash {
            options = options.with_cert_hash(hash)?;
        }
        let user = format!("load-{i}");
        let conn = Connection::connect(&options, &token(&args.jwt_secret, &args.room, &user)?, &user)
            .await
            .with_context(|| format!("client {i} connects"))?;
        let join = Join { room: args.room.clone(), name: user, since: None };
        let stream = conn.join_with(join).await.with_context(|| format!("client {i} joins"))?;
        return Ok((Member::Raw(Box::new((conn, stream))), started.elapsed().as_secs_f64() * 1000.0));
    }
    let mut builder = Client::builder(token(&args.jwt_secret, &args.room, &format!("load-{i}"))?)
        .name(format!("load-{i}"))
        .cursor_hz(args.cursor_hz);
    if let Some(hash) = &args.cert_hash {
        builder = builder.cert_hash(hash)?;
    }
    let client = builder.connect(&args.url).await.with_context(|| format!("client {i} connects"))?;
    let room = client.join(&args.room).await.with_context(|| format!("client {i} joins"))?;
    Ok((Member::Sdk(client, room), started.elapsed().as_secs_f64() * 1000.0))
}

/// Client `i`'s cursor and edit timers, spread over their periods by `i` so that the class
/// does not send in lock step; and when they start.
fn pacing(i: u32, args: &Args) -> (tokio::time::Instant, tokio::time::Interval, tokio::time::Interval) {
    let phase = |period: Duration| period.mul_f64(f64::from(i) / f64::from(args.clients.max(1)));
    let cursor_period = Duration::from_secs(1) / args.cursor_hz.max(1);
    let op_period = Duration::from_millis(args.op_every_ms.max(1));
    let start = tokio::time::Instant::now();
    let mut cursor_every = tokio::time::interval_at(start + phase(cursor_period), cursor_period);
    let mut op_every = tokio::time::interval_at(start + phase(op_period), op_period);
    cursor_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    op_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    (start, cursor_every, op_every)
}

/// Runs one protocol client until the window ends: cursors as datagrams and Loro updates on
/// the room stream, like the SDK sends them; everything received is read and dropped.
async fn drive_raw(
    i: u32,
    conn: Connection,
    stream: RoomStream,
    args: Arc<Args>,
    clock: Clock,
    window: Window,
) -> Tally {
    let mut tally = Tally { op_ack: Some(histogram()), ..Tally::default() };
    let (mut sender, mut reader, joined) = stream.into_split();
    let conn = Arc::new(conn);
    let slot = joined.slot;
    let doc = LoroDoc::new();
    let own = format!("c{i}");
    let mut exported = doc.oplog_vv();
    let (start, mut cursor_every, mut op_every) = pacing(i, &args);
    let end = start + Duration::from_secs_f64((window.to - clock.ms()).max(0.0) / 1000.0);
    // Datagrams and snapshots are received (the server sends them) and dropped.
    let sink = {
        let conn = conn.clone();
        tokio::spawn(async move {
            let datagrams = async { while conn.recv_datagram().await.is_ok() {} };
            let snapshots = async { while conn.snapshot().await.is_ok() {} };
            tokio::join!(datagrams, snapshots);
        })
    };
    let mut unacked: std::collections::VecDeque<(u64, f64)> = std::collections::VecDeque::new();
    let (mut seq, mut op_id) = (0u16, 0u64);
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(end) => break,
            _ = cursor_every.tick() => {
                let now = clock.ms();
                seq = seq.wrapping_add(1);
                let cursor = Cursor { slot, seq, x: quantise(now), y: quantise(f64::from(i)) };
                let _ = conn.send_datagram(&Datagram::from(cursor));
                if window.contains(now) {
                    tally.cursors_sent += 1;
                }
            }
            _ = op_every.tick() => {
                let now = clock.ms();
                if doc.get_list(own.as_str()).push(now).is_err() {
                    continue;
                }
                doc.commit();
                let Ok(data) = doc.export(ExportMode::updates(&exported)) else { continue };
                exported = doc.oplog_vv();
                op_id += 1;
                if sender.send(&Message::from(Update { op_id, data })).await.is_err() {
                    break;
                }
                unacked.push_back((op_id, now));
                if window.contains(now) {
                    tally.ops_sent += 1;
                }
            }
            message = reader.next() => match message {
                Ok(Some(Message::Ack(ack))) => {
                    let now = clock.ms();
                    for id in ack.op_ids {
                        while let Some((first, sent)) = unacked.front().copied() {
                            if first > id {
                                break;
                            }
                            unacked.pop_front();
                            if first == id && window.contains(sent) && let Some(h) = tally.op_ack.as_mut() {
                                let _ = h.record(((now - sent) * 1000.0) as u64);
                            }
                        }
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            },
        }
    }
    sink.abort();
    conn.close(easel_proto::ErrorCode::Normal);
    tally
}

/// Runs one SDK client (an observer) until the window ends: moves its cursor and edits, and
/// measures what its events show of the others.
async fn drive(i: u32, client: Client, room: Room, args: Arc<Args>, clock: Clock, window: Window) -> Tally {
    let mut tally = Tally {
        cursor: Some(histogram()),
        op_ack: Some(histogram()),
        op_delivery: Some(histogram()),
        ..Tally::default()
    };
    let own = format!("c{i}");
    let (_, mut cursor_every, mut op_every) = pacing(i, &args);
    let mut unacked: std::collections::VecDeque<f64> = std::collections::VecDeque::new();
    // Observer: participant number → (sender's list key, elements already seen).
    let mut senders: HashMap<u16, (String, usize)> = HashMap::new();
    let end =
        tokio::time::Instant::now() + Duration::from_secs_f64((window.to - clock.ms()).max(0.0) / 1000.0);
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(end) => break,
            _ = cursor_every.tick() => {
                let now = clock.ms();
                room.cursor(now, f64::from(i));
                if window.contains(now) {
                    tally.cursors_sent += 1;
                }
            }
            _ = op_every.tick() => {
                let now = clock.ms();
                if room.edit(|doc| doc.get_list(own.as_str()).push(now)).is_ok() {
                    unacked.push_back(now);
                    if window.contains(now) {
                        tally.ops_sent += 1;
                    }
                }
            }
            event = client.next_event() => {
                let Some(event) = event else { break };
                let now = clock.ms();
                match event {
                    Event::Acked { op_ids, .. } => {
                        for _ in op_ids {
                            if let Some(sent) = unacked.pop_front()
                                && window.contains(sent)
                                && let Some(h) = tally.op_ack.as_mut()
                            {
                                let _ = h.record(((now - sent) * 1000.0) as u64);
                            }
                        }
                    }
                    Event::Cursors { cursors, .. } => {
                        for c in cursors.iter().filter(|c| window.contains(c.x)) {
                            tally.cursors_seen += 1;
                            if let Some(h) = tally.cursor.as_mut() {
                                let _ = h.record(((now - c.x).max(0.001) * 1000.0) as u64);
                            }
                        }
                    }
                    Event::Joined { participants, .. } => {
                        for p in participants {
                            if let Some(n) = p.user.strip_prefix("load-") {
                                senders.insert(p.index, (format!("c{n}"), 0));
                            }
                        }
                    }
                    Event::ParticipantJoined { participant, .. } => {
                        if let Some(n) = participant.user.strip_prefix("load-") {
                            senders.insert(participant.index, (format!("c{n}"), 0));
                        }
                    }
                    Event::RemoteUpdate { from, .. } => {
                        if let Some((key, seen)) = senders.get_mut(&from) {
                            let list = room.doc().get_list(key.as_str());
                            for at in *seen..list.len() {
                                let sent = list.get(at).and_then(|v| v.into_value().ok()).and_then(|v| v.into_double().ok());
                                if let Some(sent) = sent.filter(|s| window.contains(*s)) {
                                    tally.ops_seen += 1;
                                    if let Some(h) = tally.op_delivery.as_mut() {
                                        let _ = h.record(((now - sent).max(0.001) * 1000.0) as u64);
                                    }
                                }
                            }
                            *seen = list.len();
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    client.close().await;
    tally
}

fn summary(h: &Histogram<u64>) -> serde_json::Value {
    let ms = |v: u64| (v as f64 / 1000.0 * 1000.0).round() / 1000.0;
    let cdf: Vec<serde_json::Value> = if h.is_empty() {
        Vec::new()
    } else {
        (0..=100)
            .map(|p| {
                let q = f64::from(p) / 100.0;
                serde_json::json!([ms(h.value_at_quantile(q)), q])
            })
            .collect()
    };
    serde_json::json!({
        "samples": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p95_ms": ms(h.value_at_quantile(0.95)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
        "cdf": cdf,
    })
}

/// CPU ticks (user + system) of a process, from `/proc/<pid>/stat`.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

/// Linux's USER_HZ: `/proc` CPU times are in these ticks.
const TICKS_PER_SEC: f64 = 100.0;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    if args.clients == 0 || args.duration == 0 {
        bail!("--clients and --duration must be at least 1");
    }
    let tty = std::io::stderr().is_terminal();
    let clock = Clock(Instant::now());

    // The class arrives, a bounded number of connects at a time.
    let joined = AtomicU64::new(0);
    let observers = args.observers.min(args.clients);
    let connects: Vec<anyhow::Result<(Member, f64)>> = stream::iter(0..args.clients)
        .map(|i| {
            let (args, joined) = (args.clone(), &joined);
            async move {
                let r = connect(&args, i, i < observers).await;
                let n = joined.fetch_add(1, Ordering::Relaxed) + 1;
                if tty {
                    eprint!("\rconnecting {n}/{}   ", args.clients);
                }
                r
            }
        })
        .buffered(args.connect_concurrency.max(1))
        .collect()
        .await;
    let mut connect_ms = histogram();
    let mut members = Vec::new();
    let mut failures = Vec::new();
    for (i, r) in connects.into_iter().enumerate() {
        match r {
            Ok((member, ms)) => {
                let _ = connect_ms.record((ms * 1000.0) as u64);
                members.push((i as u32, member));
            }
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    if members.is_empty() {
        bail!("no client connected: {}", failures.first().map_or("", String::as_str));
    }
    let start = clock.ms() + args.warmup as f64 * 1000.0;
    let window = Window { from: start, to: start + args.duration as f64 * 1000.0 };

    let mut tasks = tokio::task::JoinSet::new();
    let mut observing = 0u32;
    for (i, member) in members {
        match member {
            Member::Sdk(client, room) => {
                observing += 1;
                tasks.spawn(drive(i, client, room, args.clone(), clock, window));
            }
            Member::Raw(raw) => {
                let (conn, stream) = *raw;
                tasks.spawn(drive_raw(i, conn, stream, args.clone(), clock, window));
            }
        }
    }
    let observers = observing;

    // Server resources over the window, and a progress line.
    let server = async {
        let mut rss_max = 0u64;
        let until_start = Duration::from_secs_f64(((window.from - clock.ms()) / 1000.0).max(0.0));
        tokio::time::sleep(until_start).await;
        let ticks_before = args.server_pid.and_then(|p| cpu_ticks(p).ok());
        let mut every = tokio::time::interval(Duration::from_millis(500));
        while clock.ms() < window.to {
            every.tick().await;
            if let Some(pid) = args.server_pid {
                rss_max = rss_max.max(rss_kib(pid).unwrap_or(0));
            }
            if tty {
                let done = ((clock.ms() - window.from) / 1000.0).clamp(0.0, args.duration as f64);
                let bar = (done / args.duration as f64 * 30.0) as usize;
                eprint!(
                    "\r[{}{}] {:>4.0}/{} s   ",
                    "#".repeat(bar),
                    " ".repeat(30 - bar.min(30)),
                    done,
                    args.duration
                );
            }
        }
        let ticks_after = args.server_pid.and_then(|p| cpu_ticks(p).ok());
        let cpu = match (ticks_before, ticks_after) {
            (Some(a), Some(b)) => Some((b - a) as f64 / TICKS_PER_SEC / args.duration as f64 * 100.0),
            _ => None,
        };
        (cpu, rss_max)
    };
    let ((cpu, rss_max), tallies) = tokio::join!(server, async {
        let mut all = Vec::new();
        while let Some(t) = tasks.join_next().await {
            if let Ok(t) = t {
                all.push(t);
            }
        }
        all
    });
    if tty {
        eprintln!();
    }

    let (mut cursor, mut op_ack, mut op_delivery) = (histogram(), histogram(), histogram());
    let (mut cursors_sent, mut ops_sent, mut cursors_seen, mut ops_seen) = (0, 0, 0, 0);
    for t in &tallies {
        for (into, from) in
            [(&mut cursor, &t.cursor), (&mut op_ack, &t.op_ack), (&mut op_delivery, &t.op_delivery)]
        {
            if let Some(h) = from {
                into.add(h).context("merging histograms")?;
            }
        }
        cursors_sent += t.cursors_sent;
        ops_sent += t.ops_sent;
        cursors_seen += t.cursors_seen;
        ops_seen += t.ops_seen;
    }
    let n = tallies.len() as u64;
    // Each observer should see every other client's sends once.
    let observers = u64::from(observers);
    let expected = |sent: u64| sent * observers * n.saturating_sub(1) / n.max(1);
    let ratio = |seen: u64, sent: u64| {
        let e = expected(sent);
        if e == 0 { 0.0 } else { (seen as f64 / e as f64 * 10_000.0).round() / 10_000.0 }
    };
    let report = serde_json::json!({
        "label": args.label,
        "url": args.url,
        "clients": args.clients,
        "connected": n,
        "connect_failures": failures.len(),
        "first_failure": failures.first(),
        "observers": observers,
        "cursor_hz": args.cursor_hz,
        "op_every_ms": args.op_every_ms,
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "connect": summary(&connect_ms),
        "cursor": { "latency": summary(&cursor), "delivered": cursors_seen, "expected": expected(cursors_sent), "ratio": ratio(cursors_seen, cursors_sent) },
        "op_ack": { "latency": summary(&op_ack) },
        "op_delivery": { "latency": summary(&op_delivery), "delivered": ops_seen, "expected": expected(ops_sent), "ratio": ratio(ops_seen, ops_sent) },
        "server": { "cpu_percent": cpu.map(|c| (c * 10.0).round() / 10.0), "rss_max_kib": (rss_max > 0).then_some(rss_max) },
    });
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(path) = &args.json {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    let _ = std::io::stdout().flush();
    Ok(())
}
