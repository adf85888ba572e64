//! easel-server integration tests: real sockets on 127.0.0.1:0, real QUIC and WebTransport
//! clients (`easel_transport::client`), real redb files, the real binary where a process must die.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod auth;
mod browser;
mod classroom;
mod e2e;
mod harness;
mod hostile;
mod http;
// The bridge's own private-Janus helper, shared rather than copied (the server's tests do not
// restart Janus).
#[allow(dead_code)]
#[path = "../../../sfu-bridge/tests/it/process.rs"]
mod janus;
mod resume;
mod sdk;
mod sfu;
mod storage;
mod websocket;
