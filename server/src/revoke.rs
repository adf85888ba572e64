//! Token revocation (SPEC §5.3): an operator revokes every token of a user issued up to a
//! second, or one token by its id (`jti`). The list is shared by the verifier (so `Hello` and
//! `RefreshToken` refuse a revoked token) and watched by every live session (so one holding a
//! revoked token is closed at once). It is stored with the server's other records, under a
//! room id no room can have, and so survives a restart.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::auth::Claims;
use crate::class::Write;
use crate::store::{Store, StoreError};

/// Where revocations are stored: the empty room id, which no room can have (SPEC §6.1).
const SERVER_WIDE: &str = "";
/// Record kinds of a revoked user and of a revoked token id.
const USER: &str = "revoked-user";
const TOKEN: &str = "revoked-token";

/// What to revoke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Revocation {
    /// Every token of this user (`sub`) issued up to now.
    User(String),
    /// The token with this `jti`.
    TokenId(String),
}

/// One stored revocation: since when (Unix seconds).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Record {
    at: u64,
}

/// The shared, live list of revocations. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Revocations {
    lists: Arc<RwLock<Lists>>,
    changed: Arc<watch::Sender<u64>>,
}

#[derive(Debug, Default)]
struct Lists {
    /// User → revoked at.
    users: HashMap<String, u64>,
    /// Token id → revoked at.
    tokens: HashMap<String, u64>,
}

impl Lists {
    /// The list a stored record kind belongs to.
    fn of(&mut self, kind: &str) -> Option<&mut HashMap<String, u64>> {
        match kind {
            USER => Some(&mut self.users),
            TOKEN => Some(&mut self.tokens),
            _ => None,
        }
    }
}

impl Default for Revocations {
    fn default() -> Self {
        Self { lists: Arc::default(), changed: Arc::new(watch::channel(0).0) }
    }
}

impl Revocations {
    /// The revocations stored in `store`.
    pub fn load(store: &Store) -> Result<Self, StoreError> {
        let this = Self::default();
        {
            let mut lists = this.write();
            for (kind, key, value) in store.load_side(SERVER_WIDE)? {
                let Ok(record) = serde_json::from_slice::<Record>(&value) else {
                    tracing::warn!(kind, key, "an unreadable revocation record was skipped");
                    continue;
                };
                if let Some(list) = lists.of(&kind) {
                    list.insert(key, record.at);
                }
            }
        }
        Ok(this)
    }

    /// Whether `claims` are of a revoked token: its id is listed, or its user was revoked at
    /// or after it was issued (a token without `iat` counts as issued before any revocation).
    pub fn revokes(&self, claims: &Claims) -> bool {
        let lists = self.lists.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        claims.jti.as_ref().is_some_and(|id| lists.tokens.contains_key(id))
            || lists.users.get(&claims.sub).is_some_and(|at| claims.iat.unwrap_or(0) <= *at)
    }

    /// Stores the revocation, then applies it and tells every session; a user revoked before
    /// keeps the later of the two times.
    pub async fn revoke(&self, store: &Store, what: Revocation, now_secs: u64) -> Result<(), StoreError> {
        let (kind, key) = match &what {
            Revocation::User(user) => (USER, user.clone()),
            Revocation::TokenId(id) => (TOKEN, id.clone()),
        };
        let value =
            serde_json::to_vec(&Record { at: now_secs }).map_err(|e| StoreError::Database(e.to_string()))?;
        store.side(SERVER_WIDE, vec![Write { kind, key: key.clone(), value }]).await?;
        {
            let mut lists = self.write();
            if let Some(list) = lists.of(kind) {
                let at = list.entry(key).or_insert(now_secs);
                *at = (*at).max(now_secs);
            }
        }
        self.changed.send_modify(|n| *n += 1);
        tracing::info!(?what, "token revocation");
        Ok(())
    }

    /// Every revocation, as `(what, revoked at)`.
    pub fn list(&self) -> Vec<(Revocation, u64)> {
        let lists = self.lists.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let users = lists.users.iter().map(|(u, at)| (Revocation::User(u.clone()), *at));
        let tokens = lists.tokens.iter().map(|(t, at)| (Revocation::TokenId(t.clone()), *at));
        let mut all: Vec<_> = users.chain(tokens).collect();
        all.sort_by_key(|(_, at)| *at);
        all
    }

    /// Wakes on every new revocation.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Lists> {
        self.lists.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str, iat: Option<u64>, jti: Option<&str>) -> Claims {
        Claims { iat, jti: jti.map(Into::into), ..Claims::new(sub, "s/*", "student", 9_999_999_999) }
    }

    #[tokio::test]
    async fn a_user_is_revoked_up_to_a_second_and_a_token_by_its_id_and_both_are_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let revoked = Revocations::load(&store).expect("load");
        let changes = revoked.watch();
        revoked.revoke(&store, Revocation::User("ada".into()), 1000).await.expect("revoke");
        assert!(changes.has_changed().expect("open"), "sessions are told");
        assert!(revoked.revokes(&claims("ada", Some(1000), None)), "issued that second");
        assert!(revoked.revokes(&claims("ada", None, None)), "no iat: issued before");
        assert!(!revoked.revokes(&claims("ada", Some(1001), None)), "issued later");
        assert!(!revoked.revokes(&claims("bob", Some(10), None)));
        revoked.revoke(&store, Revocation::TokenId("t-1".into()), 1002).await.expect("revoke");
        assert!(revoked.revokes(&claims("bob", Some(5000), Some("t-1"))));
        assert!(!revoked.revokes(&claims("bob", Some(5000), Some("t-2"))));

        store.close();
        let store = Store::open(dir.path()).expect("reopen");
        let again = Revocations::load(&store).expect("load");
        assert!(again.revokes(&claims("ada", Some(1000), None)), "a restart keeps it");
        assert!(again.revokes(&claims("bob", None, Some("t-1"))));
        assert_eq!(again.list().len(), 2);
    }
}
