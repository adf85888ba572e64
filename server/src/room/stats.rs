//! One room's own numbers, for `GET /rooms/{id}/stats` (the seeds follow each live class):
//! joins and how many succeeded, resumes, peak participants, SFU requests and failures, and
//! ingest-to-send latency by kind. Kept in the room's actor, not as Prometheus labels: a label
//! per room would make a series per class ever held.

use std::time::Duration;

use crate::telemetry::{INGEST_KINDS, LATENCY_BUCKETS};

/// What a client sent, as the latency histograms tell them apart (the `kind` label of
/// `easel_ingest_to_send_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingest {
    /// A cursor datagram, until its batch is handed to the transport.
    Cursor,
    /// A board update, until it is acked and fanned out (after the fsync).
    Edit,
    /// Chat: sent, deleted or history asked for.
    Chat,
    /// Polls: started, answered, closed.
    Poll,
    /// Hands raised or lowered.
    Hand,
}

impl Ingest {
    /// Every kind, in [`INGEST_KINDS`] order.
    pub const ALL: [Self; 5] = [Self::Cursor, Self::Edit, Self::Chat, Self::Poll, Self::Hand];

    /// The label value.
    pub fn label(self) -> &'static str {
        INGEST_KINDS[self as usize]
    }

    /// The kind of a classroom request, if it is one the histograms follow.
    pub fn of_class(kind: easel_proto::message::Kind) -> Option<Self> {
        use easel_proto::message::Kind as K;
        match kind {
            K::ChatSend | K::ChatDelete | K::ChatHistory => Some(Self::Chat),
            K::PollStart | K::PollAnswer | K::PollClose => Some(Self::Poll),
            K::HandRaise | K::HandLower => Some(Self::Hand),
            _ => None,
        }
    }
}

/// A fixed-bucket latency histogram with the exporter's bounds ([`LATENCY_BUCKETS`]), so a
/// room's p95 reads like the fleet's: a quantile is the upper bound of its bucket.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    /// Samples per bucket; the last counts those above every bound.
    counts: [u64; LATENCY_BUCKETS.len() + 1],
}

impl Latency {
    /// Counts one sample.
    pub fn record(&mut self, took: Duration) {
        let secs = took.as_secs_f64();
        let bucket = LATENCY_BUCKETS.iter().position(|b| secs <= *b).unwrap_or(LATENCY_BUCKETS.len());
        self.counts[bucket] += 1;
    }

    /// Samples counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The bound (seconds) at or under which fraction `q` of the samples fell; `None` with no
    /// samples, infinity when they fell above every bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        Some(f64::INFINITY)
    }
}

/// A room's counters since it was loaded.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Joins the room answered.
    pub joins: u64,
    /// Joins it let in (fresh or resumed).
    pub joins_ok: u64,
    /// Joins that re-attached a member whose connection was lost (reconnects).
    pub resumes: u64,
    /// Most members linked at once.
    pub peak_participants: u64,
    /// SFU requests its members made.
    pub sfu_requests: u64,
    /// Those that failed on the SFU's side.
    pub sfu_errors: u64,
    /// Ingest-to-send latency, by [`Ingest`] kind.
    pub latency: [Latency; 5],
}

impl Stats {
    /// Counts one sample of `kind`.
    pub fn record(&mut self, kind: Ingest, took: Duration) {
        self.latency[kind as usize].record(took);
    }

    /// Counts a join's answer.
    pub fn joined(&mut self, ok: bool, resumed: bool, linked: usize) {
        self.joins += 1;
        self.joins_ok += u64::from(ok);
        self.resumes += u64::from(ok && resumed);
        self.peak_participants = self.peak_participants.max(linked as u64);
    }

    /// The room's numbers as JSON: rates as fractions (`null` before their first sample),
    /// latencies in seconds.
    pub fn to_json(&self, room: &str) -> serde_json::Value {
        let rate = |part: u64, of: u64| (of > 0).then(|| part as f64 / of as f64);
        let p95 = |l: &Latency| l.quantile(0.95).map(|s| if s.is_finite() { s } else { f64::MAX });
        let mut by_kind = serde_json::Map::new();
        for kind in Ingest::ALL {
            let l = &self.latency[kind as usize];
            by_kind.insert(
                kind.label().to_owned(),
                serde_json::json!({ "count": l.count(), "p95_seconds": p95(l) }),
            );
        }
        let mut all = Latency::default();
        for l in &self.latency[1..] {
            for (sum, n) in all.counts.iter_mut().zip(l.counts) {
                *sum += n;
            }
        }
        serde_json::json!({
            "room": room,
            "joins": self.joins,
            "joins_ok": self.joins_ok,
            "connection_success_rate": rate(self.joins_ok, self.joins),
            "reconnects": self.resumes,
            "peak_participants": self.peak_participants,
            "sfu_requests": self.sfu_requests,
            "sfu_errors": self.sfu_errors,
            "sfu_error_rate": rate(self.sfu_errors, self.sfu_requests),
            "p95_delivery_seconds": p95(&all),
            "latency": by_kind,
        })
    }
}

impl super::Room {
    /// The user behind participant `member`, for logs that follow one user's trouble.
    pub(super) fn user_of(&self, member: u16) -> Option<&str> {
        self.members.get(&member).map(|m| m.info.user.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_p95_is_the_bound_of_the_bucket_holding_the_95th_sample() {
        let mut l = Latency::default();
        assert_eq!(l.quantile(0.95), None);
        for _ in 0..95 {
            l.record(Duration::from_micros(300));
        }
        for _ in 0..5 {
            l.record(Duration::from_millis(40));
        }
        assert_eq!(l.quantile(0.95), Some(0.0005));
        l.record(Duration::from_millis(40));
        assert_eq!(l.quantile(0.95), Some(0.05), "96 of 101 is past the first bucket");
        l.record(Duration::from_secs(60));
        assert_eq!(l.quantile(1.0), Some(f64::INFINITY), "above every bound");
    }

    #[test]
    fn rates_are_fractions_and_absent_before_a_sample() {
        let mut s = Stats::default();
        let json = s.to_json("s/m/a");
        assert!(json["connection_success_rate"].is_null() && json["sfu_error_rate"].is_null());
        s.joined(true, false, 1);
        s.joined(true, true, 2);
        s.joined(false, false, 2);
        s.joined(true, false, 1);
        (s.sfu_requests, s.sfu_errors) = (10, 1);
        s.record(Ingest::Chat, Duration::from_millis(3));
        s.record(Ingest::Cursor, Duration::from_secs(1));
        let json = s.to_json("s/m/a");
        assert_eq!(json["connection_success_rate"], 0.75);
        assert_eq!(json["reconnects"], 1);
        assert_eq!(json["peak_participants"], 2);
        assert_eq!(json["sfu_error_rate"], 0.1);
        assert_eq!(json["latency"]["chat"]["p95_seconds"], 0.005);
        assert_eq!(json["p95_delivery_seconds"], 0.005, "delivery is the reliable kinds, not cursors");
    }
}
