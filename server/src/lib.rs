//! # easel-server — the Easel server (library + binary `easel`)
//!
//! Layer: above `easel-proto`; nothing depends on it but its binary and tests.
//!
//! Not built yet: it arrives with the issue "Server". It will hold the WebTransport
//! (`wtransport`) and raw QUIC (`quinn`, ALPN `easel/1`) listeners behind one `Session` trait,
//! room actors owning presence, cursors and a Loro document each, `redb` storage with group
//! commit, JWT auth, Prometheus metrics and the `easel serve` / `easel token` command line.
//! Until then this crate is intentionally empty; the protocol it will speak is
//! `proto-spec/SPEC.md`.
