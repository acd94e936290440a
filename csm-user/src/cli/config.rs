//! The TOML config file and the settings that result from file, flags and defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use csm_store::time::{clip, quote};

use serde::Deserialize;
use toml::Spanned;

use super::duration::parse_duration;
use super::RunArgs;
use crate::daemon::settings::{Backend, Settings};
use crate::sources::host::HostPaths;
use crate::sources::ping::PingTarget;
use csm_store::layout::sanitize_host;

pub const DEFAULT_DATA_DIR: &str = "/var/lib/csm";
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_MEM_INTERVAL: Duration = Duration::from_secs(10);
/// How often the eBPF backend walks every process's `smaps_rollup` for PSS (the page-table
/// walk that cost 25 times everything else together with 1,000 processes at 10 s).
pub const DEFAULT_PSS_INTERVAL: Duration = Duration::from_secs(300);
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_PING_COUNT: u32 = 3;

/// A config problem: which file, which line, which key, what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("ping target `{host}`: {message}")]
    PingTarget { host: String, message: String },
    #[error("{0}")]
    TooManyPings(String),
    #[error("{0}")]
    Alert(String),
    #[error("{key} {value:?}: {message}")]
    OutOfRange {
        key: &'static str,
        value: Duration,
        message: &'static str,
    },
}

/// The shortest interval csm samples at: below it the samples would cost more than they
/// tell (a 1 ns interval ran at about 1 ms, flat out).
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// The longest flush interval: what a crash may lose, and how long rows wait in memory.
pub const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(3600);

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// The range a duration setting must fall in, and what each bound protects.
struct Limit {
    /// The key, the same name as the flag (`interval` is `--interval`).
    key: &'static str,
    min: Duration,
    max: Duration,
    below: &'static str,
    above: &'static str,
}

const SAMPLES_AT: &str = "below the 10ms csm samples at (use 10ms or more)";
const ROW_LENGTH: &str = "over 1h, the longest row csm writes (rows are cut at each hour's file)";

/// Limits of the row intervals (the same for `interval` and `mem.interval`).
const fn row_interval(key: &'static str) -> Limit {
    Limit {
        key,
        min: MIN_INTERVAL,
        max: HOUR,
        below: SAMPLES_AT,
        above: ROW_LENGTH,
    }
}

const INTERVAL: Limit = row_interval("interval");
const MEM_INTERVAL: Limit = row_interval("mem.interval");
const PSS_INTERVAL: Limit = Limit {
    key: "mem.pss_interval",
    min: MIN_INTERVAL,
    max: DAY,
    below: SAMPLES_AT,
    above: "over 1d: PSS would be as good as never measured",
};
const FLUSH_INTERVAL: Limit = Limit {
    key: "flush_interval",
    min: Duration::from_millis(100),
    max: MAX_FLUSH_INTERVAL,
    below: "below 100ms: csm would do little but rewrite files",
    above: "over 1h, the most rows may wait in memory (and a crash may lose)",
};
const PING_INTERVAL: Limit = Limit {
    key: "ping.interval",
    min: Duration::from_millis(100),
    max: DAY,
    below: "below 100ms: too short for a measurement to wait for its replies",
    above: "over 1d: an outage could go unseen for days",
};
const RETAIN: Limit = Limit {
    key: "retain",
    min: HOUR,
    max: Duration::from_secs(36_500 * 86_400),
    below: "below 1h: csm would delete the hour it is writing",
    above: "over 36500d (100 years): leave retain out to keep everything",
};
const DURATION: Limit = Limit {
    key: "duration",
    min: Duration::from_millis(1),
    max: Duration::from_secs(3650 * 86_400),
    below: "below 1ms: nothing would be collected",
    above: "over 3650d (10 years): leave --duration out to run until stopped",
};

impl Limit {
    fn check(&self, value: Duration) -> Result<(), ConfigError> {
        let message = if value < self.min {
            self.below
        } else if value > self.max {
            self.above
        } else {
            return Ok(());
        };
        Err(ConfigError::OutOfRange {
            key: self.key,
            value,
            message,
        })
    }
}

/// Refuses durations csm cannot keep, that would hold data back for too long or that
/// would overflow the clock arithmetic (`--interval 18446744073709551615s`), naming the
/// key; the same checks for flags and config keys, as both end here.
fn check_limits(settings: &Settings) -> Result<(), ConfigError> {
    INTERVAL.check(settings.interval)?;
    MEM_INTERVAL.check(settings.mem_interval)?;
    PSS_INTERVAL.check(settings.pss_interval)?;
    FLUSH_INTERVAL.check(settings.flush_interval)?;
    if let Some(retain) = settings.retain {
        RETAIN.check(retain)?;
    }
    if let Some(duration) = settings.duration {
        DURATION.check(duration)?;
    }
    for target in &settings.ping_targets {
        PING_INTERVAL.check(target.interval)?;
    }
    Ok(())
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub data_dir: Option<PathBuf>,
    pub allow_unsafe_data_dir: Option<bool>,
    pub interval: Option<Spanned<String>>,
    pub flush_interval: Option<Spanned<String>>,
    pub retain: Option<Spanned<String>>,
    pub host: Option<String>,
    pub backend: Option<Backend>,
    #[serde(default)]
    pub mem: MemSection,
    #[serde(default)]
    pub ping: PingSection,
    #[serde(default)]
    pub metrics: MetricsSection,
    /// `[[alert]]` rules.
    #[serde(default)]
    pub alert: Vec<crate::alerts::AlertSection>,
}

/// `[metrics]`: the Prometheus endpoint, off unless `listen` is set.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    pub listen: Option<Spanned<String>>,
    /// A unix socket's mode, octal ("0660").
    pub mode: Option<Spanned<String>>,
}

impl MetricsSection {
    /// Where the endpoint listens, if it is on; an error names the line and the key.
    pub fn listen(&self, text: &str) -> Result<Option<crate::metrics::Listen>, String> {
        let Some(listen) = &self.listen else {
            return match &self.mode {
                Some(mode) => Err(format!(
                    "line {}: key metrics.mode: only with metrics.listen",
                    line_of(text, mode.span().start)
                )),
                None => Ok(None),
            };
        };
        let mode = self.mode.as_ref().map(|m| m.get_ref().as_str());
        crate::metrics::Listen::parse(listen.get_ref(), mode)
            .map(Some)
            .map_err(|err| {
                format!(
                    "line {}: key metrics.listen: {err}",
                    line_of(text, listen.span().start)
                )
            })
    }
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct MemSection {
    pub interval: Option<Spanned<String>>,
    pub pss_interval: Option<Spanned<String>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct PingSection {
    pub interval: Option<Spanned<String>>,
    pub count: Option<Spanned<u32>>,
    #[serde(default)]
    pub targets: Vec<String>,
    /// `[[ping.target]]` per-target overrides.
    #[serde(default)]
    pub target: Vec<PingTargetSection>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct PingTargetSection {
    pub host: String,
    pub interval: Option<Spanned<String>>,
    pub count: Option<Spanned<u32>>,
}

/// Far more than any real configuration (a few dozen lines); a bound so that a config
/// path given by mistake (a log, a disk image) is not read whole into memory.
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;

impl ConfigFile {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        // Not blocking on a FIFO, a regular file only, at most MAX_CONFIG_BYTES.
        let text = csm_store::beneath::open_regular(path)
            .and_then(|file| csm_store::beneath::read_at_most(file, MAX_CONFIG_BYTES))
            .and_then(|bytes| {
                String::from_utf8(bytes)
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))
            })
            .map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses and checks the file; a message names the line and the key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: ConfigFile =
            toml::from_str(text).map_err(|err| describe_toml_error(text, &err))?;
        file.check(text)?;
        Ok(file)
    }

    fn check(&self, text: &str) -> Result<(), String> {
        let durations = [
            ("interval", &self.interval),
            ("flush_interval", &self.flush_interval),
            ("retain", &self.retain),
            ("mem.interval", &self.mem.interval),
            ("mem.pss_interval", &self.mem.pss_interval),
            ("ping.interval", &self.ping.interval),
        ];
        for (key, value) in durations {
            spanned_duration(text, key, value)?;
        }
        for target in &self.ping.target {
            spanned_duration(text, "ping.target.interval", &target.interval)?;
        }
        self.metrics.listen(text)?;
        crate::alerts::rules::rules(&self.alert, text)?;
        Ok(())
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim();
    match err.span() {
        Some(span) => {
            let line = line_of(text, span.start);
            let source = text.lines().nth(line - 1).unwrap_or("").trim();
            format!("line {line}: {} (in {})", clip(message), quote(source))
        }
        None => message.to_string(),
    }
}

fn spanned_duration(
    text: &str,
    key: &str,
    value: &Option<Spanned<String>>,
) -> Result<Option<Duration>, String> {
    let Some(value) = value else { return Ok(None) };
    parse_duration(value.get_ref()).map(Some).map_err(|err| {
        format!(
            "line {}: key {key}: {err}",
            line_of(text, value.span().start)
        )
    })
}

fn duration_or(value: &Option<Spanned<String>>, default: Duration) -> Duration {
    value
        .as_ref()
        .and_then(|v| parse_duration(v.get_ref()).ok())
        .unwrap_or(default)
}

impl Settings {
    /// Flags override the file, the file overrides the defaults.
    pub fn resolve(args: &RunArgs) -> Result<Settings, ConfigError> {
        let file = match &args.config {
            Some(path) => ConfigFile::load(path)?,
            None => ConfigFile::default(),
        };
        let ping_interval = duration_or(&file.ping.interval, DEFAULT_PING_INTERVAL);
        let ping_count = file
            .ping
            .count
            .as_ref()
            .map(|c| *c.get_ref())
            .unwrap_or(DEFAULT_PING_COUNT);
        let mut ping_targets: Vec<PingTarget> = file
            .ping
            .targets
            .iter()
            .chain(args.ping.iter())
            .map(|host| PingTarget {
                host: host.clone(),
                interval: ping_interval,
                count: ping_count,
            })
            .collect();
        for over in &file.ping.target {
            let target = PingTarget {
                host: over.host.clone(),
                interval: duration_or(&over.interval, ping_interval),
                count: over
                    .count
                    .as_ref()
                    .map(|c| *c.get_ref())
                    .unwrap_or(ping_count),
            };
            match ping_targets.iter_mut().find(|t| t.host == over.host) {
                Some(existing) => *existing = target,
                None => ping_targets.push(target),
            }
        }
        check_ping_targets(&mut ping_targets)?;
        let defaults = HostPaths::default();
        let settings = Settings {
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            allow_unsafe_data_dir: args.allow_unsafe_data_dir
                || file.allow_unsafe_data_dir.unwrap_or(false),
            interval: args
                .interval
                .unwrap_or(duration_or(&file.interval, DEFAULT_INTERVAL)),
            flush_interval: args
                .flush_interval
                .unwrap_or(duration_or(&file.flush_interval, DEFAULT_FLUSH_INTERVAL)),
            retain: args.retain.or_else(|| {
                file.retain
                    .as_ref()
                    .and_then(|v| parse_duration(v.get_ref()).ok())
            }),
            mem_interval: duration_or(&file.mem.interval, DEFAULT_MEM_INTERVAL),
            pss_interval: duration_or(&file.mem.pss_interval, DEFAULT_PSS_INTERVAL),
            backend: args.backend.or(file.backend).unwrap_or(Backend::Auto),
            duration: args.duration,
            host: sanitize_host(
                &args
                    .host
                    .clone()
                    .or(file.host.clone())
                    .unwrap_or_else(local_hostname),
            ),
            paths: HostPaths {
                proc_root: args.roots.proc_root.clone().unwrap_or(defaults.proc_root),
                sys_root: args.roots.sys_root.clone().unwrap_or(defaults.sys_root),
            },
            ping_targets,
            // Checked with its line when the file was parsed.
            metrics: file.metrics.listen("").ok().flatten(),
            alerts: crate::alerts::rules::rules(&file.alert, "").unwrap_or_default(),
        };
        crate::alerts::rules::check_targets(&settings.alerts, &settings.ping_targets)
            .map_err(ConfigError::Alert)?;
        check_limits(&settings)?;
        Ok(settings)
    }
}

/// Refuses malformed targets (naming them) and drops repeats of a host, which would
/// otherwise be measured twice.
fn check_ping_targets(targets: &mut Vec<PingTarget>) -> Result<(), ConfigError> {
    for target in targets.iter() {
        crate::sources::ping::check_target(target).map_err(|message| ConfigError::PingTarget {
            host: target.host.clone(),
            message,
        })?;
    }
    let mut seen = std::collections::HashSet::new();
    targets.retain(|t| seen.insert(t.host.clone()));
    check_ping_load(targets)
}

/// The most echoes per second all targets ask for together: half of the most measured
/// with no loss on loopback (7,500 a second, 5,000 targets every 2 s; docs/security.md).
pub const MAX_PING_ECHOES_PER_S: f64 = 3750.0;
/// The most targets: all targets of one interval fire at the same wall-clock slot, and
/// past about 5,000 at once their replies overflow the socket and are counted as lost
/// (measured on loopback: 0 % loss at 5,000, 11 % at 7,500, 24 % at 10,000); half of the
/// clean figure.
pub const MAX_PING_TARGETS: usize = 2500;

/// Refuses more ping work than the ping loop can serve on time: beyond it, measurements
/// start late and their echoes time out, which would be recorded as loss.
fn check_ping_load(targets: &[PingTarget]) -> Result<(), ConfigError> {
    let rate: f64 = targets
        .iter()
        .map(|t| f64::from(t.count) / t.interval.as_secs_f64())
        .sum();
    if targets.len() > MAX_PING_TARGETS {
        return Err(ConfigError::TooManyPings(format!(
            "{} ping targets: csm measures at most {MAX_PING_TARGETS} on time (fewer targets, please: more at once overflow the socket and count as loss)",
            targets.len()
        )));
    }
    if rate > MAX_PING_ECHOES_PER_S {
        return Err(ConfigError::TooManyPings(format!(
            "ping targets ask for {rate:.0} echoes per second: csm sends at most \
             {MAX_PING_ECHOES_PER_S:.0} on time (fewer targets, a lower count or a longer interval)"
        )));
    }
    Ok(())
}

pub use csm_store::layout::local_hostname;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let text = include_str!("../../../csm.example.toml");
        let file = ConfigFile::parse(text).unwrap();
        assert_eq!(file.ping.targets.len(), 3);
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let err = ConfigFile::parse("interval = \"1s\"\nintervall = \"2s\"\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("intervall"), "{err}");
    }

    #[test]
    fn bad_duration_names_line_and_key() {
        let err = ConfigFile::parse("[mem]\ninterval = \"soon\"\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("mem.interval"), "{err}");
    }

    #[test]
    fn pss_interval_is_checked_like_the_other_durations() {
        let err =
            ConfigFile::parse("[mem]\ninterval = \"10s\"\npss_interval = \"often\"\n").unwrap_err();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("mem.pss_interval"), "{err}");
        let file = ConfigFile::parse("[mem]\npss_interval = \"1h\"\n").unwrap();
        let value = file.mem.pss_interval.as_ref().unwrap().get_ref();
        assert_eq!(parse_duration(value).unwrap(), Duration::from_secs(3600));
    }

    #[test]
    fn a_bad_config_line_is_quoted_short() {
        let line = format!("interval = {}\n", "9".repeat(10_000));
        let err = ConfigFile::parse(&line).unwrap_err();
        assert!(err.len() < 400, "{} bytes: {err}", err.len());
        assert!(err.starts_with("line 1: "), "{err}");
    }

    #[test]
    fn metrics_and_alert_errors_name_line_and_key() {
        let err = ConfigFile::parse("[metrics]\nlisten = \"localhost:9847\"\n").unwrap_err();
        assert!(err.starts_with("line 2: key metrics.listen: "), "{err}");
        let err = ConfigFile::parse("[metrics]\nmode = \"0600\"\n").unwrap_err();
        assert!(err.starts_with("line 2: key metrics.mode: "), "{err}");
        let err =
            ConfigFile::parse("[[alert]]\nname = \"x\"\nkind = \"cpu\"\nabove = -1\n").unwrap_err();
        assert!(err.starts_with("line 4: key alert.above: "), "{err}");
        let file = ConfigFile::parse("[metrics]\nlisten = \":9847\"\n").unwrap();
        assert!(file.metrics.listen("").unwrap().is_some());
    }

    #[test]
    fn an_outage_alert_must_name_a_ping_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[ping]\ntargets = [\"a\"]\n[[alert]]\nname = \"down\"\nkind = \"outage\"\ntarget = \"b\"\n",
        )
        .unwrap();
        let args = RunArgs {
            config: Some(path),
            ..Default::default()
        };
        let err = Settings::resolve(&args).unwrap_err().to_string();
        assert!(err.contains("alert.target \"b\""), "{err}");
    }

    #[test]
    fn wrong_type_names_line() {
        let err = ConfigFile::parse("[ping]\ncount = \"three\"\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn flags_override_file_and_targets_merge() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "interval = \"5s\"\ndata_dir = \"/x\"\n[ping]\ntargets = [\"a\"]\ncount = 5\n\
             [[ping.target]]\nhost = \"b\"\ninterval = \"10s\"\n",
        )
        .unwrap();
        let args = RunArgs {
            config: Some(path),
            interval: Some(Duration::from_secs(2)),
            ping: vec!["c".into()],
            ..Default::default()
        };
        let s = Settings::resolve(&args).unwrap();
        assert_eq!(s.interval, Duration::from_secs(2));
        assert_eq!(s.data_dir, PathBuf::from("/x"));
        let hosts: Vec<_> = s
            .ping_targets
            .iter()
            .map(|t| (t.host.as_str(), t.count))
            .collect();
        assert_eq!(hosts, vec![("a", 5), ("c", 5), ("b", 5)]);
        assert_eq!(s.ping_targets[2].interval, Duration::from_secs(10));
    }

    /// Settings from flags alone, or the error.
    fn resolve_flags(args: RunArgs) -> Result<Settings, String> {
        Settings::resolve(&args).map_err(|err| err.to_string())
    }

    #[test]
    fn durations_out_of_their_range_are_refused_naming_the_key() {
        let huge = Some(Duration::from_secs(u64::MAX));
        let err = resolve_flags(RunArgs {
            interval: huge,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            err,
            "interval 18446744073709551615s: over 1h, the longest row csm writes (rows are cut \
             at each hour's file)"
        );
        for (args, key) in [
            (
                RunArgs {
                    retain: huge,
                    ..Default::default()
                },
                "retain ",
            ),
            (
                RunArgs {
                    duration: huge,
                    ..Default::default()
                },
                "duration ",
            ),
            (
                RunArgs {
                    flush_interval: Some(Duration::ZERO),
                    ..Default::default()
                },
                "flush_interval 0ns: below 100ms",
            ),
            (
                RunArgs {
                    retain: Some(Duration::from_secs(60)),
                    ..Default::default()
                },
                "retain 60s: below 1h",
            ),
        ] {
            let err = resolve_flags(args).unwrap_err();
            assert!(err.starts_with(key), "{err}");
        }
        let ok = resolve_flags(RunArgs {
            interval: Some(Duration::from_secs(3600)),
            retain: Some(Duration::from_secs(90 * 86_400)),
            ..Default::default()
        });
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn config_keys_get_the_same_limits_as_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let resolve = |text: &str| {
            std::fs::write(&path, text).unwrap();
            resolve_flags(RunArgs {
                config: Some(path.clone()),
                ..Default::default()
            })
        };
        let err = resolve("[mem]\ninterval = \"2h\"\n").unwrap_err();
        assert!(err.starts_with("mem.interval 7200s: over 1h"), "{err}");
        let err = resolve("[mem]\npss_interval = \"2d\"\n").unwrap_err();
        assert!(
            err.starts_with("mem.pss_interval 172800s: over 1d"),
            "{err}"
        );
        let err = resolve("[ping]\ntargets = [\"a\"]\ninterval = \"10ms\"\n").unwrap_err();
        assert!(err.starts_with("ping.interval 10ms: below 100ms"), "{err}");
        let err = resolve("[[ping.target]]\nhost = \"b\"\ninterval = \"3d\"\n").unwrap_err();
        assert!(err.starts_with("ping.interval 259200s: over 1d"), "{err}");
        let err = resolve("retain = \"500000y\"\n").unwrap_err();
        assert!(err.starts_with("retain "), "{err}");
    }

    #[test]
    fn bad_ping_target_is_named() {
        let args = RunArgs {
            ping: vec!["ok.example".into(), "http://bad/".into()],
            ..Default::default()
        };
        let err = Settings::resolve(&args).unwrap_err().to_string();
        assert!(err.starts_with("ping target `http://bad/`: "), "{err}");
    }

    #[test]
    fn repeated_ping_targets_are_measured_once() {
        let args = RunArgs {
            ping: vec!["a".into(), "b".into(), "a".into()],
            ..Default::default()
        };
        let s = Settings::resolve(&args).unwrap();
        let hosts: Vec<_> = s.ping_targets.iter().map(|t| t.host.as_str()).collect();
        assert_eq!(hosts, vec!["a", "b"]);
    }
}
