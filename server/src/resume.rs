//! The resume registry (SPEC §5.4): what a session needs to be resumed on a new connection,
//! found by the resume token of its latest `Welcome`. In cluster mode the registry also keeps
//! each entry in NATS ([`ResumeKv`]), so a session whose node died resumes on another node;
//! a claim there is atomic across nodes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::cluster::resume::{Claim, ResumeKv};

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
    /// Cluster mode: the entries in NATS too.
    shared: Option<ResumeKv>,
}

impl Resumes {
    pub(crate) fn new(grace: Duration) -> Self {
        Self { grace, entries: Arc::default(), shared: None }
    }

    /// Cluster mode: entries are kept in `shared` too, live ones renewed before they expire.
    /// Needs a tokio runtime.
    pub(crate) fn clustered(grace: Duration, shared: ResumeKv) -> Self {
        let entries: Arc<Entries> = Arc::default();
        tokio::spawn(renew(Arc::downgrade(&entries), shared.clone()));
        Self { grace, entries, shared: Some(shared) }
    }

    /// Claims the session `token` names for subject `sub`, here or (cluster mode) on any node.
    /// Its entry is removed, so the token stops working, and a connection still live on it
    /// here is told to hand over. `None` if the token is unknown, expired, claimed already or
    /// another subject's (whose session is left alone). While NATS cannot answer, only this
    /// node's own sessions resume.
    pub(crate) async fn claim(&self, token: &[u8], sub: &str, now: Instant) -> Option<Held> {
        let Some(shared) = &self.shared else { return self.claim_here(token, sub, now) };
        match shared.claim(token, sub).await {
            Ok(Claim::Claimed(record)) => {
                // Ours (the entry here is the fresher), or a session of a node that died.
                Some(self.claim_here(token, sub, now).unwrap_or_else(|| record.held()))
            }
            Ok(Claim::WrongSubject | Claim::Missing) => None,
            Err(e) => {
                tracing::warn!("resume: {e}; only this node's sessions resume meanwhile");
                self.claim_here(token, sub, now)
            }
        }
    }

    fn claim_here(&self, token: &[u8], sub: &str, now: Instant) -> Option<Held> {
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
        if let Some(shared) = &self.shared {
            shared.put(&token, &sub, &held);
        }
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
        if let Some(shared) = &self.shared {
            shared.put(token, &entry.sub, &entry.held);
        }
    }

    /// The session ended cleanly: it cannot be resumed.
    pub(crate) fn end(&self, token: &[u8]) {
        if let Ok(mut entries) = self.entries.lock()
            && entries.remove(token).is_some()
            && let Some(shared) = &self.shared
        {
            shared.delete(token);
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
            // Written once more, so its time-to-live counts from the loss.
            if let Some(shared) = &self.shared {
                shared.put(token, &entry.sub, &entry.held);
            }
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

/// Renews the entries of live sessions in NATS before they expire, until the registry goes.
async fn renew(entries: std::sync::Weak<Entries>, shared: ResumeKv) {
    let mut tick = tokio::time::interval(shared.refresh_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(entries) = entries.upgrade() else { return };
        let Ok(entries) = entries.lock() else { return };
        for (token, entry) in entries.iter().filter(|(_, e)| e.expires.is_none()) {
            shared.put(token, &entry.sub, &entry.held);
        }
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

    #[tokio::test]
    async fn a_claim_takes_over_the_live_connection_and_uses_the_token_up() {
        let resumes = Resumes::new(Duration::from_secs(30));
        let takeover = CancellationToken::new();
        resumes.open(b"t1".to_vec(), "ada".into(), held(7), takeover.clone());
        let now = Instant::now();
        assert_eq!(resumes.claim(b"t1", "bob", now).await, None, "bound to the subject");
        assert!(!takeover.is_cancelled(), "another subject's attempt leaves the session alone");
        assert_eq!(resumes.claim(b"t1", "ada", now).await, Some(held(7)));
        assert!(takeover.is_cancelled());
        assert_eq!(resumes.claim(b"t1", "ada", now).await, None, "a token works once");
    }

    #[tokio::test]
    async fn a_lost_session_is_held_for_the_grace_window_only() {
        let resumes = Resumes::new(Duration::from_secs(30));
        let t0 = Instant::now();
        resumes.open(b"t1".to_vec(), "ada".into(), held(7), CancellationToken::new());
        resumes.detach(b"t1", t0);
        assert_eq!(resumes.claim(b"t1", "ada", t0 + Duration::from_secs(30)).await, None, "expired");
        assert!(resumes.entries.lock().expect("lock").is_empty(), "expired entries are removed");

        resumes.open(b"t2".to_vec(), "ada".into(), held(8), CancellationToken::new());
        resumes.set_room(b"t2", "s/c/other", Some(5));
        resumes.set_room(b"t2", "s/c/r", None);
        resumes.detach(b"t2", t0);
        let claimed = resumes.claim(b"t2", "ada", t0 + Duration::from_secs(29)).await.expect("held");
        assert_eq!(claimed.session_id, 8);
        assert_eq!(claimed.rooms, HashMap::from([("s/c/other".to_owned(), 5)]));

        resumes.open(b"t3".to_vec(), "ada".into(), held(9), CancellationToken::new());
        resumes.end(b"t3");
        assert_eq!(resumes.claim(b"t3", "ada", t0).await, None, "a clean end is not resumable");
    }
}
