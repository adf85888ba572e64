//! The server's configuration: [`ServerConfig`], what [`crate::Server::start`] takes. The
//! command line ([`crate::cli`]) builds one; embedders and tests build one directly. Either way
//! [`ServerConfig::validate`] checks every range before anything starts, and its error names the
//! command-line flag (and so the env var) that sets the value.

use std::net::{Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use easel_proto::limits;

/// What one Easel server process serves, and how.
///
/// `Default` is what `easel serve` runs with no flags: loopback ports 4433 (WebTransport),
/// 4434 (QUIC) and 8080 (HTTP), data in `./easel-data`, a dev-mode secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Directory of the database and the dev-mode JWT secret (`--data-dir`).
    pub data_dir: PathBuf,
    /// HS256 secret for tokens, at least 32 bytes (`--jwt-secret`). Without it, on loopback
    /// only, a random secret is generated once and kept in the data dir (dev mode).
    pub jwt_secret: Option<String>,
    /// PEM public key accepted for ES256 tokens (`--jwt-es256-public-key`).
    pub jwt_es256_public_key: Option<PathBuf>,
    /// When set, tokens must carry `iss` equal to it (`--jwt-issuer`).
    pub jwt_issuer: Option<String>,
    /// When set, tokens must carry `aud` naming it (`--jwt-audience`).
    pub jwt_audience: Option<String>,
    /// Bearer token of the admin endpoints (`/admin/*`); unset, they do not exist
    /// (`--admin-token`, at least [`ADMIN_TOKEN_MIN_LEN`] bytes).
    pub admin_token: Option<String>,
    /// WebTransport (HTTP/3) UDP address (`--wt-addr`).
    pub wt_addr: SocketAddr,
    /// Raw QUIC UDP address (`--quic-addr`).
    pub quic_addr: SocketAddr,
    /// HTTP address: WebSocket, `/healthz`, `/metrics`, `/cert-hash` (`--http-addr`).
    pub http_addr: SocketAddr,
    /// Certificate and key files; `None`: a self-signed certificate made at start.
    pub tls: Option<TlsFiles>,
    /// Presence ticks per second, and the slowest rate at which each participant is sent
    /// moved cursors: the cursor pace floor (`--tick-hz`).
    pub tick_hz: u16,
    /// Datagrams per second one room's cursor batches may cost; the cursor pace follows from
    /// it, down to the `--tick-hz` floor (`--room-datagram-budget`).
    pub room_datagram_budget: u32,
    /// Datagrams per second the cursor batches of every room may cost together; a busy room's
    /// share may slow its pace past `--tick-hz`, to 10 a second at most (`--datagram-budget`;
    /// 0: [`defaults::DATAGRAM_BUDGET_PER_CORE`] per core).
    pub datagram_budget: u32,
    /// While a teacher is in a room, how many cursors besides the teachers' everyone is shown
    /// (the most recently started); 0: all (`--room-active-cursors`). A teacher can change it
    /// for the room.
    pub room_active_cursors: u16,
    /// Silence after which a participant is shown away (`--presence-ttl-secs`); evicted after
    /// the resume grace window of silence too.
    pub presence_ttl: Duration,
    /// How often clients are asked to send heartbeats (`--heartbeat-ms`).
    pub heartbeat: Duration,
    /// Most participants in one room (`--max-participants`).
    pub max_participants: u32,
    /// Most rooms one connection may join (`--max-rooms`).
    pub max_rooms: u16,
    /// CRDT updates per connection (`--ops-per-sec`, `--ops-burst`).
    pub ops: Rate,
    /// Datagrams per connection (`--datagrams-per-sec`, `--datagrams-burst`).
    pub datagrams: Rate,
    /// Chat messages per minute per user and room, also the burst (`--chat-per-min`).
    pub chat_per_min: u32,
    /// Largest stream frame accepted, in bytes (`--max-frame`).
    pub max_frame: u32,
    /// Time a client has to complete the handshake (`--handshake-timeout-secs`).
    pub handshake_timeout: Duration,
    /// Reliable messages queued per participant before it is closed as a slow consumer
    /// (`--outbound-queue`).
    pub outbound_queue: u32,
    /// Committed updates between room snapshots (`--snapshot-every`); in cluster mode, room
    /// log messages.
    pub snapshot_every: u64,
    /// How long an empty room stays loaded (`--idle-unload-secs`).
    pub idle_unload: Duration,
    /// How long a lost session keeps its room places for a resume (`--resume-grace-ms`).
    pub resume_grace: Duration,
    /// The SFU classroom video goes to, if any (`--sfu`).
    pub sfu: Option<SfuConfig>,
    /// Where a class meets while its SFU is unreachable, e.g. a meeting link, handed to its
    /// members in `SfuStatus` (`--sfu-fallback-url`); empty: none.
    pub sfu_fallback_url: String,
    /// Most sessions at once, handshaking or established, on all transports
    /// (`--max-sessions`); more are answered `Overloaded`.
    pub max_sessions: u32,
    /// Most sessions at once from one IP address (`--max-sessions-per-ip`).
    pub max_sessions_per_ip: u32,
    /// Connection attempts per second from one IP address, with a burst
    /// (`--handshakes-per-ip`, `--handshakes-per-ip-burst`); more are dropped before TLS.
    pub handshakes_per_ip: Rate,
    /// Whether loopback addresses are held to the per-IP limits (`--limit-loopback`); off,
    /// local load generators and tests open thousands of sessions from 127.0.0.1.
    pub limit_loopback: bool,
    /// The reconnect hint an `Overloaded` refusal carries (`--overload-retry-ms`).
    pub overload_retry_after: Duration,
    /// Cluster mode: the NATS server nodes meet through (`--cluster`); `None`, one node alone
    /// (the default).
    pub cluster: Option<ClusterConfig>,
}

/// Cluster mode (see `docs/cluster.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// NATS URL(s), comma-separated, e.g. `nats://127.0.0.1:4222` (`--cluster`).
    pub nats_url: String,
    /// This node's id in the cluster (`--node-id`); `None`: the host name and the QUIC port,
    /// so the same configuration on the same host comes back as the same node.
    pub node_id: Option<String>,
    /// How often this node announces itself (`--cluster-heartbeat-ms`); a node not heard from
    /// for [`ClusterConfig::node_ttl`] is counted out.
    pub heartbeat: Duration,
}

impl ClusterConfig {
    /// `url` with the default node id and heartbeat.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            nats_url: url.into(),
            node_id: None,
            heartbeat: Duration::from_millis(defaults::CLUSTER_HEARTBEAT_MS.into()),
        }
    }

    /// Silence after which a node is counted out: three heartbeats, so one lost or late
    /// announcement does not drop a node.
    pub fn node_ttl(&self) -> Duration {
        self.heartbeat * 3
    }
}

/// A sustained rate with a burst (a token bucket's parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_sec: u32,
    /// Most tokens held.
    pub burst: u32,
}

/// A certificate chain and its private key, both PEM (`--cert`, `--key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// PKCS#8 private key.
    pub key: PathBuf,
}

/// SFU adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SfuKind {
    /// Janus VideoRoom over its WebSocket API.
    Janus,
}

/// Where classroom video goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SfuConfig {
    /// Which adapter (`--sfu`).
    pub kind: SfuKind,
    /// Janus WebSocket API URL (`--janus-url`).
    pub janus_url: String,
    /// Janus VideoRoom `admin_key` (`--janus-admin-key`).
    pub janus_admin_key: Option<String>,
    /// STUN/TURN URLs handed to clients with SFU access (`--sfu-ice-servers`).
    pub ice_servers: Vec<String>,
    /// Whether students may publish video; teachers always may, viewers never
    /// (`--sfu-students-publish`).
    pub students_publish: bool,
}

/// Shortest admin token accepted: it guards revocation, so it must not be guessable.
pub const ADMIN_TOKEN_MIN_LEN: usize = 16;

/// A configuration value out of its range, named by the flag that sets it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A number outside what the server supports.
    #[error("{flag} {value}{unit} is out of range: it must be between {min} and {max}{unit}")]
    OutOfRange {
        /// The command-line flag.
        flag: &'static str,
        /// The value given, in the flag's unit.
        value: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
        /// The unit, as printed after numbers (e.g. `" ms"`), or empty.
        unit: &'static str,
    },
    /// A value that contradicts another.
    #[error("{flag}: {reason}")]
    Inconsistent {
        /// The command-line flag.
        flag: &'static str,
        /// Why.
        reason: String,
    },
}

/// The range of every bounded setting, in the unit of its flag; the CLI help quotes them.
pub mod ranges {
    use super::{RangeInclusive, limits};

    /// `--tick-hz`.
    pub const TICK_HZ: RangeInclusive<u64> = 1..=1000;
    /// `--room-datagram-budget`.
    pub const ROOM_DATAGRAM_BUDGET: RangeInclusive<u64> = 100..=1_000_000;
    /// `--datagram-budget` (or 0, for the default).
    pub const DATAGRAM_BUDGET: RangeInclusive<u64> = 1_000..=100_000_000;
    /// `--presence-ttl-secs`.
    pub const PRESENCE_TTL_SECS: RangeInclusive<u64> = 1..=3600;
    /// `--heartbeat-ms`.
    pub const HEARTBEAT_MS: RangeInclusive<u64> = 100..=60_000;
    /// `--max-participants`: a room's members are numbered by `u16` and listed in one `Joined`.
    pub const MAX_PARTICIPANTS: RangeInclusive<u64> = 1..=limits::MAX_PARTICIPANTS as u64;
    /// `--max-rooms`.
    pub const MAX_ROOMS: RangeInclusive<u64> = 1..=limits::MAX_ROOMS_PER_CONNECTION as u64;
    /// `--ops-per-sec` and `--ops-burst`.
    pub const OPS: RangeInclusive<u64> = 1..=1_000_000;
    /// `--datagrams-per-sec` and `--datagrams-burst`.
    pub const DATAGRAMS: RangeInclusive<u64> = 1..=1_000_000;
    /// `--chat-per-min`.
    pub const CHAT_PER_MIN: RangeInclusive<u64> = 1..=10_000;
    /// `--max-frame`: at least what a handshake needs, at most the protocol's frame limit.
    pub const MAX_FRAME: RangeInclusive<u64> =
        limits::MAX_PREAUTH_FRAME_LEN as u64..=limits::MAX_FRAME_LEN as u64;
    /// `--handshake-timeout-secs`.
    pub const HANDSHAKE_TIMEOUT_SECS: RangeInclusive<u64> = 1..=300;
    /// `--outbound-queue`.
    pub const OUTBOUND_QUEUE: RangeInclusive<u64> = 16..=65_536;
    /// `--snapshot-every`.
    pub const SNAPSHOT_EVERY: RangeInclusive<u64> = 1..=1_000_000;
    /// `--idle-unload-secs`.
    pub const IDLE_UNLOAD_SECS: RangeInclusive<u64> = 1..=86_400;
    /// `--resume-grace-ms`: 0 turns resuming off.
    pub const RESUME_GRACE_MS: RangeInclusive<u64> = 0..=3_600_000;
    /// `--max-sessions`.
    pub const MAX_SESSIONS: RangeInclusive<u64> = 1..=10_000_000;
    /// `--max-sessions-per-ip`.
    pub const MAX_SESSIONS_PER_IP: RangeInclusive<u64> = 1..=10_000_000;
    /// `--handshakes-per-ip` and `--handshakes-per-ip-burst`.
    pub const HANDSHAKES_PER_IP: RangeInclusive<u64> = 1..=1_000_000;
    /// `--overload-retry-ms`.
    pub const OVERLOAD_RETRY_MS: RangeInclusive<u64> = 100..=600_000;
    /// `--sfu-ice-servers`, a count.
    pub const ICE_SERVERS: RangeInclusive<u64> = 0..=limits::MAX_ICE_SERVERS as u64;
    /// `--sfu-fallback-url`, bytes (the wire limit of `SfuStatus.fallback_url`).
    pub const FALLBACK_URL: RangeInclusive<u64> = 0..=limits::MAX_CANDIDATE_LEN as u64;
    /// `--cluster-heartbeat-ms`.
    pub const CLUSTER_HEARTBEAT_MS: RangeInclusive<u64> = 50..=60_000;
    /// `--node-id`, bytes.
    pub const NODE_ID_LEN: RangeInclusive<u64> = 1..=64;
}

/// The defaults of `easel serve`, shared by [`ServerConfig::default`] and the CLI.
pub mod defaults {
    /// `--data-dir`.
    pub const DATA_DIR: &str = "./easel-data";
    /// `--wt-addr` port.
    pub const WT_PORT: u16 = 4433;
    /// `--quic-addr` port.
    pub const QUIC_PORT: u16 = 4434;
    /// `--http-addr` port.
    pub const HTTP_PORT: u16 = 8080;
    /// `--tick-hz`.
    pub const TICK_HZ: u16 = 60;
    /// `--room-datagram-budget`: a 50-person room is paced at 2.5 ms, a 333-person one
    /// reaches the floor. Measured at 50 clients on one core (BENCHMARKS.md, "A shorter pace
    /// for small rooms"): cursor p50 / p99 1.85 / 4.6 ms at 30% of the core, against 3.5–3.7 /
    /// 6.9–7.6 ms at 25% with 10,000. What every room costs together is bounded by
    /// `--datagram-budget`, not by this.
    pub const ROOM_DATAGRAM_BUDGET: u32 = 20_000;
    /// `--datagram-budget` 0 means this many per core the server may use: about 40% of a
    /// core at the 10–13 µs a datagram costs here (BENCHMARKS.md), leaving the rest to
    /// handshakes, joins and edits. Measured: a 2,000-client reconnect storm on one core
    /// sent 60,000 a second at 80% of it before it had this budget.
    pub const DATAGRAM_BUDGET_PER_CORE: u32 = 30_000;
    /// `--room-active-cursors`: a lecture hall's worth of moving pointers stays readable, and
    /// at 32 cursors a batch is one datagram (SPEC §8.3) whatever the room's size.
    pub const ROOM_ACTIVE_CURSORS: u16 = 32;
    /// `--presence-ttl-secs`.
    pub const PRESENCE_TTL_SECS: u64 = 10;
    /// `--heartbeat-ms`.
    pub const HEARTBEAT_MS: u32 = 2000;
    /// `--max-participants`.
    pub const MAX_PARTICIPANTS: u32 = 2000;
    /// `--max-rooms`.
    pub const MAX_ROOMS: u16 = easel_proto::limits::MAX_ROOMS_PER_CONNECTION;
    /// `--ops-per-sec`.
    pub const OPS_PER_SEC: u32 = 50;
    /// `--ops-burst`.
    pub const OPS_BURST: u32 = 200;
    /// `--datagrams-per-sec`.
    pub const DATAGRAMS_PER_SEC: u32 = 120;
    /// `--datagrams-burst`.
    pub const DATAGRAMS_BURST: u32 = 240;
    /// `--chat-per-min`.
    pub const CHAT_PER_MIN: u32 = 30;
    /// `--max-frame`.
    pub const MAX_FRAME: u32 = easel_proto::limits::MAX_FRAME_LEN as u32;
    /// `--handshake-timeout-secs`.
    pub const HANDSHAKE_TIMEOUT_SECS: u64 = 10;
    /// `--outbound-queue`.
    pub const OUTBOUND_QUEUE: u32 = 1024;
    /// `--snapshot-every`.
    pub const SNAPSHOT_EVERY: u64 = 1000;
    /// `--idle-unload-secs`.
    pub const IDLE_UNLOAD_SECS: u64 = 60;
    /// `--resume-grace-ms`.
    pub const RESUME_GRACE_MS: u32 = 30_000;
    /// `--max-sessions`: twice the 10,000 idle sessions measured on two cores (BENCHMARKS.md),
    /// so the idle and lecture benches are never refused; size it to the host's memory.
    pub const MAX_SESSIONS: u32 = 20_000;
    /// `--max-sessions-per-ip`: a school behind one NAT address.
    pub const MAX_SESSIONS_PER_IP: u32 = 1000;
    /// `--handshakes-per-ip`: that school reconnecting after a Wi-Fi blink gets in within
    /// seconds; one host retrying in a loop does not get far.
    pub const HANDSHAKES_PER_IP: u32 = 100;
    /// `--handshakes-per-ip-burst`.
    pub const HANDSHAKES_PER_IP_BURST: u32 = 1000;
    /// `--overload-retry-ms`: clients wait this plus up to as much again (full jitter).
    pub const OVERLOAD_RETRY_MS: u32 = 2000;
    /// `--janus-url`.
    pub const JANUS_URL: &str = "ws://127.0.0.1:8188";
    /// `--cluster-heartbeat-ms`: a dead node is counted out 2 to 4 s after its death.
    pub const CLUSTER_HEARTBEAT_MS: u32 = 1000;
}

impl Default for ServerConfig {
    fn default() -> Self {
        let loopback = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        Self {
            data_dir: PathBuf::from(defaults::DATA_DIR),
            jwt_secret: None,
            jwt_es256_public_key: None,
            jwt_issuer: None,
            jwt_audience: None,
            admin_token: None,
            wt_addr: loopback(defaults::WT_PORT),
            quic_addr: loopback(defaults::QUIC_PORT),
            http_addr: loopback(defaults::HTTP_PORT),
            tls: None,
            tick_hz: defaults::TICK_HZ,
            room_datagram_budget: defaults::ROOM_DATAGRAM_BUDGET,
            datagram_budget: 0,
            room_active_cursors: defaults::ROOM_ACTIVE_CURSORS,
            presence_ttl: Duration::from_secs(defaults::PRESENCE_TTL_SECS),
            heartbeat: Duration::from_millis(defaults::HEARTBEAT_MS.into()),
            max_participants: defaults::MAX_PARTICIPANTS,
            max_rooms: defaults::MAX_ROOMS,
            ops: Rate { per_sec: defaults::OPS_PER_SEC, burst: defaults::OPS_BURST },
            datagrams: Rate { per_sec: defaults::DATAGRAMS_PER_SEC, burst: defaults::DATAGRAMS_BURST },
            chat_per_min: defaults::CHAT_PER_MIN,
            max_frame: defaults::MAX_FRAME,
            handshake_timeout: Duration::from_secs(defaults::HANDSHAKE_TIMEOUT_SECS),
            outbound_queue: defaults::OUTBOUND_QUEUE,
            snapshot_every: defaults::SNAPSHOT_EVERY,
            idle_unload: Duration::from_secs(defaults::IDLE_UNLOAD_SECS),
            resume_grace: Duration::from_millis(defaults::RESUME_GRACE_MS.into()),
            sfu: None,
            sfu_fallback_url: String::new(),
            max_sessions: defaults::MAX_SESSIONS,
            max_sessions_per_ip: defaults::MAX_SESSIONS_PER_IP,
            handshakes_per_ip: Rate {
                per_sec: defaults::HANDSHAKES_PER_IP,
                burst: defaults::HANDSHAKES_PER_IP_BURST,
            },
            limit_loopback: false,
            overload_retry_after: Duration::from_millis(defaults::OVERLOAD_RETRY_MS.into()),
            cluster: None,
        }
    }
}

impl ServerConfig {
    /// Every listener on `127.0.0.1` with a port the OS picks: for tests and embedding.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Self { data_dir: data_dir.into(), wt_addr: any, quic_addr: any, http_addr: any, ..Self::default() }
    }

    /// Checks every setting against its range (see [`ranges`]) and against the others.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use ranges as r;
        let secs = |d: Duration| d.as_secs();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        within("--tick-hz", self.tick_hz.into(), r::TICK_HZ, "")?;
        if self.admin_token.as_ref().is_some_and(|t| t.len() < ADMIN_TOKEN_MIN_LEN) {
            let reason =
                format!("must be at least {ADMIN_TOKEN_MIN_LEN} bytes (it unlocks token revocation)");
            return Err(ConfigError::Inconsistent { flag: "--admin-token", reason });
        }
        within("--room-datagram-budget", self.room_datagram_budget.into(), r::ROOM_DATAGRAM_BUDGET, "")?;
        if self.datagram_budget != 0 {
            within("--datagram-budget", self.datagram_budget.into(), r::DATAGRAM_BUDGET, "")?;
        }
        within("--presence-ttl-secs", secs(self.presence_ttl), r::PRESENCE_TTL_SECS, " s")?;
        within("--heartbeat-ms", ms(self.heartbeat), r::HEARTBEAT_MS, " ms")?;
        within("--max-participants", self.max_participants.into(), r::MAX_PARTICIPANTS, "")?;
        within("--max-rooms", self.max_rooms.into(), r::MAX_ROOMS, "")?;
        within("--ops-per-sec", self.ops.per_sec.into(), r::OPS, "")?;
        within("--ops-burst", self.ops.burst.into(), r::OPS, "")?;
        within("--datagrams-per-sec", self.datagrams.per_sec.into(), r::DATAGRAMS, "")?;
        within("--datagrams-burst", self.datagrams.burst.into(), r::DATAGRAMS, "")?;
        within("--chat-per-min", self.chat_per_min.into(), r::CHAT_PER_MIN, "")?;
        within("--max-frame", self.max_frame.into(), r::MAX_FRAME, " bytes")?;
        within("--handshake-timeout-secs", secs(self.handshake_timeout), r::HANDSHAKE_TIMEOUT_SECS, " s")?;
        within("--outbound-queue", self.outbound_queue.into(), r::OUTBOUND_QUEUE, "")?;
        within("--snapshot-every", self.snapshot_every, r::SNAPSHOT_EVERY, "")?;
        within("--idle-unload-secs", secs(self.idle_unload), r::IDLE_UNLOAD_SECS, " s")?;
        within("--resume-grace-ms", ms(self.resume_grace), r::RESUME_GRACE_MS, " ms")?;
        within("--max-sessions", self.max_sessions.into(), r::MAX_SESSIONS, "")?;
        within("--max-sessions-per-ip", self.max_sessions_per_ip.into(), r::MAX_SESSIONS_PER_IP, "")?;
        within("--handshakes-per-ip", self.handshakes_per_ip.per_sec.into(), r::HANDSHAKES_PER_IP, "")?;
        within("--handshakes-per-ip-burst", self.handshakes_per_ip.burst.into(), r::HANDSHAKES_PER_IP, "")?;
        within("--overload-retry-ms", ms(self.overload_retry_after), r::OVERLOAD_RETRY_MS, " ms")?;
        if self.heartbeat >= self.presence_ttl {
            return Err(ConfigError::Inconsistent {
                flag: "--heartbeat-ms",
                reason: format!(
                    "{} ms is not shorter than --presence-ttl-secs ({} s): every participant would \
                     be evicted between two heartbeats",
                    ms(self.heartbeat),
                    secs(self.presence_ttl)
                ),
            });
        }
        if let Some(sfu) = &self.sfu {
            within("--sfu-ice-servers", sfu.ice_servers.len() as u64, r::ICE_SERVERS, " URLs")?;
        }
        within("--sfu-fallback-url", self.sfu_fallback_url.len() as u64, r::FALLBACK_URL, " bytes")?;
        if let Some(cluster) = &self.cluster {
            within("--cluster-heartbeat-ms", ms(cluster.heartbeat), r::CLUSTER_HEARTBEAT_MS, " ms")?;
            if let Some(id) = &cluster.node_id {
                within("--node-id", id.len() as u64, r::NODE_ID_LEN, " bytes")?;
                if !id.chars().all(crate::cluster::node_id_char) {
                    let reason = format!("{id:?} may hold only ASCII letters, digits, '-' and '_'");
                    return Err(ConfigError::Inconsistent { flag: "--node-id", reason });
                }
            }
        }
        Ok(())
    }

    /// Whether every listening address is loopback (dev mode may then make its own secret).
    pub fn loopback_only(&self) -> bool {
        [self.wt_addr, self.quic_addr, self.http_addr].iter().all(|a| a.ip().is_loopback())
    }

    /// The presence tick period, also the cursor pace floor.
    pub fn tick(&self) -> Duration {
        Duration::from_secs(1) / u32::from(self.tick_hz.max(1))
    }

    /// `--datagram-budget`, with 0 resolved for the cores this process may run on.
    pub fn datagram_budget(&self) -> u32 {
        if self.datagram_budget != 0 {
            return self.datagram_budget;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        defaults::DATAGRAM_BUDGET_PER_CORE.saturating_mul(u32::try_from(cores).unwrap_or(u32::MAX))
    }
}

fn within(
    flag: &'static str,
    value: u64,
    range: RangeInclusive<u64>,
    unit: &'static str,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange { flag, value, min: *range.start(), max: *range.end(), unit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(ServerConfig::default().validate(), Ok(()));
        assert_eq!(ServerConfig::ephemeral("d").validate(), Ok(()));
    }

    #[test]
    fn an_out_of_range_value_names_its_flag_and_range() {
        let config = ServerConfig { max_frame: 1, ..ServerConfig::default() };
        let e = config.validate().expect_err("1-byte frames are refused");
        assert_eq!(
            e.to_string(),
            "--max-frame 1 bytes is out of range: it must be between 16384 and 1048576 bytes"
        );
        let config = ServerConfig { ops: Rate { per_sec: 10, burst: 0 }, ..ServerConfig::default() };
        assert!(matches!(config.validate(), Err(ConfigError::OutOfRange { flag: "--ops-burst", .. })));
    }

    #[test]
    fn a_node_id_that_cannot_be_a_bucket_key_is_refused() {
        let with_id = |id: &str| ServerConfig {
            cluster: Some(ClusterConfig { node_id: Some(id.into()), ..ClusterConfig::new("nats://x") }),
            ..ServerConfig::default()
        };
        assert_eq!(with_id("hall-3_a").validate(), Ok(()));
        assert!(matches!(
            with_id("a.b").validate(),
            Err(ConfigError::Inconsistent { flag: "--node-id", .. })
        ));
        assert!(matches!(with_id("").validate(), Err(ConfigError::OutOfRange { flag: "--node-id", .. })));
    }

    #[test]
    fn the_server_datagram_budget_defaults_to_a_share_per_core() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        assert_eq!(ServerConfig::default().datagram_budget(), defaults::DATAGRAM_BUDGET_PER_CORE * cores);
        let set = ServerConfig { datagram_budget: 5_000, ..ServerConfig::default() };
        assert_eq!(set.datagram_budget(), 5_000);
    }

    #[test]
    fn a_heartbeat_as_long_as_the_presence_ttl_is_refused() {
        let config = ServerConfig {
            heartbeat: Duration::from_secs(10),
            presence_ttl: Duration::from_secs(10),
            ..ServerConfig::default()
        };
        assert!(matches!(config.validate(), Err(ConfigError::Inconsistent { flag: "--heartbeat-ms", .. })));
    }
}
