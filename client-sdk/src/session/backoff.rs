//! Reconnect timing: how long to wait before the next connection attempt.
//!
//! What every Easel SDK must do (the browser SDK too, when it exists; SPEC §5.1, §5.5):
//! - after a failed attempt or a lost connection, wait a uniform random time in
//!   `[0, bound]`, the bound doubling per failure from a floor to a ceiling (full jitter), so a
//!   class that lost its Wi-Fi does not come back in one instant;
//! - when the server gave a hint — `GoAway { retry_after_ms }` on an established session or
//!   in place of `Welcome` (`Overloaded`), or a WebSocket upgrade answered `503` with
//!   `Retry-After` (seconds) — wait the hint `h` plus uniform `[0, h]` instead, never less
//!   than `h`; a refusal for overload is not final (keep trying, honouring each hint), and it
//!   applies to every transport (do not race another transport in its place).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use super::Config;

/// Full jitter (uniform in `[0, bound]`), the bound doubling per failed attempt, so that a
/// thousand clients of a dead server do not come back in one instant; a server hint `h`
/// becomes `h` plus uniform `[0, h]` (SPEC §5.5).
pub(super) struct Backoff {
    min: Duration,
    max: Duration,
    rng: StdRng,
    /// Failed attempts since the last healthy session (one that joined a room).
    attempt: u32,
}

impl Backoff {
    pub(super) fn new(config: &Config) -> Self {
        Self {
            min: config.backoff_min,
            max: config.backoff_max,
            rng: StdRng::seed_from_u64(config.seed),
            attempt: 0,
        }
    }

    /// The wait before the next attempt, after one more failure.
    pub(super) fn next(&mut self, hint: Option<Duration>) -> Duration {
        let delay = self.delay(hint);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// The session is healthy: the next failure starts afresh.
    pub(super) fn reset(&mut self) {
        self.attempt = 0;
    }

    fn delay(&mut self, hint: Option<Duration>) -> Duration {
        if let Some(h) = hint.filter(|h| !h.is_zero()) {
            return h + h.mul_f64(self.rng.random::<f64>());
        }
        let bound = self.min.saturating_mul(1 << self.attempt.min(16)).min(self.max);
        bound.mul_f64(self.rng.random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use easel_proto::ErrorCode;
    use easel_proto::Message;
    use easel_proto::message::GoAway;

    use crate::Transport;
    use crate::session::Event;
    use crate::session::testing::{Harness, welcome};

    #[test]
    fn reconnect_backoff_is_jittered_bounded_and_honours_go_away() {
        let mut h = Harness::new();
        let mut bounds = Vec::new();
        for _ in 0..8 {
            h.session.disconnected(h.now, None, "refused", None);
            let Some(Event::Disconnected { retry_in, .. }) = h.events().pop() else { panic!() };
            bounds.push(retry_in);
            assert!(
                !h.session.should_connect(h.now + retry_in - Duration::from_nanos(1)) || retry_in.is_zero()
            );
            assert!(h.session.should_connect(h.now + retry_in));
        }
        for (attempt, retry_in) in bounds.iter().enumerate() {
            let bound = Duration::from_millis(250).saturating_mul(1 << attempt).min(Duration::from_secs(10));
            assert!(*retry_in <= bound, "attempt {attempt}: {retry_in:?} > {bound:?}");
        }
        assert!(bounds.windows(2).any(|w| w[0] != w[1]), "jittered: {bounds:?}");
        h.session.connected(h.now, Transport::Quic, &welcome(false, 1));
        let go =
            GoAway { code: ErrorCode::ShuttingDown.to_u16(), retry_after_ms: 1000, message: String::new() };
        h.session.handle_control(Message::from(go));
        h.session.disconnected(h.now, None, "closed", None);
        let Some(Event::Disconnected { retry_in, code, .. }) = h.events().pop() else { panic!() };
        assert_eq!(code, Some(ErrorCode::ShuttingDown));
        assert!((Duration::from_secs(1)..=Duration::from_secs(2)).contains(&retry_in), "{retry_in:?}");
    }

    /// A server over its session cap answers the handshake with `GoAway { Overloaded,
    /// retry_after_ms }` (SPEC §5.1); the driver passes the hint in with the failed attempt.
    #[test]
    fn an_overloaded_refusal_waits_at_least_the_hint_plus_full_jitter() {
        let mut h = Harness::new();
        let hint = Duration::from_secs(3);
        let mut waits = Vec::new();
        for _ in 0..16 {
            h.session.disconnected(h.now, Some(ErrorCode::Overloaded), "go away", Some(hint));
            let Some(Event::Disconnected { retry_in, code, .. }) = h.events().pop() else { panic!() };
            assert_eq!(code, Some(ErrorCode::Overloaded));
            assert!((hint..=hint * 2).contains(&retry_in), "{retry_in:?}: the hint plus [0, hint]");
            assert!(!h.session.should_connect(h.now + retry_in - Duration::from_nanos(1)));
            assert!(h.session.should_connect(h.now + retry_in));
            assert_eq!(h.session.poll_timeout(), Some(h.now + retry_in), "the driver wakes for it");
            waits.push(retry_in);
        }
        assert!(waits.windows(2).any(|w| w[0] != w[1]), "jittered: {waits:?}");
    }
}
