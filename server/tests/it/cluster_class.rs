//! Cluster mode's classroom: chat, polls, hands and moderation of one room with members on
//! several nodes, ordered by the room log on JetStream, against a real nats-server and real
//! servers in process.

use std::collections::HashMap;

use easel_proto::message::{
    ChatMessage, ChatSend, HandRaise, ModAction, Moderate, PollAnswer, PollResults, PollStart,
};
use easel_proto::{ErrorCode, Message};
use easel_transport::client::{ClientError, Connection, RoomStream, Transport};

use crate::cluster::{Nats, metrics, node, node_unloading};

use crate::harness::{TestServer, everyone, expect_message, within};

pub const ROOM: &str = "uni-a/chem-3/2026.11.28";

pub async fn member(server: &TestServer, user: &str, role: &str) -> (Connection, RoomStream) {
    server.member(Transport::Quic, user, role, ROOM).await
}

/// Reads until `user` is listed; returns its number as this member's node numbers it.
async fn listed(stream: &mut RoomStream, user: &str) -> u16 {
    expect_message(stream, &format!("{user} listed"), |m| match m {
        Message::Participants(p) => p.joined.into_iter().find(|j| j.user == user).map(|j| j.index),
        _ => None,
    })
    .await
}

/// Joins as `user`; returns who was listed on the join, by this member's numbers.
async fn joined(
    server: &TestServer,
    user: &str,
    role: &str,
) -> (Connection, RoomStream, HashMap<u16, String>) {
    let conn = server.connect(Transport::Quic, user, role, ROOM).await;
    let mut stream = within("join", conn.join(ROOM, None)).await.expect("join");
    let names = everyone(&mut stream).await.into_iter().map(|p| (p.index, p.user)).collect();
    (conn, stream, names)
}

/// Reads membership frames into `names` until every one of `users` is listed.
async fn until_everyone(stream: &mut RoomStream, names: &mut HashMap<u16, String>, users: &[&str]) {
    while !users.iter().all(|u| names.values().any(|n| n == u)) {
        let (joined, left) = expect_message(stream, "everyone listed", |m| match m {
            Message::Participants(p) => Some((p.joined, p.left)),
            _ => None,
        })
        .await;
        for l in left {
            names.remove(&l.index);
        }
        names.extend(joined.into_iter().map(|p| (p.index, p.user)));
    }
}

/// Reads chat echoes until `n` have come; returns them in order.
pub async fn chats(stream: &mut RoomStream, n: usize) -> Vec<(u64, String)> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let ChatMessage { id, text, .. } = expect_message(stream, "a chat message", |m| match m {
            Message::ChatMessage(c) => Some(c),
            _ => None,
        })
        .await;
        seen.push((id, text));
    }
    seen
}

pub async fn say(stream: &mut RoomStream, client_msg_id: u64, text: &str) {
    let chat = ChatSend { client_msg_id, text: text.into() };
    stream.send(&Message::from(chat)).await.expect("send chat");
}

/// The chat page a member joining on `server` gets.
pub async fn history(server: &TestServer, user: &str) -> Vec<(u64, String)> {
    let conn = server.connect(Transport::Quic, user, "student", ROOM).await;
    let mut stream = within("join for the history", conn.join(ROOM, None)).await.expect("join");
    let page = expect_message(&mut stream, "the chat page on join", |m| match m {
        Message::ChatPage(p) => Some(p),
        _ => None,
    })
    .await;
    stream.finish().await.expect("leave");
    page.messages.into_iter().map(|m| (m.id, m.text)).collect()
}

/// Waits until `server` has unloaded the room (its stats are a loaded room's only).
async fn until_unloaded(server: &TestServer) {
    within("the room unloads", async {
        while room_get(server, "stats").await.0 == 200 {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_from_two_nodes_is_in_one_order_everywhere_and_in_history() {
    const EACH: u64 = 8;
    let nats = Nats::start().await;
    let idle = std::time::Duration::from_secs(1);
    let (a, b) = (node_unloading(&nats, "a", idle).await, node_unloading(&nats, "b", idle).await);
    let (_ca, mut ada) = member(&a, "ada", "student").await;
    let (_cb, mut bob) = member(&b, "bob", "student").await;
    let (_cc, mut cyd) = member(&b, "cyd", "student").await;

    // Concurrent: both send everything before reading anything.
    for i in 1..=EACH {
        say(&mut ada, i, &format!("a{i}")).await;
        say(&mut bob, i, &format!("b{i}")).await;
    }
    let n = 2 * EACH as usize;
    let at_ada = chats(&mut ada, n).await;
    assert_eq!(chats(&mut bob, n).await, at_ada, "bob on b sees ada's order");
    assert_eq!(chats(&mut cyd, n).await, at_ada, "so does cyd");
    let ids: Vec<u64> = at_ada.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=n as u64).collect::<Vec<_>>(), "ids follow the stream");

    // A fresh node replays the room log: the same history, in the same order.
    let c = node(&nats, "c").await;
    assert_eq!(history(&c, "dan").await, at_ada);

    // Everyone leaves; both nodes unload the room and load it again from the log.
    for mut s in [ada, bob, cyd] {
        s.finish().await.expect("leave");
    }
    until_unloaded(&a).await;
    until_unloaded(&b).await;
    assert_eq!(history(&a, "eve").await, at_ada, "a reloaded");
    assert_eq!(history(&b, "fay").await, at_ada, "b reloaded");
}

/// Reads until the final results of `poll_id`.
async fn final_results(stream: &mut RoomStream, poll_id: u64) -> PollResults {
    expect_message(stream, "the final results", |m| match m {
        Message::PollResults(r) if r.poll_id == poll_id && r.closed => Some(r),
        _ => None,
    })
    .await
}

pub async fn answer(stream: &mut RoomStream, poll_id: u64, attempt_id: u64, choice: u8) {
    let answer = PollAnswer { poll_id, attempt_id, choices: vec![choice] };
    stream.send(&Message::from(answer)).await.expect("answer");
    acked(stream, attempt_id).await;
}

/// Reads until the ack of answer `attempt_id`; a refusal fails the test.
pub async fn acked(stream: &mut RoomStream, attempt_id: u64) {
    expect_message(stream, "the answer's ack", |m| match m {
        Message::PollAnswered(a) if a.attempt_id == attempt_id => Some(()),
        Message::Fault(f) => panic!("answer refused: {f:?}"),
        _ => None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_answered_from_two_nodes_counts_each_attempt_once_and_closes_once() {
    let nats = Nats::start().await;
    let (a, b) = (node(&nats, "a").await, node(&nats, "b").await);
    let (_ct, mut tess) = member(&a, "tess", "teacher").await;
    let (_ca, mut ada) = member(&a, "ada", "student").await;
    let (_cb, mut bob) = member(&b, "bob", "student").await;

    // A deadline long enough for three answers on a loaded machine; the test waits for the
    // close, it does not time it.
    let start = PollStart {
        request: 5,
        question: "pH of water?".into(),
        options: vec!["6".into(), "7".into(), "8".into()],
        multiple: false,
        duration_ms: 4_000,
        live: false,
    };
    tess.send(&Message::from(start)).await.expect("start");
    let mut started = Vec::new();
    for s in [&mut tess, &mut ada, &mut bob] {
        started.push(
            expect_message(s, "the poll", |m| match m {
                Message::PollStarted(p) => Some((p.poll_id, p.closes_at_ms)),
                _ => None,
            })
            .await,
        );
    }
    assert!(started.iter().all(|s| *s == started[0]), "one poll, one deadline: {started:?}");
    let poll_id = started[0].0;

    answer(&mut ada, poll_id, 11, 1).await;
    answer(&mut bob, poll_id, 21, 1).await;
    // A resend of the same attempt (after a lost ack, say): acked again, counted once.
    answer(&mut bob, poll_id, 21, 1).await;

    let mut finals = Vec::new();
    for s in [&mut tess, &mut ada, &mut bob] {
        finals.push(final_results(s, poll_id).await);
    }
    assert!(finals.iter().all(|r| *r == finals[0]), "the same everywhere: {finals:?}");
    assert_eq!((finals[0].counts.clone(), finals[0].respondents), (vec![0, 2, 0], 2));

    // Both nodes' timers proposed the close: after a probe ordered behind both, nobody saw
    // a second final.
    say(&mut tess, 1, "probe").await;
    for s in [&mut tess, &mut ada, &mut bob] {
        let again = within("up to the probe", async {
            let mut again = 0;
            loop {
                match s.next().await.expect("stream").expect("open") {
                    Message::PollResults(r) if r.poll_id == poll_id && r.closed => again += 1,
                    Message::ChatMessage(c) if c.text == "probe" => return again,
                    _ => {}
                }
            }
        })
        .await;
        assert_eq!(again, 0, "the deadline closed the poll once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hands_raised_on_two_nodes_queue_in_one_order_everywhere() {
    let nats = Nats::start().await;
    let (a, b) = (node(&nats, "a").await, node(&nats, "b").await);
    let (_ct, mut tess, mut at_tess) = joined(&a, "tess", "teacher").await;
    let (_ca, mut ada, mut at_ada) = joined(&a, "ada", "student").await;
    let (_cb, mut bob, mut at_bob) = joined(&b, "bob", "student").await;
    let (_cc, mut cyd, mut at_cyd) = joined(&b, "cyd", "student").await;
    let streams = [&mut tess, &mut ada, &mut bob, &mut cyd];
    let mut names = [&mut at_tess, &mut at_ada, &mut at_bob, &mut at_cyd];
    for (s, names) in streams.into_iter().zip(names.iter_mut()) {
        until_everyone(s, names, &["tess", "ada", "bob", "cyd"]).await;
    }

    for s in [&mut ada, &mut bob, &mut cyd] {
        s.send(&Message::from(HandRaise {})).await.expect("raise");
    }
    let mut named = Vec::new();
    for (s, names) in [&mut tess, &mut ada, &mut bob, &mut cyd].into_iter().zip(names.iter()) {
        let queue = expect_message(s, "three hands", |m| match m {
            Message::HandQueue(q) if q.queue.len() == 3 => Some(q.queue),
            _ => None,
        })
        .await;
        named.push(queue.iter().map(|i| names.get(i).cloned().unwrap_or_default()).collect::<Vec<_>>());
    }
    assert!(named.iter().all(|q| *q == named[0]), "one order: {named:?}");
    let mut sorted = named[0].clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["ada", "bob", "cyd"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removed_from_another_node_leaves_and_cannot_rejoin_anywhere() {
    let nats = Nats::start().await;
    let (a, b) = (node(&nats, "a").await, node(&nats, "b").await);
    let (_ct, mut tess) = member(&a, "tess", "teacher").await;
    let (bob_conn, mut bob) = member(&b, "bob", "student").await;
    let bob_at_a = listed(&mut tess, "bob").await;

    let remove = Moderate { target: bob_at_a, action: ModAction::Remove, reason: "spam".into() };
    tess.send(&Message::from(remove)).await.expect("moderate");
    let (code, reason) = expect_message(&mut bob, "bob's removal", |m| match m {
        Message::Left(l) => Some((l.code, l.message)),
        _ => None,
    })
    .await;
    assert_eq!((code, reason.as_str()), (ErrorCode::Removed.to_u16(), "spam"));
    let moderated = expect_message(&mut tess, "the teacher hears it", |m| match m {
        Message::Moderated(m) => Some(m),
        _ => None,
    })
    .await;
    // Bob's leave can reach a by presence (core NATS) before a applies the removal from the
    // log: the echo still names him by the number he had at a.
    assert_eq!((moderated.target, moderated.action), (bob_at_a, ModAction::Remove));

    let refused = |r: Result<RoomStream, ClientError>| match r {
        Err(ClientError::Refused { code, .. }) => code,
        other => panic!("rejoin not refused: {:?}", other.map(|s| s.joined().participant)),
    };
    assert_eq!(refused(within("rejoin at b", bob_conn.join(ROOM, None)).await), ErrorCode::Removed);
    let at_a = a.connect(Transport::Quic, "bob", "student", ROOM).await;
    assert_eq!(refused(within("rejoin at a", at_a.join(ROOM, None)).await), ErrorCode::Removed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_classroom_event_is_counted_and_ignored() {
    let nats = Nats::start().await;
    let a = node(&nats, "a").await;
    let (_ca, mut ada) = member(&a, "ada", "student").await;
    say(&mut ada, 1, "before").await;
    assert_eq!(chats(&mut ada, 1).await, [(1, "before".to_owned())]);

    let js = async_nats::jetstream::new(async_nats::connect(&nats.url).await.expect("connect"));
    let publish = |origin: &str, payload: Vec<u8>| {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(easel_server::cluster::log::ORIGIN, origin);
        headers.insert(easel_server::cluster::class::KIND, easel_server::cluster::class::CLASS);
        let (js, subject) = (js.clone(), easel_server::cluster::log::subject(ROOM));
        async move {
            js.publish_with_headers(subject, headers, payload.into())
                .await
                .expect("publish")
                .await
                .expect("ack");
        }
    };
    publish("test@1", b"garbage".to_vec()).await;
    // Well formed, but its actor is not the publishing node's.
    let forged = easel_server::room::ClassEvent {
        by: easel_server::room::Actor {
            key: easel_server::room::Key { origin: "other@1".into(), index: 0 },
            user: "mallory".into(),
            client: "m".into(),
            name: "Mallory".into(),
            role: easel_proto::message::Role::Teacher,
        },
        act: easel_server::room::Act::Request(Message::from(ChatSend {
            client_msg_id: 9,
            text: "forged".into(),
        })),
    };
    publish("test@1", easel_server::cluster::class::encode(&forged).expect("encode")).await;

    say(&mut ada, 2, "after").await;
    assert_eq!(chats(&mut ada, 1).await, [(2, "after".to_owned())], "the bad ones took no chat id");
    let m = metrics(a.server.http_addr()).await;
    assert_eq!(m["easel_cluster_nats_errors_total{kind=\"malformed\"}"], 2.0, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_nats_a_chat_is_refused_and_nothing_is_applied() {
    let mut nats = Nats::start().await;
    let a = node(&nats, "a").await;
    let (_ca, mut ada) = member(&a, "ada", "student").await;
    nats.kill();
    say(&mut ada, 1, "lost").await;
    let code = expect_message(&mut ada, "the refusal", |m| match m {
        Message::Fault(f) => Some(f.code),
        Message::ChatMessage(c) => panic!("applied without NATS: {c:?}"),
        _ => None,
    })
    .await;
    assert_eq!(code, ErrorCode::StorageUnavailable.to_u16());
    nats.restart().await;
    // As a client does: the same message again, under the same id, until it goes through.
    within("the resend goes through", async {
        loop {
            say(&mut ada, 1, "lost").await;
            let echoed = expect_message(&mut ada, "the resend's answer", |m| match m {
                Message::ChatMessage(_) => Some(true),
                Message::Fault(f) if f.code == ErrorCode::StorageUnavailable.to_u16() => Some(false),
                _ => None,
            })
            .await;
            if echoed {
                return;
            }
        }
    })
    .await;
}

/// One user's attendance: its user id and intervals (joined, left), Unix ms.
pub type Record = (String, Vec<(u64, Option<u64>)>);

/// `GET /rooms/ROOM/{resource}` at `server` as a teacher: status and body.
async fn room_get(server: &TestServer, resource: &str) -> (u16, String) {
    room_get_at(server.server.http_addr(), ROOM, resource).await
}

/// `GET /rooms/{room}/{resource}` at HTTP address `addr` as a teacher: status and body.
async fn room_get_at(addr: std::net::SocketAddr, room: &str, resource: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let jwt = crate::harness::token(room, "tess", "teacher", 3600);
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /rooms/{room}/{resource} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {jwt}\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.expect("read");
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// The room's attendance at `server`, as a teacher reads it: user → intervals.
pub async fn attendance(server: &TestServer) -> Vec<Record> {
    attendance_at(server.server.http_addr(), ROOM).await
}

/// `room`'s attendance at HTTP address `addr`, as a teacher reads it: user → intervals.
pub async fn attendance_at(addr: std::net::SocketAddr, room: &str) -> Vec<Record> {
    let (_, body) = room_get_at(addr, room, "attendance").await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let mut users: Vec<Record> = json["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| {
            let intervals = u["intervals"].as_array().expect("intervals");
            let intervals =
                intervals.iter().map(|i| (i["joined_ms"].as_u64().expect("joined"), i["left_ms"].as_u64()));
            (u["user"].as_str().expect("user").to_owned(), intervals.collect())
        })
        .collect();
    users.sort();
    users
}

/// Reads the attendance at `server` until `done` holds for it.
pub async fn attendance_until(
    server: &TestServer,
    what: &str,
    done: impl Fn(&[Record]) -> bool,
) -> Vec<Record> {
    within(what, async {
        loop {
            let now = attendance(server).await;
            if done(&now) {
                return now;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attendance_of_members_on_two_nodes_is_the_same_at_each() {
    let nats = Nats::start().await;
    let (a, b) = (node(&nats, "a").await, node(&nats, "b").await);
    let (_ca, _ada) = member(&a, "ada", "student").await;
    let (_cb, mut bob) = member(&b, "bob", "student").await;

    let both_open =
        |users: &[Record]| users.len() == 2 && users.iter().all(|(_, i)| matches!(i[..], [(_, None)]));
    let at_a = attendance_until(&a, "both present at a", both_open).await;
    let at_b = attendance_until(&b, "both present at b", both_open).await;
    assert_eq!(at_a, at_b);
    assert_eq!(at_a.iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>(), ["ada", "bob"]);

    bob.finish().await.expect("bob leaves");
    let bob_left =
        |users: &[Record]| users.iter().any(|(u, i)| u == "bob" && matches!(i[..], [(_, Some(_))]));
    let at_a = attendance_until(&a, "bob's leave at a", bob_left).await;
    let at_b = attendance_until(&b, "bob's leave at b", bob_left).await;
    assert_eq!(at_a, at_b, "one record, wherever it is read");

    // A node that never held the room reads it from the log, as one node reads its file.
    let c = node(&nats, "c").await;
    let at_c = attendance(&c).await;
    assert_eq!(at_c, at_a, "a node without the room loads it to answer");
}
