//! The room document as the core sees it: bytes in, bytes out. The core never edits a
//! document; it imports what the network brings, asks for the version vector to rejoin with,
//! and sends the local updates it is handed. The native SDK's document is a Rust `LoroDoc`
//! ([`super::LoroDocument`]); the browser SDK's is the app's `loro-crdt` `LoroDoc` behind
//! JavaScript calls.

/// Why bytes did not import into a document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ImportError(pub String);

/// A room's document, for the session core.
pub trait Document {
    /// Imports Loro bytes: a remote update, a snapshot or catch-up transfer, a stored op. Bad
    /// bytes are an error, never a panic.
    fn import(&self, data: &[u8]) -> Result<(), ImportError>;

    /// Imports several remote updates at once. Loro's cost per import grows with the
    /// document's history, so a document that can should take them together. On an error
    /// the session imports them again one by one (importing an update twice is harmless).
    fn import_batch(&self, batch: &[Vec<u8>]) -> Result<(), ImportError> {
        batch.iter().try_for_each(|data| self.import(data))
    }

    /// The encoded version vector of the document's oplog (Loro's `VersionVector::encode`),
    /// `None` while the document holds nothing: a rejoin asks the server only for what is
    /// missing.
    fn version(&self) -> Option<Vec<u8>>;

    /// Local commits not yet handed to the session, oldest first, for a document that queues
    /// its own (the native one subscribes to its commits). A driver that hands them over
    /// itself uses [`super::Session::local_update`] and keeps this default.
    fn take_local(&self) -> Vec<Vec<u8>> {
        Vec::new()
    }
}
