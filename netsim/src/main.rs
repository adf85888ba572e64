//! `netsim`: runs the impairment proxies in front of a server, benchmarks Easel through them,
//! or lists the built-in scenarios.
//!
//! `netsim run` prints one JSON line on stdout once every proxy listens
//! (`{"event":"ready","scenario":…,"seed":…,"udp":[{"listen":…,"upstream":…}],"tcp":[…]}`);
//! logs go to stderr. Ctrl-C or SIGTERM stops it.

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser as _;
use easel_netsim::proxy::{self, Tcp, Udp};
use easel_netsim::scenario::{BUILTINS, Scenario};
use easel_netsim::{bench, report};

/// `netsim` — a user-space network simulator for Easel: delay, jitter, loss, reordering,
/// duplication and rate limits between clients and a server.
#[derive(Debug, clap::Parser)]
#[command(name = "netsim", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Runs UDP and TCP proxies with a scenario until Ctrl-C or SIGTERM.
    Run(Run),
    /// Lists the built-in scenarios.
    Scenarios,
    /// Benchmarks Easel under a scenario: per transport, starts the `easel` server, the proxy and
    /// the `easel-load` swarm, and writes JSON plus a Markdown report with latency CDF plots.
    Bench(Bench),
}

#[derive(Debug, clap::Args)]
struct Bench {
    /// A built-in scenario (see `netsim scenarios`) or the path of a .toml file.
    #[arg(long)]
    scenario: String,
    /// SDK clients in one room.
    #[arg(long, default_value_t = 300)]
    clients: u32,
    /// Seconds measured per transport (after the warm-up).
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Clients that are full SDK clients (with a document) and measure delivery; the rest are
    /// protocol clients (see `easel-load --help`).
    #[arg(long, default_value_t = 5)]
    observers: u32,
    /// Transports, comma-separated: wt, quic, ws.
    #[arg(long, default_value = "wt,quic,ws", value_delimiter = ',')]
    transports: Vec<String>,
    /// Where the JSON goes; the Markdown report and plots go beside it (`OUT.md`,
    /// `OUT-cursor.svg`, `OUT-ops.svg`).
    #[arg(long)]
    json: PathBuf,
    /// Seed of the proxies' randomness.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The `easel` server binary (default: next to this one).
    #[arg(long)]
    server: Option<PathBuf>,
    /// The `easel-load` binary (default: next to this one).
    #[arg(long)]
    load: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct Run {
    /// A built-in scenario (see `netsim scenarios`) or the path of a .toml file.
    #[arg(long)]
    scenario: String,
    /// Proxies UDP (QUIC, WebTransport) from LISTEN to UPSTREAM, e.g. 127.0.0.1:5434=127.0.0.1:4434.
    /// Repeatable.
    #[arg(long, value_name = "LISTEN=UPSTREAM", value_parser = parse_pair)]
    udp: Vec<Pair>,
    /// Proxies TCP (WebSocket) from LISTEN to UPSTREAM, e.g. 127.0.0.1:9080=127.0.0.1:8080.
    /// Repeatable.
    #[arg(long, value_name = "LISTEN=UPSTREAM", value_parser = parse_pair)]
    tcp: Vec<Pair>,
    /// Seed for every random choice: the same seed and traffic give the same impairment.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Copy)]
struct Pair {
    listen: SocketAddr,
    upstream: SocketAddr,
}

fn parse_pair(text: &str) -> Result<Pair, String> {
    let (listen, upstream) = text.split_once('=').ok_or("expected LISTEN=UPSTREAM")?;
    let resolve = |addr: &str| {
        addr.to_socket_addrs()
            .map_err(|e| format!("{addr}: {e}"))?
            .next()
            .ok_or_else(|| format!("{addr}: no address"))
    };
    Ok(Pair { listen: resolve(listen)?, upstream: resolve(upstream)? })
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Scenarios => {
            for (name, _) in BUILTINS {
                let scenario = Scenario::builtin(name)?;
                println!("{name:<16} {}", scenario.description);
            }
            Ok(())
        }
        Command::Bench(bench) => {
            let runtime =
                tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
            runtime.block_on(run_bench(bench))
        }
        Command::Run(run) => {
            init_logging(run.log_format);
            let scenario = Scenario::load(&run.scenario)?;
            if run.udp.is_empty() && run.tcp.is_empty() {
                anyhow::bail!("nothing to proxy: give at least one --udp or --tcp LISTEN=UPSTREAM");
            }
            let runtime =
                tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
            runtime.block_on(serve(run, scenario))
        }
    }
}

async fn serve(run: Run, scenario: Scenario) -> anyhow::Result<()> {
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    // Each proxy draws from its own stream of the one seed.
    for (i, pair) in run.udp.iter().enumerate() {
        let seed = proxy::derive_seed(run.seed, i as u64);
        udp.push(Udp::start(pair.listen, pair.upstream, &scenario, seed).await?);
    }
    for (i, pair) in run.tcp.iter().enumerate() {
        let seed = proxy::derive_seed(run.seed, (run.udp.len() + i) as u64);
        tcp.push(Tcp::start(pair.listen, pair.upstream, &scenario, seed).await?);
    }
    let listed = |proxies: Vec<(SocketAddr, SocketAddr)>| {
        proxies
            .into_iter()
            .map(|(listen, upstream)| {
                serde_json::json!({ "listen": listen.to_string(), "upstream": upstream.to_string() })
            })
            .collect::<Vec<_>>()
    };
    let udp_addrs = udp.iter().zip(&run.udp).map(|(p, pair)| (p.local_addr(), pair.upstream)).collect();
    let tcp_addrs = tcp.iter().zip(&run.tcp).map(|(p, pair)| (p.local_addr(), pair.upstream)).collect();
    tracing::info!(scenario = %scenario.name, description = %scenario.description, seed = run.seed, "netsim running");
    // One machine-readable line on stdout for scripts and tests (ports may have been 0).
    println!(
        "{}",
        serde_json::json!({
            "event": "ready",
            "scenario": scenario.name,
            "seed": run.seed,
            "udp": listed(udp_addrs),
            "tcp": listed(tcp_addrs),
        })
    );
    shutdown_signal().await;
    for proxy in udp {
        let stats = proxy.stats();
        tracing::info!(
            listen = %proxy.local_addr(),
            clients = stats.clients,
            up_sent = stats.up.sent,
            up_dropped = stats.up.dropped(),
            down_sent = stats.down.sent,
            down_dropped = stats.down.dropped(),
            "udp proxy stopped"
        );
        proxy.shutdown().await;
    }
    for proxy in tcp {
        let stats = proxy.stats();
        tracing::info!(
            listen = %proxy.local_addr(),
            connections = stats.connections,
            up_bytes = stats.up.bytes_delivered,
            up_retransmits = stats.up.retransmits,
            down_bytes = stats.down.bytes_delivered,
            down_retransmits = stats.down.retransmits,
            "tcp proxy stopped"
        );
        proxy.shutdown().await;
    }
    Ok(())
}

/// A binary next to this one (where cargo puts every binary of the workspace).
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating netsim")?;
    let path = exe.parent().context("netsim has no directory")?.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} not found: build it (cargo build --release -p easel-server -p easel-benches) or pass its path",
        path.display()
    );
    Ok(path)
}

async fn run_bench(args: Bench) -> anyhow::Result<()> {
    let scenario = Scenario::load(&args.scenario)?;
    let transports = args
        .transports
        .iter()
        .map(|t| {
            bench::Transport::parse(t.trim())
                .with_context(|| format!("unknown transport {t:?} (wt, quic, ws)"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let plan = bench::Plan {
        scenario,
        transports,
        clients: args.clients,
        duration: args.duration,
        warmup: args.warmup,
        observers: args.observers,
        seed: args.seed,
        server: match args.server {
            Some(p) => p,
            None => sibling("easel")?,
        },
        load: match args.load {
            Some(p) => p,
            None => sibling("easel-load")?,
        },
    };
    let result = bench::run(&plan).await?;
    let stem = args.json.with_extension("");
    let name = |suffix: &str| {
        format!("{}{suffix}", stem.file_name().map_or("bench".into(), |s| s.to_string_lossy()))
    };
    let (cursor_svg, ops_svg) = (name("-cursor.svg"), name("-ops.svg"));
    let dir = args.json.parent().map(PathBuf::from).unwrap_or_default();
    let write = |file: &str, text: &str| {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    std::fs::write(&args.json, serde_json::to_vec_pretty(&result)?)
        .with_context(|| format!("writing {}", args.json.display()))?;
    let title = |what: &str| format!("{what}: {} clients, {}", plan.clients, plan.scenario.name);
    write(&cursor_svg, &report::cdf_svg(&result, "cursor", &title("cursor delivery latency")))?;
    write(&ops_svg, &report::cdf_svg(&result, "op_delivery", &title("op delivery latency")))?;
    let md = report::markdown(&result, (&cursor_svg, &ops_svg));
    write(&name(".md"), &md)?;
    println!("{md}");
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
