//! The resume registry (SPEC §5.4): what a session needs to be resumed on a new connection,
//! found by the resume token of its latest `Welcome`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// What a resume takes over from a session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Held {
    /// The session id, kept across resumes.
    pub(crate) session_id: u64,
    /// The rooms the session is in: room id → participant number.
    pub(crate) rooms: HashMap<String, u16>,
}

struct Entry {
    /// Resume tokens are bound to the token subject.
    sub: String,
    held: Held,
    /// Cancelled to make the session's live connection hand over to the resuming one.
    takeover: CancellationToken,
    /// When the session is forgotten; `None` while its connection is live.
    expires: Option<Instant>,
}

type Entries = Mutex<HashMap<Vec<u8>, Entry>>;

/// Resumable sessions by resume token: one entry per live session, plus those whose
/// connection was lost, until their grace window passes.
pub(crate) struct Resumes {
    grace: Duration,
    entries: Arc<Entries>,
}

impl Resumes {
    pub(crate) fn new(grace: Duration) -> Self {
        Self { grace, entries: Arc::default() }
    }

    /// Claims the session `token` names for subject `sub`. Its entry is removed, so the token
    /// stops working, and a connection still live on it is told to hand over. `None` if the
    /// token is unknown, expired or another subject's (whose session is left alone).
    pub(crate) fn claim(&self, token: &[u8], sub: &str, now: Instant) -> Option<Held> {
        let mut entries = self.entries.lock().ok()?;
        let entry = entries.get(token)?;
        if entry.expires.is_some_and(|t| now >= t) {
            entries.remove(token);
            return None;
        }
        if entry.sub != sub {
            return None;
        }
        let entry = entries.remove(token)?;
        entry.takeover.cancel();
        Some(entry.held)
    }

    /// Registers a live session under the fresh token of its `Welcome`.
    pub(crate) fn open(&self, token: Vec<u8>, sub: String, held: Held, takeover: CancellationToken) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(token, Entry { sub, held, takeover, expires: None });
        }
    }

    /// Records that the session holds `participant` in `room`, or with `None` that it left.
    pub(crate) fn set_room(&self, token: &[u8], room: &str, participant: Option<u16>) {
        let Ok(mut entries) = self.entries.lock() else { return };
        let Some(entry) = entries.get_mut(token) else { return };
        match participant {
            Some(p) => entry.held.rooms.insert(room.to_owned(), p),
            None => entry.held.rooms.remove(room),
        };
    }

    /// The session ended cleanly: it cannot be resumed.
    pub(crate) fn end(&self, token: &[u8]) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(token);
        }
    }

    /// The session's connection was lost: it stays resumable for the grace window, then its
    /// entry is removed. Does nothing if the session was already taken over.
    pub(crate) fn detach(&self, token: &[u8], now: Instant) {
        let until = now + self.grace;
        {
            let Ok(mut entries) = self.entries.lock() else { return };
            let Some(entry) = entries.get_mut(token) else { return };
            entry.expires = Some(until);
        }
        let (entries, token) = (Arc::downgrade(&self.entries), token.to_vec());
        tokio::spawn(async move {
            tokio::time::sleep_until(until.into()).await;
            if let Some(entries) = entries.upgrade() {
                forget_expired(&entries, &token, Instant::now());
            }
        });
    }
}

fn forget_expired(entries: &Entries, token: &[u8], now: Instant) {
    let Ok(mut entries) = entries.lock() else { return };
    if entries.get(token).is_some_and(|e| e.expires.is_some_and(|t| now >= t)) {
        entries.remove(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(session_id: u64) -> Held {
        Held { session_id, rooms: HashMap::from([("s/c/r".to_owned(), 3)]) }
    }

    #[test]
    fn a_claim_takes_over_the_live_connection_and_uses_the_token_up() {
        let resumes = Resumes::new(Duration::from_secs(30));
        let takeover = CancellationToken::new();
        resumes.open(b"t1".to_vec(), "ada".into(), held(7), takeover.clone());
        let now = Instant::now();
        assert_eq!(resumes.claim(b"t1", "bob", now), None, "bound to the subject");
        assert!(!takeover.is_cancelled(), "another subject's attempt leaves the session alone");
        assert_eq!(resumes.claim(b"t1", "ada", now), Some(held(7)));
        assert!(takeover.is_cancelled());
        assert_eq!(resumes.claim(b"t1", "ada", now), None, "a token works once");
    }

    #[tokio::test]
    async fn a_lost_session_is_held_for_the_grace_window_only() {
        let resumes = Resumes::new(Duration::from_secs(30));
        let t0 = Instant::now();
        resumes.open(b"t1".to_vec(), "ada".into(), held(7), CancellationToken::new());
        resumes.detach(b"t1", t0);
        assert_eq!(resumes.claim(b"t1", "ada", t0 + Duration::from_secs(30)), None, "expired");
        assert!(resumes.entries.lock().expect("lock").is_empty(), "expired entries are removed");

        resumes.open(b"t2".to_vec(), "ada".into(), held(8), CancellationToken::new());
        resumes.set_room(b"t2", "s/c/other", Some(5));
        resumes.set_room(b"t2", "s/c/r", None);
        resumes.detach(b"t2", t0);
        let claimed = resumes.claim(b"t2", "ada", t0 + Duration::from_secs(29)).expect("held");
        assert_eq!(claimed.session_id, 8);
        assert_eq!(claimed.rooms, HashMap::from([("s/c/other".to_owned(), 5)]));

        resumes.open(b"t3".to_vec(), "ada".into(), held(9), CancellationToken::new());
        resumes.end(b"t3");
        assert_eq!(resumes.claim(b"t3", "ada", t0), None, "a clean end is not resumable");
    }
}
