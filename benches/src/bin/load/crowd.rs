//! Many lean protocol clients at once: connected a bounded number at a time, each running
//! ([`lean::run`]) from the moment it has joined, with one [`pace`] task for all their cursors
//! and heartbeats.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use easel_benches::shard::Clock;
use futures::stream::{self, StreamExt as _};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::lean::{self, Paced, Planner, Roster, Target, pace};
use crate::tally::{Tally, Window};

/// What the crowd's clients do.
pub(crate) struct Conduct {
    pub(crate) role: &'static str,
    pub(crate) user: Arc<dyn Fn(u32) -> String + Send + Sync>,
    pub(crate) planner: Planner,
    pub(crate) mover: Arc<dyn Fn(u32) -> bool + Send + Sync>,
    pub(crate) hz: u32,
    pub(crate) concurrency: usize,
}

/// Connected clients at work, and why the others failed.
pub(crate) struct Crowd {
    pub(crate) connected: usize,
    pub(crate) failures: Vec<String>,
    tally: Tally,
    tasks: JoinSet<Tally>,
    pacer: Option<JoinHandle<Tally>>,
}

/// Connects clients `indices` (client `i` to `targets[i % len]`); records connect →
/// joined-and-synced per client as `connect`, and the last connect start and last sync time.
/// Each client starts running as it joins.
pub(crate) async fn connect(
    targets: &[Target],
    indices: &[u32],
    conduct: &Conduct,
    clock: Clock,
    window_rx: &watch::Receiver<Option<Window>>,
) -> Crowd {
    let roster: Roster = Arc::new(Mutex::new(Vec::new()));
    let mut crowd = Crowd {
        connected: 0,
        failures: Vec::new(),
        tally: Tally::default(),
        tasks: JoinSet::new(),
        pacer: None,
    };
    let mut joins = stream::iter(indices.iter().map(|&i| (i, (conduct.user)(i))))
        .map(|(i, name)| async move {
            // Spread over the cluster's nodes, if more than one is given.
            let target = &targets[i as usize % targets.len()];
            lean::connect(target, i, &name, conduct.role, clock).await
        })
        .buffer_unordered(conduct.concurrency.max(1));
    while let Some(r) = joins.next().await {
        let l = match r {
            Ok(l) => l,
            Err(e) => {
                crowd.failures.push(format!("{e:#}"));
                continue;
            }
        };
        crowd.connected += 1;
        crowd.tally.latency("connect", l.synced_at - l.connect_start);
        crowd.tally.max("last_connect_start", l.connect_start);
        crowd.tally.max("last_synced", l.synced_at);
        if crowd.pacer.is_none() {
            // Twice per announced interval: a late round never looks like silence.
            let heartbeat =
                Duration::from_millis(u64::from(l.conn.welcome().limits.heartbeat_ms.max(200)) / 2);
            let task = pace(roster.clone(), conduct.hz, heartbeat, clock, window_rx.clone());
            crowd.pacer = Some(tokio::spawn(task));
        }
        let paced = Paced {
            conn: l.conn.clone(),
            slot: l.slot,
            mover: (conduct.mover)(l.index),
            y: f64::from(l.index),
        };
        roster.lock().unwrap_or_else(PoisonError::into_inner).push(paced);
        crowd.tasks.spawn(lean::run(l, conduct.planner.clone(), clock, window_rx.clone()));
    }
    crowd
}

/// Waits for the crowd to finish the window and returns what it measured.
pub(crate) async fn finish(crowd: Crowd) -> Tally {
    let Crowd { mut tally, mut tasks, pacer, .. } = crowd;
    while let Some(t) = tasks.join_next().await {
        if let Ok(t) = t {
            // Only histograms of the same bounds meet here; merging cannot fail.
            let _ = tally.merge(t);
        }
    }
    if let Some(Ok(paced)) = match pacer {
        Some(p) => Some(p.await),
        None => None,
    } {
        let _ = tally.merge(paced);
    }
    tally
}
