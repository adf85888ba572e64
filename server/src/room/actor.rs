//! The task that drives one [`Room`]: it takes [`Command`]s and cursors from connections,
//! holds each member's [`Link`], runs durable writes through the [`Board`] (board updates)
//! and the [`Store`] (classroom records; cluster mode: classroom events to the room log) in
//! order, imports the room log's updates and classroom events (cluster mode) and stores the
//! room's snapshots there ([`Compaction`]), sleeps until the room's next timer, and feeds the
//! SFU driver. Every event is one input to the room followed by one [`Actor::drain`], the only
//! place where outputs become IO.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use easel_proto::{ErrorCode, Kind, Message};
use easel_sfu_bridge::Sfu;
use futures::stream::{FuturesOrdered, StreamExt as _};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::Instrument as _;

use super::budget::Claim;
use super::classlog::Published;
use super::commit::{Committed, Committing, persist, publish_class, side, write_snapshot};
use super::handle::{BroadcastGap, Command, Handle, JoinRequest, Link, Outbound, Stamped};
use super::riders::Riders;
use super::stats::{Ingest, Stats};
use super::{ClassEvent, Joined, Metric, Output, Persist, RelayBatch, Room, Undeliverable};
use crate::board::{Board, Loaded};
use crate::class::Class;
use crate::cluster::batch::Batcher;
use crate::cluster::log::Remote;
use crate::cluster::{Relay, RoomLog};
use crate::sfu::SfuOp;
use crate::store::{Store, StoreError};

/// Most queued updates the actor applies in one import.
const UPDATE_BATCH: usize = 256;
/// Commands waiting for a room.
const COMMAND_QUEUE: usize = 4096;
/// Longest wait for the next message of a room's history while loading it (cluster mode).
const REPLAY_WAIT: Duration = Duration::from_secs(10);
/// Loads of a cluster room begun again because a snapshot stored meanwhile purged history
/// the load had not read yet, before it gives up.
const LOAD_ATTEMPTS: u32 = 3;

/// Loads a room from the store and starts its actor, with the SFU its members' video goes to,
/// if any. `on_exit` runs when the actor stops (idle unload or shutdown), before its channel
/// closes for good.
pub async fn spawn(
    id: Arc<str>,
    mut config: super::Config,
    store: Store,
    board: Board,
    relay: Option<Relay>,
    sfu: Option<Arc<dyn Sfu>>,
    on_exit: impl FnOnce(&Handle) + Send + 'static,
) -> Result<Handle, SpawnError> {
    // Before the room serves anyone: a batch from now on is not missed.
    let presence = match relay {
        Some(relay) => {
            let gone = relay.gone();
            config.relay = Some(relay.origin());
            match relay.follow(&id).await {
                Ok(batches) => Some(Presence { relay, batches, gone }),
                Err(e) => {
                    tracing::warn!(room = %id, "cluster: cannot follow the room's presence: {e}");
                    Some(Presence { relay, batches: mpsc::channel(1).1, gone })
                }
            }
        }
        None => None,
    };
    let (tick, claim) = (config.tick, Claim::new(config.server_budget.clone()));
    let every = config.snapshot_every;
    if !board.snapshots() {
        config.snapshot_every = u64::MAX;
    }
    let (room, remote, (at, since)) = load(&id, &config, &store, &board).await?;
    let compaction = match &board {
        Board::Cluster(log) => Some(Compaction { log: log.clone(), at, since, every, writing: None }),
        Board::Local(_) => None,
    };
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let handle = Handle { id: id.clone(), tx, datagrams: Arc::default(), gap: BroadcastGap::default() };
    metrics::gauge!("easel_rooms").increment(1.0);
    let actor = Actor {
        room,
        rx,
        store,
        board,
        remote,
        compaction,
        presence,
        sfu: sfu.map(|sfu| Bridge { sfu, driver: None }),
        handle: handle.clone(),
        links: BTreeMap::new(),
        credit: HashMap::new(),
        riders: Riders::default(),
        committing: FuturesOrdered::new(),
        class_batch: Batcher::default(),
        joining: None,
        idle: false,
        tick,
        stats: Stats::default(),
        latency: crate::telemetry::ingest_to_send(),
        edits: HashMap::new(),
        cursors: HashMap::new(),
        asked: None,
        claim,
    };
    // One span per room task: whatever the room logs carries its id. A root: the session
    // whose join loaded the room is not the parent of everything the room does.
    tokio::spawn(actor.run(on_exit).instrument(tracing::info_span!(parent: None, "room", room = %id)));
    Ok(handle)
}

/// A cluster room's place in its log: the last sequence applied (or passed), and how many
/// messages were since its last snapshot.
type Position = (u64, u64);

/// Loads the room: from the store on one node alone; in cluster mode from its snapshot and
/// its log after it, up to what the log held when loading began. A snapshot stored while
/// the log was replayed may have purged what the load had not read yet: the load then
/// begins again from that snapshot.
async fn load(
    id: &Arc<str>,
    config: &super::Config,
    store: &Store,
    board: &Board,
) -> Result<(Room, Option<mpsc::Receiver<Remote>>, Position), SpawnError> {
    for attempt in 1..=LOAD_ATTEMPTS {
        let Loaded { stored, mut remote, replica } = board.load(id).await?;
        // Cluster mode: the classroom is in the snapshot and the room log, replayed below.
        let side = match board {
            Board::Cluster(_) => Vec::new(),
            Board::Local(_) => {
                let (store, room) = (store.clone(), id.clone());
                tokio::task::spawn_blocking(move || store.load_side(&room)).await??
            }
        };
        let (now, now_ms) = (Instant::now(), crate::shared::unix_ms());
        let per_min = config.chat_per_min;
        let (snapshot, class, (hands, cursor_cap)) = match replica {
            Some(r) => (
                Some((r.upto_seq, r.doc)),
                Class::restore(r.class, per_min, now, now_ms),
                (r.hands, r.cursor_cap),
            ),
            None => (
                stored.snapshot.map(|s| (s.upto_seq, s.data)),
                Class::load(side, per_min, now, now_ms),
                (Vec::new(), None),
            ),
        };
        let from = snapshot.as_ref().map_or(0, |(seq, _)| *seq);
        let updates = stored.updates.into_iter().map(|(seq, r)| (seq, r.data)).collect();
        let mut room = Room::new(id.clone(), config.clone(), snapshot, updates, class, now, now_ms)
            .map_err(|e| StoreError::Corrupt { room: id.to_string(), seq: e.seq(), reason: e.to_string() })?;
        room.restore(hands, cursor_cap);
        let (Board::Cluster(log), Some(rx)) = (board, &mut remote) else {
            return Ok((room, remote, (0, 0)));
        };
        let position = replay(&mut room, rx, from).await?;
        match log.marks(id).await? {
            Some(marks) if !marks.holds_from(from + 1) => {
                tracing::info!(room = %id, attempt, "cluster: the room's log was purged while it loaded; loading it again from its snapshot");
            }
            _ => return Ok((room, remote, position)),
        }
    }
    let why = format!("its log was purged under each of {LOAD_ATTEMPTS} loads");
    Err(StoreError::Log(why).into())
}

/// Cluster mode: imports the room's history from its subject (after `at`), up to what was
/// stored when the room was loaded; the room serves nobody before it has it all.
async fn replay(
    room: &mut Room,
    remote: &mut mpsc::Receiver<Remote>,
    mut at: u64,
) -> Result<Position, StoreError> {
    let mut passed = 0;
    loop {
        let next = tokio::time::timeout(REPLAY_WAIT, remote.recv()).await;
        match next {
            Ok(Some(Remote::Update { seq, data, author })) => {
                import_remote(room, seq, data, author);
                (at, passed) = (seq, passed + 1);
            }
            Ok(Some(Remote::Class { seq, at_ms, events })) => {
                for event in events {
                    room.handle_class_event(Instant::now(), at_ms, event);
                }
                (at, passed) = (seq, passed + 1);
            }
            Ok(Some(Remote::Passed { seq })) => (at, passed) = (seq, passed + 1),
            Ok(Some(Remote::CaughtUp)) => return Ok((at, passed)),
            Ok(Some(Remote::Lost)) => {
                return Err(StoreError::Log("the room log was purged while loading".into()));
            }
            Ok(None) => return Err(StoreError::Log("the room log ended while loading".into())),
            Err(_) => return Err(StoreError::Log("the room log stalled while loading".into())),
        }
    }
}

/// Imports another node's update; one Loro refuses is dropped and counted.
fn import_remote(room: &mut Room, seq: u64, data: Vec<u8>, author: Option<(Arc<str>, u16)>) {
    if let Err(e) = room.handle_remote(seq, data, author) {
        tracing::warn!(seq, "cluster: dropping an update from the room log: {e}");
        crate::cluster::error("malformed");
    }
}

/// Why a room could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The store (or the cluster's room log) could not read it, or what it read does not
    /// make a room.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blocking load task failed (panicked or was cancelled).
    #[error("loading task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Cluster mode: the room's snapshots. Every replica counts the log messages it applies and
/// stores a snapshot every [`Compaction::every`] of them (they are equivalent: the last
/// stored wins), in a task of its own: it never holds up the room or its acks. One that
/// fails is logged and counted, and tried again at the next count. A room that closes lets
/// the one being stored finish, and takes no more.
struct Compaction {
    log: Arc<RoomLog>,
    /// The last log sequence the room applied or passed.
    at: u64,
    /// Log messages since the last snapshot was taken.
    since: u64,
    /// `--snapshot-every`.
    every: u64,
    /// The task storing this room's last snapshot.
    writing: Option<tokio::task::JoinHandle<()>>,
}

/// Cluster mode: the room's presence across nodes.
struct Presence {
    relay: Relay,
    /// The other nodes' batches.
    batches: mpsc::Receiver<RelayBatch>,
    /// Nodes counted out of the cluster.
    gone: broadcast::Receiver<Arc<str>>,
}

/// What the presence relay brings.
enum Relayed {
    Batch(RelayBatch),
    NodeLeft(Arc<str>),
}

/// The SFU a room's video goes to, and its driver once a member has used it.
struct Bridge {
    sfu: Arc<dyn Sfu>,
    driver: Option<mpsc::UnboundedSender<SfuOp>>,
}

struct Actor {
    room: Room,
    rx: mpsc::Receiver<Stamped>,
    /// Classroom records.
    store: Store,
    /// Board updates.
    board: Board,
    /// Cluster mode: the other nodes' updates to this room.
    remote: Option<mpsc::Receiver<Remote>>,
    /// Cluster mode: the room's snapshots.
    compaction: Option<Compaction>,
    /// Cluster mode: the other nodes' members of this room.
    presence: Option<Presence>,
    sfu: Option<Bridge>,
    /// The actor's own handle: its id, cursor inbox, and the command queue the SFU driver
    /// reports on.
    handle: Handle,
    /// How to reach each linked member.
    links: BTreeMap<u16, Link>,
    /// Bytes each member's datagram buffer surely has free (see the drain).
    credit: HashMap<u16, usize>,
    /// Members queued broadcasts since their last cursor batch (their writers may hold them
    /// for the next one: [`Outbound::Ride`]).
    riders: Riders,
    committing: FuturesOrdered<Committing>,
    /// Cluster mode: classroom events waiting for the room's publish in flight (group
    /// commit), each with its encoding.
    class_batch: Batcher<(ClassEvent, Vec<u8>)>,
    /// The link and reply of the join being answered.
    joining: Option<(Link, oneshot::Sender<Result<Joined, ErrorCode>>)>,
    /// The room asked to be unloaded at its last housekeeping.
    idle: bool,
    /// The longest cursors and timers wait behind edits (the presence tick).
    tick: Duration,
    /// The room's own numbers (`Command::Stats`).
    stats: Stats,
    /// `easel_ingest_to_send_seconds` by [`Ingest`] kind.
    latency: [metrics::Histogram; 5],
    /// Ingest of each update of the batch being applied, until its write is queued.
    edits: HashMap<(u16, u64), Instant>,
    /// Arrival of each member's newest cursor not yet in a batch handed to the transport.
    cursors: HashMap<u16, Instant>,
    /// The classroom request being handled, and its ingest: what it causes is timed when
    /// queued (or, when it writes, once the write is durable).
    asked: Option<(Ingest, Instant)>,
    /// The room's claim on the server-wide datagram budget, renewed every turn.
    claim: Claim,
}

impl Actor {
    async fn run(mut self, on_exit: impl FnOnce(&Handle) + Send + 'static) {
        let inbox = self.handle.datagrams.clone();
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        let mut shutdown: Option<oneshot::Sender<()>> = None;
        loop {
            let timeout = self.room.poll_timeout().map(tokio::time::Instant::from_std);
            if let Some(at) = timeout
                && sleep.deadline() != at
            {
                sleep.as_mut().reset(at);
            }
            // Edits first: finished writes (acks, echoes), then commands, then timers and
            // cursors — but neither of those waits more than a tick behind a flood of edits.
            let now = Instant::now();
            let share = self.claim.update(self.room.busy_receivers(now));
            self.room.set_budget_share(share);
            if timeout.is_some_and(|at| now.saturating_duration_since(at.into_std()) > self.tick) {
                self.on_timeout().await;
                continue;
            }
            if shutdown.is_none() && inbox.waited_longer(now, self.tick) {
                self.on_datagrams().await;
                continue;
            }
            tokio::select! {
                biased;
                Some(c) = self.committing.next() => self.on_committed(c).await,
                cmd = self.rx.recv(), if shutdown.is_none() => match cmd {
                    None => break,
                    Some(Stamped { at, cmd }) => shutdown = self.on_command(at, cmd).await,
                },
                remote = next_remote(&mut self.remote), if shutdown.is_none() => {
                    if self.on_remote(remote).await {
                        break;
                    }
                }
                relayed = next_relayed(&mut self.presence), if shutdown.is_none() => self.on_relayed(relayed).await,
                // Messages that came while a snapshot was being stored may make one due now;
                // nothing else would ask again once the room falls quiet.
                () = snapshot_written(&mut self.compaction), if shutdown.is_none() => self.compact(),
                () = inbox.ready.notified(), if shutdown.is_none() => self.on_datagrams().await,
                () = &mut sleep, if timeout.is_some() => {
                    self.on_timeout().await;
                    if std::mem::take(&mut self.idle) && self.committing.is_empty() && self.rx.is_empty() {
                        break;
                    }
                }
            }
            if shutdown.is_some() && self.committing.is_empty() {
                break;
            }
        }
        self.finish().await;
        metrics::gauge!("easel_rooms").decrement(1.0);
        on_exit(&self.handle);
        if let Some(done) = shutdown {
            let _ = done.send(());
        }
    }

    /// The room closes: nothing more is taken; acks and echoes first, while everyone is still
    /// there to get them; then the final snapshot and the leaves, whose attendance records
    /// are stored before the room is gone.
    async fn finish(&mut self) {
        if let Some(writing) = self.compaction.take().and_then(|c| c.writing) {
            let _ = writing.await;
        }
        self.rx.close();
        self.settle().await;
        self.room.handle_shutdown(Instant::now());
        self.drain().await;
        self.settle().await;
        // The leaves took their members out of the SFU; dropping the driver's sender ends it
        // once they are done.
        self.sfu = None;
    }

    /// Waits for every write in flight, reporting each to the room.
    async fn settle(&mut self) {
        while let Some(c) = self.committing.next().await {
            self.on_committed(c).await;
        }
    }

    /// Returns whether the room must close (to be loaded again from its snapshot).
    async fn on_remote(&mut self, remote: Option<Remote>) -> bool {
        match remote {
            Some(Remote::Update { seq, data, author }) => {
                import_remote(&mut self.room, seq, data, author);
                self.drain().await;
                self.passed(seq);
            }
            Some(Remote::Class { seq, at_ms, events }) => {
                for event in events {
                    self.room.handle_class_event(Instant::now(), at_ms, event);
                }
                self.drain().await;
                self.passed(seq);
            }
            Some(Remote::Passed { seq }) => self.passed(seq),
            Some(Remote::CaughtUp) => {}
            // Its members are let go; those who come back load it anew.
            Some(Remote::Lost) => {
                tracing::error!("cluster: the room missed part of its log; closing it to load it again");
                crate::cluster::error("snapshot");
                self.remote = None;
                return true;
            }
            None => {
                tracing::error!("cluster: the room log stopped; other nodes' edits no longer arrive");
                self.remote = None;
            }
        }
        false
    }

    /// The room applied (or passed) the log message at `seq`: a snapshot may be due.
    fn passed(&mut self, seq: u64) {
        if let Some(c) = &mut self.compaction {
            c.at = c.at.max(seq);
            c.since += 1;
        }
        self.compact();
    }

    /// Takes and stores a snapshot if one is due, and the document holds nothing the log
    /// may not (no write in flight, none refused).
    fn compact(&mut self) {
        let Some(c) = &mut self.compaction else { return };
        if c.since < c.every
            || !self.committing.is_empty()
            || self.room.store_failed()
            || c.writing.as_ref().is_some_and(|w| !w.is_finished())
        {
            return;
        }
        c.since = 0;
        let (upto, room) = (c.at, self.room.id().to_owned());
        let bytes = match self.room.replica(upto) {
            Ok(replica) => crate::cluster::snapshot::encode(&replica).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(upto, "cluster: the room's snapshot could not be made: {e}");
                crate::cluster::error("snapshot");
                return;
            }
        };
        let log = c.log.clone();
        let task = async move {
            match log.store_snapshot(&room, upto, bytes).await {
                Ok(true) => {
                    tracing::debug!(upto, "cluster: snapshot stored");
                    metrics::counter!("easel_cluster_snapshots_total").increment(1);
                }
                Ok(false) => tracing::debug!(upto, "cluster: a newer snapshot is stored already"),
                Err(e) => {
                    tracing::warn!(upto, "cluster: snapshot not stored (retried at the next count): {e}");
                    crate::cluster::error("snapshot");
                }
            }
        };
        c.writing = Some(tokio::spawn(task.in_current_span()));
    }

    async fn on_relayed(&mut self, relayed: Option<Relayed>) {
        let now = Instant::now();
        match relayed {
            Some(Relayed::Batch(batch)) => self.room.handle_remote_presence(now, batch),
            Some(Relayed::NodeLeft(node)) => self.room.handle_node_left(now, &node),
            None => {
                tracing::error!(
                    "cluster: the room's presence relay stopped; other nodes' members no longer show"
                );
                if let Some(p) = &mut self.presence {
                    p.batches = mpsc::channel(1).1;
                }
                return;
            }
        }
        self.drain().await;
    }

    async fn on_datagrams(&mut self) {
        let now = Instant::now();
        let waiting = self.handle.datagrams.take();
        for (participant, beat) in waiting.heartbeats {
            self.room.handle_heartbeat(now, participant, &beat);
        }
        let cursors = waiting.cursors.into_iter().map(|(participant, (cursor, arrived))| {
            self.cursors.insert(participant, arrived);
            (participant, cursor)
        });
        self.room.handle_cursors(now, cursors);
        self.drain().await;
    }

    /// One command (with the updates queued right behind it); returns the reply of a
    /// `Shutdown`, which stops the taking of commands.
    async fn on_command(&mut self, mut at: Instant, mut cmd: Command) -> Option<oneshot::Sender<()>> {
        let now = Instant::now();
        loop {
            let Command::Update { participant, op_id, data } = cmd else { break };
            // The updates queued behind this one go with it: Loro's cost per import grows
            // with the room's history, and one import of the lot pays it once.
            self.edits.insert((participant, op_id), at);
            let mut ops = vec![(participant, op_id, data)];
            let mut next = None;
            while ops.len() < UPDATE_BATCH {
                match self.rx.try_recv() {
                    Ok(Stamped { at, cmd: Command::Update { participant, op_id, data } }) => {
                        self.edits.insert((participant, op_id), at);
                        ops.push((participant, op_id, data));
                    }
                    Ok(other) => {
                        next = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.room.handle_updates(now, ops);
            self.drain().await;
            // Refused or duplicate updates queued no write.
            self.edits.clear();
            Stamped { at, cmd } = next?;
        }
        let room = &mut self.room;
        match cmd {
            Command::Shutdown(done) => return Some(done),
            Command::Join(request, reply) => {
                let JoinRequest { arrival, link } = request;
                self.joining = Some((link, reply));
                room.handle_join(now, arrival);
            }
            Command::Leave { participant, conn, code } => room.handle_leave(now, participant, conn, code),
            Command::Detach { participant, conn } => room.handle_detach(now, participant, conn),
            Command::Update { participant, op_id, data } => room.handle_update(now, participant, op_id, data),
            Command::Touch(participant) => room.handle_touch(now, participant),
            Command::Refreshed { participant, conn, role, expires_ms } => {
                room.handle_refreshed(now, participant, conn, role, expires_ms)
            }
            Command::Reply(participant, message) => room.handle_reply(now, participant, message),
            Command::Sync { participant, since } => room.handle_sync(now, participant, &since),
            Command::Class(participant, message) => {
                self.asked = Ingest::of_class(message.kind()).map(|kind| (kind, at));
                room.handle_class(now, participant, message);
            }
            Command::Sfu(participant, message) => room.handle_sfu(now, participant, message),
            Command::SfuNews(participant, news) => {
                self.stats.sfu_errors += u64::from(news.is_sfu_error());
                room.handle_sfu_news(now, participant, news);
            }
            Command::Attendance(reply) => {
                let _ = reply.send(room.attendance());
            }
            Command::Stats(reply) => {
                let _ = reply.send(self.stats.clone());
            }
        }
        self.drain().await;
        // Answered without a write: its replies are queued now.
        if let Some((kind, at)) = self.asked.take() {
            self.latency(kind, at);
        }
        None
    }

    /// Records one ingest-to-send sample, fleet-wide and for this room.
    fn latency(&mut self, kind: Ingest, since: Instant) {
        let took = since.elapsed();
        self.latency[kind as usize].record(took.as_secs_f64());
        self.stats.record(kind, took);
    }

    async fn on_committed(&mut self, committed: Committed) {
        let mut timed = None;
        let class_log = matches!(committed, Committed::ClassLog(..));
        match committed {
            Committed::Op { participant, op_id, result: Ok(stored), received } => {
                self.room.handle_committed(participant, op_id, stored);
                timed = received.map(|at| (Ingest::Edit, at));
            }
            Committed::Op { participant, op_id, result: Err(e), .. } => {
                // Per write at debug: the store logs once when storage starts and stops failing.
                tracing::debug!(op_id, participant, "durable write failed: {e}");
                self.room.handle_persist_failed(participant, op_id);
            }
            Committed::Side { result: Ok(()), then, asked } => {
                self.room.handle_side_committed(then);
                timed = asked;
            }
            // Nothing that waited on it is confirmed; the requesters see no echo.
            Committed::Side { result: Err(e), .. } => {
                tracing::debug!("classroom write failed: {e}");
            }
            Committed::ClassLog(events, result) => {
                let outcome = match result {
                    Ok(false) => Published::Stored,
                    Ok(true) => Published::Resent,
                    Err(e) => {
                        tracing::debug!(events = events.len(), "classroom events not published: {e}");
                        Published::Refused
                    }
                };
                self.room.handle_class_published(Instant::now(), events, outcome);
            }
        }
        if class_log && let Some(batch) = self.class_batch.done() {
            self.committing.push_back(publish_class(&self.board, self.room.id(), batch));
        }
        self.drain().await;
        // The ack and echoes are queued now.
        if let Some((kind, at)) = timed {
            self.latency(kind, at);
        }
        // A snapshot put off for this write may be taken now.
        self.compact();
    }

    async fn on_timeout(&mut self) {
        self.room.handle_timeout(Instant::now());
        self.drain().await;
    }

    /// Does what the room asked, in order, and reports back what the IO refused (the room
    /// then puts what follows from it first).
    async fn drain(&mut self) {
        self.handle.gap.set(self.room.broadcast_gap(Instant::now()));
        let (mut sent, mut skipped) = (0u64, 0u64);
        while let Some(output) = self.room.poll_output() {
            match output {
                Output::Send { to, message } => {
                    self.log_refusal(to, &message);
                    self.queue(to, Outbound::Message(Box::new(message)));
                }
                Output::Frame { to, frame } => self.queue(to, Outbound::Frame(frame)),
                Output::Broadcast { frame, except } => {
                    let mut failed = Vec::new();
                    for (index, link) in &self.links {
                        if Some(*index) == except {
                            continue;
                        }
                        match link.tx.try_send(Outbound::Broadcast(frame.clone())) {
                            Ok(()) => self.riders.broadcast(*index),
                            Err(e) => failed.push((*index, refusal(&e))),
                        }
                    }
                    for (index, why) in failed {
                        self.room.handle_undeliverable(index, why);
                    }
                }
                Output::Datagrams { to, batch } => {
                    let Some(link) = self.links.get(&to) else { continue };
                    // Asking the connection for its free space takes its lock, contended by
                    // its driver: it was the top frame of a 2,000-viewer lecture. The space
                    // only grows but for our own sends, so what it last said less what we
                    // sent since is a safe floor, and it is asked again only below that. (A
                    // connection in several rooms spends it from each; when it runs out
                    // unseen, the transport drops its oldest queued datagram: latest wins.)
                    let need = batch.len_bytes();
                    let credit = self.credit.entry(to).or_default();
                    if *credit < need {
                        *credit = link.datagrams.buffer_space();
                    }
                    if *credit < need {
                        skipped += 1;
                        self.room.handle_undeliverable(to, Undeliverable::Congested);
                        continue;
                    }
                    *credit -= need;
                    // Only to a writer that may be holding: one that is, takes frames off
                    // its queue as they come, so a queue half full means it is busy writing,
                    // and a ride there would only take a place a broadcast may need.
                    if self.riders.batch(to) && link.tx.capacity() * 2 >= link.tx.max_capacity() {
                        let _ = link.tx.try_send(Outbound::Ride);
                    }
                    for datagram in batch.datagrams() {
                        if link.datagrams.send(datagram.clone()).is_err() {
                            break;
                        }
                        sent += 1;
                    }
                }
                Output::Snapshot { to, payload } => self.queue(to, Outbound::Snapshot(Box::new(payload))),
                Output::JoinAnswer(answer) => {
                    let Some((link, reply)) = self.joining.take() else { continue };
                    if let Ok(joined) = &answer {
                        // A resumed member's old link drops here, ending its old writer.
                        self.links.insert(joined.participant, link);
                        self.credit.remove(&joined.participant);
                    }
                    let resumed = answer.as_ref().is_ok_and(|j| j.resumed);
                    self.stats.joined(answer.is_ok(), resumed, self.links.len());
                    let _ = reply.send(answer);
                }
                Output::Left { member, code, reason } => {
                    self.credit.remove(&member);
                    self.riders.forget(member);
                    if let Some(link) = self.links.remove(&member) {
                        let _ = link.tx.try_send(Outbound::Left(code, reason));
                    }
                }
                Output::Release { member } => {
                    self.credit.remove(&member);
                    self.riders.forget(member);
                    self.links.remove(&member);
                }
                Output::SlowConsumer { member } => {
                    if let Some(link) = self.links.get(&member) {
                        link.kill.cancel();
                    }
                }
                Output::Persist(mut p) => {
                    // Timed from the update's ingest, not from when the room took it.
                    if let Persist::Append { participant, op_id, received, .. } = &mut p
                        && let Some(at) = self.edits.remove(&(*participant, *op_id))
                    {
                        *received = at;
                    }
                    self.committing.push_back(persist(&self.board, self.room.id(), p));
                }
                Output::SnapshotWrite(snapshot) => {
                    write_snapshot(&self.board, self.room.id(), snapshot).await
                }
                Output::Side { writes, then } => {
                    let asked = self.asked.take();
                    self.committing.push_back(side(&self.store, self.room.id(), writes, then, asked));
                }
                Output::ClassLog(event) => match crate::cluster::class::encode(&event) {
                    Ok(bytes) => {
                        let size = bytes.len();
                        if let Some(batch) = self.class_batch.push((event, bytes), size) {
                            self.committing.push_back(publish_class(&self.board, self.room.id(), batch));
                        }
                    }
                    Err(e) => {
                        tracing::error!("classroom event does not encode: {e}");
                        self.room.handle_class_unpublished(Instant::now(), event);
                    }
                },
                Output::Sfu(op) => self.pass(op),
                Output::Relay(batch) => {
                    if let Some(p) = &self.presence {
                        p.relay.publish(self.room.id(), &batch).await;
                    }
                }
                Output::Metric(metric) => self.record(metric),
                Output::Idle => self.idle = true,
            }
        }
        if sent > 0 {
            metrics::counter!("easel_datagrams_out_total").increment(sent);
            // A round went out: every cursor waiting was in it (or hidden by a lecture's cap).
            for (_, arrived) in std::mem::take(&mut self.cursors) {
                self.latency(Ingest::Cursor, arrived);
            }
        }
        if skipped > 0 {
            metrics::counter!("easel_datagram_ticks_skipped_total").increment(skipped);
        }
    }

    /// Logs a refused request with who made it (the room's span adds the room): one user's
    /// trouble can be followed in the logs. Rate limits are noisy by nature: debug only.
    fn log_refusal(&self, to: u16, message: &Message) {
        let (kind, reference, code) = match message {
            Message::Reject(r) => (Kind::Update.name(), r.op_id, r.code),
            Message::Fault(f) => (Kind::from_u8(f.kind).map_or("unknown", Kind::name), f.reference, f.code),
            _ => return,
        };
        let user = self.room.user_of(to).unwrap_or_default();
        let code = ErrorCode::from_u16(code).unwrap_or(ErrorCode::Internal);
        if code == ErrorCode::RateLimited {
            tracing::debug!(user, participant = to, request = kind, reference, %code, "request refused");
        } else {
            tracing::info!(user, participant = to, request = kind, reference, %code, "request refused");
        }
    }

    /// Queues a frame for one member; a refusal goes back to the room.
    fn queue(&mut self, to: u16, outbound: Outbound) {
        if let Some(link) = self.links.get(&to)
            && let Err(e) = link.tx.try_send(outbound)
        {
            self.room.handle_undeliverable(to, refusal(&e));
        }
    }

    /// Hands SFU work to the room's driver, starting it on first use.
    fn pass(&mut self, op: SfuOp) {
        let Some(bridge) = &mut self.sfu else { return };
        self.stats.sfu_requests += u64::from(matches!(op, SfuOp::Join { .. } | SfuOp::Signal { .. }));
        let driver = bridge.driver.get_or_insert_with(|| {
            crate::sfu::spawn(bridge.sfu.clone(), self.handle.id.clone(), self.handle.tx.clone())
        });
        let _ = driver.send(op);
    }

    fn record(&self, metric: Metric) {
        match metric {
            Metric::ParticipantJoined => crate::telemetry::participant_joined(),
            Metric::ParticipantLeft => crate::telemetry::participant_left(),
            Metric::OpsIn(n) => metrics::counter!("easel_ops_in_total").increment(n),
            Metric::OpsOut(n) => metrics::counter!("easel_ops_out_total").increment(n),
            Metric::OpRejected => metrics::counter!("easel_ops_rejected_total").increment(1),
            Metric::StaleCursor => metrics::counter!("easel_stale_cursors_dropped_total").increment(1),
            Metric::CursorHidden => metrics::counter!("easel_cursors_hidden_total").increment(1),
            Metric::SlowConsumer => metrics::counter!("easel_slow_consumers_total").increment(1),
            Metric::SampleQueues => {
                let deepest = self.links.values().map(|l| l.tx.max_capacity() - l.tx.capacity()).max();
                metrics::histogram!("easel_room_queue_depth").record(self.rx.len() as f64);
                metrics::histogram!("easel_outbound_queue_depth").record(deepest.unwrap_or(0) as f64);
            }
        }
    }
}

fn refusal(e: &TrySendError<Outbound>) -> Undeliverable {
    match e {
        TrySendError::Full(_) => Undeliverable::QueueFull,
        TrySendError::Closed(_) => Undeliverable::QueueClosed,
    }
}

/// The other nodes' next update; never, outside cluster mode.
async fn next_remote(remote: &mut Option<mpsc::Receiver<Remote>>) -> Option<Remote> {
    match remote {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// When the room's snapshot being stored is (never while none is).
async fn snapshot_written(compaction: &mut Option<Compaction>) {
    let Some(writing) = compaction.as_mut().and_then(|c| c.writing.as_mut()) else {
        return std::future::pending().await;
    };
    let _ = writing.await;
    if let Some(c) = compaction {
        c.writing = None;
    }
}

/// The next batch or counted-out node; never, outside cluster mode. A lagging receiver of
/// counted-out nodes missed some: their members expire with their refreshes.
async fn next_relayed(presence: &mut Option<Presence>) -> Option<Relayed> {
    let Some(p) = presence else { return std::future::pending().await };
    loop {
        tokio::select! {
            batch = p.batches.recv() => return batch.map(Relayed::Batch),
            node = p.gone.recv() => match node {
                Ok(node) => return Some(Relayed::NodeLeft(node)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
            },
        }
    }
}
