//! Cluster rooms' snapshots: a room's board and classroom stored in the object store every
//! `--snapshot-every` log messages, its subject purged behind them, and nodes loading the
//! room from them, against a real nats-server, real servers in process and, where one must
//! die, the `easel` binary.

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream;
use easel_proto::message::{ModAction, Moderate, PollResults, PollStart};
use easel_proto::{ErrorCode, Message};
use easel_server::cluster::log::{STREAM, subject, token};
use easel_server::cluster::snapshot::{BUCKET, Marks};
use easel_server::config::ClusterConfig;
use easel_transport::client::{ClientError, Connection, Options, Transport};
use futures::TryStreamExt as _;

use crate::cluster::{Nats, metrics};
use crate::cluster_class::{ROOM, Record, answer, attendance, chats, history, member, say};
use crate::cluster_rooms::receive;
use crate::harness::{Board, Relay, TestServer, expect_message, send_acked, token as jwt, within};
use crate::spawned::Spawned;

/// A node storing the rooms' snapshots every `every` log messages.
async fn node(nats: &Nats, id: &str, every: u64) -> TestServer {
    node_at(&nats.url, id, every).await
}

/// The same, reaching NATS at `url`.
async fn node_at(url: &str, id: &str, every: u64) -> TestServer {
    let heartbeat = Duration::from_millis(100);
    let config = ClusterConfig { node_id: Some(id.into()), heartbeat, ..ClusterConfig::new(url) };
    TestServer::start_with(move |c| {
        c.cluster = Some(config);
        c.snapshot_every = every;
    })
    .await
}

/// The room's board as a newcomer joining at `options` gets it.
async fn board_at(options: &Options, user: &str) -> Vec<String> {
    let conn = within("connect", Connection::connect(options, &jwt(ROOM, user, "viewer", 3600), user))
        .await
        .expect("connect");
    let _stream = within("join", conn.join(ROOM, None)).await.expect("join");
    let snapshot = within("the newcomer's snapshot", conn.snapshot()).await.expect("snapshot");
    let board = Board::new(99);
    board.import(&snapshot.data);
    board.keys()
}

/// The test's own view of NATS: the room's stream and snapshot bucket.
struct Store {
    js: jetstream::Context,
}

impl Store {
    async fn open(nats: &Nats) -> Self {
        Self { js: jetstream::new(async_nats::connect(&nats.url).await.expect("connect")) }
    }

    /// The room's snapshot object's marks, if there is one.
    async fn marks(&self) -> Option<Marks> {
        let bucket = self.js.get_object_store(BUCKET).await.expect("bucket");
        bucket.info(token(ROOM)).await.ok().map(|info| Marks::of(&info.metadata))
    }

    /// How many messages the room's subject holds, and the stream's last sequence (the room
    /// is the only one in the stream: its messages are its sequences).
    async fn held(&self) -> (u64, u64) {
        let mut stream = self.js.get_stream(STREAM).await.expect("stream");
        let last = stream.info().await.expect("info").state.last_sequence;
        let mut subjects = stream.info_with_subjects(subject(ROOM)).await.expect("subjects");
        let held = subjects.try_next().await.expect("subjects").map_or(0, |(_, n)| n as u64);
        (held, last)
    }

    /// Waits until the room's subject was purged; returns what it holds and the last sequence.
    async fn until_purged(&self) -> (u64, u64) {
        within("the room's subject is purged", async {
            loop {
                let (held, last) = self.held().await;
                if held < last {
                    return (held, last);
                }
                tokio::task::yield_now().await;
            }
        })
        .await
    }

    /// Overwrites the room's snapshot with `bytes`, keeping its marks (its bytes went bad).
    async fn corrupt(&self, marks: Marks, bytes: &[u8]) {
        let bucket = self.js.get_object_store(BUCKET).await.expect("bucket");
        let meta = jetstream::object_store::ObjectMetadata {
            name: token(ROOM),
            metadata: marks.metadata(),
            ..Default::default()
        };
        bucket.put(meta, &mut &bytes[..]).await.expect("put");
    }
}

/// The open poll's results a member joining at `server` gets.
async fn live_results(server: &TestServer, user: &str) -> PollResults {
    let conn = server.connect(Transport::Quic, user, "student", ROOM).await;
    let mut stream = within("join", conn.join(ROOM, None)).await.expect("join");
    expect_message(&mut stream, "the open poll's counts", |m| match m {
        Message::PollResults(r) => Some(r),
        _ => None,
    })
    .await
}

/// `tess` and `ada`'s attendance records at `server`.
async fn attendance_of_the_first_two(server: &TestServer) -> Vec<Record> {
    attendance(server).await.into_iter().filter(|(u, _)| u == "tess" || u == "ada").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_node_loads_the_board_and_classroom_of_a_snapshotted_room() {
    let nats = Nats::start().await;
    let store = Store::open(&nats).await;
    let a = node(&nats, "a", 4).await;
    let (_ct, mut tess) = member(&a, "tess", "teacher").await;
    let (_ca, mut ada) = member(&a, "ada", "student").await;
    let mut board = Board::new(1);
    for op in 1..=10 {
        send_acked(&mut tess, board.put(op, &format!("k{op:02}"), 0)).await;
    }
    for i in 1..=3 {
        say(&mut ada, i, &format!("ada {i}")).await;
    }
    chats(&mut ada, 3).await;
    let start = PollStart {
        request: 1,
        question: "Ready?".into(),
        options: vec!["no".into(), "yes".into()],
        multiple: false,
        duration_ms: 0,
        live: true,
    };
    tess.send(&Message::from(start)).await.expect("start");
    let poll_id = expect_message(&mut ada, "the poll", |m| match m {
        Message::PollStarted(p) => Some(p.poll_id),
        _ => None,
    })
    .await;
    answer(&mut ada, poll_id, 7, 1).await;
    let muted =
        Moderate { target: ada.joined().participant, action: ModAction::MuteChat, reason: "quiet".into() };
    tess.send(&Message::from(muted)).await.expect("moderate");
    expect_message(&mut tess, "the mute", |m| matches!(m, Message::Moderated(_)).then_some(())).await;

    let (held, last) = store.until_purged().await;
    let marks = store.marks().await.expect("a snapshot object");
    assert!(marks.floor.is_some_and(|f| f > 1), "{marks:?}");
    assert!(held < last, "the subject holds {held} of {last}");

    // After the purge (in a later snapshot, or in the log only).
    send_acked(&mut tess, board.put(11, "after", 0)).await;
    say(&mut tess, 1, "tess after").await;
    let said = chats(&mut ada, 1).await;
    assert_eq!(said[0].1, "tess after");

    let c = node(&nats, "c", 4).await;
    assert_eq!(board_at(&c.options(Transport::Quic), "cyd").await, board.keys(), "the same board");
    assert_eq!(history(&c, "dan").await, history(&a, "eve").await, "the same chat history");
    let results = live_results(&c, "fay").await;
    assert_eq!((results.poll_id, results.counts, results.respondents), (poll_id, vec![0, 1], 1));
    // Ada's mute follows her to c.
    let (_ca2, mut ada_at_c) = member(&c, "ada", "student").await;
    say(&mut ada_at_c, 9, "let me speak").await;
    let code = expect_message(&mut ada_at_c, "the refusal", |m| match m {
        Message::Fault(f) => Some(f.code),
        _ => None,
    })
    .await;
    assert_eq!(code, ErrorCode::ChatMuted.to_u16());
    // Tess and ada are still present, at both nodes alike.
    let at_a = attendance_of_the_first_two(&a).await;
    assert!(at_a.iter().all(|(_, i)| matches!(i[..], [(_, None)])), "{at_a:?}");
    assert_eq!(attendance_of_the_first_two(&c).await, at_a);
}

/// What the room's subject holds past the snapshot is written through a node that stores no
/// snapshots while the snapshotting one is dead: the node started again must replay it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_and_started_again_loads_the_room_from_its_snapshot_and_the_log_after_it() {
    let nats = Nats::start().await;
    let store = Store::open(&nats).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let flags =
        ["--cluster", &nats.url, "--node-id", "a", "--cluster-heartbeat-ms", "100", "--snapshot-every", "3"];
    let mut a = Spawned::start_logging(dir.path(), "warn", &flags).await;
    let conn = within(
        "connect",
        Connection::connect(&a.options(Transport::Quic), &jwt(ROOM, "ada", "teacher", 3600), "ada-device"),
    )
    .await
    .expect("connect");
    let mut desk = within("join", conn.join(ROOM, None)).await.expect("join");
    let mut board = Board::new(1);
    for op in 1..=9 {
        send_acked(&mut desk, board.put(op, &format!("k{op:02}"), 0)).await;
    }
    say(&mut desk, 1, "before").await;
    chats(&mut desk, 1).await;
    store.until_purged().await;
    a.child.kill().await.expect("kill -9 a");

    let b = node(&nats, "b", 1_000_000).await;
    let (_cb, mut bob) = member(&b, "bob", "teacher").await;
    send_acked(&mut bob, board.put(10, "after", 0)).await;
    say(&mut bob, 1, "after").await;
    chats(&mut bob, 1).await;
    let upto = store.marks().await.and_then(|m| m.upto).expect("a snapshot");
    let (_, last) = store.held().await;
    assert!(upto < last, "the snapshot covers {upto} of {last}: the rest is in the log only");

    let a = Spawned::start_again_with(dir.path(), &a, &flags).await;
    assert_eq!(board_at(&a.options(Transport::Quic), "cyd").await, board.keys());
    let conn = within(
        "connect",
        Connection::connect(&a.options(Transport::Quic), &jwt(ROOM, "dan", "student", 3600), "dan-device"),
    )
    .await
    .expect("connect");
    let mut stream = within("join", conn.join(ROOM, None)).await.expect("join");
    let page = expect_message(&mut stream, "the chat page", |m| match m {
        Message::ChatPage(p) => Some(p),
        _ => None,
    })
    .await;
    let texts: Vec<String> = page.messages.into_iter().map(|m| m.text).collect();
    assert_eq!(texts, ["before", "after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_snapshot_is_counted_and_the_whole_log_replayed() {
    let nats = Nats::start().await;
    let store = Store::open(&nats).await;
    let a = node(&nats, "a", 5).await;
    let (_ct, mut tess) = member(&a, "tess", "teacher").await;
    let mut board = Board::new(1);
    for op in 1..=5 {
        send_acked(&mut tess, board.put(op, &format!("k{op:02}"), 0)).await;
    }
    say(&mut tess, 1, "hello").await;
    chats(&mut tess, 1).await;
    // Shut down, so nothing stores a snapshot over the test's.
    a.server.shutdown().await;
    let marks = store.marks().await.expect("a snapshot object");
    assert_eq!(marks.floor, Some(1), "one snapshot: nothing purged yet");
    store.corrupt(marks, b"not a snapshot at all").await;

    let c = node(&nats, "c", 5).await;
    assert_eq!(board_at(&c.options(Transport::Quic), "cyd").await, board.keys());
    let said: Vec<String> = history(&c, "dan").await.into_iter().map(|(_, t)| t).collect();
    assert_eq!(said, ["hello"]);
    let m = metrics(c.server.http_addr()).await;
    assert_eq!(m["easel_cluster_nats_errors_total{kind=\"snapshot\"}"], 1.0, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_snapshot_whose_history_was_purged_refuses_the_room() {
    let nats = Nats::start().await;
    let store = Store::open(&nats).await;
    let a = node(&nats, "a", 3).await;
    let (_ct, mut tess) = member(&a, "tess", "teacher").await;
    let mut board = Board::new(1);
    for op in 1..=8 {
        send_acked(&mut tess, board.put(op, &format!("k{op:02}"), 0)).await;
    }
    store.until_purged().await;
    a.server.shutdown().await;
    let marks = store.marks().await.expect("a snapshot object");
    store.corrupt(marks, b"not a snapshot at all").await;

    let c = node(&nats, "c", 3).await;
    let conn = c.connect(Transport::Quic, "cyd", "student", ROOM).await;
    match within("the join's answer", conn.join(ROOM, None)).await {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, ErrorCode::StorageUnavailable),
        other => panic!("a room without its history was served: {:?}", other.map(|s| s.joined().participant)),
    }
    let m = metrics(c.server.http_addr()).await;
    assert_eq!(m["easel_cluster_nats_errors_total{kind=\"snapshot\"}"], 1.0, "{m:?}");
}

/// A node that could not read the room's log while two snapshots were stored and the subject
/// purged past what it had read lets the room's members go and loads the room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_nats_past_a_purge_closes_the_room_and_loads_it_again() {
    let nats = Nats::start().await;
    let store = Store::open(&nats).await;
    let addr: SocketAddr = nats.url.trim_start_matches("nats://").parse().expect("NATS address");
    let relay = Relay::start(addr).await;
    let a = node_at(&format!("nats://{}", relay.addr), "a", 1_000_000).await;
    let b = node(&nats, "b", 3).await;
    let (_ca, mut ada) = member(&a, "ada", "student").await;
    let (_cb, mut tess) = member(&b, "tess", "teacher").await;
    let (mut board, mut at_ada) = (Board::new(1), Board::new(2));
    send_acked(&mut tess, board.put(1, "k01", 0)).await;
    receive(&mut ada, &mut at_ada, "k01").await;
    // a has read the room's log this far: nothing else was published since.
    let (_, read) = store.held().await;

    relay.cut(true);
    for op in 2..=9 {
        send_acked(&mut tess, board.put(op, &format!("k{op:02}"), 0)).await;
    }
    within("the subject is purged past what a read", async {
        while store.marks().await.and_then(|m| m.floor).is_none_or(|floor| floor <= read + 1) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    relay.restore();

    expect_message(&mut ada, "ada let go", |m| matches!(m, Message::Left(_)).then_some(())).await;
    assert_eq!(board_at(&a.options(Transport::Quic), "cyd").await, board.keys(), "loaded again, whole");
    let m = metrics(a.server.http_addr()).await;
    assert_eq!(m["easel_cluster_nats_errors_total{kind=\"snapshot\"}"], 1.0, "{m:?}");
}
