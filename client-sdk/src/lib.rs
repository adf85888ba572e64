//! # easel-client — the Easel client SDK
//!
//! Layer: above `easel-proto`, beside the server; apps depend on it.
//!
//! Today it holds [`raw`]: one session over raw QUIC or WebTransport with the protocol's
//! channels exposed as they are (handshake, room streams, snapshot streams, datagrams), used
//! by tools, tests and load generators. The app-facing layer — a sans-IO session core with
//! reconnect, resume, a local Loro document per room and a WebSocket fallback — arrives with
//! the issue "Client SDK" and is built on the same pieces.

pub mod raw;
pub mod ws;
