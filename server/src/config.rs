//! The command line (`easel serve`, `easel token`): every flag has an env var and a default
//! that works on a laptop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::telemetry::LogFormat;

/// `easel` — the Easel collaboration server.
#[derive(Debug, clap::Parser)]
#[command(name = "easel", version, about, long_about = None)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Serve options when no subcommand is given.
    #[command(flatten)]
    pub serve: Serve,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(Serve),
    /// Print a JWT signed with the secret the server uses (same flags, env and data dir).
    Token(Token),
    /// Print a room's attendance as CSV from the data dir (the server must be stopped; while
    /// it runs, use `GET /rooms/{id}/attendance?format=csv` with a teacher token).
    Attendance(AttendanceArgs),
}

/// `easel attendance`.
#[derive(Debug, Clone, clap::Args)]
pub struct AttendanceArgs {
    /// Directory of the database.
    #[arg(long, env = "EASEL_DATA_DIR", default_value = "./easel-data")]
    pub data_dir: PathBuf,
    /// The room id, e.g. `uni-a/math-101/2026-11-23`.
    #[arg(long)]
    pub room: String,
}

/// Where secrets and data live; shared by `serve` and `token`.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Directory for the database and the dev-mode JWT secret.
    #[arg(long, env = "EASEL_DATA_DIR", default_value = "./easel-data")]
    pub data_dir: PathBuf,
    /// HS256 secret for tokens (at least 32 bytes). Without it, on loopback only, a random
    /// secret is generated once and kept in the data dir (dev mode).
    #[arg(long, env = "EASEL_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
}

/// `easel serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct Serve {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// WebTransport (HTTP/3) UDP address.
    #[arg(long, env = "EASEL_WT_ADDR", default_value = "127.0.0.1:4433")]
    pub wt_addr: SocketAddr,
    /// Raw QUIC (ALPN easel/1) UDP address.
    #[arg(long, env = "EASEL_QUIC_ADDR", default_value = "127.0.0.1:4434")]
    pub quic_addr: SocketAddr,
    /// HTTP address: /healthz, /metrics, /cert-hash.
    #[arg(long, env = "EASEL_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// TLS certificate chain (PEM). Without --cert/--key a self-signed ECDSA P-256
    /// certificate valid for 14 days is made at start (browsers accept it by hash).
    #[arg(long, env = "EASEL_CERT", requires = "key")]
    pub cert: Option<PathBuf>,
    /// TLS private key (PEM, PKCS#8).
    #[arg(long, env = "EASEL_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
    /// PEM public key accepted for ES256 tokens (in addition to HS256 with the secret).
    #[arg(long, env = "EASEL_JWT_ES256_PUBLIC_KEY")]
    pub jwt_es256_public_key: Option<PathBuf>,
    /// Cursor and presence ticks per second.
    #[arg(long, env = "EASEL_TICK_HZ", default_value_t = 60, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub tick_hz: u16,
    /// Seconds of silence before a participant is evicted from presence.
    #[arg(long, env = "EASEL_PRESENCE_TTL", default_value_t = 10)]
    pub presence_ttl_secs: u64,
    /// Milliseconds between the heartbeats clients are asked to send.
    #[arg(long, env = "EASEL_HEARTBEAT_MS", default_value_t = 2000)]
    pub heartbeat_ms: u32,
    /// Most participants in one room.
    #[arg(long, env = "EASEL_MAX_PARTICIPANTS", default_value_t = 2000)]
    pub max_participants: u32,
    /// Most rooms one connection may join (at most 16).
    #[arg(long, env = "EASEL_MAX_ROOMS", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub max_rooms: u16,
    /// Sustained CRDT updates per second per connection.
    #[arg(long, env = "EASEL_OPS_PER_SEC", default_value_t = 50)]
    pub ops_per_sec: u32,
    /// CRDT update burst per connection.
    #[arg(long, env = "EASEL_OPS_BURST", default_value_t = 200)]
    pub ops_burst: u32,
    /// Sustained datagrams per second per connection.
    #[arg(long, env = "EASEL_DATAGRAMS_PER_SEC", default_value_t = 120)]
    pub datagrams_per_sec: u32,
    /// Datagram burst per connection.
    #[arg(long, env = "EASEL_DATAGRAMS_BURST", default_value_t = 240)]
    pub datagrams_burst: u32,
    /// Chat messages per minute per user and room (also the burst); more are refused with
    /// `RateLimited`.
    #[arg(long, env = "EASEL_CHAT_PER_MIN", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub chat_per_min: u32,
    /// Largest stream frame accepted, in bytes (16 KiB to 1 MiB).
    #[arg(long, env = "EASEL_MAX_FRAME", default_value_t = 1 << 20)]
    pub max_frame: u32,
    /// Seconds a client has to complete the handshake.
    #[arg(long, env = "EASEL_HANDSHAKE_TIMEOUT", default_value_t = 10)]
    pub handshake_timeout_secs: u64,
    /// Reliable messages queued per participant before it is closed as a slow consumer (16 to 65536).
    #[arg(long, env = "EASEL_OUTBOUND_QUEUE", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(16..=65536))]
    pub outbound_queue: u32,
    /// Committed updates between room snapshots (log compaction).
    #[arg(long, env = "EASEL_SNAPSHOT_EVERY", default_value_t = 1000)]
    pub snapshot_every: u64,
    /// Seconds an empty room stays loaded.
    #[arg(long, env = "EASEL_IDLE_UNLOAD", default_value_t = 60)]
    pub idle_unload_secs: u64,
    /// Milliseconds a session whose connection was lost (not closed cleanly) keeps its room
    /// places for a resume; others see it leave only when this passes.
    #[arg(long, env = "EASEL_RESUME_GRACE_MS", default_value_t = 30_000)]
    pub resume_grace_ms: u32,
    /// Log format.
    #[arg(long, env = "EASEL_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// SFU that classroom video goes to; clients signal through Easel (SPEC §13). Without it,
    /// SFU requests are refused with `SfuUnavailable`.
    #[arg(long, env = "EASEL_SFU", value_enum)]
    pub sfu: Option<SfuKind>,
    /// Janus WebSocket API URL (with `--sfu janus`).
    #[arg(long, env = "EASEL_JANUS_URL", default_value = "ws://127.0.0.1:8188")]
    pub janus_url: String,
    /// Janus VideoRoom `admin_key`, needed to create rooms when Janus has one.
    #[arg(long, env = "EASEL_JANUS_ADMIN_KEY", hide_env_values = true)]
    pub janus_admin_key: Option<String>,
    /// ICE server URLs (STUN/TURN) handed to clients with SFU access, comma-separated (≤ 8).
    #[arg(long, env = "EASEL_SFU_ICE_SERVERS", value_delimiter = ',')]
    pub sfu_ice_servers: Vec<String>,
    /// Whether students may publish video (teachers always may, viewers never).
    #[arg(long, env = "EASEL_SFU_STUDENTS_PUBLISH", default_value_t = true, action = clap::ArgAction::Set)]
    pub sfu_students_publish: bool,
}

/// SFU adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SfuKind {
    /// Janus VideoRoom over its WebSocket API (`--janus-url`, `--janus-admin-key`).
    Janus,
}

impl Serve {
    /// Whether every listening address is loopback (dev mode may then make its own secret).
    pub fn loopback_only(&self) -> bool {
        [self.wt_addr, self.quic_addr, self.http_addr].iter().all(|a| a.ip().is_loopback())
    }

    /// The handshake timeout.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    /// The resume grace window.
    pub fn resume_grace(&self) -> Duration {
        Duration::from_millis(self.resume_grace_ms.into())
    }
}

/// `easel token`.
#[derive(Debug, Clone, clap::Args)]
pub struct Token {
    /// Shared options (the secret and data dir the server uses).
    #[command(flatten)]
    pub common: Common,
    /// Room id or pattern the token grants (e.g. `uni-a/math-101/*`).
    #[arg(long)]
    pub room: String,
    /// User id (`sub`).
    #[arg(long)]
    pub user: String,
    /// Role: teacher, student or viewer.
    #[arg(long, default_value = "student")]
    pub role: String,
    /// Lifetime, e.g. 90s, 15m, 1h, 7d.
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
}
