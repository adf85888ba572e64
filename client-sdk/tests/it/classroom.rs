//! The classroom layer through the SDK against the real server: chat, polls, hands,
//! moderation, chat history across a restart. (Attendance, over HTTP and from the CLI, is the
//! server's: `server/tests/it/classroom.rs`.)

use std::time::Duration;

use easel_client::{Client, Event, ModAction, Poll, Room};
use easel_proto::ErrorCode;
use easel_proto::message::PollResults;

use crate::harness::{TestServer, token, within};
use crate::sdk::{draw, url, wait_for};

const ROOM: &str = "uni-a/math-101/2026-11-23";
const COURSE: &str = "uni-a/math-101/*";

async fn member(server: &TestServer, user: &str, role: &str) -> (Client, Room) {
    member_at(server, user, role, &url(&server.server, easel_client::Transport::Quic)).await
}

async fn member_at(server: &TestServer, user: &str, role: &str, url: &str) -> (Client, Room) {
    let client = Client::builder(token(COURSE, user, role, 3600))
        .cert_hash(server.server.cert_hash())
        .expect("hash")
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .connect(url)
        .await
        .expect("connect");
    let room = within("join", client.join(ROOM)).await.expect("join");
    (client, room)
}

async fn index_of(client: &Client) -> u16 {
    wait_for(client, "joined", |e| match e {
        Event::Joined { participant, .. } => Some(*participant),
        _ => None,
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
    let server = TestServer::start_with(|c| c.chat_per_min = 5).await;
    let (teacher, t) = member(&server, "teach", "teacher").await;
    let (ada, a) = member(&server, "ada", "student").await;
    let ada_index = index_of(&ada).await;
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
    let server = TestServer::start().await;
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
    let server = TestServer::start().await;
    let (teacher, t) = member(&server, "teach", "teacher").await;
    let (ada, a) = member(&server, "ada", "student").await;
    let (bob, b) = member(&server, "bob", "student").await;
    let (ai, bi) = (index_of(&ada).await, index_of(&bob).await);
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
        Event::HandQueue { queue, .. } if *queue == [bi] => Some(()),
        _ => None,
    })
    .await;
    let flag = wait_for(&ada, "flag", |e| match e {
        Event::ParticipantUpdated { participant, .. } if participant.index == ai => {
            Some(participant.hand_raised)
        }
        _ => None,
    })
    .await;
    assert!(!flag);
}

#[tokio::test]
async fn moderation_is_teacher_only_and_takes_hold_live() {
    let server = TestServer::start().await;
    let (teacher, t) = member(&server, "teach", "teacher").await;
    let (ada, a) = member(&server, "ada", "student").await;
    let (ti, ai) = (index_of(&teacher).await, index_of(&ada).await);
    a.moderate(ti, ModAction::ReadOnly, "ha").await.expect("sent");
    assert_eq!(refused(&ada, "student moderates").await, ErrorCode::Forbidden);

    draw(&a, "before");
    wait_for(&ada, "ack", |e| matches!(e, Event::Acked { .. }).then_some(())).await;
    t.moderate(ai, ModAction::ReadOnly, "eyes on the board").await.expect("read-only");
    let (action, reason) = wait_for(&ada, "moderated", |e| match e {
        Event::Moderated { target, action, reason, .. } if *target == ai => Some((*action, reason.clone())),
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
    let server = TestServer::start_with(|c| c.room_active_cursors = 1).await;
    let (teacher, t) = member(&server, "teach", "teacher").await;
    let (ada, a) = member(&server, "ada", "student").await;
    let ai = index_of(&ada).await;

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
