//! The whiteboard paths over each transport: cursors as datagrams, edits on room streams,
//! state for late joiners; each on one server and again with the room spread over two nodes of
//! a cluster (members on each in turn), where it must behave the same.

use std::time::Duration;

use easel_proto::datagram::{Cursor, CursorEntry};
use easel_proto::message::{Participant, SyncKind};
use easel_proto::{Datagram, Message};

use easel_transport::client::{Connection, RoomStream};

use crate::harness::{
    Board, TRANSPORTS, TestServer, everyone, expect_message, send_acked, until_listed, within,
};
use crate::spread::{LAYOUTS, Layout};

/// Every layout with every transport.
fn cases() -> impl Iterator<Item = (Layout, easel_transport::client::Transport)> {
    LAYOUTS.into_iter().flat_map(|layout| TRANSPORTS.map(|transport| (layout, transport)))
}

/// The numbers of `users` as `stream`'s node numbers them, from `listed` (the whole list the
/// member was sent) and the membership frames after it.
async fn numbers<const N: usize>(
    stream: &mut RoomStream,
    listed: &[Participant],
    users: [&str; N],
) -> [u16; N] {
    let mut known: Vec<Participant> = listed.to_vec();
    loop {
        let found = users.map(|u| known.iter().find(|p| p.user == u).map(|p| p.index));
        if found.iter().all(Option::is_some) {
            return found.map(Option::unwrap_or_default);
        }
        known.extend(
            expect_message(stream, &format!("{users:?} listed"), |m| match m {
                Message::Participants(p) => Some(p.joined),
                _ => None,
            })
            .await,
        );
    }
}

/// Imports what `stream` brings until `board` holds `want`: on a spread room, a joiner at
/// another node may be sent the state before that node has applied the latest acked edit,
/// which then follows as an update.
async fn converge(board: &Board, stream: &mut RoomStream, want: &loro::LoroValue) {
    while board.value() != *want {
        let data = expect_message(stream, "the rest of the state", |m| match m {
            Message::RemoteUpdate(u) => Some(u.data),
            _ => None,
        })
        .await;
        board.import(&data);
    }
}

/// Moves the cursor of `mover` (its connection, its room slot, its number as `seer`'s room
/// knows it) to `at(seq)` every 20 ms until `seer` receives it, and returns what arrived.
/// Datagrams may be lost, even on loopback: hence the repeats.
async fn moved_until_seen(
    (mover, slot, number): (&Connection, u16, u16),
    seer: &Connection,
    at: impl Fn(u16) -> (i32, i32),
) -> CursorEntry {
    let moving = async {
        let mut every = tokio::time::interval(Duration::from_millis(20));
        for seq in 1u16.. {
            every.tick().await;
            let (x, y) = at(seq);
            mover.send_datagram(&Datagram::from(Cursor { slot, seq, x, y })).expect("send cursor");
        }
    };
    let seen = async {
        loop {
            if let Datagram::CursorBatch(batch) = seer.recv_datagram().await.expect("datagram")
                && let Some(entry) = batch.cursors.iter().find(|c| c.participant == number)
            {
                return *entry;
            }
        }
    };
    within("the cursor seen", async {
        tokio::select! {
            () = moving => unreachable!(),
            entry = seen => entry,
        }
    })
    .await
}

#[tokio::test]
async fn cursor_reaches_the_other_participant() {
    for (layout, transport) in cases() {
        let server = layout.start().await;
        let (a, room_a) = server.member(transport, "ada", "student", "school/art/mon").await;
        let (b, mut room_b, listed) =
            server.member_listed(transport, "bob", "student", "school/art/mon").await;
        let me = until_listed(&mut room_b, &listed, "ada").await.index;
        let slot = room_a.joined().slot;
        let entry = moved_until_seen((&a, slot, me), &b, |seq| (1600 + i32::from(seq), -320)).await;
        assert_eq!(entry.y, -320, "{layout:?} {transport:?}");
        assert_eq!(
            entry.x,
            1600 + i32::from(entry.seq),
            "{layout:?} {transport:?}: position matches its sequence"
        );
        server.shutdown().await;
    }
}

/// An edit several times larger than every read buffer and flow-control window the server
/// sizes for idle sessions (SPEC's 1 MiB frame limit allows it) still crosses each transport
/// both ways: up to the server, out to another member, and in a late joiner's snapshot.
#[tokio::test]
async fn an_edit_larger_than_every_buffer_crosses_each_transport() {
    // Text that does not compress, 700 KiB: over the 256 KiB stream window, the 16 KiB reads
    // and the 4 KiB WebSocket read buffer, under the 1 MiB frame limit.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let text: String = (0..700 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    for (layout, transport) in cases() {
        let server = layout.start().await;
        let room = "school/art/big";
        let (_a, mut room_a) = server.member(transport, "ada", "teacher", room).await;
        let (_b, mut room_b) = server.member(transport, "bob", "student", room).await;
        let doc = loro::LoroDoc::new();
        doc.get_text("t").insert(0, &text).expect("insert");
        doc.commit();
        let data = doc.export(loro::ExportMode::all_updates()).expect("export");
        assert!(data.len() > 600 * 1024, "the update is as large as meant: {}", data.len());
        send_acked(&mut room_a, Message::from(easel_proto::message::Update { op_id: 1, data })).await;

        let at_b = expect_message(&mut room_b, "the large update at B", |m| match m {
            Message::RemoteUpdate(u) => Some(u.data),
            _ => None,
        })
        .await;
        let board_b = Board::new(2);
        board_b.import(&at_b);
        assert_eq!(board_b.doc.get_text("t").to_string(), text, "{layout:?} {transport:?}: B has the edit");

        // C joins where A is: the edit is in its snapshot.
        let c = server.connect(transport, "cyd", "viewer", room).await;
        within("join C", c.join(room, None)).await.expect("join");
        let snapshot = within("snapshot", c.snapshot()).await.expect("snapshot");
        let board_c = Board::new(3);
        board_c.import(&snapshot.data);
        assert_eq!(
            board_c.doc.get_text("t").to_string(),
            text,
            "{layout:?} {transport:?}: C's snapshot has it"
        );
        server.shutdown().await;
    }
}

#[tokio::test]
async fn edits_converge_and_late_joiners_get_the_state() {
    for (layout, transport) in cases() {
        let server = layout.start().await;
        let room = "school/art/tue";
        let (_a, mut room_a, listed_a) = server.member_listed(transport, "ada", "teacher", room).await;
        let (_b, mut room_b, listed_b) = server.member_listed(transport, "bob", "student", room).await;
        // Later, C joins where A is: once A's node lists B, C's list is whole. And B's node
        // lists A before A writes, so A's update names A there.
        until_listed(&mut room_a, &listed_a, "bob").await;
        let from_a = until_listed(&mut room_b, &listed_b, "ada").await.index;
        let (mut board_a, mut board_b) = (Board::new(1), Board::new(2));

        send_acked(&mut room_a, board_a.put(1, "a1", 1)).await;
        let data = expect_message(&mut room_b, "A's update at B", |m| match m {
            Message::RemoteUpdate(u) if u.from == from_a => Some(u.data),
            _ => None,
        })
        .await;
        board_b.import(&data);
        send_acked(&mut room_b, board_b.put(1, "b1", 2)).await;
        let data = expect_message(&mut room_a, "B's update at A", |m| match m {
            Message::RemoteUpdate(u) => Some(u.data),
            _ => None,
        })
        .await;
        board_a.import(&data);
        assert_eq!(board_a.value(), board_b.value(), "{layout:?} {transport:?}: both docs converge");
        assert_eq!(board_a.keys(), ["a1", "b1"]);

        // A late joiner with nothing gets a snapshot on a uni stream.
        let c = server.connect(transport, "cyd", "viewer", room).await;
        let mut room_c = within("join C", c.join(room, None)).await.expect("join");
        assert_eq!(room_c.joined().sync, SyncKind::Snapshot);
        assert!(everyone(&mut room_c).await.len() >= 3, "C sees everyone");
        let snapshot = within("snapshot", c.snapshot()).await.expect("snapshot");
        let board_c = Board::new(3);
        board_c.import(&snapshot.data);
        assert_eq!(
            board_c.value(),
            board_a.value(),
            "{layout:?} {transport:?}: late joiner has the full state"
        );

        // One that already has part of it gets only the difference.
        let partial = Board::new(4);
        partial.import(
            &board_a.doc.export(loro::ExportMode::updates_owned(Default::default())).expect("export"),
        );
        send_acked(&mut room_a, board_a.put(2, "a2", 3)).await;
        // D joins where B is: on a spread room, the edit acked at A's node may follow its diff.
        let d = server.connect(transport, "dan", "viewer", room).await;
        let mut room_d =
            within("join D", d.join(room, Some(partial.doc.oplog_vv().encode()))).await.expect("join");
        // On a spread room, D's node may not have applied a2 yet: then D already holds all
        // that node has (nothing to send), and a2 follows as an update.
        let sync = room_d.joined().sync;
        if layout == Layout::One {
            assert_eq!(sync, SyncKind::Updates, "{transport:?}");
        } else {
            assert!(matches!(sync, SyncKind::Updates | SyncKind::None), "{transport:?}: {sync:?}");
        }
        if sync == SyncKind::Updates {
            let diff = within("diff", d.snapshot()).await.expect("diff");
            partial.import(&diff.data);
        }
        if layout == Layout::One {
            assert_eq!(
                partial.value(),
                board_a.value(),
                "{transport:?}: version-vector diff completes the doc"
            );
        }
        within("D converges", converge(&partial, &mut room_d, &board_a.value())).await;
        server.shutdown().await;
    }
}

#[tokio::test]
async fn leaving_is_broadcast_at_once() {
    for (layout, transport) in cases() {
        let server = layout.start().await;
        let (_a, mut room_a, listed) = server.member_listed(transport, "ada", "student", "s/c/leave").await;
        let (b, _room_b) = server.member(transport, "bob", "student", "s/c/leave").await;
        let (c, room_c) = server.member(transport, "cyd", "student", "s/c/leave").await;
        // Once A has seen both (on a spread room a stay shorter than the relay's pace is
        // never seen at all): a clean close...
        let [bob, cyd] = numbers(&mut room_a, &listed, ["bob", "cyd"]).await;
        b.close(easel_proto::ErrorCode::Normal);
        // ...and an app that just drops its connection.
        drop((c, room_c));
        // Either may be seen to go first.
        let mut left = std::collections::HashMap::new();
        while !(left.contains_key(&bob) && left.contains_key(&cyd)) {
            let gone = expect_message(&mut room_a, "participants left", |m| match m {
                Message::Participants(p) => Some(p.left),
                _ => None,
            })
            .await;
            left.extend(gone.into_iter().map(|l| (l.index, l.code)));
        }
        for who in [bob, cyd] {
            assert_eq!(left[&who], easel_proto::ErrorCode::Normal.to_u16(), "{layout:?} {transport:?}");
        }
        server.shutdown().await;
    }
}

#[tokio::test]
async fn concurrent_joins_on_one_connection_get_distinct_slots() {
    let server = TestServer::start().await;
    let conn =
        server.connect(easel_transport::client::Transport::Quic, "ada", "student", "school/art/*").await;
    let rooms = ["school/art/a", "school/art/b", "school/art/c", "school/art/d", "school/art/a"];
    // A resumed client rejoins all its rooms at once: the joins race inside the server.
    let results = within("joins", futures::future::join_all(rooms.iter().map(|r| conn.join(r, None)))).await;
    let mut slots: Vec<u16> =
        results.iter().filter_map(|r| r.as_ref().ok()).map(|s| s.joined().slot).collect();
    let refused: Vec<String> =
        results.iter().filter_map(|r| r.as_ref().err()).map(ToString::to_string).collect();
    slots.sort_unstable();
    assert_eq!(slots, [0, 1, 2, 3], "four rooms, four distinct slots");
    assert_eq!(refused.len(), 1, "the same room twice is refused once: {refused:?}");
    assert!(refused[0].contains("AlreadyJoined") || refused[0].contains("401"), "{}", refused[0]);
}

/// A program running many clients (a load generator) may put their QUIC connections on one
/// shared endpoint, one UDP socket: each connection must still get its own room's edits and
/// cursors, and nothing of the other rooms on the socket.
#[tokio::test]
async fn connections_sharing_one_quic_socket_each_keep_their_own_rooms() {
    use easel_transport::client::Transport;
    use easel_transport::quic::SharedEndpoint;

    let server = TestServer::start().await;
    let mut options = server.options(Transport::Quic);
    options.quic_endpoint = Some(SharedEndpoint::bind(options.addr).expect("bind a shared endpoint"));
    let rooms = ["school/art/mon", "school/music/mon"];
    let mut members = Vec::new();
    for (i, user) in ["ada", "bob", "cyd", "dan"].into_iter().enumerate() {
        let room = rooms[i / 2];
        let jwt = crate::harness::token(room, user, "student", 3600);
        let conn = within("connect", Connection::connect(&options, &jwt, &format!("{user}-device")))
            .await
            .expect("connect on the shared endpoint");
        let stream = within("join", conn.join(room, None)).await.expect("join");
        members.push((conn, stream));
    }
    let shared = options.quic_endpoint.as_ref().map(SharedEndpoint::connections);
    assert_eq!(shared, Some(4), "all four on the one socket");
    // ada and cyd each edit their own room; bob and dan each see only their room's edit.
    for (writer, key) in [(0, "art"), (2, "music")] {
        let mut board = Board::new(writer as u64 + 1);
        send_acked(&mut members[writer].1, board.put(1, key, 7)).await;
        let reader = &mut members[writer + 1].1;
        let data = expect_message(reader, key, |m| match m {
            Message::RemoteUpdate(u) => Some(u.data),
            _ => None,
        })
        .await;
        let seen = Board::new(9);
        seen.import(&data);
        assert_eq!(seen.keys(), vec![key.to_owned()], "only its own room's edit");
    }
    // ada's cursor reaches bob, named by her number in that room.
    let slot = members[0].1.joined().slot;
    let ada = members[0].1.joined().participant;
    let entry = moved_until_seen((&members[0].0, slot, ada), &members[1].0, |seq| (42, i32::from(seq))).await;
    assert_eq!((entry.x, entry.y), (42, i32::from(entry.seq)));
    server.shutdown().await;
}
