//! The standard workload's observers: full SDK clients (local Loro document, throttled
//! cursors, events) that move and edit like everyone else and measure cursor and op delivery
//! where an app sees them.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use anyhow::Context as _;
use easel_benches::shard::Clock;
use easel_benches::token;
use easel_client::{Client, Event, Room};

use crate::Args;
use crate::lean::{parse_stamp, stamp};
use crate::tally::{Tally, Window};

/// Connects an SDK client as `user` to `--url` and joins; returns it with its connect start
/// (clock ms).
pub(crate) async fn connect(
    args: &Args,
    user: &str,
    token: String,
    clock: Clock,
) -> anyhow::Result<(Client, Room, f64)> {
    connect_to(args, (&args.url, args.cert_hash.as_deref()), user, token, clock).await
}

/// Connects an SDK client as `user` to `(url, cert hash)` and joins.
async fn connect_to(
    args: &Args,
    (url, cert_hash): (&str, Option<&str>),
    user: &str,
    token: String,
    clock: Clock,
) -> anyhow::Result<(Client, Room, f64)> {
    let started = clock.ms();
    let mut builder = Client::builder(token).name(user).cursor_hz(args.cursor_hz);
    if let Some(hash) = cert_hash {
        builder = builder.cert_hash(hash)?;
    }
    let client = builder.connect(url).await.with_context(|| format!("{user} connects"))?;
    let room = client.join(&args.room).await.with_context(|| format!("{user} joins"))?;
    Ok((client, room, started))
}

/// Connects observer `i` of the standard workload.
pub(crate) async fn connect_observer(
    args: &Args,
    i: u32,
    clock: Clock,
) -> anyhow::Result<(u32, Client, Room)> {
    let user = format!("load-{i}");
    let to = match &args.observer_url {
        Some(url) => (url.as_str(), args.observer_cert_hash.as_deref()),
        None => (args.url.as_str(), args.cert_hash.as_deref()),
    };
    let (client, room, _) =
        connect_to(args, to, &user, token(&args.jwt_secret, &args.room, &user)?, clock).await?;
    Ok((i, client, room))
}

/// Runs one observer until the window ends: moves its cursor and edits like the protocol
/// clients, and measures what its events show of the others.
pub(crate) async fn drive(
    i: u32,
    client: Client,
    room: Room,
    args: &Args,
    clock: Clock,
    window: Window,
) -> Tally {
    let mut tally = Tally::default();
    let own = format!("c{i}");
    let phase = |period: Duration| period.mul_f64(f64::from(i) / f64::from(args.clients.max(1)));
    let cursor_period = Duration::from_secs(1) / args.cursor_hz.max(1);
    let op_period = Duration::from_millis(args.op_every_ms.max(1));
    let start = tokio::time::Instant::now();
    let mut cursor_every = tokio::time::interval_at(start + phase(cursor_period), cursor_period);
    let mut op_every = tokio::time::interval_at(start + phase(op_period), op_period);
    cursor_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    op_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut unacked: VecDeque<f64> = VecDeque::new();
    // Participant number → (sender's list key, elements already seen).
    let mut senders: HashMap<u16, (String, usize)> = HashMap::new();
    let end = clock.at(window.to);
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(end) => break,
            _ = cursor_every.tick() => {
                let now = clock.ms();
                room.cursor(now, f64::from(i));
                if window.contains(now) {
                    tally.count("cursors_sent", 1);
                }
            }
            _ = op_every.tick() => {
                let now = clock.ms();
                if room.edit(|doc| doc.get_list(own.as_str()).push(stamp(now))).is_ok() {
                    unacked.push_back(now);
                    if window.contains(now) {
                        tally.count("ops_sent", 1);
                    }
                }
            }
            event = client.next_event() => {
                let Some(event) = event else { break };
                let now = clock.ms();
                match event {
                    Event::Acked { op_ids, .. } => {
                        for _ in op_ids {
                            if let Some(sent) = unacked.pop_front().filter(|s| window.contains(*s)) {
                                tally.latency("op_ack", now - sent);
                            }
                        }
                    }
                    Event::Cursors { cursors, .. } => {
                        for c in cursors.iter().filter(|c| window.contains(c.x)) {
                            tally.count("cursors_seen", 1);
                            tally.latency("cursor", now - c.x);
                        }
                    }
                    Event::Joined { participants, .. } => {
                        for p in participants {
                            if let Some(n) = p.user.strip_prefix("load-") {
                                senders.insert(p.index, (format!("c{n}"), 0));
                            }
                        }
                    }
                    Event::ParticipantJoined { participant, .. } => {
                        if let Some(n) = participant.user.strip_prefix("load-") {
                            senders.insert(participant.index, (format!("c{n}"), 0));
                        }
                    }
                    Event::RemoteUpdate { from, .. } => {
                        if let Some((key, seen)) = senders.get_mut(&from) {
                            *seen = new_elements(&room, key, *seen, |sent| {
                                if window.contains(sent) {
                                    tally.count("ops_seen", 1);
                                    tally.latency("op_delivery", now - sent);
                                }
                            });
                        }
                    }
                    Event::Disconnected { code, .. } => tally.count(&format!("disconnected_{code:?}"), 1),
                    _ => {}
                }
            }
        }
    }
    client.close().await;
    tally
}

/// Calls `f` with each send time ([`stamp`]) appended to list `key` since element `seen`;
/// returns the list's length.
pub(crate) fn new_elements(room: &Room, key: &str, seen: usize, mut f: impl FnMut(f64)) -> usize {
    let list = room.doc().get_list(key);
    for at in seen..list.len() {
        let value = list.get(at).and_then(|v| v.into_value().ok());
        if let Some(sent) = value.and_then(|v| v.into_string().ok()).and_then(|s| parse_stamp(&s)) {
            f(sent);
        }
    }
    list.len()
}
