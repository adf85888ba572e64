//! Easel streams and datagrams over one WebSocket (SPEC §16), for either end.
//!
//! [`Mux`] is the IO driver around the sans-IO [`easel_proto::ws::Demux`]; [`WsSession`] is
//! the [`Session`](crate::Session) on top of it. The mux is generic over the socket (a
//! `Sink`/`Stream` of [`Frame`]): an adapter maps its WebSocket library's messages to frames
//! and back, nothing more — the mux alone decides what a close means ([`closure_of`]). The
//! server's adapter (axum) lives in the server; the client's (tokio-tungstenite) is
//! [`connect`].

mod connect;
mod mux;
mod session;

use bytes::Bytes;
pub use connect::connect;
pub use easel_proto::ws::Side;
pub use mux::{Mux, RecvHalf, SendHalf};
pub use session::WsSession;

use crate::Closure;

/// Subprotocol name of the mapping.
pub const SUBPROTOCOL: &str = "easel.v1";
/// WebSocket close codes carry Easel codes as 4000 + code (SPEC §14.2).
pub const CLOSE_BASE: u16 = 4000;
/// RFC 6455 normal closure.
pub const CLOSE_NORMAL: u16 = 1000;
/// RFC 6455 "unsupported data": the answer to a text message.
pub const CLOSE_UNSUPPORTED: u16 = 1003;
/// RFC 6455 "no status received": what an adapter reports for a close frame without a code.
pub const CLOSE_NO_STATUS: u16 = 1005;
/// RFC 6455 "abnormal closure": the socket ended without a close frame. Only ever reported,
/// never sent.
pub const CLOSE_ABNORMAL: u16 = 1006;

/// One WebSocket message, as the mux sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A binary message (one envelope).
    Binary(Bytes),
    /// A text message (not part of the protocol).
    Text,
    /// A close frame with its code ([`CLOSE_NO_STATUS`] if it had none) and reason.
    Close(u16, String),
    /// Ping, pong or anything else the socket library handles itself.
    Control,
}

/// Why the session ended: a WebSocket close code and reason, and what the end means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The close code (4000 + an Easel code, an RFC 6455 code, or [`CLOSE_ABNORMAL`] when the
    /// socket broke).
    pub code: u16,
    /// The reason.
    pub reason: String,
    /// Whether the session was ended on purpose.
    pub closure: Closure,
}

impl Closed {
    /// The Easel code inside a 4000 + code close, if it is one.
    pub fn easel_code(&self) -> Option<easel_proto::ErrorCode> {
        self.code.checked_sub(CLOSE_BASE).and_then(easel_proto::ErrorCode::from_u16)
    }
}

impl From<Closed> for crate::CloseReason {
    fn from(closed: Closed) -> Self {
        Self { code: closed.easel_code(), reason: closed.reason }
    }
}

/// What a close frame from the peer means: only RFC 6455's normal closure and Easel's Normal
/// (4000) end a session on purpose; any other code, or none, is a loss.
pub fn closure_of(code: u16) -> Closure {
    match code {
        CLOSE_NORMAL | CLOSE_BASE => Closure::Clean,
        _ => Closure::Lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_normal_closes_are_clean() {
        assert_eq!(closure_of(CLOSE_NORMAL), Closure::Clean);
        assert_eq!(closure_of(CLOSE_BASE), Closure::Clean);
        for lost in [CLOSE_NO_STATUS, CLOSE_ABNORMAL, 1001, 1011, CLOSE_BASE + 501] {
            assert_eq!(closure_of(lost), Closure::Lost, "{lost}");
        }
    }
}
