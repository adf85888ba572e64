//! easel-server integration tests: real sockets on 127.0.0.1:0, real QUIC, WebTransport and
//! WebSocket protocol clients (`easel_transport::client`; the SDK only in `cluster_nodeloss`,
//! where a client moving between nodes is what is tested: its own tests drive it against this
//! server), real redb files, the real binary where a process must die.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod admission;
mod auth;
mod away;
mod browser;
mod classroom;
mod cluster;
mod cluster_batch;
mod cluster_class;
mod cluster_nodeloss;
mod cluster_presence;
mod cluster_rooms;
mod cluster_snapshots;
mod crash;
mod e2e;
mod harness;
mod hostile;
mod http;
// The bridge's private-Janus helper, shared rather than copied (no restarts here).
#[allow(dead_code)]
#[path = "../../../sfu-bridge/tests/it/process.rs"]
mod janus;
mod lecture;
mod metrics;
mod nats;
mod observability;
mod page;
mod page_bench;
mod restart;
mod resume;
mod revoke;
mod spawned;
mod spread;
mod storage;
mod tokens;
mod websocket;
