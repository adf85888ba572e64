//! Malformed, oversized and flooding input: typed errors or drops; the server and other
//! sessions carry on.

use bytes::Bytes;
use easel_proto::message::{Ping, Update};
use easel_proto::{ErrorCode, Message, varint};
use easel_server::config::Rate;
use easel_transport::client::{ClientError, Connection, Transport};

use crate::harness::{Board, TestServer, expect_message, send_acked, within};

/// A frame header announcing `len` bytes.
fn header(len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint::encode(len, &mut out);
    out
}

async fn probe_code(options: &easel_transport::client::Options, bytes: &[u8]) -> ErrorCode {
    match within("probe", Connection::probe(options, bytes)).await {
        Ok(Message::Fault(f)) => ErrorCode::from_u16(f.code).expect("known code"),
        Err(ClientError::Closed { code: Some(code), .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn still_serves(server: &TestServer, room: &str) {
    let (conn, mut stream) = server.member(Transport::Quic, "ok-user", "student", room).await;
    let pong = within("ping", conn.request(&Message::from(Ping { nonce: 77 }))).await.expect("ping");
    assert!(matches!(pong, Message::Pong(p) if p.nonce == 77));
    send_acked(&mut stream, Board::new(50).put(1, "still", 1)).await;
}

#[tokio::test]
async fn malformed_frames_get_typed_errors_and_the_stream_goes_on() {
    let server = TestServer::start().await;
    let (_conn, mut stream) = server.member(Transport::Quic, "ada", "student", "s/h/frames").await;
    // An unknown kind byte in a well-delimited frame.
    let mut frame = header(3);
    frame.extend_from_slice(&[0xEE, 1, 2]);
    stream.send_bytes(&frame).await.expect("send");
    let code = expect_message(&mut stream, "fault", |m| match m {
        Message::Fault(f) => Some(f.code),
        _ => None,
    })
    .await;
    assert_eq!(code, ErrorCode::UnknownKind.to_u16());
    // A known kind with a body that does not validate.
    let mut frame = header(5);
    frame.extend_from_slice(&[easel_proto::Kind::Update.to_u8(), 0xFF, 0xFF, 0xFF, 0xFF]);
    stream.send_bytes(&frame).await.expect("send");
    let code = expect_message(&mut stream, "fault", |m| match m {
        Message::Fault(f) => Some(f.code),
        _ => None,
    })
    .await;
    assert_eq!(code, ErrorCode::Malformed.to_u16());
    // Loro bytes that are not an update: rejected, doc untouched.
    stream
        .send(&Message::from(Update { op_id: 5, data: b"definitely not loro".to_vec() }))
        .await
        .expect("send");
    let code = expect_message(&mut stream, "reject", |m| match m {
        Message::Reject(r) if r.op_id == 5 => Some(r.code),
        _ => None,
    })
    .await;
    assert_eq!(code, ErrorCode::InvalidUpdate.to_u16());
    // The same stream still works.
    send_acked(&mut stream, Board::new(1).put(6, "fine", 1)).await;
    server.server.shutdown().await;
}

#[tokio::test]
async fn oversized_and_pre_auth_abuse_ends_only_the_offender() {
    let server = TestServer::start().await;
    // A frame announcing more than the limit ends that room membership with
    // `Left { FrameTooLarge }` on its stream (SPEC §14.2: a room-level ending)...
    let (_conn, mut stream) = server.member(Transport::Quic, "ada", "student", "s/h/big").await;
    stream.send_bytes(&header(64 << 20)).await.expect("send");
    let left = expect_message(&mut stream, "Left", |m| match m {
        Message::Left(l) => Some(l.code),
        _ => None,
    })
    .await;
    assert_eq!(ErrorCode::from_u16(left), Some(ErrorCode::FrameTooLarge));
    assert!(matches!(within("end of stream", stream.next()).await, Ok(None)), "Left is the last frame");

    // ...and before authentication, more than 16 KiB is refused outright.
    let options = server.options(Transport::Quic);
    let mut big = header(20_000);
    big.push(easel_proto::Kind::Hello.to_u8());
    big.resize(4096, b'x');
    assert_eq!(probe_code(&options, &big).await, ErrorCode::FrameTooLarge);
    let mut garbage = header(4);
    garbage.extend_from_slice(&[easel_proto::Kind::Hello.to_u8(), 9, 9, 9]);
    assert_eq!(probe_code(&options, &garbage).await, ErrorCode::Malformed);
    let mut wrong = Vec::new();
    Message::from(Ping { nonce: 1 }).encode_into(&mut wrong).expect("encode");
    assert_eq!(probe_code(&options, &wrong).await, ErrorCode::UnexpectedMessage);
    still_serves(&server, "s/h/big").await;
    server.server.shutdown().await;
}

#[tokio::test]
async fn floods_are_limited_and_others_are_unaffected() {
    let server = TestServer::start_with(|c| c.ops = Rate { per_sec: 10, burst: 20 }).await;
    let (conn, mut stream) = server.member(Transport::Quic, "ada", "student", "s/h/flood").await;
    // Garbage and valid-but-excessive datagrams: dropped, never fatal.
    for i in 0..5_000u32 {
        let _ = conn.send_datagram_bytes(Bytes::from(i.to_le_bytes().to_vec()));
    }
    // 100 ops at once against a burst of 20: the excess is refused with RateLimited.
    let mut board = Board::new(3);
    for op in 1..=100 {
        stream.send(&board.put(op, &format!("k{op}"), 0)).await.expect("send");
    }
    let (mut acked, mut limited) = (0, 0);
    within("all answered", async {
        while acked + limited < 100 {
            match stream.next().await.expect("stream").expect("open") {
                Message::Ack(a) => acked += a.op_ids.len(),
                Message::Reject(r) if r.code == ErrorCode::RateLimited.to_u16() => limited += 1,
                _ => {}
            }
        }
    })
    .await;
    assert!(limited > 0, "a flood is rate limited");
    assert!(acked >= 20, "the burst passes");
    still_serves(&server, "s/h/flood").await;
    server.server.shutdown().await;
}

/// A peer that starts a `Hello` and never finishes it is closed with `HandshakeTimeout` once
/// the handshake timeout passes, on every transport.
#[tokio::test]
async fn a_handshake_left_unfinished_is_closed_at_the_timeout() {
    let server = TestServer::start_with(|c| c.handshake_timeout = std::time::Duration::from_secs(1)).await;
    // The first byte of a two-byte length prefix: the frame never completes.
    let started = header(1000)[..1].to_vec();
    let probes = crate::harness::TRANSPORTS.map(|t| {
        let (options, started) = (server.options(t), started.clone());
        async move { (t, probe_code(&options, &started).await) }
    });
    for (transport, code) in futures::future::join_all(probes).await {
        assert_eq!(code, ErrorCode::HandshakeTimeout, "{transport:?}");
    }
    still_serves(&server, "s/h/slow-hello").await;
    server.server.shutdown().await;
}

/// A member that stops reading its room stream while the room keeps sending is closed as a
/// slow consumer (SPEC §6.5): its queue does not grow without bound, and the others see it
/// leave with that code.
#[tokio::test]
async fn a_member_that_stops_reading_is_closed_as_a_slow_consumer() {
    let server = TestServer::start_with(|c| {
        c.outbound_queue = 16;
        c.ops = Rate { per_sec: 100_000, burst: 100_000 };
    })
    .await;
    let room = "s/h/slow";
    let (ada, stalled) = server.member(Transport::Quic, "ada", "student", room).await;
    let ada_index = stalled.joined().participant;
    let (_bob, mut room_b) = server.member(Transport::Quic, "bob", "student", room).await;
    // 64 KiB edits until the stalled member's transport windows and queue are full.
    let mut board = Board::new(2);
    let pad = "x".repeat(64 * 1024);
    let mut op = 0;
    let code = within("ada closed", async {
        loop {
            op += 1;
            room_b.send(&board.put(op, &format!("{op}{pad}"), 0)).await.expect("send");
            // Bob reads his own stream up to this edit's ack (or ada's leave), so his own queue,
            // as short as ada's, never fills: only the member that stops reading may be closed.
            loop {
                match room_b.next().await.expect("bob's stream").expect("bob's stream open") {
                    Message::Participants(p) => {
                        if let Some(gone) = p.left.iter().find(|l| l.index == ada_index) {
                            return gone.code;
                        }
                    }
                    Message::Ack(a) if a.op_ids.contains(&op) => break,
                    _ => {}
                }
            }
        }
    })
    .await;
    assert_eq!(ErrorCode::from_u16(code), Some(ErrorCode::SlowConsumer));
    let closed = within("ada's connection ends", ada.closed()).await;
    assert!(matches!(closed, ClientError::Closed { code: Some(ErrorCode::SlowConsumer), .. }), "{closed:?}");
    drop(stalled);
    server.server.shutdown().await;
}
