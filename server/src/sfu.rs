//! The room's side of the SFU bridge: the work a room hands out ([`SfuOp`]) and what comes
//! back to it ([`SfuNews`]), and the driver that runs the work against an [`Sfu`] adapter.
//!
//! The room stays sans-IO: it validates a member's SFU signalling (roles, SPEC §6.4), queues
//! [`SfuOp`]s, and its actor passes them to this room's driver (`spawn`). The driver keeps
//! one task per participant that uses the SFU, so each participant's signalling reaches the
//! SFU in the order it was sent (an offer before its candidates), while participants do not
//! wait on each other. Answers and SFU-side events go back as `(participant, SfuNews)` on
//! the sender the actor gives it (its own command queue), in order with everything else the
//! room does. Nothing here knows the room's types, so the room may depend on this module and
//! not the other way round.
//!
//! Failures on the SFU's side are counted (`easel_sfu_errors_total{kind}`). The first request
//! that finds the SFU unreachable tells the room ([`SfuNews::Reachable`]`(false)`) and starts a
//! probe that asks the SFU for the room every [`PROBE_EVERY`] until it answers, then tells
//! the room it is back.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use easel_proto::message::{Fault, Kind, SdpKind, SfuCandidate, SfuGrant, SfuSdp};
use easel_proto::{ErrorCode, Message};
use easel_sfu_bridge::{Access, Candidate, Grant, PeerEvent, PeerRequest, Sfu, SfuError, SfuPeer};
use tokio::sync::mpsc;
use tracing::Instrument as _;

/// Most SFU requests of one participant waiting for the SFU; more are refused (`RateLimited`).
const MAX_WAITING: usize = 64;

/// How often an unreachable SFU is asked again whether it is back.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(2);

/// Work for the SFU, queued by the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SfuOp {
    /// `SfuJoin` passed the role check: let the participant into the SFU room.
    Join {
        /// Who.
        participant: u16,
        /// Its display name.
        display: String,
        /// What its role allows.
        access: Access,
        /// Whether it asked to publish.
        publish: bool,
    },
    /// `SfuSdp`, `SfuCandidate`, `SfuSubscribe` or `SfuLeave` from a participant in the SFU room.
    Signal {
        /// Who.
        participant: u16,
        /// The message.
        message: Message,
    },
    /// A teacher's `StopMedia`: tear the participant's publisher down.
    Unpublish {
        /// Whom.
        participant: u16,
    },
    /// The participant left the room: take it out of the SFU room.
    Leave {
        /// Who.
        participant: u16,
    },
}

impl SfuOp {
    fn participant(&self) -> u16 {
        match self {
            Self::Join { participant, .. }
            | Self::Signal { participant, .. }
            | Self::Unpublish { participant }
            | Self::Leave { participant } => *participant,
        }
    }
}

/// What the driver tells the room about one participant.
#[derive(Debug, Clone, PartialEq)]
pub enum SfuNews {
    /// A message for the participant only (`SfuGrant`, `SfuSdp`, `SfuCandidate`, `Fault`).
    Reply(Message),
    /// Something happened on the SFU side (camera on or off, joined, left).
    Event(PeerEvent),
    /// The room's SFU stopped answering (`false`) or answers again (`true`); for the whole
    /// room, whoever's request found it out.
    Reachable(bool),
}

impl SfuNews {
    /// Whether this is a refusal for a failure on the SFU's side (the room's error rate).
    pub(crate) fn is_sfu_error(&self) -> bool {
        let sfu_codes = [ErrorCode::SfuUnavailable.to_u16(), ErrorCode::SfuRejected.to_u16()];
        matches!(self, Self::Reply(Message::Fault(f)) if sfu_codes.contains(&f.code))
    }
}

/// Starts the driver of room `room`; the room's actor sends it the ops its room queues, and
/// it reports on `news` (any queue whose items can be made from `(participant, SfuNews)`). It
/// ends, taking every participant out of the SFU, when the sender is dropped.
pub(crate) fn spawn<N>(
    sfu: Arc<dyn Sfu>,
    room: Arc<str>,
    news: mpsc::Sender<N>,
) -> mpsc::UnboundedSender<SfuOp>
where
    N: From<(u16, SfuNews)> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let room = Room { id: room, news, out: Arc::default(), sfu: sfu.clone() };
    // The room's span (the actor's) follows the driver and its tasks into their logs.
    tokio::spawn(drive(sfu, room, rx).in_current_span());
    tx
}

/// Where a driver reports: the room's id and its queue; and whether the SFU is out (a probe
/// runs while it is).
struct Room<N> {
    id: Arc<str>,
    news: mpsc::Sender<N>,
    out: Arc<AtomicBool>,
    sfu: Arc<dyn Sfu>,
}

impl<N> Clone for Room<N> {
    fn clone(&self) -> Self {
        Self { id: self.id.clone(), news: self.news.clone(), out: self.out.clone(), sfu: self.sfu.clone() }
    }
}

impl<N: From<(u16, SfuNews)> + Send + 'static> Room<N> {
    fn id(&self) -> &str {
        &self.id
    }

    /// Counts a failure on the SFU's side; the first that finds it unreachable tells the room
    /// and starts the probe.
    fn failed(&self, e: &SfuError) {
        if let Some(kind) = e.kind() {
            crate::telemetry::sfu_error(kind);
        }
        if e.is_outage() && !self.out.swap(true, Ordering::AcqRel) {
            tracing::warn!("SFU unreachable: {e}");
            self.offer(0, SfuNews::Reachable(false));
            tokio::spawn(probe(self.clone()).in_current_span());
        }
    }

    /// Reports, waiting for queue space; false once the room has stopped.
    async fn tell(&self, participant: u16, news: SfuNews) -> bool {
        self.news.send(N::from((participant, news))).await.is_ok()
    }

    /// Reports without waiting; a full queue drops it.
    fn offer(&self, participant: u16, news: SfuNews) {
        if self.news.try_send(N::from((participant, news))).is_err() {
            metrics::counter!("easel_datagrams_dropped_total", "reason" => "room_busy").increment(1);
        }
    }
}

/// A participant's task: its queue, and how many of the client's requests wait in it.
struct Queue {
    tx: mpsc::UnboundedSender<SfuOp>,
    waiting: Arc<AtomicUsize>,
}

/// Asks the SFU for the room until it answers (any answer but unreachable: a refusal comes from
/// a live SFU), then tells the room it is back. Ends with the room.
async fn probe<N: From<(u16, SfuNews)> + Send + 'static>(room: Room<N>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        if room.news.is_closed() {
            return;
        }
        match room.sfu.ensure_room(room.id()).await {
            Err(e) if e.is_outage() => tracing::debug!("SFU still unreachable: {e}"),
            _ => break,
        }
    }
    room.out.store(false, Ordering::Release);
    tracing::info!("SFU reachable again");
    room.tell(0, SfuNews::Reachable(true)).await;
}

async fn drive<N>(sfu: Arc<dyn Sfu>, room: Room<N>, mut ops: mpsc::UnboundedReceiver<SfuOp>)
where
    N: From<(u16, SfuNews)> + Send + 'static,
{
    let mut participants: HashMap<u16, Queue> = HashMap::new();
    while let Some(op) = ops.recv().await {
        let index = op.participant();
        let from_client = matches!(op, SfuOp::Join { .. } | SfuOp::Signal { .. });
        let queue = match participants.get(&index).filter(|q| !q.tx.is_closed()) {
            Some(q) => q,
            // Only a join starts a participant's task; anything else for one that has none
            // (it left meanwhile) has nothing to act on.
            None if matches!(op, SfuOp::Join { .. }) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let waiting = Arc::new(AtomicUsize::new(0));
                tokio::spawn(
                    participant(sfu.clone(), room.clone(), index, rx, waiting.clone()).in_current_span(),
                );
                participants.entry(index).insert_entry(Queue { tx, waiting }).into_mut()
            }
            None => continue,
        };
        // Each request waits for the SFU's answer before the next: a client that signals
        // faster than the SFU answers is refused rather than queued without bound.
        if from_client && queue.waiting.load(Ordering::Relaxed) >= MAX_WAITING {
            let kind = match &op {
                SfuOp::Signal { message, .. } => message.kind(),
                _ => Kind::SfuJoin,
            };
            let busy = Fault::new(
                ErrorCode::RateLimited,
                kind.to_u8(),
                0,
                "too many SFU requests waiting for the SFU",
            );
            room.offer(index, SfuNews::Reply(Message::from(busy)));
            continue;
        }
        if from_client {
            queue.waiting.fetch_add(1, Ordering::Relaxed);
        }
        let leaving = matches!(op, SfuOp::Leave { .. });
        let _ = queue.tx.send(op);
        if leaving {
            participants.remove(&index);
        }
    }
    // The room is gone: closing every channel makes each task leave the SFU.
}

/// One participant's SFU signalling, in order; its peer's events go to the room as they come.
async fn participant<N: From<(u16, SfuNews)> + Send + 'static>(
    sfu: Arc<dyn Sfu>,
    room: Room<N>,
    index: u16,
    mut ops: mpsc::UnboundedReceiver<SfuOp>,
    waiting: Arc<AtomicUsize>,
) {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut peer: Option<(Box<dyn SfuPeer>, Grant)> = None;
    let tell = |news: SfuNews| room.tell(index, news);
    loop {
        let op = tokio::select! {
            op = ops.recv() => op,
            Some(event) = events.recv() => {
                if event == PeerEvent::Left {
                    // The SFU lost it (a restart): a new SfuJoin starts afresh.
                    peer = None;
                }
                if !tell(SfuNews::Event(event)).await {
                    break;
                }
                continue;
            }
        };
        if matches!(op, Some(SfuOp::Join { .. } | SfuOp::Signal { .. })) {
            waiting.fetch_sub(1, Ordering::Relaxed);
        }
        let replies = match op {
            Some(SfuOp::Join { participant, display, access, publish }) => match &peer {
                // Already in: the role decided the grant, and a publisher is made by its offer.
                Some((_, grant)) => vec![grant_message(grant)],
                None => {
                    let request =
                        PeerRequest { room: room.id().to_owned(), participant, display, access, publish };
                    match sfu.join(request, events_tx.clone()).await {
                        Ok((p, grant)) => {
                            let reply = grant_message(&grant);
                            peer = Some((p, grant));
                            vec![reply]
                        }
                        Err(e) => {
                            room.failed(&e);
                            vec![fault(&e, Kind::SfuJoin, 0)]
                        }
                    }
                }
            },
            Some(SfuOp::Signal { message, .. }) => match &mut peer {
                Some((p, _)) => signal(p.as_mut(), message, |e| room.failed(e)).await,
                None => {
                    let why = SfuError::Unavailable("not in the SFU room (send SfuJoin)".into());
                    vec![fault(&why, message.kind(), 0)]
                }
            },
            Some(SfuOp::Unpublish { .. }) => {
                if let Some((p, _)) = &mut peer
                    && let Err(e) = p.unpublish().await
                {
                    room.failed(&e);
                    tracing::warn!(index, "stopping media: {e}");
                }
                Vec::new()
            }
            Some(SfuOp::Leave { .. }) | None => break,
        };
        let mut delivered = true;
        for reply in replies {
            delivered = delivered && tell(SfuNews::Reply(reply)).await;
        }
        if !delivered {
            break;
        }
    }
    if let Some((mut p, _)) = peer.take()
        && let Err(e) = p.leave().await
    {
        tracing::debug!(index, "leaving the SFU: {e}");
    }
    // What the leave reported (unpublished, left) still reaches the others.
    while let Ok(event) = events.try_recv() {
        if !tell(SfuNews::Event(event)).await {
            break;
        }
    }
}

fn grant_message(grant: &Grant) -> Message {
    Message::from(SfuGrant { can_publish: grant.can_publish, ice_servers: grant.ice_servers.clone() })
}

fn fault(e: &SfuError, kind: Kind, reference: u64) -> Message {
    Message::from(Fault::new(e.code(), kind.to_u8(), reference, e.to_string()))
}

/// Relays one signalling message; returns what goes back to the participant. What the SFU
/// failed goes to `failed` too.
async fn signal(peer: &mut dyn SfuPeer, message: Message, failed: impl Fn(&SfuError)) -> Vec<Message> {
    let kind = message.kind();
    let fault = |e: &SfuError, kind: Kind, feed: u64| {
        failed(e);
        fault(e, kind, feed)
    };
    let refuse = |e: SfuError, feed: u64| vec![fault(&e, kind, feed)];
    match message {
        Message::SfuSdp(SfuSdp { feed: 0, kind: SdpKind::Offer, sdp }) => match peer.offer(sdp).await {
            Ok(answer) => vec![Message::from(SfuSdp { feed: 0, kind: SdpKind::Answer, sdp: answer })],
            Err(e) => refuse(e, 0),
        },
        Message::SfuSdp(SfuSdp { feed, kind: SdpKind::Answer, sdp }) if feed != 0 => {
            peer.answer(feed, sdp).await.err().map_or_else(Vec::new, |e| refuse(e, feed))
        }
        Message::SfuSdp(s) => {
            refuse(SfuError::State("feed 0 sends offers; subscriptions send answers".into()), s.feed)
        }
        Message::SfuCandidate(c) => {
            let candidate = (!c.candidate.is_empty()).then_some(Candidate {
                candidate: c.candidate,
                mid: c.mid,
                mline_index: c.mline_index,
            });
            peer.candidate(c.feed, candidate).await.err().map_or_else(Vec::new, |e| refuse(e, c.feed))
        }
        Message::SfuSubscribe(s) => {
            let mut out = Vec::new();
            for feed in s.feeds {
                out.push(match peer.subscribe(feed).await {
                    Ok(offer) => Message::from(SfuSdp { feed, kind: SdpKind::Offer, sdp: offer }),
                    Err(e) => fault(&e, kind, feed),
                });
            }
            out
        }
        Message::SfuLeave(l) => {
            let left = if l.feed == 0 { peer.unpublish().await } else { peer.unsubscribe(l.feed).await };
            left.err().map_or_else(Vec::new, |e| refuse(e, l.feed))
        }
        other => refuse(SfuError::State(format!("{} is not SFU signalling", other.kind())), 0),
    }
}

/// The candidate a peer event carries, as the wire message for its participant.
pub(crate) fn candidate_message(feed: u64, candidate: Option<Candidate>) -> Message {
    let c = candidate.unwrap_or(Candidate { candidate: String::new(), mid: String::new(), mline_index: 0 });
    Message::from(SfuCandidate { feed, candidate: c.candidate, mid: c.mid, mline_index: c.mline_index })
}
