//! The command line (`easel serve`, `easel token`, `easel attendance`): every flag has an env
//! var and a default that works on a laptop. `easel serve`'s flags become a validated
//! [`ServerConfig`] through [`Serve::to_config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ClusterConfig, ConfigError, Rate, ServerConfig, SfuConfig, SfuKind, TlsFiles, defaults};
use crate::telemetry::LogFormat;

/// `easel` — the Easel collaboration server.
#[derive(Debug, clap::Parser)]
#[command(name = "easel", version, about, long_about = None)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub action: Option<Action>,
    /// Serve options when no subcommand is given.
    #[command(flatten)]
    pub serve: Serve,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Run the server (the default).
    Serve(Box<Serve>),
    /// Print a JWT signed with the secret the server uses (same flags, env and data dir).
    Token(Token),
    /// Print a room's attendance as CSV from the data dir (the server must be stopped; while
    /// it runs, use `GET /rooms/{id}/attendance?format=csv` with a teacher token).
    Attendance(AttendanceArgs),
    /// Revoke tokens: every token of a user issued until now, or one token by its id. Asks a
    /// running server (`--server`, with its admin token; live sessions are closed at once), or
    /// writes to a stopped server's data dir (`--data-dir`).
    Revoke(RevokeArgs),
}

/// `easel revoke`.
#[derive(Debug, Clone, clap::Args)]
pub struct RevokeArgs {
    /// Revoke every token of this user (`sub`) issued until now.
    #[arg(long, conflicts_with = "token_id", required_unless_present = "token_id")]
    pub user: Option<String>,
    /// Revoke the token with this id (`jti`).
    #[arg(long)]
    pub token_id: Option<String>,
    /// A running server's HTTP address, e.g. `127.0.0.1:8080`.
    #[arg(long, conflicts_with = "data_dir")]
    pub server: Option<SocketAddr>,
    /// The running server's admin token.
    #[arg(long, env = "EASEL_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A stopped server's data directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// `easel attendance`.
#[derive(Debug, Clone, clap::Args)]
pub struct AttendanceArgs {
    /// Directory of the database.
    #[arg(long, env = "EASEL_DATA_DIR", default_value = defaults::DATA_DIR)]
    pub data_dir: PathBuf,
    /// The room id, e.g. `uni-a/math-101/2026-11-23`.
    #[arg(long)]
    pub room: String,
}

/// Where secrets and data live; shared by `serve` and `token`.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Directory for the database and the dev-mode JWT secret.
    #[arg(long, env = "EASEL_DATA_DIR", default_value = defaults::DATA_DIR)]
    pub data_dir: PathBuf,
    /// HS256 secret for tokens (at least 32 bytes). Without it, on loopback only, a random
    /// secret is generated once and kept in the data dir (dev mode).
    #[arg(long, env = "EASEL_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Issuer tokens must name (`iss`); unset, `iss` is not checked. `easel token` puts it in.
    #[arg(long, env = "EASEL_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Audience tokens must name (`aud`); unset, `aud` is not checked. `easel token` puts it in.
    #[arg(long, env = "EASEL_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
}

/// `easel serve`. Ranges are checked by [`ServerConfig::validate`] (see
/// [`crate::config::ranges`]); an out-of-range value stops the server before it binds anything.
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
    /// HTTP address: /ws, /healthz, /metrics, /cert-hash.
    #[arg(long, env = "EASEL_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Bearer token for the admin endpoints (`POST /admin/revoke`, `GET /admin/revocations`),
    /// at least 16 bytes; unset, those endpoints do not exist.
    #[arg(long, env = "EASEL_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
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
    /// Presence ticks per second, and the slowest rate at which each participant is sent
    /// moved cursors (the cursor pace floor; 1 to 1000).
    #[arg(long, env = "EASEL_TICK_HZ", default_value_t = defaults::TICK_HZ)]
    pub tick_hz: u16,
    /// Datagrams per second one room's cursor batches may cost (100 to 1000000): cursors go
    /// out as soon as this allows, never slower than --tick-hz.
    #[arg(long, env = "EASEL_ROOM_DATAGRAM_BUDGET", default_value_t = defaults::ROOM_DATAGRAM_BUDGET)]
    pub room_datagram_budget: u32,
    /// Datagrams per second the cursor batches of all rooms may cost together (1000 to
    /// 100000000; 0: 30000 per core): with many busy rooms, each room's cursors are paced by
    /// its share (by receivers), past --tick-hz down to 10 a second, so the server keeps up.
    #[arg(long, env = "EASEL_DATAGRAM_BUDGET", default_value_t = 0)]
    pub datagram_budget: u32,
    /// While a teacher is in a room, how many other cursors everyone sees (the most recently
    /// started moving) besides the teachers'; 0 shows all. A teacher can change it per room.
    #[arg(long, env = "EASEL_ROOM_ACTIVE_CURSORS", default_value_t = defaults::ROOM_ACTIVE_CURSORS)]
    pub room_active_cursors: u16,
    /// Seconds of silence before a participant is shown away, pointer hidden (1 to 3600); it is
    /// evicted once silent for the resume grace window too (SPEC §6.3).
    #[arg(long, env = "EASEL_PRESENCE_TTL", default_value_t = defaults::PRESENCE_TTL_SECS)]
    pub presence_ttl_secs: u64,
    /// Milliseconds between the heartbeats clients are asked to send (100 to 60000, and
    /// shorter than the presence TTL).
    #[arg(long, env = "EASEL_HEARTBEAT_MS", default_value_t = defaults::HEARTBEAT_MS)]
    pub heartbeat_ms: u32,
    /// Most participants in one room (1 to 10000).
    #[arg(long, env = "EASEL_MAX_PARTICIPANTS", default_value_t = defaults::MAX_PARTICIPANTS)]
    pub max_participants: u32,
    /// Most rooms one connection may join (1 to 16).
    #[arg(long, env = "EASEL_MAX_ROOMS", default_value_t = defaults::MAX_ROOMS)]
    pub max_rooms: u16,
    /// Sustained CRDT updates per second per connection (1 to 1000000).
    #[arg(long, env = "EASEL_OPS_PER_SEC", default_value_t = defaults::OPS_PER_SEC)]
    pub ops_per_sec: u32,
    /// CRDT update burst per connection (1 to 1000000).
    #[arg(long, env = "EASEL_OPS_BURST", default_value_t = defaults::OPS_BURST)]
    pub ops_burst: u32,
    /// Sustained datagrams per second per connection (1 to 1000000).
    #[arg(long, env = "EASEL_DATAGRAMS_PER_SEC", default_value_t = defaults::DATAGRAMS_PER_SEC)]
    pub datagrams_per_sec: u32,
    /// Datagram burst per connection (1 to 1000000).
    #[arg(long, env = "EASEL_DATAGRAMS_BURST", default_value_t = defaults::DATAGRAMS_BURST)]
    pub datagrams_burst: u32,
    /// Chat messages per minute per user and room (also the burst; 1 to 10000); more are
    /// refused with `RateLimited`.
    #[arg(long, env = "EASEL_CHAT_PER_MIN", default_value_t = defaults::CHAT_PER_MIN)]
    pub chat_per_min: u32,
    /// Largest stream frame accepted, in bytes (16384 to 1048576).
    #[arg(long, env = "EASEL_MAX_FRAME", default_value_t = defaults::MAX_FRAME)]
    pub max_frame: u32,
    /// Seconds a client has to complete the handshake (1 to 300).
    #[arg(long, env = "EASEL_HANDSHAKE_TIMEOUT", default_value_t = defaults::HANDSHAKE_TIMEOUT_SECS)]
    pub handshake_timeout_secs: u64,
    /// Reliable messages queued per participant before it is closed as a slow consumer
    /// (16 to 65536).
    #[arg(long, env = "EASEL_OUTBOUND_QUEUE", default_value_t = defaults::OUTBOUND_QUEUE)]
    pub outbound_queue: u32,
    /// Committed updates between room snapshots, i.e. log compaction; in cluster mode, room
    /// log messages (board and classroom) between a room's snapshots (1 to 1000000).
    #[arg(long, env = "EASEL_SNAPSHOT_EVERY", default_value_t = defaults::SNAPSHOT_EVERY)]
    pub snapshot_every: u64,
    /// Seconds an empty room stays loaded (1 to 86400).
    #[arg(long, env = "EASEL_IDLE_UNLOAD", default_value_t = defaults::IDLE_UNLOAD_SECS)]
    pub idle_unload_secs: u64,
    /// Milliseconds a session whose connection was lost (not closed cleanly) keeps its room
    /// places for a resume; others see it leave only when this passes (0, no resume, to
    /// 3600000).
    #[arg(long, env = "EASEL_RESUME_GRACE_MS", default_value_t = defaults::RESUME_GRACE_MS)]
    pub resume_grace_ms: u32,
    /// Most sessions at once (handshaking or established, all transports; 1 to 10000000);
    /// more are answered `Overloaded` with the --overload-retry-ms hint, before their token
    /// is verified.
    #[arg(long, env = "EASEL_MAX_SESSIONS", default_value_t = defaults::MAX_SESSIONS)]
    pub max_sessions: u32,
    /// Most sessions at once from one IP address (1 to 10000000); more are answered
    /// `Overloaded`. Loopback is exempt unless --limit-loopback.
    #[arg(long, env = "EASEL_MAX_SESSIONS_PER_IP", default_value_t = defaults::MAX_SESSIONS_PER_IP)]
    pub max_sessions_per_ip: u32,
    /// Connection attempts per second from one IP address (1 to 1000000); more are dropped
    /// before TLS (QUIC, WebTransport) or answered HTTP 503 with Retry-After (WebSocket).
    #[arg(long, env = "EASEL_HANDSHAKES_PER_IP", default_value_t = defaults::HANDSHAKES_PER_IP)]
    pub handshakes_per_ip: u32,
    /// Connection attempts one IP address may make at once after a quiet spell (1 to 1000000).
    #[arg(long, env = "EASEL_HANDSHAKES_PER_IP_BURST", default_value_t = defaults::HANDSHAKES_PER_IP_BURST)]
    pub handshakes_per_ip_burst: u32,
    /// Hold loopback addresses (127.0.0.1, ::1) to the per-IP limits too; by default they
    /// are exempt, so local load tests and a reverse proxy on the same host are not limited.
    #[arg(long, env = "EASEL_LIMIT_LOOPBACK")]
    pub limit_loopback: bool,
    /// Milliseconds an `Overloaded` client is told to wait before reconnecting (100 to
    /// 600000); clients add up to as much again as jitter.
    #[arg(long, env = "EASEL_OVERLOAD_RETRY_MS", default_value_t = defaults::OVERLOAD_RETRY_MS)]
    pub overload_retry_ms: u32,
    /// Log format.
    #[arg(long, env = "EASEL_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// SFU that classroom video goes to; clients signal through Easel (SPEC §13). Without it,
    /// SFU requests are refused with `SfuUnavailable`.
    #[arg(long, env = "EASEL_SFU", value_enum)]
    pub sfu: Option<SfuKind>,
    /// Janus WebSocket API URL (with `--sfu janus`).
    #[arg(long, env = "EASEL_JANUS_URL", default_value = defaults::JANUS_URL)]
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
    /// Where a class meets while its SFU is unreachable (e.g. a meeting link), offered to
    /// its members until the SFU answers again (≤ 1024 bytes).
    #[arg(long, env = "EASEL_SFU_FALLBACK_URL", default_value = "")]
    pub sfu_fallback_url: String,
    /// Cluster mode: the NATS server(s) with JetStream the nodes meet through, e.g.
    /// `nats://127.0.0.1:4222` (comma-separated for several). Without it, one node alone with
    /// its own database. NATS must be reachable at start (see docs/cluster.md).
    #[arg(long, env = "EASEL_CLUSTER")]
    pub cluster: Option<String>,
    /// This node's id in the cluster (letters, digits, '-', '_'; ≤ 64 bytes). Default: the
    /// host name and the QUIC port, e.g. `hall-3-4434`.
    #[arg(long, env = "EASEL_NODE_ID", requires = "cluster")]
    pub node_id: Option<String>,
    /// Milliseconds between this node's announcements in the cluster (50 to 60000); a node
    /// silent for three of them is counted out.
    #[arg(long, env = "EASEL_CLUSTER_HEARTBEAT_MS", default_value_t = defaults::CLUSTER_HEARTBEAT_MS)]
    pub cluster_heartbeat_ms: u32,
}

impl Serve {
    /// The server configuration these flags describe, validated.
    pub fn to_config(&self) -> Result<ServerConfig, ConfigError> {
        let tls = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.clone(), key: key.clone() }),
            _ => None,
        };
        let sfu = self.sfu.map(|kind| SfuConfig {
            kind,
            janus_url: self.janus_url.clone(),
            janus_admin_key: self.janus_admin_key.clone(),
            ice_servers: self.sfu_ice_servers.clone(),
            students_publish: self.sfu_students_publish,
        });
        let config = ServerConfig {
            data_dir: self.common.data_dir.clone(),
            jwt_secret: self.common.jwt_secret.clone(),
            jwt_es256_public_key: self.jwt_es256_public_key.clone(),
            jwt_issuer: self.common.jwt_issuer.clone(),
            jwt_audience: self.common.jwt_audience.clone(),
            admin_token: self.admin_token.clone(),
            wt_addr: self.wt_addr,
            quic_addr: self.quic_addr,
            http_addr: self.http_addr,
            tls,
            tick_hz: self.tick_hz,
            room_datagram_budget: self.room_datagram_budget,
            datagram_budget: self.datagram_budget,
            room_active_cursors: self.room_active_cursors,
            presence_ttl: Duration::from_secs(self.presence_ttl_secs),
            heartbeat: Duration::from_millis(self.heartbeat_ms.into()),
            max_participants: self.max_participants,
            max_rooms: self.max_rooms,
            ops: Rate { per_sec: self.ops_per_sec, burst: self.ops_burst },
            datagrams: Rate { per_sec: self.datagrams_per_sec, burst: self.datagrams_burst },
            chat_per_min: self.chat_per_min,
            max_frame: self.max_frame,
            handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
            outbound_queue: self.outbound_queue,
            snapshot_every: self.snapshot_every,
            idle_unload: Duration::from_secs(self.idle_unload_secs),
            resume_grace: Duration::from_millis(self.resume_grace_ms.into()),
            sfu,
            sfu_fallback_url: self.sfu_fallback_url.clone(),
            max_sessions: self.max_sessions,
            max_sessions_per_ip: self.max_sessions_per_ip,
            handshakes_per_ip: Rate { per_sec: self.handshakes_per_ip, burst: self.handshakes_per_ip_burst },
            limit_loopback: self.limit_loopback,
            overload_retry_after: Duration::from_millis(self.overload_retry_ms.into()),
            cluster: self.cluster.as_ref().map(|url| ClusterConfig {
                nats_url: url.clone(),
                node_id: self.node_id.clone(),
                heartbeat: Duration::from_millis(self.cluster_heartbeat_ms.into()),
            }),
        };
        config.validate()?;
        Ok(config)
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

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn parse(args: &[&str]) -> Serve {
        Cli::try_parse_from(std::iter::once("easel").chain(args.iter().copied())).expect("parses").serve
    }

    #[test]
    fn no_flags_give_the_default_config() {
        assert_eq!(parse(&[]).to_config(), Ok(ServerConfig::default()));
    }

    #[test]
    fn flags_reach_the_config() {
        let config = parse(&[
            "--ops-per-sec",
            "10",
            "--ops-burst",
            "20",
            "--resume-grace-ms",
            "300",
            "--room-datagram-budget",
            "5000",
            "--jwt-issuer",
            "https://idp.example",
            "--jwt-audience",
            "easel",
            "--max-sessions",
            "50",
            "--max-sessions-per-ip",
            "5",
            "--handshakes-per-ip",
            "2",
            "--handshakes-per-ip-burst",
            "4",
            "--limit-loopback",
            "--overload-retry-ms",
            "1500",
        ])
        .to_config()
        .expect("valid");
        assert_eq!(config.room_datagram_budget, 5000);
        assert_eq!(config.ops, Rate { per_sec: 10, burst: 20 });
        assert_eq!(config.resume_grace, Duration::from_millis(300));
        assert_eq!(config.jwt_issuer.as_deref(), Some("https://idp.example"));
        assert_eq!(config.jwt_audience.as_deref(), Some("easel"));
        assert_eq!((config.max_sessions, config.max_sessions_per_ip), (50, 5));
        assert_eq!(config.handshakes_per_ip, Rate { per_sec: 2, burst: 4 });
        assert!(config.limit_loopback);
        assert_eq!(config.overload_retry_after, Duration::from_millis(1500));
    }

    #[test]
    fn cluster_flags_reach_the_config_and_a_node_id_needs_a_cluster() {
        let config = parse(&[
            "--cluster",
            "nats://127.0.0.1:4222",
            "--node-id",
            "n1",
            "--cluster-heartbeat-ms",
            "250",
        ])
        .to_config()
        .expect("valid");
        let cluster = config.cluster.expect("cluster mode");
        assert_eq!(cluster.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(cluster.node_id.as_deref(), Some("n1"));
        assert_eq!(cluster.node_ttl(), Duration::from_millis(750));
        let alone = Cli::try_parse_from(["easel", "--node-id", "n1"]);
        assert!(alone.is_err(), "--node-id without --cluster is a usage error");
    }

    #[test]
    fn every_bounded_flag_refuses_a_value_out_of_range() {
        for (flag, bad) in [
            ("--tick-hz", "0"),
            ("--tick-hz", "1001"),
            ("--room-datagram-budget", "99"),
            ("--room-datagram-budget", "1000001"),
            ("--datagram-budget", "999"),
            ("--presence-ttl-secs", "0"),
            ("--heartbeat-ms", "10"),
            ("--max-participants", "0"),
            ("--max-participants", "10001"),
            ("--max-rooms", "17"),
            ("--ops-per-sec", "0"),
            ("--ops-burst", "0"),
            ("--datagrams-per-sec", "0"),
            ("--datagrams-burst", "0"),
            ("--chat-per-min", "0"),
            ("--max-frame", "1"),
            ("--max-frame", "1048577"),
            ("--handshake-timeout-secs", "0"),
            ("--outbound-queue", "15"),
            ("--snapshot-every", "0"),
            ("--idle-unload-secs", "0"),
            ("--resume-grace-ms", "3600001"),
            ("--max-sessions", "0"),
            ("--max-sessions-per-ip", "0"),
            ("--handshakes-per-ip", "0"),
            ("--handshakes-per-ip-burst", "0"),
            ("--overload-retry-ms", "99"),
        ] {
            let e = parse(&[flag, bad]).to_config().expect_err(flag);
            assert!(e.to_string().starts_with(&format!("{flag} {bad}")), "{flag} {bad}: {e}");
        }
        let beat = parse(&["--cluster", "nats://127.0.0.1:4222", "--cluster-heartbeat-ms", "10"]).to_config();
        assert!(matches!(beat, Err(ConfigError::OutOfRange { flag: "--cluster-heartbeat-ms", .. })));
        let ice = parse(&["--sfu", "janus", "--sfu-ice-servers", "a,b,c,d,e,f,g,h,i"]).to_config();
        assert!(matches!(ice, Err(ConfigError::OutOfRange { flag: "--sfu-ice-servers", .. })));
    }
}
