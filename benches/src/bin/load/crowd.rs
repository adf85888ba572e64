//! Many lean protocol clients at once: connect them (a bounded number at a time), then run
//! them, one task each plus one [`pace`] task for all their cursors and heartbeats.

use std::time::Duration;

use futures::stream::{self, StreamExt as _};

use crate::lean::{self, Lean, Paced, Plan, Target, pace};
use crate::tally::{Clock, Tally, Window};

/// Connected clients, what their connects measured, and why the others failed.
pub(crate) struct Crowd {
    pub(crate) leans: Vec<Lean>,
    pub(crate) failures: Vec<String>,
    pub(crate) tally: Tally,
}

/// Connects clients `indices` (user names from `user`) with `role`, `concurrency` at a time;
/// records connect → joined-and-synced per client as `connect`, and the last connect start
/// and last sync time.
pub(crate) async fn connect(
    target: &Target,
    indices: &[u32],
    user: impl Fn(u32) -> String,
    role: &str,
    concurrency: usize,
    clock: Clock,
) -> Crowd {
    let results: Vec<anyhow::Result<Lean>> = stream::iter(indices.iter().map(|&i| (i, user(i))))
        .map(|(i, name)| async move { lean::connect(target, i, &name, role, clock).await })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut crowd = Crowd { leans: Vec::new(), failures: Vec::new(), tally: Tally::default() };
    for r in results {
        match r {
            Ok(lean) => {
                crowd.tally.latency("connect", lean.synced_at - lean.connect_start);
                crowd.tally.max("last_connect_start", lean.connect_start);
                crowd.tally.max("last_synced", lean.synced_at);
                crowd.leans.push(lean);
            }
            Err(e) => crowd.failures.push(format!("{e:#}")),
        }
    }
    crowd.leans.sort_by_key(|l| l.index);
    crowd
}

/// Runs the crowd until the window ends: `plan` says what each client does, `mover` which
/// ones move their cursor at `hz` (the others send presence heartbeats).
pub(crate) async fn run(
    crowd: Crowd,
    plan: impl Fn(&Lean) -> Plan,
    mover: impl Fn(u32) -> bool,
    hz: u32,
    clock: Clock,
    window: Window,
) -> Tally {
    let Crowd { leans, mut tally, .. } = crowd;
    let heartbeat = leans.first().map_or(Duration::from_secs(2), |l| {
        // Twice per announced interval: a late round never looks like silence.
        Duration::from_millis(u64::from(l.conn.welcome().limits.heartbeat_ms.max(200)) / 2)
    });
    let paced: Vec<Paced> = leans
        .iter()
        .map(|l| Paced { conn: l.conn.clone(), slot: l.slot, mover: mover(l.index), y: f64::from(l.index) })
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for l in leans {
        let p = plan(&l);
        tasks.spawn(lean::run(l, p, clock, window));
    }
    let (sent, tallies) = tokio::join!(pace(paced, hz, heartbeat, clock, window), async {
        let mut all = Vec::new();
        while let Some(t) = tasks.join_next().await {
            if let Ok(t) = t {
                all.push(t);
            }
        }
        all
    });
    tally.count("cursors_sent", sent);
    for t in tallies {
        // Only histograms of the same bounds meet here; merging cannot fail.
        let _ = tally.merge(t);
    }
    tally
}
