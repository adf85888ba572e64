//! The [`Session`] trait both ends program against, and the types around it.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use easel_proto::ErrorCode;
use tokio::io::{AsyncRead, AsyncWrite};

pub use easel_proto::TransportKind;

/// How a connection ended. It decides what happens to the session's rooms (SPEC §5.4): a
/// clean end leaves them at once, a lost connection keeps its places for a resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closure {
    /// The peer closed with code 0 (Normal; WebSocket 1000 or 4000), or this side closed it.
    Clean,
    /// Anything else: a network loss, an idle timeout, a reset, a TCP drop without a close
    /// frame, a close with a non-zero code.
    Lost,
}

/// Why a connection closed, as the peer (or the local stack) said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// The Easel code the connection was closed with, when it was closed with one.
    pub code: Option<ErrorCode>,
    /// The close reason, or what the transport reports (timeout, reset, …).
    pub reason: String,
}

impl CloseReason {
    /// A close without an Easel code (a loss, a timeout, a stream that could not be used).
    pub fn other(reason: impl fmt::Display) -> Self {
        Self { code: None, reason: reason.to_string() }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "{code}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

/// A transport failure: the peer went away, or a stream or datagram could not be used.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The connection is closed (by either side, or idle timeout), or a stream on it could
    /// not be opened.
    #[error("connection closed: {0}")]
    Closed(CloseReason),
    /// Datagrams are not supported or were disabled by the peer.
    #[error("datagrams unavailable: {0}")]
    DatagramsUnavailable(String),
    /// A datagram was larger than the path allows.
    #[error("datagram too large for the path")]
    DatagramTooLarge,
    /// Connecting failed (address, TLS, configuration, handshake), or this build lacks the
    /// transport's cargo feature.
    #[error("connect: {0}")]
    Connect(String),
    /// The server shed the attempt before any session began and said when to try again (the
    /// WebSocket upgrade answered `503` with `Retry-After`, SPEC §5.1).
    #[error("server busy: retry after {0:?}")]
    RetryAfter(std::time::Duration),
}

impl TransportError {
    /// A [`TransportError::Closed`] without an Easel code.
    pub fn closed(reason: impl fmt::Display) -> Self {
        Self::Closed(CloseReason::other(reason))
    }
}

/// Sends datagrams for one session; shared with room actors, which never await it.
pub trait DatagramSender: Send + Sync + 'static {
    /// Queues a datagram. Never blocks; a full buffer drops the oldest queued datagrams.
    fn send(&self, datagram: Bytes) -> Result<(), TransportError>;
    /// Bytes that can be queued now without dropping anything; room actors skip a subscriber
    /// for a tick when this is too small (the next tick then carries fresher state).
    fn buffer_space(&self) -> usize;
}

/// One connection between a client and the server: reliable streams plus best-effort
/// datagrams. Either end may open streams; the protocol decides who opens which (SPEC §2).
pub trait Session: Send + Sync + 'static {
    /// Sending half of a stream; `shutdown()` finishes it.
    type Send: AsyncWrite + Unpin + Send + 'static;
    /// Receiving half of a stream.
    type Recv: AsyncRead + Unpin + Send + 'static;

    /// Which transport this is.
    fn kind(&self) -> TransportKind;
    /// Opens a bidirectional stream to the peer.
    fn open_bi(&self) -> impl Future<Output = Result<(Self::Send, Self::Recv), TransportError>> + Send;
    /// Waits for the peer to open a bidirectional stream.
    fn accept_bi(&self) -> impl Future<Output = Result<(Self::Send, Self::Recv), TransportError>> + Send;
    /// Opens a unidirectional stream to the peer.
    fn open_uni(&self) -> impl Future<Output = Result<Self::Send, TransportError>> + Send;
    /// Waits for the peer to open a unidirectional stream.
    fn accept_uni(&self) -> impl Future<Output = Result<Self::Recv, TransportError>> + Send;
    /// Waits for the next datagram from the peer.
    fn recv_datagram(&self) -> impl Future<Output = Result<Bytes, TransportError>> + Send;
    /// A handle to send datagrams, for room actors and client drivers.
    fn datagram_sender(&self) -> Arc<dyn DatagramSender>;
    /// Closes the session with a wire code (SPEC §14.2) and a short reason.
    fn close(&self, code: ErrorCode, reason: &str);
    /// How the connection ended, or `None` while it is open. Never waits: a stream read or
    /// accept that failed because the connection closed can ask at once.
    fn closure(&self) -> Option<Closure>;
    /// Waits until the connection is closed and says why.
    fn closed(&self) -> impl Future<Output = CloseReason> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_name_their_code() {
        let shutdown = CloseReason { code: Some(ErrorCode::ShuttingDown), reason: "bye".into() };
        assert_eq!(
            TransportError::Closed(shutdown).to_string(),
            "connection closed: ShuttingDown (501): bye"
        );
        assert_eq!(TransportError::closed("timed out").to_string(), "connection closed: timed out");
    }
}
