//! The byte-stream impairment engine: one direction of a simulated TCP connection.
//!
//! A user-space TCP proxy terminates TCP on both sides, so it cannot drop or reorder bytes: the
//! application above TCP only ever sees them late. A [`StreamLink`] therefore turns each
//! impairment of a [`LinkConfig`] into the delay TCP would add, segment by segment, and always
//! delivers every byte, in order. Like [`Link`](crate::link::Link) it is sans-IO and seeded.
//!
//! What is modelled, per segment of at most [`StreamConfig::mss`] bytes:
//!
//! - **rate**: segments are serialised at the bottleneck rate; the queue is the sender's
//!   buffer, so instead of tail drop the proxy stops reading once
//!   [`StreamConfig::buffer_bytes`] are held (TCP's flow control pushes back on the sender).
//! - **delay and jitter**: as for datagrams, but always FIFO.
//! - **loss** becomes a retransmission: a lost segment arrives one RTO later, a segment lost
//!   again waits twice as long (exponential backoff), up to
//!   [`StreamConfig::max_retransmits`] tries, after which it is delivered anyway. Every later
//!   byte waits behind it: that head-of-line blocking is what a WebSocket user sees.
//! - **reordering** becomes head-of-line blocking too: the held-back segment delays the ones
//!   behind it, since TCP hands bytes over only in order.
//!
//! What is not modelled: fast retransmit, SACK and tail loss probes (a real TCP with enough
//! data in flight, or Linux's TLP, often repairs a loss in one or two RTTs rather than an RTO,
//! so this model is pessimistic for bulk transfers and about right for a thin stream of small
//! messages); congestion control (no window reduction or slow start after a loss); loss of
//! ACKs on the reverse path; retransmissions taking bottleneck capacity again; Nagle and
//! delayed ACKs; duplication (TCP discards duplicates, so it has no visible effect). Segment
//! boundaries are the proxy's reads split at `mss`, not the real sender's segments.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::SeedableRng as _;
use rand::rngs::StdRng;

use crate::link::{LinkConfig, LossState, chance, sample_delay};

/// How one direction of a TCP connection is impaired.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// The path's impairments; `duplicate`, `jitter_reorders`, `limit_packets` and the rate
    /// queue limits do not apply to a stream.
    pub link: LinkConfig,
    /// Delay before a lost segment is sent again (doubled for each further loss).
    pub rto: Duration,
    /// Largest segment, in bytes: loss is drawn once per segment.
    pub mss: usize,
    /// Most bytes held before the proxy stops reading from the sender.
    pub buffer_bytes: usize,
    /// Losses of one segment after which it is delivered regardless.
    pub max_retransmits: u32,
}

/// Default [`StreamConfig::mss`]: an Ethernet MSS with TCP timestamps.
pub const DEFAULT_MSS: usize = 1_448;
/// Default [`StreamConfig::buffer_bytes`]: the order of a Linux socket buffer.
pub const DEFAULT_BUFFER_BYTES: usize = 4 << 20;
/// Default minimum RTO: Linux's `TCP_RTO_MIN`.
pub const DEFAULT_RTO_MIN: Duration = Duration::from_millis(200);

impl StreamConfig {
    /// A stream over `link` whose round trip is `rtt`, with RTO `max(rto_min, 2 × rtt)`.
    pub fn new(link: LinkConfig, rtt: Duration, rto_min: Duration) -> Self {
        Self {
            link,
            rto: rto_min.max(rtt.saturating_mul(2)),
            mss: DEFAULT_MSS,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            max_retransmits: 6,
        }
    }
}

/// What a [`StreamLink`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct StreamStats {
    /// Bytes handed to [`StreamLink::send`].
    pub bytes_sent: u64,
    /// Bytes returned by [`StreamLink::poll_transmit`].
    pub bytes_delivered: u64,
    /// Segments the sent bytes were cut into.
    pub segments: u64,
    /// Simulated retransmissions (one per loss of a segment).
    pub retransmits: u64,
}

impl StreamStats {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Self) {
        self.bytes_sent += other.bytes_sent;
        self.bytes_delivered += other.bytes_delivered;
        self.segments += other.segments;
        self.retransmits += other.retransmits;
    }

    /// The counts added since `earlier`, a previous copy of these stats.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            bytes_sent: self.bytes_sent.saturating_sub(earlier.bytes_sent),
            bytes_delivered: self.bytes_delivered.saturating_sub(earlier.bytes_delivered),
            segments: self.segments.saturating_sub(earlier.segments),
            retransmits: self.retransmits.saturating_sub(earlier.retransmits),
        }
    }
}

/// One direction of a simulated TCP connection. See the [module docs](self).
#[derive(Debug)]
pub struct StreamLink {
    config: StreamConfig,
    rng: StdRng,
    loss: LossState,
    busy_until: Option<Instant>,
    /// Departure of the last segment; departures never decrease.
    floor: Option<Instant>,
    segments: VecDeque<(Instant, Bytes)>,
    buffered: usize,
    stats: StreamStats,
}

impl StreamLink {
    /// A stream impaired as `config` says, its randomness drawn from `seed`.
    pub fn new(config: StreamConfig, seed: u64) -> Self {
        Self {
            config,
            rng: StdRng::seed_from_u64(seed),
            loss: LossState::default(),
            busy_until: None,
            floor: None,
            segments: VecDeque::new(),
            buffered: 0,
            stats: StreamStats::default(),
        }
    }

    /// The configuration this stream runs.
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// Counters so far.
    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Bytes held, not yet delivered.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Whether the sender should be read from again: fewer than `buffer_bytes` are held.
    pub fn has_room(&self) -> bool {
        self.buffered < self.config.buffer_bytes
    }

    /// Whether every byte sent has been delivered.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Offers `data`, read from the sender at `now`.
    pub fn send(&mut self, now: Instant, data: Bytes) {
        self.stats.bytes_sent += data.len() as u64;
        let mss = self.config.mss.max(1);
        let mut offset = 0;
        while offset < data.len() {
            let segment = data.slice(offset..data.len().min(offset + mss));
            offset += segment.len();
            self.segment(now, segment);
        }
    }

    fn segment(&mut self, now: Instant, segment: Bytes) {
        let link = &self.config.link;
        let ready = match &link.rate {
            None => now,
            Some(rate) => {
                let start = self.busy_until.map_or(now, |busy| busy.max(now));
                let finish = start + rate.serialisation(segment.len());
                self.busy_until = Some(finish);
                finish
            }
        };
        let mut backoff = Duration::ZERO;
        let mut rto = self.config.rto;
        let mut tries = 0;
        while tries < self.config.max_retransmits && self.loss.lose(&link.loss, &mut self.rng) {
            backoff = backoff.saturating_add(rto);
            rto = rto.saturating_mul(2);
            tries += 1;
        }
        self.stats.retransmits += u64::from(tries);
        let mut at = ready + backoff + sample_delay(link, &mut self.rng);
        if chance(&mut self.rng, link.reorder.probability) {
            at += link.reorder.extra_delay;
        }
        if let Some(floor) = self.floor {
            at = at.max(floor);
        }
        self.floor = Some(at);
        self.stats.segments += 1;
        self.buffered += segment.len();
        self.segments.push_back((at, segment));
    }

    /// The next segment due at or before `now`, if any. Call until it returns `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        if self.segments.front()?.0 > now {
            return None;
        }
        let (_, segment) = self.segments.pop_front()?;
        self.buffered -= segment.len();
        self.stats.bytes_delivered += segment.len() as u64;
        Some(segment)
    }

    /// When the next segment is due, if any is held.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.segments.front().map(|(at, _)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{Loss, RateLimit};

    const MS: Duration = Duration::from_millis(1);

    /// Sends `chunks` chunks of `size` bytes, one every `gap`; returns every delivered
    /// segment's (first byte's offset in the stream, delivery time - send time of its chunk).
    fn run(stream: &mut StreamLink, chunks: usize, size: usize, gap: Duration) -> (Vec<u8>, Vec<Duration>) {
        let t0 = Instant::now();
        let mut bytes = Vec::new();
        let mut delays = Vec::new();
        let mut drain = |stream: &mut StreamLink, until: Instant| {
            while let Some(at) = stream.poll_timeout().filter(|at| *at <= until) {
                let segment = stream.poll_transmit(at).expect("due");
                let chunk = bytes.len() / size;
                delays.push(at - (t0 + gap * chunk as u32));
                bytes.extend_from_slice(&segment);
            }
        };
        for i in 0..chunks {
            let now = t0 + gap * i as u32;
            drain(stream, now);
            stream.send(now, Bytes::from(vec![i as u8; size]));
        }
        drain(stream, t0 + Duration::from_secs(3600));
        (bytes, delays)
    }

    fn expected(chunks: usize, size: usize) -> Vec<u8> {
        (0..chunks).flat_map(|i| vec![i as u8; size]).collect()
    }

    #[test]
    fn every_byte_arrives_in_order_despite_loss_jitter_and_reordering() {
        let link = LinkConfig {
            delay: 25 * MS,
            jitter: 10 * MS,
            jitter_reorders: true,
            loss: Loss::Bernoulli { p: 0.05 },
            reorder: crate::link::Reorder { probability: 0.05, extra_delay: 20 * MS },
            ..Default::default()
        };
        let mut stream = StreamLink::new(StreamConfig::new(link, 50 * MS, DEFAULT_RTO_MIN), 4);
        let (bytes, delays) = run(&mut stream, 2_000, 3_000, MS);
        assert_eq!(bytes, expected(2_000, 3_000));
        assert!(stream.stats().retransmits > 0);
        assert!(delays.iter().all(|d| *d >= 15 * MS));
        assert!(stream.is_empty() && stream.buffered_bytes() == 0);
    }

    #[test]
    fn a_lost_segment_waits_an_rto_and_blocks_the_ones_behind_it() {
        let link = LinkConfig { delay: 40 * MS, loss: Loss::Bernoulli { p: 0.02 }, ..Default::default() };
        // RTT 80 ms: the RTO is max(200 ms, 160 ms) = 200 ms.
        let config = StreamConfig::new(link, 80 * MS, DEFAULT_RTO_MIN);
        assert_eq!(config.rto, 200 * MS);
        let mut stream = StreamLink::new(config, 8);
        let (_, delays) = run(&mut stream, 20_000, 100, 10 * MS);
        // Each chunk is one segment: its delay is 40 ms, or 240 ms after one loss (440 after
        // two...), or less than that when it only waited behind a lost predecessor.
        let late = delays.iter().filter(|d| **d > 40 * MS).count();
        let retransmits = stream.stats().retransmits as usize;
        assert!(delays.iter().all(|d| *d >= 40 * MS));
        assert!(delays.iter().any(|d| *d == 240 * MS));
        // Head-of-line blocking: ≈ 20 chunks (200 ms / 10 ms) wait behind each loss.
        assert!(late > 10 * retransmits, "late {late}, retransmits {retransmits}");
        let frac = retransmits as f64 / 20_000.0;
        assert!((frac - 0.0204).abs() < 0.005, "retransmit fraction {frac}");
    }

    #[test]
    fn rate_limits_the_stream_without_dropping() {
        let rate = RateLimit { bytes_per_sec: 100_000, queue_bytes: None, queue_packets: None };
        let link = LinkConfig { rate: Some(rate), ..Default::default() };
        let mut stream = StreamLink::new(StreamConfig::new(link, Duration::ZERO, DEFAULT_RTO_MIN), 1);
        let t0 = Instant::now();
        stream.send(t0, Bytes::from(vec![7u8; 100_000]));
        assert_eq!(stream.buffered_bytes(), 100_000);
        assert!(!stream.has_room() || stream.config().buffer_bytes > 100_000);
        let mut last = t0;
        let mut total = 0;
        while let Some(at) = stream.poll_timeout() {
            total += stream.poll_transmit(at).expect("due").len();
            last = at;
        }
        assert_eq!(total, 100_000);
        assert_eq!(last - t0, Duration::from_secs(1), "100 kB at 100 kB/s takes one second");
    }

    #[test]
    fn same_seed_same_schedule() {
        let link = LinkConfig {
            delay: 10 * MS,
            jitter: 5 * MS,
            loss: Loss::Bernoulli { p: 0.1 },
            ..Default::default()
        };
        let config = StreamConfig::new(link, 20 * MS, DEFAULT_RTO_MIN);
        let schedule = |seed| run(&mut StreamLink::new(config.clone(), seed), 500, 2_000, MS).1;
        assert_eq!(schedule(1), schedule(1));
        assert_ne!(schedule(1), schedule(2));
    }
}
