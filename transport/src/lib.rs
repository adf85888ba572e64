//! # easel-transport — one session abstraction over every Easel transport
//!
//! Layer: directly above `easel-proto`, below both ends. The server and the client SDK each
//! depend on it and never on each other:
//!
//! ```text
//! easel-proto ← easel-transport ← {easel-server, easel-client} ← {easel-benches, easel-netsim}
//! easel-proto ← easel-sfu-bridge (the SFU relay) ← easel-server
//! ```
//!
//! Contract:
//! - [`Session`] is a connection as both ends see it: reliable streams (open and accept,
//!   bidirectional and unidirectional) plus best-effort datagrams (a non-blocking
//!   [`DatagramSender`] with [`DatagramSender::buffer_space`]). Code above it never asks which
//!   transport it has, except for labels ([`Session::kind`]).
//! - How a connection ended is classified once, here: [`Closure::Clean`] (closed on purpose
//!   with Normal, or by this side) or [`Closure::Lost`] (everything else, a WebSocket dropped
//!   without a close frame included); [`Session::closed`] also gives the Easel code and reason.
//!   Failures are a typed [`TransportError`]; nothing from the network panics.
//! - Implementations: raw QUIC ([`quic::QuicSession`], feature `quic`), WebTransport
//!   ([`webtransport::WtSession`], feature `webtransport`) and WebSocket ([`ws::WsSession`]
//!   over the stream/datagram [`ws::Mux`], feature `websocket`; the client's socket is
//!   tokio-tungstenite, the server brings its own). The QUIC keep-alive and idle settings of
//!   each end are [`quic::transport_config`].
//! - [`framed`] reads and writes protocol messages on a stream, the same way at both ends.
//! - [`client`] is one client connection with the protocol's channels exposed as they are
//!   (handshake, control, room and snapshot streams, datagrams), over any transport, with
//!   certificate pinning; the SDK, tools and tests build on it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), easel_transport::TransportError> {
//! use easel_transport::Session;
//! let session = easel_transport::quic::connect("127.0.0.1:4434".parse().unwrap(), "localhost", None).await?;
//! let (send, recv) = session.open_bi().await?;
//! println!("{} session; datagram room: {} bytes", session.kind().label(), session.datagram_sender().buffer_space());
//! # drop((send, recv));
//! # Ok(()) }
//! ```

mod boxed;
pub mod client;
pub mod framed;
#[cfg(any(feature = "quic", feature = "webtransport"))]
pub mod quic;
mod session;
#[cfg(any(feature = "quic", feature = "websocket"))]
mod tls;
#[cfg(feature = "webtransport")]
pub mod webtransport;
#[cfg(feature = "websocket")]
pub mod ws;

pub use boxed::{BoxRecv, BoxSend, BoxSession};
pub use easel_proto::ws::Side;
pub use session::{CloseReason, Closure, DatagramSender, Session, TransportError, TransportKind};
