//! Group commit of a room's classroom events (cluster mode): while one publish of the room
//! is waiting for its PubAck, the events that follow wait in a [`Batcher`] and go out
//! together as ONE stream message when it is back, so a burst (2,000 poll answers) costs a
//! fsync per batch, not per event. The first event never waits. Every event of a batch is
//! acked or refused with it, and every node applies a batch's events in order at the
//! message's stream time.
//!
//! On the subject a batch is a message with `Easel-Kind: class-batch` ([`BATCH`]) whose
//! payload is the events, each encoded as [`class::encode`] does ([`encode`]). A lone
//! event keeps its own `Nats-Msg-Id` ([`class::msg_id`]), so a resend of it is still stored
//! once by the stream; a batch of several is named by a digest of its payload (the same
//! batch sent again is stored once), and a resend inside another batch is caught when it is
//! applied (`Room::handle_class_event`), identically at every replica.

use std::collections::VecDeque;

use sha2::{Digest as _, Sha256};

use super::class;
use super::log::subject;
use crate::room::ClassEvent;

/// The [`class::KIND`] of a batch of classroom events.
pub const BATCH: &str = "class-batch";
/// Most events in one message.
pub const MAX_EVENTS: usize = 256;
/// Most encoded bytes of events in one message (NATS's default payload limit is 1 MiB).
pub const MAX_BYTES: usize = 512 * 1024;

/// One room's queue of events behind the publish in flight (sans IO).
#[derive(Debug)]
pub struct Batcher<T> {
    /// Waiting events and their encoded sizes, in order.
    queue: VecDeque<(T, usize)>,
    in_flight: bool,
    max_events: usize,
    max_bytes: usize,
}

impl<T> Default for Batcher<T> {
    fn default() -> Self {
        Self::new(MAX_EVENTS, MAX_BYTES)
    }
}

impl<T> Batcher<T> {
    /// A batcher with these bounds (at least one event per batch whatever its size).
    pub fn new(max_events: usize, max_bytes: usize) -> Self {
        Self { queue: VecDeque::new(), in_flight: false, max_events: max_events.max(1), max_bytes }
    }

    /// An event of `bytes` encoded: the batch to publish now (just it, when nothing is in
    /// flight), or `None` when it waits for the publish in flight.
    pub fn push(&mut self, event: T, bytes: usize) -> Option<Vec<T>> {
        self.queue.push_back((event, bytes));
        if self.in_flight { None } else { self.next() }
    }

    /// The publish in flight was acked or refused: the next batch to publish, if any waits.
    pub fn done(&mut self) -> Option<Vec<T>> {
        self.in_flight = false;
        self.next()
    }

    /// Whether events wait or a publish is in flight.
    pub fn is_idle(&self) -> bool {
        !self.in_flight && self.queue.is_empty()
    }

    fn next(&mut self) -> Option<Vec<T>> {
        let mut batch = Vec::new();
        let mut size = 0;
        while let Some((_, bytes)) = self.queue.front() {
            if !batch.is_empty() && (batch.len() == self.max_events || size + bytes > self.max_bytes) {
                break;
            }
            size += bytes;
            batch.extend(self.queue.pop_front().map(|(event, _)| event));
        }
        self.in_flight = !batch.is_empty();
        self.in_flight.then_some(batch)
    }
}

/// A batch's payload from its events' encodings.
pub fn encode(events: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    rkyv::to_bytes::<rkyv::rancor::Error>(&events.to_vec()).map(|b| b.to_vec()).map_err(|e| e.to_string())
}

/// Decodes and checks a batch published by `origin`: at most [`MAX_EVENTS`], each a valid
/// event of that node ([`class::decode`]). One bad event refuses the whole batch: nothing
/// of it is applied.
pub fn decode(bytes: &[u8], origin: &str) -> Result<Vec<ClassEvent>, &'static str> {
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    let events = rkyv::from_bytes::<Vec<Vec<u8>>, rkyv::rancor::Error>(&aligned)
        .map_err(|_| "not a batch of classroom events")?;
    if events.is_empty() || events.len() > MAX_EVENTS {
        return Err("a batch of no events, or of too many");
    }
    events.iter().map(|e| class::decode(e, origin)).collect()
}

/// The id the stream deduplicates a batch by: a lone event's own (if it has one), else the
/// digest of the payload.
pub fn msg_id(room: &str, events: &[ClassEvent], payload: &[u8]) -> Option<String> {
    match events {
        [event] => class::msg_id(room, event),
        _ => Some(format!("{}:batch:{:x}", subject(room), Sha256::digest(payload))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use easel_proto::Message;
    use easel_proto::message::{PollAnswer, Role};

    use super::*;
    use crate::room::{Act, Actor, Key};

    #[test]
    fn the_first_event_goes_at_once_and_the_rest_wait_in_order() {
        let mut b = Batcher::new(256, 1 << 20);
        assert!(b.is_idle());
        assert_eq!(b.push(1, 10), Some(vec![1]), "nothing in flight: no wait");
        assert_eq!(b.push(2, 10), None);
        assert_eq!(b.push(3, 10), None);
        assert!(!b.is_idle());
        assert_eq!(b.done(), Some(vec![2, 3]), "one message for everything that waited");
        assert_eq!(b.push(4, 10), None, "the batch is in flight");
        assert_eq!(b.done(), Some(vec![4]));
        assert_eq!(b.done(), None);
        assert!(b.is_idle());
        assert_eq!(b.push(5, 10), Some(vec![5]), "idle again: no wait");
    }

    #[test]
    fn batches_hold_their_bounds() {
        let mut b = Batcher::new(3, 100);
        assert_eq!(b.push(0, 1), Some(vec![0]));
        for i in 1..=7 {
            assert_eq!(b.push(i, 1), None);
        }
        assert_eq!(b.done(), Some(vec![1, 2, 3]), "at most 3 events");
        assert_eq!(b.done(), Some(vec![4, 5, 6]));
        assert_eq!(b.done(), Some(vec![7]));
        assert_eq!(b.done(), None);
        let mut b = Batcher::new(256, 100);
        assert_eq!(b.push(0, 1), Some(vec![0]));
        for (i, bytes) in [(1, 60), (2, 40), (3, 1), (4, 500)] {
            assert_eq!(b.push(i, bytes), None);
        }
        assert_eq!(b.done(), Some(vec![1, 2]), "at most 100 bytes");
        assert_eq!(b.done(), Some(vec![3]), "the oversized one goes alone, after");
        assert_eq!(b.done(), Some(vec![4]), "an event larger than the bound still goes");
    }

    fn answer(user: &str, attempt_id: u64) -> ClassEvent {
        let by = Actor {
            key: Key { origin: Arc::from("a@1"), index: 2 },
            user: user.into(),
            client: "dev".into(),
            name: "Ada".into(),
            role: Role::Student,
        };
        let act = Act::Request(Message::from(PollAnswer { poll_id: 1, attempt_id, choices: vec![0] }));
        ClassEvent { by, act }
    }

    #[test]
    fn a_batch_round_trips_and_one_bad_event_refuses_it() {
        let events = [answer("ada", 1), answer("bob", 2)];
        let encoded: Vec<Vec<u8>> = events.iter().map(|e| class::encode(e).expect("encode")).collect();
        let payload = encode(&encoded).expect("encode");
        assert_eq!(decode(&payload, "a@1"), Ok(events.to_vec()));
        assert!(decode(&payload, "b@1").is_err(), "another node's actors");
        assert!(decode(b"garbage", "a@1").is_err());
        assert!(decode(&payload[..payload.len() - 2], "a@1").is_err(), "truncated");
        let mut bad = encoded.clone();
        bad.push(b"not an event".to_vec());
        assert!(decode(&encode(&bad).expect("encode"), "a@1").is_err());
        assert!(decode(&encode(&[]).expect("encode"), "a@1").is_err(), "empty");
        let many = vec![encoded[0].clone(); MAX_EVENTS + 1];
        assert!(decode(&encode(&many).expect("encode"), "a@1").is_err(), "too many");
    }

    #[test]
    fn a_lone_event_keeps_its_id_and_a_batch_is_named_by_its_contents() {
        let one = [answer("ada", 1)];
        assert_eq!(msg_id("r", &one, b"x"), class::msg_id("r", &one[0]));
        let two = [answer("ada", 1), answer("bob", 2)];
        assert_eq!(msg_id("r", &two, b"x"), msg_id("r", &two, b"x"));
        assert_ne!(msg_id("r", &two, b"x"), msg_id("r", &two, b"y"));
        assert_ne!(msg_id("r", &two, b"x"), msg_id("s", &two, b"x"));
    }
}
