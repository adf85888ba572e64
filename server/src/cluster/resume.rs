//! Resume tokens across nodes (cluster mode): what a resume takes over from a session
//! ([`Held`]: its id and rooms, and the token subject it is bound to) is kept in the JetStream
//! key-value bucket [`BUCKET`] under a hash of the token, so a member whose node died resumes
//! on another node (SPEC §5.4). Entries expire after the resume grace: a node re-writes its live
//! sessions' entries every third of it, and a lost session's once when its connection drops.
//!
//! A claim is atomic across nodes: the entry is read, then deleted with its revision as the
//! expected last one, so of two nodes claiming one token only one succeeds. A node's writes
//! after its first one expect the revision it last wrote too: an entry claimed elsewhere is not
//! brought back by its old node's refresh.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tokio::sync::mpsc;

use super::error;
use crate::resume::Held;

/// The key-value bucket of resumable sessions.
pub const BUCKET: &str = "easel_resume";

/// What a session's entry holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The token subject the resume token is bound to.
    pub(crate) sub: String,
    /// The session id.
    pub(crate) session_id: u64,
    /// Its rooms: room id → participant number on the node that wrote the entry.
    pub(crate) rooms: HashMap<String, u16>,
    /// The node that wrote it.
    pub(crate) node: String,
}

impl Record {
    pub(crate) fn held(self) -> Held {
        Held { session_id: self.session_id, rooms: self.rooms }
    }
}

/// What a claim found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The token's session, now this claimer's: nobody else can claim it.
    Claimed(Record),
    /// The token is another subject's: left alone.
    WrongSubject,
    /// Unknown, expired, or claimed already (possibly a moment ago on another node).
    Missing,
}

/// Why the bucket could not answer.
#[derive(Debug, thiserror::Error)]
#[error("resume bucket {BUCKET}: {0}")]
pub struct ResumeError(String);

/// A write for the writer task, in order.
enum Write {
    Put(String, Record),
    Delete(String),
    /// Claimed here: nothing more to write for it.
    Forget(String),
}

/// This node's side of the bucket. Cheap to clone.
#[derive(Clone)]
pub struct ResumeKv {
    js: jetstream::Context,
    /// The bucket once opened (again after a failure: NATS may have lost it).
    opened: std::sync::Arc<std::sync::Mutex<Option<kv::Store>>>,
    ttl: Duration,
    node: String,
    writes: mpsc::UnboundedSender<Write>,
}

impl std::fmt::Debug for ResumeKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumeKv").field("node", &self.node).finish_non_exhaustive()
    }
}

/// The bucket key of a resume token: a hash, so reading the bucket does not give out tokens.
pub fn key(token: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(token))
}

impl ResumeKv {
    /// Writes go through one task, in the order they are made. `grace`: the resume grace
    /// window, the entries' time-to-live. Needs a tokio runtime.
    pub(crate) fn new(client: async_nats::Client, node: String, grace: Duration) -> Self {
        let js = jetstream::context::ContextBuilder::new().timeout(Duration::from_secs(2)).build(client);
        // NATS takes a zero max age as "for ever".
        let ttl = grace.max(Duration::from_secs(1));
        let (writes, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(js.clone(), ttl, rx));
        Self { js, opened: Default::default(), ttl, node, writes }
    }

    /// How often live entries are written again.
    pub(crate) fn refresh_every(&self) -> Duration {
        self.ttl / 3
    }

    /// Stores (or renews) a session's entry.
    pub(crate) fn put(&self, token: &[u8], sub: &str, held: &Held) {
        let record = Record {
            sub: sub.to_owned(),
            session_id: held.session_id,
            rooms: held.rooms.clone(),
            node: self.node.clone(),
        };
        let _ = self.writes.send(Write::Put(key(token), record));
    }

    /// Removes a session's entry (it ended cleanly).
    pub(crate) fn delete(&self, token: &[u8]) {
        let _ = self.writes.send(Write::Delete(key(token)));
    }

    /// Claims the session `token` names for subject `sub`, atomically across nodes.
    pub(crate) async fn claim(&self, token: &[u8], sub: &str) -> Result<Claim, ResumeError> {
        let cached = self.opened.lock().ok().and_then(|o| o.clone());
        let bucket = match cached {
            Some(bucket) => bucket,
            None => bucket(&self.js, self.ttl).await?,
        };
        let claimed = self.claim_in(&bucket, token, sub).await;
        if let Ok(mut opened) = self.opened.lock() {
            *opened = claimed.is_ok().then_some(bucket);
        }
        claimed
    }

    async fn claim_in(&self, bucket: &kv::Store, token: &[u8], sub: &str) -> Result<Claim, ResumeError> {
        let key = key(token);
        let entry = bucket.entry(key.clone()).await.map_err(|e| ResumeError(e.to_string()))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(Claim::Missing);
        };
        let Ok(record) = serde_json::from_slice::<Record>(&entry.value) else {
            error("malformed");
            tracing::warn!(key, "cluster: a malformed resume entry, ignored");
            return Ok(Claim::Missing);
        };
        if record.sub != sub {
            return Ok(Claim::WrongSubject);
        }
        match bucket.delete_expect_revision(&key, Some(entry.revision)).await {
            Ok(()) => {
                let _ = self.writes.send(Write::Forget(key));
                Ok(Claim::Claimed(record))
            }
            // Written or claimed since it was read: whoever did that has it.
            Err(e) if e.to_string().contains("wrong last sequence") => Ok(Claim::Missing),
            Err(e) => Err(ResumeError(e.to_string())),
        }
    }
}

/// Opens the bucket, making it if it is missing (at first, and after a NATS that lost it).
async fn bucket(js: &jetstream::Context, ttl: Duration) -> Result<kv::Store, ResumeError> {
    if let Ok(bucket) = js.get_key_value(BUCKET).await {
        return Ok(bucket);
    }
    let config = kv::Config {
        bucket: BUCKET.to_owned(),
        description: "Easel resumable sessions, by a hash of the resume token".into(),
        history: 1,
        max_age: ttl,
        // A NATS restart must not cost every session its resume.
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    };
    match js.create_key_value(config).await {
        Ok(bucket) => Ok(bucket),
        // Another node made it first.
        Err(e) => js.get_key_value(BUCKET).await.map_err(|_| ResumeError(e.to_string())),
    }
}

/// Applies writes in order. A put after this node's first for a key expects the revision it
/// last wrote: if the entry was claimed (deleted) elsewhere meanwhile, it stays gone.
async fn writer(js: jetstream::Context, ttl: Duration, mut rx: mpsc::UnboundedReceiver<Write>) {
    let mut revisions: HashMap<String, u64> = HashMap::new();
    let mut store: Option<kv::Store> = None;
    while let Some(write) = rx.recv().await {
        if store.is_none() {
            store = bucket(&js, ttl).await.ok();
        }
        let Some(bucket) = &store else {
            error("resume");
            if let Write::Delete(key) | Write::Forget(key) = write {
                revisions.remove(&key);
            }
            continue;
        };
        let result = match write {
            Write::Put(key, record) => {
                let value: bytes::Bytes = serde_json::to_vec(&record).unwrap_or_default().into();
                let written = match revisions.get(&key) {
                    Some(rev) => bucket.update(&key, value, *rev).await.map_err(|e| e.to_string()),
                    None => bucket.put(&key, value).await.map_err(|e| e.to_string()),
                };
                match written {
                    Ok(rev) => {
                        revisions.insert(key, rev);
                        Ok(())
                    }
                    Err(e) => {
                        // Claimed elsewhere (or lost with NATS): not written back.
                        revisions.remove(&key);
                        Err(e)
                    }
                }
            }
            Write::Delete(key) => {
                revisions.remove(&key);
                bucket.delete(&key).await.map_err(|e| e.to_string())
            }
            Write::Forget(key) => {
                revisions.remove(&key);
                Ok(())
            }
        };
        if let Err(e) = result {
            error("resume");
            tracing::debug!("cluster: resume entry not written: {e}");
            // Opened again on the next write: NATS may have lost the bucket.
            store = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_a_stable_hash_that_does_not_give_the_token_out() {
        let k = key(b"a token");
        assert_eq!(k, key(b"a token"));
        assert_ne!(k, key(b"another"));
        assert_eq!(k.len(), 64);
        assert!(!k.contains(&hex::encode(b"a token")));
    }
}
