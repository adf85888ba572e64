//! Metrics (Prometheus text at `GET /metrics`, every name prefixed `easel_`) and logging setup.
//!
//! [`SERIES`] lists every series the server exports with its label sets; [`install`]
//! registers each at zero, so a scrape of an idle server already sees all of them (a rate or
//! an alert over a series that appears only after its first event misses that event).

use std::sync::atomic::{AtomicI64, Ordering};

use easel_proto::ErrorCode;
use metrics::{Label, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use self::Kind::{Counter, Gauge, Histogram};

/// What a series is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// A level.
    Gauge,
    /// A distribution (buckets, sum, count).
    Histogram,
}

/// The labels a series carries. Every set is bounded: no room, user or session ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Labels {
    /// No labels.
    None,
    /// `transport`: one of [`TRANSPORTS`].
    Transport,
    /// `transport` and `result` (`ok`, `failed`).
    TransportResult,
    /// `reason`: one of [`DATAGRAM_DROP_REASONS`].
    DropReason,
    /// `code`: a wire error code's name ([`code_label`]), every code but `Normal`.
    Code,
    /// `kind`: one of [`INGEST_KINDS`].
    IngestKind,
    /// `kind`: one of [`SFU_ERROR_KINDS`].
    SfuErrorKind,
    /// `kind`: one of [`crate::cluster::ERROR_KINDS`].
    ClusterErrorKind,
}

/// One exported series.
#[derive(Debug, Clone, Copy)]
pub struct Series {
    /// Full name, `easel_` prefixed.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Its labels.
    pub labels: Labels,
    /// Unit, for histograms in seconds.
    pub unit: Option<Unit>,
    /// The `# HELP` text.
    pub help: &'static str,
}

/// The `transport` label's values.
pub const TRANSPORTS: [&str; 3] = ["quic", "webtransport", "websocket"];

/// The `reason` label's values of `easel_datagrams_dropped_total`.
pub const DATAGRAM_DROP_REASONS: [&str; 5] = ["rate", "unknown_slot", "invalid", "room_busy", "ws_backlog"];

/// The `kind` label's values of `easel_ingest_to_send_seconds`: what a client sent.
pub const INGEST_KINDS: [&str; 5] = ["cursor", "edit", "chat", "poll", "hand"];

/// The `kind` label's values of `easel_sfu_errors_total` ([`easel_sfu_bridge::SfuError::kind`]).
pub const SFU_ERROR_KINDS: [&str; 4] = ["unavailable", "timeout", "rejected", "protocol"];

const fn series(name: &'static str, kind: Kind, labels: Labels, help: &'static str) -> Series {
    Series { name, kind, labels, unit: None, help }
}

const fn seconds(name: &'static str, help: &'static str) -> Series {
    Series { name, kind: Kind::Histogram, labels: Labels::None, unit: Some(Unit::Seconds), help }
}

/// Every series the server exports. A `counter!`/`gauge!`/`histogram!` whose name is not here
/// fails a test (`server/tests/it/metrics.rs`).
pub const SERIES: &[Series] = &[
    series(
        "easel_sessions",
        Gauge,
        Labels::Transport,
        "Open connections (handshaking or established), by transport.",
    ),
    series("easel_sessions_peak", Gauge, Labels::None, "Most open connections at once since start."),
    series(
        "easel_connects_total",
        Counter,
        Labels::TransportResult,
        "Connection attempts, by transport and result (ok: handshake done; failed: TLS, refused or timed out).",
    ),
    series(
        "easel_refusals_total",
        Counter,
        Labels::Code,
        "Handshakes and joins refused, by wire error code.",
    ),
    series(
        "easel_admission_shed_total",
        Counter,
        Labels::Transport,
        "Connection attempts dropped before TLS or the WebSocket upgrade: over their IP's handshake rate.",
    ),
    series(
        "easel_resume_attempts_total",
        Counter,
        Labels::None,
        "Reconnects: handshakes that asked to resume a session.",
    ),
    series("easel_resumes_total", Counter, Labels::None, "Sessions resumed within the grace window."),
    seconds("easel_handshake_seconds", "From accepting a connection to sending Welcome."),
    series("easel_rooms", Gauge, Labels::None, "Rooms loaded in memory."),
    series("easel_participants", Gauge, Labels::None, "Participants in all rooms now."),
    series("easel_participants_peak", Gauge, Labels::None, "Most participants at once since start."),
    series("easel_ops_in_total", Counter, Labels::None, "CRDT updates received."),
    series("easel_ops_out_total", Counter, Labels::None, "CRDT updates fanned out (one per recipient)."),
    series("easel_ops_rejected_total", Counter, Labels::None, "CRDT updates refused."),
    series("easel_datagrams_in_total", Counter, Labels::None, "Datagrams received."),
    series("easel_datagrams_out_total", Counter, Labels::None, "Datagrams sent."),
    series(
        "easel_datagram_budget",
        Gauge,
        Labels::None,
        "Datagrams per second all rooms' cursor batches may cost together (--datagram-budget).",
    ),
    series("easel_datagrams_dropped_total", Counter, Labels::DropReason, "Datagrams dropped, by reason."),
    series(
        "easel_stale_cursors_dropped_total",
        Counter,
        Labels::None,
        "Cursor datagrams older than the newest held.",
    ),
    series(
        "easel_cursors_hidden_total",
        Counter,
        Labels::None,
        "Cursor datagrams kept but not sent: a lecture's active-cursor cap hides the sender.",
    ),
    series(
        "easel_datagram_ticks_skipped_total",
        Counter,
        Labels::None,
        "Ticks a subscriber was skipped (send buffer full).",
    ),
    series(
        "easel_slow_consumers_total",
        Counter,
        Labels::None,
        "Sessions closed because a reliable queue overflowed.",
    ),
    Series {
        name: "easel_ingest_to_send_seconds",
        kind: Histogram,
        labels: Labels::IngestKind,
        unit: Some(Unit::Seconds),
        help: "From reading a client's message to queueing what it caused (edits and chat: after the fsync; cursors: the batch handed to the transport), by kind.",
    },
    series(
        "easel_room_queue_depth",
        Histogram,
        Labels::None,
        "Room command queue depth, sampled each second per room.",
    ),
    series(
        "easel_outbound_queue_depth",
        Histogram,
        Labels::None,
        "Deepest participant room-stream queue, sampled each second per room.",
    ),
    seconds("easel_store_commit_seconds", "Durable commit (fsync) time."),
    series("easel_store_batch_ops", Histogram, Labels::None, "Operations per group commit."),
    series("easel_store_commits_total", Counter, Labels::None, "Write transactions committed."),
    series(
        "easel_store_errors_total",
        Counter,
        Labels::None,
        "Group commits that failed (full disk, failing fsync): their writes were refused, not acked.",
    ),
    series(
        "easel_store_failing",
        Gauge,
        Labels::None,
        "1 while writes fail (from the first failed commit until one succeeds), else 0.",
    ),
    series(
        "easel_sfu_errors_total",
        Counter,
        Labels::SfuErrorKind,
        "SFU requests that failed on the SFU's side, by kind (unavailable: not reachable).",
    ),
    series(
        "easel_cluster_nodes",
        Gauge,
        Labels::None,
        "Nodes this node sees in its cluster, itself included (1 without --cluster).",
    ),
    series(
        "easel_cluster_nats_connected",
        Gauge,
        Labels::None,
        "1 while the connection to the cluster's NATS is up (0 without --cluster).",
    ),
    series(
        "easel_cluster_nats_errors_total",
        Counter,
        Labels::ClusterErrorKind,
        "Cluster NATS failures, by kind (connect, disconnected, heartbeat, watch, malformed, snapshot).",
    ),
    series(
        "easel_cluster_snapshots_total",
        Counter,
        Labels::None,
        "Cluster rooms' snapshots this node stored in the object store (0 without --cluster).",
    ),
];

impl Series {
    /// Every label set this series is exported with, in the order its call sites give them.
    pub fn label_sets(&self) -> Vec<Vec<(&'static str, String)>> {
        match self.labels {
            Labels::None => vec![vec![]],
            Labels::Transport => TRANSPORTS.iter().map(|t| vec![("transport", (*t).to_owned())]).collect(),
            Labels::TransportResult => TRANSPORTS
                .iter()
                .flat_map(|t| {
                    ["ok", "failed"].map(|r| vec![("transport", (*t).to_owned()), ("result", r.to_owned())])
                })
                .collect(),
            Labels::DropReason => {
                DATAGRAM_DROP_REASONS.iter().map(|r| vec![("reason", (*r).to_owned())]).collect()
            }
            Labels::Code => ErrorCode::ALL
                .iter()
                .filter(|c| **c != ErrorCode::Normal)
                .map(|c| vec![("code", code_label(*c))])
                .collect(),
            Labels::IngestKind => INGEST_KINDS.iter().map(|k| vec![("kind", (*k).to_owned())]).collect(),
            Labels::SfuErrorKind => SFU_ERROR_KINDS.iter().map(|k| vec![("kind", (*k).to_owned())]).collect(),
            Labels::ClusterErrorKind => {
                crate::cluster::ERROR_KINDS.iter().map(|k| vec![("kind", (*k).to_owned())]).collect()
            }
        }
    }
}

/// The `code` label's value for a wire code: its name, as in SPEC §14.1 (`RoomFull`).
pub fn code_label(code: ErrorCode) -> String {
    format!("{code:?}")
}

/// Buckets of every seconds histogram: sub-millisecond to seconds, so a p95 anywhere from
/// 0.5 ms (a cursor on loopback) to 5 s (a stalled disk) falls between two bounds.
pub const LATENCY_BUCKETS: [f64; 15] =
    [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Buckets of the count histograms (queue depths, operations per commit): latency bounds
/// would put every depth above 1 in the last bucket.
const DEPTH_BUCKETS: [f64; 12] = [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0];

/// The ingest-to-send histogram of each of [`INGEST_KINDS`], in that order: a room actor
/// holds them, so a sample (one per cursor per round) costs no registry lookup.
pub fn ingest_to_send() -> [metrics::Histogram; 5] {
    INGEST_KINDS.map(|kind| metrics::histogram!("easel_ingest_to_send_seconds", "kind" => kind))
}

/// Counts an SFU request that failed on the SFU's side (`kind`: one of [`SFU_ERROR_KINDS`]).
pub fn sfu_error(kind: &'static str) {
    metrics::counter!("easel_sfu_errors_total", "kind" => kind).increment(1);
}

/// Installs the process-wide Prometheus recorder (once; later calls reuse it) and registers
/// every series at zero.
pub fn install() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_depth".into()), &DEPTH_BUCKETS))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_ops".into()), &DEPTH_BUCKETS))
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Another recorder may already be installed (tests in one process): keep ours
            // readable through the handle either way.
            let _ = metrics::set_global_recorder(recorder);
            register();
            handle
        })
        .clone()
}

/// Describes every series and creates it at zero. Histograms need no sample: the exporter
/// renders a registered one with count 0.
fn register() {
    use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
    for s in SERIES {
        let unit = s.unit.unwrap_or(Unit::Count);
        match s.kind {
            Kind::Counter => describe_counter!(s.name, unit, s.help),
            Kind::Gauge => describe_gauge!(s.name, unit, s.help),
            Kind::Histogram => describe_histogram!(s.name, unit, s.help),
        }
        for set in s.label_sets() {
            let labels: Vec<Label> = set.into_iter().map(|(k, v)| Label::new(k, v)).collect();
            match s.kind {
                Kind::Counter => counter!(s.name, labels).absolute(0),
                Kind::Gauge => gauge!(s.name, labels).set(0.0),
                Kind::Histogram => drop(histogram!(s.name, labels)),
            }
        }
    }
}

/// A level and its peak since start, kept here because a gauge cannot be read back.
struct Level {
    now: AtomicI64,
    peak: AtomicI64,
}

impl Level {
    const fn new() -> Self {
        Self { now: AtomicI64::new(0), peak: AtomicI64::new(0) }
    }

    /// Adds `by`; returns the new level and the peak.
    fn add(&self, by: i64) -> (i64, i64) {
        let now = self.now.fetch_add(by, Ordering::Relaxed) + by;
        let peak = self.peak.fetch_max(now, Ordering::Relaxed).max(now);
        (now, peak)
    }
}

static PARTICIPANTS: Level = Level::new();
static SESSIONS: Level = Level::new();

/// Counts a participant in; updates the peak gauge.
pub fn participant_joined() {
    let (now, peak) = PARTICIPANTS.add(1);
    metrics::gauge!("easel_participants").set(now as f64);
    metrics::gauge!("easel_participants_peak").set(peak as f64);
}

/// Counts a participant out.
pub fn participant_left() {
    let (now, _) = PARTICIPANTS.add(-1);
    metrics::gauge!("easel_participants").set(now as f64);
}

/// Counts a connection in (from accept, before its handshake); updates the peak gauge.
pub fn session_opened(transport: &'static str) {
    metrics::gauge!("easel_sessions", "transport" => transport).increment(1.0);
    let (_, peak) = SESSIONS.add(1);
    metrics::gauge!("easel_sessions_peak").set(peak as f64);
}

/// Counts a connection out.
pub fn session_closed(transport: &'static str) {
    metrics::gauge!("easel_sessions", "transport" => transport).decrement(1.0);
    SESSIONS.add(-1);
}

/// Counts a handshake or join the server refused with `code`.
pub fn refused(code: ErrorCode) {
    metrics::counter!("easel_refusals_total", "code" => code_label(code)).increment(1);
}

/// Counts a connection attempt shed at accept (see `admission`).
pub fn shed(transport: &'static str) {
    metrics::counter!("easel_admission_shed_total", "transport" => transport).increment(1);
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Sets up `tracing` (filter from `RUST_LOG`, default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
