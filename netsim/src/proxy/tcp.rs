//! The TCP proxy: the WebSocket fallback through a simulated path.
//!
//! TCP is terminated on both sides of the proxy, so impairment can only be *delay*: see
//! [`stream`](crate::stream) for exactly what is modelled (rate, delay, jitter, loss as an
//! RTO-long retransmission stall with head-of-line blocking) and what is not (fast
//! retransmit, congestion control, ACK loss, duplication).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::{ProxyError, deadline, derive_seed};
use crate::scenario::{Direction, Scenario};
use crate::stream::{StreamConfig, StreamLink, StreamStats};

/// Bytes read from a socket at once.
const READ_CHUNK: usize = 64 * 1024;

/// Limits of a [`Tcp`] proxy.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TcpOptions {
    /// Most connections at once; further ones are closed as soon as accepted. Default 4,096.
    pub max_connections: usize,
    /// How long to wait for the upstream to accept. Default 10 s.
    pub connect_timeout: Duration,
}

impl Default for TcpOptions {
    fn default() -> Self {
        Self { max_connections: 4_096, connect_timeout: Duration::from_secs(10) }
    }
}

/// What a [`Tcp`] proxy has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpStats {
    /// Connections accepted and proxied.
    pub connections: u64,
    /// Connections open now.
    pub active_connections: usize,
    /// Connections closed at once because `max_connections` were open.
    pub rejected: u64,
    /// Connections whose upstream could not be reached.
    pub upstream_failures: u64,
    /// Every connection's client → server stream, summed.
    pub up: StreamStats,
    /// Every connection's server → client stream, summed.
    pub down: StreamStats,
}

/// A running TCP proxy: each connection to [`local_addr`](Self::local_addr) gets its own
/// connection to the upstream, and the bytes of each direction cross a [`StreamLink`].
/// Stops on [`shutdown`](Self::shutdown) or drop.
#[derive(Debug)]
pub struct Tcp {
    local_addr: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<()>,
    stats: Arc<Mutex<TcpStats>>,
}

impl Tcp {
    /// Starts a proxy on `listen` (port 0: any) in front of `upstream`, impairing as
    /// `scenario` says with randomness from `seed`. Must be called inside a tokio runtime.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        scenario: &Scenario,
        seed: u64,
    ) -> Result<Self, ProxyError> {
        Self::start_with(listen, upstream, scenario, seed, TcpOptions::default()).await
    }

    /// [`start`](Self::start) with explicit limits.
    pub async fn start_with(
        listen: SocketAddr,
        upstream: SocketAddr,
        scenario: &Scenario,
        seed: u64,
        options: TcpOptions,
    ) -> Result<Self, ProxyError> {
        let listener =
            TcpListener::bind(listen).await.map_err(|source| ProxyError::Bind { addr: listen, source })?;
        let local_addr = listener.local_addr().map_err(|source| ProxyError::Bind { addr: listen, source })?;
        let cancel = CancellationToken::new();
        let stats = Arc::new(Mutex::new(TcpStats::default()));
        let acceptor = Acceptor {
            listener,
            upstream,
            streams: Arc::new((scenario.stream(Direction::Up), scenario.stream(Direction::Down))),
            seed,
            options,
            cancel: cancel.clone(),
            stats: Arc::clone(&stats),
        };
        let task = tokio::spawn(acceptor.run());
        tracing::debug!(%local_addr, %upstream, scenario = %scenario.name, "tcp proxy listening");
        Ok(Self { local_addr, cancel, task, stats })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Counters so far.
    pub fn stats(&self) -> TcpStats {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the proxy and waits until every connection is closed. Bytes in flight are lost.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Tcp {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

struct Acceptor {
    listener: TcpListener,
    upstream: SocketAddr,
    /// (up, down) for every connection.
    streams: Arc<(StreamConfig, StreamConfig)>,
    seed: u64,
    options: TcpOptions,
    cancel: CancellationToken,
    stats: Arc<Mutex<TcpStats>>,
}

impl Acceptor {
    async fn run(self) {
        let mut connections = JoinSet::new();
        let mut next = 0u64;
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {
                    lock(&self.stats).active_connections = connections.len();
                }
                accepted = self.listener.accept() => {
                    let (client, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            // Typically out of file descriptors; the next accept may work.
                            tracing::warn!(%error, "tcp proxy accept failed");
                            continue;
                        }
                    };
                    if connections.len() >= self.options.max_connections {
                        lock(&self.stats).rejected += 1;
                        continue;
                    }
                    let up = StreamLink::new(self.streams.0.clone(), derive_seed(self.seed, 2 * next));
                    let down = StreamLink::new(self.streams.1.clone(), derive_seed(self.seed, 2 * next + 1));
                    next += 1;
                    let connection = Connection {
                        upstream: self.upstream,
                        connect_timeout: self.options.connect_timeout,
                        cancel: self.cancel.clone(),
                        stats: Arc::clone(&self.stats),
                    };
                    connections.spawn(connection.run(client, peer, up, down));
                    let mut stats = lock(&self.stats);
                    stats.connections += 1;
                    stats.active_connections = connections.len();
                }
            }
        }
        connections.shutdown().await;
        lock(&self.stats).active_connections = 0;
    }
}

fn lock(stats: &Mutex<TcpStats>) -> std::sync::MutexGuard<'_, TcpStats> {
    stats.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Connection {
    upstream: SocketAddr,
    connect_timeout: Duration,
    cancel: CancellationToken,
    stats: Arc<Mutex<TcpStats>>,
}

impl Connection {
    async fn run(self, client: TcpStream, peer: SocketAddr, up: StreamLink, down: StreamLink) {
        let server = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(self.upstream)).await
        {
            Ok(Ok(server)) => server,
            Ok(Err(error)) => {
                tracing::debug!(%peer, upstream = %self.upstream, %error, "tcp proxy cannot reach upstream");
                lock(&self.stats).upstream_failures += 1;
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, upstream = %self.upstream, "tcp proxy: upstream connect timed out");
                lock(&self.stats).upstream_failures += 1;
                return;
            }
        };
        // The simulated path decides when bytes leave; Nagle must not add its own delay.
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        let result = tokio::try_join!(
            self.pump(client_read, server_write, up, Direction::Up),
            self.pump(server_read, client_write, down, Direction::Down),
        );
        if let Err(error) = result {
            tracing::debug!(%peer, %error, "tcp proxy connection ended");
        }
    }

    /// Moves bytes from `src` to `dst` through `link` until `src` ends and everything read
    /// has been delivered, then half-closes `dst`.
    async fn pump(
        &self,
        mut src: OwnedReadHalf,
        mut dst: OwnedWriteHalf,
        mut link: StreamLink,
        direction: Direction,
    ) -> io::Result<()> {
        let mut buf = vec![0u8; READ_CHUNK];
        let mut out = BytesMut::new();
        let mut reported = StreamStats::default();
        let mut eof = false;
        loop {
            let next = link.poll_timeout();
            // Stop reading while the link is full: the sender's TCP then feels the back-pressure.
            let can_read = !eof && link.has_room();
            tokio::select! {
                () = self.cancel.cancelled() => return Ok(()),
                read = src.read(&mut buf), if can_read => match read? {
                    0 => eof = true,
                    len => link.send(Instant::now(), Bytes::copy_from_slice(&buf[..len])),
                },
                () = tokio::time::sleep_until(deadline(next.unwrap_or_else(Instant::now))), if next.is_some() => {}
            }
            let now = Instant::now();
            while let Some(segment) = link.poll_transmit(now) {
                out.extend_from_slice(&segment);
            }
            if !out.is_empty() {
                dst.write_all(&out).await?;
                out.clear();
            }
            let stats = link.stats();
            if stats != reported {
                let mut total = lock(&self.stats);
                match direction {
                    Direction::Up => total.up.add(&stats.since(&reported)),
                    Direction::Down => total.down.add(&stats.since(&reported)),
                }
                reported = stats;
            }
            if eof && link.is_empty() {
                return dst.shutdown().await;
            }
        }
    }
}
