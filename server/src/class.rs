//! The classroom beside the board: chat, polls, per-user moderation flags and attendance of
//! one room (SPEC §9–12). Sans-IO like [`crate::room::Room`], which owns one [`Class`]: calls
//! take the caller's identity and the time, and return what to store ([`Write`]) and what to
//! send ([`Deliver`]); nothing here awaits, reads a clock or knows the transport.
//!
//! One node alone keeps the state as records (JSON in the store's side table, see
//! [`crate::store`]), loaded whole with the room; in cluster mode the room rebuilds it by
//! applying the room log's classroom events instead (`room::classlog`), and the records are
//! not stored. The state: chat (at most [`CHAT_KEEP`] newest messages), every poll with its
//! answers, moderation flags per user, attendance intervals per user.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use easel_proto::ErrorCode;
use easel_proto::message::{
    ChatDeleted, ChatMessage, ChatPage, Fault, Kind, PollAnswered, PollResults, PollStarted, Role,
};
use easel_proto::{Message, limits};
use serde::{Deserialize, Serialize};

use easel_proto::rate::TokenBucket;

/// Chat messages a room keeps (newest); older ones are dropped from memory and history.
pub const CHAT_KEEP: usize = 10_000;
/// Messages in the page a joining member gets.
pub const JOIN_PAGE: usize = 50;
/// Live poll results are broadcast at most this often (SPEC §10): a class watching the bars
/// move sees an answer well within the half second a poll may take, and a 2,000-seat
/// lecture's answers still cost four broadcasts a second, not one per answer.
pub const LIVE_EVERY: Duration = Duration::from_millis(250);

/// Record kinds in the store's side table.
pub mod kind {
    /// Chat messages, keyed by zero-padded id.
    pub const CHAT: &str = "chat";
    /// Polls, keyed by zero-padded id.
    pub const POLL: &str = "poll";
    /// Moderation flags, keyed by user.
    pub const FLAGS: &str = "flags";
    /// Attendance, keyed by user.
    pub const ATTENDANCE: &str = "attendance";
}

/// A record to store (replacing the one with the same kind and key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// Record kind (see [`kind`]).
    pub kind: &'static str,
    /// Key within the kind.
    pub key: String,
    /// JSON bytes.
    pub value: Vec<u8>,
}

/// Who receives a message.
#[derive(Debug, Clone)]
pub enum Deliver {
    /// One participant.
    To(u16, Message),
    /// Everyone in the room.
    All(Message),
}

/// What a request produced: `reply` goes out at once (refusals, pages); `writes` must be
/// durable before `then` is delivered (an echo is a confirmation: SPEC §9).
#[derive(Debug, Default)]
pub struct Outcome {
    /// Immediate answers.
    pub reply: Vec<Deliver>,
    /// Records to store.
    pub writes: Vec<Write>,
    /// Sent once the writes are durable.
    pub then: Vec<Deliver>,
}

impl Outcome {
    fn refuse(to: u16, kind: Kind, reference: u64, code: ErrorCode, why: &str) -> Self {
        let fault = Fault::new(code, kind.to_u8(), reference, why);
        Self { reply: vec![Deliver::To(to, Message::from(fault))], ..Self::default() }
    }
}

/// The requester, as the room knows it.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    /// Participant number.
    pub index: u16,
    /// Token subject.
    pub user: &'a str,
    /// The installation it acts from (a resend comes from the same).
    pub client: &'a str,
    /// Display name.
    pub name: &'a str,
    /// Role.
    pub role: Role,
    /// Chat muted by a teacher.
    pub chat_muted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct ChatRecord {
    id: u64,
    from: u16,
    user: String,
    name: String,
    text: String,
    sent_ms: u64,
    client_msg_id: u64,
    #[serde(default)]
    deleted: bool,
    /// The sender's installation (records before group commit have none).
    #[serde(default)]
    client: String,
}

impl ChatRecord {
    fn message(&self) -> ChatMessage {
        ChatMessage {
            id: self.id,
            from: self.from,
            user: self.user.clone(),
            name: self.name.clone(),
            text: self.text.clone(),
            sent_ms: self.sent_ms,
            client_msg_id: self.client_msg_id,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct PollRecord {
    poll_id: u64,
    request: u64,
    by: u16,
    question: String,
    options: Vec<String>,
    multiple: bool,
    closes_at_ms: u64,
    live: bool,
    closed: bool,
    /// One answer per user (a user's second device replaces, not adds): attempt id, choices.
    answers: BTreeMap<String, (u64, Vec<u8>)>,
    /// Who started it, and from which installation (records before group commit have none).
    #[serde(default)]
    user: String,
    #[serde(default)]
    client: String,
}

impl PollRecord {
    fn started(&self) -> PollStarted {
        PollStarted {
            poll_id: self.poll_id,
            request: self.request,
            by: self.by,
            question: self.question.clone(),
            options: self.options.clone(),
            multiple: self.multiple,
            closes_at_ms: self.closes_at_ms,
            live: self.live,
        }
    }

    fn results(&self) -> PollResults {
        let mut counts = vec![0u32; self.options.len()];
        for (_, choices) in self.answers.values() {
            for c in choices {
                if let Some(n) = counts.get_mut(usize::from(*c)) {
                    *n += 1;
                }
            }
        }
        PollResults {
            poll_id: self.poll_id,
            counts,
            respondents: self.answers.len() as u32,
            closed: self.closed,
        }
    }
}

/// Moderation that follows a user across reconnects (not a participant number).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Flags {
    /// Board edits refused.
    pub read_only: bool,
    /// Chat refused.
    pub chat_muted: bool,
    /// Removed: joins are refused until this time (the removed token's expiry), Unix ms.
    pub removed_until_ms: Option<u64>,
}

/// One user's presence in the room over time.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attendance {
    /// Token subject.
    pub user: String,
    /// Latest display name.
    pub name: String,
    /// Join and leave times, Unix ms; an open interval has no end yet.
    pub intervals: Vec<(u64, Option<u64>)>,
}

impl Attendance {
    /// Total time present up to `now_ms` (open intervals count until then).
    pub fn total_ms(&self, now_ms: u64) -> u64 {
        self.intervals.iter().map(|(from, to)| to.unwrap_or(now_ms).saturating_sub(*from)).sum()
    }
}

/// A stored classroom record that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("stored {kind} record {key} is corrupt: {source}")]
pub struct RecordError {
    /// The record kind (see [`kind`]).
    pub kind: &'static str,
    /// Its key.
    pub key: String,
    /// Why it does not decode.
    #[source]
    pub source: serde_json::Error,
}

/// The attendance records among a room's stored classroom records, by user.
pub fn attendance_of(records: Vec<(String, String, Vec<u8>)>) -> Result<Vec<Attendance>, RecordError> {
    records
        .into_iter()
        .filter(|(k, _, _)| k == kind::ATTENDANCE)
        .map(|(_, key, value)| {
            serde_json::from_slice::<Attendance>(&value).map_err(|source| RecordError {
                kind: kind::ATTENDANCE,
                key,
                source,
            })
        })
        .collect()
}

/// A classroom's state as a cluster room's snapshot holds it ([`Class::export`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exported {
    /// `(kind, key, JSON)`, as in the store's side table.
    pub records: Vec<(String, String, Vec<u8>)>,
    /// The memberships open at the time: each by its key (see [`Class::arrive`]), with its
    /// user.
    pub memberships: BTreeMap<String, String>,
}

/// A room's classroom state.
#[derive(Debug, Default)]
pub struct Class {
    chat: BTreeMap<u64, ChatRecord>,
    next_chat: u64,
    polls: BTreeMap<u64, PollRecord>,
    next_poll: u64,
    /// Poll timers (Instant) and polls whose live counts changed.
    deadlines: BTreeMap<u64, Instant>,
    dirty: Vec<u64>,
    last_live: Option<Instant>,
    flags: HashMap<String, Flags>,
    attendance: BTreeMap<String, Attendance>,
    /// The memberships open now, by key, with their user.
    memberships: BTreeMap<String, String>,
    /// Memberships per user now (a user on two devices is present once).
    present: HashMap<String, u32>,
    chat_rate: HashMap<String, TokenBucket>,
    chat_per_min: u32,
}

fn key(n: u64) -> String {
    format!("{n:020}")
}

fn write<T: Serialize>(kind: &'static str, key: String, value: &T) -> Option<Write> {
    match serde_json::to_vec(value) {
        Ok(value) => Some(Write { kind, key, value }),
        Err(e) => {
            tracing::error!(kind, "record does not serialise: {e}");
            None
        }
    }
}

impl Class {
    /// Rebuilds the state from stored records (`(kind, key, JSON)`); records that do not
    /// decode are skipped with an error log rather than making the room unloadable.
    /// `now_ms`/`now` map stored poll deadlines onto the room's clock; attendance left open by
    /// a server that stopped is closed at its last known time.
    pub fn load(
        records: Vec<(String, String, Vec<u8>)>,
        chat_per_min: u32,
        now: Instant,
        now_ms: u64,
    ) -> Self {
        Self::rebuild(records, &BTreeMap::new(), chat_per_min, now, now_ms)
    }

    /// The state as a cluster room's snapshot holds it: the records, in the side table's
    /// encoding, and the memberships per user now (which a replica's later departures end).
    pub fn export(&self) -> Exported {
        let chat = self.chat.values().filter_map(|r| write(kind::CHAT, key(r.id), r));
        let polls = self.polls.values().filter_map(|p| write(kind::POLL, key(p.poll_id), p));
        let flags = self.flags.iter().filter_map(|(user, f)| write(kind::FLAGS, user.clone(), f));
        let attendance =
            self.attendance.iter().filter_map(|(user, a)| write(kind::ATTENDANCE, user.clone(), a));
        let records =
            chat.chain(polls).chain(flags).chain(attendance).map(|w| (w.kind.to_owned(), w.key, w.value));
        Exported { records: records.collect(), memberships: self.memberships.clone() }
    }

    /// The state of a cluster room's snapshot ([`Class::export`]): as [`Class::load`], but the
    /// members present when it was taken are still present (at other nodes, or here until
    /// their departures come from the room log).
    pub fn restore(exported: Exported, chat_per_min: u32, now: Instant, now_ms: u64) -> Self {
        let Exported { records, memberships } = exported;
        let mut present = BTreeMap::new();
        for user in memberships.values() {
            *present.entry(user.clone()).or_insert(0) += 1;
        }
        let mut class = Self::rebuild(records, &present, chat_per_min, now, now_ms);
        class.present = present.into_iter().collect();
        class.memberships = memberships;
        class
    }

    fn rebuild(
        records: Vec<(String, String, Vec<u8>)>,
        present: &BTreeMap<String, u32>,
        chat_per_min: u32,
        now: Instant,
        now_ms: u64,
    ) -> Self {
        let mut class = Self { chat_per_min, ..Self::default() };
        for (kind, key, value) in records {
            let ok = match kind.as_str() {
                kind::CHAT => serde_json::from_slice::<ChatRecord>(&value).map(|r| {
                    class.next_chat = class.next_chat.max(r.id);
                    class.chat.insert(r.id, r);
                }),
                kind::POLL => serde_json::from_slice::<PollRecord>(&value).map(|p| {
                    class.next_poll = class.next_poll.max(p.poll_id);
                    if !p.closed && p.closes_at_ms > 0 {
                        let left = Duration::from_millis(p.closes_at_ms.saturating_sub(now_ms));
                        class.deadlines.insert(p.poll_id, now + left);
                    }
                    class.polls.insert(p.poll_id, p);
                }),
                kind::FLAGS => serde_json::from_slice::<Flags>(&value).map(|f| {
                    class.flags.insert(key.clone(), f);
                }),
                kind::ATTENDANCE => serde_json::from_slice::<Attendance>(&value).map(|mut a| {
                    // Nobody is present in a room that is only now loading (but those a
                    // snapshot says are, at other nodes).
                    let here = present.get(&key).is_some_and(|n| *n > 0);
                    for interval in &mut a.intervals {
                        if interval.1.is_none() && !here {
                            interval.1 = Some(interval.0);
                        }
                    }
                    class.attendance.insert(key.clone(), a);
                }),
                other => {
                    tracing::warn!(kind = other, "unknown classroom record kind");
                    Ok(())
                }
            };
            if let Err(e) = ok {
                tracing::error!(kind, key, "corrupt classroom record skipped: {e}");
            }
        }
        class
    }

    /// The flags a user carries into the room.
    pub fn flags(&self, user: &str) -> Flags {
        self.flags.get(user).cloned().unwrap_or_default()
    }

    /// Whether `user` was removed and the removal still holds at `now_ms`.
    pub fn removed(&self, user: &str, now_ms: u64) -> bool {
        self.flags.get(user).and_then(|f| f.removed_until_ms).is_some_and(|until| now_ms < until)
    }

    /// Changes a user's flags; returns the write.
    pub fn set_flags(&mut self, user: &str, change: impl FnOnce(&mut Flags)) -> Option<Write> {
        let flags = self.flags.entry(user.to_owned()).or_default();
        change(flags);
        write(kind::FLAGS, user.to_owned(), flags)
    }

    /// A membership of `user` began (a resume is not one).
    ///
    /// `membership` names this membership (its node and number there): an arrival counts once
    /// and only an open membership departs, once, so a departure proposed by several nodes
    /// (their peer died with its members) or a resend changes nothing the second time.
    pub fn arrive(&mut self, membership: &str, user: &str, name: &str, now_ms: u64) -> Option<Write> {
        if self.memberships.insert(membership.to_owned(), user.to_owned()).is_some() {
            return None;
        }
        let count = self.present.entry(user.to_owned()).or_default();
        *count += 1;
        if *count > 1 {
            return None;
        }
        let record = self
            .attendance
            .entry(user.to_owned())
            .or_insert_with(|| Attendance { user: user.to_owned(), ..Attendance::default() });
        record.name = name.to_owned();
        record.intervals.push((now_ms, None));
        write(kind::ATTENDANCE, user.to_owned(), record)
    }

    /// The membership `membership` ended at `at_ms` (see [`Class::arrive`]).
    pub fn depart(&mut self, membership: &str, at_ms: u64) -> Option<Write> {
        let user = self.memberships.remove(membership)?;
        let user = user.as_str();
        let count = self.present.get_mut(user)?;
        *count = count.saturating_sub(1);
        if *count > 0 {
            return None;
        }
        self.present.remove(user);
        let record = self.attendance.get_mut(user)?;
        if let Some(open) = record.intervals.last_mut().filter(|i| i.1.is_none()) {
            open.1 = Some(at_ms.max(open.0));
        }
        write(kind::ATTENDANCE, user.to_owned(), record)
    }

    /// Everyone's attendance.
    pub fn attendance(&self) -> impl Iterator<Item = &Attendance> {
        self.attendance.values()
    }

    /// What a joining member gets besides `Joined`: open polls (with live counts), the latest
    /// chat page. Empty parts are left out.
    pub fn on_join(&self) -> Vec<Message> {
        let mut out = Vec::new();
        for poll in self.polls.values().filter(|p| !p.closed) {
            out.push(Message::from(poll.started()));
            if poll.live {
                out.push(Message::from(poll.results()));
            }
        }
        let page = self.page(0, JOIN_PAGE);
        if !page.messages.is_empty() {
            out.push(Message::from(page));
        }
        out
    }

    fn page(&self, before: u64, limit: usize) -> ChatPage {
        let upper = if before == 0 { u64::MAX } else { before };
        let mut live = self.chat.range(..upper).rev().filter(|(_, r)| !r.deleted);
        let mut messages: Vec<ChatMessage> = live.by_ref().take(limit).map(|(_, r)| r.message()).collect();
        let more = live.next().is_some();
        messages.reverse();
        ChatPage { messages, more }
    }

    /// `ChatSend`, before it is posted: refused if muted or over the user's rate. The rate
    /// is the node's own (cluster mode: the node holding the connection decides it).
    pub fn chat_admit(&mut self, who: Who<'_>, client_msg_id: u64, now: Instant) -> Result<(), Outcome> {
        let kind = Kind::ChatSend;
        if who.chat_muted {
            let why = "chat muted by a teacher";
            return Err(Outcome::refuse(who.index, kind, client_msg_id, ErrorCode::ChatMuted, why));
        }
        let per_min = self.chat_per_min.max(1);
        let bucket = self
            .chat_rate
            .entry(who.user.to_owned())
            .or_insert_with(|| TokenBucket::per_minute(per_min, per_min, now));
        if !bucket.take(now) {
            let why = "chat rate limited";
            return Err(Outcome::refuse(who.index, kind, client_msg_id, ErrorCode::RateLimited, why));
        }
        Ok(())
    }

    /// `ChatSend`, admitted ([`Class::chat_admit`]): stored, then echoed to everyone; refused
    /// if the user is muted by now (cluster mode: a mute ordered before it in the room log).
    pub fn chat_post(&mut self, who: Who<'_>, client_msg_id: u64, text: String, now_ms: u64) -> Outcome {
        if self.flags.get(who.user).is_some_and(|f| f.chat_muted) {
            let why = "chat muted by a teacher";
            return Outcome::refuse(who.index, Kind::ChatSend, client_msg_id, ErrorCode::ChatMuted, why);
        }
        self.next_chat += 1;
        let record = ChatRecord {
            id: self.next_chat,
            from: who.index,
            user: who.user.to_owned(),
            name: who.name.to_owned(),
            text,
            sent_ms: now_ms,
            client_msg_id,
            deleted: false,
            client: who.client.to_owned(),
        };
        let message = Message::from(record.message());
        let writes = write(kind::CHAT, key(record.id), &record).into_iter().collect();
        self.chat.insert(record.id, record);
        while self.chat.len() > CHAT_KEEP {
            self.chat.pop_first();
        }
        Outcome { writes, then: vec![Deliver::All(message)], ..Outcome::default() }
    }

    /// `ChatDelete` (teacher).
    pub fn chat_delete(&mut self, who: Who<'_>, id: u64) -> Outcome {
        let kind = Kind::ChatDelete;
        if who.role != Role::Teacher {
            return Outcome::refuse(
                who.index,
                kind,
                id,
                ErrorCode::Forbidden,
                "only a teacher deletes messages",
            );
        }
        let Some(record) = self.chat.get_mut(&id).filter(|r| !r.deleted) else {
            return Outcome::refuse(who.index, kind, id, ErrorCode::NotFound, "no such message");
        };
        record.deleted = true;
        let writes = write(kind::CHAT, key(id), &*record).into_iter().collect();
        let then = vec![Deliver::All(Message::from(ChatDeleted { id, by: who.index }))];
        Outcome { writes, then, ..Outcome::default() }
    }

    /// Cluster mode: whether `request` is a resend of one already applied (the room log may
    /// hold an act twice: a resend after a lost ack goes in another batch), and if so what
    /// the first earned its sender, again: the chat message's echo (nothing if deleted
    /// since), the started poll, the answer's ack. Decided from the state alone, so every
    /// replica decides the same (a snapshot carries it); a chat message no longer kept
    /// ([`CHAT_KEEP`]) is not recognised.
    pub fn resent(&self, who: Who<'_>, request: &Message) -> Option<Outcome> {
        let mine = |user: &str, client: &str| user == who.user && client == who.client;
        let reply = match request {
            Message::ChatSend(c) => {
                let first = self
                    .chat
                    .values()
                    .rev()
                    .find(|r| r.client_msg_id == c.client_msg_id && mine(&r.user, &r.client))?;
                (!first.deleted).then(|| Message::from(first.message()))
            }
            Message::PollStart(p) => {
                let first =
                    self.polls.values().rev().find(|q| q.request == p.request && mine(&q.user, &q.client))?;
                Some(Message::from(first.started()))
            }
            Message::PollAnswer(a) => {
                let poll = self.polls.get(&a.poll_id)?;
                let (attempt, _) = poll.answers.get(who.user).filter(|(at, _)| *at == a.attempt_id)?;
                Some(Message::from(PollAnswered { poll_id: a.poll_id, attempt_id: *attempt }))
            }
            _ => return None,
        };
        let reply = reply.into_iter().map(|m| Deliver::To(who.index, m)).collect();
        Some(Outcome { reply, ..Outcome::default() })
    }

    /// The newest message `user` sent under `client_msg_id`, if still kept.
    pub fn chat_of(&self, user: &str, client_msg_id: u64) -> Option<ChatMessage> {
        let mut sent =
            self.chat.values().rev().filter(|r| r.user == user && r.client_msg_id == client_msg_id);
        sent.next().filter(|r| !r.deleted).map(ChatRecord::message)
    }

    /// `ChatHistory`: a page, at once.
    pub fn chat_history(&self, who: Who<'_>, before: u64, limit: u16) -> Outcome {
        let page = self.page(before, usize::from(limit).clamp(1, limits::MAX_CHAT_PAGE));
        Outcome { reply: vec![Deliver::To(who.index, Message::from(page))], ..Outcome::default() }
    }

    /// `PollStart` (teacher).
    #[allow(clippy::too_many_arguments)]
    pub fn poll_start(
        &mut self,
        who: Who<'_>,
        start: easel_proto::message::PollStart,
        now: Instant,
        now_ms: u64,
    ) -> Outcome {
        if who.role != Role::Teacher {
            let why = "only a teacher starts polls";
            return Outcome::refuse(who.index, Kind::PollStart, start.request, ErrorCode::Forbidden, why);
        }
        self.next_poll += 1;
        let poll_id = self.next_poll;
        let closes_at_ms = match start.duration_ms {
            0 => 0,
            ms => {
                self.deadlines.insert(poll_id, now + Duration::from_millis(u64::from(ms)));
                now_ms + u64::from(ms)
            }
        };
        let poll = PollRecord {
            poll_id,
            request: start.request,
            by: who.index,
            question: start.question,
            options: start.options,
            multiple: start.multiple,
            closes_at_ms,
            live: start.live,
            closed: false,
            answers: BTreeMap::new(),
            user: who.user.to_owned(),
            client: who.client.to_owned(),
        };
        let then = vec![Deliver::All(Message::from(poll.started()))];
        let writes = write(kind::POLL, key(poll_id), &poll).into_iter().collect();
        self.polls.insert(poll_id, poll);
        Outcome { writes, then, ..Outcome::default() }
    }

    /// `PollAnswer`: one answer per user; a repeated attempt id is a no-op, a new one replaces.
    pub fn poll_answer(&mut self, who: Who<'_>, poll_id: u64, attempt_id: u64, choices: Vec<u8>) -> Outcome {
        let kind = Kind::PollAnswer;
        let Some(poll) = self.polls.get_mut(&poll_id) else {
            return Outcome::refuse(who.index, kind, attempt_id, ErrorCode::NotFound, "no such poll");
        };
        if poll.closed {
            return Outcome::refuse(who.index, kind, attempt_id, ErrorCode::PollClosed, "the poll is closed");
        }
        let mut seen = [false; 256];
        let valid = (poll.multiple || choices.len() == 1)
            && !choices.is_empty()
            && choices.iter().all(|c| {
                let fresh = !seen[usize::from(*c)];
                seen[usize::from(*c)] = true;
                fresh && usize::from(*c) < poll.options.len()
            });
        if !valid {
            let why = "choices must be distinct option indices (exactly one unless multiple)";
            return Outcome::refuse(who.index, kind, attempt_id, ErrorCode::InvalidField, why);
        }
        let answered = Message::from(PollAnswered { poll_id, attempt_id });
        if poll.answers.get(who.user).is_some_and(|(attempt, _)| *attempt == attempt_id) {
            return Outcome { reply: vec![Deliver::To(who.index, answered)], ..Outcome::default() };
        }
        poll.answers.insert(who.user.to_owned(), (attempt_id, choices));
        if poll.live && !self.dirty.contains(&poll_id) {
            self.dirty.push(poll_id);
        }
        let writes = write(kind::POLL, key(poll_id), &*poll).into_iter().collect();
        Outcome { writes, then: vec![Deliver::To(who.index, answered)], ..Outcome::default() }
    }

    /// `PollClose` (teacher).
    pub fn poll_close(&mut self, who: Who<'_>, poll_id: u64) -> Outcome {
        let kind = Kind::PollClose;
        if who.role != Role::Teacher {
            return Outcome::refuse(
                who.index,
                kind,
                poll_id,
                ErrorCode::Forbidden,
                "only a teacher closes polls",
            );
        }
        match self.polls.get(&poll_id) {
            None => Outcome::refuse(who.index, kind, poll_id, ErrorCode::NotFound, "no such poll"),
            Some(p) if p.closed => {
                Outcome::refuse(who.index, kind, poll_id, ErrorCode::PollClosed, "already closed")
            }
            Some(_) => self.close(poll_id),
        }
    }

    fn close(&mut self, poll_id: u64) -> Outcome {
        self.deadlines.remove(&poll_id);
        self.dirty.retain(|p| *p != poll_id);
        let Some(poll) = self.polls.get_mut(&poll_id) else { return Outcome::default() };
        poll.closed = true;
        let writes = write(kind::POLL, key(poll_id), &*poll).into_iter().collect();
        Outcome { writes, then: vec![Deliver::All(Message::from(poll.results()))], ..Outcome::default() }
    }

    /// The next poll timer or live-results broadcast, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let live = self.last_live.filter(|_| !self.dirty.is_empty()).map(|t| t + LIVE_EVERY);
        self.deadlines.values().copied().chain(live).min()
    }

    /// A poll's deadline came (one node alone: its own timer; cluster mode: a proposal in the
    /// room log): closed if still open, else nothing (a second proposal is a no-op).
    pub fn poll_deadline(&mut self, poll_id: u64) -> Outcome {
        match self.polls.get(&poll_id) {
            Some(p) if !p.closed => self.close(poll_id),
            _ => Outcome::default(),
        }
    }

    /// The polls whose timer ran out by `now`, taken off the timers: the caller closes them
    /// ([`Class::poll_deadline`]) or proposes their close to the room log.
    pub fn due(&mut self, now: Instant) -> Vec<u64> {
        let due: Vec<u64> = self.deadlines.iter().filter(|(_, t)| **t <= now).map(|(p, _)| *p).collect();
        for p in &due {
            self.deadlines.remove(p);
        }
        due
    }

    /// Sets a poll's timer again (a proposal of its close that did not reach the room log).
    pub fn rearm(&mut self, poll_id: u64, at: Instant) {
        if self.polls.get(&poll_id).is_some_and(|p| !p.closed) {
            self.deadlines.insert(poll_id, at);
        }
    }

    /// At most once per [`LIVE_EVERY`], broadcasts the counts of live polls that changed.
    pub fn tick(&mut self, now: Instant) -> Option<Outcome> {
        if self.dirty.is_empty() || self.last_live.is_some_and(|t| now.duration_since(t) < LIVE_EVERY) {
            return None;
        }
        self.last_live = Some(now);
        let then = std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|p| self.polls.get(&p))
            .map(|p| Deliver::All(Message::from(p.results())))
            .collect();
        Some(Outcome { then, ..Outcome::default() })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use easel_proto::message::PollStart;

    use super::*;

    fn who(index: u16, user: &str, role: Role) -> Who<'_> {
        Who { index, user, client: "dev", name: user, role, chat_muted: false }
    }

    fn faults(o: &Outcome) -> Vec<u16> {
        o.reply
            .iter()
            .filter_map(|d| match d {
                Deliver::To(_, Message::Fault(f)) => Some(f.code),
                _ => None,
            })
            .collect()
    }

    fn results(o: &Outcome) -> Option<PollResults> {
        o.then.iter().find_map(|d| match d {
            Deliver::All(Message::PollResults(r)) => Some(r.clone()),
            _ => None,
        })
    }

    /// One node alone: admitted, then posted.
    fn chat_send(
        class: &mut Class,
        who: Who<'_>,
        id: u64,
        text: String,
        now: Instant,
        now_ms: u64,
    ) -> Outcome {
        match class.chat_admit(who, id, now) {
            Ok(()) => class.chat_post(who, id, text, now_ms),
            Err(refused) => refused,
        }
    }

    fn poll(class: &mut Class, now: Instant, duration_ms: u32, live: bool) -> u64 {
        let start = PollStart {
            request: 9,
            question: "2+2?".into(),
            options: vec!["3".into(), "4".into(), "5".into()],
            multiple: false,
            duration_ms,
            live,
        };
        let o = class.poll_start(who(0, "teach", Role::Teacher), start, now, 1_000);
        match &o.then[..] {
            [Deliver::All(Message::PollStarted(p))] => p.poll_id,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_repeated_attempt_counts_once_and_a_new_one_replaces() {
        let t0 = Instant::now();
        let mut class = Class::load(Vec::new(), 30, t0, 0);
        let id = poll(&mut class, t0, 0, false);
        let ada = who(1, "ada", Role::Student);
        assert_eq!(class.poll_answer(ada, id, 7, vec![0]).writes.len(), 1);
        let again = class.poll_answer(ada, id, 7, vec![2]);
        assert!(again.writes.is_empty(), "same attempt: no-op");
        assert!(matches!(&again.reply[..], [Deliver::To(1, Message::PollAnswered(_))]));
        class.poll_answer(who(2, "bob", Role::Student), id, 1, vec![1]);
        class.poll_answer(ada, id, 8, vec![1]);
        let closed = class.poll_close(who(0, "teach", Role::Teacher), id);
        let r = results(&closed).expect("results");
        assert_eq!((r.counts, r.respondents, r.closed), (vec![0, 2, 0], 2, true));
        let late = class.poll_answer(ada, id, 9, vec![0]);
        assert_eq!(faults(&late), [ErrorCode::PollClosed.to_u16()]);
    }

    #[test]
    fn answers_are_validated_and_roles_enforced() {
        let t0 = Instant::now();
        let mut class = Class::load(Vec::new(), 30, t0, 0);
        let id = poll(&mut class, t0, 0, false);
        let ada = who(1, "ada", Role::Student);
        for bad in [vec![], vec![3], vec![0, 1]] {
            assert_eq!(faults(&class.poll_answer(ada, id, 1, bad)), [ErrorCode::InvalidField.to_u16()]);
        }
        assert_eq!(faults(&class.poll_answer(ada, 99, 1, vec![0])), [ErrorCode::NotFound.to_u16()]);
        assert_eq!(faults(&class.poll_close(ada, id)), [ErrorCode::Forbidden.to_u16()]);
        assert_eq!(faults(&class.chat_delete(ada, 1)), [ErrorCode::Forbidden.to_u16()]);
    }

    #[test]
    fn timers_close_polls_and_live_counts_are_throttled() {
        let t0 = Instant::now();
        let mut class = Class::load(Vec::new(), 30, t0, 0);
        let timed = poll(&mut class, t0, 5_000, false);
        let live = poll(&mut class, t0, 0, true);
        assert_eq!(class.next_deadline(), Some(t0 + Duration::from_secs(5)));
        class.poll_answer(who(1, "ada", Role::Student), live, 1, vec![1]);
        assert!(class.tick(t0).is_some(), "live counts go out");
        class.poll_answer(who(2, "bob", Role::Student), live, 1, vec![1]);
        assert!(class.tick(t0 + Duration::from_millis(100)).is_none(), "at most once per LIVE_EVERY");
        assert_eq!(class.next_deadline(), Some(t0 + LIVE_EVERY), "the changed counts are due then");
        let live_counts: Vec<PollResults> = class.tick(t0 + LIVE_EVERY).iter().filter_map(results).collect();
        assert!(live_counts.iter().any(|r| r.poll_id == live && r.counts == [0, 2, 0]), "{live_counts:?}");
        assert!(class.due(t0 + Duration::from_millis(4_999)).is_empty());
        assert_eq!(class.due(t0 + Duration::from_secs(5)), [timed]);
        let closed = results(&class.poll_deadline(timed)).expect("closed at its deadline");
        assert!(closed.poll_id == timed && closed.closed, "{closed:?}");
        assert!(class.poll_deadline(timed).then.is_empty(), "a second deadline is a no-op");
        assert!(class.tick(t0 + Duration::from_secs(5)).is_none(), "unchanged counts are not sent again");
        assert_eq!(class.next_deadline(), None);
    }

    #[test]
    fn chat_mute_rate_history_and_delete() {
        let t0 = Instant::now();
        let mut class = Class::load(Vec::new(), 3, t0, 0);
        let ada = who(1, "ada", Role::Student);
        for i in 0..3 {
            assert!(faults(&chat_send(&mut class, ada, i, format!("hi {i}"), t0, 10)).is_empty());
        }
        assert_eq!(faults(&chat_send(&mut class, ada, 3, "too fast".into(), t0, 10)), [300]);
        let muted = Who { chat_muted: true, ..ada };
        assert_eq!(faults(&chat_send(&mut class, muted, 4, "x".into(), t0, 10)), [207]);
        let deleted = class.chat_delete(who(0, "t", Role::Teacher), 2);
        assert!(matches!(&deleted.then[..], [Deliver::All(Message::ChatDeleted(d))] if d.id == 2));
        let page = class.chat_history(ada, 0, 1);
        let Deliver::To(_, Message::ChatPage(page)) = &page.reply[0] else { panic!() };
        assert_eq!(page.messages.iter().map(|m| m.id).collect::<Vec<_>>(), [3]);
        assert!(page.more);
        let older = class.chat_history(ada, 3, 10);
        let Deliver::To(_, Message::ChatPage(older)) = &older.reply[0] else { panic!() };
        assert_eq!(older.messages.iter().map(|m| m.id).collect::<Vec<_>>(), [1], "deleted ones are gone");
        assert!(!older.more);
    }

    #[test]
    fn state_survives_a_reload_from_its_writes() {
        let t0 = Instant::now();
        let mut class = Class::load(Vec::new(), 30, t0, 0);
        let mut stored: BTreeMap<(String, String), Vec<u8>> = BTreeMap::new();
        let mut keep = |writes: Vec<Write>| {
            for w in writes {
                stored.insert((w.kind.to_owned(), w.key), w.value);
            }
        };
        keep(chat_send(&mut class, who(1, "ada", Role::Student), 5, "hello".into(), t0, 10).writes);
        keep(class.arrive("a@1/1", "ada", "Ada", 1_000).into_iter().collect());
        keep(class.set_flags("bob", |f| f.read_only = true).into_iter().collect());
        let records = stored.into_iter().map(|((k, key), v)| (k, key, v)).collect();
        let reloaded = Class::load(records, 30, t0, 5_000);
        assert_eq!(reloaded.page(0, 10).messages.len(), 1);
        assert!(reloaded.flags("bob").read_only);
        let ada = reloaded.attendance().next().expect("attendance");
        assert_eq!(ada.intervals, [(1_000, Some(1_000))], "an interval a stopped server left open is closed");
    }

    #[test]
    fn attendance_counts_a_user_once_across_devices() {
        let mut class = Class::default();
        assert!(class.arrive("a@1/1", "ada", "Ada", 1_000).is_some());
        assert!(class.arrive("a@1/2", "ada", "Ada", 2_000).is_none(), "second device: same interval");
        assert!(class.depart("a@1/1", 3_000).is_none());
        assert!(class.depart("a@1/2", 4_000).is_some());
        class.arrive("a@1/1", "ada", "Ada", 10_000);
        let ada = class.attendance().next().expect("ada");
        assert_eq!(ada.intervals, [(1_000, Some(4_000)), (10_000, None)]);
        assert_eq!(ada.total_ms(12_000), 5_000);
    }

    #[test]
    fn a_membership_arrives_and_departs_once_whoever_proposes_it() {
        let mut class = Class::default();
        assert!(class.arrive("a@1/1", "ada", "Ada", 1_000).is_some());
        assert!(class.arrive("b@1/4", "ada", "Ada", 2_000).is_none(), "her second device");
        assert!(class.arrive("a@1/1", "ada", "Ada", 2_500).is_none(), "a resend of the first");
        // Her first device's node died: two nodes propose its departure.
        assert!(class.depart("a@1/1", 3_000).is_none(), "still present on her second");
        assert!(class.depart("a@1/1", 3_100).is_none(), "the second proposal changes nothing");
        assert!(class.depart("c@1/9", 3_200).is_none(), "a membership never opened changes nothing");
        assert!(class.depart("b@1/4", 4_000).is_some());
        let ada = class.attendance().next().expect("ada");
        assert_eq!(ada.intervals, [(1_000, Some(4_000))]);
        // A snapshot keeps the memberships open at the time.
        class.arrive("b@1/5", "ada", "Ada", 5_000);
        let mut copy = Class::restore(class.export(), 30, Instant::now(), 6_000);
        assert!(copy.depart("b@1/5", 7_000).is_some(), "the open one ends in the copy");
        let ada = copy.attendance().next().expect("ada");
        assert_eq!(ada.intervals.last(), Some(&(5_000, Some(7_000))));
    }
}
