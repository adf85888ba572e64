//! Proof that browsers can connect: headless Chromium (Debian's `chromium`, installed by
//! `scripts/test.sh`) opens a WebTransport session with `serverCertificateHashes` from
//! `/cert-hash`, sends a Hello and reports the server's answer.

use std::time::Duration;

use axum::extract::State;
use axum::response::Html;
use easel_proto::message::Hello;
use easel_proto::{FrameDecoder, Message, PROTOCOL_VERSION, limits};
use tokio::sync::mpsc;

use crate::harness::{TestServer, http_get, token};

const CHROMIUM: &str = "/usr/bin/chromium";

const PAGE: &str = r#"<!doctype html><meta charset="utf-8"><title>easel wt probe</title><script>
const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s) => Uint8Array.from(s.match(/../g), (h) => parseInt(h, 16));
const report = (o) => fetch("/result", { method: "POST", body: JSON.stringify(o) });
(async () => {
  try {
    const hash = (await (await fetch("CERT_HASH_URL")).text()).trim();
    const wt = new WebTransport("WT_URL", {
      serverCertificateHashes: [{ algorithm: "sha-256", value: unhex(hash) }],
    });
    await wt.ready;
    const stream = await wt.createBidirectionalStream();
    const writer = stream.writable.getWriter();
    await writer.write(unhex("HELLO_HEX"));
    const reader = stream.readable.getReader();
    let buf = new Uint8Array(0);
    // One whole frame: a QUIC varint length, then that many bytes.
    for (;;) {
      if (buf.length > 0) {
        const n = 1 << (buf[0] >> 6);
        if (buf.length >= n) {
          let len = buf[0] & 0x3f;
          for (let i = 1; i < n; i++) len = len * 256 + buf[i];
          if (buf.length >= n + len) break;
        }
      }
      const { value, done } = await reader.read();
      if (done) throw new Error("stream ended after " + buf.length + " bytes");
      const next = new Uint8Array(buf.length + value.length);
      next.set(buf); next.set(value, buf.length); buf = next;
    }
    await report({ ok: true, hex: hex(buf) });
    wt.close();
  } catch (e) {
    await report({ ok: false, error: String(e) });
  }
})();
</script>"#;

#[derive(Clone)]
struct Probe {
    page: String,
    results: mpsc::Sender<String>,
}

#[tokio::test]
async fn headless_chromium_gets_a_welcome_over_webtransport() {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (scripts/test.sh does)"
    );
    let server = TestServer::start().await;
    let (status, _) = http_get(server.server.http_addr(), "/cert-hash").await;
    assert_eq!(status, 200);
    let hello = Message::from(Hello {
        versions: vec![PROTOCOL_VERSION],
        client_id: "chromium".into(),
        client: "browser-probe".into(),
        token: token("s/b/x", "browser", "student", 600),
        resume: None,
    })
    .encode()
    .expect("encode hello");
    let page = PAGE
        .replace("CERT_HASH_URL", &format!("http://{}/cert-hash", server.server.http_addr()))
        .replace("WT_URL", &format!("https://127.0.0.1:{}/", server.server.wt_addr().port()))
        .replace("HELLO_HEX", &hex::encode(&hello));

    let (results, mut received) = mpsc::channel(1);
    let app = axum::Router::new()
        .route("/", axum::routing::get(|State(p): State<Probe>| async move { Html(p.page) }))
        .route(
            "/result",
            axum::routing::post(|State(p): State<Probe>, body: String| async move {
                let _ = p.results.send(body).await;
            }),
        )
        .with_state(Probe { page, results });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let page_addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let _browser = chromium(&format!("http://{page_addr}/"));

    // A browser cold start is slow on a busy 2-core machine: a generous, bounded wait.
    let body = tokio::time::timeout(Duration::from_secs(60), received.recv())
        .await
        .expect("chromium reported within 60 s")
        .expect("result");
    let result: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(result["ok"], true, "browser error: {}", result["error"]);
    let bytes = hex::decode(result["hex"].as_str().expect("hex")).expect("hex");
    let mut decoder = FrameDecoder::new(limits::MAX_FRAME_LEN);
    decoder.push(&bytes);
    match decoder.decode().expect("valid frame") {
        Some(Message::Welcome(w)) => assert_eq!((w.version, w.user.as_str()), (PROTOCOL_VERSION, "browser")),
        other => panic!("expected Welcome, got {other:?}"),
    }
    server.server.shutdown().await;
}

/// Opens `url` in a fresh headless Chromium (Debian's, with its own profile); the browser lives
/// as long as what is returned.
pub fn chromium(url: &str) -> (tokio::process::Child, tempfile::TempDir) {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (scripts/test.sh does)"
    );
    let profile = tempfile::tempdir().expect("profile dir");
    let child = tokio::process::Command::new(CHROMIUM)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromium");
    (child, profile)
}
