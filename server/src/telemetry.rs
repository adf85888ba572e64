//! Metrics (Prometheus text at `GET /metrics`, every name prefixed `easel_`) and logging setup.

use std::sync::atomic::{AtomicI64, Ordering};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static PARTICIPANTS: AtomicI64 = AtomicI64::new(0);
static PARTICIPANTS_PEAK: AtomicI64 = AtomicI64::new(0);

/// Installs the process-wide Prometheus recorder (once; later calls reuse it).
pub fn install() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0];
            let recorder = PrometheusBuilder::new()
                .set_buckets(&latency)
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Another recorder may already be installed (tests in one process): keep ours
            // readable through the handle either way.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("easel_sessions", "Open sessions, by transport.");
    describe_counter!("easel_connects_total", "Handshakes, by transport and result (ok, failed).");
    describe_counter!("easel_resumes_total", "Sessions resumed within the grace window.");
    describe_gauge!("easel_rooms", "Rooms loaded in memory.");
    describe_gauge!("easel_participants", "Participants in all rooms now.");
    describe_gauge!("easel_participants_peak", "Most participants at once since start.");
    describe_counter!("easel_ops_in_total", "CRDT updates received.");
    describe_counter!("easel_ops_out_total", "CRDT updates fanned out (one per recipient).");
    describe_counter!("easel_ops_rejected_total", "CRDT updates refused.");
    describe_counter!("easel_datagrams_in_total", "Datagrams received.");
    describe_counter!("easel_datagrams_out_total", "Datagrams sent.");
    describe_counter!("easel_datagrams_dropped_total", "Datagrams dropped, by reason.");
    describe_counter!("easel_stale_cursors_dropped_total", "Cursor datagrams older than the newest held.");
    describe_counter!(
        "easel_cursors_hidden_total",
        "Cursor datagrams kept but not sent: a lecture's active-cursor cap hides the sender."
    );
    describe_counter!(
        "easel_datagram_ticks_skipped_total",
        "Ticks a subscriber was skipped (send buffer full)."
    );
    describe_counter!("easel_slow_consumers_total", "Sessions closed because a reliable queue overflowed.");
    describe_histogram!(
        "easel_op_ingest_to_send_seconds",
        Unit::Seconds,
        "From receiving an update to acking and fanning it out (includes the fsync)."
    );
    describe_histogram!("easel_room_queue_depth", "Room command queue depth, sampled each second per room.");
    describe_histogram!(
        "easel_outbound_queue_depth",
        "Deepest participant room-stream queue, sampled each second per room."
    );
    describe_histogram!("easel_store_commit_seconds", Unit::Seconds, "Durable commit (fsync) time.");
    describe_histogram!("easel_store_batch_ops", "Operations per group commit.");
    describe_counter!("easel_store_commits_total", "Write transactions committed.");
}

/// Counts a participant in; updates the peak gauge.
pub fn participant_joined() {
    let now = PARTICIPANTS.fetch_add(1, Ordering::Relaxed) + 1;
    metrics::gauge!("easel_participants").set(now as f64);
    let peak = PARTICIPANTS_PEAK.fetch_max(now, Ordering::Relaxed).max(now);
    metrics::gauge!("easel_participants_peak").set(peak as f64);
}

/// Counts a participant out.
pub fn participant_left() {
    let now = PARTICIPANTS.fetch_sub(1, Ordering::Relaxed) - 1;
    metrics::gauge!("easel_participants").set(now as f64);
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
