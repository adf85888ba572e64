//! The native document: a Rust [`LoroDoc`] whose local commits queue themselves for the
//! session (from whatever thread commits) and wake the driver.

use std::sync::{Arc, Mutex};

use loro::{LoroDoc, Subscription};

use super::doc::{Document, ImportError};

/// A [`LoroDoc`] as a room's [`Document`]; its commits become the session's ops.
pub struct LoroDocument {
    doc: LoroDoc,
    queue: Arc<Mutex<Vec<Vec<u8>>>>,
    _subscription: Subscription,
}

impl std::fmt::Debug for LoroDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoroDocument").field("peer", &self.doc.peer_id()).finish_non_exhaustive()
    }
}

impl LoroDocument {
    /// Wraps `doc`; `waker` is called (on the committing thread) when local edits are
    /// waiting for [`super::Session::flush_local`].
    pub fn new(doc: LoroDoc, waker: Arc<dyn Fn() + Send + Sync>) -> Self {
        let queue: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let subscription = {
            let queue = queue.clone();
            doc.subscribe_local_update(Box::new(move |bytes| {
                if let Ok(mut q) = queue.lock() {
                    q.push(bytes.clone());
                }
                waker();
                true
            }))
        };
        Self { doc, queue, _subscription: subscription }
    }

    /// The document (shared: the app edits a clone of it).
    pub fn doc(&self) -> &LoroDoc {
        &self.doc
    }
}

impl Document for LoroDocument {
    fn import(&self, data: &[u8]) -> Result<(), ImportError> {
        guarded(|| self.doc.import(data).map(drop))
    }

    fn import_batch(&self, batch: &[Vec<u8>]) -> Result<(), ImportError> {
        guarded(|| self.doc.import_batch(batch).map(drop))
    }

    fn version(&self) -> Option<Vec<u8>> {
        let vv = self.doc.oplog_vv();
        (!vv.is_empty()).then(|| vv.encode())
    }

    fn take_local(&self) -> Vec<Vec<u8>> {
        self.queue.lock().map(|mut q| std::mem::take(&mut *q)).unwrap_or_default()
    }
}

/// Runs an import. Loro may panic on hostile bytes; a bad update from the network must not
/// take the app down.
fn guarded(import: impl FnOnce() -> Result<(), loro::LoroError>) -> Result<(), ImportError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(import)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ImportError(e.to_string())),
        Err(_) => Err(ImportError("update could not be decoded".into())),
    }
}
