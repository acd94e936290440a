//! What a report is asked for: the range, the sections, the period; and how its
//! instants are written.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use serde::Serialize;

use csm_store::zone::Zone;

/// The sections, in the order they are printed.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// CPU-seconds, mean/peak CPU % and memory, and socket bytes per user.
    Users,
    /// Bytes, packets and peak rates per interface (network namespaces apart).
    Interfaces,
    /// Loss, RTT percentiles and outages per ping target.
    Ping,
    /// OpenVZ beancounters whose failcnt grew.
    Beancounters,
    /// Periods without data (the daemon was down).
    Gaps,
    /// `[[alert]]` rules that fired: start, end and duration.
    Alerts,
}

impl Section {
    pub const ALL: [Section; 6] = [
        Section::Users,
        Section::Interfaces,
        Section::Ping,
        Section::Beancounters,
        Section::Gaps,
        Section::Alerts,
    ];
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Hour,
    Day,
    Month,
}

/// The resolved request: a half-open range `[from_us, to_us)` (rows by their `ts`).
#[derive(Clone, Debug)]
pub struct Request {
    pub data_dir: PathBuf,
    pub host: Option<String>,
    pub from_us: i64,
    pub to_us: i64,
    pub by: Option<Period>,
    pub top: usize,
    pub tz: Zone,
    pub sections: Vec<Section>,
}

/// An instant as JSON and CSV write it: RFC 3339 in UTC, to the microsecond.
pub fn rfc3339(ts_us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(ts_us)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}
