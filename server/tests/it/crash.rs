//! Crashes and disk faults of the real server. The crash loop: the server is killed with
//! SIGKILL again and again while edits and chat are in flight; after every restart, every
//! write a client saw confirmed is there: edits (their `Ack`), chat (its echo), poll answers
//! (`PollAnswered`) and moderation (`Moderated`), each confirmed only once durable (SPEC §7.1,
//! §9). The restart times (a debug build) are printed; BENCHMARKS.md has release numbers. A
//! full disk stops acks with a clear error and loses nothing acked; a damaged data file stops
//! the start with one.

use std::collections::BTreeSet;
use std::time::Instant;

use easel_proto::Message;
use easel_proto::message::{ChatHistory, ChatSend, ModAction, Moderate, PollAnswer, PollStart};
use easel_transport::client::{Connection, RoomStream, Transport};

use crate::harness::{Board, TRANSPORTS, everyone, token, within};
use crate::spawned::Spawned;

const ROOM: &str = "s/c/crash-loop";
/// Kills, each with writes in flight.
const ROUNDS: u64 = 20;
/// Edits acked in a round before the kill comes (more are in flight then).
const ACKED_PER_ROUND: usize = 40;
/// Updates in flight at once.
const WINDOW: u64 = 24;

/// Everything a client saw confirmed, over all rounds.
#[derive(Default)]
struct Confirmed {
    /// `r{round}-{n}` keys of acked edits.
    edits: BTreeSet<String>,
    /// Texts of chat messages echoed.
    chat: BTreeSet<String>,
    poll: Option<u64>,
    /// Students whose answer was acknowledged.
    answers: u32,
    /// The student muted last.
    muted: Option<String>,
}

/// What the teacher finds on joining after a restart.
#[derive(Default)]
struct Found {
    respondents: Option<u32>,
    chat: BTreeSet<String>,
    oldest_chat: Option<u64>,
}

impl Found {
    fn apply(&mut self, message: Message) {
        match message {
            Message::PollResults(r) => self.respondents = Some(r.respondents),
            Message::ChatPage(page) => {
                for m in page.messages {
                    self.oldest_chat = Some(self.oldest_chat.map_or(m.id, |o| o.min(m.id)));
                    self.chat.insert(m.text);
                }
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_kill_9s_under_mixed_writes_lose_nothing_confirmed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut confirmed = Confirmed::default();
    let mut restarts = Vec::new();
    for round in 0..ROUNDS {
        let started = Instant::now();
        let mut server = Spawned::start(dir.path()).await;
        let ready = started.elapsed();
        let teacher = connect(&server, Transport::Quic, "prof", "teacher", round).await;
        let mut desk = within("join", teacher.join(ROOM, None)).await.expect("join");
        let mut board = Board::new(100 + round);
        if desk.joined().sync != easel_proto::message::SyncKind::None {
            let snapshot = within("snapshot", teacher.snapshot()).await.expect("snapshot");
            board.adopt(&snapshot.data);
        }
        restarts.push((ready, started.elapsed()));
        check(&server, &confirmed, &board, &mut desk, round).await;

        // The student of this round answers the poll, and is then muted by the teacher.
        let student = format!("s{round}");
        let transport = TRANSPORTS[usize::try_from(round).unwrap_or(0) % TRANSPORTS.len()];
        let pupil = connect(&server, transport, &student, "student", round).await;
        let mut seat = within("student joins", pupil.join(ROOM, None)).await.expect("join");
        let me = seat.joined().participant;
        let poll = match confirmed.poll {
            Some(poll) => poll,
            None => start_poll(&mut desk, &mut confirmed).await,
        };
        seat.send(&Message::from(PollAnswer { poll_id: poll, attempt_id: round + 1, choices: vec![0] }))
            .await
            .expect("answer");
        read_until(
            &mut seat,
            "poll answered",
            |m| matches!(m, Message::PollAnswered(a) if a.poll_id == poll),
        )
        .await;
        confirmed.answers += 1;
        let mute = Moderate { target: me, action: ModAction::MuteChat, reason: String::new() };
        desk.send(&Message::from(mute)).await.expect("moderate");
        read_until(&mut desk, "moderated", |m| matches!(m, Message::Moderated(d) if d.target == me)).await;
        confirmed.muted = Some(student);

        // Edits and chat in flight when the kill comes.
        write_then_kill(&mut server, &mut desk, &mut board, &mut confirmed, round).await;
        drop((pupil, teacher));
    }
    let mut ready: Vec<u128> = restarts.iter().map(|(r, _)| r.as_millis()).collect();
    let mut joined: Vec<u128> = restarts.iter().map(|(_, j)| j.as_millis()).collect();
    ready.sort_unstable();
    joined.sort_unstable();
    eprintln!(
        "crash loop: {ROUNDS} restarts; ready ms median {} max {}; teacher's join answered ms median {} max {}",
        ready[ready.len() / 2],
        ready[ready.len() - 1],
        joined[joined.len() / 2],
        joined[joined.len() - 1],
    );
    assert!(confirmed.edits.len() >= ACKED_PER_ROUND * ROUNDS as usize);
}

async fn connect(server: &Spawned, transport: Transport, user: &str, role: &str, round: u64) -> Connection {
    let jwt = token(ROOM, user, role, 3600);
    // A device per round: op ids start again at 1 with each one.
    within("connect", Connection::connect(&server.options(transport), &jwt, &format!("{user}-{round}")))
        .await
        .expect("connect")
}

/// Reads the teacher's join state and checks it against everything confirmed before.
async fn check(server: &Spawned, confirmed: &Confirmed, board: &Board, desk: &mut RoomStream, round: u64) {
    let keys: BTreeSet<String> = board.keys().into_iter().collect();
    let lost: Vec<&String> = confirmed.edits.difference(&keys).collect();
    assert!(lost.is_empty(), "round {round}: acked edits lost: {lost:?}");

    // The join state (poll, newest chat) is queued with the join, so a request's answer comes
    // after all of it: an empty page (chat ids start at 1) marks its end.
    let mut found = Found::default();
    read_until(desk, "the list", |m| {
        let listed = matches!(&m, Message::Participants(p) if p.full);
        found.apply(m);
        listed
    })
    .await;
    desk.send(&Message::from(ChatHistory { before: 1, limit: 1 })).await.expect("history");
    read_until(desk, "the end of the join state", |m| {
        let end = matches!(&m, Message::ChatPage(p) if p.messages.is_empty());
        found.apply(m);
        end
    })
    .await;
    if confirmed.poll.is_some() {
        let respondents = found.respondents.unwrap_or_else(|| panic!("round {round}: the poll was lost"));
        assert!(
            respondents >= confirmed.answers,
            "round {round}: {respondents} answers, {} acknowledged",
            confirmed.answers
        );
    }
    // Older chat, page by page, until every confirmed message is found or none is older.
    while !confirmed.chat.is_subset(&found.chat) {
        let before = found.oldest_chat;
        desk.send(&Message::from(ChatHistory { before: before.unwrap_or(0), limit: 200 }))
            .await
            .expect("history");
        read_until(desk, "chat page", |m| {
            let page = matches!(&m, Message::ChatPage(_));
            found.apply(m);
            page
        })
        .await;
        if found.oldest_chat == before {
            break;
        }
    }
    let lost: Vec<&String> = confirmed.chat.difference(&found.chat).collect();
    assert!(lost.is_empty(), "round {round}: echoed chat lost: {lost:?}");

    // Last round's student comes back still muted.
    if let Some(student) = &confirmed.muted {
        let back = connect(server, Transport::WebSocket, student, "student", round).await;
        let mut seat = within("rejoin", back.join(ROOM, None)).await.expect("join");
        let me = seat.joined().participant;
        let list = everyone(&mut seat).await;
        let entry = list.iter().find(|p| p.index == me).expect("in its own list");
        assert!(entry.chat_muted, "round {round}: the mute of {student} was lost");
    }
}

async fn start_poll(desk: &mut RoomStream, confirmed: &mut Confirmed) -> u64 {
    let start = PollStart {
        request: 1,
        question: "Which?".into(),
        options: vec!["a".into(), "b".into()],
        multiple: false,
        duration_ms: 0,
        live: true,
    };
    desk.send(&Message::from(start)).await.expect("start poll");
    let mut poll = 0;
    read_until(desk, "poll started", |m| match m {
        Message::PollStarted(p) => {
            poll = p.poll_id;
            true
        }
        _ => false,
    })
    .await;
    confirmed.poll = Some(poll);
    poll
}

/// Keeps [`WINDOW`] edits in flight, a chat message after every fourth, and kills the server
/// once [`ACKED_PER_ROUND`] edits were acked; what was confirmed by then is recorded.
async fn write_then_kill(
    server: &mut Spawned,
    desk: &mut RoomStream,
    board: &mut Board,
    confirmed: &mut Confirmed,
    round: u64,
) {
    let (mut sent, mut acked) = (0u64, 0usize);
    within("write and kill", async {
        loop {
            while sent < acked as u64 + WINDOW {
                sent += 1;
                let edit = board.put(sent, &format!("r{round}-{sent}"), i64::try_from(sent).unwrap_or(0));
                if desk.send(&edit).await.is_err() {
                    return;
                }
                if sent % 4 == 0 {
                    let chat = ChatSend { client_msg_id: sent, text: format!("r{round}-chat-{sent}") };
                    if desk.send(&Message::from(chat)).await.is_err() {
                        return;
                    }
                }
            }
            match desk.next().await {
                Ok(Some(Message::Ack(a))) => {
                    acked += a.op_ids.len();
                    confirmed.edits.extend(a.op_ids.iter().map(|op| format!("r{round}-{op}")));
                }
                Ok(Some(Message::ChatMessage(c))) => {
                    confirmed.chat.insert(c.text);
                }
                Ok(Some(Message::Reject(r))) => panic!("rejected: {r:?}"),
                Ok(Some(Message::Fault(f))) => panic!("refused: {f:?}"),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            }
            if acked >= ACKED_PER_ROUND {
                server.child.start_kill().expect("kill -9");
                return;
            }
        }
    })
    .await;
    within("reaped", server.child.wait()).await.expect("reaped");
}

/// Reads room messages until `done` says so.
async fn read_until(stream: &mut RoomStream, what: &str, mut done: impl FnMut(Message) -> bool) {
    within(what, async {
        loop {
            let message =
                stream.next().await.expect("room stream").unwrap_or_else(|| panic!("ended: {what}"));
            if done(message) {
                return;
            }
        }
    })
    .await;
}

/// The server's disk fills up under a stream of edits: acks stop, every edit from then on is
/// refused with `StorageUnavailable` (a resend too: the room holds it but never stored it); once
/// the disk has room again the same server acks the resend (no restart: the store reopens the
/// database an I/O error poisoned), and after a restart every edit that was acked is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_acks_loses_nothing_acked_and_recovers_without_a_restart() {
    const DISK_KIB: u64 = 6 * 1024;
    const MOST: u64 = 20_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Spawned::start_with_disk_of(dir.path(), DISK_KIB).await;
    let teacher = connect(&server, Transport::Quic, "prof", "teacher", 0).await;
    let mut desk = within("join", teacher.join(ROOM, None)).await.expect("join");
    let mut board = Board::new(1);
    // Edits of 2 KiB each, until the first refusal.
    let pad = "x".repeat(2048);
    let (mut acked, mut updates) = (BTreeSet::new(), std::collections::HashMap::new());
    let (mut sent, mut refused) = (0u64, None);
    within("fill the disk", async {
        while refused.is_none() && sent < MOST {
            while sent < acked.len() as u64 + WINDOW && sent < MOST {
                sent += 1;
                let edit = board.put(sent, &format!("{sent}-{pad}"), 0);
                desk.send(&edit).await.expect("send");
                updates.insert(sent, edit);
            }
            match desk.next().await.expect("room stream").expect("open") {
                Message::Ack(a) => acked.extend(a.op_ids),
                Message::Reject(r) => refused = Some(r),
                _ => {}
            }
        }
    })
    .await;
    let refused = refused.expect("the disk filled up");
    assert_eq!(refused.code, easel_proto::ErrorCode::StorageUnavailable.to_u16(), "{refused:?}");
    assert!(!acked.contains(&refused.op_id));
    // The resend: refused again, or acked because this time it was stored (after an I/O error
    // the store reopens the database, and a small write may fit in pages the failed one freed).
    // Never acked as a duplicate of what was never stored: the check after the restart would
    // find it lost.
    desk.send(&updates[&refused.op_id]).await.expect("resend");
    let again = within("the resend's answer", async {
        loop {
            match desk.next().await.expect("room stream").expect("open") {
                Message::Ack(a) if a.op_ids.contains(&refused.op_id) => return Ok(()),
                Message::Ack(a) => acked.extend(a.op_ids),
                Message::Reject(r) if r.op_id == refused.op_id => return Err(r.code),
                _ => {}
            }
        }
    })
    .await;
    match again {
        Ok(()) => {
            acked.insert(refused.op_id);
        }
        Err(code) => assert_eq!(code, easel_proto::ErrorCode::StorageUnavailable.to_u16()),
    }

    // Room on the disk again (the running server's file size limit lifted): the same server,
    // without a restart, acks every new edit.
    let pid = server.child.id().expect("running").to_string();
    let lifted = std::process::Command::new("prlimit")
        .args(["--pid", &pid, "--fsize=unlimited:"])
        .status()
        .expect("run prlimit (util-linux)");
    assert!(lifted.success(), "prlimit: {lifted}");
    // As the SDK does (StorageUnavailable is retryable): everything not acked is sent again, in
    // order (a later edit of this author depends on the earlier ones), then new edits.
    const AFTER: u64 = 100;
    let mut waiting: BTreeSet<u64> = updates.keys().filter(|id| !acked.contains(id)).copied().collect();
    for id in &waiting {
        desk.send(&updates[id]).await.expect("resend");
    }
    for _ in 0..AFTER {
        sent += 1;
        let edit = board.put(sent, &format!("{sent}-{pad}"), 0);
        desk.send(&edit).await.expect("send");
        waiting.insert(sent);
    }
    let mut refused_after = Vec::new();
    within("edits once the disk has room", async {
        while !waiting.is_empty() {
            match desk.next().await.expect("room stream").expect("open") {
                Message::Ack(a) => {
                    for id in &a.op_ids {
                        waiting.remove(id);
                    }
                    acked.extend(a.op_ids);
                }
                Message::Reject(r) => {
                    waiting.remove(&r.op_id);
                    refused_after.push(r.op_id);
                }
                _ => {}
            }
        }
    })
    .await;
    assert!(refused_after.is_empty(), "refused after the disk had room again: {refused_after:?}");
    server.child.start_kill().expect("kill");
    within("reaped", server.child.wait()).await.expect("reaped");

    let server = Spawned::start(dir.path()).await;
    let teacher = connect(&server, Transport::Quic, "prof", "teacher", 1).await;
    within("rejoin", teacher.join(ROOM, None)).await.expect("join");
    let snapshot = within("snapshot", teacher.snapshot()).await.expect("snapshot");
    let restored = Board::new(2);
    restored.import(&snapshot.data);
    let present: BTreeSet<u64> =
        restored.keys().iter().filter_map(|k| k.split('-').next().and_then(|n| n.parse().ok())).collect();
    let lost: Vec<&u64> = acked.difference(&present).collect();
    assert!(lost.is_empty(), "acked before the disk filled, lost: {lost:?}");
    eprintln!("full disk: {} edits acked, refused from op {}", acked.len(), refused.op_id);
}

/// A damaged data file at start: the server says which file and what to do, and exits; it
/// never panics.
#[tokio::test]
async fn a_damaged_data_file_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("easel.redb"), vec![0x5a; 64 * 1024]).expect("write");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["--data-dir", dir.path().to_str().expect("utf-8")])
        .args(["--wt-addr", "127.0.0.1:0", "--quic-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .env("EASEL_JWT_SECRET", crate::harness::SECRET)
        .env_remove("RUST_BACKTRACE")
        .output();
    let out = within("easel exits", out).await.expect("run easel");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("easel.redb is not a readable Easel data file"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
