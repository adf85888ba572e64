//! [`BoxSession`]: any [`Session`] behind one type, for code that picks the transport at run
//! time (the client's transport race) yet wants one connection type.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use easel_proto::ErrorCode;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::session::{CloseReason, Closure, DatagramSender, Session, TransportError, TransportKind};

/// The sending half of a stream of a [`BoxSession`].
pub type BoxSend = Pin<Box<dyn AsyncWrite + Send>>;
/// The receiving half of a stream of a [`BoxSession`].
pub type BoxRecv = Pin<Box<dyn AsyncRead + Send>>;

/// A [`Session`] of any transport; cheap to clone.
#[derive(Clone)]
pub struct BoxSession(Arc<dyn Erased>);

impl std::fmt::Debug for BoxSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("BoxSession").field(&self.0.kind()).finish()
    }
}

impl BoxSession {
    /// Erases `session`'s type.
    pub fn new(session: impl Session) -> Self {
        Self(Arc::new(session))
    }
}

/// [`Session`] with boxed futures and streams, so that it can be a trait object.
trait Erased: Send + Sync + 'static {
    fn kind(&self) -> TransportKind;
    fn open_bi(&self) -> BoxFuture<'_, Result<(BoxSend, BoxRecv), TransportError>>;
    fn accept_bi(&self) -> BoxFuture<'_, Result<(BoxSend, BoxRecv), TransportError>>;
    fn open_uni(&self) -> BoxFuture<'_, Result<BoxSend, TransportError>>;
    fn accept_uni(&self) -> BoxFuture<'_, Result<BoxRecv, TransportError>>;
    fn recv_datagram(&self) -> BoxFuture<'_, Result<Bytes, TransportError>>;
    fn datagram_sender(&self) -> Arc<dyn DatagramSender>;
    fn close(&self, code: ErrorCode, reason: &str);
    fn closure(&self) -> Option<Closure>;
    fn closed(&self) -> BoxFuture<'_, CloseReason>;
}

fn pair<S: Session>((send, recv): (S::Send, S::Recv)) -> (BoxSend, BoxRecv) {
    (Box::pin(send), Box::pin(recv))
}

impl<S: Session> Erased for S {
    fn kind(&self) -> TransportKind {
        Session::kind(self)
    }

    fn open_bi(&self) -> BoxFuture<'_, Result<(BoxSend, BoxRecv), TransportError>> {
        Session::open_bi(self).map(|r| r.map(pair::<S>)).boxed()
    }

    fn accept_bi(&self) -> BoxFuture<'_, Result<(BoxSend, BoxRecv), TransportError>> {
        Session::accept_bi(self).map(|r| r.map(pair::<S>)).boxed()
    }

    fn open_uni(&self) -> BoxFuture<'_, Result<BoxSend, TransportError>> {
        Session::open_uni(self).map(|r| r.map(|s| Box::pin(s) as BoxSend)).boxed()
    }

    fn accept_uni(&self) -> BoxFuture<'_, Result<BoxRecv, TransportError>> {
        Session::accept_uni(self).map(|r| r.map(|r| Box::pin(r) as BoxRecv)).boxed()
    }

    fn recv_datagram(&self) -> BoxFuture<'_, Result<Bytes, TransportError>> {
        Session::recv_datagram(self).boxed()
    }

    fn datagram_sender(&self) -> Arc<dyn DatagramSender> {
        Session::datagram_sender(self)
    }

    fn close(&self, code: ErrorCode, reason: &str) {
        Session::close(self, code, reason);
    }

    fn closure(&self) -> Option<Closure> {
        Session::closure(self)
    }

    fn closed(&self) -> BoxFuture<'_, CloseReason> {
        Session::closed(self).boxed()
    }
}

impl Session for BoxSession {
    type Send = BoxSend;
    type Recv = BoxRecv;

    fn kind(&self) -> TransportKind {
        self.0.kind()
    }

    async fn open_bi(&self) -> Result<(BoxSend, BoxRecv), TransportError> {
        self.0.open_bi().await
    }

    async fn accept_bi(&self) -> Result<(BoxSend, BoxRecv), TransportError> {
        self.0.accept_bi().await
    }

    async fn open_uni(&self) -> Result<BoxSend, TransportError> {
        self.0.open_uni().await
    }

    async fn accept_uni(&self) -> Result<BoxRecv, TransportError> {
        self.0.accept_uni().await
    }

    async fn recv_datagram(&self) -> Result<Bytes, TransportError> {
        self.0.recv_datagram().await
    }

    fn datagram_sender(&self) -> Arc<dyn DatagramSender> {
        self.0.datagram_sender()
    }

    fn close(&self, code: ErrorCode, reason: &str) {
        self.0.close(code, reason);
    }

    fn closure(&self) -> Option<Closure> {
        self.0.closure()
    }

    async fn closed(&self) -> CloseReason {
        self.0.closed().await
    }
}
