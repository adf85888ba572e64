//! `easel-storm`: a reconnect storm. N SDK clients (default 2,000) over `--rooms` rooms move
//! their cursors and edit now and then; once all are in and steady, every connection is lost
//! at once, and the tool measures how the crowd comes back.
//!
//! - `--cut restart`: the tool kills the server it started and starts it again on the same
//!   ports and data dir ([`server`]); sessions cannot resume, clients rejoin by version. The
//!   restarted server keeps its QUIC stateless-reset key, so clients learn at their next
//!   packet that their connection is gone.
//! - `--cut netsim`: clients reach the server through a netsim UDP proxy in its own process
//!   ([`proxy`]) that drops every packet for `--cut-for` seconds, then heals. The default
//!   (15 s) outlasts the SDK's 12 s QUIC idle timeout (the connections really die) and stays
//!   inside the server's 30 s resume grace window (sessions resume).
//!
//! The clients run in `--processes K` child processes ([`fleet`], default 1), so that the
//! generator can use more than one core and the proxy's forwarding costs them nothing;
//! `--server-cpus`, `--client-cpus` and `--proxy-cpus` pin each part with `taskset -c`.
//!
//! A client is back when its room is joined again and, for an editor, its first edit after
//! that is acked ([`crowd`]). The report (JSON on stdout, and `--json`): the time from the cut
//! until all were back, per-client time-to-back percentiles, resumed against rejoined,
//! `Overloaded` refusals, clients that gave up and clients still missing at `--deadline`, the
//! server's peak RSS and CPU from the cut to the end of recovery, the generator's and proxy's
//! CPU, the server's admission and resume counters, and whether every acked edit is in the
//! server's documents ([`verify`]). The exit status is 1 when anyone is missing or gave up or
//! an acked edit is lost.
//!
//! ```sh
//! easel-storm --server-bin target/release/easel --cut restart --clients 2000 --rooms 20
//! easel-storm --server-bin target/release/easel --cut netsim --clients 2000 --processes 2 \
//!     --server-cpus 0 --client-cpus 1 --proxy-cpus 1
//! ```

mod crowd;
mod fleet;
mod proxy;
mod server;
mod verify;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser as _;
use easel_benches::shard::{Clock, Place, unix_ms};
use easel_benches::{TICKS_PER_SEC, cpu_ticks, histogram, metric, rss_kib, summary};
use serde_json::json;
use tokio::sync::watch;

use crate::crowd::{Conduct, Member, Record};
use crate::fleet::Fleet;
use crate::proxy::Proxy;

/// A crowd loses its connections at once and comes back.
#[derive(Debug, clap::Parser)]
#[command(name = "easel-storm", version, about)]
struct Args {
    /// How the connections are lost.
    #[arg(long, value_enum)]
    cut: Cut,
    /// `--cut netsim`: seconds every packet is dropped.
    #[arg(long, default_value_t = 15.0)]
    cut_for: f64,
    /// The `easel` binary, run as a child (restarted with SIGKILL); without it the server
    /// runs in this process (restarted gracefully; its CPU and RSS are then this process's).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// An extra flag for the server binary (repeat), e.g. `--server-arg=--limit-loopback`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// The server's data dir (default: a fresh temporary one).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// SDK clients.
    #[arg(long, default_value_t = 2000)]
    clients: u32,
    /// Rooms the clients are spread over (1: a lecture).
    #[arg(long, default_value_t = 20)]
    rooms: u32,
    /// Clients per room that edit (default: all); the others only move their cursors.
    #[arg(long)]
    editors_per_room: Option<u32>,
    /// One edit per editor every this many ms.
    #[arg(long, default_value_t = 10_000)]
    edit_every_ms: u64,
    /// Cursor moves per second per client.
    #[arg(long, default_value_t = 2)]
    cursor_hz: u32,
    /// Connection attempts in flight at once while the crowd arrives.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Seconds one client may take to get into its room at the start.
    #[arg(long, default_value_t = 120.0)]
    join_wait: f64,
    /// Seconds of steady load between everyone in and the cut.
    #[arg(long, default_value_t = 3.0)]
    steady: f64,
    /// Seconds after the cut after which whoever is not back is reported missing.
    #[arg(long, default_value_t = 120.0)]
    deadline: f64,
    /// The SDK's QUIC idle timeout, ms (default: the SDK's, 12 s).
    #[arg(long)]
    idle_timeout_ms: Option<u64>,
    /// The SDK's largest reconnect backoff bound, ms (default: the SDK's, 10 s).
    #[arg(long)]
    backoff_max_ms: Option<u64>,
    /// The SDK's limit on one connection attempt, ms (default: the SDK's, 10 s).
    #[arg(long)]
    attempt_timeout_ms: Option<u64>,
    /// Client processes (children of this one), each running every K-th client.
    #[arg(long, default_value_t = 1)]
    processes: u32,
    /// Pin the server binary to these CPUs (`taskset -c`, e.g. `0`).
    #[arg(long)]
    server_cpus: Option<String>,
    /// Pin the client processes to these CPUs (`taskset -c`, e.g. `1`).
    #[arg(long)]
    client_cpus: Option<String>,
    /// Pin the proxy process to these CPUs (`taskset -c`, e.g. `1`).
    #[arg(long)]
    proxy_cpus: Option<String>,
    /// Also write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Internal: this process is the proxy, in front of this address.
    #[arg(long, hide = true)]
    proxy_for: Option<SocketAddr>,
    /// Internal: this process runs client shard J of K (`J/K`).
    #[arg(long, hide = true, requires_all = ["epoch_ms", "url", "cert_hash"])]
    shard: Option<String>,
    /// Internal: the parent's clock origin, Unix ms.
    #[arg(long, hide = true)]
    epoch_ms: Option<f64>,
    /// Internal: where a client process's clients connect.
    #[arg(long, hide = true)]
    url: Option<String>,
    /// Internal: the server certificate's hash, for a client process.
    #[arg(long, hide = true)]
    cert_hash: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Cut {
    /// Kill the server and start it again.
    Restart,
    /// Drop every packet through a netsim proxy for `--cut-for`, then heal.
    Netsim,
}

const SECRET: &str = "easel-storm-secret-0123456789abcdef";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.clients > 0 && args.rooms > 0 && args.processes > 0,
        "--clients, --rooms and --processes must be at least 1"
    );
    if let Some(upstream) = args.proxy_for {
        return proxy::serve(upstream, args.clients).await;
    }
    if let (Some(shard), Some(epoch_ms), Some(url), Some(hash)) =
        (&args.shard, args.epoch_ms, &args.url, &args.cert_hash)
    {
        let place = Place::parse(shard, epoch_ms)?;
        let members = place.indices(0, args.clients).into_iter().map(|i| member(&args, i)).collect();
        let concurrency = args.connect_concurrency.div_ceil(place.count as usize);
        return fleet::child(place, members, conduct(&args, url.clone(), hash.clone()), concurrency).await;
    }
    parent(args).await
}

async fn parent(args: Args) -> anyhow::Result<()> {
    let (clock, epoch_ms) = (Clock(Instant::now()), unix_ms());
    let temp = tempfile::tempdir()?;
    let dir = args.data_dir.clone().unwrap_or_else(|| temp.path().to_owned());
    let plan = server::Plan {
        bin: args.server_bin.clone(),
        extra: args.server_args.clone(),
        dir,
        secret: SECRET.into(),
        cpus: args.server_cpus.clone(),
    };
    let mut server = server::Running::start(plan).await?;
    let mut proxy = match args.cut {
        Cut::Netsim => {
            Some(Proxy::start(server.quic_addr(), args.clients, args.proxy_cpus.as_deref()).await?)
        }
        Cut::Restart => None,
    };
    let via = proxy.as_ref().map_or(server.quic_addr(), Proxy::addr);

    // Everyone arrives.
    let joining = Instant::now();
    let place =
        ["--url".into(), format!("easel+quic://{via}"), "--cert-hash".into(), server.cert_hash().into()];
    let fleet::Arrived { fleet: mut crowd, in_crowd, failures: join_failures } =
        Fleet::start(args.processes, epoch_ms, &place, args.client_cpus.as_deref()).await?;
    let join_s = joining.elapsed().as_secs_f64();
    eprintln!(
        "storm: {in_crowd} of {} clients in {join_s:.1} s ({} processes); steady for {} s",
        args.clients, args.processes, args.steady
    );
    tokio::time::sleep(Duration::from_secs_f64(args.steady)).await;

    // The cut.
    let pid = Arc::new(AtomicU32::new(server.pid().unwrap_or(0)));
    let rss_before = rss_kib(pid.load(Ordering::Relaxed)).ok();
    let (sampled_tx, sampled_rx) = watch::channel(false);
    let sampler = tokio::spawn(sample(pid.clone(), sampled_rx));
    let generator: Vec<u32> =
        crowd.pids().iter().copied().chain(proxy.as_ref().and_then(Proxy::pid)).collect();
    let generator_before: Vec<Option<u64>> =
        generator.iter().map(|p| cpu_ticks(&p.to_string()).ok()).collect();
    let (cut_at, cut_instant) = (clock.ms(), tokio::time::Instant::now());
    crowd.tell(&format!("cut {cut_at}")).await?;
    eprintln!("storm: cut ({:?})", args.cut);
    let mut restart_ms = None;
    match &mut proxy {
        Some(proxy) => {
            proxy.cut(true).await?;
            tokio::time::sleep(Duration::from_secs_f64(args.cut_for)).await;
            proxy.cut(false).await?;
        }
        None => {
            let started = Instant::now();
            server.restart().await.context("restarting the server")?;
            restart_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
            pid.store(server.pid().unwrap_or(0), Ordering::Relaxed);
        }
    }
    crowd.tell(&format!("healed {}", clock.ms())).await?;

    // Recovery, until everyone is back or the deadline.
    let deadline = cut_instant + Duration::from_secs_f64(args.deadline);
    let mut back = 0u32;
    while back < in_crowd {
        match tokio::time::timeout_at(deadline, crowd.next_back()).await {
            Ok(Ok(Some(_))) => back += 1,
            Ok(Ok(None)) | Err(_) => break,
            Ok(Err(e)) => return Err(e.context("a client process")),
        }
    }
    let recovered_at = clock.ms();
    let _ = sampled_tx.send(true);
    let usage = sampler.await.unwrap_or_default();
    let seconds = (recovered_at - cut_at) / 1000.0;
    let generator_cpu: Vec<Option<f64>> = generator
        .iter()
        .zip(generator_before)
        .map(|(p, before)| {
            let ticks = cpu_ticks(&p.to_string()).ok()?.checked_sub(before?)?;
            Some((ticks as f64 / TICKS_PER_SEC / seconds.max(0.001) * 1000.0).round() / 10.0)
        })
        .collect();
    eprintln!("storm: {back} of {in_crowd} back after {seconds:.1} s");
    let records = crowd.finish().await?;

    let direct = format!("easel+quic://{}", server.quic_addr());
    let verdict = verify::check(&direct, server.cert_hash(), SECRET, &records).await?;
    let metrics = server_metrics(server.http_addr()).await;
    server.stop().await;
    let proxy_stats = match proxy {
        Some(mut proxy) => {
            let stats = proxy.stats().await?;
            proxy.stop().await?;
            Some(stats)
        }
        None => None,
    };
    let (clients_cpu, proxy_cpu) = match args.cut {
        Cut::Netsim => {
            let (clients, proxy) = generator_cpu.split_at(generator_cpu.len().saturating_sub(1));
            (clients.to_vec(), proxy.first().copied().flatten())
        }
        Cut::Restart => (generator_cpu, None),
    };

    let report = report(
        &args,
        &records,
        Outcome {
            in_crowd,
            join_s,
            join_failures,
            cut_at,
            restart_ms,
            recovered_at,
            rss_before,
            usage,
            child: server.is_child(),
            verdict,
            metrics,
            proxy: proxy_stats,
            clients_cpu,
            proxy_cpu,
        },
    );
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(path) = &args.json {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    let _ = std::io::stdout().flush();
    let ok =
        report["missing"]["count"] == 0 && report["gave_up"]["count"] == 0 && report["edits"]["lost"] == 0;
    if !ok {
        // `exit` runs no destructors: the temporary data dir goes first.
        drop(temp);
        std::process::exit(1);
    }
    Ok(())
}

/// How the clients connect and behave.
fn conduct(args: &Args, url: String, cert_hash: String) -> Conduct {
    Conduct {
        url,
        cert_hash,
        secret: SECRET.into(),
        cursor_hz: args.cursor_hz,
        edit_every: Duration::from_millis(args.edit_every_ms),
        idle_timeout: args.idle_timeout_ms.map(Duration::from_millis),
        backoff_max: args.backoff_max_ms.map(Duration::from_millis),
        join_wait: Duration::from_secs_f64(args.join_wait),
        attempt_timeout: args.attempt_timeout_ms.map(Duration::from_millis),
        can_survive: args.cut == Cut::Netsim,
    }
}

fn member(args: &Args, index: u32) -> Member {
    let room = index % args.rooms;
    let place = index / args.rooms;
    Member {
        index,
        room: format!("storm/room/{room}"),
        editor: args.editors_per_room.is_none_or(|e| place < e),
    }
}

/// The server's CPU and RSS from the cut to the end of recovery.
#[derive(Debug, Default)]
struct Usage {
    rss_max_kib: u64,
    cpu_ticks: u64,
    seconds: f64,
}

/// Samples the server process (`pid` follows a restart) every 200 ms until told to stop.
async fn sample(pid: Arc<AtomicU32>, mut stop: watch::Receiver<bool>) -> Usage {
    let started = Instant::now();
    let mut usage = Usage::default();
    // (pid, ticks at the first reading of it)
    let mut last: Option<(u32, u64)> = None;
    let mut every = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => {}
        }
        let p = pid.load(Ordering::Relaxed);
        if let Ok(rss) = rss_kib(p) {
            usage.rss_max_kib = usage.rss_max_kib.max(rss);
        }
        if let Ok(ticks) = cpu_ticks(&p.to_string()) {
            match last {
                Some((q, before)) if q == p => usage.cpu_ticks += ticks.saturating_sub(before),
                // A new process (after a restart) ran all its ticks since the cut.
                Some(_) => usage.cpu_ticks += ticks,
                None => {}
            }
            last = Some((p, ticks));
        }
        if *stop.borrow() {
            break;
        }
    }
    usage.seconds = started.elapsed().as_secs_f64();
    usage
}

/// The server counters that tell a storm's story (after a restart: since the restart).
async fn server_metrics(http: std::net::SocketAddr) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for name in [
        "easel_admission_shed_total",
        "easel_resume_attempts_total",
        "easel_resumes_total",
        "easel_refusals_total",
        "easel_sessions_peak",
        "easel_connects_total",
    ] {
        out.insert(name.into(), json!(metric(http, name).await.ok().flatten()));
    }
    serde_json::Value::Object(out)
}

/// How many clients saw each kind of disconnect (numbers and addresses blanked), most first.
fn reasons(records: &[Record]) -> serde_json::Value {
    let mut counts: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for r in records {
        let kinds: std::collections::BTreeSet<String> = r
            .reasons
            .iter()
            .map(|s| s.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).collect())
            .collect();
        for k in kinds {
            *counts.entry(k).or_default() += 1;
        }
    }
    let mut sorted: Vec<_> = counts.into_iter().collect();
    sorted.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    json!(sorted.into_iter().take(8).map(|(k, n)| json!({ "reason": k, "clients": n })).collect::<Vec<_>>())
}

/// What the run found besides the records.
struct Outcome {
    in_crowd: u32,
    join_s: f64,
    join_failures: Vec<String>,
    cut_at: f64,
    restart_ms: Option<f64>,
    recovered_at: f64,
    rss_before: Option<u64>,
    usage: Usage,
    child: bool,
    verdict: verify::Verdict,
    metrics: serde_json::Value,
    proxy: Option<serde_json::Value>,
    /// Each client process's CPU from the cut to the end of recovery, % of a core.
    clients_cpu: Vec<Option<f64>>,
    /// The proxy process's.
    proxy_cpu: Option<f64>,
}

fn report(args: &Args, records: &[Record], o: Outcome) -> serde_json::Value {
    // µs, up to ten minutes (past any deadline).
    let mut to_back =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| histogram());
    let mut last_back: Option<f64> = None;
    for at in records.iter().filter_map(|r| r.back_at) {
        let _ = to_back.record(((at - o.cut_at).max(0.001) * 1000.0) as u64);
        last_back = Some(last_back.map_or(at, |l: f64| l.max(at)));
    }
    let back = records.iter().filter(|r| r.back_at.is_some()).count();
    let user = |r: &Record| r.member.as_ref().map(Member::user).unwrap_or_default();
    let missing: Vec<String> = records.iter().filter(|r| r.back_at.is_none()).map(user).collect();
    let gave_up: Vec<String> =
        records.iter().filter_map(|r| Some(format!("{}: {}", user(r), r.gave_up.as_ref()?))).collect();
    let count = |f: &dyn Fn(&Record) -> bool| records.iter().filter(|r| f(r)).count();
    let all_back = (back == records.len() && o.in_crowd == args.clients)
        .then(|| last_back.map(|l| ((l - o.cut_at) * 10.0).round() / 10.0))
        .flatten();
    let cpu_percent = (o.usage.seconds > 0.0)
        .then(|| (o.usage.cpu_ticks as f64 / TICKS_PER_SEC / o.usage.seconds * 1000.0).round() / 10.0);
    json!({
        "cut": format!("{:?}", args.cut).to_lowercase(),
        "cut_for_s": (args.cut == Cut::Netsim).then_some(args.cut_for),
        "restart": (args.cut == Cut::Restart).then_some(if o.child { "SIGKILL, then started again" } else { "graceful shutdown, then started again (in-process)" }),
        "restart_ms": o.restart_ms.map(|m| m.round()),
        "clients": args.clients,
        "rooms": args.rooms,
        "editors": count(&|r| r.member.as_ref().is_some_and(|m| m.editor)),
        "joined": o.in_crowd,
        "join_s": (o.join_s * 10.0).round() / 10.0,
        "join_failures": o.join_failures.len(),
        "first_join_failure": o.join_failures.first(),
        "all_back_ms": all_back,
        "back": back,
        "time_to_back": summary(Some(&to_back)),
        "resumed": count(&|r| r.resumed == Some(true)),
        "rejoined": count(&|r| r.resumed == Some(false)),
        "survived": count(&|r| r.disconnects == 0 && r.back_at.is_some()),
        "overloaded": { "clients": count(&|r| r.overloaded > 0), "refusals": records.iter().map(|r| u64::from(r.overloaded)).sum::<u64>() },
        "disconnects": records.iter().map(|r| u64::from(r.disconnects)).sum::<u64>(),
        "disconnect_reasons": reasons(records),
        "gave_up": { "count": gave_up.len(), "first": gave_up.iter().take(10).collect::<Vec<_>>() },
        "missing": { "count": missing.len(), "first": missing.iter().take(20).collect::<Vec<_>>(), "states": records.iter().filter(|r| r.back_at.is_none()).take(5).map(|r| json!({ "user": user(r), "disconnects": r.disconnects, "reasons": r.reasons, "rejoined": r.resumed.map(|x| if x { "resumed" } else { "rejoined" }), "edits": r.edits, "acked": r.acked.len(), "last_acked": r.acked.last() })).collect::<Vec<_>>() },
        "recovery_s": ((o.recovered_at - o.cut_at) / 100.0).round() / 10.0,
        "server": {
            "process": if o.child { "child" } else { "in-process (with the parent, not the clients)" },
            "rss_before_cut_kib": o.rss_before,
            "rss_max_recovery_kib": (o.usage.rss_max_kib > 0).then_some(o.usage.rss_max_kib),
            "cpu_percent_recovery": cpu_percent,
            "metrics_after": o.metrics,
        },
        "proxy": o.proxy,
        "generator": {
            "processes": args.processes,
            "client_cpu_percent_recovery": o.clients_cpu,
            "proxy_cpu_percent_recovery": o.proxy_cpu,
        },
        "edits": {
            "made": records.iter().map(|r| r.edits).sum::<u64>(),
            "acked": o.verdict.acked,
            "rejected": records.iter().map(|r| r.rejected).sum::<u64>(),
            "rooms_checked": o.verdict.rooms,
            "lost": o.verdict.lost.len(),
            "first_lost": o.verdict.lost.iter().take(20).collect::<Vec<_>>(),
        },
    })
}
