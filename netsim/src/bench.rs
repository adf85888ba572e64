//! The benchmark runner behind `netsim bench`: per transport, start the real `easel` server
//! binary, put a proxy with the scenario in front of it, run the `easel-load` client swarm
//! through the proxy, and collect what it measured plus what crossed the proxy.
//!
//! It drives the server and the SDK as a user would — as processes, through their command
//! lines and their JSON — so this crate links neither.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::proxy::{self, Tcp, Udp};
use crate::scenario::Scenario;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A program could not be started or did not behave.
    #[error("{program}: {reason}")]
    Process {
        /// Which.
        program: String,
        /// Why.
        reason: String,
    },
    /// The proxy could not start.
    #[error(transparent)]
    Proxy(#[from] proxy::ProxyError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Which.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A transport the benchmark measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// WebTransport (datagrams for cursors), through the UDP proxy.
    WebTransport,
    /// Raw QUIC, through the UDP proxy.
    Quic,
    /// The WebSocket fallback, through the TCP proxy.
    WebSocket,
}

impl Transport {
    /// The short name used on the command line and in reports (`wt`, `quic`, `ws`).
    pub fn name(self) -> &'static str {
        match self {
            Self::WebTransport => "wt",
            Self::Quic => "quic",
            Self::WebSocket => "ws",
        }
    }

    /// Parses `wt`, `quic` or `ws`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "wt" | "webtransport" => Some(Self::WebTransport),
            "quic" => Some(Self::Quic),
            "ws" | "websocket" => Some(Self::WebSocket),
            _ => None,
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The network.
    pub scenario: Scenario,
    /// Transports, in order.
    pub transports: Vec<Transport>,
    /// Clients in the room.
    pub clients: u32,
    /// Seconds measured (after the warm-up).
    pub duration: u64,
    /// Seconds of load before measuring.
    pub warmup: u64,
    /// Full SDK clients among them (they measure delivery).
    pub observers: u32,
    /// Seed of the proxies' randomness.
    pub seed: u64,
    /// The `easel` binary.
    pub server: PathBuf,
    /// The `easel-load` binary.
    pub load: PathBuf,
}

const SECRET: &str = "netsim-bench-secret-0123456789abcdef0123";

/// A server process, killed when dropped.
struct Server {
    child: tokio::process::Child,
    ready: Value,
    _dir: tempfile::TempDir,
}

fn process(program: &Path, reason: impl std::fmt::Display) -> BenchError {
    BenchError::Process { program: program.display().to_string(), reason: reason.to_string() }
}

async fn start_server(path: &Path) -> Result<Server, BenchError> {
    let dir = tempfile::tempdir().map_err(|source| BenchError::Io { path: "tempdir".into(), source })?;
    let mut child = tokio::process::Command::new(path)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--wt-addr", "127.0.0.1:0", "--quic-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .env("EASEL_JWT_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| process(path, e))?;
    let stdout = child.stdout.take().ok_or_else(|| process(path, "no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["event"] == "ready"
            {
                return Some(v);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| process(path, "did not print its ready line within 30 s"))?;
    Ok(Server { child, ready, _dir: dir })
}

impl Server {
    fn addr(&self, key: &str) -> Result<SocketAddr, BenchError> {
        self.ready[key].as_str().and_then(|a| a.parse().ok()).ok_or_else(|| BenchError::Process {
            program: "easel".into(),
            reason: format!("no {key} address"),
        })
    }
}

/// Bytes that crossed the proxy, each way.
#[derive(Debug, Clone, Copy, Default)]
struct Crossed {
    up: u64,
    down: u64,
    dropped_up: u64,
    dropped_down: u64,
    retransmits: u64,
}

enum Proxy {
    Udp(Udp),
    Tcp(Tcp),
}

impl Proxy {
    fn crossed(&self) -> Crossed {
        match self {
            Self::Udp(p) => {
                let s = p.stats();
                Crossed {
                    up: s.up.bytes_delivered,
                    down: s.down.bytes_delivered,
                    dropped_up: s.up.dropped() + s.overflow,
                    dropped_down: s.down.dropped(),
                    retransmits: 0,
                }
            }
            Self::Tcp(p) => {
                let s = p.stats();
                Crossed {
                    up: s.up.bytes_delivered,
                    down: s.down.bytes_delivered,
                    dropped_up: 0,
                    dropped_down: 0,
                    retransmits: s.up.retransmits + s.down.retransmits,
                }
            }
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Self::Udp(p) => p.local_addr(),
            Self::Tcp(p) => p.local_addr(),
        }
    }
}

/// Runs one transport: server, proxy, load; returns the transport's result.
async fn run_one(plan: &Plan, transport: Transport, index: u64) -> Result<Value, BenchError> {
    let mut server = start_server(&plan.server).await?;
    let seed = proxy::derive_seed(plan.seed, index);
    let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let proxy = match transport {
        Transport::Quic => Proxy::Udp(Udp::start(listen, server.addr("quic")?, &plan.scenario, seed).await?),
        Transport::WebTransport => {
            Proxy::Udp(Udp::start(listen, server.addr("wt")?, &plan.scenario, seed).await?)
        }
        Transport::WebSocket => {
            Proxy::Tcp(Tcp::start(listen, server.addr("http")?, &plan.scenario, seed).await?)
        }
    };
    let port = proxy.addr().port();
    let url = match transport {
        Transport::Quic => format!("easel+quic://127.0.0.1:{port}"),
        Transport::WebTransport => format!("https://127.0.0.1:{port}/"),
        Transport::WebSocket => format!("ws://127.0.0.1:{port}/ws"),
    };
    let hash = server.ready["cert_sha256"].as_str().unwrap_or_default().to_owned();
    let pid = server.child.id().unwrap_or_default();
    let out = tempfile::NamedTempFile::new()
        .map_err(|source| BenchError::Io { path: "tempfile".into(), source })?;
    let started = Instant::now();
    let before = proxy.crossed();
    let mut load = tokio::process::Command::new(&plan.load);
    load.args(["--url", &url, "--cert-hash", &hash])
        .args(["--clients", &plan.clients.to_string(), "--observers", &plan.observers.to_string()])
        .args(["--duration", &plan.duration.to_string(), "--warmup", &plan.warmup.to_string()])
        .args(["--server-pid", &pid.to_string(), "--label", transport.name()])
        .arg("--json")
        .arg(out.path())
        .env("EASEL_JWT_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    // Generous: the class must arrive (hundreds of handshakes on a small machine) and leave.
    let limit = Duration::from_secs(plan.warmup + plan.duration + 180);
    let status = tokio::time::timeout(limit, load.status())
        .await
        .map_err(|_| process(&plan.load, format!("did not finish within {limit:?}")))?
        .map_err(|e| process(&plan.load, e))?;
    let elapsed = started.elapsed().as_secs_f64();
    let after = proxy.crossed();
    let _ = server.child.kill().await;
    if !status.success() {
        return Err(process(&plan.load, format!("exited with {status}")));
    }
    let text = std::fs::read_to_string(out.path())
        .map_err(|source| BenchError::Io { path: out.path().to_owned(), source })?;
    let mut result: Value =
        serde_json::from_str(&text).map_err(|e| process(&plan.load, format!("report: {e}")))?;
    let per_client_sec = |bytes: u64| (bytes as f64 / f64::from(plan.clients.max(1)) / elapsed).round();
    result["network"] = json!({
        "bytes_per_client_per_sec_up": per_client_sec(after.up - before.up),
        "bytes_per_client_per_sec_down": per_client_sec(after.down - before.down),
        "proxy_dropped_up": after.dropped_up - before.dropped_up,
        "proxy_dropped_down": after.dropped_down - before.dropped_down,
        "tcp_retransmits_modelled": after.retransmits - before.retransmits,
        "measured_over_s": (elapsed * 10.0).round() / 10.0,
    });
    Ok(result)
}

/// Runs the plan, transport after transport (never in parallel: they would share the CPU).
pub async fn run(plan: &Plan) -> Result<Value, BenchError> {
    let mut transports = serde_json::Map::new();
    for (i, transport) in plan.transports.iter().enumerate() {
        eprintln!(
            "netsim bench: {} over {} with {} clients",
            plan.scenario.name,
            transport.name(),
            plan.clients
        );
        let result = run_one(plan, *transport, i as u64).await?;
        transports.insert(transport.name().to_owned(), result);
    }
    Ok(json!({
        "scenario": plan.scenario.name,
        "description": plan.scenario.description,
        "seed": plan.seed,
        "clients": plan.clients,
        "observers": plan.observers,
        "warmup_s": plan.warmup,
        "duration_s": plan.duration,
        "cores": std::thread::available_parallelism().map_or(0, usize::from),
        "transports": Value::Object(transports),
    }))
}
