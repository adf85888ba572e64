//! Shared test plumbing: an in-process server on ephemeral ports and tokens for it.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use easel_client::Transport;
use easel_server::auth::{Claims, Issuer};
use easel_server::{Server, ServerConfig};

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
pub const TRANSPORTS: [Transport; 3] = [Transport::Quic, Transport::WebTransport, Transport::WebSocket];

/// Every wait in these tests is bounded: a hang is a failure with a message, not a stuck run.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(15), fut).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A server configuration for tests: ephemeral loopback ports, the test secret, data in `dir`.
pub fn server_config(dir: &Path) -> ServerConfig {
    server_config_on(dir, (0, 0, 0))
}

/// The same on given loopback ports (WebTransport, QUIC, HTTP; 0: any).
pub fn server_config_on(dir: &Path, (wt, quic, http): (u16, u16, u16)) -> ServerConfig {
    let on = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    ServerConfig {
        jwt_secret: Some(SECRET.into()),
        wt_addr: on(wt),
        quic_addr: on(quic),
        http_addr: on(http),
        ..ServerConfig::ephemeral(dir)
    }
}

pub struct TestServer {
    pub server: Server,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server whose test configuration `change` adjusts first.
    pub async fn start_with(change: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = server_config(dir.path());
        change(&mut config);
        let server = Server::start(config).await.expect("server starts");
        Self { server, dir }
    }

    /// Stops this server and starts a new one on the same data dir.
    pub async fn restart(self) -> Self {
        let Self { server, dir } = self;
        server.shutdown().await;
        let server = Server::start(server_config(dir.path())).await.expect("server restarts");
        Self { server, dir }
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

/// An HS256 token with the test secret, valid for `ttl_secs` (negative: already expired).
pub fn token(room: &str, user: &str, role: &str, ttl_secs: i64) -> String {
    let exp = now_secs().saturating_add_signed(ttl_secs);
    let claims =
        Claims { sub: user.into(), room: room.into(), role: role.into(), exp, iat: None, name: None };
    Issuer::hs256(SECRET.as_bytes()).mint(&claims).expect("mint")
}
