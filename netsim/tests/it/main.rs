//! The proxies over real sockets on 127.0.0.1: UDP delay and loss against an echo server, TCP
//! delay, order and retransmission stalls, and the real Easel server and SDK through both.

mod cli;
mod e2e;
mod tcp;
mod udp;

use std::future::Future;
use std::time::Duration;

use easel_netsim::Scenario;

/// Every wait is bounded: a hang is a failure with a message, not a stuck run.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Waits until `ready()` holds, checking every few milliseconds, for at most 20 s.
pub async fn eventually(what: &str, mut ready: impl FnMut() -> bool) {
    within(what, async {
        while !ready() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// A scenario from inline TOML.
pub fn scenario(toml: &str) -> Scenario {
    Scenario::from_toml("test", toml).expect("valid test scenario")
}

/// The median of some durations.
pub fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}
