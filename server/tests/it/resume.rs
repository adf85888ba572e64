//! Session resume (SPEC §5.4) over each transport: a lost connection keeps its room places for
//! the grace window, unseen by others; a clean close or an expired window does not.

use std::time::{Duration, Instant};

use easel_proto::datagram::{Cursor, Heartbeat, Status, Tool};
use easel_proto::message::SyncKind;
use easel_proto::{Datagram, ErrorCode, Message};
use easel_transport::client::{ClientError, Connection, RoomStream, Transport};

use crate::harness::{Board, TRANSPORTS, TestServer, expect_message, send_acked, token, within};

/// Reconnects as `user`, presenting `resume_token`.
async fn resume(
    server: &TestServer,
    transport: Transport,
    user: &str,
    room: &str,
    resume_token: &[u8],
) -> Connection {
    let token = token(room, user, "student", 3600);
    let (options, client_id) = (server.options(transport), format!("{user}-device"));
    let connect = Connection::connect_resuming(&options, &token, &client_id, Some(resume_token.to_vec()));
    within("resume", connect).await.expect("reconnect")
}

/// Waits for the membership frame saying `who` left; returns its code.
async fn left_code(stream: &mut RoomStream, who: u16) -> u16 {
    expect_message(stream, "participant left", |m| match m {
        Message::Participants(p) => p.left.iter().find(|l| l.index == who).map(|l| l.code),
        _ => None,
    })
    .await
}

/// Proves `observer` was sent nothing between then and now: `author`'s next edit must be the
/// very next message on its room stream (a leave or join of anyone would come first).
async fn next_is_update_from(
    observer: &mut RoomStream,
    author: &mut RoomStream,
    board: &mut Board,
    op_id: u64,
) {
    let from = author.joined().participant;
    send_acked(author, board.put(op_id, &format!("marker{op_id}"), 0)).await;
    let next = within("observer's next message", observer.next()).await.expect("room stream");
    assert!(
        matches!(&next, Some(Message::RemoteUpdate(u)) if u.from == from),
        "expected the marker update first, got {next:?}"
    );
}

#[tokio::test]
async fn a_lost_connection_resumes_its_places_unseen() {
    for transport in TRANSPORTS {
        let server = TestServer::start().await;
        let room = "s/c/lost";
        let (a, mut room_a) = server.member(transport, "ada", "student", room).await;
        let (_b, mut room_b) = server.member(transport, "bob", "student", room).await;
        let ada = room_a.joined().participant;
        let (mut board_a, mut board_b) = (Board::new(1), Board::new(2));
        send_acked(&mut room_a, board_a.put(1, "a1", 1)).await;
        let data = expect_message(&mut room_b, "A's update at B", |m| match m {
            Message::RemoteUpdate(u) => Some(u.data),
            _ => None,
        })
        .await;
        board_b.import(&data);

        // A non-zero close stands in for a network drop.
        let old = a.welcome().clone();
        a.close(ErrorCode::Internal);
        drop((a, room_a));
        send_acked(&mut room_b, board_b.put(1, "b1", 2)).await;

        let a = resume(&server, transport, "ada", room, &old.resume_token).await;
        assert!(a.welcome().resumed, "{transport:?}");
        assert_eq!(a.welcome().session_id, old.session_id, "{transport:?}");
        assert_ne!(a.welcome().resume_token, old.resume_token, "every Welcome has a fresh token");
        let since = board_a.doc.oplog_vv().encode();
        let mut room_a = within("rejoin", a.join(room, Some(since))).await.expect("rejoin");
        assert!(room_a.joined().resumed, "{transport:?}");
        assert_eq!(room_a.joined().participant, ada, "{transport:?}: the old participant number");
        assert_eq!(room_a.joined().sync, SyncKind::Updates);
        let diff = within("catch-up", a.snapshot()).await.expect("snapshot");
        board_a.import(&diff.data);
        assert_eq!(board_a.keys(), ["a1", "b1"], "{transport:?}: what A missed came by version vector");

        next_is_update_from(&mut room_b, &mut room_a, &mut board_a, 2).await;
        server.server.shutdown().await;
    }
}

/// Waits until `conn` has been sent `who`'s cursor at `at` and its presence `want` (in any
/// order, each possibly among others).
async fn sees(conn: &Connection, who: u16, at: (i32, i32), want: (Status, Tool)) {
    let (mut cursor, mut presence) = (false, false);
    while !(cursor && presence) {
        match conn.recv_datagram().await.expect("datagram") {
            Datagram::CursorBatch(b) => {
                cursor |= b.cursors.iter().any(|c| c.participant == who && (c.x, c.y) == at);
            }
            Datagram::PresenceBatch(b) => {
                presence |= b.entries.iter().any(|e| e.participant == who && (e.status, e.tool) == want);
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_session_resumes_over_another_transport_and_is_sent_the_room_again() {
    // Bob sends one heartbeat only: it must stay alive for the whole test.
    let server = TestServer::start_with(|c| c.presence_ttl = Duration::from_secs(120)).await;
    let room = "s/c/switch";
    let (bob, mut room_b) = server.member(Transport::Quic, "bob", "student", room).await;
    let (bob_index, slot) = (room_b.joined().participant, room_b.joined().slot);
    let active = (Status::Active, Tool::Pen);
    let beat = Heartbeat { slot, seq: 1, status: active.0, tool: active.1 };
    bob.send_datagram(&Datagram::from(beat)).expect("heartbeat");
    bob.send_datagram(&Datagram::from(Cursor { slot, seq: 1, x: 160, y: 320 })).expect("cursor");

    let (mut ada, mut room_a) = server.member(Transport::Quic, "ada", "student", room).await;
    let ada_index = room_a.joined().participant;
    expect_message(&mut room_b, "ada's arrival", |m| match m {
        Message::Participants(p) => p.joined.iter().any(|j| j.index == ada_index).then_some(()),
        _ => None,
    })
    .await;
    let mut board = Board::new(1);
    let hops = [Transport::WebSocket, Transport::WebTransport, Transport::Quic];
    let mut from = Transport::Quic;
    within("bob's cursor and presence", sees(&ada, bob_index, (160, 320), active)).await;
    for (hop, to) in hops.into_iter().enumerate() {
        let old = ada.welcome().clone();
        ada.close(ErrorCode::Internal);
        drop(room_a);
        ada = resume(&server, to, "ada", room, &old.resume_token).await;
        assert!(ada.welcome().resumed, "{from:?} → {to:?}");
        assert_eq!(ada.welcome().session_id, old.session_id, "{from:?} → {to:?}");
        room_a = within("rejoin", ada.join(room, Some(board.doc.oplog_vv().encode()))).await.expect("rejoin");
        assert!(room_a.joined().resumed, "{from:?} → {to:?}");
        assert_eq!(room_a.joined().participant, ada_index, "{from:?} → {to:?}: the same place");
        // Bob has not moved since: what ada is sent now is the room replayed for her.
        within("the room replayed", sees(&ada, bob_index, (160, 320), active)).await;
        next_is_update_from(&mut room_b, &mut room_a, &mut board, hop as u64 + 1).await;
        from = to;
    }
    server.server.shutdown().await;
}

#[tokio::test]
async fn resuming_while_the_old_connection_is_open_takes_it_over() {
    for transport in TRANSPORTS {
        let server = TestServer::start().await;
        let room = "s/c/takeover";
        let (old, old_room) = server.member(transport, "ada", "student", room).await;
        let (_b, mut room_b) = server.member(transport, "bob", "student", room).await;
        let ada = old_room.joined().participant;

        let a = resume(&server, transport, "ada", room, &old.welcome().resume_token).await;
        assert!(a.welcome().resumed, "{transport:?}");
        assert_eq!(a.welcome().session_id, old.welcome().session_id);
        let closed = within("old connection closed", old.closed()).await;
        assert!(
            matches!(&closed, ClientError::Closed { code: Some(ErrorCode::Normal), reason } if reason.contains("resumed")),
            "{transport:?}: {closed:?}"
        );
        let mut room_a = within("rejoin", a.join(room, None)).await.expect("rejoin");
        assert!(room_a.joined().resumed, "{transport:?}");
        assert_eq!(room_a.joined().participant, ada);

        next_is_update_from(&mut room_b, &mut room_a, &mut Board::new(1), 1).await;
        server.server.shutdown().await;
    }
}

#[tokio::test]
async fn without_a_resume_the_grace_window_ends_in_a_presence_timeout() {
    for transport in TRANSPORTS {
        let server = TestServer::start_with(|c| c.resume_grace = Duration::from_millis(300)).await;
        let room = "s/c/grace";
        let (a, room_a) = server.member(transport, "ada", "student", room).await;
        let (_b, mut room_b) = server.member(transport, "bob", "student", room).await;
        assert_eq!(a.welcome().limits.resume_grace_ms, 300);
        let ada = room_a.joined().participant;
        let old = a.welcome().clone();
        a.close(ErrorCode::Internal);
        drop((a, room_a));

        let code = left_code(&mut room_b, ada).await;
        assert_eq!(code, ErrorCode::PresenceTimeout.to_u16(), "{transport:?}");
        let a = resume(&server, transport, "ada", room, &old.resume_token).await;
        assert!(!a.welcome().resumed, "{transport:?}: the window has passed");
        assert_ne!(a.welcome().session_id, old.session_id);
        let room_a = within("join", a.join(room, None)).await.expect("join");
        assert!(!room_a.joined().resumed);
        server.server.shutdown().await;
    }
}

#[tokio::test]
async fn a_clean_close_leaves_at_once_and_cannot_be_resumed() {
    for transport in TRANSPORTS {
        // With the default 30 s window, a leave within the test's wait proves no detach.
        let server = TestServer::start().await;
        let room = "s/c/clean";
        let (a, room_a) = server.member(transport, "ada", "student", room).await;
        let (_b, mut room_b) = server.member(transport, "bob", "student", room).await;
        let ada = room_a.joined().participant;
        let old = a.welcome().clone();
        a.close(ErrorCode::Normal);

        assert_eq!(left_code(&mut room_b, ada).await, ErrorCode::Normal.to_u16(), "{transport:?}");
        let a = resume(&server, transport, "ada", room, &old.resume_token).await;
        assert!(!a.welcome().resumed, "{transport:?}");
        server.server.shutdown().await;
    }
}

#[tokio::test]
async fn a_resume_token_is_bound_to_its_user() {
    for transport in TRANSPORTS {
        let server = TestServer::start().await;
        let room = "s/c/bound";
        let (a, mut room_a) = server.member(transport, "ada", "student", room).await;
        let stolen = a.welcome().resume_token.clone();

        let eve = resume(&server, transport, "eve", room, &stolen).await;
        assert!(!eve.welcome().resumed, "{transport:?}: another user's token is not a resume");
        assert_ne!(eve.welcome().session_id, a.welcome().session_id);
        send_acked(&mut room_a, Board::new(1).put(1, "still", 1)).await;

        // Ada's own token still works.
        let again = resume(&server, transport, "ada", room, &stolen).await;
        assert!(again.welcome().resumed, "{transport:?}");
        server.server.shutdown().await;
    }
}

#[tokio::test]
async fn a_lost_member_outlives_a_shorter_presence_ttl() {
    // Each transport waits out the window: run them side by side.
    futures::future::join_all(TRANSPORTS.map(outlives_the_ttl)).await;
}

async fn outlives_the_ttl(transport: Transport) {
    let server = TestServer::start_with(|c| {
        c.presence_ttl = Duration::from_secs(1);
        c.heartbeat = Duration::from_millis(500);
        c.resume_grace = Duration::from_millis(2500);
    })
    .await;
    let room = "s/c/ttl";
    let (b, mut room_b) = server.member(transport, "bob", "student", room).await;
    let slot = room_b.joined().slot;
    // Bob stays alive under the 1 s TTL.
    let keepalive = async {
        let mut every = tokio::time::interval(Duration::from_millis(200));
        for seq in 1u16.. {
            every.tick().await;
            let beat = Heartbeat { slot, seq, status: Status::Active, tool: Tool::Pen };
            b.send_datagram(&Datagram::from(beat)).expect("heartbeat");
        }
    };
    let lost = async {
        let (a, room_a) = server.member(transport, "ada", "student", room).await;
        let ada = room_a.joined().participant;
        let lost_at = Instant::now();
        a.close(ErrorCode::Internal);
        let code = left_code(&mut room_b, ada).await;
        (code, lost_at.elapsed())
    };
    let (code, after) = tokio::select! {
        () = keepalive => unreachable!(),
        out = lost => out,
    };
    assert_eq!(code, ErrorCode::PresenceTimeout.to_u16(), "{transport:?}");
    assert!(
        after >= Duration::from_millis(2500),
        "{transport:?}: evicted after {after:?}, inside the window"
    );
    server.server.shutdown().await;
}
