//! Refusals with the SPEC codes, and nothing changed by a refused request.

use easel_proto::ErrorCode;
use easel_proto::Message;
use easel_proto::message::SyncKind;
use easel_server::auth::{Claims, Issuer};
use easel_transport::client::{ClientError, Connection, Transport};

use crate::harness::{Board, TRANSPORTS, TestServer, expect_message, now_secs, token, within};

async fn refusal(server: &TestServer, transport: Transport, token: &str) -> ErrorCode {
    match within("connect", Connection::connect(&server.options(transport), token, "probe")).await {
        Err(ClientError::Refused { code, .. }) => code,
        Err(ClientError::Closed { code: Some(code), .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_tokens_are_refused_with_their_codes() {
    let server = TestServer::start().await;
    for transport in TRANSPORTS {
        assert_eq!(refusal(&server, transport, "").await, ErrorCode::Unauthenticated, "{transport:?}");
        let claims = Claims::new("eve", "s/c/r", "teacher", now_secs() + 600);
        let forged =
            Issuer::hs256(b"not-the-server-secret-not-the-server-secret").mint(&claims).expect("mint");
        assert_eq!(refusal(&server, transport, &forged).await, ErrorCode::InvalidToken, "{transport:?}");
        assert_eq!(refusal(&server, transport, "a.b.c").await, ErrorCode::InvalidToken, "{transport:?}");
        let expired = token("s/c/r", "eve", "teacher", -5);
        assert_eq!(refusal(&server, transport, &expired).await, ErrorCode::TokenExpired, "{transport:?}");
    }
    server.server.shutdown().await;
}

#[tokio::test]
async fn wrong_room_and_viewer_writes_change_nothing() {
    let server = TestServer::start().await;
    let conn = server.connect(Transport::Quic, "eve", "teacher", "s/c/allowed").await;
    match within("join", conn.join("s/c/other", None)).await {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, ErrorCode::RoomNotAllowed),
        other => panic!("expected RoomNotAllowed, got {other:?}"),
    }
    // The session survives a refused join.
    within("join allowed", conn.join("s/c/allowed", None)).await.expect("join allowed room");

    let (_v, mut viewer) = server.member(Transport::Quic, "vic", "viewer", "s/c/allowed").await;
    let mut board = Board::new(9);
    viewer.send(&board.put(7, "nope", 1)).await.expect("send");
    let (op_id, code) = expect_message(&mut viewer, "reject", |m| match m {
        Message::Reject(r) => Some((r.op_id, r.code)),
        Message::Ack(a) => panic!("viewer write acked: {a:?}"),
        _ => None,
    })
    .await;
    assert_eq!((op_id, code), (7, ErrorCode::Forbidden.to_u16()));
    // Nothing changed: a newcomer has nothing to sync.
    let (_n, newcomer) = server.member(Transport::Quic, "neo", "student", "s/c/allowed").await;
    assert_eq!(newcomer.joined().sync, SyncKind::None);
    server.server.shutdown().await;
}
