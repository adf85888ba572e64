//! Cluster mode's presence relay: members, cursors and presence of one room across nodes, on
//! core NATS, against a real nats-server, real servers in process and, where one must die,
//! the `easel` binary.

use easel_proto::datagram::{Cursor, Status, Tool};
use easel_proto::message::{Join, Participant};
use easel_proto::{Datagram, Message};
use easel_transport::client::{Connection, RoomStream, Transport};

use crate::cluster::{Nats, metrics, node, node_with};
use crate::harness::{TestServer, expect_message, token, within};
use crate::spawned::Spawned;

const ROOM: &str = "uni-a/physics-2/2026.11.28";

/// Connects to `server` and joins `ROOM` as `user` shown as `name`.
async fn member(server: &TestServer, user: &str, name: &str) -> (Connection, RoomStream) {
    let conn = server.connect(Transport::Quic, user, "student", ROOM).await;
    let join = Join { room: ROOM.into(), name: name.into(), since: None };
    let stream = within("join", conn.join_with(join)).await.expect("join");
    (conn, stream)
}

/// Reads membership frames until `user` is listed; returns it as this node numbers it.
async fn until_listed(stream: &mut RoomStream, user: &str) -> Participant {
    crate::harness::until_listed(stream, &[], user).await
}

/// Reads membership frames until `index` is gone.
async fn until_gone(stream: &mut RoomStream, index: u16) {
    expect_message(stream, &format!("{index} gone"), |m| match m {
        Message::Participants(p) => p.left.iter().any(|l| l.index == index).then_some(()),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_two_nodes_see_each_other_move_and_leave() {
    let nats = Nats::start().await;
    let (a, b) = (node(&nats, "a").await, node(&nats, "b").await);
    let (ada, mut room_a) = member(&a, "ada", "Ada Lovelace").await;
    let (bob, mut room_b) = member(&b, "bob", "Bob Dylan").await;

    let ada_at_b = until_listed(&mut room_b, "ada").await;
    assert_eq!(ada_at_b.name, "Ada Lovelace");
    let bob_at_a = until_listed(&mut room_a, "bob").await;
    assert_eq!(bob_at_a.name, "Bob Dylan");
    assert_ne!(ada_at_b.index, room_b.joined().participant, "b numbers ada in its own space");

    let slot = room_a.joined().slot;
    ada.send_datagram(&Datagram::from(Cursor { slot, seq: 1, x: 321, y: -45 })).expect("cursor");
    within("ada's cursor at bob", async {
        loop {
            let Datagram::CursorBatch(batch) = bob.recv_datagram().await.expect("datagram") else { continue };
            if batch.cursors.iter().any(|c| c.participant == ada_at_b.index && (c.x, c.y) == (321, -45)) {
                return;
            }
        }
    })
    .await;

    room_a.finish().await.expect("ada leaves");
    until_gone(&mut room_b, ada_at_b.index).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_members_are_away_then_leave_after_the_resume_grace() {
    let nats = Nats::start().await;
    // A grace well inside ada's presence TTL (she sends no heartbeats here).
    let a = node_with(&nats, "a", |c| c.resume_grace = std::time::Duration::from_secs(1)).await;
    let (ada, mut room_a) = member(&a, "ada", "Ada").await;

    let dir = tempfile::tempdir().expect("tempdir");
    let flags = ["--cluster", &nats.url, "--node-id", "b", "--cluster-heartbeat-ms", "100"];
    let mut b = Spawned::start_logging(dir.path(), "warn", &flags).await;
    let bob = within(
        "connect to b",
        Connection::connect(&b.options(Transport::Quic), &token(ROOM, "bob", "student", 3600), "bob-device"),
    )
    .await
    .expect("connect");
    let _room_b = within("bob joins on b", bob.join(ROOM, None)).await.expect("join");
    let bob_at_a = until_listed(&mut room_a, "bob").await;

    b.child.kill().await.expect("kill -9 b");
    // Counted out: away with his pointer hidden (he may resume on another node), not gone.
    within("bob away at ada", async {
        loop {
            let Datagram::PresenceBatch(batch) = ada.recv_datagram().await.expect("datagram") else {
                continue;
            };
            if batch.entries.iter().any(|e| {
                e.participant == bob_at_a.index && e.status == Status::Away && e.tool == Tool::Hidden
            }) {
                return;
            }
        }
    })
    .await;
    // He did not come back within the grace: he leaves.
    let code = expect_message(&mut room_a, "bob gone", |m| match m {
        Message::Participants(p) => p.left.iter().find(|l| l.index == bob_at_a.index).map(|l| l.code),
        _ => None,
    })
    .await;
    assert_eq!(code, easel_proto::ErrorCode::PresenceTimeout.to_u16());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_presence_batch_is_counted_and_ignored() {
    let nats = Nats::start().await;
    let a = node(&nats, "a").await;
    let (_ada, mut room_a) = member(&a, "ada", "Ada").await;

    let client = async_nats::connect(&nats.url).await.expect("connect");
    let subject = easel_server::cluster::relay::subject(ROOM);
    client.publish(subject.clone(), "not a batch".into()).await.expect("publish");
    // A valid batch after it: once ada sees its member, a has read the garbage before it.
    let probe = easel_server::room::RelayBatch {
        origin: "probe@1".into(),
        node: "probe".into(),
        full: true,
        members: vec![easel_server::room::Relayed {
            index: 0,
            user: "pat".into(),
            session: 1,
            name: "Pat".into(),
            role: easel_proto::message::Role::Student,
            presence: None,
            cursor: None,
            in_sfu: false,
            feed: None,
        }],
        left: vec![],
    };
    let bytes = easel_server::cluster::relay::encode(&probe).expect("encode");
    client.publish(subject, bytes.into()).await.expect("publish");
    client.flush().await.expect("flush");

    assert_eq!(until_listed(&mut room_a, "pat").await.name, "Pat");
    let m = metrics(a.server.http_addr()).await;
    assert_eq!(m["easel_cluster_nats_errors_total{kind=\"malformed\"}"], 1.0, "{m:?}");
}
