//! A private nats-server with JetStream for the cluster tests (the binary `scripts/nats.sh`
//! installs, run on an OS-chosen loopback port). Shared by the SDK's tests, which include it
//! by path beside the server tests' harness.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::harness::within;

/// A private nats-server with JetStream, data in its own temp dir; killed when dropped.
pub struct Nats {
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
    pub url: String,
}

impl Nats {
    pub async fn start() -> Self {
        Self::start_with(&["-js"]).await
    }

    /// With `flags` instead of `-js`.
    pub async fn start_with(flags: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (child, url) = spawn(dir.path(), "-1", flags).await;
        Self { child: Some(child), dir, url }
    }

    /// `kill -9`, and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data dir.
    pub async fn restart(&mut self) {
        self.kill();
        let port = self.url.rsplit(':').next().expect("port").to_owned();
        let (child, url) = spawn(self.dir.path(), &port, &["-js"]).await;
        assert_eq!(url, self.url);
        self.child = Some(child);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The pinned nats-server, installed by the project's script if missing.
fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/nats.sh");
        let out = std::process::Command::new(script).arg("bin").output().expect("run scripts/nats.sh bin");
        assert!(out.status.success(), "scripts/nats.sh bin: {}", String::from_utf8_lossy(&out.stderr));
        PathBuf::from(String::from_utf8(out.stdout).expect("utf-8").trim())
    })
}

/// Runs nats-server on 127.0.0.1 (`port` -1: any) with `flags` (`-js`: JetStream in `dir`);
/// returns once its client port accepts (on a single server that is after JetStream is up).
async fn spawn(dir: &Path, port: &str, flags: &[&str]) -> (std::process::Child, String) {
    let child = std::process::Command::new(binary())
        .args(flags)
        .arg("-sd")
        .arg(dir)
        .args(["-a", "127.0.0.1", "-p", port, "--ports_file_dir"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn nats-server");
    let ports = dir.join(format!("nats-server_{}.ports", child.id()));
    let url = within("nats-server's ports file", async {
        loop {
            if let Ok(text) = std::fs::read_to_string(&ports)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(url) = v["nats"][0].as_str()
            {
                return url.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let addr: SocketAddr = url.trim_start_matches("nats://").parse().expect("nats address");
    within("nats-server accepting", async {
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    (child, url)
}
