//! # easel-netsim — a seeded network simulator for Easel
//!
//! Layer: independent of the other Easel crates: it is a network, not a client or a server.
//! Only its tests and its benchmark runner ([`bench`]) drive the real server and SDK, and
//! the runner does so as a user would: as processes.
//!
//! ```text
//! easel-proto ← easel-transport ← {easel-server, easel-client} ← {easel-benches, easel-netsim}
//! easel-proto ← easel-sfu-bridge (the SFU relay) ← easel-server
//! ```
//!
//! Kernel netem is not available on the machines this runs on, so impairment happens in user
//! space, in proxies placed between clients and the server.
//!
//! Contract:
//!
//! - [`link::Link`] impairs datagrams and [`stream::StreamLink`] impairs a TCP byte stream.
//!   Both are sans-IO (no sockets, no clock reads: time is an argument) and deterministic: the
//!   same config, seed and calls give the same output.
//! - [`scenario::Scenario`] reads named network conditions from TOML, one config per direction;
//!   the built-ins (`loopback`, `lan`, `classroom-wifi`, `4g-congested`, `transatlantic`,
//!   `lossy-2pct`) are compiled in.
//! - [`proxy::Udp`] (QUIC, WebTransport) and [`proxy::Tcp`] (WebSocket) run a scenario between
//!   real sockets on tokio, with bounded memory, until shut down.
//! - [`bench`] runs the `easel` server and the `easel-load` swarm through a proxy per transport;
//!   [`report`] turns the result into Markdown and SVG latency CDFs.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use easel_netsim::link::{Link, LinkConfig};
//!
//! let mut link = Link::new(LinkConfig::delay(Duration::from_millis(40)), 7);
//! let t0 = Instant::now();
//! link.send(t0, bytes::Bytes::from_static(b"hello"));
//! assert_eq!(link.poll_transmit(t0), None);
//! assert_eq!(link.poll_timeout(), Some(t0 + Duration::from_millis(40)));
//! assert!(link.poll_transmit(t0 + Duration::from_millis(40)).is_some());
//! ```

pub mod bench;
pub mod link;
pub mod proxy;
pub mod report;
pub mod scenario;
pub mod stream;

pub use link::{Link, LinkConfig, LinkStats};
pub use scenario::{Direction, Scenario, ScenarioError};
pub use stream::{StreamConfig, StreamLink};
