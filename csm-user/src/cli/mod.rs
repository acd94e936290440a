//! The command line (`csm run`, `csm check`) and the TOML config it merges with.
//! Flags override the file; the file overrides the built-in defaults.

pub mod config;
pub mod duration;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

pub use crate::daemon::settings::{Backend, Settings};

#[derive(Parser, Debug)]
#[command(
    name = "csm",
    version,
    about = "Per-user CPU and memory, per-interface traffic and ping RTT, into hourly Parquet files"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Collect until stopped (SIGINT/SIGTERM) or for --duration.
    Run(RunArgs),
    /// Say what this host supports, which backend `run` would use, and why.
    Check(CheckArgs),
    /// Live view: per-user CPU, memory and traffic, interfaces, ping (`q` quits).
    Top(crate::top::TopArgs),
    /// What happened in a time range: users, interfaces, ping, beancounters, gaps.
    Report(crate::report::ReportArgs),
}

#[derive(clap::Args, Debug, Default, Clone)]
pub struct CheckArgs {
    /// The config `csm run` uses: what its `[metrics]` endpoint exposes, and where.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub roots: RootArgs,
}

#[derive(clap::Args, Debug, Default, Clone)]
pub struct RootArgs {
    /// Read /proc from this folder instead (tests, fixtures).
    #[arg(long, value_name = "DIR")]
    pub proc_root: Option<PathBuf>,
    /// Read /sys from this folder instead (BTF, /sys/class/net, /sys/hypervisor).
    #[arg(long, value_name = "DIR")]
    pub sys_root: Option<PathBuf>,
}

#[derive(clap::Args, Debug, Default, Clone)]
pub struct RunArgs {
    /// TOML config file (see csm.example.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the Parquet tree goes [default: /var/lib/csm].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Length of a cpu/net row, e.g. 1s, 500ms [default: 1s].
    #[arg(long, value_name = "DUR", allow_hyphen_values = true, value_parser = duration::parse_duration)]
    pub interval: Option<Duration>,
    /// Which collector to use [default: auto].
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// Ping this host or address too (adds to the config's targets); repeatable.
    #[arg(long = "ping", value_name = "TARGET")]
    pub ping: Vec<String>,
    /// Stop cleanly after this long, e.g. 30s, 2h.
    #[arg(long, value_name = "DUR", allow_hyphen_values = true, value_parser = duration::parse_duration)]
    pub duration: Option<Duration>,
    /// Most data a crash may lose, e.g. 10s [default: 10s].
    #[arg(long, value_name = "DUR", allow_hyphen_values = true, value_parser = duration::parse_duration)]
    pub flush_interval: Option<Duration>,
    /// Delete whole date partitions older than this, e.g. 90d [default: keep everything].
    #[arg(long, value_name = "DUR", allow_hyphen_values = true, value_parser = duration::parse_duration)]
    pub retain: Option<Duration>,
    /// Host partition name [default: this host's name].
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Use a data dir that another user owns or may write to (refused by default: such a
    /// user could plant links where csm, as root, writes).
    #[arg(long)]
    pub allow_unsafe_data_dir: bool,
    #[command(flatten)]
    pub roots: RootArgs,
}
