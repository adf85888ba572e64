//! Durability: a restart restores every room exactly; after `kill -9`, every op the client saw
//! acked is still there.

use std::collections::BTreeSet;

use easel_proto::Message;
use easel_transport::client::{Connection, Transport};

use crate::harness::{Board, TestServer, send_acked, token, within};
use crate::spawned::Spawned;

#[tokio::test]
async fn restart_restores_rooms_exactly() {
    let server = TestServer::start_with(|c| c.snapshot_every = 7).await;
    let mut boards = Vec::new();
    for room in ["s/c/one", "s/c/two"] {
        let (_conn, mut stream) = server.member(Transport::Quic, "ada", "teacher", room).await;
        let mut board = Board::new(1);
        // 20 ops with a snapshot every 7: the restart reads a snapshot plus a log tail.
        for op in 1..=20 {
            send_acked(&mut stream, board.put(op, &format!("{room}-{op}"), op as i64)).await;
        }
        boards.push((room, board));
    }
    let server = server.restart().await;
    for (room, board) in &boards {
        let conn = server.connect(Transport::WebTransport, "bob", "viewer", room).await;
        within("join", conn.join(room, None)).await.expect("join");
        let snapshot = within("snapshot", conn.snapshot()).await.expect("snapshot");
        let restored = Board::new(2);
        restored.import(&snapshot.data);
        assert_eq!(restored.value(), board.value(), "{room} restored exactly");
    }
    server.server.shutdown().await;
}

#[tokio::test]
async fn kill_9_loses_no_acked_op() {
    let dir = tempfile::tempdir().expect("tempdir");
    let room = "s/c/crash";
    let tok = token(room, "ada", "teacher", 3600);
    let mut first = Spawned::start(dir.path()).await;
    let conn = within("connect", Connection::connect(&first.options(Transport::Quic), &tok, "ada-1"))
        .await
        .expect("connect");
    let mut stream = within("join", conn.join(room, None)).await.expect("join");
    let mut board = Board::new(1);
    let total = 3000u64;
    let mut acked = BTreeSet::new();
    let mut sent = 0u64;
    let mut killed = false;
    // Keep a window of unacked ops in flight; kill the server mid-stream.
    within("write and kill", async {
        loop {
            while sent < total && sent - (acked.len() as u64) < 64 {
                sent += 1;
                if stream.send(&board.put(sent, &format!("op-{sent}"), sent as i64)).await.is_err() {
                    break;
                }
            }
            match stream.next().await {
                Ok(Some(Message::Ack(a))) => acked.extend(a.op_ids),
                Ok(Some(Message::Reject(r))) => panic!("rejected: {r:?}"),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
            if acked.len() >= 500 {
                // SIGKILL with ops in flight. The client would only notice at its idle
                // timeout; what it has seen acked so far is what must survive.
                first.child.start_kill().expect("kill -9");
                killed = true;
                break;
            }
        }
    })
    .await;
    assert!(killed, "the server was killed mid-stream");
    first.child.wait().await.expect("reaped");
    assert!(acked.len() >= 500);

    let second = Spawned::start(dir.path()).await;
    let conn = within("reconnect", Connection::connect(&second.options(Transport::Quic), &tok, "ada-2"))
        .await
        .expect("connect");
    within("rejoin", conn.join(room, None)).await.expect("join");
    let snapshot = within("snapshot", conn.snapshot()).await.expect("snapshot");
    let restored = Board::new(2);
    restored.import(&snapshot.data);
    let present: BTreeSet<u64> = restored
        .keys()
        .iter()
        .map(|k| k.strip_prefix("op-").and_then(|n| n.parse().ok()).expect("an op-N key"))
        .collect();
    let missing: Vec<u64> = acked.iter().copied().filter(|op| !present.contains(op)).collect();
    assert!(missing.is_empty(), "acked ops lost after kill -9: {missing:?}");
    // Ops are committed in order, so what survived is a prefix of what was sent: op-1 up to
    // some op-n with no gap, n at least the last ack (it may hold ops committed but not yet
    // acked) and at most the last op sent.
    let survived = present.len() as u64;
    let prefix: BTreeSet<u64> = (1..=survived).collect();
    assert_eq!(present, prefix, "what survived is not a prefix of what was sent");
    let last_acked = acked.last().copied().unwrap_or(0);
    assert!(
        (last_acked..=sent).contains(&survived),
        "{survived} ops survived; acked {last_acked}, sent {sent}"
    );
}
