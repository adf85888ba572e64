//! The UDP proxy: QUIC and WebTransport through a simulated path.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::{ProxyError, deadline, derive_seed};
use crate::link::{Link, LinkConfig, LinkStats};
use crate::scenario::Scenario;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// Limits of a [`Udp`] proxy.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UdpOptions {
    /// A client mapping with no packet either way for this long, and nothing in flight, is
    /// removed (and its upstream socket closed). Default 60 s, above QUIC's usual 30 s idle
    /// timeout so that the proxy never ends a connection the endpoints consider alive.
    pub idle_timeout: Duration,
    /// Most client mappings at once; packets from further clients are dropped. Default 4,096.
    pub max_clients: usize,
    /// Packets from one client waiting for its mapping task; beyond it they are dropped
    /// (counted in [`UdpStats::overflow`]). Default 1,024.
    pub client_queue: usize,
}

impl Default for UdpOptions {
    fn default() -> Self {
        Self { idle_timeout: Duration::from_secs(60), max_clients: 4_096, client_queue: 1_024 }
    }
}

/// What a [`Udp`] proxy has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpStats {
    /// Client mappings created.
    pub clients: u64,
    /// Client mappings alive now.
    pub active_clients: usize,
    /// Packets dropped because `max_clients` mappings existed.
    pub rejected: u64,
    /// Packets dropped because a client's mapping task lagged `client_queue` packets behind.
    pub overflow: u64,
    /// Packets dropped, either way, while the path was cut ([`Udp::cut`]).
    pub cut: u64,
    /// Every client's client → server link, summed.
    pub up: LinkStats,
    /// Every client's server → client link, summed.
    pub down: LinkStats,
}

/// The front socket's receive buffer. Why: every client's packets queue in this one socket,
/// and the usual default (208 KiB) overflows when thousands of clients reconnect at once, so
/// the proxy itself would drop what the scenario says to deliver. The kernel caps it at
/// `net.core.rmem_max`.
const FRONT_RECEIVE_BUFFER: usize = 8 * 1024 * 1024;

/// The front socket on `listen`, with [`FRONT_RECEIVE_BUFFER`] (as much as the kernel gives).
fn bind_front(listen: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(listen),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if let Err(error) = socket.set_recv_buffer_size(FRONT_RECEIVE_BUFFER) {
        tracing::warn!(%listen, %error, "udp proxy cannot enlarge its receive buffer");
    }
    socket.bind(&listen.into())?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// A running UDP proxy: datagrams to [`local_addr`](Self::local_addr) go to the upstream
/// through the scenario's `up` link, replies come back through its `down` link.
///
/// Each client address gets its own upstream socket, so the server sees as many clients as
/// there are, and its own pair of [`Link`]s. Stops on [`shutdown`](Self::shutdown) or drop.
#[derive(Debug)]
pub struct Udp {
    local_addr: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<()>,
    stats: Arc<Mutex<UdpStats>>,
    cut: Arc<AtomicBool>,
}

impl Udp {
    /// Starts a proxy on `listen` (port 0: any) in front of `upstream`, impairing as
    /// `scenario` says with randomness from `seed`. Must be called inside a tokio runtime.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        scenario: &Scenario,
        seed: u64,
    ) -> Result<Self, ProxyError> {
        Self::start_with(listen, upstream, scenario, seed, UdpOptions::default()).await
    }

    /// [`start`](Self::start) with explicit limits.
    pub async fn start_with(
        listen: SocketAddr,
        upstream: SocketAddr,
        scenario: &Scenario,
        seed: u64,
        options: UdpOptions,
    ) -> Result<Self, ProxyError> {
        let socket = bind_front(listen).map_err(|source| ProxyError::Bind { addr: listen, source })?;
        let local_addr = socket.local_addr().map_err(|source| ProxyError::Bind { addr: listen, source })?;
        let cancel = CancellationToken::new();
        let stats = Arc::new(Mutex::new(UdpStats::default()));
        let cut = Arc::new(AtomicBool::new(false));
        let front = Front {
            cut: Arc::clone(&cut),
            socket: Arc::new(socket),
            upstream,
            links: Arc::new((scenario.up.clone(), scenario.down.clone())),
            seed,
            options,
            cancel: cancel.clone(),
            stats: Arc::clone(&stats),
        };
        let task = tokio::spawn(front.run());
        tracing::debug!(%local_addr, %upstream, scenario = %scenario.name, "udp proxy listening");
        Ok(Self { local_addr, cancel, task, stats, cut })
    }

    /// Cuts the path (`true`: every packet either way is dropped, as when a campus Wi-Fi
    /// goes down; endpoints notice only by their timeouts) or heals it (`false`). Client
    /// mappings are kept, so a connection that outlived the cut carries on.
    pub fn cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::Relaxed);
    }

    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Counters so far.
    pub fn stats(&self) -> UdpStats {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the proxy and waits until every socket is closed. Packets in flight are lost.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Udp {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The listening socket's task: routes each client's datagrams to its mapping.
struct Front {
    socket: Arc<UdpSocket>,
    upstream: SocketAddr,
    /// (up, down) for every client.
    links: Arc<(LinkConfig, LinkConfig)>,
    seed: u64,
    options: UdpOptions,
    cancel: CancellationToken,
    stats: Arc<Mutex<UdpStats>>,
    cut: Arc<AtomicBool>,
}

type Inbox = mpsc::Sender<(Instant, Bytes)>;

impl Front {
    async fn run(self) {
        let mut clients: HashMap<SocketAddr, Inbox> = HashMap::new();
        let mut tasks = JoinSet::new();
        let mut next_client = 0u64;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => break,
                Some(ended) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok(client) = ended
                        && clients.get(&client).is_some_and(mpsc::Sender::is_closed)
                    {
                        clients.remove(&client);
                    }
                    self.lock().active_clients = tasks.len();
                }
                received = self.socket.recv_from(&mut buf) => {
                    let (len, client) = match received {
                        Ok(received) => received,
                        Err(error) => {
                            // Some platforms report an ICMP error for an earlier send here.
                            tracing::debug!(%error, "udp proxy receive failed");
                            continue;
                        }
                    };
                    if self.cut.load(Ordering::Relaxed) {
                        self.lock().cut += 1;
                        continue;
                    }
                    let packet = (Instant::now(), Bytes::copy_from_slice(&buf[..len]));
                    let packet = match clients.get(&client) {
                        None => packet,
                        Some(inbox) => match inbox.try_send(packet) {
                            Ok(()) => continue,
                            Err(mpsc::error::TrySendError::Full(_)) => {
                                self.lock().overflow += 1;
                                continue;
                            }
                            // The mapping expired while this packet was on its way: start anew.
                            Err(mpsc::error::TrySendError::Closed(packet)) => packet,
                        },
                    };
                    if clients.len() >= self.options.max_clients {
                        clients.retain(|_, inbox| !inbox.is_closed());
                        if clients.len() >= self.options.max_clients {
                            self.lock().rejected += 1;
                            continue;
                        }
                    }
                    let Some(mapping) = self.mapping(client, next_client).await else { continue };
                    next_client += 1;
                    let (inbox, rx) = mpsc::channel(self.options.client_queue.max(1));
                    let _ = inbox.try_send(packet);
                    clients.insert(client, inbox);
                    tasks.spawn(mapping.run(rx));
                    let mut stats = self.lock();
                    stats.clients += 1;
                    stats.active_clients = tasks.len();
                }
            }
        }
        tasks.shutdown().await;
        self.lock().active_clients = 0;
    }

    async fn mapping(&self, client: SocketAddr, index: u64) -> Option<Mapping> {
        let any: SocketAddr = if self.upstream.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let upstream = match UdpSocket::bind(any).await {
            Ok(socket) => socket,
            Err(error) => {
                tracing::warn!(%client, %error, "udp proxy cannot open an upstream socket");
                return None;
            }
        };
        if let Err(error) = upstream.connect(self.upstream).await {
            tracing::warn!(%client, upstream = %self.upstream, %error, "udp proxy cannot reach upstream");
            return None;
        }
        tracing::debug!(%client, index, "udp proxy: new client");
        Some(Mapping {
            client,
            front: Arc::clone(&self.socket),
            upstream,
            up: Link::new(self.links.0.clone(), derive_seed(self.seed, 2 * index)),
            down: Link::new(self.links.1.clone(), derive_seed(self.seed, 2 * index + 1)),
            idle_timeout: self.options.idle_timeout,
            cancel: self.cancel.clone(),
            stats: Arc::clone(&self.stats),
            cut: Arc::clone(&self.cut),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, UdpStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One client: its upstream socket and its two links.
struct Mapping {
    client: SocketAddr,
    front: Arc<UdpSocket>,
    upstream: UdpSocket,
    up: Link,
    down: Link,
    idle_timeout: Duration,
    cancel: CancellationToken,
    stats: Arc<Mutex<UdpStats>>,
    cut: Arc<AtomicBool>,
}

impl Mapping {
    /// Runs until idle or cancelled; returns the client's address so the front can forget it.
    async fn run(mut self, mut inbox: mpsc::Receiver<(Instant, Bytes)>) -> SocketAddr {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut last_active = Instant::now();
        let mut reported = (LinkStats::default(), LinkStats::default());
        loop {
            let next = match (self.up.poll_timeout(), self.down.poll_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                () = self.cancel.cancelled() => break,
                packet = inbox.recv() => match packet {
                    Some((at, packet)) => {
                        last_active = at;
                        self.up.send(at, packet);
                    }
                    None => break,
                },
                received = self.upstream.recv(&mut buf) => match received {
                    Ok(len) => {
                        let now = Instant::now();
                        last_active = now;
                        self.down_send(now, &buf[..len]);
                    }
                    // A connected socket reports the server's ICMP "port unreachable" here.
                    Err(error) => tracing::trace!(client = %self.client, %error, "upstream receive failed"),
                },
                () = tokio::time::sleep_until(deadline(next.unwrap_or(last_active))), if next.is_some() => {}
                // Only when nothing is in flight: in-flight packets are delivered first.
                () = tokio::time::sleep_until(deadline(last_active + self.idle_timeout)), if next.is_none() => {
                    tracing::debug!(client = %self.client, "udp proxy: client idle, mapping removed");
                    break;
                }
            }
            // Take whatever else is waiting before sending: one wake-up per burst, not per packet.
            while let Ok((at, packet)) = inbox.try_recv() {
                last_active = at;
                self.up.send(at, packet);
            }
            while let Ok(len) = self.upstream.try_recv(&mut buf) {
                let now = Instant::now();
                last_active = now;
                self.down_send(now, &buf[..len]);
            }
            let now = Instant::now();
            while let Some(packet) = self.up.poll_transmit(now) {
                if let Err(error) = self.upstream.send(&packet).await {
                    tracing::trace!(client = %self.client, %error, "upstream send failed");
                }
            }
            while let Some(packet) = self.down.poll_transmit(now) {
                if let Err(error) = self.front.send_to(&packet, self.client).await {
                    tracing::trace!(client = %self.client, %error, "client send failed");
                }
            }
            self.report(&mut reported);
        }
        self.report(&mut reported);
        self.client
    }

    /// A packet from the server into the down link, unless the path is cut.
    fn down_send(&mut self, now: Instant, packet: &[u8]) {
        if self.cut.load(Ordering::Relaxed) {
            self.stats.lock().unwrap_or_else(PoisonError::into_inner).cut += 1;
        } else {
            self.down.send(now, Bytes::copy_from_slice(packet));
        }
    }

    /// Adds what the links did since the last report to the proxy's stats.
    fn report(&self, reported: &mut (LinkStats, LinkStats)) {
        let now = (self.up.stats(), self.down.stats());
        if now != *reported {
            let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
            stats.up.add(&now.0.since(&reported.0));
            stats.down.add(&now.1.since(&reported.1));
            *reported = now;
        }
    }
}
