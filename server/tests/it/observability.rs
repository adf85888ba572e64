//! What an operator sees of one class: `GET /rooms/{id}/stats` (a teacher's token), the
//! ingest-to-send histograms by kind, JSON logs that follow one user into a room, and an SFU
//! outage told to the room (with the fallback link) and its recovery, against a real Janus.
//! The dashboard and alert rules in `ops/` name only exported series.

use std::collections::HashMap;
use std::path::Path;

use easel_proto::datagram::Cursor;
use easel_proto::message::{ChatSend, HandRaise, PollStart, SfuJoin};
use easel_proto::{Datagram, ErrorCode, Message};
use easel_server::config::{SfuConfig, SfuKind};
use easel_server::telemetry::SERIES;
use easel_transport::client::{Connection, RoomStream, Transport};

use crate::harness::{Board, TestServer, expect_message, http_get, send_acked, token, within};
use crate::janus::{ADMIN_KEY, JanusProcess, free_port};
use crate::spawned::Spawned;

const ROOM: &str = "uni-a/physics-101/2026-11-27";
const COURSE: &str = "uni-a/physics-101/*";

/// `GET path` with a bearer token; returns the status and the body as JSON (`Null` if it is
/// not JSON).
async fn get_json(addr: std::net::SocketAddr, path: &str, jwt: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {jwt}\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    within("http response", tcp.read_to_string(&mut response)).await.expect("read");
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

async fn member(
    server: &TestServer,
    transport: Transport,
    user: &str,
    role: &str,
) -> (Connection, RoomStream) {
    let jwt = token(COURSE, user, role, 3600);
    let conn =
        within("connect", Connection::connect(&server.options(transport), &jwt, &format!("{user}-device")))
            .await
            .expect("connect");
    let stream = within("join", conn.join(ROOM, None)).await.expect("join");
    (conn, stream)
}

/// `name{labels}` → value of every sample of a scrape.
async fn scrape(addr: std::net::SocketAddr) -> HashMap<String, f64> {
    let (status, text) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_owned(), v.parse().unwrap_or(f64::NAN))))
        .collect()
}

#[tokio::test]
async fn room_stats_follow_a_live_class_for_its_teacher_only() {
    let server = TestServer::start_with(|c| c.max_participants = 2).await;
    let http = server.server.http_addr();
    let stats = format!("/rooms/{ROOM}/stats");
    let teacher_jwt = token(COURSE, "teach", "teacher", 3600);

    let (status, body) = get_json(http, &stats, &teacher_jwt).await;
    assert_eq!((status, body["error"].is_string()), (404, true), "not loaded: {body}");

    let (teach, mut t) = member(&server, Transport::Quic, "teach", "teacher").await;
    let (ada, mut a) = member(&server, Transport::Quic, "ada", "student").await;
    // A third is refused: the room holds two.
    let bob = within(
        "connect",
        Connection::connect(
            &server.options(Transport::WebSocket),
            &token(COURSE, "bob", "student", 3600),
            "bob-device",
        ),
    )
    .await
    .expect("connect");
    let full = within("join", bob.join(ROOM, None)).await.err();
    assert!(
        matches!(full, Some(easel_transport::client::ClientError::Refused { code: ErrorCode::RoomFull, .. })),
        "{full:?}"
    );

    // One of each kind: an edit, chat, a hand, a poll, and cursors until one reaches the teacher.
    send_acked(&mut a, Board::new(7).put(1, "k", 1)).await;
    a.send(&Message::from(ChatSend { client_msg_id: 5, text: "hello".into() })).await.expect("chat");
    expect_message(&mut a, "chat echo", |m| {
        matches!(m, Message::ChatMessage(c) if c.client_msg_id == 5).then_some(())
    })
    .await;
    a.send(&Message::from(HandRaise {})).await.expect("hand");
    expect_message(&mut a, "hand queue", |m| {
        matches!(m, Message::HandQueue(q) if !q.queue.is_empty()).then_some(())
    })
    .await;
    let poll = PollStart {
        request: 9,
        question: "Ready?".into(),
        options: vec!["yes".into(), "no".into()],
        multiple: false,
        duration_ms: 60_000,
        live: false,
    };
    t.send(&Message::from(poll)).await.expect("poll");
    expect_message(&mut t, "poll started", |m| {
        matches!(m, Message::PollStarted(p) if p.request == 9).then_some(())
    })
    .await;
    let slot = a.joined().slot;
    within("a cursor batch reaches the teacher", async {
        for seq in 1u16.. {
            ada.send_datagram(&Datagram::from(Cursor { slot, seq, x: 10, y: 20 })).expect("cursor");
            let got =
                tokio::time::timeout(std::time::Duration::from_millis(200), teach.recv_datagram()).await;
            if matches!(got, Ok(Ok(Datagram::CursorBatch(_)))) {
                return;
            }
        }
    })
    .await;

    // A reconnect: ada's session resumed on a new connection, the room re-attached.
    let resume = Some(ada.welcome().resume_token.clone());
    let ada2 = within(
        "resume",
        Connection::connect_resuming(
            &server.options(Transport::WebSocket),
            &token(COURSE, "ada", "student", 3600),
            "ada-device",
            resume,
        ),
    )
    .await
    .expect("resume");
    let rejoined = within("rejoin", ada2.join(ROOM, None)).await.expect("rejoin");
    assert!(rejoined.joined().resumed);

    let (status, s) = get_json(http, &stats, &teacher_jwt).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["room"], ROOM);
    assert_eq!((s["joins"].as_u64(), s["joins_ok"].as_u64()), (Some(4), Some(3)), "{s}");
    assert_eq!(s["connection_success_rate"], 0.75);
    assert_eq!(s["reconnects"], 1);
    assert_eq!(s["peak_participants"], 2);
    assert!(s["sfu_error_rate"].is_null(), "no SFU requests: {s}");
    for kind in ["cursor", "edit", "chat", "poll", "hand"] {
        assert!(s["latency"][kind]["count"].as_u64() >= Some(1), "{kind}: {s}");
        assert!(s["latency"][kind]["p95_seconds"].as_f64().is_some_and(|p| p > 0.0), "{kind}: {s}");
    }
    assert!(s["p95_delivery_seconds"].as_f64().is_some_and(|p| p > 0.0), "{s}");

    // The same samples, fleet-wide, in Prometheus (this test's process has this one server).
    let samples = scrape(http).await;
    for kind in ["cursor", "edit", "chat", "poll", "hand"] {
        let count = samples.get(&format!("easel_ingest_to_send_seconds_count{{kind=\"{kind}\"}}"));
        assert!(count.is_some_and(|c| *c >= 1.0), "{kind}: {count:?}");
    }

    // Latency buckets reach seconds; queue depths have count buckets, not latency ones.
    assert!(samples.contains_key("easel_ingest_to_send_seconds_bucket{kind=\"edit\",le=\"5\"}"));
    assert!(samples.contains_key("easel_room_queue_depth_bucket{le=\"4096\"}"));
    assert!(samples.contains_key("easel_store_batch_ops_bucket{le=\"256\"}"));

    let (status, body) = get_json(http, &stats, &token(COURSE, "ada", "student", 3600)).await;
    assert_eq!((status, body["error"].is_string()), (403, true), "a student: {body}");
    let (status, body) = get_json(http, &stats, "not-a-jwt").await;
    assert_eq!((status, body["error"].is_string()), (401, true), "no valid token: {body}");
    let other = token("uni-b/*", "teach", "teacher", 3600);
    let (status, _) = get_json(http, &stats, &other).await;
    assert_eq!(status, 403, "a teacher of another course");
    server.server.shutdown().await;
}

#[tokio::test]
async fn a_refused_edit_is_logged_as_json_with_the_user_and_the_room() {
    use tokio::io::{AsyncBufReadExt as _, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let level = "info,easel_server::session=debug";
    let mut server = Spawned::start_logging(dir.path(), level, &["--log-format", "json"]).await;
    let stderr = server.child.stderr.take().expect("stderr piped");
    let jwt = token(COURSE, "vic", "viewer", 3600);
    let vic = within("connect", Connection::connect(&server.options(Transport::Quic), &jwt, "vic-device"))
        .await
        .expect("connect");
    let mut room = within("join", vic.join(ROOM, None)).await.expect("join");
    room.send(&Board::new(3).put(41, "k", 1)).await.expect("send");
    let code = expect_message(&mut room, "reject", |m| match m {
        Message::Reject(r) if r.op_id == 41 => Some(r.code),
        _ => None,
    })
    .await;
    assert_eq!(ErrorCode::from_u16(code), Some(ErrorCode::Forbidden), "viewers do not write");

    let mut lines = BufReader::new(stderr).lines();
    let mut next_line = async |message: &str| {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
            if v["fields"]["message"] == message {
                return v;
            }
        }
        panic!("the server's stderr ended");
    };
    // The session's own lines carry who and from where.
    let established = within("the session's log line", next_line("session established")).await;
    assert_eq!(established["span"]["user"], "vic", "{established}");
    assert_eq!(established["span"]["transport"], "quic", "{established}");
    let remote = established["span"]["remote"].as_str().unwrap_or_default();
    assert!(remote.starts_with("127.0.0.1:"), "{established}");
    let line = within("the refusal's log line", next_line("request refused")).await;
    assert_eq!(line["fields"]["reference"], 41, "{line}");
    assert_eq!(line["fields"]["user"], "vic", "{line}");
    assert_eq!(line["fields"]["code"], "Forbidden (204)", "{line}");
    assert_eq!(line["span"]["room"], ROOM, "{line}");
    let spans = line["spans"].as_array().expect("spans");
    assert!(
        spans.iter().all(|s| s["name"] != "session"),
        "a room's lines are not in a session's span: {line}"
    );
}

#[tokio::test]
async fn an_unreachable_sfu_is_told_to_the_room_with_the_fallback_until_it_is_back() {
    const FALLBACK: &str = "https://meet.example.org/physics-101";
    // Nothing listens there yet: a real outage, until Janus is started on that port.
    let port = free_port();
    let server = TestServer::start_with(|c| {
        c.sfu = Some(SfuConfig {
            kind: SfuKind::Janus,
            janus_url: format!("ws://127.0.0.1:{port}"),
            janus_admin_key: Some(ADMIN_KEY.into()),
            ice_servers: Vec::new(),
            students_publish: true,
        });
        c.sfu_fallback_url = FALLBACK.into();
    })
    .await;
    let (_teach, mut t) = member(&server, Transport::Quic, "teach", "teacher").await;
    let (_ada, mut a) = member(&server, Transport::WebSocket, "ada", "student").await;
    let status = |reachable: bool| {
        move |m: Message| match m {
            Message::SfuStatus(s) if s.reachable == reachable => Some(s.fallback_url),
            _ => None,
        }
    };

    t.send(&Message::from(SfuJoin { publish: true })).await.expect("sfu join");
    let refused = expect_message(&mut t, "refused", |m| match m {
        Message::Fault(f) => Some(f.code),
        _ => None,
    })
    .await;
    assert_eq!(ErrorCode::from_u16(refused), Some(ErrorCode::SfuUnavailable));
    assert_eq!(expect_message(&mut a, "outage", status(false)).await, FALLBACK, "everyone hears it");
    let (_bob, mut b) = member(&server, Transport::Quic, "bob", "student").await;
    assert_eq!(expect_message(&mut b, "outage on joining", status(false)).await, FALLBACK);

    let (status_code, s) = get_json(
        server.server.http_addr(),
        &format!("/rooms/{ROOM}/stats"),
        &token(COURSE, "teach", "teacher", 3600),
    )
    .await;
    assert_eq!(
        (status_code, s["sfu_requests"].as_u64(), s["sfu_error_rate"].as_f64()),
        (200, Some(1), Some(1.0)),
        "{s}"
    );
    let samples = scrape(server.server.http_addr()).await;
    assert!(
        samples.get("easel_sfu_errors_total{kind=\"unavailable\"}").is_some_and(|n| *n >= 1.0),
        "counted"
    );

    let _janus = tokio::task::spawn_blocking(move || JanusProcess::start_on(port)).await.expect("janus");
    assert_eq!(expect_message(&mut a, "recovery", status(true)).await, "", "no fallback once it is back");
    t.send(&Message::from(SfuJoin { publish: true })).await.expect("sfu join");
    let granted = expect_message(&mut t, "grant", |m| match m {
        Message::SfuGrant(g) => Some(g.can_publish),
        Message::Fault(f) => panic!("refused after the recovery: {f:?}"),
        _ => None,
    })
    .await;
    assert!(granted);
    server.server.shutdown().await;
}

/// `easel_[a-z_]+` names in a text (the histogram suffixes `_bucket`, `_count` and `_sum` are
/// the histogram's own).
fn series_named(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("easel_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        names.push(base.to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_dashboard_and_alerts_name_only_exported_series() {
    let ops = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops");
    let listed: Vec<&str> = SERIES.iter().map(|s| s.name).collect();
    for file in ["grafana-dashboard.json", "prometheus-alerts.yml"] {
        let text = std::fs::read_to_string(ops.join(file)).expect("ops file");
        if file.ends_with(".json") {
            serde_json::from_str::<serde_json::Value>(&text).expect("the dashboard is JSON");
        }
        let named = series_named(&text);
        assert!(named.len() >= 8, "{file} is built on the series: {named:?}");
        let unknown: Vec<_> = named.iter().filter(|n| !listed.contains(&n.as_str())).collect();
        assert!(unknown.is_empty(), "{file} names series the server does not export: {unknown:?}");
    }
}
