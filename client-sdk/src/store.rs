//! The offline store: unacked ops, the op-id counter and the installation id, in one `redb`
//! file, so that edits made while the server is unreachable survive an app restart and are
//! sent (exactly once, by op id) on the next connect.
//!
//! Every [`Store::apply`] is one durable transaction: an op is on disk before it is sent.

use std::path::Path;

use redb::{Database, TableDefinition};

use crate::session::StoreOp;

/// (room, op id) → Loro update bytes.
const PENDING: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("pending");
/// Small values: the installation id and the next op id.
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("offline store: {0}")]
    Db(String),
    /// A stored value is not what this version wrote.
    #[error("offline store is corrupt: {0}")]
    Corrupt(String),
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

/// An open offline store.
#[derive(Debug)]
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(db_err)?;
        }
        let db = Database::create(path).map_err(db_err)?;
        let txn = db.begin_write().map_err(db_err)?;
        txn.open_table(PENDING).map_err(db_err)?;
        txn.open_table(META).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        Ok(Self { db })
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(META).map_err(db_err)?;
        Ok(table.get(key).map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    /// The installation id: made once at random and kept, so op ids stay unique across runs.
    pub fn client_id(&self) -> Result<String, StoreError> {
        if let Some(id) = self.meta("client_id")? {
            return String::from_utf8(id).map_err(|e| StoreError::Corrupt(format!("client id: {e}")));
        }
        let id = format!("easel-{:016x}", rand::random::<u64>());
        let txn = self.db.begin_write().map_err(db_err)?;
        txn.open_table(META).map_err(db_err)?.insert("client_id", id.as_bytes()).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        Ok(id)
    }

    /// The next op id to use (1 on a new store).
    pub fn next_op_id(&self) -> Result<u64, StoreError> {
        match self.meta("next_op_id")? {
            None => Ok(1),
            Some(bytes) => {
                let arr: [u8; 8] =
                    bytes.try_into().map_err(|_| StoreError::Corrupt("next op id is not 8 bytes".into()))?;
                Ok(u64::from_le_bytes(arr))
            }
        }
    }

    /// The unacked ops of `room`, oldest first.
    pub fn pending(&self, room: &str) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(PENDING).map_err(db_err)?;
        let range = table.range((room, 0)..=(room, u64::MAX)).map_err(db_err)?;
        range
            .map(|entry| {
                let (k, v) = entry.map_err(db_err)?;
                Ok((k.value().1, v.value().to_vec()))
            })
            .collect()
    }

    /// Applies `ops` and records `next_op_id`, durably, in one transaction.
    pub fn apply(&self, ops: &[StoreOp], next_op_id: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut pending = txn.open_table(PENDING).map_err(db_err)?;
            for op in ops {
                match op {
                    StoreOp::Save { room, op_id, data } => {
                        pending.insert((room.as_str(), *op_id), data.as_slice()).map_err(db_err)?;
                    }
                    StoreOp::Remove { room, op_ids } => {
                        for id in op_ids {
                            pending.remove((room.as_str(), *id)).map_err(db_err)?;
                        }
                    }
                }
            }
            let mut meta = txn.open_table(META).map_err(db_err)?;
            meta.insert("next_op_id", next_op_id.to_le_bytes().as_slice()).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn ops_and_ids_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offline.redb");
        let (id, ops) = {
            let store = Store::open(&path).unwrap();
            let id = store.client_id().unwrap();
            assert_eq!(store.next_op_id().unwrap(), 1);
            let save = |op_id| StoreOp::Save { room: "a/b".into(), op_id, data: vec![op_id as u8] };
            store.apply(&[save(1), save(2), save(3)], 4).unwrap();
            store.apply(&[StoreOp::Remove { room: "a/b".into(), op_ids: vec![2] }], 4).unwrap();
            (id, store.pending("a/b").unwrap())
        };
        assert_eq!(ops, vec![(1, vec![1]), (3, vec![3])]);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.client_id().unwrap(), id, "the installation id is kept");
        assert_eq!(store.next_op_id().unwrap(), 4);
        assert_eq!(store.pending("a/b").unwrap(), ops);
        assert!(store.pending("a/c").unwrap().is_empty(), "rooms do not see each other's ops");
    }

    #[test]
    fn rooms_sharing_a_prefix_stay_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let ops = [
            StoreOp::Save { room: "a".into(), op_id: 1, data: vec![1] },
            StoreOp::Save { room: "a/b".into(), op_id: 2, data: vec![2] },
        ];
        store.apply(&ops, 3).unwrap();
        assert_eq!(store.pending("a").unwrap(), vec![(1, vec![1])]);
        assert_eq!(store.pending("a/b").unwrap(), vec![(2, vec![2])]);
    }
}
