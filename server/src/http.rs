//! The HTTP port: the WebSocket fallback's upgrade (`GET /ws`), `/healthz` (with the cluster
//! view in cluster mode), Prometheus `/metrics`, `/cert-hash` for dev certificates,
//! `/connect-info` (the WebTransport port and certificate hash, for pages served from here),
//! room resources for a teacher's token
//! (attendance as JSON or CSV, a loaded room's stats as JSON), the admin endpoints
//! (`admin`) and the demo whiteboard ([`crate::demo`]).

use std::collections::HashMap;
use std::sync::Arc;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::admission::Entry;
use crate::class::Attendance;
use crate::cluster::Cluster;
use crate::shared::Shared;

/// Bytes a WebSocket reads at once. Why: tungstenite allocates and zero-fills this much per
/// socket up front (128 KiB by default: 1.3 GB at 10,000 idle sessions). What a client sends
/// is small (cursors, heartbeats, edits of a few hundred bytes); a frame larger than this is
/// still read whole, in reads of this size.
const WS_READ_BUFFER: usize = 4 * 1024;
/// Bytes a WebSocket gathers before it writes to the socket. Why: its buffer keeps the largest
/// size it ever reached (128 KiB by default, after one snapshot). The mux flushes after each
/// batch anyway, and its pieces are at most 16 KiB, so a batch of small frames still goes out
/// in one write and a snapshot in writes of one piece or so. The buffer cannot grow past this
/// by more than one frame (the socket stops taking frames while it is over), so the default
/// unlimited `max_write_buffer_size` is left alone.
const WS_WRITE_BUFFER: usize = 16 * 1024;

#[derive(Clone)]
struct HttpState {
    prometheus: PrometheusHandle,
    cert_hash: Arc<str>,
    /// The bound WebTransport port, which a page cannot guess when it is not the default.
    wt_port: u16,
    shared: Arc<Shared>,
    /// Cluster mode's view; `None`: one node alone.
    cluster: Option<Arc<Cluster>>,
}

pub(crate) fn router(
    prometheus: PrometheusHandle,
    cert_hash: String,
    wt_port: u16,
    shared: Arc<Shared>,
    cluster: Option<Arc<Cluster>>,
) -> axum::Router {
    let admin = crate::admin::router(shared.clone());
    let demo = crate::demo::router(shared.clone());
    let state = HttpState { prometheus, cert_hash: cert_hash.into(), wt_port, shared, cluster };
    axum::Router::new()
        .route("/ws", axum::routing::get(websocket_upgrade))
        .route("/healthz", axum::routing::get(healthz))
        .route("/metrics", axum::routing::get(metrics_text))
        .route("/cert-hash", axum::routing::get(cert_hash_text))
        .route("/connect-info", axum::routing::get(connect_info))
        .route("/rooms/{*path}", axum::routing::get(room_resource))
        .merge(demo)
        .with_state(state)
        .merge(admin)
}

/// Admission is decided before the upgrade: an attempt over its address's handshake rate gets
/// `503` with `Retry-After` (whole seconds, rounded up), the cheapest answer; one over a session
/// cap is upgraded and told `GoAway { Overloaded }` like on QUIC (SPEC §5.1).
async fn websocket_upgrade(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> axum::response::Response {
    if state.shared.shutdown.is_cancelled() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let entry = match state.shared.admission.arrive(peer.ip()) {
        Entry::Shed(retry_after) => {
            crate::telemetry::shed("websocket");
            let secs = retry_after.as_millis().div_ceil(1000).max(1);
            let headers = [(header::RETRY_AFTER, secs.to_string())];
            return (StatusCode::SERVICE_UNAVAILABLE, headers, "too many connection attempts\n")
                .into_response();
        }
        entry => entry,
    };
    let shared = state.shared.clone();
    let max = shared.config.max_frame as usize + 16;
    upgrade
        .protocols([crate::websocket::SUBPROTOCOL])
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .on_upgrade(move |socket| {
            crate::session::enter(shared, crate::websocket::accept(socket), entry, peer)
        })
}

/// One node alone: `ok`. In cluster mode, JSON with the cluster view
/// ([`Cluster::health_json`]); `status` is `degraded` while NATS is unreachable or this node's
/// announcement is not stored, and the answer is then HTTP 503: the node cannot make writes
/// durable (nor be sure the others see it), so a load balancer sends clients elsewhere.
async fn healthz(State(state): State<HttpState>) -> axum::response::Response {
    match &state.cluster {
        None => "ok\n".into_response(),
        Some(cluster) => {
            let status = if cluster.healthy() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            (status, axum::Json(cluster.health_json())).into_response()
        }
    }
}

async fn metrics_text(State(state): State<HttpState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.prometheus.render())
}

/// Room resources, `GET /rooms/{room id}/{resource}` with `Authorization: Bearer <teacher JWT
/// granting the room>`; the room id keeps its `/`s (SPEC §6.1), the resource is the last
/// segment:
/// - `attendance[?format=csv]`: the room's attendance as JSON (per user: intervals and
///   total), or CSV; errors as text.
/// - `stats`: a loaded room's numbers as JSON ([`room_stats`]); errors as JSON
///   `{"error": …}`.
async fn room_resource(
    State(state): State<HttpState>,
    axum::extract::Path(path): axum::extract::Path<String>,
    query: axum::extract::Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    if let Some(room) = path.strip_suffix("/stats") {
        return match authorize(&state, &headers, room) {
            Ok(_) => room_stats(&state, room).await,
            Err((status, why)) => (status, axum::Json(serde_json::json!({ "error": why }))).into_response(),
        };
    }
    let Some(room) = path.strip_suffix("/attendance") else {
        return (StatusCode::NOT_FOUND, "unknown room resource\n").into_response();
    };
    match authorize(&state, &headers, room) {
        Ok(now) => attendance(&state, room, &query, now).await,
        Err((status, why)) => (status, format!("{why}\n")).into_response(),
    }
}

/// Checks the room id and that the bearer token is a valid teacher token granting it (the
/// protocol's verification); returns the time it was checked at.
fn authorize(
    state: &HttpState,
    headers: &axum::http::HeaderMap,
    room: &str,
) -> Result<std::time::Duration, (StatusCode, String)> {
    if let Err(e) = easel_proto::room::validate_id(room) {
        return Err((StatusCode::BAD_REQUEST, format!("room id: {e}")));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let claims = match state.shared.verifier.verify(token, now.as_secs()) {
        Ok(c) => c,
        Err(e) => return Err((StatusCode::UNAUTHORIZED, e.to_string())),
    };
    if claims.role() != easel_proto::message::Role::Teacher || !claims.grants(room) {
        return Err((StatusCode::FORBIDDEN, "a teacher token granting this room is needed".into()));
    }
    Ok(now)
}

/// A loaded room's connection success rate (joins let in over joins answered), reconnects
/// (resumed joins), p95 delivery latency (overall and by kind), peak participants and SFU
/// error rate, since it was loaded; 404 when it is not loaded.
async fn room_stats(state: &HttpState, room: &str) -> axum::response::Response {
    match state.shared.rooms.stats(room).await {
        Some(stats) => axum::Json(stats.to_json(room)).into_response(),
        None => {
            let why = "room not loaded: stats cover a live class";
            (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({ "error": why }))).into_response()
        }
    }
}

async fn attendance(
    state: &HttpState,
    room: &str,
    query: &HashMap<String, String>,
    now: std::time::Duration,
) -> axum::response::Response {
    let attendance = match state.shared.rooms.attendance(room).await {
        Ok(a) => a,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    };
    let now_ms = now.as_millis() as u64;
    if query.get("format").is_some_and(|f| f == "csv") {
        let csv = attendance_csv(room, &attendance, now_ms);
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

/// `{"webTransportPort": 4433, "certHash": "…"}`: what a page served from this port needs to
/// open WebTransport to this server (the port as bound, the hash as `/cert-hash` serves it).
async fn connect_info(State(state): State<HttpState>) -> impl IntoResponse {
    let info = serde_json::json!({ "webTransportPort": state.wt_port, "certHash": &*state.cert_hash });
    ([(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")], axum::Json(info))
}

/// Attendance as CSV: a header, then one row per interval (`left_ms` empty while present)
/// with the user's total in every row of theirs.
pub fn attendance_csv(room: &str, records: &[Attendance], now_ms: u64) -> String {
    let field = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    let mut out = String::from("room,user,name,joined_ms,left_ms,seconds,total_seconds\n");
    for a in records {
        let total = a.total_ms(now_ms) / 1000;
        for (from, to) in &a.intervals {
            let seconds = to.unwrap_or(now_ms).saturating_sub(*from) / 1000;
            let left = to.map(|t| t.to_string()).unwrap_or_default();
            out.push_str(&format!(
                "{},{},{},{from},{left},{seconds},{total}\n",
                field(room),
                field(&a.user),
                field(&a.name)
            ));
        }
    }
    out
}
