//! Token revocation (SPEC §5.3): by user or token id, through the admin endpoint or
//! `easel revoke`; a live session holding a revoked token is closed at once, the token is
//! refused from then on, a token issued later works, and a restart keeps it all.

use easel_proto::ErrorCode;
use easel_proto::message::{Participants, Ping};
use easel_server::auth::{Claims, Issuer};
use easel_transport::client::{ClientError, Connection, Transport};

use crate::harness::{SECRET, TestServer, expect_message, now_secs, within};

const ROOM: &str = "s/c/revoked";
const ADMIN: &str = "admin-token-for-tests-0123456789";

fn mint(user: &str, iat: u64, jti: Option<&str>) -> String {
    let claims = Claims {
        iat: Some(iat),
        jti: jti.map(Into::into),
        ..Claims::new(user, ROOM, "teacher", now_secs() + 3600)
    };
    Issuer::hs256(SECRET.as_bytes()).mint(&claims).expect("mint")
}

async fn connect(server: &TestServer, jwt: &str) -> Result<Connection, ErrorCode> {
    match within("connect", Connection::connect(&server.options(Transport::WebSocket), jwt, "device")).await {
        Ok(conn) => Ok(conn),
        Err(ClientError::Refused { code, .. } | ClientError::Closed { code: Some(code), .. }) => Err(code),
        Err(other) => panic!("neither in nor refused: {other:?}"),
    }
}

/// One HTTP/1.0 request with an optional bearer token; the status and the body.
async fn admin(
    server: &TestServer,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = server.server.http_addr();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect http");
    let auth = bearer.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    within("http answer", tcp.read_to_string(&mut answer)).await.expect("read");
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    (status, answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned())
}

#[tokio::test]
async fn a_revoked_user_is_closed_at_once_refused_after_and_a_later_token_works() {
    let server = TestServer::start_with(|c| c.admin_token = Some(ADMIN.into())).await;
    let now = now_secs();
    let ada = connect(&server, &mint("ada", now, None)).await.expect("ada in");
    let ada_room = within("ada joins", ada.join(ROOM, None)).await.expect("join");
    let ada_index = ada_room.joined().participant;
    let bob = connect(&server, &mint("bob", now, None)).await.expect("bob in");
    let mut bob_room = within("bob joins", bob.join(ROOM, None)).await.expect("join");

    // Only the operator may revoke.
    let revoke_ada = r#"{"user":"ada"}"#;
    assert_eq!(admin(&server, "POST", "/admin/revoke", None, revoke_ada).await.0, 401);
    assert_eq!(admin(&server, "POST", "/admin/revoke", Some("guess-guess-guess"), revoke_ada).await.0, 401);
    let (status, body) =
        admin(&server, "POST", "/admin/revoke", Some(ADMIN), r#"{"user":"ada","token_id":"x"}"#).await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = admin(&server, "POST", "/admin/revoke", Some(ADMIN), revoke_ada).await;
    assert_eq!(status, 200, "{body}");
    let closed = within("ada's session ends", ada.closed()).await;
    assert!(matches!(closed, ClientError::Closed { code: Some(ErrorCode::TokenRevoked), .. }), "{closed:?}");
    let gone = expect_message(&mut bob_room, "ada leaves", |m| match m {
        easel_proto::Message::Participants(Participants { left, .. }) => {
            left.iter().find(|l| l.index == ada_index).map(|_| ())
        }
        _ => None,
    });
    gone.await;
    let pong = within("bob's ping", bob.request(&easel_proto::Message::from(Ping { nonce: 7 }))).await;
    assert!(matches!(pong, Ok(easel_proto::Message::Pong(_))), "bob is untouched: {pong:?}");

    // Her token is refused from now on; one issued later is not.
    assert_eq!(connect(&server, &mint("ada", now, None)).await.err(), Some(ErrorCode::TokenRevoked));
    connect(&server, &mint("ada", now_secs() + 1, None)).await.expect("a token issued after the revocation");

    // By token id: that token only.
    let (status, _) =
        admin(&server, "POST", "/admin/revoke", Some(ADMIN), r#"{"token_id":"bob-phone"}"#).await;
    assert_eq!(status, 200);
    assert_eq!(
        connect(&server, &mint("bob", now, Some("bob-phone"))).await.err(),
        Some(ErrorCode::TokenRevoked)
    );
    connect(&server, &mint("bob", now, Some("bob-laptop"))).await.expect("bob's other token");
    let (status, list) = admin(&server, "GET", "/admin/revocations", Some(ADMIN), "").await;
    assert_eq!(status, 200);
    assert!(list.contains("\"user\":\"ada\"") && list.contains("\"token_id\":\"bob-phone\""), "{list}");

    // A restart keeps both.
    let server = server.restart().await;
    assert_eq!(connect(&server, &mint("ada", now, None)).await.err(), Some(ErrorCode::TokenRevoked));
    assert_eq!(
        connect(&server, &mint("bob", now, Some("bob-phone"))).await.err(),
        Some(ErrorCode::TokenRevoked)
    );
    // Without --admin-token the endpoints do not exist.
    assert_eq!(admin(&server, "POST", "/admin/revoke", Some(ADMIN), revoke_ada).await.0, 404);
    server.server.shutdown().await;
}

#[tokio::test]
async fn easel_revoke_asks_a_running_server_or_writes_a_stopped_ones_data() {
    let server = TestServer::start_with(|c| c.admin_token = Some(ADMIN.into())).await;
    let now = now_secs();
    let carl = connect(&server, &mint("carl", now, None)).await.expect("carl in");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["revoke", "--user", "carl", "--server", &server.server.http_addr().to_string()])
        .env("EASEL_ADMIN_TOKEN", ADMIN)
        .output();
    let out = within("easel revoke --server", out).await.expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let closed = within("carl's session ends", carl.closed()).await;
    assert!(matches!(closed, ClientError::Closed { code: Some(ErrorCode::TokenRevoked), .. }), "{closed:?}");

    let dir = server.dir.path().to_owned();
    let TestServer { server: running, dir: keep, .. } = server;
    running.shutdown().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["revoke", "--token-id", "dana-tablet", "--data-dir", dir.to_str().expect("utf-8")])
        .output();
    let out = within("easel revoke --data-dir", out).await.expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let restarted = easel_server::Server::start(crate::harness::server_config(&dir)).await.expect("start");
    let server = TestServer::new(restarted, keep);
    assert_eq!(
        connect(&server, &mint("dana", now, Some("dana-tablet"))).await.err(),
        Some(ErrorCode::TokenRevoked)
    );
    assert_eq!(connect(&server, &mint("carl", now, None)).await.err(), Some(ErrorCode::TokenRevoked));
    server.server.shutdown().await;
}
