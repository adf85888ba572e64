//! The classroom's records on the server: attendance over HTTP and from the CLI, across a
//! resume and a real leave. The classroom through the SDK (chat, polls, hands, moderation) is
//! tested with the SDK, in `client-sdk/tests/it/classroom.rs`; here, what only the wire shows.

use easel_proto::message::{ModAction, Moderate};
use easel_proto::{ErrorCode, Message};
use easel_transport::client::{ClientError, Connection, Options, RoomStream, Transport};

use crate::harness::{Relay, TestServer, expect_message, token, until_listed, within};

const ROOM: &str = "uni-a/math-101/2026-11-23";
const COURSE: &str = "uni-a/math-101/*";

/// Connects as `user` with a token for the whole course and joins `ROOM`.
async fn member(user: &str, role: &str, options: &Options) -> (Connection, RoomStream) {
    let jwt = token(COURSE, user, role, 3600);
    let conn = within("connect", Connection::connect(options, &jwt, &format!("{user}-device")))
        .await
        .expect("connect");
    let stream = within("join", conn.join(ROOM, None)).await.expect("join");
    (conn, stream)
}

async fn attendance_json(server: &TestServer, role: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = server.server.http_addr();
    let jwt = token(COURSE, "teach", role, 3600);
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /rooms/{ROOM}/attendance HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {jwt}\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    within("attendance", tcp.read_to_string(&mut response)).await.expect("read");
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

fn intervals(json: &serde_json::Value, user: &str) -> Vec<(u64, Option<u64>)> {
    let users = json["users"].as_array().expect("users");
    let u = users.iter().find(|u| u["user"] == user).expect("user listed");
    u["intervals"]
        .as_array()
        .expect("intervals")
        .iter()
        .map(|i| (i["joined_ms"].as_u64().expect("joined"), i["left_ms"].as_u64()))
        .collect()
}

#[tokio::test]
async fn attendance_spans_a_resume_and_splits_at_a_real_leave() {
    let server = TestServer::start().await;
    let (_teacher, _t) = member("teach", "teacher", &server.options(Transport::Quic)).await;
    let relay = Relay::start(server.server.http_addr()).await;
    let via_relay = Options { addr: relay.addr, ..server.options(Transport::WebSocket) };
    let (ada, _a) = member("ada", "student", &via_relay).await;
    relay.cut(false);
    // What a client does when its connection drops: reconnect with the resume token, rejoin.
    within("ada notices", ada.closed()).await;
    let resume = Some(ada.welcome().resume_token.clone());
    let jwt = token(COURSE, "ada", "student", 3600);
    let ada = within("resume", Connection::connect_resuming(&via_relay, &jwt, "ada-device", resume))
        .await
        .expect("resume");
    let rejoined = within("rejoin", ada.join(ROOM, None)).await.expect("rejoin");
    let resumed = rejoined.joined().resumed;
    assert!(resumed);
    let (status, json) = attendance_json(&server, "teacher").await;
    assert_eq!(status, 200);
    let once = intervals(&json, "ada");
    assert!(matches!(once[..], [(_, None)]), "one open interval across the resume: {once:?}");

    ada.close(ErrorCode::Normal);
    let (_ada, _a) = member("ada", "student", &server.options(Transport::Quic)).await;
    let (_, json) = attendance_json(&server, "teacher").await;
    let twice = intervals(&json, "ada");
    assert!(
        matches!(twice[..], [(a, Some(b)), (c, None)] if a <= b && b <= c),
        "a real leave splits: {twice:?}"
    );

    let (status, _) = attendance_json(&server, "student").await;
    assert_eq!(status, 403, "students cannot read attendance");

    // The CLI reads the same records from a stopped server's data dir.
    let dir = server.dir.path().to_owned();
    server.server.shutdown().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["attendance", "--data-dir", dir.to_str().expect("utf-8"), "--room", ROOM])
        .output()
        .await
        .expect("run easel attendance");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8(out.stdout).expect("utf-8");
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "room,user,name,joined_ms,left_ms,seconds,total_seconds");
    assert_eq!(rows.iter().filter(|r| r.contains(",ada,")).count(), 2, "{csv}");
    let open = rows.iter().skip(1).filter(|r| r.split(',').nth(4) == Some("")).count();
    assert_eq!(open, 0, "a shutdown closes every interval: {csv}");
}

/// A removed member that joins again on its connection the moment it reads `Left` is refused
/// as removed, never as still joined: the connection lets go of the room before `Left` is
/// written. Several members, each transport, because the window this closes was narrow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_rejoining_at_once_is_refused_as_removed_not_as_joined() {
    let server = TestServer::start().await;
    let (_ct, mut tess) = server.member(Transport::Quic, "tess", "teacher", ROOM).await;
    for (i, transport) in
        [Transport::Quic, Transport::WebTransport, Transport::WebSocket].repeat(4).into_iter().enumerate()
    {
        let user = format!("s{i}");
        let (conn, mut stream) = server.member(transport, &user, "student", ROOM).await;
        let target = until_listed(&mut tess, &[], &user).await.index;
        let remove = Moderate { target, action: ModAction::Remove, reason: "spam".into() };
        tess.send(&Message::from(remove)).await.expect("moderate");
        expect_message(&mut stream, "the removal", |m| matches!(m, Message::Left(_)).then_some(())).await;
        match within("rejoin", conn.join(ROOM, None)).await {
            Err(ClientError::Refused { code, .. }) => assert_eq!(code, ErrorCode::Removed, "{transport:?}"),
            other => {
                panic!("rejoin over {transport:?} not refused: {:?}", other.map(|s| s.joined().participant))
            }
        }
    }
}
