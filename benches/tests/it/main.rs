//! easel-benches integration tests: the measurement tools run small against a real server, and
//! what they report is checked.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

// The server tests' harness (an in-process server on ephemeral loopback ports), shared rather
// than copied.
#[allow(dead_code)]
#[path = "../../../server/tests/it/harness.rs"]
mod harness;
mod lecture;
mod storm;
