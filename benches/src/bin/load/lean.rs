//! Lean protocol clients: the bulk of a class, on the connection the SDK drives
//! (`easel_transport::client`), costing the generator as little as the wire allows.
//!
//! Each client is one task that reads its room stream and datagrams and looks only at what is
//! measured; it keeps no document (an editing client keeps a tiny one of its own edits, to
//! send real Loro updates). Cursors and presence heartbeats of all clients of a process are
//! sent by one [`pace`] task in rounds, not by one timer per client. Frames of kinds this
//! build does not know are counted and skipped, never fatal.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use easel_benches::token_as;
use easel_proto::datagram::{Cursor, Heartbeat, Status, Tool, quantise};
use easel_proto::message::{ChatSend, HandRaise, Join, PollAnswer, Role, SyncKind, Update};
use easel_proto::{Datagram, ErrorCode, Message};
use easel_transport::client::{ClientError, Connection, Options, Reader, RoomSender, Transport};
use easel_transport::quic::SharedEndpoint;
use futures::StreamExt as _;
use loro::{ExportMode, LoroDoc};

use easel_benches::shard::Clock;
use tokio::sync::watch;

use crate::tally::{Tally, Window, until_window};

/// Where and as whom clients connect.
pub(crate) struct Target {
    pub(crate) options: Options,
    pub(crate) jwt_secret: String,
    pub(crate) room: String,
    /// QUIC endpoints the clients share, round robin (none: a socket each).
    shared: Vec<SharedEndpoint>,
}

impl Target {
    /// Resolves `url` once for all clients, whose QUIC connections share `sockets` sockets
    /// (0: a socket each).
    pub(crate) async fn new(
        url: &str,
        cert_hash: Option<&str>,
        jwt_secret: &str,
        room: &str,
        sockets: u32,
    ) -> anyhow::Result<Self> {
        let endpoint =
            easel_client::endpoint::parse(url)?.into_iter().next().context("the URL names no transport")?;
        let mut options = Options::new(endpoint.resolve().await?, endpoint.transport);
        options.server_name = endpoint.host.clone();
        options.tls = endpoint.tls;
        if let Some(hash) = cert_hash {
            options = options.with_cert_hash(hash)?;
        }
        let shared = match options.transport {
            Transport::Quic => {
                (0..sockets).map(|_| SharedEndpoint::bind(options.addr)).collect::<Result<_, _>>()?
            }
            _ => Vec::new(),
        };
        Ok(Self { options, jwt_secret: jwt_secret.to_owned(), room: room.to_owned(), shared })
    }

    /// What client `index` connects with.
    fn options(&self, index: u32) -> Options {
        let mut options = self.options.clone();
        if !self.shared.is_empty() {
            options.quic_endpoint = Some(self.shared[index as usize % self.shared.len()].clone());
        }
        options
    }
}

/// A joined protocol client holding the room's state.
pub(crate) struct Lean {
    pub(crate) index: u32,
    pub(crate) conn: Arc<Connection>,
    pub(crate) slot: u16,
    pub(crate) participant: u16,
    /// The teacher's participant number, once a membership frame named one.
    pub(crate) teacher: Option<u16>,
    sender: RoomSender,
    reader: Reader,
    /// Clock ms when the connect began, and when the join and its snapshot were complete.
    pub(crate) connect_start: f64,
    pub(crate) synced_at: f64,
}

/// Connects client `index` as `user` with `role`, joins, and reads the join snapshot whole.
pub(crate) async fn connect(
    target: &Target,
    index: u32,
    user: &str,
    role: &str,
    clock: Clock,
) -> anyhow::Result<Lean> {
    let connect_start = clock.ms();
    let token = token_as(&target.jwt_secret, &target.room, user, role)?;
    let conn = Connection::connect(&target.options(index), &token, user)
        .await
        .with_context(|| format!("client {index} connects"))?;
    let join = Join { room: target.room.clone(), name: user.to_owned(), since: None };
    let stream = conn.join_with(join).await.with_context(|| format!("client {index} joins"))?;
    let (sender, reader, joined) = stream.into_split();
    if joined.sync != SyncKind::None {
        conn.snapshot().await.with_context(|| format!("client {index} reads the join snapshot"))?;
    }
    Ok(Lean {
        index,
        conn: Arc::new(conn),
        slot: joined.slot,
        participant: joined.participant,
        teacher: None,
        sender,
        reader,
        connect_start,
        synced_at: clock.ms(),
    })
}

/// What one protocol client does besides reading.
#[derive(Default, Clone)]
pub(crate) struct Plan {
    /// One Loro edit every this often (the standard workload).
    pub(crate) edit_every: Option<Duration>,
    /// Clock ms at which to send a chat message.
    pub(crate) chats: Vec<f64>,
    /// Clock ms at which to raise the hand.
    pub(crate) hand_at: Option<f64>,
    /// Answer every poll as soon as it is seen.
    pub(crate) answer_polls: bool,
    /// Measure everyone's cursors and edits as they arrive on the wire (a lean observer).
    pub(crate) observe: bool,
}

/// What a client does once the window is known.
pub(crate) type Planner = std::sync::Arc<dyn Fn(u32, Window) -> Plan + Send + Sync>;

/// Runs `client` from its join until the window ends and returns what it measured. It reads
/// from the start (a client that stops reading during the join storm would be a slow consumer
/// of the generator's making); what it does and measures waits for the window.
pub(crate) async fn run(
    client: Lean,
    planner: Planner,
    clock: Clock,
    mut window_rx: watch::Receiver<Option<Window>>,
) -> Tally {
    let mut tally = Tally::default();
    let Lean { index, conn, participant, mut teacher, mut sender, reader, .. } = client;
    let mut window = Window::UNKNOWN;
    let mut plan = Plan::default();
    // Long-lived streams keep each read's progress across the select's turns.
    let datagrams =
        futures::stream::unfold(conn.clone(), |c| async move { Some((c.recv_datagram().await, c)) });
    let frames = futures::stream::unfold(reader, |mut r| async move { Some((r.next().await, r)) });
    tokio::pin!(datagrams, frames);
    let mut doc: Option<(LoroDoc, String)> = None;
    let mut exported = None;
    let mut next_edit = None;
    let mut chats: VecDeque<f64> = VecDeque::new();
    let mut hand_at = None;
    let mut unacked: VecDeque<(u64, f64)> = VecDeque::new();
    let (mut op_id, mut msg_id) = (0u64, 0u64);
    let mut answer_sent = None;
    // Lean observer: the newest cursor sequence number seen per participant.
    let mut newest: Vec<Option<u16>> = Vec::new();
    loop {
        let due =
            [next_edit, chats.front().copied(), hand_at].into_iter().flatten().fold(window.to, f64::min);
        tokio::select! {
            w = until_window(&mut window_rx), if window.to == f64::MAX => {
                window = w;
                plan = planner(index, window);
                if plan.observe {
                    tally.count("lean_observers", 1);
                }
                if let Some(every) = plan.edit_every {
                    let d = LoroDoc::new();
                    exported = Some(d.oplog_vv());
                    doc = Some((d, format!("c{index}")));
                    // Spread the class's edits over the period, from the warm-up on.
                    next_edit = Some(clock.ms() + every.as_secs_f64() * 1000.0 * f64::from(index % 97) / 97.0);
                }
                chats = plan.chats.iter().copied().collect();
                hand_at = plan.hand_at;
            }
            () = tokio::time::sleep_until(clock.at(window.to)) => break,
            () = tokio::time::sleep_until(clock.at(due)), if due < window.to => {
                let now = clock.ms();
                if let (Some(at), Some(every), Some((doc, own))) = (next_edit, plan.edit_every, doc.as_mut())
                    && at <= now
                {
                    next_edit = Some(at + every.as_secs_f64() * 1000.0);
                    if doc.get_list(own.as_str()).push(stamp(now)).is_err() {
                        continue;
                    }
                    doc.commit();
                    let Some(vv) = exported.as_ref() else { continue };
                    let Ok(data) = doc.export(ExportMode::updates(vv)) else { continue };
                    exported = Some(doc.oplog_vv());
                    op_id += 1;
                    if sender.send(&Message::from(Update { op_id, data })).await.is_err() {
                        break;
                    }
                    unacked.push_back((op_id, now));
                    if window.contains(now) {
                        tally.count("ops_sent", 1);
                    }
                }
                if chats.front().is_some_and(|at| *at <= now) {
                    chats.pop_front();
                    msg_id += 1;
                    let chat = ChatSend { client_msg_id: msg_id, text: format!("t={now:.3}") };
                    if sender.send(&Message::from(chat)).await.is_err() {
                        break;
                    }
                    tally.count("chats_sent", 1);
                }
                if hand_at.is_some_and(|at| at <= now) {
                    hand_at = None;
                    if sender.send(&Message::from(HandRaise {})).await.is_err() {
                        break;
                    }
                    tally.event("hand_raised", f64::from(participant), now);
                }
            }
            datagram = datagrams.next() => match datagram {
                Some(Ok(Datagram::CursorBatch(batch))) => {
                    let now = clock.ms();
                    if plan.observe {
                        observe_cursors(&mut tally, &mut newest, &batch.cursors, now, window);
                    }
                    let Some(teacher) = teacher else { continue };
                    for c in batch.cursors.iter().filter(|c| c.participant == teacher) {
                        let sent = f64::from(c.x) / 16.0;
                        if window.contains(sent) {
                            tally.latency("teacher_cursor", now - sent);
                            tally.count("teacher_cursors_seen", 1);
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    count_close(&mut tally, &e);
                    break;
                }
                None => break,
            },
            frame = frames.next() => match frame {
                Some(Ok(Some(message))) => {
                    let now = clock.ms();
                    match message {
                        Message::Participants(p) => {
                            if p.left.iter().any(|gone| Some(gone.index) == teacher) {
                                teacher = None;
                            }
                            if let Some(t) = p.joined.iter().find(|p| p.role == Role::Teacher) {
                                teacher = Some(t.index);
                            }
                        }
                        Message::Ack(ack) => {
                            for id in ack.op_ids {
                                while let Some((first, sent)) = unacked.front().copied() {
                                    if first > id {
                                        break;
                                    }
                                    unacked.pop_front();
                                    if first == id && window.contains(sent) {
                                        tally.latency("op_ack", now - sent);
                                    }
                                }
                            }
                        }
                        Message::RemoteUpdate(update) => {
                            let observed = plan.observe || Some(update.from) == teacher;
                            if let Some(sent) = find_stamp(&update.data).filter(|s| observed && window.contains(*s)) {
                                let name = if Some(update.from) == teacher { "teacher_op_delivery" } else { "op_delivery_wire" };
                                tally.latency(name, now - sent);
                                tally.count(name, 1);
                            }
                        }
                        Message::ChatMessage(chat) => chat_seen(&mut tally, &chat.text, now, window),
                        Message::PollStarted(poll) => {
                            poll_seen(&mut tally, &poll.question, now, window);
                            if plan.answer_polls {
                                msg_id += 1;
                                let answer = PollAnswer { poll_id: poll.poll_id, attempt_id: msg_id, choices: vec![(index % 2) as u8] };
                                if sender.send(&Message::from(answer)).await.is_err() {
                                    break;
                                }
                                tally.event("poll_answered", now, 0.0);
                                answer_sent = Some(now);
                            }
                        }
                        Message::PollAnswered(_) => {
                            if let Some(sent) = answer_sent.take() {
                                tally.latency("poll_answer_ack", now - sent);
                            }
                        }
                        Message::Left(left) => {
                            tally.count(&format!("left_{}", code_name(left.code)), 1);
                            break;
                        }
                        _ => {}
                    }
                }
                // A frame this build cannot decode (a newer kind): skip it.
                Some(Err(ClientError::Protocol(_))) => tally.count("frames_skipped", 1),
                Some(Err(e)) => {
                    count_close(&mut tally, &e);
                    break;
                }
                Some(Ok(None)) | None => break,
            },
        }
    }
    conn.close(ErrorCode::Normal);
    tally
}

/// Counts and times the cursors of a batch that are newer than what this receiver holds
/// (latest wins, as the SDK counts them).
fn observe_cursors(
    tally: &mut Tally,
    newest: &mut Vec<Option<u16>>,
    cursors: &[easel_proto::datagram::CursorEntry],
    now: f64,
    window: Window,
) {
    for c in cursors {
        let at = usize::from(c.participant);
        if newest.len() <= at {
            newest.resize(at + 1, None);
        }
        if newest[at].is_some_and(|last| c.seq.wrapping_sub(last) as i16 <= 0) {
            continue;
        }
        newest[at] = Some(c.seq);
        let sent = f64::from(c.x) / 16.0;
        if window.contains(sent) {
            tally.count("cursors_seen_wire", 1);
            tally.latency("cursor_wire", now - sent);
        }
    }
}

/// An edit's content: the sender's clock, findable in the Loro update bytes without
/// importing them (Loro stores short strings as they are).
pub(crate) fn stamp(now: f64) -> String {
    format!("@t{now:.3};")
}

/// The send time a [`stamp`] in `text` carries.
pub(crate) fn parse_stamp(text: &str) -> Option<f64> {
    text.strip_prefix("@t")?.strip_suffix(';')?.parse().ok()
}

/// The first [`stamp`] in Loro update bytes.
pub(crate) fn find_stamp(data: &[u8]) -> Option<f64> {
    let at = data.windows(2).position(|w| w == b"@t")?;
    let len = data[at..].iter().position(|b| *b == b';')?;
    parse_stamp(std::str::from_utf8(&data[at..=at + len]).ok()?)
}

/// A chat message whose text is `t=<sender's clock ms>`: its latency at this receiver.
pub(crate) fn chat_seen(tally: &mut Tally, text: &str, now: f64, window: Window) {
    if let Some(sent) = text.strip_prefix("t=").and_then(|t| t.parse::<f64>().ok())
        && window.contains(sent)
    {
        tally.latency("chat", now - sent);
    }
}

/// A poll whose question ends in `t=<teacher's clock ms>`: open → seen here.
pub(crate) fn poll_seen(tally: &mut Tally, question: &str, now: f64, window: Window) {
    if let Some(sent) = question.rsplit_once("t=").and_then(|(_, t)| t.parse::<f64>().ok())
        && window.contains(sent)
    {
        tally.latency("poll_open", now - sent);
    }
}

/// Counts a connection's end by the server's close code.
fn count_close(tally: &mut Tally, e: &ClientError) {
    let code = match e {
        ClientError::Closed { code: Some(code), .. } => format!("{code:?}"),
        ClientError::Closed { code: None, .. } => "no_code".into(),
        other => format!("error: {other}"),
    };
    tally.count(&format!("closed_{code}"), 1);
}

fn code_name(code: u16) -> String {
    ErrorCode::from_u16(code).map_or_else(|| code.to_string(), |c| format!("{c:?}"))
}

/// One process's cursor and heartbeat sender.
pub(crate) struct Paced {
    pub(crate) conn: Arc<Connection>,
    pub(crate) slot: u16,
    /// Moves its cursor at the pacer's rate; otherwise only heartbeats.
    pub(crate) mover: bool,
    /// The cursor's y (the sender's number, for humans reading captures).
    pub(crate) y: f64,
}

/// The clients a [`pace`] task sends for; connects add to it while the class arrives.
pub(crate) type Roster = std::sync::Arc<std::sync::Mutex<Vec<Paced>>>;

/// Sends every mover's cursor `hz` times a second (x = the clock, so receivers time it) and
/// everyone else's presence heartbeat every `heartbeat`, each client on its own phase so the
/// class does not send in lock step — from the first join (silence during the join storm
/// would be evicted) until the window ends. Due times, not tick counts, decide who sends, so
/// a late wake-up (a starved generator) delays sends but skips no one. Returns the cursors
/// sent in the window, and records the longest gap between wake-ups.
pub(crate) async fn pace(
    roster: Roster,
    hz: u32,
    heartbeat: Duration,
    clock: Clock,
    mut window_rx: watch::Receiver<Option<Window>>,
) -> Tally {
    // A wake-up every millisecond (tokio's timer resolution): each client sends within a
    // millisecond of its own phase, as unsynchronised users do. Coarser rounds sent the class
    // in groups (8 rounds a period: a sixth of 50 clients at once), a burst that a paced
    // server must spread over its next slots, which measured the generator's lock step.
    const ROUND_MS: f64 = 1.0;
    let period = 1000.0 / f64::from(hz.max(1));
    let beat = heartbeat.as_secs_f64() * 1000.0;
    let mut every = tokio::time::interval(Duration::from_secs_f64(ROUND_MS.min(period) / 1000.0));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut window = Window::UNKNOWN;
    // Who sends next, soonest first (due time in µs of the clock, client): a wake-up costs
    // what is due, not a pass over a 2,000-viewer lecture. Per client: its sequence number.
    let mut due: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut seqs: Vec<u16> = Vec::new();
    let micros = |ms: f64| (ms.max(0.0) * 1000.0) as u64;
    let mut tally = Tally::default();
    let mut last_wake = clock.ms();
    loop {
        tokio::select! {
            w = until_window(&mut window_rx), if window.to == f64::MAX => {
                window = w;
                continue;
            }
            () = tokio::time::sleep_until(clock.at(window.to)) => break,
            _ = every.tick() => {}
        }
        let now = clock.ms();
        if window.contains(now) {
            tally.max("pace_max_gap_ms", now - last_wake);
        }
        last_wake = now;
        let members = roster.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while seqs.len() < members.len() {
            // A newcomer's phase: spread by its place in the roster.
            let k = seqs.len();
            let every = if members[k].mover { period } else { beat };
            due.push(Reverse((micros(now + every * (k as f64 * 0.618_034).fract()), k)));
            seqs.push(0);
        }
        while let Some(&Reverse((at, k))) = due.peek() {
            if at > micros(now) {
                break;
            }
            due.pop();
            let (m, seq) = (&members[k], &mut seqs[k]);
            let datagram = if m.mover {
                Datagram::from(Cursor { slot: m.slot, seq: *seq, x: quantise(now), y: quantise(m.y) })
            } else {
                Datagram::from(Heartbeat {
                    slot: m.slot,
                    seq: *seq,
                    status: Status::Active,
                    tool: Tool::Pointer,
                })
            };
            // After a long stall, send once and go on from now rather than catch up.
            let next = (at + micros(if m.mover { period } else { beat })).max(micros(now));
            due.push(Reverse((next, k)));
            *seq = seq.wrapping_add(1);
            if m.conn.send_datagram(&datagram).is_ok() && m.mover && window.contains(now) {
                tally.count("cursors_sent", 1);
            }
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_found_in_the_loro_update_that_carries_it() {
        let doc = LoroDoc::new();
        let mut vv = doc.oplog_vv();
        for sent in [1000.125, 123_456.5] {
            doc.get_list("c12").push(stamp(sent)).expect("push");
            doc.commit();
            let data = doc.export(ExportMode::updates(&vv)).expect("export");
            vv = doc.oplog_vv();
            assert_eq!(find_stamp(&data), Some(sent));
        }
        assert_eq!(find_stamp(b"no stamp here"), None);
    }

    #[test]
    fn only_newer_cursors_count() {
        let window = Window { from: 0.0, to: 1e9 };
        let (mut tally, mut newest) = (Tally::default(), Vec::new());
        let entry = |participant, seq| easel_proto::datagram::CursorEntry {
            participant,
            seq,
            x: quantise(10.0),
            y: 0,
        };
        observe_cursors(&mut tally, &mut newest, &[entry(3, 65_535), entry(1, 7)], 20.0, window);
        // 0 follows 65535 (wrapping); 65535 again and 6 are old.
        observe_cursors(&mut tally, &mut newest, &[entry(3, 0), entry(3, 65_535), entry(1, 6)], 20.0, window);
        assert_eq!(tally.counter("cursors_seen_wire"), 3);
        assert_eq!(tally.hist("cursor_wire").map(|h| h.max() / 1000), Some(10));
    }
}
