//! The real Easel server and SDK through the proxies: a lossy path slows them, nothing more.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use easel_client::{Client, Event};
use easel_netsim::Scenario;
use easel_netsim::proxy::{Tcp, Udp};
use easel_server::auth::{Claims, Issuer};
use easel_server::{Server, ServerConfig};

use crate::within;

const SECRET: &str = "netsim-test-secret-0123456789abcdef";
const ROOM: &str = "school/netsim/monday";

/// A server on ephemeral loopback ports with the test secret, its data in `dir`.
async fn server(dir: &std::path::Path) -> Server {
    let config = ServerConfig { jwt_secret: Some(SECRET.into()), ..ServerConfig::ephemeral(dir) };
    Server::start(config).await.expect("server starts")
}

fn token(user: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let claims = Claims::new(user, ROOM, "student", now + 3600);
    Issuer::hs256(SECRET.as_bytes()).mint(&claims).expect("mint")
}

/// Connects to `url`, joins the room, makes an edit and waits for the server's ack.
async fn edit_and_wait_for_ack(server: &Server, url: &str) {
    let client = within(
        "connect",
        Client::builder(token("ada"))
            .cert_hash(server.cert_hash())
            .expect("hash")
            .backoff(Duration::from_millis(50), Duration::from_millis(500))
            .connect(url),
    )
    .await
    .expect("connects through the proxy");
    let room = within("join", client.join(ROOM)).await.expect("joins");
    room.edit(|doc| doc.get_list("shapes").push("x")).expect("local edit");
    within("ack", async {
        loop {
            match client.next_event().await.expect("client open") {
                Event::Acked { .. } => break,
                Event::Error { code, message, .. } => panic!("error: {code} {message}"),
                _ => {}
            }
        }
    })
    .await;
    client.close().await;
}

#[tokio::test]
async fn sdk_over_quic_through_the_lossy_udp_proxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path()).await;
    let scenario = Scenario::builtin("lossy-2pct").expect("built in");
    let proxy = Udp::start("127.0.0.1:0".parse().expect("addr"), server.quic_addr(), &scenario, 5)
        .await
        .expect("proxy starts");
    let url = format!("easel+quic://127.0.0.1:{}", proxy.local_addr().port());
    edit_and_wait_for_ack(&server, &url).await;
    let stats = proxy.stats();
    eprintln!("quic through lossy-2pct: up {:?}\ndown {:?}", stats.up, stats.down);
    assert!(stats.up.delivered > 0 && stats.down.delivered > 0, "the session crossed the proxy");
    proxy.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn sdk_over_websocket_through_the_lossy_tcp_proxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path()).await;
    let scenario = Scenario::builtin("lossy-2pct").expect("built in");
    let proxy = Tcp::start("127.0.0.1:0".parse().expect("addr"), server.http_addr(), &scenario, 5)
        .await
        .expect("proxy starts");
    let url = format!("ws://127.0.0.1:{}/ws", proxy.local_addr().port());
    edit_and_wait_for_ack(&server, &url).await;
    let stats = proxy.stats();
    assert!(stats.connections >= 1 && stats.down.bytes_delivered > 0, "the session crossed the proxy");
    proxy.shutdown().await;
    server.shutdown().await;
}
