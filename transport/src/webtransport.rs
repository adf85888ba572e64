//! WebTransport over HTTP/3 (`wtransport`): [`WtSession`] and the client's [`connect`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use easel_proto::ErrorCode;
use wtransport::endpoint::endpoint_side;
use wtransport::error::{ConnectionError, SendDatagramError};

use crate::quic::{self, CLIENT_IDLE_TIMEOUT};
use crate::{CloseReason, Closure, DatagramSender, Session, TransportError, TransportKind};

type ClientEndpoint = wtransport::Endpoint<endpoint_side::Client>;

/// A WebTransport session.
#[derive(Clone)]
pub struct WtSession {
    conn: wtransport::Connection,
    /// A client's own endpoint (its UDP socket), held as long as the connection.
    _endpoint: Option<Arc<ClientEndpoint>>,
}

impl std::fmt::Debug for WtSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WtSession").field("conn", &self.conn).finish_non_exhaustive()
    }
}

impl WtSession {
    /// A session the server accepted.
    pub fn new(conn: wtransport::Connection) -> Self {
        Self { conn, _endpoint: None }
    }

    /// The WebTransport connection.
    pub fn connection(&self) -> &wtransport::Connection {
        &self.conn
    }
}

/// Connects to a server's WebTransport port as `server_name`, verifying its certificate by
/// `cert_hash` (as browsers do with `serverCertificateHashes`) or against the system's roots.
pub async fn connect(
    addr: SocketAddr,
    server_name: &str,
    cert_hash: Option<[u8; 32]>,
) -> Result<WtSession, TransportError> {
    connect_with(addr, server_name, cert_hash, CLIENT_IDLE_TIMEOUT).await
}

/// [`connect`], giving a silent path up after `idle_timeout` instead of
/// [`CLIENT_IDLE_TIMEOUT`].
pub async fn connect_with(
    addr: SocketAddr,
    server_name: &str,
    cert_hash: Option<[u8; 32]>,
    idle_timeout: Duration,
) -> Result<WtSession, TransportError> {
    let builder = wtransport::ClientConfig::builder().with_bind_address(quic::unspecified(addr));
    let builder = match cert_hash {
        Some(hash) => builder.with_server_certificate_hashes([wtransport::tls::Sha256Digest::new(hash)]),
        None => builder.with_native_certs(),
    };
    let config = builder
        .keep_alive_interval(Some(quic::client_keep_alive(idle_timeout)))
        .max_idle_timeout(Some(idle_timeout))
        .map_err(|e| TransportError::Connect(format!("idle timeout: {e}")))?
        .build();
    let endpoint =
        wtransport::Endpoint::client(config).map_err(|e| TransportError::Connect(e.to_string()))?;
    let url = format!("https://{server_name}:{}/", addr.port());
    let conn = endpoint
        .connect(wtransport::endpoint::ConnectOptions::builder(url).build())
        .await
        .map_err(|e| TransportError::Connect(format!("{addr}: {e}")))?;
    Ok(WtSession { conn, _endpoint: Some(Arc::new(endpoint)) })
}

/// The Easel code and reason of a session closed by the application; what happened otherwise.
fn close_reason(e: &ConnectionError) -> CloseReason {
    match e {
        ConnectionError::ApplicationClosed(close) => CloseReason {
            code: quic::easel_code(close.code().into_inner()),
            reason: String::from_utf8_lossy(close.reason()).into_owned(),
        },
        other => CloseReason::other(other),
    }
}

fn closed(e: ConnectionError) -> TransportError {
    TransportError::Closed(close_reason(&e))
}

impl DatagramSender for wtransport::Connection {
    fn send(&self, datagram: Bytes) -> Result<(), TransportError> {
        self.send_datagram(datagram).map_err(|e| match e {
            SendDatagramError::TooLarge => TransportError::DatagramTooLarge,
            SendDatagramError::NotConnected => TransportError::closed(e),
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

    async fn open_bi(&self) -> Result<(Self::Send, Self::Recv), TransportError> {
        self.conn.open_bi().await.map_err(closed)?.await.map_err(TransportError::closed)
    }

    async fn accept_bi(&self) -> Result<(Self::Send, Self::Recv), TransportError> {
        self.conn.accept_bi().await.map_err(closed)
    }

    async fn open_uni(&self) -> Result<Self::Send, TransportError> {
        self.conn.open_uni().await.map_err(closed)?.await.map_err(TransportError::closed)
    }

    async fn accept_uni(&self) -> Result<Self::Recv, TransportError> {
        self.conn.accept_uni().await.map_err(closed)
    }

    async fn recv_datagram(&self) -> Result<Bytes, TransportError> {
        self.conn.receive_datagram().await.map(|d| d.payload()).map_err(closed)
    }

    fn datagram_sender(&self) -> Arc<dyn DatagramSender> {
        Arc::new(self.conn.clone())
    }

    fn close(&self, code: ErrorCode, reason: &str) {
        self.conn.close(wtransport::VarInt::from_u32(quic::wire_code(code)), reason.as_bytes());
    }

    fn closure(&self) -> Option<Closure> {
        self.conn.quic_connection().close_reason().map(|e| quic::closure_of(&e))
    }

    async fn closed(&self) -> CloseReason {
        close_reason(&self.conn.closed().await)
    }
}
