//! Cluster mode's membership against a real nats-server with JetStream (the binary
//! `scripts/nats.sh` installs, run here on an OS-chosen loopback port), real servers in process
//! and, where one must die, the `easel` binary.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use easel_server::config::ClusterConfig;
use easel_server::{Server, StartError};

pub use crate::nats::Nats;

use crate::harness::{TestServer, http_get, within};
use crate::spawned::Spawned;

/// Heartbeat of the nodes in these tests: a silent node is counted out after three.
const HEARTBEAT: Duration = Duration::from_millis(100);

fn cluster(nats: &Nats, id: &str) -> ClusterConfig {
    ClusterConfig { node_id: Some(id.into()), heartbeat: HEARTBEAT, ..ClusterConfig::new(&nats.url) }
}

pub async fn node(nats: &Nats, id: &str) -> TestServer {
    node_beating(nats, id, HEARTBEAT).await
}

/// A node with `change` made to its configuration.
pub async fn node_with(
    nats: &Nats,
    id: &str,
    change: impl FnOnce(&mut easel_server::ServerConfig),
) -> TestServer {
    let config = cluster(nats, id);
    TestServer::start_with(move |c| {
        c.cluster = Some(config);
        change(c);
    })
    .await
}

/// A node with rooms unloaded after `idle_unload` empty.
pub async fn node_unloading(nats: &Nats, id: &str, idle_unload: Duration) -> TestServer {
    node_with(nats, id, move |c| c.idle_unload = idle_unload).await
}

async fn node_beating(nats: &Nats, id: &str, heartbeat: Duration) -> TestServer {
    let config = ClusterConfig { heartbeat, ..cluster(nats, id) };
    TestServer::start_with(move |c| c.cluster = Some(config)).await
}

/// `/healthz` in cluster mode: HTTP 200 when `ok`, 503 when `degraded`.
pub async fn health(http: SocketAddr) -> serde_json::Value {
    let (status, body) = http_get(http, "/healthz").await;
    let h: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/healthz is not JSON ({e}): {body}"));
    let expected = if h["status"] == "ok" { 200 } else { 503 };
    assert_eq!(status, expected, "{h}");
    h
}

fn ids(health: &serde_json::Value) -> Vec<String> {
    let nodes = health["cluster"]["nodes"].as_array().expect("nodes");
    nodes.iter().map(|n| n["id"].as_str().expect("id").to_owned()).collect()
}

/// Waits (bounded) until the node's `/healthz` satisfies `ok`; returns that answer.
pub async fn until(
    http: SocketAddr,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    within(what, async {
        loop {
            let h = health(http).await;
            if ok(&h) {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

pub async fn metrics(http: SocketAddr) -> HashMap<String, f64> {
    let (status, text) = http_get(http, "/metrics").await;
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| l.starts_with("easel_cluster"))
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_owned(), v.parse().expect("number"))))
        .collect()
}

#[tokio::test]
async fn two_nodes_see_each_other_and_one_that_stops_leaves_at_once() {
    let nats = Nats::start().await;
    // Heartbeats far apart: b's ttl (30 s) outlasts every wait here, so a sees b go only if
    // b withdraws (a node announces itself at once when it starts).
    let slow = Duration::from_secs(10);
    let a = node_beating(&nats, "a", slow).await;
    let b = node_beating(&nats, "b", slow).await;
    let seen = until(a.server.http_addr(), "a sees b", |h| ids(h) == ["a", "b"]).await;
    assert_eq!(seen["status"], "ok");
    assert_eq!(seen["cluster"]["node_id"], "a");
    assert_eq!(seen["cluster"]["nats_connected"], true);
    let entry_b = &seen["cluster"]["nodes"][1];
    assert_eq!(entry_b["quic"], b.server.quic_addr().to_string(), "b's announced address");
    assert_eq!(entry_b["self"], false);
    until(b.server.http_addr(), "b sees a", |h| ids(h) == ["a", "b"]).await;
    let m = metrics(a.server.http_addr()).await;
    assert_eq!(m["easel_cluster_nats_connected"], 1.0);

    // A graceful stop withdraws b's entry: a sees it go without waiting out the ttl (the
    // ttl's path is the next test's).
    b.server.shutdown().await;
    until(a.server.http_addr(), "a sees b leave", |h| ids(h) == ["a"]).await;
    assert_eq!(a.server.cluster().expect("cluster mode").nodes().len(), 1);
}

#[tokio::test]
async fn a_killed_node_is_counted_out_and_rejoins_on_its_own() {
    let nats = Nats::start().await;
    let a = node(&nats, "a").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = ["--cluster", &nats.url, "--node-id", "b", "--cluster-heartbeat-ms", "100"];
    let mut b = Spawned::start_logging(dir.path(), "warn", &flags).await;
    until(a.server.http_addr(), "a sees b", |h| ids(h) == ["a", "b"]).await;

    b.child.kill().await.expect("kill -9 b");
    until(a.server.http_addr(), "b expires from a's view", |h| ids(h) == ["a"]).await;

    let b = Spawned::start_logging(dir.path(), "warn", &flags).await;
    until(a.server.http_addr(), "b is back", |h| ids(h) == ["a", "b"]).await;
    let h = until(b.http_addr(), "b sees a", |h| ids(h) == ["a", "b"]).await;
    assert_eq!(h["status"], "ok");
}

#[tokio::test]
async fn losing_nats_is_reported_and_the_node_recovers_when_it_returns() {
    let mut nats = Nats::start().await;
    let a = node(&nats, "a").await;
    let http = a.server.http_addr();
    until(http, "a announced", |h| h["status"] == "ok").await;

    nats.kill();
    let h = until(http, "a reports NATS lost", |h| h["cluster"]["nats_connected"] == false).await;
    assert_eq!(h["status"], "degraded");
    let m = metrics(http).await;
    assert_eq!(m["easel_cluster_nats_connected"], 0.0);
    assert!(m["easel_cluster_nats_errors_total{kind=\"disconnected\"}"] >= 1.0, "{m:?}");

    // A restarted NATS has lost the in-memory bucket: a makes it again and watches it anew,
    // so a node that starts now is seen.
    nats.restart().await;
    until(http, "a recovers", |h| h["status"] == "ok" && h["cluster"]["nats_connected"] == true).await;
    assert_eq!(metrics(http).await["easel_cluster_nats_connected"], 1.0);
    let _b = node(&nats, "b").await;
    until(http, "a sees b after the restart", |h| ids(h) == ["a", "b"]).await;
}

#[tokio::test]
async fn a_malformed_entry_is_ignored_and_counted() {
    let nats = Nats::start().await;
    let a = node(&nats, "a").await;
    let http = a.server.http_addr();
    until(http, "a announced", |h| h["status"] == "ok").await;

    let client = async_nats::connect(&nats.url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let bucket = js.get_key_value("easel_nodes").await.expect("a made the bucket");
    bucket.put("junk", "not json".into()).await.expect("put");
    let liar = serde_json::json!({"id": "someone-else", "quic": "", "wt": "", "http": "",
        "started_at_ms": 1, "version": "x"});
    bucket.put("liar", liar.to_string().into()).await.expect("put");
    // A well-formed entry after them: once a lists it, a has read the two before.
    let probe = serde_json::json!({"id": "probe", "quic": "127.0.0.1:1", "wt": "", "http": "",
        "started_at_ms": 1, "version": "x"});
    bucket.put("probe", probe.to_string().into()).await.expect("put");
    until(http, "a sees the probe", |h| ids(h) == ["a", "probe"]).await;
    let m = metrics(http).await;
    assert_eq!(m["easel_cluster_nats_errors_total{kind=\"malformed\"}"], 2.0, "{m:?}");
    assert_eq!(m["easel_cluster_nodes"], 2.0);

    bucket.delete("probe").await.expect("delete");
    until(http, "the probe withdrew", |h| ids(h) == ["a"]).await;
}

#[tokio::test]
async fn an_unreachable_nats_stops_the_start_with_a_clear_error() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("nats://127.0.0.1:{port}");
    let config = easel_server::ServerConfig {
        cluster: Some(ClusterConfig::new(&url)),
        ..crate::harness::server_config(dir.path())
    };
    let e = Server::start(config).await.expect_err("no NATS, no start");
    assert!(matches!(e, StartError::Cluster(_)), "{e:?}");
    assert!(e.to_string().starts_with(&format!("cluster: NATS at {url}: cannot connect")), "{e}");
}

#[tokio::test]
async fn a_nats_without_jetstream_stops_the_start_with_a_clear_error() {
    let nats = Nats::start_with(&[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = easel_server::ServerConfig {
        cluster: Some(cluster(&nats, "a")),
        ..crate::harness::server_config(dir.path())
    };
    let e = Server::start(config).await.expect_err("no JetStream, no start");
    let text = e.to_string();
    let expected = format!("cluster: NATS at {}: no usable JetStream key-value bucket easel_nodes", nats.url);
    assert!(text.starts_with(&expected), "{text}");
}
