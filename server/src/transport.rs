//! One [`Session`] trait over every transport: reliable streams plus best-effort datagrams.
//! WebTransport (`wtransport`) and raw QUIC (`quinn`) implement it here, WebSocket in
//! [`crate::websocket`]. Everything above this module is generic over `Session` and never asks
//! which transport it has, except for metrics labels ([`Session::kind`]).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use easel_proto::ErrorCode;
use tokio::io::{AsyncRead, AsyncWrite};

/// Which transport carries a session (for metrics and logs only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// WebTransport over HTTP/3.
    WebTransport,
    /// Raw QUIC with ALPN `easel/1`.
    Quic,
    /// WebSocket fallback.
    WebSocket,
}

impl TransportKind {
    /// Label used in metrics.
    pub const fn label(self) -> &'static str {
        match self {
            Self::WebTransport => "webtransport",
            Self::Quic => "quic",
            Self::WebSocket => "websocket",
        }
    }
}

/// A transport failure: the peer went away, or a stream or datagram could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The connection is closed (by either side, or idle timeout).
    #[error("connection closed: {0}")]
    Closed(String),
    /// Datagrams are not supported or were disabled by the peer.
    #[error("datagrams unavailable: {0}")]
    DatagramsUnavailable(String),
    /// A datagram was larger than the path allows.
    #[error("datagram too large for the path")]
    DatagramTooLarge,
}

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

/// Classifies a QUIC connection's end; `None` while it is open.
fn quic_closure(conn: &quinn::Connection) -> Option<Closure> {
    Some(match conn.close_reason()? {
        quinn::ConnectionError::ApplicationClosed(c) if c.error_code.into_inner() == 0 => Closure::Clean,
        // Besides our own closes, wtransport closes locally when the peer ends the session
        // with a CLOSE_WEBTRANSPORT_SESSION capsule: a deliberate end.
        quinn::ConnectionError::LocallyClosed => Closure::Clean,
        _ => Closure::Lost,
    })
}

/// Sends datagrams for one session; shared with room actors, which never await it.
pub trait DatagramSender: Send + Sync + 'static {
    /// Queues a datagram. Never blocks; a full buffer drops the oldest queued datagrams.
    fn send(&self, datagram: Bytes) -> Result<(), TransportError>;
    /// Bytes that can be queued now without dropping anything; room actors skip a subscriber
    /// for a tick when this is too small (the next tick then carries fresher state).
    fn buffer_space(&self) -> usize;
}

/// A connected client session: reliable streams plus best-effort datagrams.
pub trait Session: Send + Sync + 'static {
    /// Sending half of a stream; `shutdown()` finishes it.
    type Send: AsyncWrite + Unpin + Send + 'static;
    /// Receiving half of a stream.
    type Recv: AsyncRead + Unpin + Send + 'static;

    /// Which transport this is.
    fn kind(&self) -> TransportKind;
    /// Waits for the peer to open a bidirectional stream.
    fn accept_bi(&self) -> impl Future<Output = Result<(Self::Send, Self::Recv), TransportError>> + Send;
    /// Opens a unidirectional stream to the peer.
    fn open_uni(&self) -> impl Future<Output = Result<Self::Send, TransportError>> + Send;
    /// Waits for the next datagram from the peer.
    fn recv_datagram(&self) -> impl Future<Output = Result<Bytes, TransportError>> + Send;
    /// A handle to send datagrams, for room actors.
    fn datagram_sender(&self) -> Arc<dyn DatagramSender>;
    /// Closes the session with a wire code (SPEC §14.2) and a short reason.
    fn close(&self, code: ErrorCode, reason: &str);
    /// How the connection ended, or `None` while it is open. Never waits: a stream read or
    /// accept that failed because the connection closed can ask at once.
    fn closure(&self) -> Option<Closure>;
}

fn closed(e: impl std::fmt::Display) -> TransportError {
    TransportError::Closed(e.to_string())
}

/// Raw QUIC session (ALPN `easel/1`).
#[derive(Debug, Clone)]
pub struct QuicSession(pub quinn::Connection);

impl DatagramSender for quinn::Connection {
    fn send(&self, datagram: Bytes) -> Result<(), TransportError> {
        self.send_datagram(datagram).map_err(|e| match e {
            quinn::SendDatagramError::TooLarge => TransportError::DatagramTooLarge,
            quinn::SendDatagramError::ConnectionLost(e) => closed(e),
            other => TransportError::DatagramsUnavailable(other.to_string()),
        })
    }

    fn buffer_space(&self) -> usize {
        self.datagram_send_buffer_space()
    }
}

impl Session for QuicSession {
    type Send = quinn::SendStream;
    type Recv = quinn::RecvStream;

    fn kind(&self) -> TransportKind {
        TransportKind::Quic
    }

    async fn accept_bi(&self) -> Result<(Self::Send, Self::Recv), TransportError> {
        self.0.accept_bi().await.map_err(closed)
    }

    async fn open_uni(&self) -> Result<Self::Send, TransportError> {
        self.0.open_uni().await.map_err(closed)
    }

    async fn recv_datagram(&self) -> Result<Bytes, TransportError> {
        self.0.read_datagram().await.map_err(closed)
    }

    fn datagram_sender(&self) -> Arc<dyn DatagramSender> {
        Arc::new(self.0.clone())
    }

    fn close(&self, code: ErrorCode, reason: &str) {
        self.0.close(quinn::VarInt::from_u32(code.to_u16().into()), reason.as_bytes());
    }

    fn closure(&self) -> Option<Closure> {
        quic_closure(&self.0)
    }
}

/// WebTransport session.
#[derive(Debug, Clone)]
pub struct WtSession(pub wtransport::Connection);

impl DatagramSender for wtransport::Connection {
    fn send(&self, datagram: Bytes) -> Result<(), TransportError> {
        self.send_datagram(datagram).map_err(|e| match e {
            wtransport::error::SendDatagramError::TooLarge => TransportError::DatagramTooLarge,
            other => TransportError::DatagramsUnavailable(other.to_string()),
        })
    }

    fn buffer_space(&self) -> usize {
        self.quic_connection().datagram_send_buffer_space()
    }
}

impl Session for WtSession {
    type Send = wtransport::SendStream;
    type Recv = wtransport::RecvStream;

    fn kind(&self) -> TransportKind {
        TransportKind::WebTransport
    }

    async fn accept_bi(&self) -> Result<(Self::Send, Self::Recv), TransportError> {
        self.0.accept_bi().await.map_err(closed)
    }

    async fn open_uni(&self) -> Result<Self::Send, TransportError> {
        self.0.open_uni().await.map_err(closed)?.await.map_err(closed)
    }

    async fn recv_datagram(&self) -> Result<Bytes, TransportError> {
        self.0.receive_datagram().await.map(|d| d.payload()).map_err(closed)
    }

    fn datagram_sender(&self) -> Arc<dyn DatagramSender> {
        Arc::new(self.0.clone())
    }

    fn close(&self, code: ErrorCode, reason: &str) {
        self.0.close(wtransport::VarInt::from_u32(code.to_u16().into()), reason.as_bytes());
    }

    fn closure(&self) -> Option<Closure> {
        quic_closure(self.0.quic_connection())
    }
}
