//! Cluster mode when a node dies or NATS goes away (issue 15): clients move to another node
//! and resume there, no acked write is lost, a resume token works once across nodes, and a
//! NATS restart under load is reported and recovered from without restarting a node. Against
//! a real nats-server, `easel` processes where one must be killed, and the SDK where the
//! client's side (its node list, its resume) is what is tested.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use easel_client::{Client, Event};
use easel_proto::{ErrorCode, Message};
use easel_transport::client::{Connection, RoomStream, Transport};
use tokio::sync::mpsc;

use crate::cluster::{Nats, health, metrics, node, node_with, until};
use crate::cluster_class::{Record, attendance_at};
use crate::harness::{Board, expect_message, http_get, send_acked, token, within};
use crate::spawned::Spawned;

const ROOM: &str = "uni-a/chem-3/2026.11.28";

/// One certificate for every node, so one pinned hash reaches them all (as one CA would).
struct Tls {
    dir: tempfile::TempDir,
}

impl Tls {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).expect("write cert");
        std::fs::write(dir.path().join("key.pem"), cert.key_pair.serialize_pem()).expect("write key");
        Self { dir }
    }

    fn flag(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().expect("utf-8").to_owned()
    }
}

/// An `easel` process in the cluster, as node `id`, with a heartbeat of 100 ms.
async fn spawn_node(nats: &Nats, dir: &Path, id: &str, tls: &Tls) -> Spawned {
    let (cert, key) = (tls.flag("cert.pem"), tls.flag("key.pem"));
    let flags = [
        "--cluster",
        &nats.url,
        "--node-id",
        id,
        "--cluster-heartbeat-ms",
        "100",
        "--cert",
        &cert,
        "--key",
        &key,
    ];
    Spawned::start_logging(dir, "warn", &flags).await
}

fn quic_url(node: &Spawned) -> String {
    format!("easel+quic://{}", node.ready["quic"].as_str().expect("quic address"))
}

/// An SDK client of `user` given every URL of `urls`; its events go to the returned channel.
async fn sdk(user: &str, urls: &[String], hash: &str) -> (Arc<Client>, mpsc::UnboundedReceiver<Event>) {
    let client = Client::builder(token(ROOM, user, "teacher", 3600))
        .cert_hash(hash)
        .expect("hash")
        .client_id(format!("{user}-device"))
        // A dead node is noticed and passed quickly; none of these is asserted on.
        .idle_timeout(std::time::Duration::from_secs(1))
        .attempt_timeout(std::time::Duration::from_secs(2))
        .backoff(std::time::Duration::from_millis(20), std::time::Duration::from_millis(200))
        .connect_nodes(urls)
        .await
        .expect("connect");
    let client = Arc::new(client);
    let (tx, rx) = mpsc::unbounded_channel();
    let reader = client.clone();
    tokio::spawn(async move {
        while let Some(event) = reader.next_event().await {
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    (client, rx)
}

/// Reads `events` (keeping each in `seen`) until `want` matches one.
async fn until_event<T>(
    events: &mut mpsc::UnboundedReceiver<Event>,
    seen: &mut Vec<Event>,
    what: &str,
    mut want: impl FnMut(&Event) -> Option<T>,
) -> T {
    within(what, async {
        loop {
            let event = events.recv().await.unwrap_or_else(|| panic!("client closed: {what}"));
            let found = want(&event);
            seen.push(event);
            if let Some(t) = found {
                return t;
            }
        }
    })
    .await
}

/// Open QUIC sessions on the node at `http`.
async fn sessions(http: std::net::SocketAddr) -> f64 {
    let (_, text) = http_get(http, "/metrics").await;
    text.lines()
        .filter(|l| l.starts_with("easel_sessions{"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// The keys of the room's board a newcomer on `node` gets.
async fn newcomer_keys(options: &easel_transport::client::Options, user: &str) -> BTreeSet<String> {
    let conn =
        within("newcomer connects", Connection::connect(options, &token(ROOM, user, "viewer", 3600), user))
            .await
            .expect("connect");
    let _stream = within("newcomer joins", conn.join(ROOM, None)).await.expect("join");
    let snapshot = within("the newcomer's snapshot", conn.snapshot()).await.expect("snapshot");
    let board = Board::new(99);
    board.import(&snapshot.data);
    board.keys().into_iter().collect()
}

fn doc_keys(doc: &loro::LoroDoc) -> BTreeSet<String> {
    doc.get_map("ops").keys().map(|k| k.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_client_resumes_on_another_node_keeping_its_place_and_every_acked_edit() {
    const EDITS: usize = 15;
    let nats = Nats::start().await;
    let tls = Tls::new();
    let (dir_a, dir_b) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let mut nodes =
        [spawn_node(&nats, dir_a.path(), "a", &tls).await, spawn_node(&nats, dir_b.path(), "b", &tls).await];
    let hash = nodes[0].ready["cert_sha256"].as_str().expect("hash").to_owned();
    assert_eq!(nodes[1].ready["cert_sha256"], nodes[0].ready["cert_sha256"], "one certificate");
    let urls: Vec<String> = nodes.iter().map(quic_url).collect();

    // Ada knows both nodes; whichever she lands on is the one to die.
    let (ada, mut ada_events) = sdk("ada", &urls, &hash).await;
    let room = within("ada joins", ada.join(ROOM)).await.expect("join");
    let on_first = sessions(nodes[0].http_addr()).await == 1.0;
    assert_eq!(sessions(nodes[usize::from(on_first)].http_addr()).await, 0.0, "ada is on one node");
    let (dead, alive) = if on_first { (0, 1) } else { (1, 0) };

    // Bob, on the node that stays, watches ada.
    let (bob, mut bob_events) = sdk("bob", &urls[alive..=alive], &hash).await;
    let _bob_room = within("bob joins", bob.join(ROOM)).await.expect("join");
    let mut bob_seen = Vec::new();
    let ada_at_bob = until_event(&mut bob_events, &mut bob_seen, "bob sees ada", |e| match e {
        Event::Joined { participants, .. } => participants.iter().find(|p| p.user == "ada").map(|p| p.index),
        Event::ParticipantJoined { participant, .. } => {
            (participant.user == "ada").then_some(participant.index)
        }
        _ => None,
    })
    .await;

    // Ada writes one edit at a time, each acked before the next; the node dies after a few.
    let mut ada_seen = Vec::new();
    let mut acked = BTreeSet::new();
    for i in 0..EDITS {
        if i == EDITS / 3 {
            nodes[dead].child.kill().await.expect("kill -9");
        }
        let key = format!("k{i:02}");
        room.edit(|doc| doc.get_map("ops").insert(&key, i as i64)).expect("edit");
        until_event(&mut ada_events, &mut ada_seen, &format!("{key} acked"), |e| {
            matches!(e, Event::Acked { .. }).then_some(())
        })
        .await;
        acked.insert(key);
    }

    let resumed_session = ada_seen.iter().any(|e| matches!(e, Event::Connected { resumed: true, .. }));
    assert!(resumed_session, "the session resumed on the other node: {ada_seen:?}");
    let rejoined = ada_seen.iter().rev().find_map(|e| match e {
        Event::Joined { participant, resumed, .. } => Some((*participant, *resumed)),
        _ => None,
    });
    assert_eq!(rejoined, Some((ada_at_bob, true)), "her place kept: bob's number for her, resumed");

    // Ada's pointer reaches bob under the number he knew her by.
    within("ada's cursor at bob", async {
        loop {
            room.cursor(40.0, 50.0);
            let event = bob_events.recv().await.expect("bob's events");
            let hers = matches!(&event, Event::Cursors { cursors, .. } if cursors.iter().any(|c| c.participant == ada_at_bob));
            bob_seen.push(event);
            if hers {
                return;
            }
        }
    })
    .await;
    for event in &bob_seen {
        assert!(
            !matches!(event, Event::ParticipantLeft { index, .. } if *index == ada_at_bob),
            "bob never saw ada leave: {bob_seen:?}"
        );
    }
    let joins = bob_seen
        .iter()
        .filter(|e| matches!(e, Event::ParticipantJoined { participant, .. } if participant.user == "ada"));
    assert!(joins.count() <= 1, "nor join again: {bob_seen:?}");

    // Every acked edit is on the surviving node: in what a newcomer there gets, and in ada's
    // document (which the server's resync brought up to date).
    assert!(doc_keys(room.doc()).is_superset(&acked));
    let keys = newcomer_keys(&nodes[alive].options(Transport::Quic), "cyd").await;
    assert!(keys.is_superset(&acked), "acked {acked:?}, on the surviving node {keys:?}");

    // Her attendance runs on across the move, one interval, and her leave ends it: her
    // membership at the dead node was ended (no node of hers was left to say so).
    let http = nodes[alive].http_addr();
    let ada_in = |users: &[Record]| users.iter().find(|(u, _)| u == "ada").map(|(_, i)| i.clone());
    let open = ada_in(&attendance_at(http, ROOM).await);
    assert!(matches!(open.as_deref(), Some([(_, None)])), "one open interval: {open:?}");
    room.leave().expect("ada leaves");
    within("ada's interval closes", async {
        while !matches!(ada_in(&attendance_at(http, ROOM).await).as_deref(), Some([(_, Some(_))])) {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// Resume tokens are claimed atomically across nodes: of two nodes asked at once, one
/// resumes the session; the token is used up for every node after that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_token_resumes_once_across_nodes() {
    let nats = Nats::start().await;
    let (a, b, c) = (node(&nats, "a").await, node(&nats, "b").await, node(&nats, "c").await);
    let jwt = token(ROOM, "ada", "student", 3600);
    let live = within("connect", Connection::connect(&a.options(Transport::Quic), &jwt, "ada-device"))
        .await
        .expect("connect");
    let resume_token = live.welcome().resume_token.clone();
    let session_id = live.welcome().session_id;

    // The entry is written in the background once Welcome is out.
    let js = async_nats::jetstream::new(async_nats::connect(&nats.url).await.expect("connect"));
    within("the resume entry is stored", async {
        loop {
            if let Ok(bucket) = js.get_key_value(easel_server::cluster::resume::BUCKET).await
                && bucket
                    .get(easel_server::cluster::resume::key(&resume_token))
                    .await
                    .ok()
                    .flatten()
                    .is_some()
            {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;

    let resume = |server: &crate::harness::TestServer| {
        let options = server.options(Transport::Quic);
        let (jwt, token) = (jwt.clone(), resume_token.clone());
        async move {
            let conn = Connection::connect_resuming(&options, &jwt, "ada-device", Some(token))
                .await
                .expect("connect");
            (conn.welcome().resumed, conn.welcome().session_id, conn)
        }
    };
    let ((on_b, id_b, _cb), (on_c, id_c, _cc)) =
        within("two claims at once", async { tokio::join!(resume(&b), resume(&c)) }).await;
    assert!(on_b ^ on_c, "exactly one node resumed it (b: {on_b}, c: {on_c})");
    let winner = if on_b { id_b } else { id_c };
    assert_eq!(winner, session_id, "the same session");
    let (again, _, _ca) = within("a third claim", resume(&a)).await;
    assert!(!again, "the token is used up, on its own node too");
}

/// Sends `edit` (op `op`) and returns whether it was acked (false: refused as unstorable).
async fn try_edit(stream: &mut RoomStream, edit: &Message, op: u64) -> bool {
    stream.send(edit).await.expect("send");
    expect_message(stream, "an answer", |m| match m {
        Message::Ack(a) if a.op_ids.contains(&op) => Some(true),
        Message::Reject(r) if r.op_id == op => {
            assert_eq!(r.code, ErrorCode::StorageUnavailable.to_u16(), "{r:?}");
            Some(false)
        }
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_under_load_is_reported_and_recovered_without_restarting_a_node() {
    const DURING: u64 = 2;
    let mut nats = Nats::start().await;
    // These raw clients send no heartbeats: on a loaded machine NATS's restart may take longer
    // than the default presence TTL, which would evict them.
    let long_ttl = |c: &mut easel_server::ServerConfig| c.presence_ttl = std::time::Duration::from_secs(600);
    let (a, b) = (node_with(&nats, "a", long_ttl).await, node_with(&nats, "b", long_ttl).await);
    let (_ca, mut sa) = a.member(Transport::Quic, "ada", "teacher", ROOM).await;
    let (_cb, mut sb) = b.member(Transport::Quic, "bob", "teacher", ROOM).await;
    let (mut board_a, mut board_b) = (Board::new(1), Board::new(2));
    send_acked(&mut sa, board_a.put(1, "a-before", 1)).await;
    send_acked(&mut sb, board_b.put(1, "b-before", 1)).await;
    for server in [&a, &b] {
        until(server.server.http_addr(), "ok before", |h| h["status"] == "ok").await;
    }

    nats.kill();
    for server in [&a, &b] {
        let http = server.server.http_addr();
        // `health` checks the HTTP status goes with it: 503 while degraded.
        let h = until(http, "NATS lost is reported", |h| h["cluster"]["nats_connected"] == false).await;
        assert_eq!(h["status"], "degraded");
        assert_eq!(metrics(http).await["easel_cluster_nats_connected"], 0.0);
    }
    // Both keep writing while NATS is away: nothing is acked.
    let mut pending = Vec::new();
    for op in 2..2 + DURING {
        let (ea, eb) = (board_a.put(op, &format!("a{op:02}"), 0), board_b.put(op, &format!("b{op:02}"), 0));
        // Each refusal waits out the PubAck timeout (2 s): both nodes at once.
        let (acked_a, acked_b) = tokio::join!(try_edit(&mut sa, &ea, op), try_edit(&mut sb, &eb, op));
        assert!(!acked_a, "a acked a{op:02} without NATS");
        assert!(!acked_b, "b acked b{op:02} without NATS");
        pending.push((op, ea, eb));
    }

    // Same data dir: the stream is back. Resends (as the SDK makes them) go through.
    nats.restart().await;
    for (op, ea, eb) in &pending {
        within("resends are acked", async {
            while !try_edit(&mut sa, ea, *op).await {}
            while !try_edit(&mut sb, eb, *op).await {}
        })
        .await;
    }
    for server in [&a, &b] {
        let http = server.server.http_addr();
        until(http, "ok again", |h| h["status"] == "ok").await;
        assert_eq!(metrics(http).await["easel_cluster_nats_connected"], 1.0);
        assert_eq!(health(http).await["cluster"]["nats_connected"], true);
    }
    let mut all: BTreeSet<String> = ["a-before".to_owned(), "b-before".to_owned()].into();
    all.extend((2..2 + DURING).flat_map(|op| [format!("a{op:02}"), format!("b{op:02}")]));
    for (server, user) in [(&a, "cyd"), (&b, "dan")] {
        within("both nodes converge", async {
            loop {
                let keys = newcomer_keys(&server.options(Transport::Quic), user).await;
                assert!(keys.is_subset(&all), "{keys:?}");
                if keys == all {
                    return;
                }
                // Not yet imported from the stream: ask again (bounded by `within`).
                tokio::task::yield_now().await;
            }
        })
        .await;
    }
}
