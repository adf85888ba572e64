//! Durability: a restart restores every room exactly; after `kill -9`, every op the client saw
//! acked is still there.

use std::collections::BTreeSet;
use std::process::Stdio;

use easel_proto::Message;
use easel_transport::client::{Connection, Options, Transport};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::harness::{Board, SECRET, TestServer, send_acked, token, within};

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

struct Spawned {
    child: tokio::process::Child,
    options: Options,
}

async fn spawn_binary(dir: &std::path::Path) -> Spawned {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["--data-dir", dir.to_str().expect("utf-8")])
        .args(["--wt-addr", "127.0.0.1:0", "--quic-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .args(["--ops-per-sec", "100000", "--ops-burst", "100000"])
        .env("EASEL_JWT_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn easel");
    let stdout = child.stdout.take().expect("stdout");
    let ready: serde_json::Value = within("ready line", async {
        let mut lines = BufReader::new(stdout).lines();
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["event"] == "ready"
            {
                return v;
            }
        }
        panic!("easel exited before it was ready");
    })
    .await;
    let addr = ready["quic"].as_str().expect("quic addr").parse().expect("addr");
    let options = Options::new(addr, Transport::Quic)
        .with_cert_hash(ready["cert_sha256"].as_str().expect("hash"))
        .expect("hash");
    Spawned { child, options }
}

#[tokio::test]
async fn kill_9_loses_no_acked_op() {
    let dir = tempfile::tempdir().expect("tempdir");
    let room = "s/c/crash";
    let tok = token(room, "ada", "teacher", 3600);
    let mut first = spawn_binary(dir.path()).await;
    let conn = within("connect", Connection::connect(&first.options, &tok, "ada-1")).await.expect("connect");
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

    let second = spawn_binary(dir.path()).await;
    let conn =
        within("reconnect", Connection::connect(&second.options, &tok, "ada-2")).await.expect("connect");
    within("rejoin", conn.join(room, None)).await.expect("join");
    let snapshot = within("snapshot", conn.snapshot()).await.expect("snapshot");
    let restored = Board::new(2);
    restored.import(&snapshot.data);
    let present: BTreeSet<String> = restored.keys().into_iter().collect();
    let missing: Vec<u64> =
        acked.iter().copied().filter(|op| !present.contains(&format!("op-{op}"))).collect();
    assert!(missing.is_empty(), "acked ops lost after kill -9: {missing:?}");
    // Ops are committed in order, so what survived is a prefix of what was sent.
    assert!(present.len() >= acked.len());
}
