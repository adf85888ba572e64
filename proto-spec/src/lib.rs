//! # easel-proto — the Easel wire protocol, version 1
//!
//! Layer: the bottom of the stack. Every other Easel crate (transports, server, client SDK,
//! SFU bridge, load tools) speaks the protocol through this crate; nothing here does IO, reads
//! a clock or spawns a task, so it also builds for `wasm32-unknown-unknown`.
//!
//! ```text
//! easel-proto ← easel-transport ← {easel-server, easel-client} ← {easel-benches, easel-netsim}
//! easel-proto ← easel-sfu-bridge (the SFU relay) ← easel-server
//! ```
//!
//! Contract (normative text: `proto-spec/SPEC.md`):
//! - [`Message`] is every frame that travels on a reliable stream, [`Datagram`] every
//!   unreliable datagram. Each kind has a stable one-byte code ([`Kind`], [`DatagramKind`]).
//! - A stream frame is `varint(len) · kind · rkyv archive`; [`FrameDecoder`] turns bytes that
//!   arrive in arbitrary pieces into messages (`Ok(None)` means "need more bytes", not an error),
//!   [`Message::encode`] does the reverse.
//! - Every decode of untrusted bytes is validated twice: structurally (rkyv + bytecheck, never
//!   `access_unchecked`) and semantically (the limits in [`limits`]). Failures are a typed
//!   [`Error`] that maps to a stable wire [`ErrorCode`].
//! - [`ws`] carries the same streams and datagrams over one WebSocket.
//!
//! ```
//! use easel_proto::{FrameDecoder, Message, message::Ping};
//!
//! let bytes = Message::from(Ping { nonce: 7 }).encode()?;
//! let mut decoder = FrameDecoder::new(easel_proto::limits::MAX_FRAME_LEN);
//! decoder.push(&bytes[..2]);
//! assert!(decoder.decode()?.is_none()); // incomplete: wait for more bytes
//! decoder.push(&bytes[2..]);
//! assert_eq!(decoder.decode()?, Some(Message::Ping(Ping { nonce: 7 })));
//! # Ok::<(), easel_proto::Error>(())
//! ```

#[macro_use]
mod kinds;

pub mod datagram;
pub mod error;
pub mod frame;
pub mod limits;
pub mod message;
pub mod rate;
pub mod room;
mod validate;
pub mod varint;
pub mod ws;

pub use datagram::{Datagram, DatagramKind};
pub use error::{Error, ErrorCode};
pub use frame::FrameDecoder;
pub use message::{Kind, Message};

/// The protocol version this crate speaks. Hello lists the versions a client speaks; Welcome
/// names the one the server picked.
pub const PROTOCOL_VERSION: u16 = 1;

/// ALPN token for raw QUIC connections.
pub const ALPN: &[u8] = b"easel/1";

/// Which transport carries a session (here, below the transports, so that code without sockets
/// — the browser SDK's core — can name it too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// Raw QUIC with ALPN [`ALPN`].
    Quic,
    /// WebTransport over HTTP/3.
    WebTransport,
    /// The WebSocket fallback (`ws://host:http-port/ws`, or `wss://`).
    WebSocket,
}

impl TransportKind {
    /// Label used in metrics and logs.
    pub const fn label(self) -> &'static str {
        match self {
            Self::WebTransport => "webtransport",
            Self::Quic => "quic",
            Self::WebSocket => "websocket",
        }
    }

    /// The kind a [`TransportKind::label`] names.
    pub fn from_label(label: &str) -> Option<Self> {
        [Self::Quic, Self::WebTransport, Self::WebSocket].into_iter().find(|k| k.label() == label)
    }
}
