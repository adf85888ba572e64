//! `--processes K`: the parent runs the SDK clients (observers, the teacher) and spawns K-1
//! children of itself, each running a disjoint shard of the protocol clients, so that the
//! generator's work spreads over processes (and cores, when `taskset` gives it several).
//!
//! The exchange is three lines. A child connects its shard and prints `{"ready": …}` on
//! stdout; the parent, once everyone is in, writes the window (`FROM TO`, clock ms) to each
//! child's stdin; each child runs until the window ends and prints its [`Tally`] as JSON.
//! All processes share one clock: children get the parent's origin as Unix time.

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::tally::{Clock, Tally, Window};

/// The child's place: shard `index` of `count`, and the parent's clock origin.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Place {
    pub(crate) index: u32,
    pub(crate) count: u32,
    pub(crate) epoch_ms: f64,
}

/// Now as Unix ms.
pub(crate) fn unix_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// The parent's clock, rebuilt in a child from its Unix origin.
pub(crate) fn clock_from(epoch_ms: f64) -> Clock {
    let age = Duration::from_secs_f64(((unix_ms() - epoch_ms) / 1000.0).max(0.0));
    Clock(Instant::now().checked_sub(age).unwrap_or_else(Instant::now))
}

/// Client indices `lo..hi` that shard `index` of `count` runs.
pub(crate) fn shard(lo: u32, hi: u32, index: u32, count: u32) -> Vec<u32> {
    (lo..hi).filter(|i| (i - lo) % count.max(1) == index).collect()
}

/// The running children.
pub(crate) struct Children {
    children: Vec<(Child, ChildStdin, Lines<BufReader<ChildStdout>>)>,
}

impl Children {
    /// Spawns `count` copies of this program with the parent's arguments and a `--shard`.
    pub(crate) fn spawn(count: u32, epoch_ms: f64) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding this program")?;
        let args: Vec<_> = std::env::args_os().skip(1).collect();
        let mut children = Vec::new();
        for index in 0..count {
            let mut child = tokio::process::Command::new(&exe)
                .args(&args)
                .args(["--shard", &format!("{index}/{count}"), "--epoch-ms", &epoch_ms.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .context("spawning a generator process")?;
            let stdin = child.stdin.take().context("child stdin")?;
            let stdout = BufReader::new(child.stdout.take().context("child stdout")?).lines();
            children.push((child, stdin, stdout));
        }
        Ok(Self { children })
    }

    /// Waits until every child has connected its shard; returns their ready lines.
    pub(crate) async fn ready(&mut self) -> anyhow::Result<Vec<Value>> {
        let mut all = Vec::new();
        for (_, _, lines) in &mut self.children {
            all.push(read_line(lines).await?);
        }
        Ok(all)
    }

    /// Tells every child the window.
    pub(crate) async fn go(&mut self, window: Window) -> anyhow::Result<()> {
        for (_, stdin, _) in &mut self.children {
            stdin.write_all(format!("{} {}\n", window.from, window.to).as_bytes()).await?;
            stdin.flush().await?;
        }
        Ok(())
    }

    /// Collects every child's tally and waits for it to exit.
    pub(crate) async fn finish(self) -> anyhow::Result<Tally> {
        let mut tally = Tally::default();
        for (mut child, _, mut lines) in self.children {
            tally.merge(Tally::from_json(&read_line(&mut lines).await?)?)?;
            child.wait().await?;
        }
        Ok(tally)
    }
}

async fn read_line(lines: &mut Lines<BufReader<ChildStdout>>) -> anyhow::Result<Value> {
    let Some(line) = lines.next_line().await? else { bail!("a generator process ended early") };
    serde_json::from_str(&line).context("a generator process's line")
}

/// Child side: announce the shard is connected, then read the window.
pub(crate) async fn announce_ready(connected: usize, failures: &[String]) -> anyhow::Result<Window> {
    println!("{}", json!({ "ready": connected, "failures": failures }));
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let line = stdin.next_line().await?.context("the parent closed stdin")?;
    let mut parts = line.split_whitespace().map(str::parse::<f64>);
    match (parts.next(), parts.next()) {
        (Some(Ok(from)), Some(Ok(to))) => Ok(Window { from, to }),
        _ => bail!("bad window line {line:?}"),
    }
}

/// Child side: hand the tally to the parent.
pub(crate) fn report(tally: &Tally) -> anyhow::Result<()> {
    println!("{}", tally.to_json()?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_and_cover_the_range() {
        let mut all: Vec<u32> = (0..3).flat_map(|j| shard(5, 17, j, 3)).collect();
        all.sort_unstable();
        assert_eq!(all, (5..17).collect::<Vec<_>>());
    }
}
