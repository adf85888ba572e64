//! The `easel` binary in its own process (the harness is shared with benches, which cannot
//! name this crate's binary).

use std::net::SocketAddr;
use std::path::Path;

use easel_transport::client::{Options, Transport};

use crate::harness::{SECRET, within};

/// The `easel` binary in its own process on ephemeral loopback ports, data in `dir`: for what
/// an in-process server cannot show (a `kill -9`, a process's own metrics).
pub struct Spawned {
    pub child: tokio::process::Child,
    /// The server's `ready` line.
    pub ready: serde_json::Value,
}

impl Spawned {
    pub async fn start(dir: &Path) -> Self {
        Self::start_logging(dir, "warn", &[]).await
    }

    /// The same with logs at `level`, `extra` flags, and stderr piped when `level` is not
    /// `warn` (the caller then reads it: a full pipe would stall the server).
    pub async fn start_logging(dir: &Path, level: &str, extra: &[&str]) -> Self {
        Self::spawn(tokio::process::Command::new(env!("CARGO_BIN_EXE_easel")), dir, level, extra).await
    }

    /// As [`Spawned::start`], on the addresses of `before`'s ready line: the same server again
    /// after `before` was killed.
    pub async fn start_again(dir: &Path, before: &Self) -> Self {
        Self::start_again_with(dir, before, &[]).await
    }

    /// As [`Spawned::start_again`], with `extra` flags.
    pub async fn start_again_with(dir: &Path, before: &Self, extra: &[&str]) -> Self {
        let ports = ["wt", "quic", "http"].map(|key| before.addr(key).to_string());
        let command = tokio::process::Command::new(env!("CARGO_BIN_EXE_easel"));
        Self::spawn_on(command, dir, "warn", extra, [&ports[0], &ports[1], &ports[2]]).await
    }

    /// As [`Spawned::start`], but no file the server writes may grow past `kib` KiB (its disk
    /// is full there: writes fail with `EFBIG`, the signal for it ignored).
    pub async fn start_with_disk_of(dir: &Path, kib: u64) -> Self {
        let mut sh = tokio::process::Command::new("sh");
        // `ulimit -f` counts 1 KiB blocks in dash and bash. Only the soft limit, so a test can
        // give the disk room again (`prlimit --fsize=unlimited:`) without privileges.
        sh.args([
            "-c",
            &format!("trap '' XFSZ; ulimit -S -f {kib}; exec \"$0\" \"$@\""),
            env!("CARGO_BIN_EXE_easel"),
        ]);
        Self::spawn(sh, dir, "warn", &[]).await
    }

    async fn spawn(command: tokio::process::Command, dir: &Path, level: &str, extra: &[&str]) -> Self {
        let any = "127.0.0.1:0";
        Self::spawn_on(command, dir, level, extra, [any, any, any]).await
    }

    async fn spawn_on(
        mut command: tokio::process::Command,
        dir: &Path,
        level: &str,
        extra: &[&str],
        [wt, quic, http]: [&str; 3],
    ) -> Self {
        use tokio::io::{AsyncBufReadExt as _, BufReader};
        let stderr =
            if level == "warn" { std::process::Stdio::inherit() } else { std::process::Stdio::piped() };
        let mut child = command
            .args(["--data-dir", dir.to_str().expect("utf-8")])
            .args(["--wt-addr", wt, "--quic-addr", quic, "--http-addr", http])
            .args(["--ops-per-sec", "100000", "--ops-burst", "100000"])
            .args(extra)
            .env("EASEL_JWT_SECRET", SECRET)
            .env("RUST_LOG", level)
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn easel");
        let stdout = child.stdout.take().expect("stdout");
        let ready = within("ready line", async {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["event"] == "ready"
                {
                    return v;
                }
            }
            panic!("easel exited before it was ready");
        })
        .await;
        Self { child, ready }
    }

    fn addr(&self, key: &str) -> SocketAddr {
        self.ready[key].as_str().expect("address in the ready line").parse().expect("addr")
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.addr("http")
    }

    pub fn options(&self, transport: Transport) -> Options {
        let addr = match transport {
            Transport::Quic => self.addr("quic"),
            Transport::WebTransport => self.addr("wt"),
            Transport::WebSocket => self.addr("http"),
        };
        Options::new(addr, transport)
            .with_cert_hash(self.ready["cert_sha256"].as_str().expect("hash"))
            .expect("hash")
    }
}
