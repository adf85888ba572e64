//! The real Easel server and SDK through the proxies: a lossy path slows them, nothing more
//! (every edit arrives, cursors keep moving).

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

/// Edits ada makes; each commit is one op.
const EDITS: usize = 5;
/// Cursor positions bob must see from ada.
const CURSORS: usize = 3;

async fn client(server: &Server, url: &str, user: &str) -> Client {
    within(
        "connect",
        Client::builder(token(user))
            .cert_hash(server.cert_hash())
            .expect("hash")
            .backoff(Duration::from_millis(50), Duration::from_millis(500))
            .connect(url),
    )
    .await
    .expect("connects through the proxy")
}

/// The next event `want` picks out of `client`'s; an error event fails the test.
async fn wait_for<T>(client: &Client, what: &str, mut want: impl FnMut(Event) -> Option<T>) -> T {
    within(what, async {
        loop {
            match client.next_event().await.expect("client open") {
                Event::Error { code, message, .. } => panic!("{what}: error {code} {message}"),
                event => {
                    if let Some(t) = want(event) {
                        return t;
                    }
                }
            }
        }
    })
    .await
}

/// Two clients through `url`: ada's edits are all acked and all reach bob, in order, and
/// bob sees ada's cursor at positions she sent, newest last.
async fn two_clients_edit_and_point(server: &Server, url: &str) {
    let ada = client(server, url, "ada").await;
    let bob = client(server, url, "bob").await;
    let a = within("ada joins", ada.join(ROOM)).await.expect("joins");
    let b = within("bob joins", bob.join(ROOM)).await.expect("joins");
    let ada_index = wait_for(&bob, "bob's Joined", |e| match e {
        Event::Joined { participants, .. } => participants.iter().find(|p| p.user == "ada").map(|p| p.index),
        _ => None,
    })
    .await;

    let sent: Vec<String> = (0..EDITS).map(|i| format!("shape-{i}")).collect();
    for shape in &sent {
        a.edit(|doc| doc.get_list("shapes").push(shape.as_str())).expect("local edit");
    }
    let mut acked = 0;
    wait_for(&ada, "every edit acked", |e| {
        if let Event::Acked { op_ids, .. } = e {
            acked += op_ids.len();
        }
        (acked >= EDITS).then_some(())
    })
    .await;
    assert_eq!(acked, EDITS, "one ack per edit");
    let shapes = |room: &easel_client::Room| -> Vec<String> {
        let value = room.doc().get_list("shapes").get_value().into_list().expect("a list");
        value.iter().map(|v| v.as_string().expect("a string").to_string()).collect()
    };
    wait_for(&bob, "ada's edits at bob", |_| (shapes(&b).len() >= EDITS).then_some(())).await;
    assert_eq!(shapes(&b), sent, "bob has exactly ada's edits, in order");

    // Cursors are datagrams the lossy path may drop: ada keeps moving, as a hand does, until
    // bob has seen enough of them. Position i is (i, 2i).
    let mut moves = tokio::time::interval(Duration::from_millis(20));
    let mut moved = 0u32;
    let mut seen: Vec<(f64, f64)> = Vec::new();
    within("ada's cursor at bob", async {
        while seen.len() < CURSORS {
            tokio::select! {
                _ = moves.tick() => {
                    moved += 1;
                    a.cursor(f64::from(moved), f64::from(2 * moved));
                }
                event = bob.next_event() => {
                    if let Some(Event::Cursors { cursors, .. }) = event {
                        seen.extend(cursors.iter().filter(|c| c.participant == ada_index).map(|c| (c.x, c.y)));
                    }
                }
            }
        }
    })
    .await;
    for (n, (x, y)) in seen.iter().enumerate() {
        assert!(*x >= 1.0 && *x <= f64::from(moved) && x.fract() == 0.0 && *y == 2.0 * x, "{seen:?}");
        assert!(n == 0 || seen[n - 1].0 < *x, "newest wins, never an older one after: {seen:?}");
    }
    ada.close().await;
    bob.close().await;
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
    two_clients_edit_and_point(&server, &url).await;
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
    two_clients_edit_and_point(&server, &url).await;
    let stats = proxy.stats();
    assert!(stats.connections >= 1 && stats.down.bytes_delivered > 0, "the session crossed the proxy");
    proxy.shutdown().await;
    server.shutdown().await;
}
