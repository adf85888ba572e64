//! `GET /metrics` of a real `easel` process: every listed series is there at its start value
//! (zero, but for the cluster size and the datagram budget) before the first connection, every
//! series the source records is listed, and the counts follow what clients did. A process of
//! its own each: the recorder is process-wide.

use std::collections::HashMap;
use std::path::Path;

use easel_proto::message::Ping;
use easel_proto::{ErrorCode, Message};
use easel_server::auth::{Claims, Issuer};
use easel_server::telemetry::{Kind, SERIES};
use easel_transport::client::{ClientError, Connection, Transport};

use crate::harness::{everyone, http_get, now_secs, token, within};
use crate::spawned::Spawned;

/// `name{k="v",…}` → value, for every sample line of a scrape.
async fn scrape(server: &Spawned) -> HashMap<String, f64> {
    let (status, text) = http_get(server.http_addr(), "/metrics").await;
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {l}"));
            (key.to_owned(), value.parse().unwrap_or_else(|_| panic!("not a number: {l}")))
        })
        .collect()
}

/// The sample key of `name` with `labels`, as the exporter writes it.
fn key(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

fn value(samples: &HashMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let key = key(name, labels);
    *samples.get(&key).unwrap_or_else(|| panic!("/metrics lacks {key}"))
}

#[tokio::test]
async fn a_fresh_server_exports_every_series_at_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Spawned::start(dir.path()).await;
    let samples = scrape(&server).await;
    let mut expected = 0;
    for series in SERIES {
        for set in series.label_sets() {
            let labels: Vec<(&str, &str)> = set.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let name = match series.kind {
                Kind::Histogram => format!("{}_count", series.name),
                Kind::Counter | Kind::Gauge => series.name.to_owned(),
            };
            let at_start = value(&samples, &name, &labels);
            expected += 1;
            if series.name == "easel_datagram_budget" {
                // The default: 30,000 a second for each core the server may use.
                assert!(at_start >= 30_000.0 && at_start % 30_000.0 == 0.0, "{}: {at_start}", series.name);
                continue;
            }
            // A node alone is a cluster of one; every other series starts at zero.
            let start = if series.name == "easel_cluster_nodes" { 1.0 } else { 0.0 };
            assert_eq!(at_start, start, "{}", key(&name, &labels));
        }
    }
    assert!(expected > SERIES.len(), "labelled series were expanded");
    assert!(samples.keys().all(|k| k.starts_with("easel_")), "only easel_ series");
}

#[tokio::test]
async fn connects_refusals_and_resumes_count_what_clients_did() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Spawned::start(dir.path()).await;
    let quic = server.options(Transport::Quic);
    let tok = token("s/m/a", "ada", "student", 3600);

    // One QUIC session that joins its room, then asks for one it was not granted. The join's
    // answer comes after the handshake was counted and the refusal before its Fault.
    let a = within("connect", Connection::connect(&quic, &tok, "ada-1")).await.expect("connect");
    let mut room = within("join", a.join("s/m/a", None)).await.expect("join");
    everyone(&mut room).await;
    let refused = within("join refused", a.join("s/other/b", None)).await.err();
    assert!(
        matches!(refused, Some(ClientError::Refused { code: ErrorCode::RoomNotAllowed, .. })),
        "{refused:?}"
    );
    let samples = scrape(&server).await;
    assert_eq!(value(&samples, "easel_connects_total", &[("transport", "quic"), ("result", "ok")]), 1.0);
    assert_eq!(value(&samples, "easel_connects_total", &[("transport", "quic"), ("result", "failed")]), 0.0);
    assert_eq!(value(&samples, "easel_sessions", &[("transport", "quic")]), 1.0);
    assert_eq!(value(&samples, "easel_sessions_peak", &[]), 1.0);
    assert_eq!(value(&samples, "easel_refusals_total", &[("code", "RoomNotAllowed")]), 1.0);
    assert_eq!(value(&samples, "easel_handshake_seconds_count", &[]), 1.0);

    // A WebSocket handshake with a token signed by someone else, while the QUIC one is open.
    let claims = Claims::new("mallory", "s/m/a", "teacher", now_secs() + 3600);
    let forged = Issuer::hs256(b"not-the-server-secret-0123456789abcdef").mint(&claims).expect("mint");
    let ws = within("forged", Connection::connect(&server.options(Transport::WebSocket), &forged, "m")).await;
    assert!(matches!(ws, Err(ClientError::Refused { code: ErrorCode::InvalidToken, .. })), "{ws:?}");
    let samples = scrape(&server).await;
    let failed = [("transport", "websocket"), ("result", "failed")];
    assert_eq!(value(&samples, "easel_connects_total", &failed), 1.0);
    assert_eq!(value(&samples, "easel_refusals_total", &[("code", "InvalidToken")]), 1.0);
    assert_eq!(value(&samples, "easel_sessions_peak", &[]), 2.0, "both were open at once");

    // A reconnect that resumes the QUIC session (a request round trip orders the scrape after
    // the handshake's count).
    let resume = a.welcome().resume_token.clone();
    let b = within("resume", Connection::connect_resuming(&quic, &tok, "ada-1", Some(resume)))
        .await
        .expect("resume");
    assert!(b.welcome().resumed);
    let pong = within("ping", b.request(&Message::from(Ping { nonce: 3 }))).await.expect("ping");
    assert!(matches!(pong, Message::Pong(p) if p.nonce == 3));
    let samples = scrape(&server).await;
    assert_eq!(value(&samples, "easel_connects_total", &[("transport", "quic"), ("result", "ok")]), 2.0);
    assert_eq!(value(&samples, "easel_resume_attempts_total", &[]), 1.0);
    assert_eq!(value(&samples, "easel_resumes_total", &[]), 1.0);
    assert_eq!(
        value(&samples, "easel_connects_total", &[("transport", "webtransport"), ("result", "ok")]),
        0.0
    );
}

/// Names given as string literals to `counter!`, `gauge!` and `histogram!` in `.rs` files
/// under `dir`.
fn recorded_names(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("read source dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            recorded_names(&path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read source");
        for mac in ["counter!(", "gauge!(", "histogram!("] {
            for (at, _) in text.match_indices(mac) {
                // `describe_counter!(` and the like describe, they do not record.
                if text[..at].ends_with('_') {
                    continue;
                }
                let rest = text[at + mac.len()..].trim_start();
                if let Some(literal) = rest.strip_prefix('"') {
                    let name = literal.split('"').next().unwrap_or_default();
                    out.push((name.to_owned(), path.display().to_string()));
                }
            }
        }
    }
}

#[test]
fn every_series_the_source_records_is_listed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut recorded = Vec::new();
    // The server, and the transports it runs (the WebSocket backlog drops datagrams).
    recorded_names(&root.join("src"), &mut recorded);
    recorded_names(&root.join("../transport/src"), &mut recorded);
    assert!(recorded.len() >= 20, "the scan finds the recording sites: {recorded:?}");
    let listed: Vec<&str> = SERIES.iter().map(|s| s.name).collect();
    let unlisted: Vec<_> = recorded.iter().filter(|(name, _)| !listed.contains(&name.as_str())).collect();
    assert!(unlisted.is_empty(), "recorded but not in telemetry::SERIES: {unlisted:?}");
    let unused: Vec<_> = listed.iter().filter(|name| !recorded.iter().any(|(n, _)| n == *name)).collect();
    assert!(unused.is_empty(), "listed in telemetry::SERIES but never recorded: {unused:?}");
}
