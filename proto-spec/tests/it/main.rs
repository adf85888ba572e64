//! Integration tests for easel-proto: one sample per message kind, golden vectors, property
//! round trips and hostile input.

mod layout;
mod malformed;
mod roundtrip;
mod samples;
mod vectors;
