//! The WebSocket fallback (`GET /ws`, subprotocol `easel.v1`, SPEC §16): the third
//! [`Session`] implementation. The multiplexing itself is [`easel_client::ws::Mux`], shared with
//! the client; this module adapts axum's socket to it.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use bytes::Bytes;
use easel_client::ws::{CLOSE_BASE, Frame, Mux, RecvHalf, SendHalf, Side};
use easel_proto::ErrorCode;
use futures::{SinkExt as _, StreamExt as _};

use crate::transport::{DatagramSender, Session, TransportError, TransportKind};

pub use easel_client::ws::SUBPROTOCOL;

/// A WebSocket session.
#[derive(Debug, Clone)]
pub struct WsSession(Mux);

impl WsSession {
    /// Starts multiplexing an upgraded socket.
    pub fn new(socket: WebSocket) -> Self {
        let (sink, stream) = socket.split();
        let sink = sink.with(|frame: Frame| async move {
            Ok::<_, axum::Error>(match frame {
                Frame::Binary(b) => WsMessage::Binary(b),
                Frame::Close(code, reason) => {
                    WsMessage::Close(Some(CloseFrame { code, reason: reason.into() }))
                }
                Frame::Text | Frame::Control => WsMessage::Pong(Bytes::new()),
            })
        });
        let stream = stream.map(|m| {
            m.map(|m| match m {
                WsMessage::Binary(b) => Frame::Binary(b),
                WsMessage::Text(_) => Frame::Text,
                WsMessage::Close(c) => c.map_or(Frame::Close(1005, String::new()), |c| {
                    Frame::Close(c.code, c.reason.to_string())
                }),
                WsMessage::Ping(_) | WsMessage::Pong(_) => Frame::Control,
            })
        });
        Self(Mux::spawn(Side::Server, Box::pin(sink), stream))
    }
}

fn closed(e: impl std::fmt::Display) -> TransportError {
    TransportError::Closed(e.to_string())
}

struct Datagrams(Mux);

impl DatagramSender for Datagrams {
    fn send(&self, datagram: Bytes) -> Result<(), TransportError> {
        if self.0.send_datagram(datagram).map_err(closed)? {
            metrics::counter!("easel_datagrams_dropped_total", "reason" => "ws_backlog").increment(1);
        }
        Ok(())
    }

    fn buffer_space(&self) -> usize {
        self.0.datagram_space()
    }
}

impl Session for WsSession {
    type Send = SendHalf;
    type Recv = RecvHalf;

    fn kind(&self) -> TransportKind {
        TransportKind::WebSocket
    }

    async fn accept_bi(&self) -> Result<(SendHalf, RecvHalf), TransportError> {
        self.0.accept_bi().await.map_err(closed)
    }

    async fn open_uni(&self) -> Result<SendHalf, TransportError> {
        self.0.open_uni().map_err(closed)
    }

    async fn recv_datagram(&self) -> Result<Bytes, TransportError> {
        self.0.recv_datagram().await.map_err(closed)
    }

    fn datagram_sender(&self) -> Arc<dyn DatagramSender> {
        Arc::new(Datagrams(self.0.clone()))
    }

    fn close(&self, code: ErrorCode, reason: &str) {
        self.0.close(CLOSE_BASE + code.to_u16(), reason);
    }
}
