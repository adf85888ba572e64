//! A private Janus for one test: `scripts/janus.sh start` on a free port, stopped on drop.

use std::path::PathBuf;
use std::process::Command;

pub const ADMIN_KEY: &str = "bridge-test-admin-key";

pub struct JanusProcess {
    dir: tempfile::TempDir,
    pub port: u16,
}

/// A loopback port nothing listens on (for now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port()
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/janus.sh")
}

impl JanusProcess {
    /// Starts Janus; the script returns once its WebSocket port accepts (bounded inside).
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts Janus on `port` (one a server may already be pointed at, unanswered so far).
    pub fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let process = Self { dir, port };
        process.run_start();
        process
    }

    fn run_start(&self) {
        let status = Command::new(script())
            .args(["start", self.dir.path().to_str().expect("utf-8"), &self.port.to_string(), ADMIN_KEY])
            .status()
            .expect("run scripts/janus.sh");
        assert!(status.success(), "scripts/janus.sh start failed (root and the janus package are needed)");
    }

    /// Stops and starts it again on the same port (a Janus restart).
    pub fn restart(&self) {
        self.stop();
        self.run_start();
    }

    fn stop(&self) {
        let _ = Command::new(script()).args(["stop", self.dir.path().to_str().expect("utf-8")]).status();
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }
}

impl Drop for JanusProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
