//! Starting and stopping the whole server: certificate, secret, store, the WebTransport, QUIC
//! and HTTP listeners, the room registry, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use easel_proto::ErrorCode;
use easel_sfu_bridge::Sfu;
use easel_sfu_bridge::janus::{Janus, JanusConfig};
use easel_transport::Side;
use easel_transport::quic::{QuicSession, transport_config};
use easel_transport::webtransport::WtSession;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wtransport::Identity;

use crate::admission::{Admission, Entry, Limits};
use crate::auth::{self, SecretSource, Verifier};
use crate::board::Board;
use crate::cluster::{self, Cluster, NodeInfo};
use crate::config::{ConfigError, ServerConfig, SfuKind, TlsFiles};
use crate::resume::Resumes;
use crate::revoke::Revocations;
use crate::room::{self, Command};
use crate::shared::{Rooms, Shared};
use crate::store::{Store, StoreError};
use crate::{http, session, telemetry};

type WtEndpoint = wtransport::Endpoint<wtransport::endpoint::endpoint_side::Server>;

/// Validity of the self-signed certificate (browsers accept hashes of certificates valid ≤ 14 days).
pub const SELF_SIGNED_DAYS: u32 = 14;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A setting is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The JWT secret or key is missing or unusable.
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Cluster mode: NATS is not reachable.
    #[error(transparent)]
    Cluster(#[from] cluster::ConnectError),
    /// The QUIC stateless-reset key in the data dir is unusable.
    #[error(transparent)]
    ResetKey(#[from] crate::reset::ResetKeyError),
    /// The TLS certificate could not be made or loaded.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A listening address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running server.
pub struct Server {
    wt_addr: SocketAddr,
    quic_addr: SocketAddr,
    http_addr: SocketAddr,
    cert_hash: String,
    secret_source: SecretSource,
    shared: Arc<Shared>,
    store: Store,
    cluster: Option<Arc<Cluster>>,
    wt: Arc<WtEndpoint>,
    quic: quinn::Endpoint,
    tasks: JoinSet<()>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("wt_addr", &self.wt_addr)
            .field("quic_addr", &self.quic_addr)
            .field("http_addr", &self.http_addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens storage, makes or loads the certificate, binds every listener and starts serving.
    pub async fn start(config: ServerConfig) -> Result<Self, StartError> {
        config.validate()?;
        let (secret, secret_source) =
            auth::resolve_secret(config.jwt_secret.as_deref(), &config.data_dir, config.loopback_only())?;
        let es256 =
            match &config.jwt_es256_public_key {
                Some(path) => Some(std::fs::read(path).map_err(|e| {
                    auth::AuthError::Secret(format!("ES256 public key {}: {e}", path.display()))
                })?),
                None => None,
            };
        let identity = identity(&config).await?;
        let cert_hash = hex::encode(identity.certificate_chain().as_slice()[0].hash().as_ref());

        let store = {
            let dir = config.data_dir.clone();
            tokio::task::spawn_blocking(move || Store::open(&dir))
                .await
                .map_err(|e| StoreError::Database(e.to_string()))??
        };
        let verifier = Verifier::new(&secret, es256.as_deref())?
            .expecting(config.jwt_issuer.as_deref(), config.jwt_audience.as_deref())
            .revoking(Revocations::load(&store)?);
        let room_config = room::Config {
            tick: config.tick(),
            datagram_budget: config.room_datagram_budget,
            server_budget: room::DatagramBudget::new(config.datagram_budget()),
            active_cursors: config.room_active_cursors,
            presence_ttl: config.presence_ttl,
            max_participants: config.max_participants as usize,
            snapshot_every: config.snapshot_every,
            idle_unload: config.idle_unload,
            resume_grace: config.resume_grace,
            chat_per_min: config.chat_per_min,
            students_publish: config.sfu.as_ref().is_none_or(|s| s.students_publish),
            sfu_fallback_url: config.sfu_fallback_url.clone(),
            ..room::Config::default()
        };
        let prometheus = telemetry::install();
        metrics::gauge!("easel_datagram_budget").set(f64::from(config.datagram_budget()));
        let nats = match &config.cluster {
            Some(c) => Some((cluster::connect(c).await?, c.clone())),
            None => {
                metrics::gauge!("easel_cluster_nodes").set(1.0);
                None
            }
        };
        let endpoint_config = crate::reset::endpoint_config(&config.data_dir)?;
        let wt_socket =
            bind_udp(config.wt_addr).map_err(|source| StartError::Bind { addr: config.wt_addr, source })?;
        let mut wt_config = wtransport::ServerConfig::builder()
            .with_bind_socket(wt_socket)
            .with_custom_transport(identity.clone_identity(), transport_config(Side::Server))
            .build();
        *wt_config.quic_endpoint_config_mut() = endpoint_config.clone();
        let wt = Arc::new(
            wtransport::Endpoint::server(wt_config)
                .map_err(|source| StartError::Bind { addr: config.wt_addr, source })?,
        );
        let wt_addr = wt.local_addr().map_err(|source| StartError::Bind { addr: config.wt_addr, source })?;

        let quic = quic_endpoint(
            endpoint_config,
            quic_config(&identity, Arc::new(transport_config(Side::Server)))?,
            config.quic_addr,
        )
        .map_err(|source| StartError::Bind { addr: config.quic_addr, source })?;
        let quic_addr =
            quic.local_addr().map_err(|source| StartError::Bind { addr: config.quic_addr, source })?;

        let http = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| StartError::Bind { addr: config.http_addr, source })?;
        let http_addr =
            http.local_addr().map_err(|source| StartError::Bind { addr: config.http_addr, source })?;

        let node = nats.map(|(nats, c)| {
            let me = NodeInfo {
                // Derived from the port actually bound (the flag may say 0).
                id: c.node_id.clone().unwrap_or_else(|| cluster::default_node_id(quic_addr.port())),
                quic: quic_addr.to_string(),
                wt: wt_addr.to_string(),
                http: http_addr.to_string(),
                started_at_ms: crate::shared::unix_ms(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
            };
            (nats, c, me)
        });
        let resumes = match &node {
            Some((nats, _, me)) => {
                Resumes::clustered(config.resume_grace, nats.resumes(me.id.clone(), config.resume_grace))
            }
            None => Resumes::new(config.resume_grace),
        };
        let (board, relay) = match &node {
            // The origin names this start: a restarted node replays its own earlier writes,
            // and numbers its members afresh.
            Some((nats, _, me)) => {
                let origin = format!("{}@{}", me.id, me.started_at_ms);
                (Board::Cluster(Arc::new(nats.room_log(origin.clone()))), Some(nats.relay(origin)))
            }
            None => (Board::Local(store.clone()), None),
        };
        let shared = Arc::new(Shared {
            config: config.clone(),
            verifier,
            store: store.clone(),
            rooms: Rooms::new(store.clone(), board, relay, room_config, sfu(&config)),
            resumes,
            next_conn: AtomicU64::new(0),
            admission: Admission::new(Limits::of(&config)),
            shutdown: CancellationToken::new(),
        });

        let mut tasks = JoinSet::new();
        let cluster = node.map(|(nats, c, me)| {
            tracing::info!(node = me.id, "cluster: joining");
            let view = Arc::new(Cluster::new(me.clone()));
            tasks.spawn(cluster::run(nats, view.clone(), me, c, shared.shutdown.clone()));
            view
        });
        tasks.spawn(accept_wt(wt.clone(), shared.clone()));
        tasks.spawn(accept_quic(quic.clone(), shared.clone()));
        let app =
            http::router(prometheus, cert_hash.clone(), wt_addr.port(), shared.clone(), cluster.clone());
        let stop = shared.shutdown.clone();
        tasks.spawn(async move {
            use axum::serve::ListenerExt as _;
            // The WebSocket fallback carries cursors: Nagle's algorithm would hold them ~40 ms.
            let http = http.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!("TCP_NODELAY: {e}");
                }
            });
            // The WebSocket upgrade asks the admission gate by the peer's address, which also
            // goes into the session's log span.
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let serve = axum::serve(http, app).with_graceful_shutdown(async move { stop.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!("http server: {e}");
            }
        });
        Ok(Self {
            wt_addr,
            quic_addr,
            http_addr,
            cert_hash,
            secret_source,
            shared,
            store,
            cluster,
            wt,
            quic,
            tasks,
        })
    }

    /// The WebTransport UDP address actually bound.
    pub fn wt_addr(&self) -> SocketAddr {
        self.wt_addr
    }

    /// The raw QUIC UDP address actually bound.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// The HTTP address actually bound.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// SHA-256 of the leaf certificate, lowercase hex (what `GET /cert-hash` serves).
    pub fn cert_hash(&self) -> &str {
        &self.cert_hash
    }

    /// Cluster mode's view of the cluster; `None` without `--cluster`.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// Where the JWT secret came from.
    pub fn secret_source(&self) -> SecretSource {
        self.secret_source
    }

    /// A token that fires when shutdown begins.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// Stops gracefully: stops accepting, tells every session to reconnect later (`GoAway`
    /// with `ShuttingDown`), lets every room commit and snapshot, then closes storage.
    pub async fn shutdown(mut self) {
        tracing::info!("shutting down");
        self.shared.shutdown.cancel();
        // The accept loops and the HTTP server stop on the token; wtransport panics if its
        // endpoint is closed under a pending accept, so wait for them first.
        while self.tasks.join_next().await.is_some() {}
        let rooms = self.shared.rooms.all();
        for handle in rooms {
            let (done, wait) = tokio::sync::oneshot::channel();
            if handle.send(Command::Shutdown(done)).await.is_ok() {
                let _ = wait.await;
            }
        }
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        // Sessions were told to go; give their close frames a moment to leave.
        let code = u32::from(ErrorCode::ShuttingDown.to_u16());
        self.quic.close(quinn::VarInt::from_u32(code), b"shutting down");
        self.wt.close(wtransport::VarInt::from_u32(code), b"shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.quic.wait_idle()).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.wt.wait_idle()).await;
        tracing::info!("stopped");
    }
}

/// The SFU adapter `--sfu` names, connecting in the background (Janus need not be up yet:
/// until it is, SFU requests are refused with `SfuUnavailable`).
fn sfu(config: &ServerConfig) -> Option<Arc<dyn Sfu>> {
    let sfu = config.sfu.as_ref()?;
    match sfu.kind {
        SfuKind::Janus => {
            let janus = JanusConfig {
                admin_key: sfu.janus_admin_key.clone(),
                ice_servers: sfu.ice_servers.clone(),
                ..JanusConfig::new(sfu.janus_url.clone())
            };
            tracing::info!(url = %sfu.janus_url, "SFU: Janus VideoRoom");
            Some(Arc::new(Janus::start(janus)))
        }
    }
}

async fn identity(config: &ServerConfig) -> Result<Identity, StartError> {
    match &config.tls {
        Some(TlsFiles { cert, key }) => {
            Identity::load_pemfiles(cert, key).await.map_err(|e| StartError::Certificate(e.to_string()))
        }
        None => Identity::self_signed_builder()
            .subject_alt_names(["localhost", "127.0.0.1", "::1"])
            .from_now_utc()
            .validity_days(SELF_SIGNED_DAYS)
            .build()
            .map_err(|e| StartError::Certificate(e.to_string())),
    }
}

/// `quinn::Endpoint::server` with our endpoint configuration (the persisted reset key).
fn quic_endpoint(
    endpoint: quinn::EndpointConfig,
    server: quinn::ServerConfig,
    addr: SocketAddr,
) -> std::io::Result<quinn::Endpoint> {
    let runtime = quinn::default_runtime().ok_or_else(|| std::io::Error::other("no async runtime"))?;
    quinn::Endpoint::new(endpoint, Some(server), bind_udp(addr)?, runtime)
}

/// The receive buffer a QUIC listener asks for. Why: every client's packets queue in one
/// socket, and the usual default (208 KiB, ~170 full-size packets) overflows when a reconnect
/// storm's handshakes arrive at once — dropped Initials cost each client a retransmission
/// timeout (1 s, 2 s, 4 s…), and at 2,000 clients many attempts went unanswered for the SDK's
/// whole 10 s attempt limit. The kernel caps it at `net.core.rmem_max`.
const UDP_RECEIVE_BUFFER: usize = 8 * 1024 * 1024;

/// A UDP socket bound to `addr` with [`UDP_RECEIVE_BUFFER`] (as much of it as the kernel gives).
fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    if let Err(e) = state.set_recv_buffer_size((&socket).into(), UDP_RECEIVE_BUFFER) {
        tracing::warn!(%addr, "could not enlarge the UDP receive buffer: {e}");
    }
    Ok(socket)
}

fn quic_config(
    identity: &Identity,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ServerConfig, StartError> {
    let cert_err = |e: &dyn std::fmt::Display| StartError::Certificate(e.to_string());
    let chain = identity
        .certificate_chain()
        .as_slice()
        .iter()
        .map(|c| rustls::pki_types::CertificateDer::from(c.der().to_vec()))
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(identity.private_key().secret_der().to_vec().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| cert_err(&e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| cert_err(&e))?;
    tls.alpn_protocols = vec![easel_proto::ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| cert_err(&e))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(transport);
    Ok(server)
}

async fn accept_wt(endpoint: Arc<WtEndpoint>, shared: Arc<Shared>) {
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = shared.shutdown.cancelled() => return,
        };
        // Decided before the TLS handshake: an attempt over its address's rate costs one packet.
        let entry = shared.admission.arrive(incoming.remote_address().ip());
        if let Entry::Shed(_) = entry {
            telemetry::shed("webtransport");
            incoming.refuse();
            continue;
        }
        let shared = shared.clone();
        // Boxed: wtransport's handshake futures are large, and this task lives as long as the
        // session (BENCHMARKS.md, "Memory per idle session").
        tokio::spawn(async move {
            let request = match Box::pin(incoming.into_future()).await {
                Ok(r) => r,
                Err(e) => {
                    metrics::counter!("easel_connects_total", "transport" => "webtransport", "result" => "failed")
                        .increment(1);
                    tracing::debug!("webtransport connection failed: {e}");
                    return;
                }
            };
            match Box::pin(request.accept()).await {
                Ok(conn) => {
                    let remote = conn.remote_address();
                    session::enter(shared, WtSession::new(conn), entry, remote).await;
                }
                Err(e) => {
                    metrics::counter!("easel_connects_total", "transport" => "webtransport", "result" => "failed")
                        .increment(1);
                    tracing::debug!("webtransport session failed: {e}");
                }
            }
        });
    }
}

async fn accept_quic(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = shared.shutdown.cancelled() => return,
        };
        let Some(incoming) = incoming else { return };
        // Decided before the TLS handshake: an attempt over its address's rate costs one packet.
        let entry = shared.admission.arrive(incoming.remote_address().ip());
        if let Entry::Shed(_) = entry {
            telemetry::shed("quic");
            incoming.refuse();
            continue;
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            match Box::pin(incoming.into_future()).await {
                Ok(conn) => {
                    let remote = conn.remote_address();
                    session::enter(shared, QuicSession::new(conn), entry, remote).await;
                }
                Err(e) => {
                    metrics::counter!("easel_connects_total", "transport" => "quic", "result" => "failed")
                        .increment(1);
                    tracing::debug!("quic connection failed: {e}");
                }
            }
        });
    }
}
