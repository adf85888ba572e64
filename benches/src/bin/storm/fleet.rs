//! The crowd's processes: `--processes K` children of this program ([`easel_benches::shard`]),
//! each running a disjoint shard of the clients, so that 2,000 clients' QUIC, Loro documents
//! and timers spread over processes (and cores, with `--client-cpus`).
//!
//! The exchange, in lines. A child connects its shard and prints `{"ready": n, "failures":
//! […]}`; then `{"back": index}` for each of its clients as it is back. The parent writes
//! `cut MS` when it cuts, `healed MS` when the path is whole again (clock ms), and `stop`; the
//! child then prints `{"records": […]}` (each client's [`Record`]) and exits.

use anyhow::{Context as _, bail};
use easel_benches::shard::{Children, Place, Tellers, commands, say};
use futures::stream::{self, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::crowd::{self, Conduct, Record, Signals};

/// Child side: runs `members` (its shard) until the parent says stop.
pub(crate) async fn child(
    place: Place,
    members: Vec<crowd::Member>,
    conduct: Conduct,
    concurrency: usize,
) -> anyhow::Result<()> {
    let clock = place.clock();
    let joined: Vec<_> = stream::iter(members)
        .map(|m| {
            let conduct = &conduct;
            async move { (crowd::connect(conduct, &m).await, m) }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let (cut_tx, cut_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (healed_tx, healed_rx) = watch::channel(None);
    let (back_tx, mut back_rx) = mpsc::unbounded_channel();
    let signals = Signals { cut: cut_rx, healed_at: healed_rx, stop: stop_rx, back: back_tx };
    let mut tasks = tokio::task::JoinSet::new();
    let mut failures = Vec::new();
    for (result, m) in joined {
        match result {
            Ok((client, room)) => {
                let (conduct, signals) = (conduct.clone(), signals.clone());
                tasks.spawn(async move { crowd::drive(m, client, room, &conduct, clock, signals).await });
            }
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    drop(signals);
    say(&json!({ "ready": tasks.len(), "failures": failures }));
    let forward = tokio::spawn(async move {
        while let Some(index) = back_rx.recv().await {
            say(&json!({ "back": index }));
        }
    });

    let mut lines = commands();
    // A parent that closes stdin without a word means stop as well.
    while let Some(line) = lines.next_line().await? {
        let mut words = line.split_whitespace();
        let (command, ms) = (words.next(), words.next().and_then(|w| w.parse::<f64>().ok()));
        match (command, ms) {
            (Some("cut"), Some(ms)) => {
                let _ = cut_tx.send(Some(ms));
            }
            (Some("healed"), Some(ms)) => {
                let _ = healed_tx.send(Some(ms));
            }
            (Some("stop"), _) => break,
            _ => bail!("bad command {line:?}"),
        }
    }
    let _ = stop_tx.send(true);
    let mut records = Vec::new();
    while let Some(r) = tasks.join_next().await {
        records.push(r.context("a client task")?);
    }
    // Every back line goes before the records.
    forward.await?;
    say(&json!({ "records": records }));
    Ok(())
}

/// Parent side: the running children.
pub(crate) struct Fleet {
    tellers: Tellers,
    lines: mpsc::UnboundedReceiver<(usize, anyhow::Result<Value>)>,
    count: usize,
    pids: Vec<u32>,
}

/// What the children said once their shards were in.
pub(crate) struct Arrived {
    pub(crate) fleet: Fleet,
    /// Clients in their rooms.
    pub(crate) in_crowd: u32,
    /// Why the others are not.
    pub(crate) failures: Vec<String>,
}

impl Fleet {
    /// Spawns `count` children with the parent's arguments and `extra`, and waits until each
    /// has its shard in.
    pub(crate) async fn start(
        count: u32,
        epoch_ms: f64,
        extra: &[String],
        cpus: Option<&str>,
    ) -> anyhow::Result<Arrived> {
        let mut children = Children::spawn(count, epoch_ms, extra, cpus)?;
        let (mut in_crowd, mut failures) = (0, Vec::new());
        for ready in children.read_each().await? {
            in_crowd += u32::try_from(ready["ready"].as_u64().context("a ready line")?)?;
            if let Some(f) = ready["failures"].as_array() {
                failures.extend(f.iter().filter_map(|f| f.as_str().map(str::to_owned)));
            }
        }
        let pids = children.pids();
        let (tellers, lines) = children.merge();
        Ok(Arrived { fleet: Self { tellers, lines, count: count as usize, pids }, in_crowd, failures })
    }

    /// The children's process ids.
    pub(crate) fn pids(&self) -> &[u32] {
        &self.pids
    }

    /// Tells every child `line`.
    pub(crate) async fn tell(&mut self, line: &str) -> anyhow::Result<()> {
        self.tellers.tell(line).await
    }

    /// Waits for the next client to be back; `None` when every child has ended.
    pub(crate) async fn next_back(&mut self) -> anyhow::Result<Option<u32>> {
        while let Some((_, line)) = self.lines.recv().await {
            if let Some(index) = line?["back"].as_u64() {
                return Ok(Some(u32::try_from(index)?));
            }
        }
        Ok(None)
    }

    /// Stops every child and collects its clients' records.
    pub(crate) async fn finish(mut self) -> anyhow::Result<Vec<Record>> {
        self.tell("stop").await?;
        let (mut records, mut reported) = (Vec::new(), 0);
        while reported < self.count {
            let Some((child, line)) = self.lines.recv().await else {
                bail!("a client process ended without its records")
            };
            let line = line.with_context(|| format!("client process {child}"))?;
            if let Some(list) = line.get("records") {
                records.extend(serde_json::from_value::<Vec<Record>>(list.clone())?);
                reported += 1;
            }
        }
        self.tellers.wait().await?;
        Ok(records)
    }
}
