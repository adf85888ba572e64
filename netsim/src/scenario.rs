//! Scenarios: named network conditions read from TOML.
//!
//! A scenario file has a `description`, a `[link]` table that applies to both directions, and
//! optional `[up]` (client → server) and `[down]` (server → client) tables whose keys replace
//! the `[link]` ones for that direction (a nested table such as `loss` is replaced whole). A
//! `[tcp]` table tunes the TCP model. Every key is optional; unknown keys are errors.
//!
//! ```toml
//! description = "50 ms RTT, 2% random loss each way"
//!
//! [link]
//! delay_ms = 25.0          # one way
//! jitter_ms = 0.0          # uniform ± around delay_ms
//! jitter_reorders = false  # may jitter reorder packets?
//! duplicate = 0.0          # probability
//! limit_packets = 1000     # most packets held per direction and client
//! loss = { model = "bernoulli", p = 0.02 }
//! # loss = { model = "gilbert-elliott", p = 0.01, r = 0.25, loss_good = 0.0, loss_bad = 1.0 }
//! # reorder = { p = 0.01, extra_ms = 10.0 }
//! # rate = { kbit = 10000, queue_bytes = 64000, queue_packets = 100 }
//!
//! [down]
//! rate = { kbit = 20000, queue_packets = 100 }
//!
//! [tcp]
//! rto_min_ms = 200.0       # RTO = max(rto_min_ms, 2 × RTT)
//! mss = 1448
//! buffer_bytes = 4194304
//! ```
//!
//! The built-in scenarios (`netsim/scenarios/*.toml`) are compiled in: see [`BUILTINS`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::link::{ConfigError, GilbertElliott, LinkConfig, Loss, RateLimit, Reorder};
use crate::stream::{DEFAULT_BUFFER_BYTES, DEFAULT_MSS, DEFAULT_RTO_MIN, StreamConfig};

/// The built-in scenarios: (name, TOML text).
pub const BUILTINS: &[(&str, &str)] = &[
    ("loopback", include_str!("../scenarios/loopback.toml")),
    ("lan", include_str!("../scenarios/lan.toml")),
    ("classroom-wifi", include_str!("../scenarios/classroom-wifi.toml")),
    ("4g-congested", include_str!("../scenarios/4g-congested.toml")),
    ("transatlantic", include_str!("../scenarios/transatlantic.toml")),
    ("lossy-2pct", include_str!("../scenarios/lossy-2pct.toml")),
];

/// Which way packets travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

/// A named set of network conditions, one [`LinkConfig`] per direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Built-in name or file stem.
    pub name: String,
    /// One line saying what it simulates.
    pub description: String,
    /// Client → server.
    pub up: LinkConfig,
    /// Server → client.
    pub down: LinkConfig,
    /// TCP model settings.
    pub tcp: TcpSettings,
}

/// How the TCP proxy turns loss into retransmission delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSettings {
    /// Lower bound of the simulated RTO.
    pub rto_min: Duration,
    /// Segment size: loss is drawn once per segment.
    pub mss: usize,
    /// Bytes held per direction before the proxy stops reading.
    pub buffer_bytes: usize,
}

impl Default for TcpSettings {
    fn default() -> Self {
        Self { rto_min: DEFAULT_RTO_MIN, mss: DEFAULT_MSS, buffer_bytes: DEFAULT_BUFFER_BYTES }
    }
}

/// A scenario that cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// Neither a built-in name nor a readable file.
    #[error("no built-in scenario {name:?} (built-ins: {known}); a file path must end in .toml")]
    Unknown {
        /// What was asked for.
        name: String,
        /// The built-in names, comma-separated.
        known: String,
    },
    /// The file could not be read.
    #[error("cannot read scenario file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML, or keys of the wrong type, or unknown keys.
    #[error("scenario {name}: {source}")]
    Parse {
        /// The scenario.
        name: String,
        /// The parser's message, with the line and column.
        source: toml::de::Error,
    },
    /// A value out of range.
    #[error("scenario {name}: {field} {reason}")]
    Invalid {
        /// The scenario.
        name: String,
        /// The key, e.g. `up.delay_ms`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A direction's settings cannot be simulated.
    #[error("scenario {name}: [{direction}] {source}")]
    Link {
        /// The scenario.
        name: String,
        /// `up` or `down`.
        direction: &'static str,
        /// What is wrong.
        source: ConfigError,
    },
}

impl Scenario {
    /// A built-in scenario by name.
    pub fn builtin(name: &str) -> Result<Self, ScenarioError> {
        let (name, text) = BUILTINS.iter().find(|(n, _)| *n == name).ok_or_else(|| unknown(name))?;
        Self::from_toml(name, text)
    }

    /// A built-in name, or else a path to a `.toml` file (or any existing file).
    pub fn load(name_or_path: &str) -> Result<Self, ScenarioError> {
        if BUILTINS.iter().any(|(n, _)| *n == name_or_path) {
            return Self::builtin(name_or_path);
        }
        let path = Path::new(name_or_path);
        if name_or_path.ends_with(".toml") || path.is_file() {
            return Self::from_file(path);
        }
        Err(unknown(name_or_path))
    }

    /// Reads a scenario file; its name is the file stem.
    pub fn from_file(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScenarioError::Read { path: path.to_owned(), source })?;
        let name =
            path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into());
        Self::from_toml(&name, &text)
    }

    /// Parses a scenario's TOML text.
    pub fn from_toml(name: &str, text: &str) -> Result<Self, ScenarioError> {
        let file: File =
            toml::from_str(text).map_err(|source| ScenarioError::Parse { name: name.to_owned(), source })?;
        let invalid = |field: String, reason: &str| ScenarioError::Invalid {
            name: name.to_owned(),
            field,
            reason: reason.to_owned(),
        };
        let up = file.up.or(&file.link).to_config("up").map_err(|(f, r)| invalid(f, r))?;
        let down = file.down.or(&file.link).to_config("down").map_err(|(f, r)| invalid(f, r))?;
        for (direction, config) in [("up", &up), ("down", &down)] {
            config.validate().map_err(|source| ScenarioError::Link {
                name: name.to_owned(),
                direction,
                source,
            })?;
        }
        let defaults = TcpSettings::default();
        let tcp = TcpSettings {
            rto_min: match file.tcp.rto_min_ms {
                Some(ms) => millis(ms).ok_or_else(|| invalid("tcp.rto_min_ms".into(), NOT_MILLIS))?,
                None => defaults.rto_min,
            },
            mss: positive(file.tcp.mss, defaults.mss)
                .ok_or_else(|| invalid("tcp.mss".into(), "must be above 0"))?,
            buffer_bytes: positive(file.tcp.buffer_bytes, defaults.buffer_bytes)
                .ok_or_else(|| invalid("tcp.buffer_bytes".into(), "must be above 0"))?,
        };
        Ok(Self { name: name.to_owned(), description: file.description, up, down, tcp })
    }

    /// The link one direction runs.
    pub fn link(&self, direction: Direction) -> &LinkConfig {
        match direction {
            Direction::Up => &self.up,
            Direction::Down => &self.down,
        }
    }

    /// The base round trip: both directions' fixed delays.
    pub fn rtt(&self) -> Duration {
        self.up.delay + self.down.delay
    }

    /// The TCP model for one direction: RTO `max(rto_min, 2 × rtt())`.
    pub fn stream(&self, direction: Direction) -> StreamConfig {
        let mut config = StreamConfig::new(self.link(direction).clone(), self.rtt(), self.tcp.rto_min);
        config.mss = self.tcp.mss;
        config.buffer_bytes = self.tcp.buffer_bytes;
        config
    }
}

fn unknown(name: &str) -> ScenarioError {
    let known = BUILTINS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
    ScenarioError::Unknown { name: name.to_owned(), known }
}

const NOT_MILLIS: &str = "must be a number of milliseconds from 0 to 3600000 (an hour)";

/// Milliseconds as a duration; an hour at most, so that no time arithmetic can overflow.
fn millis(ms: f64) -> Option<Duration> {
    (0.0..=3_600_000.0).contains(&ms).then(|| Duration::from_secs_f64(ms / 1_000.0))
}

fn positive(value: Option<usize>, default: usize) -> Option<usize> {
    match value {
        None => Some(default),
        Some(0) => None,
        Some(v) => Some(v),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    description: String,
    #[serde(default)]
    link: LinkSpec,
    #[serde(default)]
    up: LinkSpec,
    #[serde(default)]
    down: LinkSpec,
    #[serde(default)]
    tcp: TcpSpec,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkSpec {
    delay_ms: Option<f64>,
    jitter_ms: Option<f64>,
    jitter_reorders: Option<bool>,
    duplicate: Option<f64>,
    limit_packets: Option<usize>,
    loss: Option<LossSpec>,
    reorder: Option<ReorderSpec>,
    rate: Option<RateSpec>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(tag = "model", rename_all = "kebab-case", deny_unknown_fields)]
enum LossSpec {
    None,
    Bernoulli { p: f64 },
    GilbertElliott { p: f64, r: f64, loss_good: Option<f64>, loss_bad: Option<f64> },
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReorderSpec {
    p: f64,
    extra_ms: f64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateSpec {
    /// Kilobits (1,000 bits) per second, as `tc` counts.
    kbit: f64,
    queue_bytes: Option<usize>,
    queue_packets: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TcpSpec {
    rto_min_ms: Option<f64>,
    mss: Option<usize>,
    buffer_bytes: Option<usize>,
}

impl LinkSpec {
    /// These settings, falling back to `base` key by key.
    fn or(&self, base: &Self) -> Self {
        Self {
            delay_ms: self.delay_ms.or(base.delay_ms),
            jitter_ms: self.jitter_ms.or(base.jitter_ms),
            jitter_reorders: self.jitter_reorders.or(base.jitter_reorders),
            duplicate: self.duplicate.or(base.duplicate),
            limit_packets: self.limit_packets.or(base.limit_packets),
            loss: self.loss.or(base.loss),
            reorder: self.reorder.or(base.reorder),
            rate: self.rate.or(base.rate),
        }
    }

    fn to_config(&self, direction: &str) -> Result<LinkConfig, (String, &'static str)> {
        let field = |key: &str| format!("{direction}.{key}");
        let ms = |key: &str, value: Option<f64>| match value {
            None => Ok(Duration::ZERO),
            Some(v) => millis(v).ok_or_else(|| (field(key), NOT_MILLIS)),
        };
        let mut config = LinkConfig {
            delay: ms("delay_ms", self.delay_ms)?,
            jitter: ms("jitter_ms", self.jitter_ms)?,
            jitter_reorders: self.jitter_reorders.unwrap_or(false),
            duplicate: self.duplicate.unwrap_or(0.0),
            ..LinkConfig::default()
        };
        if let Some(limit) = self.limit_packets {
            config.limit_packets = limit;
        }
        config.loss = match self.loss {
            None | Some(LossSpec::None) => Loss::None,
            Some(LossSpec::Bernoulli { p }) => Loss::Bernoulli { p },
            Some(LossSpec::GilbertElliott { p, r, loss_good, loss_bad }) => {
                Loss::GilbertElliott(GilbertElliott {
                    p,
                    r,
                    loss_good: loss_good.unwrap_or(0.0),
                    loss_bad: loss_bad.unwrap_or(1.0),
                })
            }
        };
        if let Some(reorder) = self.reorder {
            config.reorder = Reorder {
                probability: reorder.p,
                extra_delay: ms("reorder.extra_ms", Some(reorder.extra_ms))?,
            };
        }
        if let Some(rate) = self.rate {
            if !(rate.kbit.is_finite() && rate.kbit > 0.0) {
                return Err((field("rate.kbit"), "must be a finite number above 0"));
            }
            // Rounded up so that a tiny rate never becomes 0 bytes/s.
            let bytes_per_sec = (rate.kbit * 1_000.0 / 8.0).ceil() as u64;
            config.rate = Some(RateLimit {
                bytes_per_sec,
                queue_bytes: rate.queue_bytes,
                queue_packets: rate.queue_packets,
            });
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_parses_validates_and_describes_itself() {
        for (name, _) in BUILTINS {
            let scenario = Scenario::builtin(name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(scenario.name, *name);
            assert!(!scenario.description.is_empty(), "{name} has a description");
            assert!(!scenario.description.contains('\n'), "{name}: one line");
        }
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios")).expect("dir");
        let shipped =
            files.filter(|f| f.as_ref().is_ok_and(|f| f.path().extension().is_some_and(|e| e == "toml")));
        assert_eq!(shipped.count(), BUILTINS.len(), "every shipped file is built in");
    }

    #[test]
    fn builtins_say_what_their_names_promise() {
        let lossy = Scenario::builtin("lossy-2pct").expect("parses");
        assert_eq!(lossy.rtt(), Duration::from_millis(50));
        assert_eq!(lossy.up.loss, Loss::Bernoulli { p: 0.02 });
        assert_eq!(lossy.down.loss, Loss::Bernoulli { p: 0.02 });
        let far = Scenario::builtin("transatlantic").expect("parses");
        assert_eq!(far.up.delay, Duration::from_millis(80));
        let wifi = Scenario::builtin("classroom-wifi").expect("parses");
        assert!(matches!(wifi.down.loss, Loss::GilbertElliott(_)));
        let loopback = Scenario::builtin("loopback").expect("parses");
        assert_eq!(loopback.up, LinkConfig::default());
        let lte = Scenario::builtin("4g-congested").expect("parses");
        assert_ne!(lte.up.rate, lte.down.rate, "4G is asymmetric");
    }

    #[test]
    fn directions_override_the_shared_link() {
        let text = r#"
            description = "asymmetric"
            [link]
            delay_ms = 10
            loss = { model = "bernoulli", p = 0.1 }
            [down]
            delay_ms = 30.5
            rate = { kbit = 8000, queue_packets = 20 }
            [tcp]
            rto_min_ms = 300
        "#;
        let s = Scenario::from_toml("asym", text).expect("parses");
        assert_eq!(s.up.delay, Duration::from_millis(10));
        assert_eq!(s.down.delay, Duration::from_micros(30_500));
        assert_eq!(s.down.loss, Loss::Bernoulli { p: 0.1 }, "inherited");
        assert_eq!(s.up.rate, None);
        assert_eq!(
            s.down.rate,
            Some(RateLimit { bytes_per_sec: 1_000_000, queue_bytes: None, queue_packets: Some(20) })
        );
        assert_eq!(s.stream(Direction::Up).rto, Duration::from_millis(300));
        let ge = r#"link.loss = { model = "gilbert-elliott", p = 0.01, r = 0.5 }"#;
        let s = Scenario::from_toml("ge", ge).expect("parses");
        assert_eq!(
            s.up.loss,
            Loss::GilbertElliott(GilbertElliott { p: 0.01, r: 0.5, loss_good: 0.0, loss_bad: 1.0 })
        );
    }

    #[test]
    fn bad_files_give_typed_errors() {
        let parse = |text| Scenario::from_toml("bad", text).expect_err("rejected");
        assert!(matches!(parse("[link]\ndelay = 5"), ScenarioError::Parse { .. }), "unknown key");
        assert!(matches!(parse("[link]\ndelay_ms = \"5\""), ScenarioError::Parse { .. }), "wrong type");
        assert!(matches!(parse("link.loss = { model = \"pareto\" }"), ScenarioError::Parse { .. }));
        assert!(matches!(
            parse("link.loss = { model = \"bernoulli\", p = 0.1, q = 1 }"),
            ScenarioError::Parse { .. }
        ));
        assert!(
            matches!(parse("[up]\ndelay_ms = -1"), ScenarioError::Invalid { field, .. } if field == "up.delay_ms")
        );
        assert!(matches!(parse("link.delay_ms = 1e300"), ScenarioError::Invalid { .. }), "no overflow");
        assert!(matches!(parse("link.jitter_ms = nan"), ScenarioError::Invalid { .. }));
        assert!(
            matches!(parse("[link]\nrate = { kbit = 0 }"), ScenarioError::Invalid { field, .. } if field == "up.rate.kbit")
        );
        assert!(matches!(
            parse("[down]\nloss = { model = \"bernoulli\", p = 2 }"),
            ScenarioError::Link { direction: "down", source: ConfigError::Probability { .. }, .. }
        ));
        let message = parse("[link]\ndelay = 5").to_string();
        assert!(message.contains("delay") && message.contains("line"), "{message}");
        assert!(matches!(Scenario::load("nowhere"), Err(ScenarioError::Unknown { .. })));
        assert!(matches!(Scenario::load("/nonexistent/x.toml"), Err(ScenarioError::Read { .. })));
    }

    #[test]
    fn files_load_by_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mine.toml");
        std::fs::write(&path, "description = \"mine\"\nlink.delay_ms = 3").expect("write");
        let s = Scenario::load(path.to_str().expect("utf-8")).expect("loads");
        assert_eq!((s.name.as_str(), s.up.delay), ("mine", Duration::from_millis(3)));
        let builtin = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/lan.toml");
        assert_eq!(Scenario::load(builtin).expect("loads"), Scenario::builtin("lan").expect("parses"));
    }
}
