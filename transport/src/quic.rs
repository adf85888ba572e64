//! QUIC, as raw QUIC and WebTransport both use it: the transport settings of each end, how a
//! QUIC connection's end is classified, and (feature `quic`) the raw QUIC [`QuicSession`]
//! with ALPN [`easel_proto::ALPN`].

use std::net::SocketAddr;
#[cfg(feature = "quic")]
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "quic")]
use bytes::Bytes;
use easel_proto::ErrorCode;

#[cfg(feature = "quic")]
use crate::{CloseReason, DatagramSender, Session, TransportError, TransportKind};
use crate::{Closure, Side};

/// Keep-alives every 5 s, from both ends, keep a quiet session open through NATs.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// The server gives a silent path up after 30 s (QUIC's usual default), inside which the
/// client's own, shorter timeout fires first.
pub const SERVER_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The client gives a silent path up after 12 s (two keep-alives missed and then some), so a
/// client on a dead network reconnects and resumes well inside the server's 30 s resume grace
/// window instead of waiting for QUIC's 30 s default.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(12);
/// Datagram buffers: cursors are latest-wins, so a backed-up receiver should lose stale ones
/// rather than queue them.
const DATAGRAM_BUFFER: usize = 64 * 1024;
/// Datagrams a server connection buffers before its session reads them. Why: quinn's default
/// is 1.25 MB per connection, a backlog of stale cursors and heartbeats nobody wants, and at
/// 10,000 connections a server that falls behind could hold 12 GB of them. 16 KiB is a dozen
/// full-size datagrams or hundreds of cursors (seconds of one client's traffic); the peer may
/// still send datagrams of any size up to this, far above the 1,200 bytes the protocol uses.
const SERVER_DATAGRAM_RECEIVE: usize = 16 * 1024;
/// Unread bytes a server accepts on one client stream. Why: clients send small frames
/// (control, edits of a few hundred bytes); the session reads a stream as it arrives, so the
/// window only has to cover an upload's bandwidth × RTT, not a whole frame. 256 KiB is 5 MB/s
/// at 50 ms, so a maximal (1 MiB) edit still arrives in a few round trips. quinn's default,
/// 1.25 MB for each of 32 streams, lets one client make the server buffer 40 MB.
const SERVER_STREAM_RECEIVE_WINDOW: u32 = 256 * 1024;
/// Unread bytes a server accepts on one connection, all streams together. Why: quinn's
/// default is unlimited (only the per-stream windows bound it).
const SERVER_RECEIVE_WINDOW: u32 = 1024 * 1024;
/// Bytes a server connection keeps sent but unacknowledged (or queued to send) across its
/// streams. Why: this is what a snapshot to a slow or distant client holds in memory; quinn's
/// default, 10 MB per connection, is 20 GB for a lecture of 2,000 joining at once. 2 MiB still
/// streams a snapshot at 20 MB/s over a 100 ms path, and the room stream is rarely more than
/// a few KiB ahead of its acks.
const SERVER_SEND_WINDOW: u64 = 2 * 1024 * 1024;

/// Ack-eliciting packets a client may receive before it must acknowledge them (the QUIC ACK
/// frequency extension, which quinn clients support). Why: a receiver of cursor batches
/// otherwise acknowledges every other packet, and each ACK costs the server a receive, a
/// decryption and a wake-up of the connection (measured at 50 clients: 65% fewer `recvmmsg`,
/// half the context switches, 7% less CPU). The peer still acknowledges within its
/// `max_ack_delay`, and at once when packets arrive out of order, so losses are found as soon
/// as without it.
const ACK_ELICITING_THRESHOLD: u32 = 9;

/// The QUIC transport settings of `side`'s endpoint (both server listeners share the server's).
pub fn transport_config(side: Side) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    match side {
        Side::Server => {
            t.max_idle_timeout(quinn::IdleTimeout::try_from(SERVER_IDLE_TIMEOUT).ok());
            // The room checks the space left and skips a tick for a backed-up receiver.
            t.datagram_send_buffer_size(DATAGRAM_BUFFER);
            t.datagram_receive_buffer_size(Some(SERVER_DATAGRAM_RECEIVE));
            t.stream_receive_window(quinn::VarInt::from_u32(SERVER_STREAM_RECEIVE_WINDOW));
            t.receive_window(quinn::VarInt::from_u32(SERVER_RECEIVE_WINDOW));
            t.send_window(SERVER_SEND_WINDOW);
            t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(32));
            t.max_concurrent_uni_streams(quinn::VarInt::from_u32(8));
            let mut acks = quinn::AckFrequencyConfig::default();
            acks.ack_eliciting_threshold(quinn::VarInt::from_u32(ACK_ELICITING_THRESHOLD));
            t.ack_frequency_config(Some(acks));
        }
        Side::Client => return client_transport_config(CLIENT_IDLE_TIMEOUT),
    }
    t
}

/// A client's QUIC transport settings when it gives a silent path up after `idle_timeout`
/// (QUIC uses the smaller of both ends' timeouts, so the server's side follows it).
pub fn client_transport_config(idle_timeout: Duration) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(client_keep_alive(idle_timeout)));
    t.max_idle_timeout(quinn::IdleTimeout::try_from(idle_timeout).ok());
    // A busy app should lose stale cursor batches, not read a backlog.
    t.datagram_receive_buffer_size(Some(DATAGRAM_BUFFER));
    t
}

/// The keep-alive interval of a client with `idle_timeout`: [`KEEP_ALIVE`], or a third of a
/// shorter timeout, so that a quiet but healthy path is never taken for a dead one.
pub fn client_keep_alive(idle_timeout: Duration) -> Duration {
    KEEP_ALIVE.min(idle_timeout / 3)
}

/// Classifies a QUIC connection's end.
pub(crate) fn closure_of(e: &quinn::ConnectionError) -> Closure {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) if c.error_code.into_inner() == 0 => Closure::Clean,
        // Besides our own closes, wtransport closes locally when the peer ends the session
        // with a CLOSE_WEBTRANSPORT_SESSION capsule: a deliberate end.
        quinn::ConnectionError::LocallyClosed => Closure::Clean,
        _ => Closure::Lost,
    }
}

/// The Easel code and reason of an application close; what happened otherwise.
#[cfg(feature = "quic")]
fn close_reason(e: &quinn::ConnectionError) -> CloseReason {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => CloseReason {
            code: easel_code(c.error_code.into_inner()),
            reason: String::from_utf8_lossy(&c.reason).into_owned(),
        },
        other => CloseReason::other(other),
    }
}

pub(crate) fn easel_code(code: u64) -> Option<ErrorCode> {
    u16::try_from(code).ok().and_then(ErrorCode::from_u16)
}

pub(crate) fn wire_code(code: ErrorCode) -> u32 {
    code.to_u16().into()
}

/// The wildcard address of `addr`'s family, any port: where a client endpoint binds.
pub(crate) fn unspecified(addr: SocketAddr) -> SocketAddr {
    if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    }
}

/// The receive buffer a [`SharedEndpoint`] asks its socket for (the kernel caps it at
/// `net.core.rmem_max`): a round of the server's packets to every connection on the socket
/// arrives at once, and the default (~200 KiB) would drop part of a burst to a few hundred.
#[cfg(feature = "quic")]
const SHARED_RECEIVE_BUFFER: usize = 4 << 20;

/// A client's QUIC endpoint (one UDP socket) that many connections share, for a program that
/// runs many clients, such as a load generator: its packets then arrive on one socket, read
/// in batches by one task, instead of one socket, one wake-up and one read per packet each.
/// A single client needs none: without one, each connection binds its own (the default).
#[cfg(feature = "quic")]
#[derive(Debug, Clone)]
pub struct SharedEndpoint(quinn::Endpoint);

#[cfg(feature = "quic")]
impl SharedEndpoint {
    /// Binds an endpoint for connections to servers of `server`'s address family.
    pub fn bind(server: SocketAddr) -> Result<Self, TransportError> {
        let err = |e: std::io::Error| TransportError::Connect(format!("binding a shared endpoint: {e}"));
        let bind = unspecified(server);
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(bind),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .map_err(err)?;
        // Best effort: a smaller buffer only means losses in the largest bursts.
        let _ = socket.set_recv_buffer_size(SHARED_RECEIVE_BUFFER);
        socket.bind(&bind.into()).map_err(err)?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| TransportError::Connect("a shared endpoint needs a tokio runtime".into()))?;
        let endpoint = quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket.into(), runtime)
            .map_err(err)?;
        Ok(Self(endpoint))
    }

    /// How many connections are open on it.
    pub fn connections(&self) -> usize {
        self.0.open_connections()
    }
}

/// A raw QUIC session (ALPN [`easel_proto::ALPN`]).
#[cfg(feature = "quic")]
#[derive(Debug, Clone)]
pub struct QuicSession {
    conn: quinn::Connection,
    /// A client's endpoint (its UDP socket, its own or shared), held as long as the connection.
    _endpoint: Option<quinn::Endpoint>,
}

#[cfg(feature = "quic")]
impl QuicSession {
    /// A session on a connection the server accepted.
    pub fn new(conn: quinn::Connection) -> Self {
        Self { conn, _endpoint: None }
    }

    /// The QUIC connection.
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }
}

/// Connects to a server's raw QUIC port as `server_name`, verifying its certificate by
/// `cert_hash` or against the system's roots.
#[cfg(feature = "quic")]
pub async fn connect(
    addr: SocketAddr,
    server_name: &str,
    cert_hash: Option<[u8; 32]>,
) -> Result<QuicSession, TransportError> {
    connect_with(addr, server_name, cert_hash, CLIENT_IDLE_TIMEOUT, None).await
}

/// [`connect`], giving a silent path up after `idle_timeout` instead of
/// [`CLIENT_IDLE_TIMEOUT`], on `shared` if given (else on an endpoint of its own).
#[cfg(feature = "quic")]
pub async fn connect_with(
    addr: SocketAddr,
    server_name: &str,
    cert_hash: Option<[u8; 32]>,
    idle_timeout: Duration,
    shared: Option<&SharedEndpoint>,
) -> Result<QuicSession, TransportError> {
    let connect_err = |e: &dyn std::fmt::Display| TransportError::Connect(e.to_string());
    let tls = crate::tls::client_config(cert_hash, easel_proto::ALPN)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| connect_err(&e))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(client_transport_config(idle_timeout)));
    let endpoint = match shared {
        Some(shared) => shared.0.clone(),
        None => quinn::Endpoint::client(unspecified(addr)).map_err(|e| connect_err(&e))?,
    };
    let connecting = endpoint.connect_with(config, addr, server_name).map_err(|e| connect_err(&e))?;
    let conn = connecting.await.map_err(|e| TransportError::Closed(close_reason(&e)))?;
    Ok(QuicSession { conn, _endpoint: Some(endpoint) })
}

#[cfg(feature = "quic")]
fn closed(e: quinn::ConnectionError) -> TransportError {
    TransportError::Closed(close_reason(&e))
}

#[cfg(feature = "quic")]
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

#[cfg(feature = "quic")]
impl Session for QuicSession {
    type Send = quinn::SendStream;
    type Recv = quinn::RecvStream;

    fn kind(&self) -> TransportKind {
        TransportKind::Quic
    }

    async fn open_bi(&self) -> Result<(Self::Send, Self::Recv), TransportError> {
        self.conn.open_bi().await.map_err(closed)
    }

    async fn accept_bi(&self) -> Result<(Self::Send, Self::Recv), TransportError> {
        self.conn.accept_bi().await.map_err(closed)
    }

    async fn open_uni(&self) -> Result<Self::Send, TransportError> {
        self.conn.open_uni().await.map_err(closed)
    }

    async fn accept_uni(&self) -> Result<Self::Recv, TransportError> {
        self.conn.accept_uni().await.map_err(closed)
    }

    async fn recv_datagram(&self) -> Result<Bytes, TransportError> {
        self.conn.read_datagram().await.map_err(closed)
    }

    fn datagram_sender(&self) -> Arc<dyn DatagramSender> {
        Arc::new(self.conn.clone())
    }

    fn close(&self, code: ErrorCode, reason: &str) {
        self.conn.close(quinn::VarInt::from_u32(wire_code(code)), reason.as_bytes());
    }

    fn closure(&self) -> Option<Closure> {
        self.conn.close_reason().map(|e| closure_of(&e))
    }

    async fn closed(&self) -> CloseReason {
        close_reason(&self.conn.closed().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(code: u32) -> quinn::ConnectionError {
        quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: quinn::VarInt::from_u32(code),
            reason: "why".into(),
        })
    }

    #[test]
    fn only_code_zero_and_local_closes_are_clean() {
        assert_eq!(closure_of(&app(0)), Closure::Clean);
        assert_eq!(closure_of(&quinn::ConnectionError::LocallyClosed), Closure::Clean);
        assert_eq!(closure_of(&app(501)), Closure::Lost);
        assert_eq!(closure_of(&quinn::ConnectionError::TimedOut), Closure::Lost);
    }

    #[cfg(feature = "quic")]
    #[test]
    fn an_application_close_carries_its_easel_code() {
        let reason = close_reason(&app(501));
        assert_eq!((reason.code, reason.reason.as_str()), (Some(ErrorCode::ShuttingDown), "why"));
        assert_eq!(close_reason(&app(70_000)).code, None);
    }
}
