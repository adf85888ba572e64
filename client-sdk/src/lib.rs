//! # easel-client — the Easel client SDK
//!
//! Layer: above `easel-transport`, beside the server (which never depends on it); apps depend
//! on it:
//!
//! ```text
//! easel-proto ← easel-transport ← {easel-server, easel-client} ← {easel-benches, easel-netsim}
//! easel-proto ← easel-sfu-bridge (the SFU relay) ← easel-server
//! ```
//!
//! Live cursors and a synced Loro whiteboard in a native app:
//!
//! ```no_run
//! # async fn demo() -> Result<(), easel_client::Error> {
//! use easel_client::{Client, Event};
//!
//! // QUIC first; WebSocket joins the race after 200 ms (and wins where UDP is blocked).
//! let client = Client::connect("easel://127.0.0.1", "…jwt…").await?;
//! let board = client.join("uni-a/math-101/2026-11-23").await?;
//! board.edit(|doc| doc.get_map("shapes").insert("c1", "circle 10 20"))?; // applies now, syncs
//! board.cursor(10.0, 20.0);                                            // throttled datagrams
//! while let Some(event) = client.next_event().await {
//!     match event {
//!         Event::Cursors { cursors, .. } => println!("{} cursors moved", cursors.len()),
//!         Event::RemoteUpdate { .. } => println!("board: {:?}", board.doc().get_deep_value()),
//!         Event::Disconnected { retry_in, .. } => println!("offline; retrying in {retry_in:?}"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! The connection is kept by the client: on loss it reconnects (exponential backoff, full
//! jitter), resumes the session inside the server's grace window (others see no leave/join),
//! rejoins rooms with their version vectors, and resends unacked edits once, by op id. With
//! [`ClientBuilder::offline_store`] unacked edits also survive an app restart.
//!
//! Modules (all but [`session`] need the default `native` feature; without it the crate is
//! the sans-IO core alone and builds for `wasm32-unknown-unknown`, which the browser SDK in
//! `client-sdk/web` wraps):
//! - `client`: the app-facing [`Client`] and [`Room`] (a tokio driver around the session,
//!   inside: the handles, the driver task, the transport race, a connection's reader tasks);
//! - `endpoint`: server URLs (`easel://`, `easel+quic://`, `https://`, `ws://`);
//! - [`session`]: the sans-IO session core, one file per concern (handshake and resume, rooms
//!   and rejoins, op ids and acks, cursor throttling and presence heartbeats, remote imports,
//!   classroom requests, reconnect timing). No sockets, no clock.
//! - `store`: the offline store (`redb`).
//!
//! Each connection is an `easel_transport::client::Connection` (raw QUIC, WebTransport or
//! WebSocket, the protocol's channels as they are); tools and tests that want no more than
//! that use it directly.
//!
//! Contract: every byte from the network is validated by `easel-proto` before use; a bad
//! update from the network becomes an [`session::Event::Error`], never a panic.

#[cfg(feature = "native")]
pub mod client;
#[cfg(feature = "native")]
pub mod endpoint;
pub mod session;
#[cfg(feature = "native")]
pub mod store;

#[cfg(feature = "native")]
pub use client::{Client, ClientBuilder, Error, Poll, Room};
pub use easel_proto::TransportKind as Transport;
pub use easel_proto::message::{ModAction, SdpKind, SfuEventKind};
pub use session::{Event, RemoteCursor};
