//! The WebSocket fallback (`GET /ws`, subprotocol `easel.v1`, SPEC §16): the third
//! [`Session`] implementation. The multiplexing itself is [`easel_client::ws::Mux`], shared with
//! the client; this module adapts axum's socket to it.

use std::sync::{Arc, OnceLock};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use bytes::Bytes;
use easel_client::ws::{CLOSE_BASE, Frame, Mux, RecvHalf, SendHalf, Side};
use easel_proto::ErrorCode;
use futures::{FutureExt as _, SinkExt as _, StreamExt as _};

use crate::transport::{Closure, DatagramSender, Session, TransportError, TransportKind};

pub use easel_client::ws::SUBPROTOCOL;

/// A WebSocket session.
#[derive(Debug, Clone)]
pub struct WsSession {
    mux: Mux,
    /// How the socket ended, recorded as it happens: the mux reports a TCP drop with the same
    /// code as a Normal close frame, so only the frames themselves tell them apart.
    closure: Arc<OnceLock<Closure>>,
}

/// RFC 6455 normal closure.
const CLOSE_NORMAL: u16 = 1000;

impl WsSession {
    /// Starts multiplexing an upgraded socket.
    pub fn new(socket: WebSocket) -> Self {
        let closure = Arc::new(OnceLock::new());
        let seen = closure.clone();
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
        let stream = stream.map(move |m| {
            m.map(|m| match m {
                WsMessage::Binary(b) => Frame::Binary(b),
                WsMessage::Text(_) => {
                    // The mux closes the socket for it: a protocol violation, ended by us.
                    let _ = seen.set(Closure::Clean);
                    Frame::Text
                }
                WsMessage::Close(c) => {
                    let frame = c.map_or(Frame::Close(1005, String::new()), |c| {
                        Frame::Close(c.code, c.reason.to_string())
                    });
                    let clean = matches!(frame, Frame::Close(CLOSE_NORMAL | CLOSE_BASE, _));
                    let _ = seen.set(if clean { Closure::Clean } else { Closure::Lost });
                    frame
                }
                WsMessage::Ping(_) | WsMessage::Pong(_) => Frame::Control,
            })
        });
        Self { mux: Mux::spawn(Side::Server, Box::pin(sink), stream), closure }
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
        self.mux.accept_bi().await.map_err(closed)
    }

    async fn open_uni(&self) -> Result<SendHalf, TransportError> {
        self.mux.open_uni().map_err(closed)
    }

    async fn recv_datagram(&self) -> Result<Bytes, TransportError> {
        self.mux.recv_datagram().await.map_err(closed)
    }

    fn datagram_sender(&self) -> Arc<dyn DatagramSender> {
        Arc::new(Datagrams(self.mux.clone()))
    }

    fn close(&self, code: ErrorCode, reason: &str) {
        let _ = self.closure.set(Closure::Clean);
        self.mux.close(CLOSE_BASE + code.to_u16(), reason);
    }

    fn closure(&self) -> Option<Closure> {
        // Ended without a close frame from either side: the socket broke.
        self.mux.closed().now_or_never().map(|_| self.closure.get().copied().unwrap_or(Closure::Lost))
    }
}
