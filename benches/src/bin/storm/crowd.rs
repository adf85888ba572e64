//! The crowd: SDK clients (`easel_client::Client`, its own reconnect, resume and rejoin), one
//! room each, moving cursors and editing now and then; after the cut each one notes when it
//! is back — its room joined again (resumed or rejoined) and, for an editor, its first edit
//! after that acked.
//!
//! Every edit appends `"k"` to the client's own list `c{i}` of the room's document, where k
//! counts its edits from 1. A client has one room and no offline store, so its k-th edit is
//! its op id k (one commit, one op); the acked op ids are then exactly the list elements the
//! server must have kept.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, bail};
use easel_benches::shard::Clock;
use easel_benches::token;
use easel_client::{Client, Event, Room};
use easel_proto::ErrorCode;
use tokio::sync::{mpsc, watch};

/// Who a client is and what it does.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Member {
    pub(crate) index: u32,
    pub(crate) room: String,
    pub(crate) editor: bool,
}

impl Member {
    pub(crate) fn user(&self) -> String {
        format!("storm-{}", self.index)
    }

    /// The document list this client appends to.
    pub(crate) fn list(&self) -> String {
        format!("c{}", self.index)
    }
}

/// How clients connect and behave.
#[derive(Clone, Debug)]
pub(crate) struct Conduct {
    pub(crate) url: String,
    pub(crate) cert_hash: String,
    pub(crate) secret: String,
    pub(crate) cursor_hz: u32,
    pub(crate) edit_every: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) backoff_max: Option<Duration>,
    pub(crate) attempt_timeout: Option<Duration>,
    /// How long one client may take to get into its room at the start.
    pub(crate) join_wait: Duration,
    /// Whether a connection can outlive the cut (a network cut; not a server restart, where
    /// room events after the restart can only be stale ones still queued in the client).
    pub(crate) can_survive: bool,
}

/// What one client saw, for the report (sent from its process to the parent as JSON).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Record {
    pub(crate) member: Option<Member>,
    /// Clock ms when it was back after the cut (its connection lost and the room joined again,
    /// or its connection outlived the cut), and for an editor an edit made since acked.
    pub(crate) back_at: Option<f64>,
    /// Whether its first join after the cut kept its place (a resume); `None`: its connection
    /// outlived the cut, or it never rejoined.
    pub(crate) resumed: Option<bool>,
    /// Connection ends and failed attempts after the cut (the first is the cut itself).
    pub(crate) disconnects: u32,
    /// Why, the first of each kind.
    pub(crate) reasons: BTreeSet<String>,
    /// Of those, refusals with `Overloaded`.
    pub(crate) overloaded: u32,
    /// Why it stopped trying, if it did (its room forgotten, its client ended).
    pub(crate) gave_up: Option<String>,
    /// Edits made.
    pub(crate) edits: u64,
    /// Op ids acked.
    pub(crate) acked: BTreeSet<u64>,
    /// Ops the server refused for good.
    pub(crate) rejected: u64,
}

/// Starts `member`'s client and waits until it is in its room. Connection failures on the way
/// are the SDK's to retry (as an app's first connect in a crowd would be); `conduct.join_wait`
/// bounds it.
pub(crate) async fn connect(conduct: &Conduct, member: &Member) -> anyhow::Result<(Client, Room)> {
    let user = member.user();
    let mut builder = Client::builder(token(&conduct.secret, &member.room, &user)?)
        .name(&user)
        .cursor_hz(conduct.cursor_hz.max(1))
        .cert_hash(&conduct.cert_hash)?;
    if let Some(idle) = conduct.idle_timeout {
        builder = builder.idle_timeout(idle);
    }
    if let Some(limit) = conduct.attempt_timeout {
        builder = builder.attempt_timeout(limit);
    }
    if let Some(max) = conduct.backoff_max {
        builder = builder.backoff(Duration::from_millis(250).min(max), max);
    }
    let client = builder.spawn(&conduct.url)?;
    let joined = async {
        let room = client.join(&member.room).await?;
        while let Some(event) = client.next_event().await {
            match event {
                Event::Joined { .. } => return Ok(room),
                Event::JoinFailed { code, message, .. } => bail!("join refused: {code:?} {message}"),
                _ => {}
            }
        }
        bail!("the client ended")
    };
    let room = tokio::time::timeout(conduct.join_wait, joined)
        .await
        .with_context(|| format!("{user} not in its room within {:?}", conduct.join_wait))?
        .with_context(|| format!("{user} joins"))?;
    Ok((client, room))
}

/// Signals from the run to every client.
#[derive(Clone)]
pub(crate) struct Signals {
    /// The cut's clock ms, once it happened.
    pub(crate) cut: watch::Receiver<Option<f64>>,
    /// When the path healed (clock ms), once it has.
    pub(crate) healed_at: watch::Receiver<Option<f64>>,
    /// True: stop and report.
    pub(crate) stop: watch::Receiver<bool>,
    /// Each client's index once it is back.
    pub(crate) back: mpsc::UnboundedSender<u32>,
}

/// Runs one client until told to stop; returns what it saw.
pub(crate) async fn drive(
    member: Member,
    client: Client,
    room: Room,
    conduct: &Conduct,
    clock: Clock,
    mut signals: Signals,
) -> Record {
    let mut record = Record::default();
    let list = member.list();
    // Spread the clients' ticks over their periods so that they do not move in step.
    let phase = |period: Duration| period.mul_f64(f64::from(member.index % 997) / 997.0);
    let cursor_period = Duration::from_secs(1) / conduct.cursor_hz.max(1);
    let edit_period = conduct.edit_every.max(Duration::from_millis(1));
    let start = tokio::time::Instant::now();
    let mut cursor_every = tokio::time::interval_at(start + phase(cursor_period), cursor_period);
    let mut edit_every = tokio::time::interval_at(start + phase(edit_period), edit_period);
    cursor_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    edit_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut cut_at: Option<f64> = None;
    // An editor is back once an op made after the cut (and after its rejoin, if it lost its
    // connection) is acked: the first with an id above this.
    let mut probe: Option<u64> = None;
    let edit = |record: &mut Record| {
        record.edits += 1;
        let k = record.edits;
        room.edit(|doc| doc.get_list(list.as_str()).push(k.to_string())).map(|_| k)
    };
    loop {
        tokio::select! {
            changed = signals.stop.changed() => {
                if changed.is_err() || *signals.stop.borrow() {
                    break;
                }
            }
            changed = signals.cut.changed(), if cut_at.is_none() => {
                if changed.is_ok() {
                    cut_at = *signals.cut.borrow();
                    probe = Some(record.edits);
                }
            }
            _ = cursor_every.tick() => room.cursor(clock.ms() % 1000.0, f64::from(member.index)),
            _ = edit_every.tick(), if member.editor => {
                if let Err(e) = edit(&mut record) {
                    record.gave_up.get_or_insert(format!("edit failed: {e}"));
                }
            }
            event = client.next_event() => {
                let Some(event) = event else {
                    record.gave_up.get_or_insert_with(|| "the client ended".into());
                    break;
                };
                let after_cut = cut_at.is_some();
                match event {
                    Event::Disconnected { code, reason, .. } if after_cut => {
                        // Only what is made after the rejoin proves it.
                        probe = None;
                        record.disconnects += 1;
                        record.reasons.insert(reason);
                        if code == Some(ErrorCode::Overloaded) {
                            record.overloaded += 1;
                        }
                    }
                    // The first join after the cut says resumed or rejoined; any join while
                    // not back yet (a connection can be lost again on the way) starts the proof.
                    Event::Joined { resumed, .. } if after_cut && record.back_at.is_none() => {
                        record.resumed.get_or_insert(resumed);
                        if member.editor {
                            probe = Some(record.edits);
                            if let Err(e) = edit(&mut record) {
                                record.gave_up.get_or_insert(format!("edit failed: {e}"));
                            }
                        } else {
                            back(&mut record, &signals, member.index, clock.ms());
                        }
                    }
                    Event::Acked { op_ids, .. } => {
                        let now = clock.ms();
                        for id in op_ids {
                            record.acked.insert(id);
                            if probe.is_some_and(|p| id > p) {
                                back(&mut record, &signals, member.index, now);
                            }
                        }
                    }
                    // A non-editor whose connection outlived the cut is back when the room is
                    // heard from again after the cut has healed.
                    Event::Cursors { .. } | Event::RemoteUpdate { .. }
                        if conduct.can_survive && !member.editor && record.disconnects == 0 =>
                    {
                        let now = clock.ms();
                        if signals.healed_at.borrow().is_some_and(|h| now > h) {
                            back(&mut record, &signals, member.index, now);
                        }
                    }
                    Event::Rejected { .. } => record.rejected += 1,
                    Event::JoinFailed { code, message, .. } => {
                        record.gave_up.get_or_insert(format!("join refused: {code:?} {message}"));
                    }
                    Event::Left { code, reason, .. } => {
                        record.gave_up.get_or_insert(format!("left the room: {code:?} {reason}"));
                    }
                    _ => {}
                }
            }
        }
    }
    client.close().await;
    record.member = Some(member);
    record
}

fn back(record: &mut Record, signals: &Signals, index: u32, now: f64) {
    if record.back_at.is_none() {
        record.back_at = Some(now);
        let _ = signals.back.send(index);
    }
}
