//! # easel-server — the Easel server (library + binary `easel`)
//!
//! Layer: above `easel-transport` and `easel-sfu-bridge`; nothing depends on it but its binary,
//! its tests and the measurement tools. It never depends on the client SDK:
//!
//! ```text
//! easel-proto ← easel-transport ← {easel-server, easel-client} ← {easel-benches, easel-netsim}
//! easel-proto ← easel-sfu-bridge (the SFU relay) ← easel-server
//! ```
//!
//! Contract: serves protocol v1 (`proto-spec/SPEC.md`) over WebTransport, raw QUIC and a
//! WebSocket fallback ([`websocket`]) behind one [`easel_transport::Session`] trait, so room
//! logic never knows the transport. Each room is an actor ([`room`]) owning its participants,
//! presence, cursors and Loro document; updates are acked only after the fsync that covers
//! them ([`store`]); tokens are JWTs ([`auth`]); video signalling is relayed to an SFU through
//! `easel-sfu-bridge` ([`sfu`], `--sfu janus`). [`Server::start`] runs it all in-process; the
//! `easel` binary wraps it with a command line ([`config`]).

pub mod auth;
pub mod class;
pub mod cli;
pub mod config;
pub mod http;
mod resume;
pub mod room;
pub mod server;
mod session;
pub mod sfu;
mod shared;
pub mod store;
pub mod telemetry;
pub mod websocket;

pub use config::ServerConfig;
pub use server::{Server, StartError};
