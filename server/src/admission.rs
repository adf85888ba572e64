//! Admission control: whether a connection attempt may become a session, decided from its
//! source address before anything expensive (TLS, the WebSocket upgrade, the JWT) is done.
//!
//! [`Gate`] is the sans-IO decision (time comes in as an argument): a global session cap, a
//! per-IP cap on concurrent sessions and a per-IP handshake token bucket. [`Admission`] is the
//! shared handle the accept loops use; an admitted attempt holds a [`Ticket`] whose drop gives
//! its slot back, whatever way the session ends.
//!
//! Memory stays bounded under a flood from spoofed or many sources: an address is tracked only
//! while it has a session or its bucket is refilling, idle entries are pruned as the table
//! grows, and past [`MAX_TRACKED`] addresses a new one is shed until pruning makes room.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use easel_proto::rate::TokenBucket;

use crate::config::ServerConfig;

/// Most source addresses tracked at once (~100 bytes each): a flood from more addresses than
/// this is shed for new addresses rather than grow the table.
pub(crate) const MAX_TRACKED: usize = 100_000;

/// The table is swept for idle entries when it reaches this size, then when it doubles.
const FIRST_SWEEP: usize = 1024;

/// A table over [`FIRST_SWEEP`] is also swept this long after the last sweep, so a flood's
/// entries go once it is over; and a full table is not swept more often (a sweep is a pass
/// over the table, which a flood would otherwise make us pay per attempt).
const SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// The limits the gate enforces (from [`ServerConfig`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Limits {
    /// Most sessions (handshaking or established) at once.
    pub(crate) max_sessions: u32,
    /// Most sessions at once from one address.
    pub(crate) per_ip: u32,
    /// Handshakes per second from one address.
    pub(crate) handshakes_per_sec: u32,
    /// Handshakes one address may make at once after being quiet.
    pub(crate) handshakes_burst: u32,
    /// Whether loopback addresses are held to the per-IP limits.
    pub(crate) limit_loopback: bool,
    /// The hint a refused-for-capacity client is given.
    pub(crate) retry_after: Duration,
}

impl Limits {
    pub(crate) fn of(config: &ServerConfig) -> Self {
        Self {
            max_sessions: config.max_sessions,
            per_ip: config.max_sessions_per_ip,
            handshakes_per_sec: config.handshakes_per_ip.per_sec,
            handshakes_burst: config.handshakes_per_ip.burst,
            limit_loopback: config.limit_loopback,
            retry_after: config.overload_retry_after,
        }
    }

    /// How long an address's bucket takes to refill from empty: an entry with no session
    /// idle this long is full again, and forgetting it changes nothing.
    fn refill(&self) -> Duration {
        Duration::from_secs_f64(
            f64::from(self.handshakes_burst.max(1)) / f64::from(self.handshakes_per_sec.max(1)),
        )
    }
}

/// What a connection attempt gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Admitted and counted: [`Gate::leave`] must follow.
    Admit,
    /// Over its address's handshake rate (or the table is full): drop it before TLS. A next
    /// token is due after `retry_after`.
    Shed { retry_after: Duration },
    /// Over a session cap: tell the client `Overloaded` with this hint, without verifying
    /// its token.
    Overloaded { retry_after: Duration },
}

#[derive(Debug)]
struct Source {
    /// Sessions from this address now.
    open: u32,
    handshakes: TokenBucket,
    /// The last attempt, for pruning.
    seen: Instant,
}

/// The sans-IO admission decision. See the module docs.
#[derive(Debug)]
pub(crate) struct Gate {
    limits: Limits,
    sessions: u32,
    sources: HashMap<IpAddr, Source>,
    /// Table size at which the next sweep runs.
    sweep_at: usize,
    /// When the last sweep ran.
    swept: Option<Instant>,
}

impl Gate {
    pub(crate) fn new(limits: Limits) -> Self {
        Self { limits, sessions: 0, sources: HashMap::new(), sweep_at: FIRST_SWEEP, swept: None }
    }

    /// A connection attempt from `ip` at `now`. An attempt refused for capacity still spends
    /// a handshake token, so one address retrying in a loop is shed soon.
    pub(crate) fn arrive(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        let limits = self.limits;
        let exempt = ip.to_canonical().is_loopback() && !limits.limit_loopback;
        let ip = source(ip);
        if !exempt {
            if !self.sources.contains_key(&ip) {
                let len = self.sources.len();
                let stale = len >= FIRST_SWEEP && self.swept.is_none_or(|at| now >= at + SWEEP_PERIOD);
                if stale || (len >= self.sweep_at && len < MAX_TRACKED) {
                    self.sweep(now);
                }
                if self.sources.len() >= MAX_TRACKED {
                    return Verdict::Shed { retry_after: limits.refill().max(Duration::from_secs(1)) };
                }
            }
            let source = self.sources.entry(ip).or_insert_with(|| Source {
                open: 0,
                handshakes: TokenBucket::new(limits.handshakes_per_sec, limits.handshakes_burst, now),
                seen: now,
            });
            source.seen = now;
            if !source.handshakes.take(now) {
                let retry_after = source.handshakes.next_token().saturating_duration_since(now);
                return Verdict::Shed { retry_after };
            }
            if source.open >= limits.per_ip {
                return Verdict::Overloaded { retry_after: limits.retry_after };
            }
        }
        if self.sessions >= limits.max_sessions {
            return Verdict::Overloaded { retry_after: limits.retry_after };
        }
        self.sessions += 1;
        if let Some(source) = self.sources.get_mut(&ip).filter(|_| !exempt) {
            source.open += 1;
        }
        Verdict::Admit
    }

    /// An admitted session from `ip` ended.
    pub(crate) fn leave(&mut self, ip: IpAddr, now: Instant) {
        self.sessions = self.sessions.saturating_sub(1);
        if let Some(source) = self.sources.get_mut(&source(ip)) {
            source.open = source.open.saturating_sub(1);
            source.seen = now;
        }
    }

    /// Sessions admitted and not yet ended.
    #[cfg(test)]
    pub(crate) fn sessions(&self) -> u32 {
        self.sessions
    }

    /// Addresses tracked now.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.sources.len()
    }

    /// Forgets addresses with no session whose bucket is full again.
    fn sweep(&mut self, now: Instant) {
        let refill = self.limits.refill();
        self.sources.retain(|_, s| s.open > 0 || now.saturating_duration_since(s.seen) < refill);
        self.sweep_at = (self.sources.len() * 2).clamp(FIRST_SWEEP, MAX_TRACKED);
        self.swept = Some(now);
    }
}

/// The key an address is limited by: an IPv4 address (also when mapped into IPv6, as a
/// dual-stack socket reports it), or an IPv6 /64 — one host is usually given a whole /64, and
/// per-/128 limits would not hold it back.
fn source(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// The gate shared by every accept loop.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    gate: Arc<Mutex<Gate>>,
}

/// What an accept loop does with an attempt.
#[derive(Debug)]
pub(crate) enum Entry {
    /// Go on; dropping the ticket frees the slot.
    Admitted(Ticket),
    /// Drop it at once, before TLS or the upgrade.
    Shed(Duration),
    /// Answer `Overloaded` with this hint.
    Overloaded(Duration),
}

impl Admission {
    pub(crate) fn new(limits: Limits) -> Self {
        Self { gate: Arc::new(Mutex::new(Gate::new(limits))) }
    }

    /// Decides an attempt from `ip` now.
    pub(crate) fn arrive(&self, ip: IpAddr) -> Entry {
        match lock(&self.gate).arrive(ip, Instant::now()) {
            Verdict::Admit => Entry::Admitted(Ticket { gate: self.gate.clone(), ip }),
            Verdict::Shed { retry_after } => Entry::Shed(retry_after),
            Verdict::Overloaded { retry_after } => Entry::Overloaded(retry_after),
        }
    }
}

/// An admitted session's slot; given back on drop.
#[derive(Debug)]
pub(crate) struct Ticket {
    gate: Arc<Mutex<Gate>>,
    ip: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        lock(&self.gate).leave(self.ip, Instant::now());
    }
}

/// The gate; a panic while it was held leaves it usable (its counts change in single steps).
fn lock(gate: &Mutex<Gate>) -> MutexGuard<'_, Gate> {
    gate.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    const HINT: Duration = Duration::from_secs(2);

    fn limits() -> Limits {
        Limits {
            max_sessions: 100,
            per_ip: 3,
            handshakes_per_sec: 10,
            handshakes_burst: 5,
            limit_loopback: false,
            retry_after: HINT,
        }
    }

    /// 10.0.0.0/8 and beyond: `n` numbers distinct addresses.
    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    /// An address none of the `ip(n)` in a test is.
    fn stranger() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))
    }

    #[test]
    fn the_global_cap_refuses_with_the_hint_and_a_leave_frees_a_slot() {
        let t0 = Instant::now();
        let mut gate = Gate::new(Limits { max_sessions: 2, ..limits() });
        assert_eq!(gate.arrive(ip(1), t0), Verdict::Admit);
        assert_eq!(gate.arrive(ip(2), t0), Verdict::Admit);
        assert_eq!(gate.arrive(ip(3), t0), Verdict::Overloaded { retry_after: HINT });
        assert_eq!(gate.sessions(), 2);
        gate.leave(ip(1), t0);
        assert_eq!(gate.arrive(ip(3), t0), Verdict::Admit);
    }

    #[test]
    fn one_address_is_capped_others_are_not() {
        let t0 = Instant::now();
        let mut gate = Gate::new(limits());
        for _ in 0..3 {
            assert_eq!(gate.arrive(ip(1), t0), Verdict::Admit);
        }
        assert_eq!(gate.arrive(ip(1), t0), Verdict::Overloaded { retry_after: HINT });
        assert_eq!(gate.arrive(ip(2), t0), Verdict::Admit, "another address is not held back");
        gate.leave(ip(1), t0);
        assert_eq!(gate.arrive(ip(1), t0), Verdict::Admit, "a session that ended frees its slot");
    }

    #[test]
    fn handshakes_over_the_rate_are_shed_until_the_next_token() {
        let t0 = Instant::now();
        let mut gate = Gate::new(Limits { per_ip: 100, ..limits() });
        for _ in 0..5 {
            assert_eq!(gate.arrive(ip(1), t0), Verdict::Admit);
        }
        // 10/s: the next token is 100 ms away.
        assert_eq!(gate.arrive(ip(1), t0), Verdict::Shed { retry_after: Duration::from_millis(100) });
        assert_eq!(gate.arrive(ip(2), t0), Verdict::Admit, "the rate is per address");
        let later = t0 + Duration::from_millis(100);
        assert_eq!(gate.arrive(ip(1), later), Verdict::Admit);
        assert!(matches!(gate.arrive(ip(1), later), Verdict::Shed { .. }));
        assert_eq!(gate.sessions(), 7, "shed attempts take no slot");
    }

    #[test]
    fn capacity_refusals_spend_handshake_tokens() {
        let t0 = Instant::now();
        let mut gate = Gate::new(Limits { per_ip: 1, ..limits() });
        assert_eq!(gate.arrive(ip(1), t0), Verdict::Admit);
        for _ in 0..4 {
            assert!(matches!(gate.arrive(ip(1), t0), Verdict::Overloaded { .. }));
        }
        assert!(matches!(gate.arrive(ip(1), t0), Verdict::Shed { .. }), "a retry loop is shed");
    }

    #[test]
    fn loopback_is_exempt_from_per_ip_limits_unless_asked_but_not_from_the_cap() {
        let t0 = Instant::now();
        let local = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let mut gate = Gate::new(Limits { max_sessions: 50, ..limits() });
        for _ in 0..50 {
            assert_eq!(gate.arrive(local, t0), Verdict::Admit);
        }
        assert_eq!(gate.tracked(), 0, "exempt addresses are not tracked");
        assert!(matches!(gate.arrive(local, t0), Verdict::Overloaded { .. }), "the global cap holds");

        let mut gate = Gate::new(Limits { limit_loopback: true, ..limits() });
        for _ in 0..3 {
            assert_eq!(gate.arrive(local, t0), Verdict::Admit);
        }
        assert!(matches!(gate.arrive(local, t0), Verdict::Overloaded { .. }));
    }

    #[test]
    fn an_ipv6_host_is_limited_by_its_64_and_a_mapped_ipv4_by_its_address() {
        let t0 = Instant::now();
        let mut gate = Gate::new(limits());
        let host = |n: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, n));
        for n in 0..3 {
            assert_eq!(gate.arrive(host(n), t0), Verdict::Admit);
        }
        assert!(matches!(gate.arrive(host(9), t0), Verdict::Overloaded { .. }), "same /64");
        let other = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1));
        assert_eq!(gate.arrive(other, t0), Verdict::Admit, "another /64");
        gate.leave(host(1), t0);
        assert_eq!(gate.arrive(host(5), t0), Verdict::Admit, "a leave frees the /64's slot");

        let v4 = ip(1);
        let IpAddr::V4(a) = v4 else { unreachable!() };
        let mapped = IpAddr::V6(a.to_ipv6_mapped());
        for _ in 0..2 {
            assert_eq!(gate.arrive(v4, t0), Verdict::Admit);
        }
        assert_eq!(gate.arrive(mapped, t0), Verdict::Admit);
        assert!(matches!(gate.arrive(v4, t0), Verdict::Overloaded { .. }), "one address, two spellings");
        let mapped_loopback = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        assert_eq!(gate.arrive(mapped_loopback, t0), Verdict::Admit);
        assert_eq!(gate.tracked(), 3, "mapped loopback is exempt like 127.0.0.1");
    }

    #[test]
    fn a_flood_from_many_addresses_keeps_the_table_bounded() {
        let t0 = Instant::now();
        let mut gate = Gate::new(Limits { max_sessions: 1_000_000, ..limits() });
        // Spoofed sources that never complete a session: each ends at once.
        let refill = limits().refill();
        let mut now = t0;
        for n in 0..(3 * MAX_TRACKED as u32) {
            if n % 1000 == 0 {
                now += refill / 50;
            }
            if gate.arrive(ip(n), now) == Verdict::Admit {
                gate.leave(ip(n), now);
            }
            assert!(gate.tracked() <= MAX_TRACKED, "{} tracked after {n}", gate.tracked());
        }
        // Once their buckets have refilled, the idle entries go at the next sweep.
        let quiet = now + refill.max(SWEEP_PERIOD);
        assert_eq!(gate.arrive(stranger(), quiet), Verdict::Admit);
        assert!(gate.tracked() < FIRST_SWEEP, "{} tracked after the flood", gate.tracked());
    }

    #[test]
    fn a_full_table_sheds_new_addresses_but_serves_known_ones() {
        let t0 = Instant::now();
        let mut gate = Gate::new(Limits { max_sessions: u32::MAX, ..limits() });
        // Every address holds a session: nothing can be swept.
        for n in 0..MAX_TRACKED as u32 {
            assert_eq!(gate.arrive(ip(n), t0), Verdict::Admit);
        }
        assert!(matches!(gate.arrive(stranger(), t0), Verdict::Shed { .. }));
        assert_eq!(gate.arrive(ip(7), t0), Verdict::Admit, "a known address is still served");
        gate.leave(ip(7), t0);
        assert_eq!(gate.tracked(), MAX_TRACKED);
    }

    #[test]
    fn tickets_give_their_slot_back_on_drop() {
        let admission = Admission::new(Limits { max_sessions: 1, ..limits() });
        let ticket = admission.arrive(ip(1));
        assert!(matches!(ticket, Entry::Admitted(_)));
        assert!(matches!(admission.arrive(ip(2)), Entry::Overloaded(HINT)));
        drop(ticket);
        assert!(matches!(admission.arrive(ip(2)), Entry::Admitted(_)));
    }
}
