//! [`WsSession`]: the [`Session`] over a [`Mux`], the same at both ends.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use easel_proto::ErrorCode;

use super::{CLOSE_BASE, Mux, RecvHalf, SendHalf};
use crate::{CloseReason, Closure, DatagramSender, Session, TransportError, TransportKind};

/// A WebSocket session (SPEC §16).
#[derive(Debug, Clone)]
pub struct WsSession {
    mux: Mux,
}

impl WsSession {
    /// A session on a running mux.
    pub fn new(mux: Mux) -> Self {
        Self { mux }
    }

    /// Why an operation failed: the session's end once it has ended, else the stream's error.
    fn error(&self, e: io::Error) -> TransportError {
        TransportError::Closed(self.mux.ended().map_or_else(|| CloseReason::other(e), CloseReason::from))
    }
}

/// Datagrams over the socket: latest wins when it is backed up.
struct Datagrams(Mux);

impl DatagramSender for Datagrams {
    fn send(&self, datagram: Bytes) -> Result<(), TransportError> {
        let dropped = self.0.send_datagram(datagram).map_err(TransportError::closed)?;
        if dropped {
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

    async fn open_bi(&self) -> Result<(SendHalf, RecvHalf), TransportError> {
        self.mux.open_bi().map_err(|e| self.error(e))
    }

    async fn accept_bi(&self) -> Result<(SendHalf, RecvHalf), TransportError> {
        self.mux.accept_bi().await.map_err(|e| self.error(e))
    }

    async fn open_uni(&self) -> Result<SendHalf, TransportError> {
        self.mux.open_uni().map_err(|e| self.error(e))
    }

    async fn accept_uni(&self) -> Result<RecvHalf, TransportError> {
        self.mux.accept_uni().await.map_err(|e| self.error(e))
    }

    async fn recv_datagram(&self) -> Result<Bytes, TransportError> {
        self.mux.recv_datagram().await.map_err(|e| self.error(e))
    }

    fn datagram_sender(&self) -> Arc<dyn DatagramSender> {
        Arc::new(Datagrams(self.mux.clone()))
    }

    fn close(&self, code: ErrorCode, reason: &str) {
        self.mux.close(CLOSE_BASE + code.to_u16(), reason);
    }

    fn closure(&self) -> Option<Closure> {
        self.mux.ended().map(|c| c.closure)
    }

    async fn closed(&self) -> CloseReason {
        self.mux.closed().await.into()
    }
}
