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
//! logic never knows the transport. Updates are acked only after the fsync that covers them
//! ([`store`]); tokens are JWTs ([`auth`]); video signalling is relayed to an SFU through
//! `easel-sfu-bridge` ([`sfu`], `--sfu janus`).
//!
//! Shape: decisions are sans-IO cores that take time as input and return what to do; thin
//! async drivers do the IO.
//! - [`room`]: a room's core ([`room::Room`]: members, presence, cursors, the Loro document,
//!   the classroom, drained through [`room::Output`]) and the actor that drives it.
//! - `session`: one client session's core (handshake decision, control replies, slot table,
//!   routing of frames and datagrams, what its end means for its rooms) and its driver.
//! - `admission` decides, from the source address and before TLS or the token, whether a
//!   connection attempt may become a session (session caps, per-IP handshake rate).
//! - [`server`] binds (both QUIC listeners with the data dir's stateless-reset key, [`reset`]),
//!   serves TLS, accepts and shuts down; [`http`] is the HTTP port (WebSocket
//!   upgrade, metrics, attendance, the demo page of [`demo`]); `shared` holds what every
//!   session shares.
//! - [`cluster`]: cluster mode (`--cluster nats://…`): membership through a NATS JetStream
//!   key-value bucket (sans-IO [`cluster::members`], NATS driver), shown in `/healthz` and
//!   the metrics; rooms' board updates through the JetStream room log ([`cluster::log`]).
//!   Without `--cluster`, one node alone, as before.
//! - [`board`]: where a room's board updates are made durable, the redb [`store`] or the
//!   cluster's room log; the room actor talks to it and not to either.
//! - [`config::ServerConfig`] is the validated configuration [`Server::start`] takes; the `easel`
//!   binary builds it from its command line ([`cli`]), tests and embedders build it directly.

mod admin;
mod admission;
pub mod auth;
pub mod board;
pub mod class;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod http;
pub mod reset;
mod resume;
pub mod revoke;
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
