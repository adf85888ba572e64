//! `--processes K`: the parent runs the SDK clients (observers, the teacher) and spawns K-1
//! children of itself ([`easel_benches::shard`]), each running a disjoint shard of the
//! protocol clients, so that the generator's work spreads over processes (and cores, when
//! `taskset` gives it several).
//!
//! The exchange is three lines. A child connects its shard and prints `{"ready": …}` on
//! stdout; the parent, once everyone is in, writes the window (`FROM TO`, clock ms) to each
//! child's stdin; each child runs until the window ends and prints its [`Tally`] as JSON.

use anyhow::{Context as _, bail};
use easel_benches::shard::{self, commands, say};
use serde_json::{Value, json};

use crate::tally::{Tally, Window};

/// The running children.
pub(crate) struct Children(shard::Children);

impl Children {
    /// Spawns `count` copies of this program with the parent's arguments and a `--shard`.
    pub(crate) fn spawn(count: u32, epoch_ms: f64) -> anyhow::Result<Self> {
        Ok(Self(shard::Children::spawn(count, epoch_ms, &[], None)?))
    }

    /// Waits until every child has connected its shard; returns their ready lines.
    pub(crate) async fn ready(&mut self) -> anyhow::Result<Vec<Value>> {
        self.0.read_each().await
    }

    /// Tells every child the window.
    pub(crate) async fn go(&mut self, window: Window) -> anyhow::Result<()> {
        self.0.tell(&format!("{} {}", window.from, window.to)).await
    }

    /// Collects every child's tally and waits for it to exit.
    pub(crate) async fn finish(mut self) -> anyhow::Result<Tally> {
        let mut tally = Tally::default();
        for line in self.0.read_each().await? {
            tally.merge(Tally::from_json(&line)?)?;
        }
        self.0.wait().await?;
        Ok(tally)
    }
}

/// Child side: announce the shard is connected, then read the window.
pub(crate) async fn announce_ready(connected: usize, failures: &[String]) -> anyhow::Result<Window> {
    say(&json!({ "ready": connected, "failures": failures }));
    let line = commands().next_line().await?.context("the parent closed stdin")?;
    let mut parts = line.split_whitespace().map(str::parse::<f64>);
    match (parts.next(), parts.next()) {
        (Some(Ok(from)), Some(Ok(to))) => Ok(Window { from, to }),
        _ => bail!("bad window line {line:?}"),
    }
}

/// Child side: hand the tally to the parent.
pub(crate) fn report(tally: Tally) -> anyhow::Result<()> {
    say(&tally.into_json()?);
    Ok(())
}
