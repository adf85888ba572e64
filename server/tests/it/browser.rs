//! Proof that browsers can connect: headless Chromium (Debian's `chromium`, installed by
//! `scripts/test.sh`) opens a WebTransport session with `serverCertificateHashes` from
//! `/cert-hash`, sends a Hello and reports the server's answer. Also [`Browser`]: Chromium
//! driven over WebDriver by Debian's ChromeDriver, which every browser test uses.

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

    let browser = Browser::open(&format!("http://{page_addr}/")).await;

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
    assert_eq!(browser.console_errors().await, Vec::<String>::new(), "the page logged errors");
    server.server.shutdown().await;
}

/// Debian's ChromeDriver (`chromium-driver`), the W3C WebDriver server for its Chromium.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// A browser cold start is slow on a busy 2-core machine: a generous, bounded wait.
const COLD_START: Duration = Duration::from_secs(90);

/// A fresh headless Chromium (Debian's, its own profile) driven over WebDriver by its own
/// ChromeDriver. Dropping it ends both: ChromeDriver runs in a process group of its own, and the
/// whole group is killed (killing ChromeDriver alone leaves its Chromium running).
pub struct Browser {
    client: fantoccini::Client,
    driver: tokio::process::Child,
}

impl Browser {
    /// Starts a browser and opens `url` in it (returns once the page has loaded).
    pub async fn open(url: &str) -> Self {
        use tokio::io::{AsyncBufReadExt as _, BufReader};
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: install Debian's {package} (scripts/test.sh does)"
            );
        }
        let mut driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let mut lines = BufReader::new(driver.stdout.take().expect("stdout")).lines();
        let port = tokio::time::timeout(COLD_START, async {
            while let Some(line) = lines.next_line().await.expect("read chromedriver") {
                if let Some(port) = line.strip_prefix("ChromeDriver was started successfully on port ") {
                    return port.trim_end_matches('.').parse::<u16>().expect("chromedriver's port");
                }
            }
            panic!("chromedriver exited before it listened");
        })
        .await
        .expect("chromedriver listened");
        // Keep reading what it says, so a later line never meets a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                ],
            },
            // The page's console, read back by `console_errors`.
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let serde_json::Value::Object(capabilities) = capabilities else { unreachable!("an object") };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            COLD_START,
            fantoccini::ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&format!("http://127.0.0.1:{port}")),
        )
        .await
        .expect("a WebDriver session within 90 s")
        .expect("a WebDriver session");
        tokio::time::timeout(COLD_START, client.goto(url))
            .await
            .expect("the page loaded within 90 s")
            .expect("open the page");
        Self { client, driver }
    }

    /// What the page logged as errors since the last call: `console.error` and uncaught
    /// exceptions. The browser's own network lines (a WebTransport handshake the SDK falls back
    /// from) are not the page's errors.
    pub async fn console_errors(&self) -> Vec<String> {
        let entries = self.client.issue_cmd(BrowserLog).await.expect("read the browser log");
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE" && e["source"] != "network")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id() {
            // `kill -KILL -- -PGID`: ChromeDriver and every Chromium process it started.
            let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
        }
    }
}

/// ChromeDriver's log endpoint (outside W3C WebDriver, so fantoccini has no method for it).
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base_url: &url::Url, session_id: Option<&str>) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/se/log", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (axum::http::Method, Option<String>) {
        (axum::http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}
