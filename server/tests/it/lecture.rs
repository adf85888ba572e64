//! The lecture (SPEC §6.4): a few hundred protocol clients join one room in a burst while the
//! teacher edits the board. Everyone must end up holding the same participant list (from its
//! whole list and the batched deltas after it) and the same document (snapshot plus remote
//! updates), and nobody may be closed: membership news is batched, so a join storm costs each
//! member a frame a slot, not a frame a joiner, and small queues do not overflow.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use easel_proto::Message;
use easel_transport::client::{Connection, RoomStream, Transport};
use loro::VersionVector;
use tokio::sync::{Semaphore, watch};

use crate::harness::{Board, TRANSPORTS, TestServer, send_acked, token, within};

const ROOM: &str = "uni-a/lecture-hall/2026-11-23";
const CLIENTS: usize = 300;
/// Joins under way at once.
const CONCURRENCY: usize = 64;
/// Teacher edits, spread over the storm.
const EDITS: usize = 5;

/// What every client must come to hold: everyone's number and the teacher's last version.
#[derive(Clone, Debug)]
struct Target {
    everyone: BTreeSet<u16>,
    version: VersionVector,
}

/// What a client holds of the room.
struct Held {
    participants: BTreeSet<u16>,
    /// Whether the whole list has come.
    listed: bool,
    board: Board,
    /// The membership frames received, for a failure message.
    heard: Vec<String>,
}

impl Held {
    fn reached(&self, target: &Target) -> bool {
        self.listed && self.participants == target.everyone && self.board.doc.oplog_vv() == target.version
    }

    /// What keeps this client from the target, for a failure message.
    fn short_of(&self, me: u16, target: Option<&Target>) -> String {
        let Some(target) = target else { return format!("participant {me}: no target was set") };
        let missing: Vec<_> = target.everyone.difference(&self.participants).collect();
        let extra: Vec<_> = self.participants.difference(&target.everyone).collect();
        format!(
            "participant {me}: listed {}, {} participants, missing {missing:?}, extra {extra:?}, document current {}, heard {:?}",
            self.listed,
            self.participants.len(),
            self.board.doc.oplog_vv() == target.version,
            self.heard,
        )
    }

    /// Applies one room frame; a frame that ends the membership is an error.
    fn apply(&mut self, message: Message) -> Result<(), String> {
        match message {
            Message::Participants(p) => {
                let joined: Vec<u16> = p.joined.iter().map(|j| j.index).collect();
                self.heard.push(format!("full {} joined {joined:?} left {}", p.full, p.left.len()));
                if p.full {
                    self.participants.clear();
                    self.listed = true;
                }
                self.participants.extend(p.joined.iter().map(|j| j.index));
                for gone in &p.left {
                    self.participants.remove(&gone.index);
                }
            }
            Message::RemoteUpdate(u) => self.board.import(&u.data),
            Message::Left(l) => return Err(format!("closed with Left {{ code: {} }}", l.code)),
            _ => {}
        }
        Ok(())
    }
}

/// One viewer: joins (holding a place among the joins under way), takes the snapshot if one
/// follows, then applies its room stream until it holds the target. It stays connected (the
/// caller holds its connection): a viewer that left once done would shrink the list the
/// slower ones are still catching up to.
async fn viewer(
    options: easel_transport::client::Options,
    user: String,
    joins: Arc<Semaphore>,
    joined: watch::Sender<Vec<u16>>,
    mut target: watch::Receiver<Option<Target>>,
    deadline: tokio::time::Instant,
) -> Result<(Connection, RoomStream), String> {
    let (conn, mut stream) = {
        let _place = joins.acquire().await.map_err(|e| e.to_string())?;
        let jwt = token(ROOM, &user, "viewer", 3600);
        let conn = Connection::connect(&options, &jwt, &format!("{user}-device"))
            .await
            .map_err(|e| format!("{user}: connect: {e}"))?;
        let stream = conn.join(ROOM, None).await.map_err(|e| format!("{user}: join: {e}"))?;
        (conn, stream)
    };
    joined.send_modify(|j| j.push(stream.joined().participant));
    follow(&conn, &mut stream, &mut target, deadline).await.map_err(|e| format!("{user}: {e}"))?;
    Ok((conn, stream))
}

async fn follow(
    conn: &Connection,
    stream: &mut RoomStream,
    target: &mut watch::Receiver<Option<Target>>,
    deadline: tokio::time::Instant,
) -> Result<(), String> {
    let mut held =
        Held { participants: BTreeSet::new(), listed: false, board: Board::new(0), heard: Vec::new() };
    if stream.joined().sync != easel_proto::message::SyncKind::None {
        let snapshot = tokio::time::timeout_at(deadline, conn.snapshot())
            .await
            .map_err(|_| format!("participant {}: the snapshot never came", stream.joined().participant))?
            .map_err(|e| format!("snapshot: {e}"))?;
        held.board.import(&snapshot.data);
    }
    loop {
        if target.borrow().as_ref().is_some_and(|t| held.reached(t)) {
            return Ok(());
        }
        tokio::select! {
            message = stream.next() => match message {
                Ok(Some(message)) => held.apply(message)?,
                Ok(None) => return Err("the room stream ended".into()),
                Err(e) => return Err(format!("the room stream broke: {e}")),
            },
            changed = target.changed() => changed.map_err(|e| e.to_string())?,
            () = tokio::time::sleep_until(deadline) => return Err(held.short_of(stream.joined().participant, target.borrow().as_ref())),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_storm_ends_with_everyone_holding_the_same_room() {
    // Small queues, as a loaded server would have them: one frame per member per joiner
    // would overflow them.
    let server = TestServer::start_with(|c| {
        c.outbound_queue = 16;
        c.presence_ttl = Duration::from_secs(120);
    })
    .await;
    let (_teacher, mut desk) = server.member(Transport::Quic, "prof", "teacher", ROOM).await;
    let mut board = Board::new(1);
    send_acked(&mut desk, board.put(1, "title", 0)).await;

    // A minute for the storm, a minute more for everyone to catch up.
    let give_up = tokio::time::Instant::now() + Duration::from_secs(120);
    let joins = Arc::new(Semaphore::new(CONCURRENCY));
    let (joined_tx, mut joined) = watch::channel(Vec::new());
    let (target_tx, target_rx) = watch::channel(None);
    let viewers: Vec<_> = (0..CLIENTS)
        .map(|i| {
            // Mostly WebSocket: a debug build's QUIC handshakes would make the test slow, and
            // the room does not care which transport a member came by.
            let options = server.options(TRANSPORTS.get(i % 10).copied().unwrap_or(Transport::WebSocket));
            let task = viewer(
                options,
                format!("v{i}"),
                joins.clone(),
                joined_tx.clone(),
                target_rx.clone(),
                give_up,
            );
            tokio::spawn(task)
        })
        .collect();
    drop(joined_tx);

    // The teacher edits while the storm lasts, each edit after another share of the joins.
    for k in 1..=EDITS as u64 {
        let share = CLIENTS * k as usize / (EDITS + 1);
        within("joins", joined.wait_for(|j| j.len() >= share)).await.expect("viewers join");
        send_acked(&mut desk, board.put(k + 1, &format!("slide{k}"), k as i64)).await;
    }
    let storm = tokio::time::timeout(Duration::from_secs(60), joined.wait_for(|j| j.len() == CLIENTS));
    let viewers_joined = storm.await.expect("all joined within a minute").expect("viewers join").clone();
    let mut everyone: BTreeSet<u16> = viewers_joined.into_iter().collect();
    everyone.insert(desk.joined().participant);
    assert_eq!(everyone.len(), CLIENTS + 1, "every viewer got its own number");
    target_tx.send_replace(Some(Target { everyone, version: board.doc.oplog_vv() }));

    // A viewer stuck short of the target gives up and says where it stands; the wait is
    // bounded as a whole, so a hung task fails the test, not hangs it.
    let deadline = give_up + Duration::from_secs(10);
    let mut failures = Vec::new();
    let mut connected = Vec::new();
    for v in viewers {
        let outcome = tokio::time::timeout_at(deadline, v).await;
        match outcome {
            Ok(Ok(Ok(viewer))) => connected.push(viewer),
            Ok(Ok(Err(e))) => failures.push(e),
            Ok(Err(e)) => failures.push(format!("task: {e}")),
            Err(_) => failures.push("hung past its deadline".into()),
        }
    }
    assert!(failures.is_empty(), "{} of {CLIENTS} viewers failed: {:?}", failures.len(), &failures[..]);
    drop(connected);
    server.server.shutdown().await;
}
