//! Easel benchmarks.
//!
//! Layer: measurement only; nothing here is linked into the server or the SDK.
//!
//! - `benches/codec.rs` (criterion): encode and validated decode of the hot wire messages — a
//!   50-cursor batch, a presence heartbeat, and Loro updates of 100 B and 10 KiB framed on a
//!   stream. Run with `cargo bench -p easel-benches --bench codec`.
//! - `easel-probe` (`src/bin/probe.rs`): starts the real `easel` binary on loopback and measures
//!   connect-to-Welcome time, cursor datagram latency between participants, op ack latency
//!   (fsync included) and server memory per idle session.
//! - The `easel-load` client-swarm generator (issue "netsim") will live here too.
