//! The classroom layer through the SDK against the real server: chat, polls, hands,
//! moderation, chat history across a restart. Each (but the restart) runs on one server and
//! again with the room spread over two nodes of a cluster, members on each in turn (the
//! teacher and bob on one, ada on the other), where it must behave the same. (Attendance, over
//! HTTP and from the CLI, is the server's: `server/tests/it/classroom.rs`.)

use std::time::Duration;

use easel_client::{Client, Event, ModAction, Poll, Room};
use easel_proto::ErrorCode;
use easel_proto::message::PollResults;

use crate::harness::{TestServer, token, within};
use crate::sdk::{draw, url, wait_for};
use crate::spread::Layout;

const ROOM: &str = "uni-a/math-101/2026-11-23";
const COURSE: &str = "uni-a/math-101/*";

/// A member on the server's next node.
async fn member(server: &TestServer, user: &str, role: &str) -> (Client, Room) {
    let node = server.next_node();
    member_at(node, user, role, &url(node, easel_client::Transport::Quic)).await
}

async fn member_at(node: &easel_server::Server, user: &str, role: &str, url: &str) -> (Client, Room) {
    let client = Client::builder(token(COURSE, user, role, 3600))
        .cert_hash(node.cert_hash())
        .expect("hash")
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .connect(url)
        .await
        .expect("connect");
    let room = within("join", client.join(ROOM)).await.expect("join");
    (client, room)
}

/// The numbers `client`'s server gives `users` (itself included), from its join's list and
/// the joins after it: on a spread room each node numbers the members its own way.
async fn numbers<const N: usize>(client: &Client, users: [&str; N]) -> [u16; N] {
    let mut known = std::collections::HashMap::new();
    wait_for(client, &format!("{users:?} listed"), |e| {
        match e {
            Event::Joined { participants, .. } => {
                known.extend(participants.iter().map(|p| (p.user.clone(), p.index)));
            }
            Event::ParticipantJoined { participant, .. } => {
                known.insert(participant.user.clone(), participant.index);
            }
            _ => {}
        }
        users.iter().all(|u| known.contains_key(*u)).then(|| users.map(|u| known[u]))
    })
    .await
}

async fn refused(client: &Client, what: &str) -> ErrorCode {
    wait_for(client, what, |e| match e {
        Event::Refused { code, .. } => Some(*code),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn chat_is_echoed_deleted_paged_muted_and_rate_limited() {
    chat_on(Layout::One).await;
}

#[tokio::test]
async fn chat_is_echoed_deleted_paged_muted_and_rate_limited_across_nodes() {
    chat_on(Layout::Spread).await;
}

async fn chat_on(layout: Layout) {
    let server = layout.start_with(|c| c.chat_per_min = 5).await;
    let (teacher, t) = member(&server, "teach", "teacher").await;
    let (ada, a) = member(&server, "ada", "student").await;
    let [ada_index] = numbers(&teacher, ["ada"]).await;
    let sent = a.chat("hello class").await.expect("chat");
    for client in [&teacher, &ada] {
        let (id, text, echo) = wait_for(client, "chat", |e| match e {
            Event::Chat { message, .. } => Some((message.id, message.text.clone(), message.client_msg_id)),
            _ => None,
        })
        .await;
        assert_eq!((text.as_str(), echo), ("hello class", sent));
        assert_eq!(id, 1);
    }
    a.chat("second").await.expect("chat");
    t.delete_chat(1).await.expect("delete");
    let deleted = wait_for(&ada, "deleted", |e| match e {
        Event::ChatDeleted { id, .. } => Some(*id),
        _ => None,
    })
    .await;
    assert_eq!(deleted, 1);
    a.delete_chat(2).await.expect("sent");
    assert_eq!(refused(&ada, "student delete refused").await, ErrorCode::Forbidden);
    a.chat_history(0, 10).await.expect("history");
    let page = wait_for(&ada, "page", |e| match e {
        Event::ChatPage { messages, .. } => Some(messages.iter().map(|m| m.text.clone()).collect::<Vec<_>>()),
        _ => None,
    })
    .await;
    assert_eq!(page, ["second"], "deleted messages are not returned");

    t.moderate(ada_index, ModAction::MuteChat, "quiet please").await.expect("mute");
    wait_for(&ada, "muted", |e| {
        matches!(e, Event::Moderated { action: ModAction::MuteChat, .. }).then_some(())
    })
    .await;
    a.chat("can I speak?").await.expect("sent");
    assert_eq!(refused(&ada, "muted").await, ErrorCode::ChatMuted);
    t.moderate(ada_index, ModAction::UnmuteChat, "").await.expect("unmute");
    wait_for(&ada, "unmuted", |e| {
        matches!(e, Event::Moderated { action: ModAction::UnmuteChat, .. }).then_some(())
    })
    .await;
    // 5 a minute: two were sent (the muted attempt took no token), so the flood hits the limit.
    let mut codes = Vec::new();
    for i in 0..4 {
        a.chat(&format!("flood {i}")).await.expect("sent");
    }
    within("flood answers", async {
        while codes.len() < 4 {
            match ada.next_event().await.expect("open") {
                Event::Chat { message, .. } if message.text.starts_with("flood") => codes.push(None),
                Event::Refused { code, .. } => codes.push(Some(code)),
                _ => {}
            }
        }
    })
    .await;
    assert!(codes.contains(&Some(ErrorCode::RateLimited)), "{codes:?}");
}

#[tokio::test]
async fn chat_history_survives_a_server_restart() {
    let server = TestServer::start().await;
    let (_teacher, t) = member(&server, "teach", "teacher").await;
    for text in ["one", "two", "three"] {
        t.chat(text).await.expect("chat");
    }
    let (late, _) = member(&server, "late", "student").await;
    let page = wait_for(&late, "join page", |e| match e {
        Event::ChatPage { messages, .. } => Some(messages.len()),
        _ => None,
    })
    .await;
    assert_eq!(page, 3, "a joiner gets the latest page");
    drop(late);
    let server = server.restart().await;
    let (after, _) = member(&server, "after", "student").await;
    let texts = wait_for(&after, "join page after restart", |e| match e {
        Event::ChatPage { messages, .. } => Some(messages.iter().map(|m| m.text.clone()).collect::<Vec<_>>()),
        _ => None,
    })
    .await;
    assert_eq!(texts, ["one", "two", "three"]);
}

async fn results(client: &Client, closed: bool) -> PollResults {
    wait_for(client, "results", |e| match e {
        Event::PollResults { results, .. } if results.closed == closed => Some(results.clone()),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn polls_count_a_repeated_attempt_once_and_close_by_teacher_or_timer() {
    polls_on(Layout::One).await;
}

#[tokio::test]
async fn polls_count_a_repeated_attempt_once_and_close_by_teacher_or_timer_across_nodes() {
    polls_on(Layout::Spread).await;
}

async fn polls_on(layout: Layout) {
    let server = layout.start().await;
    let (teacher, t) = member(&server, "teach", "teacher").await;
    let (ada, a) = member(&server, "ada", "student").await;
    let (bob, b) = member(&server, "bob", "student").await;
    let poll = Poll {
        question: "2 + 2?".into(),
        options: vec!["3".into(), "4".into(), "5".into()],
        multiple: false,
        duration: None,
        live: true,
    };
    let request = t.start_poll(poll.clone()).await.expect("start");
    let poll_id = wait_for(&ada, "poll started", |e| match e {
        Event::PollStarted { poll, .. } if poll.request == request => Some(poll.poll_id),
        _ => None,
    })
    .await;
    a.answer_poll_as(poll_id, 77, &[0]).await.expect("answer");
    wait_for(&ada, "answered", |e| matches!(e, Event::PollAnswered { attempt_id: 77, .. }).then_some(()))
        .await;
    // A retry of the same attempt (say, after a reconnect) is a no-op, even with other choices.
    a.answer_poll_as(poll_id, 77, &[2]).await.expect("retry");
    wait_for(&ada, "answered again", |e| {
        matches!(e, Event::PollAnswered { attempt_id: 77, .. }).then_some(())
    })
    .await;
    b.answer_poll(poll_id, &[0]).await.expect("answer");
    b.answer_poll(poll_id, &[1]).await.expect("a new attempt replaces");
    wait_for(&bob, "bob answered twice", |e| matches!(e, Event::PollAnswered { .. }).then_some(())).await;
    wait_for(&bob, "bob answered twice", |e| matches!(e, Event::PollAnswered { .. }).then_some(())).await;
    b.start_poll(poll.clone()).await.expect("sent");
    assert_eq!(refused(&bob, "student poll").await, ErrorCode::Forbidden);
    t.close_poll(poll_id).await.expect("close");
    let r = results(&teacher, true).await;
    assert_eq!((r.counts, r.respondents), (vec![1, 1, 0], 2), "ada once (first answer), bob's replacement");
    a.answer_poll(poll_id, &[1]).await.expect("sent");
    assert_eq!(refused(&ada, "closed").await, ErrorCode::PollClosed);

    let timed = Poll { duration: Some(Duration::from_millis(300)), live: false, ..poll };
    t.start_poll(timed).await.expect("start");
    let r = results(&ada, true).await;
    assert_eq!(r.respondents, 0, "the timer closed it");
}

#[tokio::test]
async fn hands_queue_in_order_and_only_teachers_lower_others() {
    hands_on(Layout::One).await;
}

#[tokio::test]
async fn hands_queue_in_order_and_only_teachers_lower_others_across_nodes() {
    hands_on(Layout::Spread).await;
}

async fn hands_on(layout: Layout) {
    let server = layout.start().await;
    let (teacher, t) = member(&server, "teach", "teacher").await;
    let (ada, a) = member(&server, "ada", "student").await;
    let (bob, b) = member(&server, "bob", "student").await;
    // As the teacher's (and bob's) node numbers them, and as ada's does.
    let [ai, bi] = numbers(&teacher, ["ada", "bob"]).await;
    let [ai_at_ada, bi_at_ada] = numbers(&ada, ["ada", "bob"]).await;
    a.raise_hand().await.expect("raise");
    wait_for(&teacher, "ada's hand first", |e| match e {
        Event::HandQueue { queue, .. } if *queue == [ai] => Some(()),
        _ => None,
    })
    .await;
    b.raise_hand().await.expect("raise");
    let want = vec![ai, bi];
    wait_for(&teacher, "queue", |e| match e {
        Event::HandQueue { queue, .. } if *queue == want => Some(()),
        _ => None,
    })
    .await;
    b.lower_hand(ai).await.expect("sent");
    assert_eq!(refused(&bob, "lower another").await, ErrorCode::Forbidden);
    t.lower_hand(ai).await.expect("teacher lowers");
    wait_for(&ada, "lowered", |e| match e {
        Event::HandQueue { queue, .. } if *queue == [bi_at_ada] => Some(()),
        _ => None,
    })
    .await;
    let flag = wait_for(&ada, "flag", |e| match e {
        Event::ParticipantUpdated { participant, .. } if participant.index == ai_at_ada => {
            Some(participant.hand_raised)
        }
        _ => None,
    })
    .await;
    assert!(!flag);
}

#[tokio::test]
async fn moderation_is_teacher_only_and_takes_hold_live() {
    moderation_on(Layout::One).await;
}

#[tokio::test]
async fn moderation_is_teacher_only_and_takes_hold_live_across_nodes() {
    moderation_on(Layout::Spread).await;
}

async fn moderation_on(layout: Layout) {
    let server = layout.start().await;
    let (teacher, t) = member(&server, "teach", "teacher").await;
    let (ada, a) = member(&server, "ada", "student").await;
    // Ada as the teacher's node numbers her; the teacher and ada as ada's does.
    let [ai] = numbers(&teacher, ["ada"]).await;
    let [ti, ai_at_ada] = numbers(&ada, ["teach", "ada"]).await;
    a.moderate(ti, ModAction::ReadOnly, "ha").await.expect("sent");
    assert_eq!(refused(&ada, "student moderates").await, ErrorCode::Forbidden);

    draw(&a, "before");
    wait_for(&ada, "ack", |e| matches!(e, Event::Acked { .. }).then_some(())).await;
    t.moderate(ai, ModAction::ReadOnly, "eyes on the board").await.expect("read-only");
    let (action, reason) = wait_for(&ada, "moderated", |e| match e {
        Event::Moderated { target, action, reason, .. } if *target == ai_at_ada => {
            Some((*action, reason.clone()))
        }
        _ => None,
    })
    .await;
    assert_eq!((action, reason.as_str()), (ModAction::ReadOnly, "eyes on the board"));
    draw(&a, "refused");
    let code = wait_for(&ada, "rejected", |e| match e {
        Event::Rejected { code, .. } => Some(*code),
        Event::Acked { .. } => panic!("a read-only edit was acked"),
        _ => None,
    })
    .await;
    assert_eq!(code, ErrorCode::ReadOnly, "refused live, without reconnecting");
    draw(&t, "teacher still writes");
    wait_for(&teacher, "teacher ack", |e| matches!(e, Event::Acked { .. }).then_some(())).await;

    t.moderate(ai, ModAction::Remove, "bye").await.expect("remove");
    let (code, reason) = wait_for(&ada, "removed", |e| match e {
        Event::Left { code, reason, .. } => Some((*code, reason.clone())),
        _ => None,
    })
    .await;
    assert_eq!((code, reason.as_str()), (ErrorCode::Removed, "bye"), "the target hears why");
    let left = wait_for(&teacher, "others see it", |e| match e {
        Event::ParticipantLeft { index, code, .. } if *index == ai => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(left, ErrorCode::Removed);
    let again = within("rejoin", ada.join(ROOM)).await.expect_err("removed");
    assert!(matches!(again, easel_client::Error::Refused { code: ErrorCode::Removed, .. }), "{again}");
}

#[tokio::test]
async fn a_teacher_sets_the_cursor_cap_and_students_may_not() {
    cursor_cap_on(Layout::One).await;
}

#[tokio::test]
async fn a_teacher_sets_the_cursor_cap_and_students_may_not_across_nodes() {
    cursor_cap_on(Layout::Spread).await;
}

async fn cursor_cap_on(layout: Layout) {
    let server = layout.start_with(|c| c.room_active_cursors = 1).await;
    let (teacher, t) = member(&server, "teach", "teacher").await;
    let (ada, a) = member(&server, "ada", "student").await;
    let [ai] = numbers(&teacher, ["ada"]).await;
    // The default cap holds while a teacher is in the room, as ada's node sees it.
    numbers(&ada, ["teach"]).await;

    a.set_cursor_cap(Some(0)).await.expect("sent");
    assert_eq!(refused(&ada, "student sets the cap").await, ErrorCode::Forbidden);

    // Shown at once or, past the cap of 1, once the teacher lifts it: either way the
    // teacher ends up with the newest position and everyone with the cap in force.
    a.cursor(777.0, 1.0);
    t.set_cursor_cap(Some(0)).await.expect("sent");
    let (mut cap, mut at) = (None, None);
    wait_for(&teacher, "the cap and ada's cursor", |e| {
        match e {
            Event::CursorCap { cap: c, .. } => cap = Some(*c),
            Event::Cursors { cursors, .. } => {
                at = cursors.iter().find(|c| c.participant == ai).map(|c| c.x).or(at);
            }
            _ => {}
        }
        cap.zip(at)
    })
    .await;
    assert_eq!((cap, at), (Some(0), Some(777.0)), "every cursor shown");
    let cap = wait_for(&ada, "the cap, at the student", |e| match e {
        Event::CursorCap { cap, .. } => Some(*cap),
        _ => None,
    })
    .await;
    assert_eq!(cap, 0);
    t.set_cursor_cap(None).await.expect("sent");
    let back = wait_for(&ada, "the default again", |e| match e {
        Event::CursorCap { cap, .. } if *cap != 0 => Some(*cap),
        _ => None,
    })
    .await;
    assert_eq!(back, 1, "the server's lecture default");
}
