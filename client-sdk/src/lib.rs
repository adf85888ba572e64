//! # easel-client — the Easel client SDK
//!
//! Layer: above `easel-proto`, beside the server; apps depend on it.
//!
//! Not built yet: it arrives with the issue "Client SDK". It will hold a sans-IO session core
//! (handshake, join, op ids and acks, resume, cursor throttling, presence heartbeats, with time
//! passed in) and a tokio driver that races QUIC/WebTransport against WebSocket, reconnects
//! with backoff and resumes, keeping a local Loro document per room. Until then this crate is
//! intentionally empty.
