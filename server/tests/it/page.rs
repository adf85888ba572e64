//! The browser SDK for real: headless Chromium (Debian's `chromium`) loads a test page that
//! imports the server's embedded `easel.js` and `loro.js` (the same bytes `/` serves) and runs
//! one scenario of `page.html`, posting what it saw to the test. Also the demo's routes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use easel_proto::Message;
use easel_server::auth::{Claims, Issuer};
use easel_server::demo::ASSETS;
use easel_transport::client::Transport;
use serde_json::json;
use tokio::sync::mpsc;

use crate::harness::{Board, Relay, TestServer, expect_message, http_get, send_acked, token, within};

const PAGE: &str = include_str!("page.html");
const ROOM: &str = "web/sdk/board";

/// A page server (the SDK's assets and the test page) and the results its pages post.
pub struct Pages {
    pub addr: SocketAddr,
    results: mpsc::Receiver<serde_json::Value>,
    browsers: Vec<crate::browser::Browser>,
}

impl Pages {
    pub async fn start() -> Self {
        let (tx, results) = mpsc::channel(8);
        let mut app = axum::Router::new()
            .route("/test.html", axum::routing::get(|| async { axum::response::Html(PAGE) }))
            // `getToken()` of the refresh scenario: a student token for ROOM lasting `secs`.
            .route(
                "/token",
                axum::routing::get(|Query(q): Query<HashMap<String, String>>| async move {
                    let secs = q.get("secs").and_then(|s| s.parse().ok()).unwrap_or(600);
                    token(ROOM, q.get("user").map_or("page", String::as_str), "student", secs)
                }),
            )
            .route(
                "/result",
                axum::routing::post(
                    |State(tx): State<mpsc::Sender<serde_json::Value>>, body: String| async move {
                        let value = serde_json::from_str(&body).unwrap_or_else(
                            |e| serde_json::json!({"ok": false, "error": format!("{e}: {body}")}),
                        );
                        let _ = tx.send(value).await;
                    },
                ),
            )
            .with_state(tx);
        for asset in ASSETS.into_iter().filter(|a| a.path != "/") {
            app = app.route(
                asset.path,
                axum::routing::get(move || async move {
                    ([(header::CONTENT_TYPE, asset.content_type)], asset.bytes).into_response()
                }),
            );
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, results, browsers: Vec::new() }
    }

    /// Opens the test page with `query` in a fresh headless Chromium.
    pub async fn open(&mut self, query: &str) {
        self.open_url(&format!("http://{}/test.html?{query}", self.addr)).await;
    }

    /// Opens `url` in a fresh headless Chromium.
    pub async fn open_url(&mut self, url: &str) {
        self.browsers.push(crate::browser::Browser::open(url).await);
    }

    /// The next page's result; a page that failed, or any page that logged an error to its
    /// console (the SDK reports through typed events, never the console), fails the test.
    pub async fn result(&mut self) -> serde_json::Value {
        // A browser cold start is slow on a busy 2-core machine: a generous, bounded wait.
        let result = tokio::time::timeout(Duration::from_secs(90), self.results.recv())
            .await
            .expect("a page reported within 90 s")
            .expect("result");
        assert_eq!(result["ok"], true, "page {}: {}", result["label"], result["error"]);
        for browser in &self.browsers {
            let errors = browser.console_errors().await;
            assert!(errors.is_empty(), "a page logged errors to its console: {errors:?}");
        }
        result
    }
}

/// The query of a page as `user` (`role`) in the test room of `server`.
fn query(server: &TestServer, scenario: &str, user: &str, role: &str) -> String {
    query_with_token(server, scenario, user, &token(ROOM, user, role, 600))
}

/// The query of a page as `user` with `token` in the test room of `server`.
fn query_with_token(server: &TestServer, scenario: &str, user: &str, token: &str) -> String {
    let s = &server.server;
    let wt = format!("https://127.0.0.1:{}/", s.wt_addr().port());
    let origin = format!("http://{}", s.http_addr());
    query_of(&[
        ("scenario", scenario),
        ("label", user),
        ("server", &origin),
        ("wt", &wt),
        ("hash", s.cert_hash()),
        ("token", token),
        ("room", ROOM),
    ])
}

/// A query string of `pairs`, percent-encoded.
pub fn query_of(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect::<Vec<_>>().join("&")
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn labels(result: &serde_json::Value) -> Vec<&str> {
    result["labels"].as_array().expect("labels").iter().filter_map(|l| l.as_str()).collect()
}

/// A GET over HTTP/1.0 returning the head (lowercase) and the body as bytes (wasm is binary).
async fn get_bytes(addr: SocketAddr, path: &str, accept_encoding: &str) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect http");
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept-Encoding: {accept_encoding}\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    within("http response", tcp.read_to_end(&mut response)).await.expect("read");
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").expect("end of head");
    (String::from_utf8_lossy(&response[..end]).to_lowercase(), response[end + 4..].to_vec())
}

#[tokio::test]
async fn two_pages_share_strokes_and_cursors_over_webtransport() {
    // One heartbeat per page (at the join) in the test's time: the datagram count below is
    // then the cursors plus two.
    let server = TestServer::start_with(|c| {
        c.heartbeat = Duration::from_secs(60);
        c.presence_ttl = Duration::from_secs(120);
    })
    .await;
    let mut pages = Pages::start().await;
    pages.open(&query(&server, "pair", "ada", "teacher")).await;
    pages.open(&query(&server, "pair", "bob", "student")).await;
    let (a, b) = (pages.result().await, pages.result().await);
    for (page, other) in [(&a, &b), (&b, &a)] {
        assert_eq!(page["transport"], "webtransport", "{page}");
        assert_eq!(labels(page), ["ada", "bob"], "{page}");
        assert_eq!(page["cursorFrom"], other["label"], "{page}");
    }
    let (status, metrics) = http_get(server.server.http_addr(), "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("easel_sessions{transport=\"webtransport\"} 2"), "{metrics}");
    // Every move was sent as a datagram (none throttled, see page.html) and reached the server
    // (the two heartbeats count too, so at least as many); loss on loopback would be a finding.
    let moves = [&a, &b].map(|p| p["moves"].as_u64().expect("moves")).iter().sum::<u64>();
    let counted = async {
        while metric(&server, "easel_datagrams_in_total").await < moves {
            tokio::task::yield_now().await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(15), counted).await.is_err() {
        let n = metric(&server, "easel_datagrams_in_total").await;
        panic!("the server counted {n} datagrams for {moves} cursor moves");
    }
    server.server.shutdown().await;
}

/// A counter of the server's `/metrics` (0 before its first increment).
pub async fn metric(server: &TestServer, name: &str) -> u64 {
    let (_, metrics) = http_get(server.server.http_addr(), "/metrics").await;
    let prefix = format!("{name} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)?.trim().parse::<f64>().ok()).map_or(0, |v| v as u64)
}

#[tokio::test]
async fn a_page_without_webtransport_works_over_websocket() {
    let server = TestServer::start().await;
    let mut pages = Pages::start().await;
    // Nothing listens on this UDP port: the WebTransport attempt fails and /ws takes over.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let dead_port = dead.local_addr().expect("addr").port();
    drop(dead);
    let q = query(&server, "edit", "ada", "student")
        .replace(&format!("%3A{}%2F", server.server.wt_addr().port()), &format!("%3A{dead_port}%2F"));
    assert!(q.contains(&dead_port.to_string()), "{q}");
    pages.open(&q).await;
    assert_eq!(pages.result().await["transport"], "websocket");
    server.server.shutdown().await;
}

#[tokio::test]
async fn a_page_and_a_rust_client_see_each_others_edits() {
    let server = TestServer::start().await;
    let (_conn, mut stream) = server.member(Transport::WebSocket, "rustacean", "student", ROOM).await;
    let mut pages = Pages::start().await;
    pages.open(&query(&server, "rust", "page", "student")).await;
    let mut board = Board::new(7);
    let data = expect_message(&mut stream, "the page's stroke", |m| match m {
        Message::RemoteUpdate(u) => Some(u.data),
        _ => None,
    })
    .await;
    board.import(&data);
    let shapes = board.doc.get_list("shapes");
    assert_eq!(shapes.len(), 1);
    let shape = format!("{:?}", shapes.get_deep_value());
    assert!(shape.contains("\"page\""), "{shape}");
    send_acked(&mut stream, board.put(1, "rust", 7)).await;
    assert_eq!(pages.result().await["rust"], 7);
    server.server.shutdown().await;
}

#[tokio::test]
async fn a_viewers_edit_is_refused_as_a_typed_event() {
    let server = TestServer::start().await;
    let mut pages = Pages::start().await;
    pages.open(&query(&server, "viewer", "val", "viewer")).await;
    let result = pages.result().await;
    assert_eq!(
        (result["event"].as_str(), result["codeName"].as_str()),
        (Some("rejected"), Some("forbidden")),
        "{result}"
    );
    server.server.shutdown().await;
}

#[tokio::test]
async fn an_offline_edit_is_sent_and_acked_after_a_reload() {
    let server = TestServer::start().await;
    let mut pages = Pages::start().await;
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead_addr = dead.local_addr().expect("addr");
    drop(dead);
    pages
        .open(&format!("{}&dead=http%3A%2F%2F{dead_addr}", query(&server, "reload", "ada", "student")))
        .await;
    let result = pages.result().await;
    assert_eq!(result["pending"], serde_json::json!(["1"]), "{result}");
    assert_eq!(result["acked"], serde_json::json!(["1"]), "{result}");
    assert_eq!(labels(&result), ["ada"], "{result}");
    server.server.shutdown().await;
}

#[tokio::test]
async fn a_refused_token_is_a_typed_event() {
    let server = TestServer::start().await;
    let mut pages = Pages::start().await;
    let claims = Claims::new("mallory", ROOM, "student", crate::harness::now_secs() + 600);
    let forged = Issuer::hs256(b"not-the-server-secret-0123456789abcdef").mint(&claims).expect("mint");
    pages.open(&query_with_token(&server, "refused", "mallory", &forged)).await;
    pages.open(&query_with_token(&server, "refused", "late", &token(ROOM, "late", "student", -5))).await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let r = pages.result().await;
        assert_eq!((&r["state"], &r["connected"]), (&json!("disconnected"), &json!(false)), "{r}");
        seen.push((r["label"].as_str().map(str::to_owned), r["codeName"].as_str().map(str::to_owned)));
    }
    seen.sort();
    let expected = [("late", "tokenExpired"), ("mallory", "invalidToken")]
        .map(|(l, c)| (Some(l.to_owned()), Some(c.to_owned())));
    assert_eq!(seen, expected);
    server.server.shutdown().await;
}

#[tokio::test]
async fn a_dropped_connection_reconnects_and_edits_made_meanwhile_arrive() {
    let server = TestServer::start().await;
    let relay = Relay::start(server.server.http_addr()).await;
    let mut pages = Pages::start().await;
    pages.open(&query(&server, "watch", "bob", "student")).await;
    // WebSocket through the relay: cutting it is the network going away.
    let through_relay = query(&server, "drop", "ada", "student").replace(
        &encode(&format!("http://{}", server.server.http_addr())),
        &encode(&format!("http://{}", relay.addr)),
    );
    pages.open(&format!("{through_relay}&transports=websocket")).await;
    let ask = pages.result().await;
    assert_eq!((ask["label"].as_str(), ask["phase"].as_str()), (Some("ada"), Some("cut me")), "{ask}");
    relay.cut(false);
    let (mut ada, mut bob) = (None, None);
    for _ in 0..2 {
        let r = pages.result().await;
        if r["label"] == "ada" { ada = Some(r) } else { bob = Some(r) }
    }
    let (ada, bob) = (ada.expect("ada"), bob.expect("bob"));
    let states: Vec<&str> =
        ada["states"].as_array().expect("states").iter().filter_map(|s| s.as_str()).collect();
    assert_eq!(states, ["disconnected", "connecting", "connected"], "{ada}");
    assert_eq!((&ada["resumed"], &ada["transport"]), (&json!(true), &json!("websocket")), "{ada}");
    assert_eq!(labels(&bob), ["offline"], "{bob}");
    server.server.shutdown().await;
}

#[tokio::test]
async fn the_token_is_refreshed_before_it_expires() {
    let server = TestServer::start().await;
    let mut pages = Pages::start().await;
    pages.open(&format!("{}&short=5", query(&server, "refresh", "ada", "student"))).await;
    let r = pages.result().await;
    // One token to connect, two fetched by the refresh timer (the second timed by the first
    // refresh's answer); no reconnect at either expiry.
    assert_eq!((&r["tokens"], &r["states"]), (&json!(3), &json!(["connected"])), "{r}");
    server.server.shutdown().await;
}

#[tokio::test]
async fn the_demo_is_served_and_dev_tokens_exist_only_in_dev_mode() {
    let server = TestServer::start().await;
    let addr = server.server.http_addr();
    for asset in ASSETS {
        let (head, body) = get_bytes(addr, asset.path, "identity").await;
        assert!(
            head.starts_with("http/1.0 200 ") || head.starts_with("http/1.1 200 "),
            "{}: {head}",
            asset.path
        );
        assert!(head.contains(&format!("content-type: {}", asset.content_type)), "{}: {head}", asset.path);
        assert!(!head.contains("content-encoding"), "{}: {head}", asset.path);
        assert!(body == asset.bytes, "{}: body differs", asset.path);
        // A browser gets the larger files gzipped, the same bytes once inflated.
        let (head, body) = get_bytes(addr, asset.path, "gzip, deflate, br, zstd").await;
        let mut inflated = Vec::new();
        if asset.bytes.len() > 1024 {
            assert!(head.contains("content-encoding: gzip"), "{}: {head}", asset.path);
            assert!(body.len() < asset.bytes.len(), "{}: gzip made it larger", asset.path);
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body.as_slice()), &mut inflated)
                .expect("valid gzip");
        } else {
            assert!(!head.contains("content-encoding"), "{}: {head}", asset.path);
            inflated = body;
        }
        assert!(inflated == asset.bytes, "{}: body differs once inflated", asset.path);
    }
    let (status, _) = http_get(addr, "/demo-token?room=demo/board&user=ada&role=teacher").await;
    assert_eq!(status, 404, "a configured secret has no demo tokens");
    let (status, info) = http_get(addr, "/connect-info").await;
    assert_eq!(status, 200, "{info}");
    let info: serde_json::Value = serde_json::from_str(&info).expect("json");
    assert_eq!(
        info,
        json!({"webTransportPort": server.server.wt_addr().port(), "certHash": server.server.cert_hash()})
    );
    server.server.shutdown().await;

    let dev = TestServer::start_with(|c| c.jwt_secret = None).await;
    let (status, token) =
        http_get(dev.server.http_addr(), "/demo-token?room=demo/board&user=ada&role=teacher").await;
    assert_eq!(status, 200, "{token}");
    let secret = std::fs::read_to_string(dev.dir.path().join(easel_server::auth::DEV_SECRET_FILE))
        .expect("dev secret");
    let verifier = easel_server::auth::Verifier::new(secret.trim().as_bytes(), None).expect("verifier");
    let claims = verifier.verify(token.trim(), crate::harness::now_secs()).expect("a valid token");
    assert!(claims.grants("demo/board"));
    let (status, _) =
        http_get(dev.server.http_addr(), "/demo-token?room=demo/board&user=ada&role=king").await;
    assert_eq!(status, 400);
    dev.server.shutdown().await;
}

#[tokio::test]
async fn the_demo_page_joins_with_a_dev_token() {
    let dev = TestServer::start_with(|c| c.jwt_secret = None).await;
    let mut pages = Pages::start().await;
    let report = encode(&format!("http://{}/result", pages.addr));
    // No `wt=`: the page learns the (ephemeral) WebTransport port from /connect-info.
    let url = format!("http://{}/?user=ada&role=teacher&report={report}", dev.server.http_addr());
    pages.open_url(&url).await;
    let result = pages.result().await;
    assert_eq!(
        (result["transport"].as_str(), result["role"].as_str()),
        (Some("webtransport"), Some("teacher")),
        "{result}"
    );
    dev.server.shutdown().await;
}
