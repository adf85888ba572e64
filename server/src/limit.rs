//! Token buckets for per-connection rates (sans-IO: time is passed in).

use std::time::Instant;

/// A token bucket: `rate` tokens per second, at most `burst` banked.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self { rate: f64::from(rate), burst, tokens: burst, last: now }
    }

    /// A full bucket refilled at `per_minute` tokens a minute (chat rates are per minute).
    pub fn per_minute(per_minute: u32, burst: u32, now: Instant) -> Self {
        Self { rate: f64::from(per_minute) / 60.0, ..Self::new(0, burst, now) }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
}
