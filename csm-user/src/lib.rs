//! csm: per-user CPU and memory, per-interface traffic and ping RTT into hourly Parquet.
//!
//! Rooms, by concern:
//! - [`sources`]: read the kernel (eBPF maps, /proc, /sys, ICMP) into raw cumulative samples;
//! - [`model`]: pure functions from two samples and their time stamps to interval values;
//! - the store is its own crate, `csm_store` (hourly, Hive-partitioned Parquet files that
//!   are complete at every moment), reached by that one path everywhere in csm-user;
//! - [`daemon`]: `csm run`: one driver runs every collector, which turns the model's values
//!   into store rows; the store loop writes them;
//! - [`cli`]: flags, the TOML config, durations;
//! - [`check`]: `csm check`, what this host supports;
//! - [`metrics`]: the Prometheus endpoint (`[metrics]`), fed from the collectors' rows;
//! - [`top`]: `csm top`, the live view of the running daemon's counters;
//! - [`report`]: `csm report`, what happened in a time range, from the Parquet tree;
//! - [`alerts`]: `[[alert]]` rules, evaluated on the collectors' rows;
//! - [`assets`]: man pages and completions for the package, the version string.

pub mod alerts;
pub mod assets;
pub mod check;
pub mod cli;
pub mod daemon;
pub mod metrics;
pub mod model;
pub mod report;
pub mod sources;
#[cfg(test)]
mod test_support;
pub mod top;

/// The store crate, re-exported for the end-to-end tests (`csm::store::…`); csm-user itself
/// names it `csm_store::` only.
pub use csm_store as store;
