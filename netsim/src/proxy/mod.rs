//! Proxies that put a [`Scenario`](crate::scenario::Scenario) between real clients and a real
//! server: [`Udp`] for QUIC and WebTransport, [`Tcp`] for the WebSocket fallback.
//!
//! Each runs on the current tokio runtime until [`shutdown`](Udp::shutdown) or drop, keeps
//! its memory bounded (a client or connection cap, packet and byte limits per direction), and
//! drives the sans-IO engines with `Instant::now()`. Timers are tokio's, so every impaired
//! packet may leave up to about a millisecond after its simulated departure.
//!
//! A proxy is itself a user-space hop with finite capacity: a sender bursting faster than it
//! can forward (most likely in a debug build on a busy machine) meets its per-client queue
//! ([`UdpStats::overflow`]) and the kernel's socket buffers, and those losses are not the
//! scenario's. Compare [`LinkStats::dropped`](crate::link::LinkStats::dropped) with what the
//! endpoints saw when that matters.
//!
//! Randomness is derived from one seed: each client mapping or connection gets its own
//! seed per direction from the seed and the order in which it arrived, so a run with the same
//! seed and the same arrival order impairs the same packets.

mod tcp;
mod udp;

use std::net::SocketAddr;

pub use tcp::{Tcp, TcpOptions, TcpStats};
pub use udp::{Udp, UdpOptions, UdpStats};

/// A proxy that cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A per-stream seed: `seed` mixed with the stream's number (SplitMix64, so neighbouring
/// numbers give unrelated seeds). Proxies use it per client and direction; a runner starting
/// several proxies from one seed can use it per proxy.
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The tokio deadline for an engine's `Instant`.
pub(crate) fn deadline(at: std::time::Instant) -> tokio::time::Instant {
    tokio::time::Instant::from_std(at)
}
