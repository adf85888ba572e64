//! Easel benchmarks.
//!
//! Layer: measurement only, on top of everything; nothing here is linked into the server or
//! the SDK.
//!
//! ```text
//! easel-proto ← easel-transport ← {easel-server, easel-client} ← {easel-benches, easel-netsim}
//! easel-proto ← easel-sfu-bridge (the SFU relay) ← easel-server
//! ```
//!
//! - `benches/codec.rs` (criterion): encode and validated decode of the hot wire messages — a
//!   50-cursor batch, a presence heartbeat, and Loro updates of 100 B and 10 KiB framed on a
//!   stream. Run with `cargo bench -p easel-benches --bench codec`.
//! - `easel-probe` (`src/bin/probe.rs`): starts the real `easel` binary on loopback and measures
//!   connect-to-Welcome time, reconnect-to-resumed time, cursor datagram latency between
//!   participants, op ack latency (fsync included) and server memory per idle session.
//! - `easel-load` (`src/bin/load/`): a class in one room (SDK observers and lean protocol
//!   clients, in one or several processes); cursor, op ack and op delivery latency, delivered
//!   ratios, server and generator CPU, server RSS; or a lecture (`--scenario lecture`): join
//!   storm, teacher cursor, chat, poll and hand-raise latency. `netsim bench` drives it.
//! - `easel-storm` (`src/bin/storm/`): a reconnect storm — SDK clients in many rooms lose their
//!   connections at once (the server restarted, or a netsim proxy cutting every packet) and the
//!   time until all are back, resumed against rejoined, refusals, the server's CPU and RSS, and
//!   that no acked edit was lost.
//!
//! This library holds what the measurement binaries share; [`shard`] spreads a generator over
//! processes.

pub mod shard;

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use easel_server::auth::{Claims, Issuer};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// A latency histogram: microseconds from 1 µs to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid")
}

/// A student token for `room`, signed with the server's HS256 `secret`, valid for a day.
pub fn token(secret: &str, room: &str, user: &str) -> anyhow::Result<String> {
    token_as(secret, room, user, "student")
}

/// A token for `room` with `role` (`teacher`, `student` or `viewer`), signed with the
/// server's HS256 `secret`, valid for a day.
pub fn token_as(secret: &str, room: &str, user: &str, role: &str) -> anyhow::Result<String> {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 24 * 3600;
    let claims = Claims::new(user, room, role, exp);
    Ok(Issuer::hs256(secret.as_bytes()).mint(&claims)?)
}

/// A process's resident set size, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("VmRSS value")?.parse()?)
}

/// Percentiles and a CDF of a latency histogram (µs) in ms.
pub fn summary(h: Option<&Histogram<u64>>) -> Value {
    let Some(h) = h.filter(|h| !h.is_empty()) else { return json!({ "samples": 0 }) };
    let ms = |v: u64| (v as f64).round() / 1000.0;
    let cdf: Vec<Value> = (0..=100)
        .map(|p| {
            let q = f64::from(p) / 100.0;
            json!([ms(h.value_at_quantile(q)), q])
        })
        .collect();
    json!({
        "samples": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p95_ms": ms(h.value_at_quantile(0.95)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
        "cdf": cdf,
    })
}

/// CPU ticks (user + system) of a process, from `/proc/<pid>/stat` (`self` for this one).
pub fn cpu_ticks(pid: &str) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

/// Linux's USER_HZ: `/proc` CPU times are in these ticks.
pub const TICKS_PER_SEC: f64 = 100.0;

/// A series of a server's `GET /metrics` at `http`, summed over its labels; `None` when the
/// server does not export it (or has no sample of it yet).
pub async fn metric(http: std::net::SocketAddr, name: &str) -> anyhow::Result<Option<f64>> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(http).await?;
    tcp.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {http}\r\n\r\n").as_bytes()).await?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).await?;
    let values: Vec<f64> = text
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let series = words.next()?;
            (series.split('{').next() == Some(name)).then(|| words.next()?.parse::<f64>().ok()).flatten()
        })
        .collect();
    Ok((!values.is_empty()).then(|| values.iter().sum()))
}
