//! The WebSocket fallback (`GET /ws`, subprotocol `easel.v1`, SPEC §16): axum's socket as
//! an [`easel_transport::ws::WsSession`]. The mux, and what a close means, are the transport
//! crate's; this adapter only maps axum's messages to its frames and back.

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use easel_transport::ws::{CLOSE_NO_STATUS, Frame, Mux, Side, WsSession};
use futures::{SinkExt as _, StreamExt as _};

pub use easel_transport::ws::SUBPROTOCOL;

/// Starts serving an upgraded socket.
pub fn accept(socket: WebSocket) -> WsSession {
    let (sink, stream) = socket.split();
    let sink = sink.with(|frame: Frame| async move { Ok::<_, axum::Error>(to_message(frame)) });
    let stream = stream.map(|m| m.map(to_frame));
    WsSession::new(Mux::spawn(Side::Server, Box::pin(sink), stream))
}

fn to_message(frame: Frame) -> Message {
    match frame {
        Frame::Binary(b) => Message::Binary(b),
        Frame::Close(code, reason) => Message::Close(Some(CloseFrame { code, reason: reason.into() })),
        // The mux never sends these; a pong is harmless should it start to.
        Frame::Text | Frame::Control => Message::Pong(Bytes::new()),
    }
}

fn to_frame(message: Message) -> Frame {
    match message {
        Message::Binary(b) => Frame::Binary(b),
        Message::Text(_) => Frame::Text,
        Message::Close(c) => c.map_or(Frame::Close(CLOSE_NO_STATUS, String::new()), |c| {
            Frame::Close(c.code, c.reason.to_string())
        }),
        Message::Ping(_) | Message::Pong(_) => Frame::Control,
    }
}
