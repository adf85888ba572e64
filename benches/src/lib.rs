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
//!
//! This library holds what the measurement binaries share.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use easel_server::auth::{Claims, Issuer};
use hdrhistogram::Histogram;

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
