//! A low-level connection: one Easel session over raw QUIC or WebTransport, exposing the
//! protocol's channels as they are (control stream, room streams, snapshot streams,
//! datagrams). No reconnects, no document: tools, tests and load generators use it directly.
//!
//! ```no_run
//! # async fn demo() -> Result<(), easel_client::raw::ClientError> {
//! use easel_client::raw::{Connection, Options, Transport};
//! let options = Options::new("127.0.0.1:4434".parse().unwrap(), Transport::Quic)
//!     .with_cert_hash("…sha-256 hex from GET /cert-hash…")?;
//! let conn = Connection::connect(&options, "token", "my-install-id").await?;
//! let mut room = conn.join("school/math/monday", None).await?;
//! println!("I am participant {}", room.joined().participant);
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use easel_proto::message::{Hello, Join, Joined, SyncKind, Welcome};
use easel_proto::{Datagram, ErrorCode, FrameDecoder, Message, PROTOCOL_VERSION, limits};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::Digest as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// ALPN of raw QUIC sessions.
pub const ALPN: &[u8] = b"easel/1";

/// Which transport to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Raw QUIC, ALPN `easel/1`.
    Quic,
    /// WebTransport over HTTP/3.
    WebTransport,
    /// The WebSocket fallback (`ws://host:http-port/ws`, or `wss://` with [`Options::tls`]);
    /// `Options::addr` is the HTTP address.
    WebSocket,
}

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

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Options {
    /// Server UDP address.
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
}

impl Options {
    /// Options for `addr` over `transport`, verified against system roots.
    pub fn new(addr: SocketAddr, transport: Transport) -> Self {
        Self { addr, transport, server_name: "localhost".into(), cert_hash: None, tls: false }
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

type BoxRead = Pin<Box<dyn AsyncRead + Send>>;
type BoxWrite = Pin<Box<dyn AsyncWrite + Send>>;

enum Conn {
    Quic(quinn::Connection),
    Wt(wtransport::Connection),
    Ws(crate::ws::Mux),
}

/// The client endpoint (its UDP socket); held so it lives exactly as long as the connection.
type Endpoint = Box<dyn std::any::Any + Send + Sync>;

/// A framed reader over one stream.
pub struct Reader {
    recv: BoxRead,
    decoder: FrameDecoder,
    buf: Vec<u8>,
}

impl Reader {
    fn new(recv: BoxRead) -> Self {
        Self { recv, decoder: FrameDecoder::new(limits::MAX_FRAME_LEN), buf: vec![0; 16 * 1024] }
    }

    /// The next message, or `None` when the stream ended cleanly at a frame boundary.
    pub async fn next(&mut self) -> Result<Option<Message>, ClientError> {
        loop {
            if let Some(m) = self.decoder.decode()? {
                return Ok(Some(m));
            }
            let n = self.recv.read(&mut self.buf).await.map_err(closed_io)?;
            if n == 0 {
                return if self.decoder.is_at_boundary() {
                    Ok(None)
                } else {
                    Err(ClientError::Closed { code: None, reason: "stream ended mid-frame".into() })
                };
            }
            self.decoder.push(&self.buf[..n]);
        }
    }
}

fn closed_io(e: std::io::Error) -> ClientError {
    ClientError::Closed { code: None, reason: e.to_string() }
}

async fn write(send: &mut BoxWrite, message: &Message) -> Result<(), ClientError> {
    let bytes = message.encode()?;
    send.write_all(&bytes).await.map_err(closed_io)
}

/// One connected, authenticated session.
pub struct Connection {
    conn: Conn,
    control_send: tokio::sync::Mutex<BoxWrite>,
    control_recv: tokio::sync::Mutex<Reader>,
    welcome: Welcome,
    _endpoint: Endpoint,
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
        let (conn, endpoint) = match options.transport {
            Transport::Quic => connect_quic(options).await?,
            Transport::WebTransport => connect_wt(options).await?,
            Transport::WebSocket => connect_ws(options).await?,
        };
        let (mut send, recv) = open_bi(&conn).await?;
        let mut reader = Reader::new(recv);
        write(&mut send, &Message::from(hello)).await?;
        let welcome = match reader.next().await {
            Ok(Some(Message::Welcome(w))) => w,
            Ok(Some(Message::Fault(f))) => return Err(refused(f.code, f.message)),
            Ok(Some(other)) => return Err(ClientError::Unexpected(other.kind())),
            Ok(None) | Err(ClientError::Closed { .. }) => return Err(close_reason(&conn).await),
            Err(e) => return Err(e),
        };
        Ok(Self {
            conn,
            control_send: tokio::sync::Mutex::new(send),
            control_recv: tokio::sync::Mutex::new(reader),
            welcome,
            _endpoint: endpoint,
        })
    }

    /// Connects and writes `bytes` as the first thing on the control stream, then returns the
    /// server's first answer (for testing how a server treats bad handshakes).
    pub async fn probe(options: &Options, bytes: &[u8]) -> Result<Message, ClientError> {
        let (conn, _endpoint) = match options.transport {
            Transport::Quic => connect_quic(options).await?,
            Transport::WebTransport => connect_wt(options).await?,
            Transport::WebSocket => connect_ws(options).await?,
        };
        let (mut send, recv) = open_bi(&conn).await?;
        send.write_all(bytes).await.map_err(closed_io)?;
        match Reader::new(recv).next().await {
            Ok(Some(m)) => Ok(m),
            Ok(None) | Err(ClientError::Closed { .. }) => Err(close_reason(&conn).await),
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
            None => Err(close_reason(&self.conn).await),
        }
    }

    /// The next message the server sends unprompted on the control stream (e.g. `GoAway`).
    pub async fn control_next(&self) -> Result<Option<Message>, ClientError> {
        self.control_recv.lock().await.next().await
    }

    /// Sends a message on the control stream without waiting for an answer.
    pub async fn send_control(&self, message: &Message) -> Result<(), ClientError> {
        write(&mut *self.control_send.lock().await, message).await
    }

    /// Opens a room stream and joins `room`; `since` is the client's encoded version vector.
    pub async fn join(&self, room: &str, since: Option<Vec<u8>>) -> Result<RoomStream, ClientError> {
        self.join_with(Join { room: room.to_owned(), name: String::new(), since }).await
    }

    /// Opens a room stream, sends `join` and waits for `Joined`.
    pub async fn join_with(&self, join: Join) -> Result<RoomStream, ClientError> {
        let (mut send, recv) = open_bi(&self.conn).await?;
        let mut reader = Reader::new(recv);
        write(&mut send, &Message::from(join)).await?;
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
    pub async fn open_raw(&self) -> Result<(BoxWrite, Reader), ClientError> {
        let (send, recv) = open_bi(&self.conn).await?;
        Ok((send, Reader::new(recv)))
    }

    /// Waits for the next snapshot stream and reads it whole.
    pub async fn snapshot(&self) -> Result<Snapshot, ClientError> {
        let recv: BoxRead = match &self.conn {
            Conn::Quic(c) => Box::pin(c.accept_uni().await.map_err(quic_closed)?),
            Conn::Wt(c) => Box::pin(c.accept_uni().await.map_err(wt_closed)?),
            Conn::Ws(m) => Box::pin(m.accept_uni().await.map_err(closed_io)?),
        };
        let mut reader = Reader::new(recv);
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
        let result = match &self.conn {
            Conn::Quic(c) => c.send_datagram(bytes).map_err(|e| e.to_string()),
            Conn::Wt(c) => c.send_datagram(bytes).map_err(|e| e.to_string()),
            Conn::Ws(m) => m.send_datagram(bytes).map(|_| ()).map_err(|e| e.to_string()),
        };
        result.map_err(|reason| ClientError::Closed { code: None, reason })
    }

    /// The next datagram from the server.
    pub async fn recv_datagram(&self) -> Result<Datagram, ClientError> {
        let bytes = match &self.conn {
            Conn::Quic(c) => c.read_datagram().await.map_err(quic_closed)?,
            Conn::Wt(c) => c.receive_datagram().await.map_err(wt_closed)?.payload(),
            Conn::Ws(m) => m.recv_datagram().await.map_err(closed_io)?,
        };
        Ok(Datagram::decode(&bytes)?)
    }

    /// Waits until the connection closes and returns why.
    pub async fn closed(&self) -> ClientError {
        close_reason(&self.conn).await
    }

    /// Closes the connection with `code`.
    pub fn close(&self, code: ErrorCode) {
        let code = u32::from(code.to_u16());
        match &self.conn {
            Conn::Quic(c) => c.close(quinn::VarInt::from_u32(code), b""),
            Conn::Wt(c) => c.close(wtransport::VarInt::from_u32(code), b""),
            Conn::Ws(m) => m.close(crate::ws::CLOSE_BASE + code as u16, ""),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // QUIC connections close when their last handle goes; the WebSocket mux's tasks hold
        // the socket, so close it explicitly.
        if let Conn::Ws(mux) = &self.conn {
            mux.close(crate::ws::CLOSE_BASE, "");
        }
    }
}

/// A joined room's reliable stream.
pub struct RoomStream {
    send: BoxWrite,
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
        write(&mut self.send, message).await
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
    send: BoxWrite,
}

impl std::fmt::Debug for RoomSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomSender").finish_non_exhaustive()
    }
}

impl RoomSender {
    /// Sends a message on the room stream.
    pub async fn send(&mut self, message: &Message) -> Result<(), ClientError> {
        write(&mut self.send, message).await
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

fn quic_closed(e: quinn::ConnectionError) -> ClientError {
    match e {
        quinn::ConnectionError::ApplicationClosed(close) => ClientError::Closed {
            code: u16::try_from(close.error_code.into_inner()).ok().and_then(ErrorCode::from_u16),
            reason: String::from_utf8_lossy(&close.reason).into_owned(),
        },
        other => ClientError::Closed { code: None, reason: other.to_string() },
    }
}

fn wt_closed(e: wtransport::error::ConnectionError) -> ClientError {
    match e {
        wtransport::error::ConnectionError::ApplicationClosed(close) => ClientError::Closed {
            code: u16::try_from(close.code().into_inner()).ok().and_then(ErrorCode::from_u16),
            reason: String::from_utf8_lossy(close.reason()).into_owned(),
        },
        other => ClientError::Closed { code: None, reason: other.to_string() },
    }
}

async fn close_reason(conn: &Conn) -> ClientError {
    match conn {
        Conn::Quic(c) => quic_closed(c.closed().await),
        Conn::Wt(c) => wt_closed(c.closed().await),
        Conn::Ws(m) => {
            let closed = m.closed().await;
            ClientError::Closed { code: closed.easel_code(), reason: closed.reason }
        }
    }
}

async fn open_bi(conn: &Conn) -> Result<(BoxWrite, BoxRead), ClientError> {
    match conn {
        Conn::Quic(c) => {
            let (s, r) = c.open_bi().await.map_err(quic_closed)?;
            Ok((Box::pin(s), Box::pin(r)))
        }
        Conn::Ws(m) => {
            let (s, r) = m.open_bi().map_err(closed_io)?;
            Ok((Box::pin(s), Box::pin(r)))
        }
        Conn::Wt(c) => {
            let (s, r) = c
                .open_bi()
                .await
                .map_err(wt_closed)?
                .await
                .map_err(|e| ClientError::Closed { code: None, reason: e.to_string() })?;
            Ok((Box::pin(s), Box::pin(r)))
        }
    }
}

fn unspecified(addr: SocketAddr) -> SocketAddr {
    if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    }
}

/// Keep-alives every 5 s keep a quiet session open through NATs.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(5);
/// A path silent this long is given up (two keep-alives missed and then some), so a client on a
/// dead network reconnects and resumes well inside the server's 30 s grace window instead of
/// waiting for QUIC's 30 s default.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(12);

fn transport_config() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    t.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    // Cursor batches are latest-wins: a busy app should lose stale ones, not read a backlog.
    t.datagram_receive_buffer_size(Some(64 * 1024));
    t
}

/// TLS 1.3 with the certificate pinned by hash, or verified against the system's roots.
fn tls_config(options: &Options, alpn: &[u8]) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    let mut tls = match options.cert_hash {
        Some(hash) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedHash { hash, provider }))
            .with_no_client_auth(),
        None => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    tls.alpn_protocols = vec![alpn.to_vec()];
    Ok(tls)
}

async fn connect_quic(options: &Options) -> Result<(Conn, Endpoint), ClientError> {
    let tls = tls_config(options, ALPN)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config()));
    let mut endpoint = quinn::Endpoint::client(unspecified(options.addr))
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    endpoint.set_default_client_config(config);
    let connecting = endpoint
        .connect(options.addr, &options.server_name)
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    let conn = connecting.await.map_err(quic_closed)?;
    Ok((Conn::Quic(conn), Box::new(endpoint)))
}

async fn connect_wt(options: &Options) -> Result<(Conn, Endpoint), ClientError> {
    let builder = wtransport::ClientConfig::builder().with_bind_address(unspecified(options.addr));
    let builder = match options.cert_hash {
        Some(hash) => builder.with_server_certificate_hashes([wtransport::tls::Sha256Digest::new(hash)]),
        None => builder.with_native_certs(),
    };
    let config = builder
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_idle_timeout(Some(IDLE_TIMEOUT))
        .map_err(|e| ClientError::Connect(format!("idle timeout: {e}")))?
        .build();
    let endpoint = wtransport::Endpoint::client(config).map_err(|e| ClientError::Connect(e.to_string()))?;
    let url = format!("https://{}:{}/", options.server_name, options.addr.port());
    // Connect to the address given, not whatever the name resolves to.
    let addr = options.addr;
    let conn = endpoint
        .connect(wtransport::endpoint::ConnectOptions::builder(url).build())
        .await
        .map_err(|e| ClientError::Connect(format!("{addr}: {e}")))?;
    Ok((Conn::Wt(conn), Box::new(endpoint)))
}

async fn connect_ws(options: &Options) -> Result<(Conn, Endpoint), ClientError> {
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;

    use crate::ws::{Frame, Mux, SUBPROTOCOL, Side};

    use tokio_tungstenite::Connector;

    let url = match options.tls {
        true => format!("wss://{}:{}/ws", options.server_name, options.addr.port()),
        false => format!("ws://{}/ws", options.addr),
    };
    let connect_err = |e: &dyn std::fmt::Display| ClientError::Connect(format!("{url}: {e}"));
    let mut request = url.as_str().into_client_request().map_err(|e| connect_err(&e))?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        tokio_tungstenite::tungstenite::http::HeaderValue::from_static(SUBPROTOCOL),
    );
    let connector = match options.tls {
        true => Connector::Rustls(Arc::new(tls_config(options, b"http/1.1")?)),
        false => Connector::Plain,
    };
    // The resolved address, whatever the name in the URL resolves to; Nagle off: cursors must
    // not wait ~40 ms for an ACK.
    let tcp = tokio::net::TcpStream::connect(options.addr).await.map_err(|e| connect_err(&e))?;
    tcp.set_nodelay(true).map_err(|e| connect_err(&e))?;
    let (socket, _response) =
        tokio_tungstenite::client_async_tls_with_config(request, tcp, None, Some(connector))
            .await
            .map_err(|e| connect_err(&e))?;
    let (sink, stream) = socket.split();
    let sink = sink.with(|frame: Frame| async move {
        Ok::<_, tokio_tungstenite::tungstenite::Error>(match frame {
            Frame::Binary(b) => WsMessage::Binary(b),
            Frame::Close(code, reason) => {
                WsMessage::Close(Some(CloseFrame { code: code.into(), reason: reason.into() }))
            }
            Frame::Text | Frame::Control => WsMessage::Pong(Bytes::new()),
        })
    });
    let stream = stream.map(|m| {
        m.map(|m| match m {
            WsMessage::Binary(b) => Frame::Binary(b),
            WsMessage::Text(_) => Frame::Text,
            WsMessage::Close(c) => c.map_or(Frame::Close(1005, String::new()), |c| {
                Frame::Close(c.code.into(), c.reason.to_string())
            }),
            WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => Frame::Control,
        })
    });
    let mux = Mux::spawn(Side::Client, Box::pin(sink), stream);
    Ok((Conn::Ws(mux), Box::new(())))
}

/// Accepts exactly one certificate, by SHA-256 of its DER (WebTransport's
/// `serverCertificateHashes`, for raw QUIC). Signatures are still verified.
#[derive(Debug)]
struct PinnedHash {
    hash: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedHash {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if sha2::Sha256::digest(end_entity.as_ref()).as_slice() == self.hash {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
