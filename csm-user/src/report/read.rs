//! The rows of a report's range, read through csm-store: only the host's files of the
//! hours overlapping the range (roll-up hours for ranges over 6 h, raw hours where the
//! roll-up is not written yet), only rows whose `ts` falls in `[from, to)`. Raw rows and
//! roll-up rows are brought to one shape per table here, so the sections see one kind.

use std::path::Path;

use csm_store::tree::{DataTree, ROLLUP_ABOVE_US};
use csm_store::{
    read_rows, CpuMinuteRow, CpuRow, EventRow, FromBatch, MemMinuteRow, MemRow, NetMinuteRow,
    NetRow, NetUidMinuteRow, NetUidRow, PingRow, UbcRow,
};

use super::{Request, Section};

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
    /// Reads the range, each table in a thread of its own (a month is thousands of hour
    /// files), only the tables the requested sections need; a file that cannot be read is
    /// passed to `warn` (naming it) and skipped.
    pub fn read(tree: &DataTree, request: &Request, warn: &mut dyn FnMut(String)) -> Rows {
        let (from, to) = (request.from_us, request.to_us);
        let long = to - from > ROLLUP_ABOVE_US;
        let wants = |s: Section| request.sections.contains(&s);
        let users = wants(Section::Users);
        let mut rows = Rows::default();
        let mut warnings: Vec<Vec<String>> = Vec::new();
        std::thread::scope(|scope| {
            let cpu = scope.spawn(|| read_cpu(tree, from, to, long));
            let mem = scope.spawn(|| users.then(|| read_mem(tree, from, to, long)));
            let net_uid = scope.spawn(|| users.then(|| read_net_uid(tree, from, to, long)));
            let net = scope.spawn(|| read_net(tree, from, to, long));
            let ping = scope.spawn(|| raw::<PingRow>(tree, from, to));
            let ubc = scope.spawn(|| raw::<UbcRow>(tree, from, to));
            let events = scope.spawn(|| raw::<EventRow>(tree, from - EVENTS_BEFORE_US, to));
            let (read, w, rollups) = join(cpu);
            (rows.cpu, rows.rollups) = (read, rollups);
            warnings.push(w);
            if let Some((read, w, _)) = join(mem) {
                rows.mem = read;
                warnings.push(w);
            }
            if let Some((read, w, _)) = join(net_uid) {
                rows.net_uid = read;
                warnings.push(w);
            }
            let (read, w, _) = join(net);
            rows.net = read;
            warnings.push(w);
            let (read, w) = join(ping);
            rows.ping = read;
            warnings.push(w);
            let (read, w) = join(ubc);
            rows.ubc = read;
            warnings.push(w);
            let (read, w) = join(events);
            rows.events = read;
            warnings.push(w);
        });
        for warning in warnings.into_iter().flatten() {
            warn(warning);
        }
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

/// A raw table's rows with `ts` in `[from, to)`, in time order, and the warnings.
fn raw<R: FromBatch + csm_store::Row>(
    tree: &DataTree,
    from: i64,
    to: i64,
) -> (Vec<R>, Vec<String>) {
    let mut warnings = Vec::new();
    let mut warn = |w: String| warnings.push(w);
    let mut rows: Vec<R> = tree
        .hour_files(R::TABLE, from, to)
        .into_values()
        .flatten()
        .flat_map(|path| typed::<R>(&path, &mut warn))
        .filter(|r| (from..to).contains(&r.ts_us()))
        .collect();
    rows.sort_by_key(|r| r.ts_us());
    (rows, warnings)
}

/// A reading thread's result; a panic in it is passed on.
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Rows of one table (raw or roll-up, brought to one shape), the warnings, and whether a
/// roll-up hour was read.
type Read<T> = (Vec<T>, Vec<String>, bool);

/// Reads a counter table's files of the range (roll-up hours for long ranges), each kind
/// of row turned into `T` by `raw` or `minute`, keeping rows with `ts` in `[from, to)`.
fn read_pair<T, R: FromBatch + csm_store::Row, M: FromBatch + csm_store::Row>(
    tree: &DataTree,
    from: i64,
    to: i64,
    long: bool,
    raw: impl Fn(R) -> T,
    minute: impl Fn(M) -> T,
) -> Read<T> {
    let mut rows = Vec::new();
    let mut warnings = Vec::new();
    let mut rollups = false;
    let mut warn = |w: String| warnings.push(w);
    for (table, path) in tree.files_preferring(R::TABLE, M::TABLE, from, to, long) {
        if table == R::TABLE {
            let read = typed::<R>(&path, &mut warn).into_iter();
            rows.extend(read.filter(|r| (from..to).contains(&r.ts_us())).map(&raw));
        } else {
            rollups = true;
            let read = typed::<M>(&path, &mut warn).into_iter();
            rows.extend(
                read.filter(|r| (from..to).contains(&r.ts_us()))
                    .map(&minute),
            );
        }
    }
    (rows, warnings, rollups)
}

fn read_cpu(tree: &DataTree, from: i64, to: i64, long: bool) -> Read<CpuSpan> {
    read_pair(
        tree,
        from,
        to,
        long,
        |r: CpuRow| CpuSpan {
            ts_us: r.ts_us,
            dur_ms: r.dur_ms,
            uid: r.uid,
            user: r.user,
            cpu_ns: r.cpu_ns,
            pct_peak: r.cpu_pct,
        },
        |r: CpuMinuteRow| CpuSpan {
            ts_us: r.ts_us,
            dur_ms: r.dur_ms,
            uid: r.uid,
            user: r.user,
            cpu_ns: r.cpu_ns,
            pct_peak: r.cpu_pct_max,
        },
    )
}

fn read_mem(tree: &DataTree, from: i64, to: i64, long: bool) -> Read<MemSpan> {
    read_pair(
        tree,
        from,
        to,
        long,
        |r: MemRow| MemSpan {
            uid: r.uid,
            user: r.user,
            samples: 1,
            rss_mean: r.rss_bytes,
            rss_peak: r.rss_bytes,
            pss_mean: r.pss_bytes,
            pss_peak: r.pss_bytes,
        },
        |r: MemMinuteRow| MemSpan {
            uid: r.uid,
            user: r.user,
            samples: r.samples,
            rss_mean: r.rss_bytes_mean,
            rss_peak: r.rss_bytes_max,
            pss_mean: r.pss_bytes_mean,
            pss_peak: r.pss_bytes_mean,
        },
    )
}

fn read_net_uid(tree: &DataTree, from: i64, to: i64, long: bool) -> Read<UidBytes> {
    read_pair(
        tree,
        from,
        to,
        long,
        |r: NetUidRow| UidBytes {
            ts_us: r.ts_us,
            dur_ms: r.dur_ms,
            uid: r.uid,
            user: r.user,
            rx_bytes: r.rx_bytes,
            tx_bytes: r.tx_bytes,
        },
        |r: NetUidMinuteRow| UidBytes {
            ts_us: r.ts_us,
            dur_ms: r.dur_ms,
            uid: r.uid,
            user: r.user,
            rx_bytes: r.rx_bytes,
            tx_bytes: r.tx_bytes,
        },
    )
}

fn read_net(tree: &DataTree, from: i64, to: i64, long: bool) -> Read<NetSpan> {
    read_pair(
        tree,
        from,
        to,
        long,
        |r: NetRow| {
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
        },
        |r: NetMinuteRow| NetSpan {
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
        },
    )
}
