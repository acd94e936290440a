//! csm: per-user CPU and memory, per-interface traffic and ping RTT into hourly Parquet.
//!
//! Rooms, by concern:
//! - [`sources`]: read the kernel (eBPF maps, /proc, /sys, ICMP) into raw cumulative samples;
//! - [`model`]: pure functions from two samples and the elapsed time to interval rows;
//! - [`store`]: hourly, Hive-partitioned Parquet files that are complete at every moment;
//! - [`daemon`]: the `csm run` loop tying them together;
//! - [`cli`]: flags, the TOML config, durations;
//! - [`check`]: `csm check`, what this host supports;
//! - [`assets`]: man pages and completions for the package, the version string.

pub mod assets;
pub mod check;
pub mod cli;
pub mod daemon;
pub mod model;
pub mod plot;
pub mod sources;
pub mod store;
