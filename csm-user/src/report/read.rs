//! The rows of a report's range, read through csm-store: only the host's files of the
//! hours overlapping the range (roll-up hours for ranges over 6 h, raw hours where the
//! roll-up is not written yet), only rows whose `ts` falls in `[from, to)`. Raw rows and
//! roll-up rows are brought to one shape per table here, so the sections see one kind.

use std::path::Path;

use csm_store::tree::{DataTree, ROLLUP_ABOVE_US};
use csm_store::{
    read_rows, CpuMinuteRow, CpuRow, EventRow, FromBatch, MemMinuteRow, MemRow, NetMinuteRow,
    NetRow, NetUidMinuteRow, NetUidRow, PingRow, Table, UbcRow,
};

use super::Request;

/// CPU of one uid over one span (a raw interval or a minute).
#[derive(Clone, Debug, PartialEq)]
pub struct CpuSpan {
    pub ts_us: i64,
    pub dur_ms: i64,
    pub uid: i64,
    pub user: Option<String>,
    pub cpu_ns: i64,
    /// The highest single interval's CPU % within the span.
    pub pct_peak: f64,
}

/// Memory of one uid: one sample, or a minute's samples.
#[derive(Clone, Debug, PartialEq)]
pub struct MemSpan {
    pub uid: i64,
    pub user: Option<String>,
    pub samples: i64,
    pub rss_mean: i64,
    pub rss_peak: i64,
    pub pss_mean: Option<i64>,
    /// Raw rows: the sample's PSS; roll-ups keep only the minute's mean.
    pub pss_peak: Option<i64>,
}

/// Socket bytes of one uid over one span.
#[derive(Clone, Debug, PartialEq)]
pub struct UidBytes {
    pub ts_us: i64,
    pub dur_ms: i64,
    pub uid: i64,
    pub user: Option<String>,
    pub rx_bytes: i64,
    pub tx_bytes: i64,
}

/// Traffic of one interface over one span.
#[derive(Clone, Debug, PartialEq)]
pub struct NetSpan {
    pub ts_us: i64,
    pub dur_ms: i64,
    pub netns: Option<i64>,
    pub iface: String,
    pub rx_bytes: i64,
    pub tx_bytes: i64,
    pub rx_packets: i64,
    pub tx_packets: i64,
    /// The highest single interval's rates, bytes per second.
    pub rx_peak: f64,
    pub tx_peak: f64,
}

/// Everything a report reads.
#[derive(Debug, Default)]
pub struct Rows {
    pub cpu: Vec<CpuSpan>,
    pub mem: Vec<MemSpan>,
    pub net_uid: Vec<UidBytes>,
    pub net: Vec<NetSpan>,
    pub ping: Vec<PingRow>,
    pub ubc: Vec<UbcRow>,
    pub events: Vec<EventRow>,
    /// Some roll-up hour was read.
    pub rollups: bool,
}

/// How far before the range events are read: the stop that opens a gap ending inside
/// the range is found if it lies within this.
const EVENTS_BEFORE_US: i64 = 7 * 86_400_000_000;

impl Rows {
    /// Reads the range; a file that cannot be read is passed to `warn` (naming it) and
    /// skipped.
    pub fn read(tree: &DataTree, request: &Request, warn: &mut dyn FnMut(String)) -> Rows {
        let (from, to) = (request.from_us, request.to_us);
        let long = to - from > ROLLUP_ABOVE_US;
        let mut rows = Rows::default();
        let in_range = |ts: i64| (from..to).contains(&ts);
        for (table, path) in tree.files_preferring(Table::Cpu, Table::CpuMinute, from, to, long) {
            rows.rollups |= table == Table::CpuMinute;
            if table == Table::Cpu {
                let read = typed::<CpuRow>(&path, warn).into_iter();
                rows.cpu
                    .extend(read.filter(|r| in_range(r.ts_us)).map(|r| CpuSpan {
                        ts_us: r.ts_us,
                        dur_ms: r.dur_ms,
                        uid: r.uid,
                        user: r.user,
                        cpu_ns: r.cpu_ns,
                        pct_peak: r.cpu_pct,
                    }));
            } else {
                let read = typed::<CpuMinuteRow>(&path, warn).into_iter();
                rows.cpu
                    .extend(read.filter(|r| in_range(r.ts_us)).map(|r| CpuSpan {
                        ts_us: r.ts_us,
                        dur_ms: r.dur_ms,
                        uid: r.uid,
                        user: r.user,
                        cpu_ns: r.cpu_ns,
                        pct_peak: r.cpu_pct_max,
                    }));
            }
        }
        for (table, path) in tree.files_preferring(Table::Mem, Table::MemMinute, from, to, long) {
            if table == Table::Mem {
                let read = typed::<MemRow>(&path, warn).into_iter();
                rows.mem
                    .extend(read.filter(|r| in_range(r.ts_us)).map(|r| MemSpan {
                        uid: r.uid,
                        user: r.user,
                        samples: 1,
                        rss_mean: r.rss_bytes,
                        rss_peak: r.rss_bytes,
                        pss_mean: r.pss_bytes,
                        pss_peak: r.pss_bytes,
                    }));
            } else {
                let read = typed::<MemMinuteRow>(&path, warn).into_iter();
                rows.mem
                    .extend(read.filter(|r| in_range(r.ts_us)).map(|r| MemSpan {
                        uid: r.uid,
                        user: r.user,
                        samples: r.samples,
                        rss_mean: r.rss_bytes_mean,
                        rss_peak: r.rss_bytes_max,
                        pss_mean: r.pss_bytes_mean,
                        pss_peak: r.pss_bytes_mean,
                    }));
            }
        }
        for (table, path) in
            tree.files_preferring(Table::NetUid, Table::NetUidMinute, from, to, long)
        {
            if table == Table::NetUid {
                let read = typed::<NetUidRow>(&path, warn).into_iter();
                rows.net_uid
                    .extend(read.filter(|r| in_range(r.ts_us)).map(|r| UidBytes {
                        ts_us: r.ts_us,
                        dur_ms: r.dur_ms,
                        uid: r.uid,
                        user: r.user,
                        rx_bytes: r.rx_bytes,
                        tx_bytes: r.tx_bytes,
                    }));
            } else {
                let read = typed::<NetUidMinuteRow>(&path, warn).into_iter();
                rows.net_uid
                    .extend(read.filter(|r| in_range(r.ts_us)).map(|r| UidBytes {
                        ts_us: r.ts_us,
                        dur_ms: r.dur_ms,
                        uid: r.uid,
                        user: r.user,
                        rx_bytes: r.rx_bytes,
                        tx_bytes: r.tx_bytes,
                    }));
            }
        }
        for (table, path) in tree.files_preferring(Table::Net, Table::NetMinute, from, to, long) {
            if table == Table::Net {
                let read = typed::<NetRow>(&path, warn).into_iter();
                rows.net.extend(read.filter(|r| in_range(r.ts_us)).map(|r| {
                    let per_s = |bytes: i64| bytes as f64 * 1000.0 / r.dur_ms.max(1) as f64;
                    NetSpan {
                        rx_peak: per_s(r.rx_bytes),
                        tx_peak: per_s(r.tx_bytes),
                        ts_us: r.ts_us,
                        dur_ms: r.dur_ms,
                        netns: r.netns,
                        iface: r.iface,
                        rx_bytes: r.rx_bytes,
                        tx_bytes: r.tx_bytes,
                        rx_packets: r.rx_packets,
                        tx_packets: r.tx_packets,
                    }
                }));
            } else {
                let read = typed::<NetMinuteRow>(&path, warn).into_iter();
                rows.net
                    .extend(read.filter(|r| in_range(r.ts_us)).map(|r| NetSpan {
                        ts_us: r.ts_us,
                        dur_ms: r.dur_ms,
                        netns: r.netns,
                        iface: r.iface,
                        rx_bytes: r.rx_bytes,
                        tx_bytes: r.tx_bytes,
                        rx_packets: r.rx_packets,
                        tx_packets: r.tx_packets,
                        rx_peak: r.rx_bytes_per_s_max,
                        tx_peak: r.tx_bytes_per_s_max,
                    }));
            }
        }
        // Ping and beancounters are always read raw: outages and percentiles need every
        // measurement, failcnt growth the first and last sample.
        rows.ping = raw::<PingRow>(tree, from, to, warn);
        rows.ubc = raw::<UbcRow>(tree, from, to, warn);
        rows.events = raw::<EventRow>(tree, from - EVENTS_BEFORE_US, to, warn);
        rows
    }

    /// No collected row at all (events alone are the daemon's, not data).
    pub fn is_empty(&self) -> bool {
        self.cpu.is_empty()
            && self.mem.is_empty()
            && self.net_uid.is_empty()
            && self.net.is_empty()
            && self.ping.is_empty()
            && self.ubc.is_empty()
    }
}

/// The rows of one file, or none (and a warning naming it) when it cannot be read.
fn typed<R: FromBatch>(path: &Path, warn: &mut dyn FnMut(String)) -> Vec<R> {
    read_rows::<R>(path).unwrap_or_else(|err| {
        warn(format!("skipped an unreadable file: {err}"));
        Vec::new()
    })
}

/// A raw table's rows with `ts` in `[from, to)`, in time order.
fn raw<R: FromBatch + csm_store::Row>(
    tree: &DataTree,
    from: i64,
    to: i64,
    warn: &mut dyn FnMut(String),
) -> Vec<R> {
    let mut rows: Vec<R> = tree
        .hour_files(R::TABLE, from, to)
        .into_values()
        .flatten()
        .flat_map(|path| typed::<R>(&path, warn))
        .filter(|r| (from..to).contains(&r.ts_us()))
        .collect();
    rows.sort_by_key(|r| r.ts_us());
    rows
}
