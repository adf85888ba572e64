//! Starting and stopping the whole server: certificate, secret, store, the WebTransport, QUIC
//! and HTTP listeners, the room registry, and graceful shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use easel_proto::ErrorCode;
use easel_sfu_bridge::Sfu;
use easel_sfu_bridge::janus::{Janus, JanusConfig};
use easel_transport::Side;
use easel_transport::quic::{QuicSession, transport_config};
use easel_transport::webtransport::WtSession;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wtransport::Identity;

use crate::auth::{self, SecretSource, Verifier};
use crate::config::{Serve, SfuKind};
use crate::resume::Resumes;
use crate::room::{self, Command, Handle, JoinRequest, Joined};
use crate::store::{Store, StoreError};
use crate::{connection, telemetry};

type WtEndpoint = wtransport::Endpoint<wtransport::endpoint::endpoint_side::Server>;

/// Validity of the self-signed certificate (browsers accept hashes of certificates valid ≤ 14 days).
pub const SELF_SIGNED_DAYS: u32 = 14;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The JWT secret or key is missing or unusable.
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The TLS certificate could not be made or loaded.
    #[error("certificate: {0}")]
    Certificate(String),
    /// The SFU options do not fit together.
    #[error("SFU: {0}")]
    Sfu(String),
    /// A listening address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// State every session shares.
pub(crate) struct Shared {
    pub(crate) config: Serve,
    pub(crate) verifier: Verifier,
    pub(crate) rooms: Rooms,
    /// Resumable sessions by resume token.
    pub(crate) resumes: Resumes,
    /// Numbers connections, so rooms can tell a resumed member's old connection from its new.
    pub(crate) next_conn: AtomicU64,
    pub(crate) shutdown: CancellationToken,
}

/// The loaded rooms, by id; loads a room on first join and forgets it when its actor stops.
pub(crate) struct Rooms {
    loaded: Arc<Mutex<HashMap<String, Handle>>>,
    /// Serialises loading so two first joins do not load one room twice.
    loading: tokio::sync::Mutex<()>,
    store: Store,
    config: room::Config,
    /// Where members' video goes, if an SFU is configured.
    sfu: Option<Arc<dyn Sfu>>,
}

impl Rooms {
    /// A room's attendance: from its actor when loaded (the live state, with writes still in
    /// flight), else from the store.
    async fn attendance(&self, id: &str) -> Result<Vec<crate::class::Attendance>, String> {
        if let Some(handle) = self.loaded(id) {
            let (reply, answer) = tokio::sync::oneshot::channel();
            if handle.send(Command::Attendance(reply)).await.is_ok()
                && let Ok(attendance) = answer.await
            {
                return Ok(attendance);
            }
        }
        let (store, id) = (self.store.clone(), id.to_owned());
        let records = tokio::task::spawn_blocking(move || store.load_side(&id))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        crate::class::attendance_of(records)
    }

    fn new(store: Store, config: room::Config, sfu: Option<Arc<dyn Sfu>>) -> Self {
        Self { loaded: Arc::default(), loading: tokio::sync::Mutex::new(()), store, config, sfu }
    }

    /// Whether SFU signalling goes anywhere.
    pub(crate) fn has_sfu(&self) -> bool {
        self.sfu.is_some()
    }

    fn loaded(&self, id: &str) -> Option<Handle> {
        let map = self.loaded.lock().ok()?;
        map.get(id).filter(|h| !h.is_closed()).cloned()
    }

    async fn handle(&self, id: &str) -> Result<Handle, ErrorCode> {
        if let Some(h) = self.loaded(id) {
            return Ok(h);
        }
        let _guard = self.loading.lock().await;
        if let Some(h) = self.loaded(id) {
            return Ok(h);
        }
        let loaded = self.loaded.clone();
        let on_exit = move |gone: &Handle| {
            if let Ok(mut map) = loaded.lock()
                && map.get(gone.id()).is_some_and(|h| h.same(gone))
            {
                map.remove(gone.id());
            }
        };
        let handle =
            room::spawn(Arc::from(id), self.config.clone(), self.store.clone(), self.sfu.clone(), on_exit)
                .await
                .map_err(|e| {
                    tracing::error!(room = id, "cannot load room: {e}");
                    ErrorCode::StorageUnavailable
                })?;
        if let Ok(mut map) = self.loaded.lock() {
            map.insert(id.to_owned(), handle.clone());
        }
        Ok(handle)
    }

    /// Joins `id`, loading it if needed. `request` is called again if the room unloads
    /// between lookup and join.
    pub(crate) async fn join(
        &self,
        id: &str,
        request: impl Fn() -> JoinRequest,
    ) -> Result<(Handle, Joined), ErrorCode> {
        for _ in 0..3 {
            let handle = self.handle(id).await?;
            let (reply, rx) = tokio::sync::oneshot::channel();
            if handle.send(Command::Join(request(), reply)).await.is_err() {
                continue;
            }
            match rx.await {
                Ok(joined) => return joined.map(|j| (handle, j)),
                Err(_) => continue,
            }
        }
        Err(ErrorCode::Internal)
    }

    /// Every loaded room.
    fn all(&self) -> Vec<Handle> {
        self.loaded.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }
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
    pub async fn start(config: Serve) -> Result<Self, StartError> {
        let (secret, secret_source) = auth::resolve_secret(
            config.common.jwt_secret.as_deref(),
            &config.common.data_dir,
            config.loopback_only(),
        )?;
        let es256 =
            match &config.jwt_es256_public_key {
                Some(path) => Some(std::fs::read(path).map_err(|e| {
                    auth::AuthError::Secret(format!("ES256 public key {}: {e}", path.display()))
                })?),
                None => None,
            };
        let verifier = Verifier::new(&secret, es256.as_deref())?;
        let identity = identity(&config).await?;
        let cert_hash = hex::encode(identity.certificate_chain().as_slice()[0].hash().as_ref());

        let store = {
            let dir = config.common.data_dir.clone();
            tokio::task::spawn_blocking(move || Store::open(&dir))
                .await
                .map_err(|e| StoreError::Database(e.to_string()))??
        };
        let room_config = room::Config {
            tick: Duration::from_secs(1) / u32::from(config.tick_hz),
            presence_ttl: Duration::from_secs(config.presence_ttl_secs),
            max_participants: config.max_participants as usize,
            snapshot_every: config.snapshot_every.max(1),
            idle_unload: Duration::from_secs(config.idle_unload_secs),
            resume_grace: config.resume_grace(),
            chat_per_min: config.chat_per_min,
            students_publish: config.sfu_students_publish,
            ..room::Config::default()
        };
        let prometheus = telemetry::install();
        let shared = Arc::new(Shared {
            config: config.clone(),
            verifier,
            rooms: Rooms::new(store.clone(), room_config, sfu(&config)?),
            resumes: Resumes::new(config.resume_grace()),
            next_conn: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
        });

        let wt_config = wtransport::ServerConfig::builder()
            .with_bind_address(config.wt_addr)
            .with_custom_transport(identity.clone_identity(), transport_config(Side::Server))
            .build();
        let wt = Arc::new(
            wtransport::Endpoint::server(wt_config)
                .map_err(|source| StartError::Bind { addr: config.wt_addr, source })?,
        );
        let wt_addr = wt.local_addr().map_err(|source| StartError::Bind { addr: config.wt_addr, source })?;

        let quic = quinn::Endpoint::server(
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

        let mut tasks = JoinSet::new();
        tasks.spawn(accept_wt(wt.clone(), shared.clone()));
        tasks.spawn(accept_quic(quic.clone(), shared.clone()));
        let app = http_router(prometheus, cert_hash.clone(), shared.clone());
        let stop = shared.shutdown.clone();
        tasks.spawn(async move {
            use axum::serve::ListenerExt as _;
            // The WebSocket fallback carries cursors: Nagle's algorithm would hold them ~40 ms.
            let http = http.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!("TCP_NODELAY: {e}");
                }
            });
            let serve = axum::serve(http, app).with_graceful_shutdown(async move { stop.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!("http server: {e}");
            }
        });
        Ok(Self { wt_addr, quic_addr, http_addr, cert_hash, secret_source, shared, store, wt, quic, tasks })
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
fn sfu(config: &Serve) -> Result<Option<Arc<dyn Sfu>>, StartError> {
    let Some(kind) = config.sfu else { return Ok(None) };
    if config.sfu_ice_servers.len() > easel_proto::limits::MAX_ICE_SERVERS {
        return Err(StartError::Sfu(format!(
            "at most {} ICE servers (--sfu-ice-servers)",
            easel_proto::limits::MAX_ICE_SERVERS
        )));
    }
    match kind {
        SfuKind::Janus => {
            let janus = JanusConfig {
                admin_key: config.janus_admin_key.clone(),
                ice_servers: config.sfu_ice_servers.clone(),
                ..JanusConfig::new(config.janus_url.clone())
            };
            tracing::info!(url = %config.janus_url, "SFU: Janus VideoRoom");
            Ok(Some(Arc::new(Janus::start(janus))))
        }
    }
}

async fn identity(config: &Serve) -> Result<Identity, StartError> {
    match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => {
            Identity::load_pemfiles(cert, key).await.map_err(|e| StartError::Certificate(e.to_string()))
        }
        _ => Identity::self_signed_builder()
            .subject_alt_names(["localhost", "127.0.0.1", "::1"])
            .from_now_utc()
            .validity_days(SELF_SIGNED_DAYS)
            .build()
            .map_err(|e| StartError::Certificate(e.to_string())),
    }
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
        let shared = shared.clone();
        tokio::spawn(async move {
            let request = match incoming.await {
                Ok(r) => r,
                Err(e) => {
                    metrics::counter!("easel_connects_total", "transport" => "webtransport", "result" => "failed")
                        .increment(1);
                    tracing::debug!("webtransport connection failed: {e}");
                    return;
                }
            };
            match request.accept().await {
                Ok(conn) => connection::run(shared, WtSession::new(conn)).await,
                Err(e) => tracing::debug!("webtransport session failed: {e}"),
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
        let shared = shared.clone();
        tokio::spawn(async move {
            match incoming.await {
                Ok(conn) => connection::run(shared, QuicSession::new(conn)).await,
                Err(e) => {
                    metrics::counter!("easel_connects_total", "transport" => "quic", "result" => "failed")
                        .increment(1);
                    tracing::debug!("quic connection failed: {e}");
                }
            }
        });
    }
}

#[derive(Clone)]
struct HttpState {
    prometheus: PrometheusHandle,
    cert_hash: Arc<str>,
    shared: Arc<Shared>,
}

fn http_router(prometheus: PrometheusHandle, cert_hash: String, shared: Arc<Shared>) -> axum::Router {
    let state = HttpState { prometheus, cert_hash: cert_hash.into(), shared };
    axum::Router::new()
        .route("/ws", axum::routing::get(websocket_upgrade))
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route("/metrics", axum::routing::get(metrics_text))
        .route("/cert-hash", axum::routing::get(cert_hash_text))
        .route("/rooms/{*path}", axum::routing::get(room_resource))
        .with_state(state)
}

async fn websocket_upgrade(
    State(state): State<HttpState>,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> axum::response::Response {
    if state.shared.shutdown.is_cancelled() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let shared = state.shared.clone();
    let max = shared.config.max_frame as usize + 16;
    upgrade
        .protocols([crate::websocket::SUBPROTOCOL])
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| connection::run(shared, crate::websocket::accept(socket)))
}

async fn metrics_text(State(state): State<HttpState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.prometheus.render())
}

/// `GET /rooms/{room id}/attendance[?format=csv]` with `Authorization: Bearer <teacher JWT
/// granting the room>`: the room's attendance as JSON (per user: intervals and total), or CSV.
async fn room_resource(
    State(state): State<HttpState>,
    axum::extract::Path(path): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    let Some(room) = path.strip_suffix("/attendance") else {
        return (StatusCode::NOT_FOUND, "unknown room resource\n").into_response();
    };
    if let Err(e) = easel_proto::room::validate_id(room) {
        return (StatusCode::BAD_REQUEST, format!("room id: {e}\n")).into_response();
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let claims = match state.shared.verifier.verify(token, now.as_secs()) {
        Ok(c) => c,
        Err(e) => return (StatusCode::UNAUTHORIZED, format!("{e}\n")).into_response(),
    };
    if claims.role() != easel_proto::message::Role::Teacher || !claims.grants(room) {
        return (StatusCode::FORBIDDEN, "a teacher token granting this room is needed\n").into_response();
    }
    let attendance = match state.shared.rooms.attendance(room).await {
        Ok(a) => a,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    };
    let now_ms = now.as_millis() as u64;
    if query.get("format").is_some_and(|f| f == "csv") {
        let csv = crate::class::attendance_csv(room, &attendance, now_ms);
        return ([(header::CONTENT_TYPE, "text/csv")], csv).into_response();
    }
    let users: Vec<serde_json::Value> = attendance
        .iter()
        .map(|a| {
            serde_json::json!({
                "user": a.user,
                "name": a.name,
                "intervals": a.intervals.iter().map(|(from, to)| serde_json::json!({"joined_ms": from, "left_ms": to})).collect::<Vec<_>>(),
                "total_ms": a.total_ms(now_ms),
                "present": a.intervals.last().is_some_and(|i| i.1.is_none()),
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "room": room, "users": users })).into_response()
}

async fn cert_hash_text(State(state): State<HttpState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain"), (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
        state.cert_hash.to_string(),
    )
}
