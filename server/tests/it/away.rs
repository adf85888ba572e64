//! No ghost cursors (SPEC §8.4): a member whose connection is lost is shown to the others as
//! away with its pointer hidden within the presence TTL, keeps its place, and on a resume is
//! shown as before — with no leave or join in between.

use std::time::Duration;

use easel_proto::datagram::{Heartbeat, Status, Tool, is_newer};
use easel_proto::{Datagram, Message};
use easel_transport::client::{Connection, Options, RoomStream, Transport};

use crate::harness::{Board, Relay, TestServer, send_acked, token, until_listed, within};

const ROOM: &str = "s/c/away";

/// Reads `observer`'s presence batches, keeping `who`'s newest entry as a receiver does
/// (SPEC §8.2), until that entry is newer than `after` and shows `want`; returns its seq.
async fn presence_of(observer: &Connection, who: u16, after: Option<u16>, want: (Status, Tool)) -> u16 {
    let mut seen = after;
    loop {
        let Datagram::PresenceBatch(batch) = observer.recv_datagram().await.expect("datagram") else {
            continue;
        };
        for e in batch.entries.iter().filter(|e| e.participant == who) {
            if seen.is_some_and(|s| !is_newer(e.seq, s)) {
                continue;
            }
            seen = Some(e.seq);
            if (e.status, e.tool) == want {
                return e.seq;
            }
        }
    }
}

/// Bob was sent no leave and no join: ada's next edit is the very next frame he gets.
async fn next_is_her_edit(room_a: &mut RoomStream, room_b: &mut RoomStream, ada_index: u16) {
    send_acked(room_a, Board::new(1).put(1, "back", 1)).await;
    let next = within("bob's next frame", room_b.next()).await.expect("room stream");
    assert!(
        matches!(&next, Some(Message::RemoteUpdate(u)) if u.from == ada_index),
        "expected ada's edit first, got {next:?}"
    );
}

async fn connect(options: &Options, user: &str, resume: Option<Vec<u8>>) -> Connection {
    let jwt = token(ROOM, user, "student", 3600);
    within("connect", Connection::connect_resuming(options, &jwt, &format!("{user}-device"), resume))
        .await
        .expect("connect")
}

#[tokio::test]
async fn a_lost_connection_is_away_within_the_ttl_and_back_on_resume_without_a_leave() {
    let server = TestServer::start().await;
    let bob = connect(&server.options(Transport::Quic), "bob", None).await;
    let ttl = Duration::from_millis(u64::from(bob.welcome().limits.presence_ttl_ms));
    let mut room_b = within("bob joins", bob.join(ROOM, None)).await.expect("join");
    // Ada's WebSocket goes through a relay the test can cut, as a network would.
    let relay = Relay::start(server.server.http_addr()).await;
    let via_relay = Options { addr: relay.addr, ..server.options(Transport::WebSocket) };
    let ada = connect(&via_relay, "ada", None).await;
    let room_a = within("ada joins", ada.join(ROOM, None)).await.expect("join");
    let ada_index = room_a.joined().participant;
    assert_eq!(until_listed(&mut room_b, &[], "ada").await.index, ada_index, "ada's arrival");

    let slot = room_a.joined().slot;
    let beat = Heartbeat { slot, seq: 1, status: Status::Active, tool: Tool::Pen };
    ada.send_datagram(&Datagram::from(beat)).expect("heartbeat");
    let active = (Status::Active, Tool::Pen);
    let shown = within("ada shown", presence_of(&bob, ada_index, None, active)).await;

    relay.cut(false);
    let away =
        tokio::time::timeout(ttl, presence_of(&bob, ada_index, Some(shown), (Status::Away, Tool::Hidden)))
            .await
            .expect("bob sees ada away, pointer hidden, within the presence TTL");

    within("ada notices", ada.closed()).await;
    let ada = connect(&via_relay, "ada", Some(ada.welcome().resume_token.clone())).await;
    assert!(ada.welcome().resumed);
    let mut room_a = within("ada rejoins", ada.join(ROOM, None)).await.expect("rejoin");
    assert!(room_a.joined().resumed);
    assert_eq!(room_a.joined().participant, ada_index, "its place was kept");
    // Before any heartbeat of the new connection: the server gives the old presence back.
    within("ada back", presence_of(&bob, ada_index, Some(away), active)).await;

    next_is_her_edit(&mut room_a, &mut room_b, ada_index).await;
    server.server.shutdown().await;
}

#[tokio::test]
async fn a_silent_member_is_away_within_the_ttl_and_resumes_its_place_without_a_leave() {
    // A cut the transport has not noticed looks like this to the room: the connection is
    // open (QUIC keeps it alive far longer than the TTL) and nothing comes from the member.
    let server = TestServer::start_with(|c| {
        c.presence_ttl = Duration::from_secs(1);
        c.heartbeat = Duration::from_millis(500);
    })
    .await;
    let options = server.options(Transport::Quic);
    let bob = connect(&options, "bob", None).await;
    let mut room_b = within("bob joins", bob.join(ROOM, None)).await.expect("join");
    let ada = connect(&options, "ada", None).await;
    let room_a = within("ada joins", ada.join(ROOM, None)).await.expect("join");
    let ada_index = room_a.joined().participant;
    assert_eq!(until_listed(&mut room_b, &[], "ada").await.index, ada_index, "ada's arrival");
    let beat = Heartbeat { slot: room_a.joined().slot, seq: 1, status: Status::Active, tool: Tool::Pen };
    ada.send_datagram(&Datagram::from(beat)).expect("heartbeat");
    let active = (Status::Active, Tool::Pen);
    let shown = within("ada shown", presence_of(&bob, ada_index, None, active)).await;

    // Ada says nothing more: past the TTL she is shown away, not evicted.
    let away =
        within("ada shown away", presence_of(&bob, ada_index, Some(shown), (Status::Away, Tool::Hidden)))
            .await;

    // Her app comes back on a new connection (the old one still looks live here).
    let ada = connect(&options, "ada", Some(ada.welcome().resume_token.clone())).await;
    assert!(ada.welcome().resumed);
    let mut room_a = within("ada rejoins", ada.join(ROOM, None)).await.expect("rejoin");
    assert!(room_a.joined().resumed, "the room kept her place");
    assert_eq!(room_a.joined().participant, ada_index);
    within("ada back", presence_of(&bob, ada_index, Some(away), active)).await;

    next_is_her_edit(&mut room_a, &mut room_b, ada_index).await;
    server.server.shutdown().await;
}
