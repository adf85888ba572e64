//! Rate limits both sides keep (sans-IO: time is passed in). The server enforces the rates it
//! announces in `Welcome`; the SDK keeps within them, so it never trips `RateLimited`.
//!
//! Time is a [`web_time::Instant`]: `std`'s natively, one that exists in a browser too (the
//! SDK's core runs there).

use std::time::Duration;

use web_time::Instant;

/// A token bucket: `rate` tokens per second, at most `burst` banked, full at first.
///
/// ```
/// use std::time::{Duration, Instant};
/// use easel_proto::rate::TokenBucket;
///
/// let t0 = Instant::now();
/// let mut ops = TokenBucket::new(10, 2, t0);
/// assert!(ops.take(t0) && ops.take(t0));
/// assert!(!ops.take(t0), "the burst is spent");
/// assert_eq!(ops.next_token(), t0 + Duration::from_millis(100));
/// assert!(ops.take(t0 + Duration::from_millis(100)));
/// ```
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens per second, never zero (so the next token always has a time).
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket refilled at `per_sec` tokens a second (at least 1).
    pub fn new(per_sec: u32, burst: u32, now: Instant) -> Self {
        Self::with_rate(f64::from(per_sec.max(1)), burst, now)
    }

    /// A full bucket refilled at `per_minute` tokens a minute (at least 1; chat rates are per
    /// minute).
    pub fn per_minute(per_minute: u32, burst: u32, now: Instant) -> Self {
        Self::with_rate(f64::from(per_minute.max(1)) / 60.0, burst, now)
    }

    fn with_rate(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self { rate, burst, tokens: burst, at: now }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the next token will be there (now or earlier if one is).
    pub fn next_token(&self) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        self.at + Duration::from_secs_f64(missing / self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 5, t0);
        assert_eq!((0..8).filter(|_| b.take(t0)).count(), 5, "burst");
        assert!(!b.take(t0));
        assert!(b.take(t0 + Duration::from_millis(100)), "one token per 100 ms at 10/s");
        assert!(!b.take(t0 + Duration::from_millis(100)));
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..8).filter(|_| b.take(later)).count(), 5, "refill caps at burst");
    }

    #[test]
    fn per_minute_rates_refill_slowly() {
        let t0 = Instant::now();
        let mut chat = TokenBucket::per_minute(30, 1, t0);
        assert!(chat.take(t0));
        assert!(!chat.take(t0 + Duration::from_secs(1)));
        assert_eq!(chat.next_token(), t0 + Duration::from_secs(2));
        assert!(chat.take(t0 + Duration::from_secs(2)));
    }
}
