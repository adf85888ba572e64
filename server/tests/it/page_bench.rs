//! Page-to-page cursor latency in headless Chromium (BENCHMARKS.md): a benchmark, not a test,
//! so it is ignored and prints a table. Run it on a release build:
//!
//! ```text
//! EASEL_BENCH_SECS=20 cargo test --release --locked -p easel-server --test it \
//!     page_to_page_cursor_latency -- --ignored --nocapture
//! ```
//!
//! Per cell (WebTransport or WebSocket, on loopback or through netsim's `lossy-2pct` proxies):
//! a fresh server, two pages (two Chromium processes) in one room; the sender moves its cursor
//! to x = 0, 1, … at 30 Hz and notes each send time, the receiver notes when each x first
//! arrives. Both times are `performance.timeOrigin + performance.now()`: the same system clock
//! in two processes of one machine. Latency = arrival − send, from the app's `cursor()` call to
//! the receiving app's `cursors` event (SDK throttle, server tick, both transports included).

use std::time::Duration;

use easel_netsim::proxy::{Tcp, Udp};
use easel_netsim::scenario::Scenario;

use crate::harness::{TestServer, token};
use crate::page::{Pages, query_of};

const ROOM: &str = "bench/cursor/board";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: prints BENCHMARKS.md's table (see the module docs)"]
async fn page_to_page_cursor_latency() {
    let secs: u32 = std::env::var("EASEL_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let count = secs * 30;
    println!("\n{count} cursors at 30 Hz per cell\n");
    println!("| network | transport | delivered | p50 ms | p95 ms | p99 ms | max ms | server datagrams in |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for net in ["loopback", "lossy-2pct"] {
        for transport in ["webtransport", "websocket"] {
            let cell = run_cell(net, transport, count).await;
            println!(
                "| {net} | {transport} | {:.1}% ({}/{count}) | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
                100.0 * cell.latencies.len() as f64 / f64::from(count),
                cell.latencies.len(),
                percentile(&cell.latencies, 0.50),
                percentile(&cell.latencies, 0.95),
                percentile(&cell.latencies, 0.99),
                percentile(&cell.latencies, 1.0),
                cell.datagrams_in,
            );
        }
    }
}

struct Cell {
    /// Milliseconds, sorted, one per delivered cursor.
    latencies: Vec<f64>,
    /// The server's `easel_datagrams_in_total` over the cell (cursors and heartbeats).
    datagrams_in: u64,
}

async fn run_cell(net: &str, transport: &str, count: u32) -> Cell {
    let server = TestServer::start().await;
    let s = &server.server;
    // Through netsim: one UDP proxy (WebTransport) and one TCP proxy (/ws), as `netsim run`.
    let proxies = if net == "loopback" {
        None
    } else {
        let scenario = Scenario::builtin(net).expect("scenario");
        let any = "127.0.0.1:0".parse().expect("addr");
        let udp = Udp::start(any, s.wt_addr(), &scenario, 1).await.expect("udp proxy");
        let tcp = Tcp::start(any, s.http_addr(), &scenario, 1).await.expect("tcp proxy");
        Some((udp, tcp))
    };
    let (wt, http) = match &proxies {
        Some((udp, tcp)) => (udp.local_addr(), tcp.local_addr()),
        None => (s.wt_addr(), s.http_addr()),
    };
    let before = datagrams_in(&server).await;
    let mut pages = Pages::start().await;
    let (origin, wt_url) = (format!("http://{http}"), format!("https://127.0.0.1:{}/", wt.port()));
    let patience = ((count / 30 + 60) * 1000).to_string();
    let count_text = count.to_string();
    for (scenario, user) in [("cursorRecv", "receiver"), ("cursorSend", "sender")] {
        let token = token(ROOM, user, "student", 3600);
        pages
            .open(&query_of(&[
                ("scenario", scenario),
                ("label", user),
                ("server", &origin),
                ("wt", &wt_url),
                ("hash", s.cert_hash()),
                ("token", &token),
                ("room", ROOM),
                ("transports", transport),
                ("count", &count_text),
                ("patience", &patience),
            ]))
            .await;
    }
    let wait = Duration::from_secs(u64::from(count / 30) + 120);
    let (mut sent, mut arrived) = (None, None);
    for _ in 0..2 {
        let r = tokio::time::timeout(wait, pages.result()).await.expect("both pages report");
        assert_eq!(r["transport"], transport, "{r}");
        match r["label"].as_str() {
            Some("sender") => sent = Some(r["sent"].clone()),
            _ => arrived = Some(r["arrived"].clone()),
        }
    }
    let datagrams_in = datagrams_in(&server).await - before;
    let (sent, arrived) = (sent.expect("sender"), arrived.expect("receiver"));
    let sent = sent.as_array().expect("sent times");
    assert_eq!(sent.len(), count as usize);
    let mut latencies: Vec<f64> = sent
        .iter()
        .enumerate()
        .filter_map(|(x, at)| Some(arrived.get(x.to_string())?.as_f64()? - at.as_f64()?))
        .collect();
    latencies.sort_by(f64::total_cmp);
    if let Some((udp, tcp)) = proxies {
        udp.shutdown().await;
        tcp.shutdown().await;
    }
    server.server.shutdown().await;
    Cell { latencies, datagrams_in }
}

async fn datagrams_in(server: &TestServer) -> u64 {
    crate::page::metric(server, "easel_datagrams_in_total").await
}

/// The `q` quantile of sorted `values` (nearest rank); NaN when there are none.
fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}
