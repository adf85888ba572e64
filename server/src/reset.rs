//! The QUIC stateless-reset key, kept in the data dir so that it outlives the process.
//!
//! Why: a QUIC endpoint derives the reset token it hands out with each connection id from this
//! key. When the server restarts (a crash, a deploy) with a fresh random key, as quinn does by
//! default, it cannot answer an old connection's packets with a reset that connection would
//! accept, so every client learns its server is gone only by its idle timeout (12 s in the
//! SDK). With the same key, the restarted server's first answer to an old packet is a stateless
//! reset, and the client reconnects at once. Both QUIC listeners (raw QUIC and WebTransport)
//! use it.
//!
//! The key is [`KEY_FILE`] in the data dir: 32 random bytes, written once, readable by the
//! owner only. The key of quinn's connection-id generator is derived from it (without it the
//! restarted server would not recognize the old ids, and drop their packets unanswered). Anyone holding it can forge resets for this server's connections (end them, not
//! read or write them), so it is as private as the database beside it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The key's file name in the data dir.
pub const KEY_FILE: &str = "quic-reset-key";
/// Its length: an HMAC-SHA256 key as long as its output.
const KEY_LEN: usize = 32;
/// The least time between two stateless resets an endpoint sends. Why: quinn's default, 20 ms,
/// allows 50 resets a second, so after a restart under 2,000 clients most of them would still
/// wait out their idle timeout. A reset is always smaller than the packet that caused it (no
/// amplification, and reset loops die out), so a short interval costs little.
const MIN_RESET_INTERVAL: Duration = Duration::from_millis(1);

/// The key file is unreadable or malformed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[error("QUIC reset key {path}: {reason}")]
pub struct ResetKeyError {
    /// The file.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The QUIC endpoint configuration with the data dir's reset key (made on first use).
pub fn endpoint_config(data_dir: &Path) -> Result<quinn::EndpointConfig, ResetKeyError> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &load_or_create(data_dir)?);
    // quinn drops packets whose connection id its generator does not recognize before it
    // would reset them, and its generator recognizes ids by a keyed hash: that key must
    // outlive the process too. Derived from the reset key, so that one file holds both.
    let tag = ring::hmac::sign(&key, b"easel quic connection id generator");
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&tag.as_ref()[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    let mut config = quinn::EndpointConfig::new(Arc::new(key));
    config.cid_generator(move || Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key)));
    config.min_reset_interval(MIN_RESET_INTERVAL);
    Ok(config)
}

/// The key in `data_dir`, written there first if there is none.
fn load_or_create(data_dir: &Path) -> Result<[u8; KEY_LEN], ResetKeyError> {
    let path = data_dir.join(KEY_FILE);
    let err = |reason: String| ResetKeyError { path: path.display().to_string(), reason };
    match std::fs::read(&path) {
        Ok(bytes) => {
            return bytes
                .try_into()
                .map_err(|b: Vec<u8>| err(format!("{} bytes, expected {KEY_LEN}", b.len())));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e.to_string())),
    }
    std::fs::create_dir_all(data_dir).map_err(|e| err(e.to_string()))?;
    let mut key = [0u8; KEY_LEN];
    rand::fill(&mut key);
    crate::auth::write_private(&path, &key).map_err(|e| err(e.to_string()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_private_and_then_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create(dir.path()).expect("made");
        assert_eq!(load_or_create(dir.path()).expect("read"), first);
        assert_ne!(first, [0u8; KEY_LEN], "random bytes");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE)).expect("file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_malformed_key_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(KEY_FILE), b"short").expect("write");
        let e = load_or_create(dir.path()).expect_err("5 bytes");
        assert!(e.reason.contains("5 bytes"), "{e}");
    }
}
