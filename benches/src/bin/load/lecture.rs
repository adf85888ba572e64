//! The lecture (`--scenario lecture`): one teacher drawing and moving at `--cursor-hz`, and
//! `--clients` viewers (student tokens) who mostly watch. 1% of them move their cursors; a
//! chat message goes out every `--chat-every-ms` from a rotating viewer; a third into the
//! window the teacher opens a live poll that every viewer answers on sight, and closes it at
//! two thirds; `--hands` viewers raise their hands, spread over the window.
//!
//! Measured: join-to-synced per client (connect start → joined and holding the whole join
//! snapshot) and when the last one was in, counted from the last connect; the teacher's
//! cursor at every viewer; chat (send → seen at each viewer); poll open → seen at each
//! viewer, answer → acked, and answer → counted in results the teacher sees; hand raise →
//! in the queue the teacher sees; closes by code. The teacher and `--observers` viewers are
//! SDK clients; the rest are lean protocol clients.
//!
//! Latencies whose ends are in different processes travel as events (who/when) and are
//! joined by the parent ([`join_events`]); the rest carry the send time in the data (chat
//! text, poll question, cursor x).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use easel_benches::shard::Clock;
use easel_benches::token_as;
use easel_client::{Client, Event, Poll, Room};
use easel_proto::message::Role;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::Args;
use crate::lean::{Plan, chat_seen, poll_seen, stamp};
use crate::swarm::{self, new_elements};
use crate::tally::{Tally, Window, summary, until_window};

/// How long an SDK viewer may still take to hold its room after the window ends.
const SYNC_GRACE: Duration = Duration::from_secs(30);

/// The seeds' budgets (p95), ms.
pub(crate) const CHAT_BUDGET_MS: f64 = 200.0;
pub(crate) const POLL_BUDGET_MS: f64 = 500.0;
pub(crate) const HAND_BUDGET_MS: f64 = 1000.0;

/// The teacher's document list its edits append their send times to.
const TEACHER_LIST: &str = "teacher";

/// Viewer `i`'s user name.
pub(crate) fn viewer(i: u32) -> String {
    format!("viewer-{i}")
}

/// Whether viewer `i` moves its cursor (1%).
pub(crate) fn mover(i: u32) -> bool {
    i % 100 == 50
}

/// What lean viewer `i` of `lo..hi` does in `window`: its share of the chat rota and hand
/// raises, and answering polls.
pub(crate) fn plan(args: &Args, i: u32, lo: u32, hi: u32, window: Window) -> Plan {
    let span = (hi - lo).max(1);
    let every = args.chat_every_ms.max(1) as f64;
    let chats = (0..(window.to - window.from) as u64 / args.chat_every_ms.max(1))
        .filter(|k| lo + (k.wrapping_mul(7919) % u64::from(span)) as u32 == i)
        .map(|k| window.from + (k as f64 + 0.5) * every)
        .collect();
    let hand_at =
        (0..args.hands).find(|h| lo + (h.wrapping_mul(104_729).wrapping_add(3) % span) == i).map(|h| {
            window.from + (f64::from(h) + 0.5) * (window.to - window.from) / f64::from(args.hands.max(1))
        });
    Plan { edit_every: None, chats, hand_at, answer_polls: true, observe: false }
}

/// Connects the teacher (an SDK client with a teacher token).
pub(crate) async fn connect_teacher(args: &Args, clock: Clock) -> anyhow::Result<(Client, Room)> {
    let token = token_as(&args.jwt_secret, &args.room, "teacher", "teacher")?;
    let (client, room, _) = swarm::connect(args, "teacher", token, clock).await?;
    Ok((client, room))
}

/// Connects SDK viewer `i`, returning it with its connect start.
pub(crate) async fn connect_viewer(args: &Args, i: u32, clock: Clock) -> anyhow::Result<(Client, Room, f64)> {
    let user = viewer(i);
    swarm::connect(args, &user, token_as(&args.jwt_secret, &args.room, &user, "student")?, clock).await
}

/// The teacher: draws (an edit every `--teacher-edit-ms`) and moves at `--cursor-hz` from the
/// moment it joins; in the window it runs the poll and watches hands and results.
pub(crate) async fn teacher(
    client: Client,
    room: Room,
    args: &Args,
    clock: Clock,
    mut window_rx: watch::Receiver<Option<Window>>,
) -> Tally {
    let mut tally = Tally::default();
    let mut cursor_every = tokio::time::interval(Duration::from_secs(1) / args.cursor_hz.max(1));
    let mut edit_every = tokio::time::interval(Duration::from_millis(args.teacher_edit_ms.max(1)));
    cursor_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    edit_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut window: Option<Window> = None;
    let mut unacked: VecDeque<f64> = VecDeque::new();
    let (mut poll_id, mut poll_opened, mut poll_closed) = (None, false, false);
    let mut hands: HashSet<u16> = HashSet::new();
    loop {
        let w = window.unwrap_or(Window::UNKNOWN);
        let third = (w.to - w.from) / 3.0;
        let poll_due = if !poll_opened {
            w.from + third
        } else if !poll_closed && poll_id.is_some() {
            w.from + 2.0 * third
        } else {
            f64::MAX
        };
        tokio::select! {
            w = until_window(&mut window_rx), if window.is_none() => window = Some(w),
            () = tokio::time::sleep_until(clock.at(w.to)) => break,
            () = tokio::time::sleep_until(clock.at(poll_due)) => {
                if !poll_opened {
                    poll_opened = true;
                    let poll = Poll {
                        question: format!("Which one? t={:.3}", clock.ms()),
                        options: vec!["A".into(), "B".into()],
                        multiple: false,
                        duration: None,
                        live: true,
                    };
                    if room.start_poll(poll).await.is_err() {
                        tally.count("poll_start_failed", 1);
                    }
                } else if let Some(id) = poll_id {
                    poll_closed = true;
                    let _ = room.close_poll(id).await;
                }
            }
            _ = cursor_every.tick() => {
                let now = clock.ms();
                room.cursor(now, 0.0);
                if window.is_some_and(|w| w.contains(now)) {
                    tally.count("teacher_cursors_sent", 1);
                }
            }
            _ = edit_every.tick() => {
                let now = clock.ms();
                if room.edit(|doc| doc.get_list(TEACHER_LIST).push(stamp(now))).is_ok() {
                    unacked.push_back(now);
                    if window.is_some_and(|w| w.contains(now)) {
                        tally.count("teacher_edits_sent", 1);
                    }
                }
            }
            event = client.next_event() => {
                let Some(event) = event else { break };
                let now = clock.ms();
                match event {
                    Event::Acked { op_ids, .. } => {
                        for _ in op_ids {
                            if let Some(sent) = unacked.pop_front().filter(|s| window.is_some_and(|w| w.contains(*s))) {
                                tally.latency("teacher_op_ack", now - sent);
                            }
                        }
                    }
                    Event::PollStarted { poll, .. } => poll_id = Some(poll.poll_id),
                    Event::PollResults { results, .. } => {
                        tally.event("poll_results", now, f64::from(results.respondents));
                        tally.max("poll_respondents", f64::from(results.respondents));
                    }
                    Event::HandQueue { queue, .. } => {
                        for p in queue {
                            if hands.insert(p) {
                                tally.event("hand_seen", f64::from(p), now);
                            }
                        }
                    }
                    Event::Chat { message, .. } => {
                        if let Some(w) = window {
                            chat_seen(&mut tally, &message.text, now, w);
                        }
                    }
                    other => count_end(&mut tally, &other),
                }
            }
        }
    }
    client.close().await;
    tally
}

/// An SDK viewer (an observer): records join-to-synced, then watches the teacher's cursor and
/// drawing, chat and polls (answering them) until the window ends.
pub(crate) async fn viewer_observer(
    client: Client,
    room: Room,
    connect_start: f64,
    clock: Clock,
    mut window_rx: watch::Receiver<Option<Window>>,
) -> Tally {
    let mut tally = Tally::default();
    let mut window: Option<Window> = None;
    let (mut teacher, mut synced, mut seen) = (None, false, 0usize);
    let mut answer_sent = None;
    tally.max("last_connect_start", connect_start);
    loop {
        let end = clock.at(window.unwrap_or(Window::UNKNOWN).to);
        tokio::select! {
            w = until_window(&mut window_rx), if window.is_none() => window = Some(w),
            // A viewer still loading its room when the window ends is given a grace to finish,
            // so its join is timed rather than missing from the report.
            () = tokio::time::sleep_until(end), if synced => break,
            () = tokio::time::sleep_until(end + SYNC_GRACE) => break,
            event = client.next_event() => {
                let Some(event) = event else { break };
                let now = clock.ms();
                let w = window.unwrap_or(Window::UNKNOWN);
                match event {
                    Event::Joined { participants, .. } => {
                        teacher = participants.iter().find(|p| p.role == Role::Teacher).map(|p| p.index);
                    }
                    Event::Synced { .. } if !synced => {
                        synced = true;
                        tally.latency("connect", now - connect_start);
                        tally.max("last_synced", now);
                    }
                    Event::Cursors { cursors, .. } => {
                        for c in cursors.iter().filter(|c| Some(c.participant) == teacher && w.contains(c.x)) {
                            tally.latency("teacher_cursor", now - c.x);
                            tally.count("teacher_cursors_seen", 1);
                        }
                    }
                    Event::RemoteUpdate { from, .. } if Some(from) == teacher => {
                        seen = new_elements(&room, TEACHER_LIST, seen, |sent| {
                            if w.contains(sent) {
                                tally.latency("teacher_op_delivery", now - sent);
                            }
                        });
                    }
                    Event::Chat { message, .. } => chat_seen(&mut tally, &message.text, now, w),
                    Event::PollStarted { poll, .. } => {
                        poll_seen(&mut tally, &poll.question, now, w);
                        if room.answer_poll(poll.poll_id, &[0]).await.is_ok() {
                            tally.event("poll_answered", now, 0.0);
                            answer_sent = Some(now);
                        }
                    }
                    Event::PollAnswered { .. } => {
                        if let Some(sent) = answer_sent.take() {
                            tally.latency("poll_answer_ack", now - sent);
                        }
                    }
                    other => count_end(&mut tally, &other),
                }
            }
        }
    }
    client.close().await;
    tally
}

/// Counts an SDK client's disconnects and forced leaves by code.
fn count_end(tally: &mut Tally, event: &Event) {
    match event {
        Event::Disconnected { code, .. } => {
            let code = code.map_or_else(|| "no_code".to_owned(), |c| format!("{c:?}"));
            tally.count(&format!("closed_{code}"), 1);
        }
        Event::Left { code, .. } => tally.count(&format!("left_{code:?}"), 1),
        _ => {}
    }
}

/// Joins what different processes saw: answer → counted in results the teacher saw (the k-th
/// answer sent is taken as the k-th counted), and hand raise → in the teacher's queue.
pub(crate) fn join_events(tally: &mut Tally) {
    let mut answers: Vec<f64> = tally.events("poll_answered").iter().map(|e| e.0).collect();
    answers.sort_by(f64::total_cmp);
    let mut results = tally.events("poll_results").to_vec();
    results.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut latencies = Vec::new();
    let mut r = 0;
    for (k, sent) in answers.iter().enumerate() {
        while r < results.len() && (results[r].1 < (k + 1) as f64 || results[r].0 < *sent) {
            r += 1;
        }
        match results.get(r) {
            Some((seen, _)) => latencies.push(seen - sent),
            None => break,
        }
    }
    for l in latencies {
        tally.latency("poll_results", l);
    }
    let raised: HashMap<u64, f64> =
        tally.events("hand_raised").iter().map(|(p, t)| (*p as u64, *t)).collect();
    let seen: Vec<(u64, f64)> = tally.events("hand_seen").iter().map(|(p, t)| (*p as u64, *t)).collect();
    for (p, t) in seen {
        if let Some(sent) = raised.get(&p) {
            tally.latency("hand", t - sent);
        }
    }
}

/// A latency's summary with its p95 checked against `budget_ms`.
fn budgeted(tally: &mut Tally, name: &str, budget_ms: f64) -> Value {
    let mut v = summary(tally.hist(name));
    let p95 = tally.hist(name).filter(|h| !h.is_empty()).map(|h| h.value_at_quantile(0.95) as f64 / 1000.0);
    v["budget_p95_ms"] = json!(budget_ms);
    v["pass"] = json!(p95.map(|p| p < budget_ms));
    v
}

/// The lecture's report section; `viewers` is how many viewers were connected.
pub(crate) fn report(tally: &mut Tally, viewers: u64) -> Value {
    let all_in = match (tally.maximum("last_synced"), tally.maximum("last_connect_start")) {
        (Some(s), Some(c)) => Some(((s - c) * 1000.0).round() / 1000.0),
        _ => None,
    };
    let sent = tally.counter("teacher_cursors_sent");
    let seen = tally.counter("teacher_cursors_seen");
    let expected = sent * viewers;
    json!({
        "join": {
            "to_synced": summary(tally.hist("connect")),
            "all_synced_ms_after_last_connect": all_in,
        },
        "teacher_cursor": {
            "latency": summary(tally.hist("teacher_cursor")),
            "sent": sent,
            "delivered": seen,
            "expected": expected,
            "ratio": if expected == 0 { 0.0 } else { (seen as f64 / expected as f64 * 10_000.0).round() / 10_000.0 },
        },
        "teacher_edits": {
            "sent": tally.counter("teacher_edits_sent"),
            "ack": summary(tally.hist("teacher_op_ack")),
            "delivery": summary(tally.hist("teacher_op_delivery")),
        },
        "chat": { "sent": tally.counter("chats_sent"), "latency": budgeted(tally, "chat", CHAT_BUDGET_MS) },
        "poll": {
            "answers": tally.events("poll_answered").len(),
            "respondents_seen_by_teacher": tally.maximum("poll_respondents"),
            "open_to_seen": budgeted(tally, "poll_open", POLL_BUDGET_MS),
            "answer_to_ack": summary(tally.hist("poll_answer_ack")),
            "answer_to_results_at_teacher": budgeted(tally, "poll_results", POLL_BUDGET_MS),
        },
        "hand": {
            "raised": tally.events("hand_raised").len(),
            "seen_by_teacher": tally.events("hand_seen").len(),
            "latency": budgeted(tally, "hand", HAND_BUDGET_MS),
        },
        "closes": tally.counters_under("closed_"),
        "forced_leaves": tally.counters_under("left_"),
        "frames_skipped": tally.counter("frames_skipped"),
    })
}

/// One line per budget, for people.
pub(crate) fn verdicts(report: &Value) -> String {
    let line = |what: &str, v: &Value| {
        let p95 = v["p95_ms"].as_f64().map_or_else(|| "no samples".to_owned(), |p| format!("{p:.1} ms"));
        let pass = match v["pass"].as_bool() {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "n/a",
        };
        format!("{what}: p95 {p95} (budget < {} ms) {pass}\n", v["budget_p95_ms"])
    };
    [
        line("chat send → seen", &report["chat"]["latency"]),
        line("poll open → seen", &report["poll"]["open_to_seen"]),
        line("poll answer → results at teacher", &report["poll"]["answer_to_results_at_teacher"]),
        line("hand raise → seen by teacher", &report["hand"]["latency"]),
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_meet_the_first_results_that_count_them() {
        let mut t = Tally::default();
        for sent in [10.0, 20.0, 30.0] {
            t.event("poll_answered", sent, 0.0);
        }
        // Results at 25 count two answers, at 1000 all three; those at 5 (another process's
        // answer, counted before this one was sent) count none of these.
        t.event("poll_results", 5.0, 1.0);
        t.event("poll_results", 1000.0, 3.0);
        t.event("poll_results", 25.0, 2.0);
        t.event("hand_raised", 7.0, 100.0);
        t.event("hand_seen", 7.0, 160.0);
        join_events(&mut t);
        let h = t.hist("poll_results").expect("poll results");
        assert_eq!(h.len(), 3);
        assert_eq!(h.value_at_quantile(0.0) / 1000, 5); // 25 − 20
        assert_eq!(h.max() / 1000, 970); // 1000 − 30
        assert_eq!(t.hist("hand").map(|h| h.max() / 1000), Some(60));
    }
}
