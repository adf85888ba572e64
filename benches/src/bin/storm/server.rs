//! The server under the storm: started by the tool on fixed loopback ports and one data dir,
//! so that a restart brings back the same addresses, certificate and data; its process is
//! sampled for CPU and RSS.
//!
//! With `--server-bin` it is a child process (`easel` with flags), killed with SIGKILL for
//! `--cut restart` — a crash: nothing is said to the clients, and whatever was acked must be
//! on disk. Without it, it runs in this process (for tests, where the `easel` binary is not
//! at hand); a restart is then a graceful shutdown (`GoAway`, rooms flushed) and a new start,
//! and its CPU and RSS include the clients'.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use easel_server::config::TlsFiles;
use easel_server::{Server, ServerConfig, StartError};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Child;

/// How to run the server.
pub(crate) struct Plan {
    /// The `easel` binary; `None`: in this process.
    pub(crate) bin: Option<PathBuf>,
    /// Extra flags for the binary.
    pub(crate) extra: Vec<String>,
    pub(crate) dir: PathBuf,
    pub(crate) secret: String,
    /// CPUs to pin the binary to (`taskset -c`).
    pub(crate) cpus: Option<String>,
}

/// A running server.
pub(crate) struct Running {
    plan: Plan,
    ports: (u16, u16, u16),
    tls: TlsFiles,
    cert_hash: String,
    inner: Inner,
}

enum Inner {
    Child(Child),
    InProcess(Server),
    Stopped,
}

impl Running {
    /// Starts the server on free loopback ports with a certificate kept in the data dir.
    pub(crate) async fn start(plan: Plan) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&plan.dir).with_context(|| format!("creating {}", plan.dir.display()))?;
        let tls = certificate(&plan.dir)?;
        let ports = free_ports()?;
        let mut running = Self { plan, ports, tls, cert_hash: String::new(), inner: Inner::Stopped };
        running.launch().await?;
        Ok(running)
    }

    pub(crate) fn quic_addr(&self) -> SocketAddr {
        loopback(self.ports.1)
    }

    pub(crate) fn http_addr(&self) -> SocketAddr {
        loopback(self.ports.2)
    }

    pub(crate) fn cert_hash(&self) -> &str {
        &self.cert_hash
    }

    /// Whether it runs as a child process (else in this one).
    pub(crate) fn is_child(&self) -> bool {
        self.plan.bin.is_some()
    }

    /// The server's process id (this process's when in-process).
    pub(crate) fn pid(&self) -> Option<u32> {
        match &self.inner {
            Inner::Child(child) => child.id(),
            Inner::InProcess(_) => Some(std::process::id()),
            Inner::Stopped => None,
        }
    }

    /// Kills the server (SIGKILL for a child, a graceful shutdown in-process) and starts it
    /// again on the same ports and data.
    pub(crate) async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        self.launch().await
    }

    /// Stops the server: a child with SIGKILL, in-process gracefully.
    pub(crate) async fn stop(&mut self) {
        match std::mem::replace(&mut self.inner, Inner::Stopped) {
            Inner::Child(mut child) => {
                let _ = child.kill().await;
            }
            Inner::InProcess(server) => server.shutdown().await,
            Inner::Stopped => {}
        }
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let data = self.plan.dir.join("data");
        let (wt, quic, http) = (loopback(self.ports.0), loopback(self.ports.1), loopback(self.ports.2));
        match &self.plan.bin {
            Some(bin) => {
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.plan.dir.join("server.log"))
                    .context("the server log")?;
                let mut command = match &self.plan.cpus {
                    Some(cpus) => {
                        let mut taskset = tokio::process::Command::new("taskset");
                        taskset.args(["-c", cpus]).arg(bin);
                        taskset
                    }
                    None => tokio::process::Command::new(bin),
                };
                let mut child = command
                    .arg("--data-dir")
                    .arg(&data)
                    .args(["--wt-addr", &wt.to_string(), "--quic-addr", &quic.to_string()])
                    .args(["--http-addr", &http.to_string()])
                    .arg("--cert")
                    .arg(&self.tls.cert)
                    .arg("--key")
                    .arg(&self.tls.key)
                    .args(&self.plan.extra)
                    .env("EASEL_JWT_SECRET", &self.plan.secret)
                    .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
                    .stdout(Stdio::piped())
                    .stderr(log)
                    .kill_on_drop(true)
                    .spawn()
                    .with_context(|| format!("starting {}", bin.display()))?;
                let stdout = child.stdout.take().context("server stdout")?;
                self.cert_hash = ready(stdout).await?;
                self.inner = Inner::Child(child);
            }
            None => {
                let config = ServerConfig {
                    jwt_secret: Some(self.plan.secret.clone()),
                    wt_addr: wt,
                    quic_addr: quic,
                    http_addr: http,
                    tls: Some(self.tls.clone()),
                    ..ServerConfig::ephemeral(&data)
                };
                // The last run lets go of its ports and database as its tasks end (a room
                // still loading holds the database a moment after `shutdown` returns).
                let mut tries = 0;
                let server = loop {
                    match Server::start(config.clone()).await {
                        Err(StartError::Bind { .. } | StartError::Store(_)) if tries < 100 => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        other => break other.context("starting the server")?,
                    }
                };
                self.cert_hash = server.cert_hash().to_owned();
                self.inner = Inner::InProcess(server);
            }
        }
        Ok(())
    }
}

/// Waits for the child's ready line (30 s at most), returns its certificate hash, and keeps
/// draining its stdout.
async fn ready(stdout: tokio::process::ChildStdout) -> anyhow::Result<String> {
    let mut lines = BufReader::new(stdout).lines();
    let hash = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["event"] == "ready"
            {
                return Ok(v["cert_sha256"].as_str().context("cert_sha256")?.to_owned());
            }
        }
        bail!("the server exited before it was ready (see server.log in the data dir)")
    })
    .await
    .context("the server was not ready within 30 s")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(hash)
}

/// A self-signed certificate in `dir` (made once), so that a restarted server is the one the
/// clients pinned.
fn certificate(dir: &Path) -> anyhow::Result<TlsFiles> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !cert.exists() || !key.exists() {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
        std::fs::write(&cert, made.cert.pem())?;
        std::fs::write(&key, made.key_pair.serialize_pem())?;
    }
    Ok(TlsFiles { cert, key })
}

/// Free loopback ports for WebTransport (UDP), QUIC (UDP) and HTTP (TCP).
fn free_ports() -> anyhow::Result<(u16, u16, u16)> {
    let udp = || -> anyhow::Result<u16> { Ok(UdpSocket::bind(loopback(0))?.local_addr()?.port()) };
    let (wt, quic) = (udp()?, udp()?);
    let http = TcpListener::bind(loopback(0))?.local_addr()?.port();
    Ok((wt, quic, http))
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
