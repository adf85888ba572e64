//! [`Mux`]: the IO driver around the sans-IO [`Demux`]. A reader task routes envelopes to
//! per-stream queues, a writer task sends reliable envelopes in order and datagrams
//! latest-wins — they wait in a small ring that drops the oldest when the socket is backed
//! up, never behind it.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use easel_proto::limits::MAX_DATAGRAM_LEN;
use easel_proto::ws::{Demux, Envelope, Event, Side};
use futures::{Sink, SinkExt as _, Stream, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::{CancellationToken, PollSender};

use super::{CLOSE_ABNORMAL, CLOSE_BASE, CLOSE_UNSUPPORTED, Closed, Frame, closure_of};
use crate::Closure;

/// Datagrams held while the socket is busy; older ones are dropped first.
const DATAGRAM_RING: usize = 16;
/// Streams the peer may have open at once (control + rooms + snapshots + slack).
const MAX_PEER_STREAMS: usize = 32;
/// Most queued envelopes written before one flush.
const WRITE_BATCH: usize = 64;
/// Largest stream piece per envelope.
const MAX_PIECE: usize = 16 * 1024;

/// A multiplexed WebSocket session; cheap to clone. Like a QUIC connection, it closes
/// (normally) when its last handle is dropped.
#[derive(Clone)]
pub struct Mux {
    inner: Arc<Inner>,
    _last: Arc<LastHandle>,
}

/// Shared by a mux's handles, not by its tasks, which hold the socket until it closes.
struct LastHandle(Arc<Inner>);

impl Drop for LastHandle {
    fn drop(&mut self) {
        self.0.finish(CLOSE_BASE, "", Closure::Clean);
    }
}

impl std::fmt::Debug for Mux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mux").finish_non_exhaustive()
    }
}

struct Inner {
    demux: Mutex<Demux>,
    reliable: mpsc::Sender<Vec<u8>>,
    ring: Mutex<VecDeque<Bytes>>,
    ring_ready: Notify,
    /// Peer-opened (bidirectional, unidirectional) streams.
    accept_bi: tokio::sync::Mutex<mpsc::Receiver<(SendHalf, RecvHalf)>>,
    accept_uni: tokio::sync::Mutex<mpsc::Receiver<RecvHalf>>,
    /// Receivers for our own bidirectional streams, registered before their first reply.
    local: Mutex<HashMap<u64, mpsc::Sender<io::Result<Bytes>>>>,
    incoming: tokio::sync::Mutex<mpsc::Receiver<Bytes>>,
    done: CancellationToken,
    closed: Mutex<Option<Closed>>,
}

impl Inner {
    /// Ends the session; the first end recorded is the one reported.
    fn finish(&self, code: u16, reason: &str, closure: Closure) {
        if let Ok(mut closed) = self.closed.lock() {
            closed.get_or_insert_with(|| Closed { code, reason: reason.to_owned(), closure });
        }
        self.done.cancel();
        // Our streams the peer never answered on end with the session (the others' senders
        // go with the reader's table when it stops).
        if let Ok(mut local) = self.local.lock() {
            local.clear();
        }
    }

    /// How the session ended, once it has.
    fn ended(&self) -> Option<Closed> {
        self.done.is_cancelled().then(|| self.recorded())
    }

    fn recorded(&self) -> Closed {
        let recorded = self.closed.lock().ok().and_then(|c| c.clone());
        // Only a poisoned lock loses the record; nothing can be said of that end.
        recorded.unwrap_or_else(|| Closed {
            code: CLOSE_ABNORMAL,
            reason: "websocket closed".into(),
            closure: Closure::Lost,
        })
    }
}

impl Mux {
    /// Starts the reader and writer tasks on a socket.
    pub fn spawn<Si, St, E>(side: Side, sink: Si, stream: St) -> Self
    where
        Si: Sink<Frame> + Send + Unpin + 'static,
        St: Stream<Item = Result<Frame, E>> + Send + Unpin + 'static,
        E: Send + 'static,
    {
        let (reliable, reliable_rx) = mpsc::channel(64);
        let (bi_tx, accept_bi) = mpsc::channel(8);
        let (uni_tx, accept_uni) = mpsc::channel(8);
        let (incoming_tx, incoming) = mpsc::channel(256);
        let inner = Arc::new(Inner {
            demux: Mutex::new(Demux::new(side, MAX_PEER_STREAMS)),
            reliable,
            ring: Mutex::default(),
            ring_ready: Notify::new(),
            accept_bi: tokio::sync::Mutex::new(accept_bi),
            accept_uni: tokio::sync::Mutex::new(accept_uni),
            local: Mutex::default(),
            incoming: tokio::sync::Mutex::new(incoming),
            done: CancellationToken::new(),
            closed: Mutex::new(None),
        });
        tokio::spawn(write_loop(inner.clone(), sink, reliable_rx));
        tokio::spawn(read_loop(inner.clone(), stream, bi_tx, uni_tx, incoming_tx));
        Self { _last: Arc::new(LastHandle(inner.clone())), inner }
    }

    fn closed_error(&self) -> io::Error {
        io::Error::new(io::ErrorKind::ConnectionAborted, "websocket closed")
    }

    /// Opens a bidirectional stream.
    pub fn open_bi(&self) -> io::Result<(SendHalf, RecvHalf)> {
        let id = self.lock_demux()?.open_bi().map_err(io::Error::other)?;
        let (tx, rx) = mpsc::channel(64);
        self.inner.local.lock().map_err(|_| self.closed_error())?.insert(id, tx);
        Ok((SendHalf::new(&self.inner, id), RecvHalf { rx, pending: Bytes::new() }))
    }

    /// Opens a unidirectional stream.
    pub fn open_uni(&self) -> io::Result<SendHalf> {
        let id = self.lock_demux()?.open_uni().map_err(io::Error::other)?;
        Ok(SendHalf::new(&self.inner, id))
    }

    fn lock_demux(&self) -> io::Result<std::sync::MutexGuard<'_, Demux>> {
        if self.inner.done.is_cancelled() {
            return Err(self.closed_error());
        }
        self.inner.demux.lock().map_err(|_| self.closed_error())
    }

    /// The next bidirectional stream the peer opened.
    pub async fn accept_bi(&self) -> io::Result<(SendHalf, RecvHalf)> {
        let mut accept = self.inner.accept_bi.lock().await;
        tokio::select! {
            pair = accept.recv() => pair.ok_or_else(|| self.closed_error()),
            () = self.inner.done.cancelled() => Err(self.closed_error()),
        }
    }

    /// The next unidirectional stream the peer opened.
    pub async fn accept_uni(&self) -> io::Result<RecvHalf> {
        let mut accept = self.inner.accept_uni.lock().await;
        tokio::select! {
            recv = accept.recv() => recv.ok_or_else(|| self.closed_error()),
            () = self.inner.done.cancelled() => Err(self.closed_error()),
        }
    }

    /// The next datagram from the peer.
    pub async fn recv_datagram(&self) -> io::Result<Bytes> {
        let mut incoming = self.inner.incoming.lock().await;
        tokio::select! {
            d = incoming.recv() => d.ok_or_else(|| self.closed_error()),
            () = self.inner.done.cancelled() => Err(self.closed_error()),
        }
    }

    /// Queues a datagram; when 16 are already waiting the oldest is dropped (latest wins).
    /// Returns whether one was dropped.
    pub fn send_datagram(&self, datagram: Bytes) -> io::Result<bool> {
        if self.inner.done.is_cancelled() {
            return Err(self.closed_error());
        }
        let mut ring = self.inner.ring.lock().map_err(|_| self.closed_error())?;
        let dropped = ring.len() >= DATAGRAM_RING;
        if dropped {
            ring.pop_front();
        }
        ring.push_back(datagram);
        drop(ring);
        self.inner.ring_ready.notify_one();
        Ok(dropped)
    }

    /// Bytes of datagrams that can be queued now without dropping any.
    pub fn datagram_space(&self) -> usize {
        let used = self.inner.ring.lock().map_or(DATAGRAM_RING, |r| r.len());
        DATAGRAM_RING.saturating_sub(used) * MAX_DATAGRAM_LEN
    }

    /// Sends what is queued, then a close frame with `code` and `reason`.
    pub fn close(&self, code: u16, reason: &str) {
        self.inner.finish(code, reason, Closure::Clean);
    }

    /// Waits for the session to end and says why.
    pub async fn closed(&self) -> Closed {
        self.inner.done.cancelled().await;
        self.inner.recorded()
    }

    /// How the session ended, or `None` while it is open. Never waits.
    pub fn ended(&self) -> Option<Closed> {
        self.inner.ended()
    }
}

/// Writes `frames` with one flush at the end.
async fn write_all<Si: Sink<Frame> + Unpin>(sink: &mut Si, frames: Vec<Frame>) -> Result<(), Si::Error> {
    for frame in frames {
        sink.feed(frame).await?;
    }
    sink.flush().await
}

async fn write_loop<Si: Sink<Frame> + Unpin>(
    inner: Arc<Inner>,
    mut sink: Si,
    mut reliable: mpsc::Receiver<Vec<u8>>,
) {
    loop {
        tokio::select! {
            biased;
            () = inner.done.cancelled() => break,
            next = reliable.recv() => {
                let Some(bytes) = next else { break };
                // Everything already queued goes out with it, in one flush: a flush per
                // envelope is a syscall each and, under load, the backlog behind them.
                let mut batch = vec![Frame::Binary(bytes.into())];
                while batch.len() < WRITE_BATCH {
                    match reliable.try_recv() {
                        Ok(more) => batch.push(Frame::Binary(more.into())),
                        Err(_) => break,
                    }
                }
                if write_all(&mut sink, batch).await.is_err() {
                    inner.finish(CLOSE_ABNORMAL, "socket write failed", Closure::Lost);
                    return;
                }
            }
            () = inner.ring_ready.notified() => {
                let pending: Vec<Frame> = inner
                    .ring
                    .lock()
                    .map(|mut r| r.drain(..).map(|d| Frame::Binary(Envelope::Datagram(&d).encode().into())).collect())
                    .unwrap_or_default();
                if write_all(&mut sink, pending).await.is_err() {
                    inner.finish(CLOSE_ABNORMAL, "socket write failed", Closure::Lost);
                    return;
                }
            }
        }
    }
    // What was queued before the close (a Fault, a GoAway) goes out before the close frame.
    while let Ok(bytes) = reliable.try_recv() {
        if sink.send(Frame::Binary(bytes.into())).await.is_err() {
            return;
        }
    }
    let Closed { code, reason, .. } = inner.recorded();
    // A broken socket has nobody to hear a close frame, and 1006 may not be sent anyway.
    if code == CLOSE_ABNORMAL {
        let _ = sink.close().await;
        return;
    }
    // Close reasons are limited to 123 bytes by RFC 6455.
    let reason: String = reason
        .chars()
        .scan(0, |n, c| {
            *n += c.len_utf8();
            (*n <= 123).then_some(c)
        })
        .collect();
    let _ = sink.send(Frame::Close(code, reason)).await;
    let _ = sink.close().await;
}

async fn read_loop<St, E>(
    inner: Arc<Inner>,
    mut stream: St,
    accept_bi: mpsc::Sender<(SendHalf, RecvHalf)>,
    accept_uni: mpsc::Sender<RecvHalf>,
    incoming: mpsc::Sender<Bytes>,
) where
    St: Stream<Item = Result<Frame, E>> + Unpin,
{
    let mut streams: HashMap<u64, mpsc::Sender<io::Result<Bytes>>> = HashMap::new();
    loop {
        let frame = tokio::select! {
            () = inner.done.cancelled() => return,
            f = stream.next() => f,
        };
        let bytes = match frame {
            Some(Ok(Frame::Binary(b))) => b,
            Some(Ok(Frame::Control)) => continue,
            Some(Ok(Frame::Text)) => {
                // A protocol violation, ended by us.
                inner.finish(CLOSE_UNSUPPORTED, "text messages are not part of the protocol", Closure::Clean);
                return;
            }
            Some(Ok(Frame::Close(code, reason))) => {
                inner.finish(code, &reason, closure_of(code));
                return;
            }
            Some(Err(_)) | None => {
                // No close frame: the socket broke (a TCP drop, a dead middlebox, a crash).
                inner.finish(CLOSE_ABNORMAL, "connection lost", Closure::Lost);
                return;
            }
        };
        let events =
            match inner.demux.lock().map(|mut d| d.receive(&bytes).map(|e| e.map(|e| e.map(Owned::from)))) {
                Ok(Ok(events)) => events,
                Ok(Err(e)) => {
                    inner.finish(CLOSE_BASE + e.code().to_u16(), &e.to_string(), Closure::Clean);
                    return;
                }
                Err(_) => return,
            };
        for event in events.into_iter().flatten() {
            match event {
                Owned::Opened(id) => {
                    let (tx, rx) = mpsc::channel(64);
                    streams.insert(id, tx);
                    let recv = RecvHalf { rx, pending: Bytes::new() };
                    let gone = if easel_proto::ws::is_unidirectional(id) {
                        accept_uni.send(recv).await.is_err()
                    } else {
                        accept_bi.send((SendHalf::new(&inner, id), recv)).await.is_err()
                    };
                    if gone {
                        return;
                    }
                }
                Owned::Data(id, data) => {
                    let tx = streams.get(&id).cloned().or_else(|| take_local(&inner, id, &mut streams));
                    // Awaiting is TCP's head-of-line blocking made explicit: a stream nobody
                    // reads stalls the socket, as it would on one TCP connection.
                    if let Some(tx) = tx {
                        let _ = tx.send(Ok(data)).await;
                    }
                }
                Owned::Fin(id) => {
                    streams.remove(&id);
                    take_local(&inner, id, &mut streams);
                    streams.remove(&id);
                }
                Owned::Reset(id, code) => {
                    let tx = streams.remove(&id).or_else(|| take_local(&inner, id, &mut streams));
                    streams.remove(&id);
                    if let Some(tx) = tx {
                        let e = io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            format!("stream reset with {code}"),
                        );
                        let _ = tx.send(Err(e)).await;
                    }
                }
                Owned::Datagram(d) => {
                    // Full means the application is not keeping up: drop, latest wins.
                    let _ = incoming.try_send(d);
                }
            }
        }
    }
}

/// Moves a locally opened stream's receiver into the reader's table on first use.
fn take_local(
    inner: &Inner,
    id: u64,
    streams: &mut HashMap<u64, mpsc::Sender<io::Result<Bytes>>>,
) -> Option<mpsc::Sender<io::Result<Bytes>>> {
    let tx = inner.local.lock().ok()?.remove(&id)?;
    streams.insert(id, tx.clone());
    Some(tx)
}

/// An [`Event`] detached from the message buffer.
enum Owned {
    Opened(u64),
    Data(u64, Bytes),
    Fin(u64),
    Reset(u64, u16),
    Datagram(Bytes),
}

impl From<Event<'_>> for Owned {
    fn from(event: Event<'_>) -> Self {
        match event {
            Event::Opened { id } => Self::Opened(id),
            Event::Data { id, data } => Self::Data(id, Bytes::copy_from_slice(data)),
            Event::Fin { id } => Self::Fin(id),
            Event::Reset { id, code } => Self::Reset(id, code),
            Event::Datagram(d) => Self::Datagram(Bytes::copy_from_slice(d)),
        }
    }
}

/// The sending half of a stream; `shutdown()` sends FIN.
pub struct SendHalf {
    id: u64,
    sender: PollSender<Vec<u8>>,
    finished: bool,
}

impl SendHalf {
    fn new(inner: &Inner, id: u64) -> Self {
        Self { id, sender: PollSender::new(inner.reliable.clone()), finished: false }
    }

    /// The stream id.
    pub fn id(&self) -> u64 {
        self.id
    }

    fn poll_send(&mut self, cx: &mut Context<'_>, envelope: &Envelope<'_>) -> Poll<io::Result<()>> {
        let broken = |_| io::Error::new(io::ErrorKind::BrokenPipe, "websocket closed");
        ready!(self.sender.poll_reserve(cx)).map_err(broken)?;
        self.sender.send_item(envelope.encode()).map_err(broken)?;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SendHalf {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(MAX_PIECE);
        let id = self.id;
        ready!(self.poll_send(cx, &Envelope::Stream { id, data: &buf[..n] }))?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.finished {
            return Poll::Ready(Ok(()));
        }
        let id = self.id;
        ready!(self.poll_send(cx, &Envelope::Fin { id }))?;
        self.finished = true;
        Poll::Ready(Ok(()))
    }
}

/// The receiving half of a stream; EOF after the peer's FIN.
pub struct RecvHalf {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    pending: Bytes,
}

impl AsyncRead for RecvHalf {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pending.is_empty() {
            match ready!(self.rx.poll_recv(cx)) {
                Some(Ok(bytes)) => self.pending = bytes,
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending.split_to(n));
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// Two muxes joined back to back by in-memory channels standing in for the socket.
    fn pair() -> (Mux, Mux) {
        fn end(
            tx: futures::channel::mpsc::Sender<Frame>,
            rx: futures::channel::mpsc::Receiver<Frame>,
            side: Side,
        ) -> Mux {
            let sink = tx.sink_map_err(|_| ());
            let stream = rx.map(Ok::<_, ()>);
            Mux::spawn(side, sink, stream)
        }
        let (a_tx, a_rx) = futures::channel::mpsc::channel(64);
        let (b_tx, b_rx) = futures::channel::mpsc::channel(64);
        (end(a_tx, b_rx, Side::Client), end(b_tx, a_rx, Side::Server))
    }

    #[tokio::test]
    async fn streams_datagrams_and_close_cross_the_mux() {
        let (client, server) = pair();
        let (mut send, mut recv) = client.open_bi().expect("open");
        send.write_all(b"hello").await.expect("write");
        let (mut s_send, mut s_recv) = server.accept_bi().await.expect("accept");
        let mut buf = [0u8; 5];
        s_recv.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"hello");
        s_send.write_all(b"welcome").await.expect("reply");
        s_send.shutdown().await.expect("fin");
        let mut reply = Vec::new();
        recv.read_to_end(&mut reply).await.expect("read to FIN");
        assert_eq!(reply, b"welcome");

        let mut uni = server.open_uni().expect("uni");
        uni.write_all(b"snapshot").await.expect("write");
        uni.shutdown().await.expect("fin");
        let mut snap = Vec::new();
        client.accept_uni().await.expect("accept uni").read_to_end(&mut snap).await.expect("read");
        assert_eq!(snap, b"snapshot");

        client.send_datagram(Bytes::from_static(&[0x82, 1])).expect("datagram");
        assert_eq!(server.recv_datagram().await.expect("datagram"), Bytes::from_static(&[0x82, 1]));

        server.close(CLOSE_BASE + 501, "shutting down");
        let closed = client.closed().await;
        assert_eq!(closed.easel_code(), Some(easel_proto::ErrorCode::ShuttingDown));
    }

    #[tokio::test]
    async fn a_stream_never_answered_ends_when_the_session_does() {
        let (client, server) = pair();
        let (mut send, mut recv) = client.open_bi().expect("open");
        send.write_all(b"he").await.expect("write");
        let _half_heard = server.accept_bi().await.expect("accept");
        server.close(CLOSE_BASE + 304, "handshake timeout");
        let mut rest = Vec::new();
        // Before the fix this waited for ever: the reply that would register it never came.
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(10), recv.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the stream outlived its session");
    }

    #[tokio::test]
    async fn datagrams_are_latest_wins_when_backed_up() {
        // A socket that takes one message and then never another: the writer is stuck.
        let (tx, _never_read) = futures::channel::mpsc::channel::<Frame>(0);
        let (_keep, rx) = futures::channel::mpsc::channel::<Frame>(1);
        let mux = Mux::spawn(Side::Client, tx.sink_map_err(|_| ()), rx.map(Ok::<_, ()>));
        for i in 0..40u8 {
            mux.send_datagram(Bytes::from(vec![0x80, i])).expect("send");
            tokio::task::yield_now().await;
        }
        let ring: Vec<u8> = mux.inner.ring.lock().expect("lock").iter().map(|d| d[1]).collect();
        assert!(!ring.is_empty() && ring.len() <= DATAGRAM_RING, "bounded: {ring:?}");
        let newest: Vec<u8> = (40 - ring.len() as u8..40).collect();
        assert_eq!(ring, newest, "the oldest are dropped, the newest kept in order");
        assert_eq!(mux.datagram_space(), (DATAGRAM_RING - ring.len()) * MAX_DATAGRAM_LEN);
    }

    /// A mux whose peer is played by the test: frames it sends, frames it gets.
    fn facing_test() -> (Mux, futures::channel::mpsc::Sender<Frame>, futures::channel::mpsc::Receiver<Frame>)
    {
        let (to_mux, rx) = futures::channel::mpsc::channel::<Frame>(8);
        let (tx, from_mux) = futures::channel::mpsc::channel::<Frame>(8);
        (Mux::spawn(Side::Server, tx.sink_map_err(|_| ()), rx.map(Ok::<_, ()>)), to_mux, from_mux)
    }

    #[tokio::test]
    async fn a_socket_gone_without_a_close_frame_is_lost_not_normal() {
        let (mux, to_mux, _from_mux) = facing_test();
        assert_eq!(mux.ended(), None);
        drop(to_mux);
        let closed = mux.closed().await;
        assert_eq!((closed.code, closed.closure), (CLOSE_ABNORMAL, Closure::Lost));
        assert_eq!(closed.easel_code(), None);
        assert_eq!(mux.ended(), Some(closed));
    }

    #[tokio::test]
    async fn close_frames_are_classified_by_code() {
        for (code, closure) in [(1000, Closure::Clean), (CLOSE_BASE, Closure::Clean), (1001, Closure::Lost)] {
            let (mux, mut to_mux, _from_mux) = facing_test();
            to_mux.send(Frame::Close(code, "bye".into())).await.expect("send");
            let closed = mux.closed().await;
            assert_eq!((closed.code, closed.reason.as_str(), closed.closure), (code, "bye", closure));
        }
    }

    #[tokio::test]
    async fn ends_made_here_are_clean_and_the_last_handle_closes_normally() {
        let (mux, mut to_mux, mut from_mux) = facing_test();
        to_mux.send(Frame::Text).await.expect("send");
        assert_eq!(
            from_mux.next().await,
            Some(Frame::Close(CLOSE_UNSUPPORTED, "text messages are not part of the protocol".into()))
        );
        assert_eq!(mux.closed().await.closure, Closure::Clean);

        let (client, server) = pair();
        drop(client);
        let closed = server.closed().await;
        assert_eq!((closed.code, closed.closure), (CLOSE_BASE, Closure::Clean));
    }
}
