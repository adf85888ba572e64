//! easel-sfu-bridge integration tests against a real Janus (started by `scripts/janus.sh` on
//! its own ports for each test).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod janus;
mod process;
