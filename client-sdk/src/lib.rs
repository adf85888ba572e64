//! # easel-client — the Easel client SDK
//!
//! Layer: above `easel-proto`, beside the server; apps depend on it.
//!
//! - [`session`]: the sans-IO session core (handshake inputs, joins, op ids and acks, resume,
//!   cursor throttling, presence heartbeats, reconnect timing). No sockets, no clock.
//! - [`raw`]: one connection over raw QUIC, WebTransport or WebSocket with the protocol's
//!   channels exposed as they are; tools, tests and load generators use it directly.
//! - [`ws`]: the WebSocket stream/datagram mux, shared with the server.
//!
//! Contract: every byte from the network is validated by `easel-proto` before use; a bad
//! update from the network becomes an [`session::Event::Error`], never a panic.

pub mod client;
pub mod endpoint;
pub mod raw;
pub mod session;
pub mod store;
pub mod ws;

pub use client::{Client, ClientBuilder, Error, Room};
pub use session::Event;
