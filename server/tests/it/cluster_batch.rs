//! Cluster mode's group commit: a room's classroom events published while one of its
//! publishes is in flight go out together as one message of the room log (a batch), against a
//! real nats-server and real servers in process.

use easel_proto::Message;
use easel_proto::message::{ChatSend, PollAnswer, PollClose, PollResults, PollStart, Role};
use easel_server::cluster::{batch, class, log};
use easel_server::room::{Act, Actor, ClassEvent, Key};
use easel_transport::client::RoomStream;

use crate::cluster::{Nats, metrics, node};
use crate::cluster_class::{ROOM, acked, chats, member, say};
use crate::harness::{expect_message, within};

/// Members per node answering at once.
const EACH: usize = 6;

/// Starts a poll as the teacher; returns its id once every one of `students` has it.
async fn poll(tess: &mut RoomStream, students: &mut [RoomStream]) -> u64 {
    let start = PollStart {
        request: 1,
        question: "Which?".into(),
        options: vec!["x".into(), "y".into()],
        multiple: false,
        duration_ms: 0,
        live: false,
    };
    tess.send(&Message::from(start)).await.expect("start");
    let started = |m: Message| match m {
        Message::PollStarted(p) => Some(p.poll_id),
        _ => None,
    };
    let poll_id = expect_message(tess, "the poll", started).await;
    for s in students {
        assert_eq!(expect_message(s, "the poll", started).await, poll_id);
    }
    poll_id
}

/// Closes the poll as the teacher; returns its final results.
async fn close(tess: &mut RoomStream, poll_id: u64) -> PollResults {
    tess.send(&Message::from(PollClose { poll_id })).await.expect("close");
    expect_message(tess, "the final results", |m| match m {
        Message::PollResults(r) if r.poll_id == poll_id && r.closed => Some(r),
        Message::Fault(f) => panic!("close refused: {f:?}"),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_and_chat_sent_at_once_from_two_nodes_count_once_each_acked_in_one_order() {
    let nats = Nats::start().await;
    let (a, b) = (node(&nats, "a").await, node(&nats, "b").await);
    let (_ct, mut tess) = member(&a, "tess", "teacher").await;
    let mut conns = Vec::new();
    let mut students = Vec::new();
    for i in 0..2 * EACH {
        let server = if i % 2 == 0 { &a } else { &b };
        let (conn, stream) = member(server, &format!("s{i}"), "student").await;
        conns.push(conn);
        students.push(stream);
    }
    let poll_id = poll(&mut tess, &mut students).await;

    // Everyone sends before anyone reads: the events queue behind each node's publish in
    // flight and go out in batches.
    for (i, s) in students.iter_mut().enumerate() {
        let attempt_id = 100 + i as u64;
        let choices = vec![u8::from(i % 3 == 0)];
        s.send(&Message::from(PollAnswer { poll_id, attempt_id, choices })).await.expect("answer");
        say(s, 1, &format!("from s{i}")).await;
    }
    let n = 2 * EACH;
    let at_tess = chats(&mut tess, n).await;
    let ids: Vec<u64> = at_tess.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=n as u64).collect::<Vec<_>>(), "each message posted once");
    for (i, s) in students.iter_mut().enumerate() {
        let seen = acked_and_chats(s, 100 + i as u64, n).await;
        assert_eq!(seen, at_tess, "one chat order at every member, on either node");
    }
    let results = close(&mut tess, poll_id).await;
    let ones = (0..2 * EACH).filter(|i| i % 3 == 0).count() as u32;
    assert_eq!(results.respondents, 2 * EACH as u32, "{results:?}");
    assert_eq!(results.counts, [2 * EACH as u32 - ones, ones], "each answer counted once");
}

/// Reads until the answer's ack and `n` chat messages have come; returns the messages.
async fn acked_and_chats(stream: &mut RoomStream, attempt_id: u64, n: usize) -> Vec<(u64, String)> {
    within("the ack and the chat", async {
        let (mut acked, mut seen) = (false, Vec::new());
        while !acked || seen.len() < n {
            match stream.next().await.expect("stream").expect("open") {
                Message::PollAnswered(a) if a.attempt_id == attempt_id => acked = true,
                Message::ChatMessage(c) => seen.push((c.id, c.text)),
                Message::Fault(f) => panic!("refused: {f:?}"),
                _ => {}
            }
        }
        seen
    })
    .await
}

/// An event of the test's own "node" `test@1` acting as `user` from `user-device`.
fn event(user: &str, act: Act) -> ClassEvent {
    let by = Actor {
        key: Key { origin: "test@1".into(), index: 0 },
        user: user.into(),
        client: format!("{user}-device"),
        name: user.into(),
        role: Role::Student,
    };
    ClassEvent { by, act }
}

/// Publishes `payload` on the room's subject as a batch from `test@1`.
async fn publish(nats: &Nats, payload: Vec<u8>) {
    let js = async_nats::jetstream::new(async_nats::connect(&nats.url).await.expect("connect"));
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(log::ORIGIN, "test@1");
    headers.insert(class::KIND, batch::BATCH);
    let ack = js.publish_with_headers(log::subject(ROOM), headers, payload.into()).await.expect("publish");
    ack.await.expect("ack");
}

fn encoded(events: &[ClassEvent]) -> Vec<Vec<u8>> {
    events.iter().map(|e| class::encode(e).expect("encode")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_stored_in_another_batch_is_applied_once_and_answered_as_the_first() {
    let nats = Nats::start().await;
    let a = node(&nats, "a").await;
    let (_ct, mut tess) = member(&a, "tess", "teacher").await;
    let (_ca, mut ada) = member(&a, "ada", "student").await;
    let (_cb, mut bob) = member(&a, "bob", "student").await;
    let poll_id = poll(&mut tess, std::slice::from_mut(&mut ada)).await;

    // Bob's first sends, stored in a batch whose acks he never got (as if the ack was lost):
    // the batch's id is its digest, so his resends below, each alone under its own id, are
    // stored again and must be recognised when applied.
    let first = [
        event("bob", Act::Request(Message::from(ChatSend { client_msg_id: 7, text: "first".into() }))),
        event("bob", Act::Request(Message::from(PollAnswer { poll_id, attempt_id: 21, choices: vec![1] }))),
    ];
    publish(&nats, batch::encode(&encoded(&first)).expect("encode")).await;
    let (id, text) = chats(&mut ada, 1).await.remove(0);
    assert_eq!(text, "first");

    say(&mut bob, 7, "first").await;
    let echo = expect_message(&mut bob, "the resend's echo", |m| match m {
        Message::ChatMessage(c) if c.text == "first" => Some(c.id),
        _ => None,
    })
    .await;
    assert_eq!(echo, id, "bob sees his first message");
    let again = expect_message(&mut bob, "the resend's echo", |m| match m {
        Message::ChatMessage(c) if c.text == "first" => Some(c.id),
        _ => None,
    })
    .await;
    assert_eq!(again, id, "the resend is answered with the first message, not posted anew");
    bob.send(&Message::from(PollAnswer { poll_id, attempt_id: 21, choices: vec![1] })).await.expect("answer");
    acked(&mut bob, 21).await;

    say(&mut ada, 1, "probe").await;
    let seen = within("up to the probe", async {
        let mut seen = Vec::new();
        while seen.last().is_none_or(|t| t != "probe") {
            seen.push(chats(&mut ada, 1).await.remove(0).1);
        }
        seen
    })
    .await;
    assert_eq!(seen, ["probe"], "ada saw bob's message once");
    let results = close(&mut tess, poll_id).await;
    assert_eq!((results.counts, results.respondents), (vec![0, 1], 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_batch_is_counted_and_nothing_of_it_is_applied() {
    let nats = Nats::start().await;
    let a = node(&nats, "a").await;
    let (_ca, mut ada) = member(&a, "ada", "student").await;
    say(&mut ada, 1, "before").await;
    assert_eq!(chats(&mut ada, 1).await, [(1, "before".to_owned())]);

    publish(&nats, b"garbage".to_vec()).await;
    // A valid event, then one that is not: the batch is refused whole.
    let good = event("mallory", Act::Request(Message::from(ChatSend { client_msg_id: 1, text: "x".into() })));
    let mut events = encoded(&[good]);
    events.push(b"not an event".to_vec());
    publish(&nats, batch::encode(&events).expect("encode")).await;

    say(&mut ada, 2, "after").await;
    assert_eq!(chats(&mut ada, 1).await, [(2, "after".to_owned())], "nothing of the bad ones posted");
    let m = metrics(a.server.http_addr()).await;
    assert_eq!(m["easel_cluster_nats_errors_total{kind=\"malformed\"}"], 2.0, "{m:?}");
}
