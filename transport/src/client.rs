//! A low-level client connection: one Easel session over raw QUIC, WebTransport or
//! WebSocket, exposing the protocol's channels as they are (control stream, room streams,
//! snapshot streams, datagrams). No reconnects, no document: the SDK drives it, and tools,
//! tests and load generators use it directly.
//!
//! ```no_run
//! # async fn demo() -> Result<(), easel_transport::client::ClientError> {
//! use easel_transport::client::{Connection, Options, Transport};
//! let options = Options::new("127.0.0.1:4434".parse().unwrap(), Transport::Quic)
//!     .with_cert_hash("…sha-256 hex from GET /cert-hash…")?;
//! let conn = Connection::connect(&options, "token", "my-install-id").await?;
//! let mut room = conn.join("school/math/monday", None).await?;
//! println!("I am participant {}", room.joined().participant);
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use easel_proto::message::{Hello, Join, Joined, SyncKind, Welcome};
use easel_proto::{Datagram, ErrorCode, Message, PROTOCOL_VERSION, limits};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Mutex;

pub use crate::TransportKind as Transport;
use crate::boxed::{BoxRecv, BoxSend, BoxSession};
use crate::framed::{self, Read, WriteError};
use crate::{DatagramSender, Session, TransportError};

/// Why a connection or a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server refused with a wire code (a `Fault`).
    #[error("refused ({code}): {message}")]
    Refused {
        /// The code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The server will not take the session now and said when to come back: `GoAway` in place
    /// of `Welcome` (`Overloaded`, SPEC §5.1), or an attempt shed with HTTP `503` and
    /// `Retry-After` before the WebSocket upgrade. Wait at least `retry_after` (plus jitter).
    #[error("go away ({code}): {message}; retry after {retry_after:?}")]
    GoAway {
        /// Why (`Overloaded`).
        code: ErrorCode,
        /// The server's hint.
        retry_after: Duration,
        /// The server's explanation.
        message: String,
    },
    /// The connection or stream closed; `code` is the server's close code when it gave one.
    #[error("closed ({code:?}): {reason}")]
    Closed {
        /// The application close code, if the peer closed with one.
        code: Option<ErrorCode>,
        /// Why.
        reason: String,
    },
    /// Bytes from the server did not decode.
    #[error("protocol: {0}")]
    Protocol(#[from] easel_proto::Error),
    /// The server sent a valid message we did not expect here.
    #[error("unexpected {0:?}")]
    Unexpected(easel_proto::Kind),
    /// Connecting failed (TLS, address, configuration).
    #[error("connect: {0}")]
    Connect(String),
}

impl From<TransportError> for ClientError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Closed(why) => Self::Closed { code: why.code, reason: why.reason },
            TransportError::Connect(why) => Self::Connect(why),
            TransportError::RetryAfter(retry_after) => Self::GoAway {
                code: ErrorCode::Overloaded,
                retry_after,
                message: "connection attempt shed".into(),
            },
            other => Self::Closed { code: None, reason: other.to_string() },
        }
    }
}

impl From<WriteError> for ClientError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Encode(e) => Self::Protocol(e),
            WriteError::Io(e) => closed_io(e),
        }
    }
}

fn closed_io(e: std::io::Error) -> ClientError {
    ClientError::Closed { code: None, reason: e.to_string() }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Options {
    /// Server address: its UDP port for QUIC and WebTransport, its HTTP port for WebSocket.
    pub addr: SocketAddr,
    /// Transport.
    pub transport: Transport,
    /// TLS server name (default `localhost`).
    pub server_name: String,
    /// Accept exactly the certificate with this SHA-256 (a self-signed dev server's
    /// `/cert-hash`); `None` verifies against the system's roots.
    pub cert_hash: Option<[u8; 32]>,
    /// WebSocket only: speak TLS (`wss://`, e.g. to a TLS-terminating proxy in front of the
    /// HTTP port), verified like QUIC (`cert_hash` or the system's roots).
    pub tls: bool,
    /// QUIC and WebTransport: give a silent path up after this long (`None`: `quic`'s
    /// `CLIENT_IDLE_TIMEOUT`, 12 s); keep-alives then go at least three times as often.
    pub idle_timeout: Option<Duration>,
    /// QUIC only: connect on this endpoint, shared with other connections, instead of one of
    /// the connection's own (`None`, the default; see [`crate::quic::SharedEndpoint`]).
    #[cfg(feature = "quic")]
    pub quic_endpoint: Option<crate::quic::SharedEndpoint>,
}

impl Options {
    /// Options for `addr` over `transport`, verified against system roots.
    pub fn new(addr: SocketAddr, transport: Transport) -> Self {
        Self {
            addr,
            transport,
            server_name: "localhost".into(),
            cert_hash: None,
            tls: false,
            idle_timeout: None,
            #[cfg(feature = "quic")]
            quic_endpoint: None,
        }
    }

    /// Pins the server certificate by its SHA-256, as lowercase or uppercase hex.
    pub fn with_cert_hash(mut self, hex_digest: &str) -> Result<Self, ClientError> {
        let bytes =
            hex::decode(hex_digest.trim()).map_err(|e| ClientError::Connect(format!("cert hash: {e}")))?;
        let hash: [u8; 32] =
            bytes.try_into().map_err(|_| ClientError::Connect("cert hash must be 32 bytes".into()))?;
        self.cert_hash = Some(hash);
        Ok(self)
    }
}

/// Opens a session over the transport `options` name.
async fn open(options: &Options) -> Result<BoxSession, TransportError> {
    let (addr, name, hash) = (options.addr, options.server_name.as_str(), options.cert_hash);
    match options.transport {
        #[cfg(feature = "quic")]
        Transport::Quic => {
            let idle = options.idle_timeout.unwrap_or(crate::quic::CLIENT_IDLE_TIMEOUT);
            let shared = options.quic_endpoint.as_ref();
            crate::quic::connect_with(addr, name, hash, idle, shared).await.map(BoxSession::new)
        }
        #[cfg(feature = "webtransport")]
        Transport::WebTransport => {
            let idle = options.idle_timeout.unwrap_or(crate::quic::CLIENT_IDLE_TIMEOUT);
            crate::webtransport::connect_with(addr, name, hash, idle).await.map(BoxSession::new)
        }
        #[cfg(feature = "websocket")]
        Transport::WebSocket => crate::ws::connect(addr, name, options.tls, hash).await.map(BoxSession::new),
        #[cfg(not(all(feature = "quic", feature = "webtransport", feature = "websocket")))]
        other => {
            let _ = (addr, name, hash);
            Err(TransportError::Connect(format!("built without the {} transport", other.label())))
        }
    }
}

/// Messages of one stream from the server.
pub struct Reader(framed::Reader<BoxRecv>);

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

impl Reader {
    fn new(recv: BoxRecv) -> Self {
        Self(framed::Reader::new(recv, limits::MAX_FRAME_LEN))
    }

    /// The next message, or `None` when the stream ended cleanly at a frame boundary.
    pub async fn next(&mut self) -> Result<Option<Message>, ClientError> {
        match self.0.next().await {
            Read::Message(m) => Ok(Some(m)),
            Read::Bad(e) => Err(ClientError::Protocol(e)),
            Read::End => match self.0.broken() {
                None => Ok(None),
                Some(e) => Err(ClientError::Closed { code: None, reason: e.to_string() }),
            },
        }
    }
}

/// One connected, authenticated session.
pub struct Connection {
    session: BoxSession,
    datagrams: Arc<dyn DatagramSender>,
    control_send: Mutex<BoxSend>,
    control_recv: Mutex<Reader>,
    welcome: Welcome,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("welcome", &self.welcome).finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects, sends `Hello` with `token`, and waits for `Welcome`.
    pub async fn connect(options: &Options, token: &str, client_id: &str) -> Result<Self, ClientError> {
        Self::connect_resuming(options, token, client_id, None).await
    }

    /// Like [`Connection::connect`], asking to resume the session named by `resume` (the
    /// `resume_token` of an earlier `Welcome`, SPEC §5.4); `Welcome::resumed` says whether the
    /// server still held it.
    pub async fn connect_resuming(
        options: &Options,
        token: &str,
        client_id: &str,
        resume: Option<Vec<u8>>,
    ) -> Result<Self, ClientError> {
        let hello = Hello {
            versions: vec![PROTOCOL_VERSION],
            client_id: client_id.to_owned(),
            client: format!("easel-client/{}", env!("CARGO_PKG_VERSION")),
            token: token.to_owned(),
            resume,
        };
        Self::handshake(options, hello).await
    }

    /// Connects and sends `hello` as it is, then waits for `Welcome`.
    pub async fn handshake(options: &Options, hello: Hello) -> Result<Self, ClientError> {
        let session = open(options).await?;
        let (mut send, recv) = session.open_bi().await?;
        let mut reader = Reader::new(recv);
        framed::write(&mut send, &Message::from(hello)).await?;
        let welcome = match reader.next().await {
            Ok(Some(Message::Welcome(w))) => w,
            Ok(Some(Message::Fault(f))) => return Err(refused(f.code, f.message)),
            Ok(Some(Message::GoAway(g))) => {
                // Closed at once, as a client reading a GoAway should (SPEC §5.5).
                session.close(ErrorCode::Normal, "");
                return Err(ClientError::GoAway {
                    code: ErrorCode::from_u16(g.code).unwrap_or(ErrorCode::Overloaded),
                    retry_after: Duration::from_millis(u64::from(g.retry_after_ms)),
                    message: g.message,
                });
            }
            Ok(Some(other)) => return Err(ClientError::Unexpected(other.kind())),
            Ok(None) | Err(ClientError::Closed { .. }) => return Err(close_reason(&session).await),
            Err(e) => return Err(e),
        };
        Ok(Self {
            datagrams: session.datagram_sender(),
            session,
            control_send: Mutex::new(send),
            control_recv: Mutex::new(reader),
            welcome,
        })
    }

    /// Connects and writes `bytes` as the first thing on the control stream, then returns the
    /// server's first answer (for testing how a server treats bad handshakes).
    pub async fn probe(options: &Options, bytes: &[u8]) -> Result<Message, ClientError> {
        let session = open(options).await?;
        let (mut send, recv) = session.open_bi().await?;
        send.write_all(bytes).await.map_err(closed_io)?;
        match Reader::new(recv).next().await {
            Ok(Some(m)) => Ok(m),
            Ok(None) | Err(ClientError::Closed { .. }) => Err(close_reason(&session).await),
            Err(e) => Err(e),
        }
    }

    /// The server's `Welcome`.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Sends a control-stream message and returns the next control-stream message.
    pub async fn request(&self, message: &Message) -> Result<Message, ClientError> {
        let mut reader = self.control_recv.lock().await;
        self.send_control(message).await?;
        match reader.next().await? {
            Some(m) => Ok(m),
            None => Err(close_reason(&self.session).await),
        }
    }

    /// The next message the server sends unprompted on the control stream (e.g. `GoAway`).
    pub async fn control_next(&self) -> Result<Option<Message>, ClientError> {
        self.control_recv.lock().await.next().await
    }

    /// Sends a message on the control stream without waiting for an answer.
    pub async fn send_control(&self, message: &Message) -> Result<(), ClientError> {
        Ok(framed::write(&mut *self.control_send.lock().await, message).await?)
    }

    /// Opens a room stream and joins `room`; `since` is the client's encoded version vector.
    pub async fn join(&self, room: &str, since: Option<Vec<u8>>) -> Result<RoomStream, ClientError> {
        self.join_with(Join { room: room.to_owned(), name: String::new(), since }).await
    }

    /// Opens a room stream, sends `join` and waits for `Joined`.
    pub async fn join_with(&self, join: Join) -> Result<RoomStream, ClientError> {
        let (mut send, recv) = self.session.open_bi().await?;
        let mut reader = Reader::new(recv);
        framed::write(&mut send, &Message::from(join)).await?;
        match reader.next().await? {
            Some(Message::Joined(joined)) => Ok(RoomStream { send, reader, joined }),
            Some(Message::Fault(f)) => Err(refused(f.code, f.message)),
            Some(other) => Err(ClientError::Unexpected(other.kind())),
            None => {
                Err(ClientError::Closed { code: None, reason: "room stream closed before Joined".into() })
            }
        }
    }

    /// Opens a bidirectional stream with nothing sent yet (for probing the server's handling
    /// of bad input).
    pub async fn open_raw(&self) -> Result<(BoxSend, Reader), ClientError> {
        let (send, recv) = self.session.open_bi().await?;
        Ok((send, Reader::new(recv)))
    }

    /// Waits for the next snapshot stream and reads it whole.
    pub async fn snapshot(&self) -> Result<Snapshot, ClientError> {
        let mut reader = Reader::new(self.session.accept_uni().await?);
        let begin = match reader.next().await? {
            Some(Message::SnapshotBegin(b)) => b,
            Some(other) => return Err(ClientError::Unexpected(other.kind())),
            None => return Err(ClientError::Closed { code: None, reason: "empty snapshot stream".into() }),
        };
        let mut data = Vec::with_capacity(usize::try_from(begin.total_len).unwrap_or(0).min(64 << 20));
        while let Some(message) = reader.next().await? {
            match message {
                Message::SnapshotChunk(c) => data.extend_from_slice(&c.data),
                other => return Err(ClientError::Unexpected(other.kind())),
            }
        }
        if data.len() as u64 != begin.total_len {
            return Err(ClientError::Closed { code: None, reason: "snapshot stream ended early".into() });
        }
        Ok(Snapshot { slot: begin.slot, sync: begin.sync, version: begin.version, data })
    }

    /// Sends a datagram (cursor or heartbeat).
    pub fn send_datagram(&self, datagram: &Datagram) -> Result<(), ClientError> {
        self.send_datagram_bytes(Bytes::from(datagram.encode()?))
    }

    /// Sends raw datagram bytes (for probing the server's handling of bad input).
    pub fn send_datagram_bytes(&self, bytes: Bytes) -> Result<(), ClientError> {
        Ok(self.datagrams.send(bytes)?)
    }

    /// The next datagram from the server.
    pub async fn recv_datagram(&self) -> Result<Datagram, ClientError> {
        let bytes = self.session.recv_datagram().await?;
        Ok(Datagram::decode(&bytes)?)
    }

    /// Waits until the connection closes and returns why.
    pub async fn closed(&self) -> ClientError {
        close_reason(&self.session).await
    }

    /// Closes the connection with `code`. Dropping the connection closes it with `Normal`.
    pub fn close(&self, code: ErrorCode) {
        self.session.close(code, "");
    }
}

/// A joined room's reliable stream.
pub struct RoomStream {
    send: BoxSend,
    reader: Reader,
    joined: Joined,
}

impl std::fmt::Debug for RoomStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomStream").field("joined", &self.joined).finish_non_exhaustive()
    }
}

impl RoomStream {
    /// The server's `Joined`.
    pub fn joined(&self) -> &Joined {
        &self.joined
    }

    /// Sends a message on the room stream.
    pub async fn send(&mut self, message: &Message) -> Result<(), ClientError> {
        Ok(framed::write(&mut self.send, message).await?)
    }

    /// Writes raw bytes on the room stream (for probing the server's handling of bad input).
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.send.write_all(bytes).await.map_err(closed_io)
    }

    /// The next message from the room, `None` once the server finished the stream.
    pub async fn next(&mut self) -> Result<Option<Message>, ClientError> {
        self.reader.next().await
    }

    /// Finishes our side of the stream.
    pub async fn finish(&mut self) -> Result<(), ClientError> {
        self.send.shutdown().await.map_err(closed_io)
    }

    /// Splits the stream so that writing never waits for reading: the sending half, the
    /// reader, and the server's `Joined`.
    pub fn into_split(self) -> (RoomSender, Reader, Joined) {
        (RoomSender { send: self.send }, self.reader, self.joined)
    }
}

/// The sending half of a room stream (see [`RoomStream::into_split`]).
pub struct RoomSender {
    send: BoxSend,
}

impl std::fmt::Debug for RoomSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomSender").finish_non_exhaustive()
    }
}

impl RoomSender {
    /// Sends a message on the room stream.
    pub async fn send(&mut self, message: &Message) -> Result<(), ClientError> {
        Ok(framed::write(&mut self.send, message).await?)
    }

    /// Finishes our side of the stream.
    pub async fn finish(&mut self) -> Result<(), ClientError> {
        self.send.shutdown().await.map_err(closed_io)
    }
}

/// A state transfer received on a snapshot stream.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The room's slot.
    pub slot: u16,
    /// Updates or whole snapshot.
    pub sync: SyncKind,
    /// The version vector the data brings the client to.
    pub version: Vec<u8>,
    /// Loro bytes to import.
    pub data: Vec<u8>,
}

fn refused(code: u16, message: String) -> ClientError {
    ClientError::Refused { code: ErrorCode::from_u16(code).unwrap_or(ErrorCode::Internal), message }
}

async fn close_reason(session: &BoxSession) -> ClientError {
    let why = session.closed().await;
    ClientError::Closed { code: why.code, reason: why.reason }
}
