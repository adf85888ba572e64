//! `--cut netsim`: the netsim UDP proxy in its own process (this program with `--proxy-for`),
//! so that forwarding every packet of the crowd costs the client processes nothing, commanded
//! by lines on its stdin: `cut`, `heal` (each acknowledged with a line once done) and `stats`.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use easel_benches::shard::{Peer, commands, say, this_program};
use easel_netsim::Scenario;
use easel_netsim::proxy::{Udp, UdpOptions};
use serde_json::{Value, json};

/// Client mappings the proxy allows for `clients`. Why several each: every connection attempt
/// is a new client socket, and lost ones linger until idle, and the proxy must never refuse
/// one itself.
fn max_mappings(clients: u32) -> usize {
    (clients as usize).saturating_mul(8).max(4096)
}

/// Child side: runs the proxy in front of `upstream` until stdin closes.
pub(crate) async fn serve(upstream: SocketAddr, clients: u32) -> anyhow::Result<()> {
    let loopback = Scenario::builtin("loopback")?;
    let mut options = UdpOptions::default();
    options.max_clients = max_mappings(clients);
    let proxy = Udp::start_with(([127, 0, 0, 1], 0).into(), upstream, &loopback, 1, options).await?;
    say(&json!({ "proxy": proxy.local_addr().to_string() }));
    let mut lines = commands();
    while let Some(line) = lines.next_line().await? {
        match line.trim() {
            "cut" => proxy.cut(true),
            "heal" => proxy.cut(false),
            "stats" => {
                let s = proxy.stats();
                say(&json!({
                    "clients": s.clients,
                    "dropped_while_cut": s.cut,
                    "refused_mappings": s.rejected,
                    "queue_overflow": s.overflow,
                }));
                continue;
            }
            other => bail!("unknown proxy command {other:?}"),
        }
        say(&json!({ "done": line.trim() }));
    }
    proxy.shutdown().await;
    Ok(())
}

/// Parent side: the proxy process.
pub(crate) struct Proxy {
    peer: Peer,
    addr: SocketAddr,
}

impl Proxy {
    /// Starts it in front of `upstream` (pinned to `cpus` when given).
    pub(crate) async fn start(
        upstream: SocketAddr,
        clients: u32,
        cpus: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut command = this_program(cpus)?;
        command.args(["--cut", "netsim", "--clients", &clients.to_string()]);
        command.args(["--proxy-for", &upstream.to_string()]);
        let mut peer = Peer::spawn(command).context("the proxy process")?;
        let ready = peer.read().await.context("the proxy's ready line")?;
        let addr = ready["proxy"].as_str().context("the proxy's address")?.parse()?;
        Ok(Self { peer, addr })
    }

    /// Where clients send.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.peer.pid()
    }

    /// Cuts (`true`) or heals the path; returns once the proxy has.
    pub(crate) async fn cut(&mut self, cut: bool) -> anyhow::Result<()> {
        self.peer.tell(if cut { "cut" } else { "heal" }).await?;
        self.peer.read().await.map(drop)
    }

    /// Its counters.
    pub(crate) async fn stats(&mut self) -> anyhow::Result<Value> {
        self.peer.tell("stats").await?;
        self.peer.read().await
    }

    /// Stops it.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.peer.wait().await
    }
}
