//! A stand-in for the actor in the core's tests: plain data instead of queues, datagram
//! senders and kill switches, driven by hand with virtual `Instant`s. It applies outputs the
//! way the actor does (bounded queues that report `QueueFull`, datagram buffers that report
//! `Congested`) and keeps every output that is not a delivery for the test to look at.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use easel_proto::datagram::{CursorEntry, PresenceEntry};
use easel_proto::message::{Participants, Role};
use easel_proto::{Datagram, ErrorCode, Message};
use loro::{ExportMode, LoroDoc};

use super::{Arrival, Config, Joined, Output, Room, Undeliverable};
use crate::class::Class;

/// An empty room.
pub(super) fn room(config: Config, t0: Instant) -> Room {
    Room::new(Arc::from("s/c/r"), config, None, Vec::new(), Class::default(), t0, 0).expect("empty room")
}

/// An empty room of a clustered node (origin `a@1`; presence TTL 10 s, refreshed every 2 s),
/// its first timers run.
pub(super) fn clustered(t0: Instant) -> Sim {
    let config = Config {
        relay: Some("a@1".into()),
        presence_ttl: std::time::Duration::from_secs(10),
        presence_refresh: std::time::Duration::from_secs(2),
        ..Config::default()
    };
    let mut sim = Sim::new(room(config, t0));
    sim.room.handle_timeout(t0);
    sim.drain();
    sim.take_other();
    sim
}

/// A Loro update that inserts `text` in a fresh document.
pub(super) fn edit(text: &str) -> Vec<u8> {
    let doc = LoroDoc::new();
    doc.get_text("t").insert(0, text).expect("insert");
    doc.export(ExportMode::all_updates()).expect("export")
}

/// What one link of the stand-in holds.
struct Inbox {
    capacity: usize,
    queue: Vec<Message>,
    datagrams: Vec<Datagram>,
    /// What the datagram buffer has room for.
    space: usize,
    linked: bool,
    killed: bool,
    left: Option<(ErrorCode, String)>,
    /// The shared frames it was queued (membership lists), as the room encoded them.
    frames: Vec<Bytes>,
}

impl Inbox {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            queue: Vec::new(),
            datagrams: Vec::new(),
            space: 64 * 1024,
            linked: true,
            killed: false,
            left: None,
            frames: Vec::new(),
        }
    }

    /// Takes one queue entry: a message, or the messages of one shared frame.
    fn offer(&mut self, messages: Vec<Message>) -> Result<(), Undeliverable> {
        if self.queue.len() >= self.capacity {
            return Err(Undeliverable::QueueFull);
        }
        self.queue.extend(messages);
        Ok(())
    }
}

/// The messages of encoded frames.
fn decode_frames(frame: &Bytes) -> Vec<Message> {
    let mut decoder = easel_proto::FrameDecoder::new(easel_proto::limits::MAX_FRAME_LEN);
    decoder.push(frame);
    let messages: Vec<Message> = std::iter::from_fn(|| decoder.decode().expect("valid frames")).collect();
    assert!(decoder.is_at_boundary(), "whole frames");
    messages
}

/// The room and the links of its members.
pub(super) struct Sim {
    pub(super) room: Room,
    inboxes: BTreeMap<u16, Inbox>,
    /// The capacity of the link of the join being answered.
    joining: Option<usize>,
    answer: Option<Result<Joined, ErrorCode>>,
    other: Vec<Output>,
    replaced: usize,
    /// Batches skipped as congested, per member.
    skipped: BTreeMap<u16, usize>,
}

impl Sim {
    pub(super) fn new(room: Room) -> Self {
        Self {
            room,
            inboxes: BTreeMap::new(),
            joining: None,
            answer: None,
            other: Vec::new(),
            replaced: 0,
            skipped: BTreeMap::new(),
        }
    }

    /// A student's arrival through connection `conn`, resuming `resume` if given.
    pub(super) fn arrival(&self, user: &str, conn: u64, resume: Option<u16>) -> Arrival {
        Arrival {
            user: user.into(),
            name: user.into(),
            role: Role::Student,
            client_id: format!("{user}-client"),
            since: None,
            resume,
            // One session per user here: a user's resume is its own session's.
            session: user.bytes().fold(0, |h, b| h * 31 + u64::from(b)),
            expires_ms: u64::MAX,
            conn,
            slot: 0,
        }
    }

    /// A student joins through connection 0; returns its number.
    pub(super) fn join(&mut self, now: Instant, user: &str) -> u16 {
        self.join_with(now, user, 0, None, 64).participant
    }

    /// Someone with `role` joins through connection 0; returns its number.
    pub(super) fn join_as(&mut self, now: Instant, user: &str, role: Role) -> u16 {
        let arrival = Arrival { role, ..self.arrival(user, 0, None) };
        self.answer_of(now, arrival, 64).participant
    }

    /// A student joins through connection `conn` with a queue of `capacity`, resuming
    /// `resume` if given.
    pub(super) fn join_with(
        &mut self,
        now: Instant,
        user: &str,
        conn: u64,
        resume: Option<u16>,
        capacity: usize,
    ) -> Joined {
        let arrival = self.arrival(user, conn, resume);
        self.answer_of(now, arrival, capacity)
    }

    /// A student joins through connection 0 with a queue of `capacity`, and, in a busy room,
    /// waits for the next membership slot like everyone else; returns its answer.
    pub(super) fn arrive(&mut self, now: Instant, user: &str, capacity: usize) -> Joined {
        self.joining = Some(capacity);
        self.room.handle_join(now, self.arrival(user, 0, None));
        self.drain();
        self.answer.take().expect("answered").expect("join")
    }

    /// Joins and has the join announced at once, as in a quiet room (the other helpers'
    /// joins); [`Sim::arrive`] leaves that to the membership pace.
    pub(super) fn answer_of(&mut self, now: Instant, arrival: Arrival, capacity: usize) -> Joined {
        self.joining = Some(capacity);
        self.room.handle_join(now, arrival);
        self.room.send_membership(now);
        self.drain();
        self.answer.take().expect("answered").expect("join")
    }

    /// Applies every output, as the actor does.
    pub(super) fn drain(&mut self) {
        while let Some(output) = self.room.poll_output() {
            match output {
                Output::Send { to, message } => {
                    if let Some(inbox) = self.inboxes.get_mut(&to).filter(|i| i.linked)
                        && let Err(why) = inbox.offer(vec![message])
                    {
                        self.room.handle_undeliverable(to, why);
                    }
                }
                Output::Frame { to, frame } => {
                    if let Some(inbox) = self.inboxes.get_mut(&to).filter(|i| i.linked) {
                        inbox.frames.push(frame.clone());
                        if let Err(why) = inbox.offer(decode_frames(&frame)) {
                            self.room.handle_undeliverable(to, why);
                        }
                    }
                }
                Output::Broadcast { frame, except } => {
                    let messages = decode_frames(&frame);
                    let mut failed = Vec::new();
                    for (index, inbox) in
                        self.inboxes.iter_mut().filter(|(i, b)| b.linked && Some(**i) != except)
                    {
                        if let Err(why) = inbox.offer(messages.clone()) {
                            failed.push((*index, why));
                        }
                    }
                    for (index, why) in failed {
                        self.room.handle_undeliverable(index, why);
                    }
                }
                Output::Datagrams { to, batch } => {
                    let Some(inbox) = self.inboxes.get_mut(&to).filter(|i| i.linked) else { continue };
                    if inbox.space < batch.len_bytes() {
                        *self.skipped.entry(to).or_default() += 1;
                        self.room.handle_undeliverable(to, Undeliverable::Congested);
                        continue;
                    }
                    for d in batch.datagrams() {
                        inbox.datagrams.push(Datagram::decode(d).expect("the room sends valid datagrams"));
                    }
                }
                Output::JoinAnswer(answer) => {
                    let capacity = self.joining.take().expect("a join waits for its answer");
                    if let Ok(joined) = &answer
                        && let Some(old) = self.inboxes.insert(joined.participant, Inbox::new(capacity))
                        && old.linked
                    {
                        self.replaced += 1;
                    }
                    self.answer = Some(answer);
                }
                Output::Left { member, code, reason } => {
                    if let Some(inbox) = self.inboxes.get_mut(&member).filter(|i| i.linked) {
                        inbox.left = Some((code, reason.clone()));
                        inbox.linked = false;
                    }
                    self.other.push(Output::Left { member, code, reason });
                }
                Output::Release { member } => {
                    if let Some(inbox) = self.inboxes.get_mut(&member) {
                        inbox.linked = false;
                    }
                    self.other.push(output);
                }
                Output::SlowConsumer { member } => {
                    if let Some(inbox) = self.inboxes.get_mut(&member) {
                        inbox.killed = true;
                    }
                    self.other.push(output);
                }
                other => self.other.push(other),
            }
        }
    }

    /// Outputs other than deliveries since the last call.
    pub(super) fn take_other(&mut self) -> Vec<Output> {
        self.drain();
        std::mem::take(&mut self.other)
    }

    /// Runs every timeout due by `until`, each at the time it is due, as the actor does.
    pub(super) fn advance(&mut self, until: Instant) {
        while let Some(at) = self.room.poll_timeout().filter(|at| *at <= until) {
            self.room.handle_timeout(at);
            self.drain();
        }
    }

    /// Batches skipped as congested for the member since the last call.
    pub(super) fn skipped(&mut self, member: u16) -> usize {
        self.drain();
        self.skipped.remove(&member).unwrap_or_default()
    }

    /// Runs the eviction part of housekeeping now.
    pub(super) fn expire(&mut self, now: Instant) {
        self.room.expire(now);
        self.drain();
    }

    /// Messages queued for the member since the last call (the writer reads them).
    pub(super) fn messages(&mut self, member: u16) -> Vec<Message> {
        self.drain();
        self.inboxes.get_mut(&member).map(|i| std::mem::take(&mut i.queue)).unwrap_or_default()
    }

    /// Membership changes the member was told of since the last call, in membership deltas:
    /// ("joined", index, 0) and ("left", index, code).
    pub(super) fn membership(&mut self, member: u16) -> Vec<(&'static str, u16, u16)> {
        self.membership_frames(member)
            .into_iter()
            .filter(|p| !p.full)
            .flat_map(|p| {
                let joined = p.joined.into_iter().map(|j| ("joined", j.index, 0));
                joined.chain(p.left.into_iter().map(|l| ("left", l.index, l.code)))
            })
            .collect()
    }

    /// The `Participants` frames queued for the member since the last call.
    pub(super) fn membership_frames(&mut self, member: u16) -> Vec<Participants> {
        self.messages(member)
            .into_iter()
            .filter_map(|m| match m {
                Message::Participants(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// The whole lists the member was sent since the last call (participant numbers, in
    /// order), each with the shared bytes it came in.
    pub(super) fn lists(&mut self, member: u16) -> Vec<(Vec<u16>, Bytes)> {
        self.drain();
        let frames = self.inboxes.get_mut(&member).map(|i| std::mem::take(&mut i.frames)).unwrap_or_default();
        frames
            .into_iter()
            .filter_map(|frame| {
                let mut everyone = Vec::new();
                for m in decode_frames(&frame) {
                    let Message::Participants(p) = m else { return None };
                    everyone.extend(p.joined.iter().map(|j| j.index));
                }
                Some((everyone, frame))
            })
            .collect()
    }

    /// Datagrams sent to the member since the last call.
    pub(super) fn datagrams(&mut self, member: u16) -> Vec<Datagram> {
        self.drain();
        self.inboxes.get_mut(&member).map(|i| std::mem::take(&mut i.datagrams)).unwrap_or_default()
    }

    /// Cursor entries sent to the member since the last call.
    pub(super) fn cursors(&mut self, member: u16) -> Vec<CursorEntry> {
        self.datagrams(member)
            .into_iter()
            .filter_map(|d| match d {
                Datagram::CursorBatch(b) => Some(b.cursors),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Presence entries sent to the member since the last call.
    pub(super) fn presence(&mut self, member: u16) -> Vec<PresenceEntry> {
        self.datagrams(member)
            .into_iter()
            .filter_map(|d| match d {
                Datagram::PresenceBatch(b) => Some(b.entries),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Sets what the member's datagram buffer has room for.
    pub(super) fn set_space(&mut self, member: u16, space: usize) {
        if let Some(inbox) = self.inboxes.get_mut(&member) {
            inbox.space = space;
        }
    }

    /// The `Left` the member's link was given, if any.
    pub(super) fn left(&mut self, member: u16) -> Option<(ErrorCode, String)> {
        self.drain();
        self.inboxes.get(&member).and_then(|i| i.left.clone())
    }

    /// Whether the member's link is held.
    pub(super) fn linked(&mut self, member: u16) -> bool {
        self.drain();
        self.inboxes.get(&member).is_some_and(|i| i.linked)
    }

    /// Whether the member's session was closed as a slow consumer.
    pub(super) fn killed(&mut self, member: u16) -> bool {
        self.drain();
        self.inboxes.get(&member).is_some_and(|i| i.killed)
    }

    /// Links let go because a resume replaced them.
    pub(super) fn replaced(&self) -> usize {
        self.replaced
    }
}
