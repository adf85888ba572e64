//! `easel-load`: a class in one room, as a class would be.
//!
//! **Standard workload** (the default): N clients (default 300) join one room; each moves its
//! cursor at 30 Hz and makes one Loro edit every 500 ms. After a warm-up, for `--duration`
//! seconds it measures, with HDR histograms:
//! - cursor delivery latency: sender's cursor call → the position shows at an observer;
//! - op ack latency: local edit → `Acked` (the server's fsync included);
//! - op delivery latency: local edit → the edit is in an observer's document;
//! - delivered / expected for cursors and ops at the observers;
//! - the server's CPU and peak RSS (with `--server-pid`), and the generator's own CPU.
//!
//! **Lecture** (`--scenario lecture`): one teacher and `--clients` viewers; see [`lecture`].
//!
//! The first `--observers` clients (default 10) are full SDK clients (`easel_client::Client`:
//! local Loro document, throttled cursors, events): delivery is measured where an app sees
//! it. The others are lean protocol clients ([`lean`]) on the connection the SDK drives
//! (`easel_transport::client`): they send the same cursors and Loro updates and read
//! everything the server sends them, but keep no document and look only at what is measured.
//! The next `--lean-observers` of them (default 10) also time every cursor and edit as it
//! arrives on the wire (`cursor_wire`, `op_delivery_wire`), which costs next to nothing. The
//! server's load is the same either way; the generator's is not — an SDK observer imports
//! every edit into its document (at 300 clients, 600 a second, most of the generator's CPU),
//! so at large N run few SDK observers and read the wire figures. Op ack latency is measured
//! at every client.
//!
//! `--processes K` spreads the protocol clients over K-1 child processes ([`shard`]); the
//! parent keeps the SDK clients and merges what everyone measured. Pin the generator with
//! `taskset` (see `scripts/bench-direct.sh`). The report says whether the generator kept up:
//! its CPU over the window (all processes, and the busiest), its threads' run-queue wait per
//! unit of run time (and the server's: on a shared machine, how much others' work delayed
//! each), and `pace_max_gap_ms`, the longest stall of the cursor/heartbeat sender.
//!
//! Send times travel inside the data: a cursor's x is the sender's clock in ms (1/16 px = 1/16
//! ms precision), an edit appends a stamp of the sender's clock (`@t<ms>;`, readable in the
//! Loro update bytes without importing them) to the sender's own list in the document, a chat
//! message's text and a poll's question end in it. All processes share one clock.
//!
//! ```sh
//! easel-load --url easel+quic://127.0.0.1:4434 --cert-hash HEX --jwt-secret SECRET \
//!     --clients 300 --duration 30 --json load.json
//! easel-load --scenario lecture --clients 2000 --processes 2 … --json lecture.json
//! ```
//! A progress line is drawn on stderr when it is a terminal; the JSON report goes to stdout
//! (and `--json`).

mod crowd;
mod lean;
mod lecture;
mod shard;
mod swarm;
mod tally;

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser as _;
use easel_benches::rss_kib;
use easel_benches::shard::{Clock, Place, unix_ms};
use futures::stream::{self, StreamExt as _};
use serde_json::json;
use tokio::sync::watch;

use crate::lean::{Plan, Target};
use crate::shard::Children;
use crate::tally::{
    TICKS_PER_SEC, Tally, Window, cpu_ticks, generator_cpu, own_cpu, sched_ns, summary, wait_ratio,
};

/// A class of clients against one server.
#[derive(Debug, clap::Parser)]
#[command(name = "easel-load", version, about)]
pub(crate) struct Args {
    /// Server URL (`easel+quic://`, `https://`, `ws://`, or `easel://host` to race).
    #[arg(long)]
    url: String,
    /// SHA-256 of the server certificate, hex (a dev server's `/cert-hash`).
    #[arg(long)]
    cert_hash: Option<String>,
    /// Where the standard workload's SDK observers connect instead of `--url` (another node
    /// of a cluster: cross-node delivery).
    #[arg(long)]
    observer_url: Option<String>,
    /// SHA-256 of `--observer-url`'s certificate, hex.
    #[arg(long, requires = "observer_url")]
    observer_cert_hash: Option<String>,
    /// Another node of a cluster (repeat): the protocol clients are spread round-robin over
    /// `--url` and these; the SDK clients (and a lecture's teacher) stay on `--url`.
    #[arg(long)]
    node_url: Vec<String>,
    /// SHA-256 of each `--node-url`'s certificate, hex, in the same order (repeat).
    #[arg(long)]
    node_cert_hash: Vec<String>,
    /// The server's HS256 secret, to mint one token per client.
    #[arg(long, env = "EASEL_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// What the class does.
    #[arg(long, value_enum, default_value_t = Scenario::Standard)]
    scenario: Scenario,
    /// Room id.
    #[arg(long, default_value = "load/bench/room")]
    room: String,
    /// Clients in the room (the lecture: viewers, besides the teacher).
    #[arg(long, default_value_t = 300)]
    clients: u32,
    /// Clients that are full SDK clients, whose receive side is measured as an app sees it.
    #[arg(long, default_value_t = 10)]
    observers: u32,
    /// Protocol clients (after the SDK observers) that also measure cursor and op delivery as
    /// it arrives on the wire: cheap enough for any class size.
    #[arg(long, default_value_t = 10)]
    lean_observers: u32,
    /// Cursor moves per second per moving client.
    #[arg(long, default_value_t = 30)]
    cursor_hz: u32,
    /// Standard workload: one edit per client every this many milliseconds.
    #[arg(long, default_value_t = 500)]
    op_every_ms: u64,
    /// Lecture: one teacher edit every this many milliseconds.
    #[arg(long, default_value_t = 100)]
    teacher_edit_ms: u64,
    /// Lecture: one chat message (from a rotating viewer) every this many milliseconds.
    #[arg(long, default_value_t = 1000)]
    chat_every_ms: u64,
    /// Lecture: viewers who raise their hands during the window.
    #[arg(long, default_value_t = 5)]
    hands: u32,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Seconds measured.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Connection attempts in flight at once (per process) while the class arrives.
    #[arg(long, default_value_t = 32)]
    connect_concurrency: usize,
    /// QUIC protocol clients of a process that share one UDP socket (0: a socket each, as
    /// separate devices would have). Shared, their packets are read in batches: at 2,000
    /// viewers a socket each cost the generator a wake-up and two reads per packet.
    #[arg(long, default_value_t = 64)]
    clients_per_socket: u32,
    /// Generator processes: the parent (SDK clients) and K-1 children sharing the protocol
    /// clients.
    #[arg(long, default_value_t = 1)]
    processes: u32,
    /// The server's process id, for CPU and RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// A label for the report (e.g. the transport).
    #[arg(long, default_value = "")]
    label: String,
    /// Also write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Internal: this process is child J of K (`J/K`).
    #[arg(long, hide = true, requires = "epoch_ms")]
    shard: Option<String>,
    /// Internal: the parent's clock origin, Unix ms.
    #[arg(long, hide = true)]
    epoch_ms: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// N clients moving at 30 Hz and editing every 500 ms.
    Standard,
    /// A teacher drawing, N viewers watching, chat, a poll and hand raises.
    Lecture,
}

impl Args {
    /// The protocol clients' index range (after the SDK observers).
    fn lean_range(&self) -> (u32, u32) {
        (self.observers.min(self.clients), self.clients)
    }

    fn user(&self, i: u32) -> String {
        match self.scenario {
            Scenario::Standard => format!("load-{i}"),
            Scenario::Lecture => lecture::viewer(i),
        }
    }

    fn mover(&self, i: u32) -> bool {
        self.scenario == Scenario::Standard || lecture::mover(i)
    }

    fn plan(&self, i: u32, window: Window) -> Plan {
        let (lo, hi) = self.lean_range();
        match self.scenario {
            Scenario::Standard => Plan {
                edit_every: Some(Duration::from_millis(self.op_every_ms.max(1))),
                observe: i < lo.saturating_add(self.lean_observers),
                ..Plan::default()
            },
            Scenario::Lecture => lecture::plan(self, i, lo, hi, window),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.clients == 0 || args.duration == 0 || args.processes == 0 {
        bail!("--clients, --duration and --processes must be at least 1");
    }
    match (&args.shard, args.epoch_ms) {
        (Some(place), Some(epoch_ms)) => {
            let place = Place::parse(place, epoch_ms)?;
            child(Arc::new(args), place).await
        }
        _ => parent(args).await,
    }
}

/// Where the protocol clients connect: `--url`, then each `--node-url`.
async fn targets(args: &Args) -> anyhow::Result<Vec<Target>> {
    if !args.node_cert_hash.is_empty() && args.node_cert_hash.len() != args.node_url.len() {
        bail!("--node-cert-hash must be given once for each --node-url, or not at all");
    }
    // Enough for all the protocol clients, wherever they run (an unused socket costs nothing).
    let sockets = match args.clients_per_socket {
        0 => 0,
        per => args.clients.div_ceil(per),
    };
    let mut targets =
        vec![Target::new(&args.url, args.cert_hash.as_deref(), &args.jwt_secret, &args.room, sockets).await?];
    for (i, url) in args.node_url.iter().enumerate() {
        let hash = args.node_cert_hash.get(i).map(String::as_str);
        targets.push(Target::new(url, hash, &args.jwt_secret, &args.room, sockets).await?);
    }
    Ok(targets)
}

/// A child process: connects its shard of the protocol clients, runs them in the window the
/// parent sends, and prints what they measured.
async fn child(args: Arc<Args>, place: Place) -> anyhow::Result<()> {
    let clock = place.clock();
    let target = targets(&args).await?;
    let (lo, hi) = args.lean_range();
    let indices = place.indices(lo, hi);
    let (window_tx, window_rx) = watch::channel(None);
    let crowd = crowd::connect(&target, &indices, &conduct(&args), clock, &window_rx).await;
    let window = shard::announce_ready(crowd.connected, &crowd.failures).await?;
    let _ = window_tx.send(Some(window));
    let (mut tally, cpu) = tokio::join!(crowd::finish(crowd), own_cpu(clock, window));
    tally.merge(cpu)?;
    shard::report(tally)
}

/// The parent: the SDK clients, the protocol clients (or the children that run them), the
/// server's resources, and the report.
async fn parent(args: Args) -> anyhow::Result<()> {
    let args = Arc::new(args);
    let tty = std::io::stderr().is_terminal();
    let (clock, epoch_ms) = (Clock(Instant::now()), unix_ms());
    let target = targets(&args).await?;
    let (window_tx, window_rx) = watch::channel(None);
    let mut sdk = tokio::task::JoinSet::new();
    let mut failures = Vec::new();

    // The lecture's teacher is in first and draws while the class arrives.
    if args.scenario == Scenario::Lecture {
        let (client, room) = lecture::connect_teacher(&args, clock).await.context("the teacher")?;
        let (args, rx) = (args.clone(), window_rx.clone());
        sdk.spawn(async move { lecture::teacher(client, room, &args, clock, rx).await });
    }
    let mut children =
        if args.processes > 1 { Some(Children::spawn(args.processes - 1, epoch_ms)?) } else { None };
    let (lo, hi) = args.lean_range();
    let own: Vec<u32> = if children.is_some() { Vec::new() } else { (lo..hi).collect() };

    // The SDK observers and this process's protocol clients arrive together.
    let observers = async {
        stream::iter(0..lo)
            .map(|i| {
                let args = &*args;
                async move {
                    match args.scenario {
                        Scenario::Standard => {
                            swarm::connect_observer(args, i, clock).await.map(|(i, c, r)| (i, c, r, 0.0))
                        }
                        Scenario::Lecture => {
                            lecture::connect_viewer(args, i, clock).await.map(|(c, r, s)| (i, c, r, s))
                        }
                    }
                }
            })
            .buffer_unordered(args.connect_concurrency.max(1))
            .collect::<Vec<_>>()
            .await
    };
    let conduct = conduct(&args);
    let (observers, crowd) =
        tokio::join!(observers, crowd::connect(&target, &own, &conduct, clock, &window_rx));
    let mut observing = 0u64;
    for r in observers {
        match r {
            Ok((i, client, room, connect_start)) => {
                observing += 1;
                let args = args.clone();
                match args.scenario {
                    Scenario::Standard => {
                        let mut rx = window_rx.clone();
                        sdk.spawn(async move {
                            let window = tally::until_window(&mut rx).await;
                            swarm::drive(i, client, room, &args, clock, window).await
                        });
                    }
                    Scenario::Lecture => {
                        let rx = window_rx.clone();
                        sdk.spawn(lecture::viewer_observer(client, room, connect_start, clock, rx));
                    }
                }
            }
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    failures.extend(crowd.failures.iter().cloned());
    let mut connected = observing + crowd.connected as u64;
    if let Some(children) = &mut children {
        for ready in children.ready().await? {
            connected += ready["ready"].as_u64().unwrap_or(0);
            if let Some(f) = ready["failures"].as_array() {
                failures.extend(f.iter().filter_map(|f| f.as_str().map(str::to_owned)));
            }
        }
    }
    if connected == 0 {
        bail!("no client connected: {}", failures.first().map_or("", String::as_str));
    }
    let from = clock.ms() + args.warmup as f64 * 1000.0;
    let window = Window { from, to: from + args.duration as f64 * 1000.0 };
    if let Some(children) = &mut children {
        children.go(window).await?;
    }
    let _ = window_tx.send(Some(window));

    let sdk_done = async {
        let mut tally = Tally::default();
        while let Some(t) = sdk.join_next().await {
            if let Ok(t) = t {
                tally.merge(t)?;
            }
        }
        anyhow::Ok(tally)
    };
    let children_done = async {
        match children {
            Some(c) => c.finish().await,
            None => Ok(Tally::default()),
        }
    };
    let (lean, cpu, sdk_tally, children_tally, (server_cpu, rss_max, server_waited)) = tokio::join!(
        crowd::finish(crowd),
        own_cpu(clock, window),
        sdk_done,
        children_done,
        watch_server(&args, clock, window, tty),
    );
    if tty {
        eprintln!();
    }
    let mut tally = lean;
    tally.merge(cpu)?;
    tally.merge(sdk_tally?)?;
    tally.merge(children_tally?)?;

    let mut report = json!({
        "label": args.label,
        "url": args.url,
        "node_urls": args.node_url,
        "scenario": format!("{:?}", args.scenario).to_lowercase(),
        "clients": args.clients,
        "connected": connected,
        "connect_failures": failures.len(),
        "first_failure": failures.first(),
        "observers": observing,
        "processes": args.processes,
        "cursor_hz": args.cursor_hz,
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "server": { "cpu_percent": server_cpu.map(|c| (c * 10.0).round() / 10.0), "rss_max_kib": (rss_max > 0).then_some(rss_max), "runqueue_wait_per_run": server_waited },
        "generator": generator_cpu(&tally, window),
        "pace_max_gap_ms": tally.maximum("pace_max_gap_ms").map(|g| (g * 10.0).round() / 10.0),
    });
    match args.scenario {
        Scenario::Standard => standard_report(&mut report, &mut tally, &args, observing, connected),
        Scenario::Lecture => {
            lecture::join_events(&mut tally);
            let viewers = connected;
            if let (Some(r), serde_json::Value::Object(l)) =
                (report.as_object_mut(), lecture::report(&mut tally, viewers))
            {
                r.extend(l);
            }
            eprint!("{}", lecture::verdicts(&report));
        }
    }
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(path) = &args.json {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    let _ = std::io::stdout().flush();
    Ok(())
}

/// What this run's protocol clients do.
fn conduct(args: &Arc<Args>) -> crowd::Conduct {
    let (a, b, c) = (args.clone(), args.clone(), args.clone());
    crowd::Conduct {
        role: "student",
        user: Arc::new(move |i| a.user(i)),
        planner: Arc::new(move |i, window| b.plan(i, window)),
        mover: Arc::new(move |i| c.mover(i)),
        hz: args.cursor_hz,
        concurrency: args.connect_concurrency,
    }
}

/// The standard workload's figures, as they always were.
fn standard_report(report: &mut serde_json::Value, tally: &mut Tally, args: &Args, observers: u64, n: u64) {
    // Each observer should see every other client's sends once.
    let expected = |sent: u64| sent * observers * n.saturating_sub(1) / n.max(1);
    let ratio = |seen: u64, sent: u64| {
        let e = expected(sent);
        if e == 0 { 0.0 } else { (seen as f64 / e as f64 * 10_000.0).round() / 10_000.0 }
    };
    let (cursors_sent, ops_sent) = (tally.counter("cursors_sent"), tally.counter("ops_sent"));
    let (cursors_seen, ops_seen) = (tally.counter("cursors_seen"), tally.counter("ops_seen"));
    report["op_every_ms"] = json!(args.op_every_ms);
    report["connect"] = summary(tally.hist("connect"));
    report["cursor"] = json!({ "latency": summary(tally.hist("cursor")), "delivered": cursors_seen, "expected": expected(cursors_sent), "ratio": ratio(cursors_seen, cursors_sent) });
    report["op_ack"] = json!({ "latency": summary(tally.hist("op_ack")) });
    report["op_delivery"] = json!({ "latency": summary(tally.hist("op_delivery")), "delivered": ops_seen, "expected": expected(ops_sent), "ratio": ratio(ops_seen, ops_sent) });
    // Lean observers see every other client's sends once, as on the wire.
    let lean = tally.counter("lean_observers");
    let wire_expected = |sent: u64| sent * lean * n.saturating_sub(1) / n.max(1);
    let wire_ratio = |seen: u64, sent: u64| {
        let e = wire_expected(sent);
        if e == 0 { 0.0 } else { (seen as f64 / e as f64 * 10_000.0).round() / 10_000.0 }
    };
    let (wire_cursors, wire_ops) = (tally.counter("cursors_seen_wire"), tally.counter("op_delivery_wire"));
    report["lean_observers"] = json!(lean);
    report["cursor_wire"] = json!({ "latency": summary(tally.hist("cursor_wire")), "delivered": wire_cursors, "expected": wire_expected(cursors_sent), "ratio": wire_ratio(wire_cursors, cursors_sent) });
    report["op_delivery_wire"] = json!({ "latency": summary(tally.hist("op_delivery_wire")), "delivered": wire_ops, "expected": wire_expected(ops_sent), "ratio": wire_ratio(wire_ops, ops_sent) });
    report["closes"] = json!(tally.counters_under("closed_"));
}

/// The server's CPU and peak RSS over the window, and a progress line.
async fn watch_server(
    args: &Args,
    clock: Clock,
    window: Window,
    tty: bool,
) -> (Option<f64>, u64, Option<f64>) {
    let mut rss_max = 0u64;
    tokio::time::sleep_until(clock.at(window.from)).await;
    let pid = args.server_pid.map(|p| p.to_string());
    let ticks_before = pid.as_deref().and_then(|p| cpu_ticks(p).ok());
    let sched_before = pid.as_deref().and_then(sched_ns);
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
    let ticks_after = pid.as_deref().and_then(|p| cpu_ticks(p).ok());
    let waited = wait_ratio(sched_before, pid.as_deref().and_then(sched_ns));
    let cpu = match (ticks_before, ticks_after) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / TICKS_PER_SEC / window.seconds() * 100.0),
        _ => None,
    };
    (cpu, rss_max, waited)
}
