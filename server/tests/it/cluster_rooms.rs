//! Cluster mode's room log: one room's board across nodes through JetStream, against a real
//! nats-server (`scripts/nats.sh`'s binary), real servers in process and, where one must die,
//! the `easel` binary.

use std::collections::BTreeSet;

use easel_proto::message::Update;
use easel_proto::{ErrorCode, Message};
use easel_transport::client::{RoomStream, Transport};

use crate::cluster::{Nats, metrics, node};
use crate::harness::{Board, TestServer, expect_message, send_acked, token, within};
use crate::spawned::Spawned;

const ROOM: &str = "uni-a/math-101/2026.11.28";

/// Joins `ROOM` on `server` as `user`, with the board its join brought (empty if none).
async fn join(
    server: &TestServer,
    user: &str,
    peer: u64,
) -> (easel_transport::client::Connection, RoomStream, Board) {
    let (conn, stream) = server.member(Transport::Quic, user, "teacher", ROOM).await;
    (conn, stream, Board::new(peer))
}

/// The room's whole board as a newcomer on `server` gets it.
async fn newcomer_keys(server: &TestServer, user: &str) -> Vec<String> {
    let (conn, _stream) = server.member(Transport::Quic, user, "viewer", ROOM).await;
    let snapshot = within("the newcomer's snapshot", conn.snapshot()).await.expect("snapshot");
    let board = Board::new(99);
    board.import(&snapshot.data);
    board.keys()
}

/// Waits for another node's update carrying `key` and imports it.
pub async fn receive(stream: &mut RoomStream, board: &mut Board, key: &str) {
    within(&format!("{key} arrives"), async {
        while !board.keys().iter().any(|k| k == key) {
            let data = expect_message(stream, key, |m| match m {
                // `from` names the author as this node numbers it (e2e checks it, spread).
                Message::RemoteUpdate(u) => Some(u.data),
                _ => None,
            })
            .await;
            board.adopt(&data);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_on_two_nodes_converge_and_newcomers_get_them_all() {
    let nats = Nats::start().await;
    let (a, b) = (node(&nats, "a").await, node(&nats, "b").await);
    let (_ca, mut sa, mut board_a) = join(&a, "ada", 1).await;
    let (_cb, mut sb, mut board_b) = join(&b, "bob", 2).await;

    send_acked(&mut sa, board_a.put(1, "a1", 1)).await;
    receive(&mut sb, &mut board_b, "a1").await;
    send_acked(&mut sb, board_b.put(1, "b1", 1)).await;
    receive(&mut sa, &mut board_a, "b1").await;
    // Concurrent edits: both sent before either is seen on the other side.
    let (ea, eb) = (board_a.put(2, "a2", 2), board_b.put(2, "b2", 2));
    sa.send(&ea).await.expect("send");
    sb.send(&eb).await.expect("send");
    receive(&mut sa, &mut board_a, "b2").await;
    receive(&mut sb, &mut board_b, "a2").await;
    assert_eq!(board_a.keys(), ["a1", "a2", "b1", "b2"]);
    assert_eq!(board_a.value(), board_b.value(), "the two documents converge");

    // A newcomer on b gets what b learnt from a; one on a node that had not loaded the room
    // gets it from the stream.
    assert_eq!(newcomer_keys(&b, "cyd").await, board_a.keys());
    let c = node(&nats, "c").await;
    assert_eq!(newcomer_keys(&c, "dan").await, board_a.keys());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acked_edit_survives_its_node_killed() {
    const EDITS: u64 = 30;
    let nats = Nats::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = ["--cluster", &nats.url, "--node-id", "a", "--cluster-heartbeat-ms", "100"];
    let mut a = Spawned::start_logging(dir.path(), "warn", &flags).await;
    let conn = within(
        "connect",
        easel_transport::client::Connection::connect(
            &a.options(Transport::Quic),
            &token(ROOM, "ada", "teacher", 3600),
            "ada-device",
        ),
    )
    .await
    .expect("connect");
    let mut desk = within("join", conn.join(ROOM, None)).await.expect("join");
    let mut board = Board::new(1);
    for op in 1..=EDITS {
        send_acked(&mut desk, board.put(op, &format!("k{op:02}"), 0)).await;
    }
    a.child.kill().await.expect("kill -9 a");

    let c = node(&nats, "c").await;
    assert_eq!(newcomer_keys(&c, "cyd").await, board.keys(), "every acked edit is in the stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_nats_edits_are_refused_and_go_through_once_it_is_back() {
    let mut nats = Nats::start().await;
    let (a, b) = (node(&nats, "a").await, node(&nats, "b").await);
    let (_ca, mut sa, mut board_a) = join(&a, "ada", 1).await;
    let (_cb, mut sb, mut board_b) = join(&b, "bob", 2).await;
    send_acked(&mut sa, board_a.put(1, "before", 1)).await;
    receive(&mut sb, &mut board_b, "before").await;

    nats.kill();
    let edit = board_a.put(2, "during", 2);
    sa.send(&edit).await.expect("send");
    let answer = expect_message(&mut sa, "the answer without NATS", |m| match m {
        Message::Ack(a) if a.op_ids.contains(&2) => Some(Err(())),
        Message::Reject(r) if r.op_id == 2 => Some(Ok(r.code)),
        _ => None,
    })
    .await;
    assert_eq!(answer, Ok(ErrorCode::StorageUnavailable.to_u16()), "refused, not acked");

    // Same data dir: the stream and what it held are back. As the SDK does, the refused edit
    // is sent again until acked.
    nats.restart().await;
    within("the retried edit is acked", async {
        loop {
            sa.send(&edit).await.expect("resend");
            let acked = expect_message(&mut sa, "the resend's answer", |m| match m {
                Message::Ack(a) if a.op_ids.contains(&2) => Some(true),
                Message::Reject(r) if r.op_id == 2 => Some(false),
                _ => None,
            })
            .await;
            if acked {
                return;
            }
        }
    })
    .await;
    receive(&mut sb, &mut board_b, "during").await;
    assert_eq!(board_b.keys(), ["before", "during"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_room_log_messages_are_counted_and_ignored() {
    let nats = Nats::start().await;
    let a = node(&nats, "a").await;
    let (_ca, mut sa, mut board) = join(&a, "ada", 1).await;
    send_acked(&mut sa, board.put(1, "mine", 1)).await;

    let js = async_nats::jetstream::new(async_nats::connect(&nats.url).await.expect("connect"));
    let subject = easel_server::cluster::log::subject(ROOM);
    let publish = |origin: Option<&str>, payload: Vec<u8>| {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(origin) = origin {
            headers.insert(easel_server::cluster::log::ORIGIN, origin);
        }
        let (js, subject) = (js.clone(), subject.clone());
        async move {
            js.publish_with_headers(subject, headers, payload.into())
                .await
                .expect("publish")
                .await
                .expect("ack");
        }
    };
    let record = |data: Vec<u8>| {
        let record =
            easel_server::store::UpdateRecord { client_id: "x".into(), op_id: 1, user: "x".into(), data };
        rkyv::to_bytes::<rkyv::rancor::Error>(&record).expect("encode").to_vec()
    };
    let mut other = Board::new(7);
    let Message::Update(Update { data: good, .. }) = other.put(1, "theirs", 1) else { unreachable!() };
    publish(Some("test@1"), b"garbage".to_vec()).await;
    publish(None, record(good.clone())).await;
    publish(Some("test@1"), record(b"not loro".to_vec())).await;
    // A good one behind them: once it arrives, a has read the three before.
    publish(Some("test@1"), record(good)).await;
    receive(&mut sa, &mut board, "theirs").await;
    let m = metrics(a.server.http_addr()).await;
    assert_eq!(m["easel_cluster_nats_errors_total{kind=\"malformed\"}"], 3.0, "{m:?}");

    send_acked(&mut sa, board.put(2, "still", 2)).await;
    let keys: BTreeSet<String> = newcomer_keys(&a, "cyd").await.into_iter().collect();
    assert_eq!(keys, BTreeSet::from(["mine".into(), "still".into(), "theirs".into()]));
}
