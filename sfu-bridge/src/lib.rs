//! # easel-sfu-bridge — hands classroom video to an external SFU
//!
//! Layer: above `easel-proto`; used by the server.
//!
//! Not built yet: it arrives with the issue "SFU bridge". It will hold the `Sfu` adapter trait
//! (ensure a room, grant access by Easel role, relay SDP and trickle ICE, remove a participant,
//! report SFU-side events) and its first adapter, Janus VideoRoom. Until then this crate is
//! intentionally empty; its wire messages (`SfuJoin` … `SfuEvent`) are already in SPEC.md.
