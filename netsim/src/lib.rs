//! # easel-netsim — network impairment and latency benchmarks
//!
//! Layer: independent of the other crates (it is a network, not a client), except its
//! benchmark runner, which drives the server binary and the client SDK as a user would.
//!
//! Not built yet: it arrives with the issue "netsim". It will hold a seeded sans-IO impairment
//! engine (delay, jitter, Gilbert-Elliott loss, duplication, reordering, rate limit), UDP and
//! TCP proxies built on it, TOML scenarios and the `netsim bench` runner with its reports.
//! Until then this crate is intentionally empty.
