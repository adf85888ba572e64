//! The datagram impairment engine: one direction of a simulated path.
//!
//! A [`Link`] is sans-IO: it owns no socket and never reads a clock. The caller hands it each
//! packet with the time it was sent ([`Link::send`]), asks when the next packet is due
//! ([`Link::poll_timeout`]) and collects packets whose time has come ([`Link::poll_transmit`]).
//! Given the same [`LinkConfig`], seed and sequence of calls it produces the same output, so a
//! test can run it under virtual time and a proxy can drive it with `Instant::now()`.
//!
//! Each packet goes through these stages, in this order:
//!
//! 1. **loss**: Bernoulli or Gilbert-Elliott ([`Loss`]); a lost packet is gone.
//! 2. **duplication**: with probability [`LinkConfig::duplicate`] a second copy follows the
//!    first through the remaining stages independently.
//! 3. **limit**: at most [`LinkConfig::limit_packets`] packets are held at once (netem's
//!    `limit`); more are dropped, which is what keeps a proxy's memory bounded.
//! 4. **rate** ([`RateLimit`]): a bottleneck that serialises packets at a byte rate behind a
//!    bounded FIFO queue; a packet that does not fit the queue is tail-dropped.
//! 5. **delay and jitter**: a fixed delay plus a uniform offset in `[-jitter, +jitter]`
//!    (never below zero). Unless [`LinkConfig::jitter_reorders`] is set, a packet never leaves
//!    before one sent earlier: its departure is held back to its predecessor's, as on a real
//!    FIFO path where jitter comes from queueing.
//! 6. **reordering** ([`Reorder`]): a chosen packet is held back by an extra delay and lets
//!    later packets overtake it; it does not hold them back, even in FIFO mode.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

/// How one direction of a path impairs packets. `Default` is a perfect wire, so a config
/// reads `LinkConfig { delay, loss, ..Default::default() }`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// Fixed one-way delay added to every packet.
    pub delay: Duration,
    /// Half-width of the uniform jitter added to `delay`: each packet's delay is drawn from
    /// `[delay - jitter, delay + jitter]`, clamped at zero.
    pub jitter: Duration,
    /// Whether jitter may reorder packets. `false` (the default, and what most real paths
    /// do) holds a packet back until every packet sent before it has left.
    pub jitter_reorders: bool,
    /// Random loss model.
    pub loss: Loss,
    /// Probability that a packet is duplicated.
    pub duplicate: f64,
    /// Explicit reordering: some packets are held back so that later ones overtake them.
    pub reorder: Reorder,
    /// Optional bottleneck rate with a bounded queue.
    pub rate: Option<RateLimit>,
    /// Most packets held by the link at once (queued or in flight); beyond it packets are
    /// dropped and counted in [`LinkStats::dropped_limit`]. Netem's default is 1,000.
    pub limit_packets: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            jitter_reorders: false,
            loss: Loss::None,
            duplicate: 0.0,
            reorder: Reorder::default(),
            rate: None,
            limit_packets: DEFAULT_LIMIT_PACKETS,
        }
    }
}

/// Default for [`LinkConfig::limit_packets`], netem's default queue limit.
pub const DEFAULT_LIMIT_PACKETS: usize = 1_000;

impl LinkConfig {
    /// A link that only delays: `delay` one way, nothing else.
    pub fn delay(delay: Duration) -> Self {
        Self { delay, ..Self::default() }
    }

    /// Checks that every probability lies in `[0, 1]` and every rate and limit is positive.
    ///
    /// [`Link::new`] accepts any config (a probability above 1 acts as 1, below 0 or NaN as 0);
    /// scenario files are validated with this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        probability("duplicate", self.duplicate)?;
        probability("reorder.p", self.reorder.probability)?;
        match self.loss {
            Loss::None => {}
            Loss::Bernoulli { p } => probability("loss.p", p)?,
            Loss::GilbertElliott(ge) => {
                probability("loss.p", ge.p)?;
                probability("loss.r", ge.r)?;
                probability("loss.loss_good", ge.loss_good)?;
                probability("loss.loss_bad", ge.loss_bad)?;
                if ge.p > 0.0 && ge.r == 0.0 {
                    return Err(ConfigError::Invalid {
                        field: "loss.r",
                        reason: "must be above 0 when p is (the bad state would never end)",
                    });
                }
            }
        }
        if let Some(rate) = self.rate {
            if rate.bytes_per_sec == 0 {
                return Err(ConfigError::Invalid { field: "rate", reason: "must be above 0" });
            }
            if rate.queue_bytes == Some(0) || rate.queue_packets == Some(0) {
                return Err(ConfigError::Invalid { field: "rate.queue", reason: "must be above 0" });
            }
        }
        if self.limit_packets == 0 {
            return Err(ConfigError::Invalid { field: "limit_packets", reason: "must be above 0" });
        }
        Ok(())
    }
}

fn probability(field: &'static str, value: f64) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&value) { Ok(()) } else { Err(ConfigError::Probability { field, value }) }
}

/// A [`LinkConfig`] that cannot be simulated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A probability outside `[0, 1]` (or NaN).
    #[error("{field} = {value} is not a probability (0 to 1)")]
    Probability {
        /// Which setting.
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// Any other out-of-range setting.
    #[error("{field} {reason}")]
    Invalid {
        /// Which setting.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Random packet loss.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum Loss {
    /// No random loss.
    #[default]
    None,
    /// Each packet is lost independently with probability `p`.
    Bernoulli {
        /// Loss probability.
        p: f64,
    },
    /// Bursty loss from a two-state Markov chain.
    GilbertElliott(GilbertElliott),
}

/// The Gilbert-Elliott model (netem's `gemodel p r 1-h 1-k`): a Markov chain with a good and a
/// bad state, each with its own loss probability. Per packet the chain first moves (good→bad
/// with `p`, bad→good with `r`), then the packet is lost with the new state's probability. It
/// starts in the good state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// Probability of moving from good to bad, per packet.
    pub p: f64,
    /// Probability of moving from bad to good, per packet.
    pub r: f64,
    /// Loss probability in the good state (`1 - k` in the literature; usually 0).
    pub loss_good: f64,
    /// Loss probability in the bad state (`1 - h`; 1 for the simple Gilbert model).
    pub loss_bad: f64,
}

impl GilbertElliott {
    /// Long-run fraction of time in the bad state, `p / (p + r)`.
    pub fn bad_fraction(&self) -> f64 {
        if self.p + self.r == 0.0 { 0.0 } else { self.p / (self.p + self.r) }
    }

    /// Long-run loss rate: the states' loss probabilities weighted by their stationary shares.
    pub fn mean_loss(&self) -> f64 {
        let bad = self.bad_fraction();
        bad * self.loss_bad + (1.0 - bad) * self.loss_good
    }

    /// Mean number of consecutive packets spent in the bad state, `1 / r`. With
    /// `loss_bad = 1` and `loss_good = 0` this is the mean loss burst length.
    pub fn mean_bad_run(&self) -> f64 {
        1.0 / self.r
    }
}

/// Explicit reordering: with `probability`, a packet is held back by `extra_delay`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reorder {
    /// Probability that a packet is held back.
    pub probability: f64,
    /// How much longer a held-back packet takes.
    pub extra_delay: Duration,
}

/// A bottleneck: packets are serialised at `bytes_per_sec` behind a FIFO queue, and a packet
/// that would make the queue exceed either limit is dropped (tail drop). The packet being
/// serialised counts as queued until it has left. No limit means an unbounded queue (still
/// capped by [`LinkConfig::limit_packets`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Bottleneck rate in bytes per second.
    pub bytes_per_sec: u64,
    /// Most bytes queued at once.
    pub queue_bytes: Option<usize>,
    /// Most packets queued at once.
    pub queue_packets: Option<usize>,
}

impl RateLimit {
    /// Time to put `len` bytes on the wire at this rate.
    pub fn serialisation(&self, len: usize) -> Duration {
        let nanos = (len as u128 * 1_000_000_000).div_ceil(u128::from(self.bytes_per_sec.max(1)));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// What a [`Link`] did with the packets it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LinkStats {
    /// Packets handed to [`Link::send`].
    pub sent: u64,
    /// Bytes handed to [`Link::send`].
    pub bytes_sent: u64,
    /// Packets returned by [`Link::poll_transmit`] (duplicates included).
    pub delivered: u64,
    /// Bytes returned by [`Link::poll_transmit`].
    pub bytes_delivered: u64,
    /// Extra copies made by duplication.
    pub duplicated: u64,
    /// Packets held back by explicit reordering.
    pub reordered: u64,
    /// Packets lost to the loss model.
    pub dropped_loss: u64,
    /// Packets tail-dropped by the rate limiter's full queue.
    pub dropped_queue: u64,
    /// Packets dropped because the link already held `limit_packets`.
    pub dropped_limit: u64,
}

impl LinkStats {
    /// Every packet dropped, whatever the cause.
    pub fn dropped(&self) -> u64 {
        self.dropped_loss + self.dropped_queue + self.dropped_limit
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Self) {
        self.sent += other.sent;
        self.bytes_sent += other.bytes_sent;
        self.delivered += other.delivered;
        self.bytes_delivered += other.bytes_delivered;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.dropped_loss += other.dropped_loss;
        self.dropped_queue += other.dropped_queue;
        self.dropped_limit += other.dropped_limit;
    }

    /// The counts added since `earlier`, a previous copy of these stats.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            sent: self.sent.saturating_sub(earlier.sent),
            bytes_sent: self.bytes_sent.saturating_sub(earlier.bytes_sent),
            delivered: self.delivered.saturating_sub(earlier.delivered),
            bytes_delivered: self.bytes_delivered.saturating_sub(earlier.bytes_delivered),
            duplicated: self.duplicated.saturating_sub(earlier.duplicated),
            reordered: self.reordered.saturating_sub(earlier.reordered),
            dropped_loss: self.dropped_loss.saturating_sub(earlier.dropped_loss),
            dropped_queue: self.dropped_queue.saturating_sub(earlier.dropped_queue),
            dropped_limit: self.dropped_limit.saturating_sub(earlier.dropped_limit),
        }
    }
}

/// One direction of a simulated path. See the [module docs](self) for the stages.
#[derive(Debug)]
pub struct Link {
    config: LinkConfig,
    rng: StdRng,
    loss: LossState,
    bottleneck: Bottleneck,
    /// Departure of the last packet that took part in FIFO ordering.
    fifo_floor: Option<Instant>,
    in_flight: BinaryHeap<Reverse<Scheduled>>,
    /// Breaks ties between equal departure times in sending order.
    next_seq: u64,
    stats: LinkStats,
}

#[derive(Debug)]
struct Scheduled {
    at: Instant,
    seq: u64,
    packet: Bytes,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl Link {
    /// A link impairing as `config` says, its randomness drawn from `seed`.
    pub fn new(config: LinkConfig, seed: u64) -> Self {
        Self {
            config,
            rng: StdRng::seed_from_u64(seed),
            loss: LossState::default(),
            bottleneck: Bottleneck::default(),
            fifo_floor: None,
            in_flight: BinaryHeap::new(),
            next_seq: 0,
            stats: LinkStats::default(),
        }
    }

    /// The configuration this link runs.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Counters so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Packets held (queued or in flight).
    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether the link holds no packet.
    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Offers `packet`, sent at `now`, to the link. It may be dropped, duplicated, queued and
    /// delayed; collect what comes out with [`poll_transmit`](Self::poll_transmit).
    pub fn send(&mut self, now: Instant, packet: Bytes) {
        self.stats.sent += 1;
        self.stats.bytes_sent += packet.len() as u64;
        if self.loss.lose(&self.config.loss, &mut self.rng) {
            self.stats.dropped_loss += 1;
            return;
        }
        if chance(&mut self.rng, self.config.duplicate) {
            self.stats.duplicated += 1;
            self.enqueue(now, packet.clone());
        }
        self.enqueue(now, packet);
    }

    fn enqueue(&mut self, now: Instant, packet: Bytes) {
        if self.in_flight.len() >= self.config.limit_packets {
            self.stats.dropped_limit += 1;
            return;
        }
        let ready = match &self.config.rate {
            None => now,
            Some(rate) => match self.bottleneck.admit(now, packet.len(), rate) {
                Some(finish) => finish,
                None => {
                    self.stats.dropped_queue += 1;
                    return;
                }
            },
        };
        let mut at = ready + sample_delay(&self.config, &mut self.rng);
        if chance(&mut self.rng, self.config.reorder.probability) {
            self.stats.reordered += 1;
            at += self.config.reorder.extra_delay;
        } else if !self.config.jitter_reorders {
            if let Some(floor) = self.fifo_floor {
                at = at.max(floor);
            }
            self.fifo_floor = Some(at);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.push(Reverse(Scheduled { at, seq, packet }));
    }

    /// The next packet due at or before `now`, if any. Call until it returns `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        if self.in_flight.peek()?.0.at > now {
            return None;
        }
        let Reverse(next) = self.in_flight.pop()?;
        self.stats.delivered += 1;
        self.stats.bytes_delivered += next.packet.len() as u64;
        Some(next.packet)
    }

    /// When the next packet is due, if the link holds any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.in_flight.peek().map(|next| next.0.at)
    }
}

/// Draws `true` with probability `p` (above 1: always; below 0 or NaN: never). Draws nothing
/// when `p` is 0 so that a disabled stage leaves the random sequence of the others unchanged.
pub(crate) fn chance(rng: &mut StdRng, p: f64) -> bool {
    p > 0.0 && rng.random::<f64>() < p
}

/// One packet's propagation delay: `delay` plus a uniform offset in `[-jitter, +jitter]`,
/// never below zero.
pub(crate) fn sample_delay(config: &LinkConfig, rng: &mut StdRng) -> Duration {
    if config.jitter.is_zero() {
        return config.delay;
    }
    let jitter = i128::try_from(config.jitter.as_nanos()).unwrap_or(i128::MAX);
    let offset = rng.random_range(-jitter..=jitter);
    let nanos = (config.delay.as_nanos() as i128 + offset).max(0);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The state of a loss model between packets.
#[derive(Debug, Default, Clone)]
pub(crate) struct LossState {
    bad: bool,
}

impl LossState {
    /// Whether the next packet is lost.
    pub(crate) fn lose(&mut self, loss: &Loss, rng: &mut StdRng) -> bool {
        match loss {
            Loss::None => false,
            Loss::Bernoulli { p } => chance(rng, *p),
            Loss::GilbertElliott(ge) => {
                let flip = if self.bad { ge.r } else { ge.p };
                if chance(rng, flip) {
                    self.bad = !self.bad;
                }
                chance(rng, if self.bad { ge.loss_bad } else { ge.loss_good })
            }
        }
    }
}

/// The rate limiter's queue, kept as the finish times of the packets still in it: the queue's
/// content at any instant follows from them, so nothing has to run between calls.
#[derive(Debug, Default)]
struct Bottleneck {
    busy_until: Option<Instant>,
    /// (time the packet has been fully serialised, its length), oldest first.
    queued: VecDeque<(Instant, usize)>,
    queued_bytes: usize,
}

impl Bottleneck {
    /// Admits a `len`-byte packet at `now` and returns when it has been serialised, or `None`
    /// when the queue is full.
    fn admit(&mut self, now: Instant, len: usize, rate: &RateLimit) -> Option<Instant> {
        while let Some(&(finish, bytes)) = self.queued.front() {
            if finish > now {
                break;
            }
            self.queued.pop_front();
            self.queued_bytes -= bytes;
        }
        let too_many = rate.queue_packets.is_some_and(|max| self.queued.len() >= max);
        let too_big = rate.queue_bytes.is_some_and(|max| self.queued_bytes + len > max);
        if too_many || too_big {
            return None;
        }
        let start = self.busy_until.map_or(now, |busy| busy.max(now));
        let finish = start + rate.serialisation(len);
        self.busy_until = Some(finish);
        self.queued.push_back((finish, len));
        self.queued_bytes += len;
        Some(finish)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds `n` numbered packets, one every `gap`, and collects (number, sent, received)
    /// for each delivered copy, polling at every event so delivery times are exact.
    fn run(link: &mut Link, n: u32, gap: Duration, size: usize) -> Vec<(u32, Instant, Instant)> {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let drain = |link: &mut Link, until: Instant, out: &mut Vec<(u32, Instant, Instant)>| {
            while let Some(at) = link.poll_timeout().filter(|at| *at <= until) {
                let packet = link.poll_transmit(at).expect("due");
                let id = u32::from_be_bytes(packet[..4].try_into().expect("id"));
                out.push((id, t0 + gap * id, at));
            }
        };
        for i in 0..n {
            let now = t0 + gap * i;
            drain(link, now, &mut out);
            let mut packet = vec![0u8; size.max(4)];
            packet[..4].copy_from_slice(&i.to_be_bytes());
            link.send(now, Bytes::from(packet));
        }
        drain(link, t0 + gap * n + Duration::from_secs(3600), &mut out);
        out
    }

    /// `k` standard deviations of a binomial proportion over `n` trials.
    fn binomial_tolerance(p: f64, n: f64, k: f64) -> f64 {
        k * (p * (1.0 - p) / n).sqrt()
    }

    #[test]
    fn bernoulli_loss_matches_its_probability() {
        let n = 100_000;
        let mut link = Link::new(LinkConfig { loss: Loss::Bernoulli { p: 0.02 }, ..Default::default() }, 7);
        let out = run(&mut link, n, MS, 16);
        let lost = 1.0 - out.len() as f64 / f64::from(n);
        eprintln!("bernoulli 2%: lost {:.3}% of {n}", lost * 100.0);
        // Five standard deviations (±0.22 percentage points): a correct model fails this
        // about once in 1.7 million seeds, a 10% relative error in the model fails it always.
        let tolerance = binomial_tolerance(0.02, f64::from(n), 5.0);
        assert!((lost - 0.02).abs() < tolerance, "lost {lost}, tolerance {tolerance}");
        assert_eq!(link.stats().dropped_loss, u64::from(n) - out.len() as u64);
        assert_eq!(link.stats().delivered, out.len() as u64);
    }

    #[test]
    fn gilbert_elliott_mean_loss_and_burst_length_match_closed_form() {
        // Simple Gilbert: every packet in the bad state is lost, none in the good one, so loss
        // bursts are exactly bad runs: mean length 1/r = 4, mean loss p/(p+r) ≈ 3.85%.
        let ge = GilbertElliott { p: 0.01, r: 0.25, loss_good: 0.0, loss_bad: 1.0 };
        let n = 200_000u32;
        let mut link = Link::new(LinkConfig { loss: Loss::GilbertElliott(ge), ..Default::default() }, 11);
        let out = run(&mut link, n, MS, 8);
        let mut delivered = vec![false; n as usize];
        for (id, _, _) in &out {
            delivered[*id as usize] = true;
        }
        let lost = delivered.iter().filter(|d| !**d).count() as f64 / f64::from(n);
        let bursts: Vec<usize> = delivered.split(|d| *d).map(<[bool]>::len).filter(|len| *len > 0).collect();
        let mean_burst = bursts.iter().sum::<usize>() as f64 / bursts.len() as f64;
        eprintln!(
            "gilbert: lost {:.3}% (closed form {:.3}%), mean burst {mean_burst:.3} (closed form {})",
            lost * 100.0,
            ge.mean_loss() * 100.0,
            ge.mean_bad_run()
        );

        // Correlated samples: the variance of the loss count is the binomial one times
        // (1 + λ) / (1 - λ) with λ = 1 - p - r, the chain's second eigenvalue.
        let lambda = 1.0 - ge.p - ge.r;
        let inflation = ((1.0 + lambda) / (1.0 - lambda)).sqrt();
        let loss_tol = binomial_tolerance(ge.mean_loss(), f64::from(n), 5.0) * inflation;
        assert!((lost - ge.mean_loss()).abs() < loss_tol, "loss {lost} vs {}", ge.mean_loss());
        // Burst lengths are geometric: sd sqrt(1-r)/r over ≈ n·π_bad·r bursts.
        let burst_sd = (1.0 - ge.r).sqrt() / ge.r / (bursts.len() as f64).sqrt();
        assert!(
            (mean_burst - ge.mean_bad_run()).abs() < 5.0 * burst_sd,
            "burst {mean_burst} vs {}",
            ge.mean_bad_run()
        );

        // The general model (losses in both states) keeps the closed-form mean.
        let ge = GilbertElliott { p: 0.02, r: 0.2, loss_good: 0.005, loss_bad: 0.6 };
        let mut link = Link::new(LinkConfig { loss: Loss::GilbertElliott(ge), ..Default::default() }, 12);
        let out = run(&mut link, n, MS, 8);
        let lost = 1.0 - out.len() as f64 / f64::from(n);
        let lambda = 1.0 - ge.p - ge.r;
        let tol =
            binomial_tolerance(ge.mean_loss(), f64::from(n), 5.0) * ((1.0 + lambda) / (1.0 - lambda)).sqrt();
        assert!((lost - ge.mean_loss()).abs() < tol, "loss {lost} vs {}", ge.mean_loss());
    }

    fn delays(out: &[(u32, Instant, Instant)]) -> Vec<Duration> {
        out.iter().map(|(_, sent, received)| *received - *sent).collect()
    }

    #[test]
    fn delay_and_jitter_have_the_configured_distribution() {
        let config =
            LinkConfig { delay: 50 * MS, jitter: 10 * MS, jitter_reorders: true, ..Default::default() };
        let mut link = Link::new(config, 3);
        let out = run(&mut link, 100_000, MS, 8);
        let d = delays(&out);
        let min = d.iter().min().expect("some");
        let max = d.iter().max().expect("some");
        let mean = d.iter().sum::<Duration>().as_secs_f64() / d.len() as f64;
        eprintln!("50 ± 10 ms: min {min:?}, mean {:.4} ms, max {max:?}", mean * 1e3);
        assert!(*min >= 40 * MS && *min < 40 * MS + Duration::from_micros(100), "min {min:?}");
        assert!(*max <= 60 * MS && *max > 60 * MS - Duration::from_micros(100), "max {max:?}");
        // Uniform on ±10 ms: sd 10/√3 ms; five standard errors over 100k samples ≈ 0.09 ms.
        let tol = 5.0 * 0.010 / 3f64.sqrt() / (d.len() as f64).sqrt();
        assert!((mean - 0.050).abs() < tol, "mean {mean}");
        let reordered = out.windows(2).filter(|w| w[1].0 < w[0].0).count();
        assert!(reordered > 10_000, "jitter of ±10 ms over 1 ms gaps reorders: {reordered}");
    }

    #[test]
    fn fifo_jitter_never_reorders_and_stays_in_bounds() {
        let config = LinkConfig { delay: 50 * MS, jitter: 10 * MS, ..Default::default() };
        let mut link = Link::new(config, 3);
        let out = run(&mut link, 100_000, MS, 8);
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "FIFO mode reordered a packet");
        let d = delays(&out);
        assert!(d.iter().all(|d| (40 * MS..=60 * MS).contains(d)));
        let distinct: std::collections::HashSet<_> = d.iter().collect();
        assert!(distinct.len() > 1_000, "jitter still varies the delay");
    }

    #[test]
    fn explicit_reordering_holds_back_the_chosen_fraction() {
        let config = LinkConfig {
            delay: 20 * MS,
            reorder: Reorder { probability: 0.05, extra_delay: 10 * MS },
            ..Default::default()
        };
        let mut link = Link::new(config, 5);
        let n = 20_000;
        let out = run(&mut link, n, MS, 8);
        let held = delays(&out).iter().filter(|d| **d == 30 * MS).count();
        let others = delays(&out).iter().filter(|d| **d == 20 * MS).count();
        assert_eq!(held + others, n as usize);
        assert_eq!(held as u64, link.stats().reordered);
        let frac = held as f64 / f64::from(n);
        assert!((frac - 0.05).abs() < binomial_tolerance(0.05, f64::from(n), 5.0), "{frac}");
        assert!(out.windows(2).any(|w| w[1].0 < w[0].0));
    }

    #[test]
    fn duplication_adds_copies() {
        let mut link = Link::new(LinkConfig { duplicate: 0.1, ..Default::default() }, 9);
        let n = 50_000;
        let out = run(&mut link, n, MS, 8);
        let extra = out.len() - n as usize;
        assert_eq!(extra as u64, link.stats().duplicated);
        let frac = extra as f64 / f64::from(n);
        assert!((frac - 0.1).abs() < binomial_tolerance(0.1, f64::from(n), 5.0), "{frac}");
    }

    #[test]
    fn rate_limit_drains_at_the_rate_and_tail_drops() {
        // 1 MB/s bottleneck, 50-packet queue, offered 1,000-byte packets at 2 MB/s for 2 s.
        let rate = RateLimit { bytes_per_sec: 1_000_000, queue_bytes: None, queue_packets: Some(50) };
        let config = LinkConfig { delay: 10 * MS, rate: Some(rate), ..Default::default() };
        let mut link = Link::new(config, 1);
        let n = 4_000;
        let out = run(&mut link, n, Duration::from_micros(500), 1_000);
        // One packet per millisecond leaves: the first after 1 ms of serialisation.
        for w in out.windows(2) {
            assert_eq!(w[1].2 - w[0].2, MS, "drains at exactly the rate");
        }
        let span = out.last().expect("some").2 - out[0].2;
        let throughput = (out.len() - 1) as f64 * 1_000.0 / span.as_secs_f64();
        assert!((throughput - 1_000_000.0).abs() < 1.0, "throughput {throughput}");
        // Queueing delay never exceeds the queue: 50 packets × 1 ms, plus the 10 ms delay.
        assert!(delays(&out).iter().all(|d| *d <= 10 * MS + 50 * MS));
        // About half the offered load is tail-dropped: 2 s at 1 MB/s leaves + the queue.
        let stats = link.stats();
        eprintln!(
            "rate 1 MB/s, offered 2 MB/s: {throughput:.0} B/s out, {} delivered, {} tail-dropped",
            stats.delivered, stats.dropped_queue
        );
        assert_eq!(stats.dropped_queue + stats.delivered, u64::from(n));
        assert!((2_000..=2_060).contains(&stats.delivered), "delivered {}", stats.delivered);

        // A byte limit: 10 kB holds ten 1,000-byte packets.
        let rate = RateLimit { bytes_per_sec: 1_000_000, queue_bytes: Some(10_000), queue_packets: None };
        let mut link = Link::new(LinkConfig { rate: Some(rate), ..Default::default() }, 1);
        let t0 = Instant::now();
        for _ in 0..20 {
            link.send(t0, Bytes::from(vec![0u8; 1_000]));
        }
        assert_eq!((link.stats().dropped_queue, link.len()), (10, 10));
    }

    #[test]
    fn the_packet_limit_bounds_what_the_link_holds() {
        let mut link = Link::new(
            LinkConfig { delay: Duration::from_secs(1), limit_packets: 100, ..Default::default() },
            1,
        );
        let t0 = Instant::now();
        for _ in 0..1_000 {
            link.send(t0, Bytes::from_static(b"x"));
        }
        assert_eq!((link.len(), link.stats().dropped_limit), (100, 900));
        assert_eq!(link.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(link.poll_transmit(t0), None);
    }

    #[test]
    fn same_seed_same_output_different_seed_different_output() {
        let config = LinkConfig {
            delay: 30 * MS,
            jitter: 5 * MS,
            jitter_reorders: true,
            loss: Loss::GilbertElliott(GilbertElliott { p: 0.05, r: 0.3, loss_good: 0.01, loss_bad: 0.5 }),
            duplicate: 0.02,
            reorder: Reorder { probability: 0.02, extra_delay: 5 * MS },
            rate: Some(RateLimit { bytes_per_sec: 500_000, queue_bytes: Some(20_000), queue_packets: None }),
            limit_packets: 1_000,
        };
        let trace = |seed| {
            let mut link = Link::new(config.clone(), seed);
            let out = run(&mut link, 5_000, MS, 400);
            let trace: Vec<(u32, Duration)> = out.iter().map(|(id, sent, at)| (*id, *at - *sent)).collect();
            (trace, link.stats())
        };
        assert_eq!(trace(42), trace(42));
        assert_ne!(trace(42).0, trace(43).0);
    }

    #[test]
    fn the_default_config_is_a_perfect_wire() {
        let mut link = Link::new(LinkConfig::default(), 0);
        let t0 = Instant::now();
        link.send(t0, Bytes::from_static(b"a"));
        link.send(t0, Bytes::from_static(b"b"));
        assert_eq!(link.poll_timeout(), Some(t0));
        assert_eq!(link.poll_transmit(t0).as_deref(), Some(&b"a"[..]));
        assert_eq!(link.poll_transmit(t0).as_deref(), Some(&b"b"[..]));
        assert!(link.is_empty());
    }

    #[test]
    fn validation_names_the_bad_field() {
        let bad = LinkConfig { duplicate: 1.5, ..Default::default() };
        assert_eq!(bad.validate(), Err(ConfigError::Probability { field: "duplicate", value: 1.5 }));
        let bad = LinkConfig { loss: Loss::Bernoulli { p: f64::NAN }, ..Default::default() };
        assert!(matches!(bad.validate(), Err(ConfigError::Probability { field: "loss.p", .. })));
        let stuck = GilbertElliott { p: 0.1, r: 0.0, loss_good: 0.0, loss_bad: 1.0 };
        let bad = LinkConfig { loss: Loss::GilbertElliott(stuck), ..Default::default() };
        assert!(matches!(bad.validate(), Err(ConfigError::Invalid { field: "loss.r", .. })));
        assert_eq!(LinkConfig::default().validate(), Ok(()));
    }
}
