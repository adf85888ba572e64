//! easel-client integration tests: the SDK (`easel_client::Client`) against the real server,
//! in-process on 127.0.0.1:0 — every transport, the race and its fallback, reconnect, resume,
//! the offline store, the classroom, and video through a real Janus, on one node and across
//! the nodes of a cluster on a real nats-server.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod classroom;
mod cluster_sfu;
// The server tests' harness (an in-process server, tokens, a TCP relay to cut), shared rather
// than copied; these tests use part of it.
#[allow(dead_code)]
#[path = "../../../server/tests/it/harness.rs"]
mod harness;
// The bridge's own private-Janus helper, shared rather than copied (these tests do not
// restart Janus).
#[allow(dead_code)]
#[path = "../../../sfu-bridge/tests/it/process.rs"]
mod janus;
// A private nats-server (cluster mode) and the layouts that spread a room over two nodes,
// shared the same way.
#[allow(dead_code)]
#[path = "../../../server/tests/it/nats.rs"]
mod nats;
mod overload;
mod sdk;
mod sfu;
#[allow(dead_code)]
#[path = "../../../server/tests/it/spread.rs"]
mod spread;
