//! A generator spread over processes: the parent spawns copies of its own program, each told
//! its place (`--shard J/K`) and the parent's clock origin (`--epoch-ms`), and they talk in
//! lines — JSON lines from a child on its stdout, plain command lines to it on its stdin.
//! `easel-load` and `easel-storm` both build their exchanges on this.
//!
//! All processes share one clock: a child rebuilds the parent's from its Unix origin
//! ([`Clock::from_unix_ms`]), so times in their reports need no translation.

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::mpsc;

/// The run's clock, in ms since it began.
#[derive(Clone, Copy, Debug)]
pub struct Clock(pub Instant);

impl Clock {
    /// Ms since the origin.
    pub fn ms(self) -> f64 {
        self.0.elapsed().as_secs_f64() * 1000.0
    }

    /// The tokio instant at clock time `ms` (a year at most: "not yet known" is far away).
    pub fn at(self, ms: f64) -> tokio::time::Instant {
        let ms = ms.clamp(0.0, 365.0 * 24.0 * 3600.0 * 1000.0);
        tokio::time::Instant::from_std(self.0 + Duration::from_secs_f64(ms / 1000.0))
    }

    /// The parent's clock, rebuilt in a child from its origin as Unix ms.
    pub fn from_unix_ms(epoch_ms: f64) -> Self {
        let age = Duration::from_secs_f64(((unix_ms() - epoch_ms) / 1000.0).max(0.0));
        Self(Instant::now().checked_sub(age).unwrap_or_else(Instant::now))
    }
}

/// Now as Unix ms.
pub fn unix_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// A child's place: shard `index` of `count`, and the parent's clock origin.
#[derive(Clone, Copy, Debug)]
pub struct Place {
    /// Which shard, from 0.
    pub index: u32,
    /// Of how many.
    pub count: u32,
    /// The parent's clock origin, Unix ms.
    pub epoch_ms: f64,
}

impl Place {
    /// From `--shard J/K` and `--epoch-ms`.
    pub fn parse(shard: &str, epoch_ms: f64) -> anyhow::Result<Self> {
        let (index, count) = shard.split_once('/').context("--shard J/K")?;
        let place = Self { index: index.parse()?, count: count.parse()?, epoch_ms };
        anyhow::ensure!(place.index < place.count, "--shard {shard}: J must be below K");
        Ok(place)
    }

    /// The parent's clock.
    pub fn clock(self) -> Clock {
        Clock::from_unix_ms(self.epoch_ms)
    }

    /// The indices in `lo..hi` this shard runs.
    pub fn indices(self, lo: u32, hi: u32) -> Vec<u32> {
        shard(lo, hi, self.index, self.count)
    }
}

/// Indices `lo..hi` that shard `index` of `count` runs: every `count`-th, so that each shard
/// gets its share of every room.
pub fn shard(lo: u32, hi: u32, index: u32, count: u32) -> Vec<u32> {
    (lo..hi).filter(|i| (i - lo) % count.max(1) == index).collect()
}

/// A command running this program (under `taskset -c CPUS` when `cpus` is given).
pub fn this_program(cpus: Option<&str>) -> anyhow::Result<tokio::process::Command> {
    let exe = std::env::current_exe().context("finding this program")?;
    Ok(match cpus {
        Some(cpus) => {
            let mut command = tokio::process::Command::new("taskset");
            command.arg("-c").arg(cpus).arg(exe);
            command
        }
        None => tokio::process::Command::new(exe),
    })
}

/// A child's stdout, line by line.
pub type ChildLines = Lines<BufReader<ChildStdout>>;

/// One child: its process, its stdin and its stdout lines.
pub struct Peer {
    child: Child,
    stdin: ChildStdin,
    lines: ChildLines,
}

impl Peer {
    /// Spawns `command` with piped stdin and stdout (stderr shared), killed when dropped.
    pub fn spawn(mut command: tokio::process::Command) -> anyhow::Result<Self> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawning a child process")?;
        let stdin = child.stdin.take().context("child stdin")?;
        let lines = BufReader::new(child.stdout.take().context("child stdout")?).lines();
        Ok(Self { child, stdin, lines })
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Its next JSON line.
    pub async fn read(&mut self) -> anyhow::Result<Value> {
        read_line(&mut self.lines).await
    }

    /// Writes `line` (and a newline) to its stdin.
    pub async fn tell(&mut self, line: &str) -> anyhow::Result<()> {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
        Ok(self.stdin.flush().await?)
    }

    /// Closes its stdin and waits for it to exit.
    pub async fn wait(self) -> anyhow::Result<()> {
        let Self { mut child, stdin, lines } = self;
        drop((stdin, lines));
        let status = child.wait().await?;
        anyhow::ensure!(status.success(), "a child process failed: {status}");
        Ok(())
    }
}

/// `count` copies of this program, each with the parent's own arguments, `extra`, and its
/// `--shard J/K --epoch-ms` place.
pub struct Children {
    peers: Vec<Peer>,
}

impl Children {
    /// Spawns them (under `taskset -c CPUS` when `cpus` is given).
    pub fn spawn(count: u32, epoch_ms: f64, extra: &[String], cpus: Option<&str>) -> anyhow::Result<Self> {
        let args: Vec<_> = std::env::args_os().skip(1).collect();
        let peers = (0..count)
            .map(|index| {
                let mut command = this_program(cpus)?;
                command.args(&args).args(extra).args([
                    "--shard",
                    &format!("{index}/{count}"),
                    "--epoch-ms",
                    &epoch_ms.to_string(),
                ]);
                Peer::spawn(command)
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { peers })
    }

    /// Their process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.peers.iter().filter_map(Peer::pid).collect()
    }

    /// The next JSON line of each, in order.
    pub async fn read_each(&mut self) -> anyhow::Result<Vec<Value>> {
        let mut all = Vec::new();
        for peer in &mut self.peers {
            all.push(peer.read().await?);
        }
        Ok(all)
    }

    /// Writes `line` to each.
    pub async fn tell(&mut self, line: &str) -> anyhow::Result<()> {
        for peer in &mut self.peers {
            peer.tell(line).await?;
        }
        Ok(())
    }

    /// From now on, every child's JSON lines as they come, merged (each with its child's
    /// index); the channel ends when every child's stdout has. Commands still go through the
    /// returned [`Tellers`].
    pub fn merge(self) -> (Tellers, mpsc::UnboundedReceiver<(usize, anyhow::Result<Value>)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut tellers = Vec::new();
        for (index, Peer { child, stdin, mut lines }) in self.peers.into_iter().enumerate() {
            let tx = tx.clone();
            tokio::spawn(async move {
                loop {
                    let line = match lines.next_line().await {
                        Ok(Some(line)) => serde_json::from_str(&line).context("a child's line"),
                        Ok(None) => break,
                        Err(e) => Err(e.into()),
                    };
                    if tx.send((index, line)).is_err() {
                        break;
                    }
                }
            });
            tellers.push((child, stdin));
        }
        (Tellers { tellers }, rx)
    }

    /// Waits for each to exit.
    pub async fn wait(self) -> anyhow::Result<()> {
        for peer in self.peers {
            peer.wait().await?;
        }
        Ok(())
    }
}

/// The stdins of merged [`Children`].
pub struct Tellers {
    tellers: Vec<(Child, ChildStdin)>,
}

impl Tellers {
    /// Writes `line` to each.
    pub async fn tell(&mut self, line: &str) -> anyhow::Result<()> {
        for (_, stdin) in &mut self.tellers {
            stdin.write_all(format!("{line}\n").as_bytes()).await?;
            stdin.flush().await?;
        }
        Ok(())
    }

    /// Closes their stdins and waits for each to exit.
    pub async fn wait(self) -> anyhow::Result<()> {
        for (mut child, stdin) in self.tellers {
            drop(stdin);
            let status = child.wait().await?;
            anyhow::ensure!(status.success(), "a child process failed: {status}");
        }
        Ok(())
    }
}

async fn read_line(lines: &mut ChildLines) -> anyhow::Result<Value> {
    let Some(line) = lines.next_line().await? else { bail!("a child process ended early") };
    serde_json::from_str(&line).context("a child process's line")
}

/// Child side: one JSON line to the parent.
pub fn say(value: &Value) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// Child side: the parent's command lines.
pub fn commands() -> Lines<BufReader<tokio::io::Stdin>> {
    BufReader::new(tokio::io::stdin()).lines()
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

    #[test]
    fn a_place_parses_and_must_lie_inside_its_count() {
        let place = Place::parse("1/3", 0.0).expect("1/3");
        assert_eq!((place.index, place.count), (1, 3));
        assert!(Place::parse("3/3", 0.0).is_err());
        assert!(Place::parse("3", 0.0).is_err());
    }
}
