//! What `csm run` needs, resolved from flags, the config file and defaults (the `cli`
//! builds it; the daemon only reads it).

use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;

use crate::sources::host::HostPaths;
use crate::sources::ping::PingTarget;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// eBPF where it loads and attaches, else /proc.
    Auto,
    /// eBPF only; fail if it cannot run.
    Ebpf,
    /// /proc and /sys only.
    Proc,
}

/// Everything `csm run` needs, resolved.
#[derive(Clone, Debug)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// Use a data dir another user owns or may write to.
    pub allow_unsafe_data_dir: bool,
    pub interval: Duration,
    pub flush_interval: Duration,
    pub retain: Option<Duration>,
    pub mem_interval: Duration,
    /// How often a memory sample also walks `smaps_rollup` for PSS (the other samples
    /// read RSS and swap from the eBPF memory iterator or from `status`).
    pub pss_interval: Duration,
    pub backend: Backend,
    pub duration: Option<Duration>,
    pub host: String,
    pub paths: HostPaths,
    pub ping_targets: Vec<PingTarget>,
    /// Where the Prometheus endpoint listens (`[metrics] listen`); off when `None`.
    pub metrics: Option<crate::metrics::Listen>,
    /// `[[alert]]` rules.
    pub alerts: Vec<crate::alerts::Rule>,
}
