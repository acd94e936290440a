//! The rows of a report's range, read through csm-store: only the host's files of the
//! hours overlapping the range (roll-up hours for ranges over 6 h, raw hours where the
//! roll-up is not written yet), only rows whose `ts` falls in `[from, to)`, only the tables
//! and columns the requested sections use, each table's files on every core. Raw rows and
//! roll-up rows are brought to one shape per table here, so the sections see one kind.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use csm_store::tree::{DataTree, ROLLUP_ABOVE_US};
use csm_store::{
    for_each_rows_held, read_rows_held, read_times, CpuMinuteRow, CpuRow, EventRow, FromBatch,
    Held, MemMinuteRow, MemRow, NetMinuteRow, NetRow, NetUidMinuteRow, NetUidRow, PingRow, Table,
    UbcRow,
};

use super::alerts::AlertsFold;
use super::gaps::GapsFold;
use super::interfaces::InterfacesFold;
use super::ping::PingFold;
use super::request::{Request, Section};
use super::spans::{CpuSpan, EventMark, MemSpan, NetSpan, UidBytes};
use super::users::{Coverage, UsersFold};

/// Everything a report reads: the counter tables folded, the other rows kept.
pub struct Rows<'a> {
    /// `cpu`, `mem` and `net_uid` (and the time `net` covers) folded for the users.
    pub users: UsersFold,
    /// `net` folded for the interfaces, when they are asked for.
    pub interfaces: Option<InterfacesFold<'a>>,
    pub ping: PingFold,
    pub ubc: Vec<UbcRow>,
    /// `events` folded for the gaps and the alerts.
    pub events: EventsFold,
    /// Some roll-up hour of `cpu` lies in the range (read or not).
    pub rollups: bool,
    /// A table no requested section reads holds a row of the range (see [`Rows::is_empty`]).
    pub unread_data: bool,
    /// Rows of `net` folded (the users' fold counts its own).
    net_rows: u64,
}

/// How far before the range events are read: the stop that opens a gap ending inside
/// the range is found if it lies within this.
const EVENTS_BEFORE_US: i64 = 7 * 86_400_000_000;

/// What the requested sections read. A month is thousands of hour files and each column
/// of each file costs a decompressor, so a section's table is read only when the section
/// is asked for, and only the columns it uses.
struct Needs {
    users: bool,
    interfaces: bool,
    ping: bool,
    beancounters: bool,
    gaps: bool,
}

impl Needs {
    fn of(request: &Request) -> Needs {
        let wants = |s: Section| request.sections.contains(&s);
        Needs {
            users: wants(Section::Users),
            interfaces: wants(Section::Interfaces),
            ping: wants(Section::Ping),
            beancounters: wants(Section::Beancounters),
            // The alerts are `alert` rows of the same events table.
            gaps: wants(Section::Gaps) || wants(Section::Alerts),
        }
    }

    /// `net` is read for the interfaces, or for the users' time covered by data alone.
    fn net_columns(&self) -> Option<(&'static [&'static str], &'static [&'static str])> {
        if self.interfaces {
            Some((&columns::NET, &columns::NET_MINUTE))
        } else if self.users {
            Some((&columns::COVERAGE, &columns::COVERAGE))
        } else {
            None
        }
    }
}

/// The columns each section uses, by the tables' own names for them.
mod columns {
    use csm_store::{
        CpuMinuteRow, CpuRow, MemMinuteRow, MemRow, NetMinuteRow, NetRow, NetUidRow, PingRow,
    };

    const C: csm_store::CpuColumns = CpuRow::COLUMN;
    const CM: csm_store::CpuMinuteColumns = CpuMinuteRow::COLUMN;
    const M: csm_store::MemColumns = MemRow::COLUMN;
    const MM: csm_store::MemMinuteColumns = MemMinuteRow::COLUMN;
    const N: csm_store::NetColumns = NetRow::COLUMN;
    const NM: csm_store::NetMinuteColumns = NetMinuteRow::COLUMN;
    const U: csm_store::NetUidColumns = NetUidRow::COLUMN;
    const P: csm_store::PingColumns = PingRow::COLUMN;

    pub const CPU: [&str; 6] = [C.ts_us, C.dur_ms, C.uid, C.user, C.cpu_ns, C.cpu_pct];
    pub const CPU_MINUTE: [&str; 6] = [
        CM.ts_us,
        CM.dur_ms,
        CM.uid,
        CM.user,
        CM.cpu_ns,
        CM.cpu_pct_max,
    ];
    pub const MEM: [&str; 5] = [M.ts_us, M.uid, M.user, M.rss_bytes, M.pss_bytes];
    pub const MEM_MINUTE: [&str; 7] = [
        MM.ts_us,
        MM.uid,
        MM.user,
        MM.samples,
        MM.rss_bytes_mean,
        MM.rss_bytes_max,
        MM.pss_bytes_mean,
    ];
    /// `net_uid` and `net_uid_1m`: every column.
    pub const NET_UID: [&str; 6] = [U.ts_us, U.dur_ms, U.uid, U.user, U.rx_bytes, U.tx_bytes];
    pub const NET: [&str; 12] = [
        N.ts_us,
        N.dur_ms,
        N.iface,
        N.netns,
        N.rx_bytes,
        N.tx_bytes,
        N.rx_packets,
        N.tx_packets,
        N.rx_errors,
        N.tx_errors,
        N.rx_dropped,
        N.tx_dropped,
    ];
    pub const NET_MINUTE: [&str; 14] = [
        NM.ts_us,
        NM.dur_ms,
        NM.iface,
        NM.netns,
        NM.rx_bytes,
        NM.tx_bytes,
        NM.rx_packets,
        NM.tx_packets,
        NM.rx_bytes_per_s_max,
        NM.tx_bytes_per_s_max,
        NM.rx_errors,
        NM.tx_errors,
        NM.rx_dropped,
        NM.tx_dropped,
    ];
    /// What the users' time covered by data needs of `net` when interfaces are not asked
    /// for (raw and roll-up rows alike).
    pub const COVERAGE: [&str; 2] = [N.ts_us, N.dur_ms];
    /// Everything the ping section uses: not `addr` nor the per-measurement summaries.
    pub const PING: [&str; 6] = [P.ts_us, P.target, P.sent, P.received, P.rtts_ms, P.error];
}

impl<'a> Rows<'a> {
    /// Reads the range: only the tables the requested sections need, only the columns
    /// they use, each table's files on every core, the counter tables folded as they
    /// are read. A file that cannot be read is passed to `warn` (naming it) and skipped.
    /// What is held (rows kept, and the folds' lines) is charged to the command's budget
    /// ([`Held::per_command`]): a range that would take more is refused with the one
    /// line naming the file that would have gone past it.
    pub fn read(
        tree: &DataTree,
        request: &'a Request,
        warn: &mut dyn FnMut(String),
    ) -> Result<Rows<'a>, String> {
        let (from, to) = (request.from_us, request.to_us);
        let long = to - from > ROLLUP_ABOVE_US;
        let held = &Held::per_command();
        let needs = Needs::of(request);
        let mut rows = Rows {
            users: UsersFold::default(),
            interfaces: None,
            ping: PingFold::default(),
            ubc: Vec::new(),
            events: EventsFold::new(from, to),
            rollups: long && !tree.hour_files(Table::CpuMinute, from, to).is_empty(),
            unread_data: false,
            net_rows: 0,
        };
        let mut warnings = Vec::new();
        let range = (from, to, long, held);
        if needs.users {
            fold_cpu(tree, range, &mut rows.users).keep(&mut warnings)?;
            fold_net_uid(tree, range, &mut rows.users).keep(&mut warnings)?;
            fold_mem(tree, range, &mut rows.users).keep(&mut warnings)?;
        }
        if let Some(columns) = needs.net_columns() {
            let interfaces = needs.interfaces.then_some((request.by, &request.tz));
            let mut net = NetFold::new(interfaces);
            fold_net(tree, range, columns, &mut net).keep(&mut warnings)?;
            rows.users.coverage.merge(net.coverage);
            rows.interfaces = net.interfaces;
            rows.net_rows = net.rows;
        }
        if needs.ping {
            fold_raw(tree, range, &columns::PING, &mut rows.ping).keep(&mut warnings)?;
        }
        if needs.beancounters {
            rows.ubc = raw::<UbcRow>(tree, range, None).keep(&mut warnings)?;
        }
        if needs.gaps {
            let since = (from - EVENTS_BEFORE_US, to, long, held);
            fold_events(tree, since, &mut rows.events).keep(&mut warnings)?;
        }
        for warning in warnings {
            warn(warning);
        }
        if rows.read_nothing() {
            rows.unread_data = unread_data(tree, &needs, from, to, long);
        }
        Ok(rows)
    }

    /// No collected row at all (events alone are the daemon's, not data): neither among
    /// the rows read nor in the tables of `cpu`, `net`, `ping` and `ubc` that no requested
    /// section reads, so that `csm report gaps` over a range without data says so too.
    pub fn is_empty(&self) -> bool {
        self.read_nothing() && !self.unread_data
    }

    fn read_nothing(&self) -> bool {
        self.users.rows == 0 && self.net_rows == 0 && self.ping.is_empty() && self.ubc.is_empty()
    }
}

/// Whether `cpu`, `net`, `ping` or `ubc`, where no requested section read them, hold a
/// row of `[from, to)` (roll-ups in place of raw hours for long ranges, as the sections
/// read them). Only the `ts` column is read, file after file until a row is found; a file
/// that cannot be read counts as no rows (it belongs to no section printed).
fn unread_data(tree: &DataTree, needs: &Needs, from: i64, to: i64, long: bool) -> bool {
    let mut files: Vec<PathBuf> = Vec::new();
    let counters = [
        (Table::Cpu, Table::CpuMinute, needs.users),
        (Table::Net, Table::NetMinute, needs.net_columns().is_some()),
    ];
    for (raw, minute, read) in counters {
        if !read {
            let chosen = tree.files_preferring(raw, minute, from, to, long);
            files.extend(chosen.into_iter().map(|(_, path)| path));
        }
    }
    for (table, read) in [(Table::Ping, needs.ping), (Table::Ubc, needs.beancounters)] {
        if !read {
            files.extend(tree.hour_files(table, from, to).into_values().flatten());
        }
    }
    files.iter().any(|path| {
        read_times(path).is_ok_and(|times| times.iter().any(|ts| (from..to).contains(ts)))
    })
}

/// The range read: `[from, to)`, whether roll-ups are preferred, and the command's budget.
type Range<'a> = (i64, i64, bool, &'a Held);

/// One table's rows, the warnings of the files that could not be read, and the first
/// file refused for the command's budget.
struct Read<T> {
    rows: Vec<T>,
    warnings: Vec<String>,
    refused: Option<String>,
}

impl<T> Read<T> {
    /// The rows, the warnings moved to `warnings`; the refusal if a file was refused.
    fn keep(self, warnings: &mut Vec<String>) -> Result<Vec<T>, String> {
        warnings.extend(self.warnings);
        match self.refused {
            Some(refused) => Err(refused),
            None => Ok(self.rows),
        }
    }

    /// Files' rows or warnings, in the files' order.
    fn gather(per_file: Vec<std::io::Result<Vec<T>>>) -> Read<T> {
        // Sized once: a month is millions of rows, and growing by doubling copies them.
        let total = per_file.iter().flatten().map(Vec::len).sum();
        let mut read = Read {
            rows: Vec::with_capacity(total),
            warnings: Vec::new(),
            refused: None,
        };
        for file in per_file {
            match file {
                Ok(rows) => read.rows.extend(rows),
                Err(err) if err.kind() == std::io::ErrorKind::OutOfMemory => {
                    read.refused.get_or_insert(err.to_string());
                }
                Err(err) => read
                    .warnings
                    .push(format!("skipped an unreadable file: {err}")),
            }
        }
        read
    }
}

/// The rows of one file (only `columns`, all when `None`), charged to `held`.
fn typed<R: FromBatch>(
    path: &Path,
    columns: Option<&[&str]>,
    held: &Held,
) -> std::io::Result<Vec<R>> {
    read_rows_held::<R>(path, columns, held)
}

/// `read` applied to every item on every core (opening an hour file is mostly fixed
/// cost, and a month has thousands), at most `max_threads` threads; the results in the
/// items' order, so that the rows come out as a reading in order gives them.
fn in_parallel<I: Sync, T: Send>(
    items: &[I],
    max_threads: usize,
    read: impl Fn(&I) -> T + Sync,
) -> Vec<T> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(max_threads).min(items.len());
    if threads <= 1 {
        return items.iter().map(read).collect();
    }
    let next = AtomicUsize::new(0);
    let worker = || {
        let mut done = Vec::new();
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(index) else {
                return done;
            };
            done.push((index, read(item)));
        }
    };
    let mut done: Vec<(usize, T)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(worker)).collect();
        handles.into_iter().flat_map(join).collect()
    });
    done.sort_unstable_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, result)| result).collect()
}

/// Most threads reading files at once: beyond a few, they only wait for the disk and hold
/// more rows in memory at once.
const MAX_READERS: usize = 8;

/// Most threads folding files at once: a file being decoded holds about 50 MB whatever
/// the fold keeps (measured: a million-row `net` part, `/usr/bin/time`: 94 MB peak with
/// one reader, 144 MB with two), so a report stays under 256 MB on any number of cores.
const FOLD_READERS: usize = 3;

/// A raw table's rows with `ts` in `[from, to)` (only `columns`, all when `None`), in
/// time order.
fn raw<R: FromBatch + csm_store::Row>(
    tree: &DataTree,
    (from, to, _, held): Range<'_>,
    columns: Option<&[&str]>,
) -> Read<R> {
    let files: Vec<PathBuf> = tree
        .hour_files(R::TABLE, from, to)
        .into_values()
        .flatten()
        .collect();
    let per_file = in_parallel(&files, MAX_READERS, |path| {
        let rows = typed::<R>(path, columns, held)?;
        Ok(rows
            .into_iter()
            .filter(|r| (from..to).contains(&r.ts_us()))
            .collect())
    });
    let mut read = Read::gather(per_file);
    read.rows.sort_by_key(|r| r.ts_us());
    read
}

/// A reading thread's result; a panic in it is passed on.
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// How a counter table is read: the columns of its raw and roll-up files, and how each
/// kind of row becomes the one shape the sections see.
struct Pair<'a, R, M, T> {
    raw_columns: &'a [&'a str],
    minute_columns: &'a [&'a str],
    raw: fn(R) -> T,
    minute: fn(M) -> T,
}

/// A section's aggregate of rows of shape `T`, folded as they are read. `add` and
/// `merge` return the bytes the aggregate grew by, charged to the command's budget.
trait Fold<T>: Send {
    fn add(&mut self, row: T) -> u64;
    /// Adds an aggregate of rows read after this one's.
    fn merge(&mut self, later: Self) -> u64;
}

/// `Fold<$row>` for `$fold` by its own methods: `$add` for a row, `merge`.
macro_rules! fold_by {
    ($fold:ty, $row:ty, $add:ident) => {
        impl Fold<$row> for $fold {
            fn add(&mut self, row: $row) -> u64 {
                <$fold>::$add(self, row)
            }
            fn merge(&mut self, later: Self) -> u64 {
                <$fold>::merge(self, later)
            }
        }
    };
}

fold_by!(UsersFold, CpuSpan, cpu);
fold_by!(UsersFold, UidBytes, net_uid);
fold_by!(UsersFold, MemSpan, mem);
fold_by!(PingFold, PingRow, add);

/// `net` folded: the interfaces (when asked for) and the time covered (for the users).
struct NetFold<'a> {
    interfaces: Option<InterfacesFold<'a>>,
    coverage: Coverage,
    rows: u64,
}

impl<'a> NetFold<'a> {
    /// With `interfaces` (`--by` and the zone), the interfaces' lines too.
    fn new(
        interfaces: Option<(Option<super::request::Period>, &'a csm_store::zone::Zone)>,
    ) -> Self {
        NetFold {
            interfaces: interfaces.map(|(by, zone)| InterfacesFold::new(by, zone)),
            coverage: Coverage::default(),
            rows: 0,
        }
    }
}

impl Fold<NetSpan> for NetFold<'_> {
    fn add(&mut self, row: NetSpan) -> u64 {
        self.rows += 1;
        let covered = self.coverage.add(row.ts_us, row.dur_ms);
        covered + self.interfaces.as_mut().map_or(0, |lines| lines.add(row))
    }
    fn merge(&mut self, later: Self) -> u64 {
        self.rows += later.rows;
        let covered = self.coverage.merge(later.coverage);
        let lines = match (&mut self.interfaces, later.interfaces) {
            (Some(mine), Some(later)) => mine.merge(later),
            _ => 0,
        };
        covered + lines
    }
}

/// What folding a table's files gave besides the aggregate: the warnings of the files
/// that could not be read, and the first file refused for the command's budget.
#[derive(Default)]
struct Folded {
    warnings: Vec<String>,
    refused: Option<String>,
}

impl Folded {
    /// The warnings moved to `warnings`; the refusal if a file was refused.
    fn keep(self, warnings: &mut Vec<String>) -> Result<(), String> {
        warnings.extend(self.warnings);
        self.refused.map_or(Ok(()), Err)
    }
}

/// Files folded at once, each into an aggregate of its own, merged in the files' order
/// (so that "the latest name seen" is the one a reading in order sees).
const FILES_AT_ONCE: usize = 16;

/// Folds a counter table's files of the range (roll-up hours for long ranges) into
/// `into`, each kind of row brought to `T`, rows with `ts` in `[from, to)`.
fn fold_pair<T, R, M, F>(
    tree: &DataTree,
    (from, to, long, held): Range<'_>,
    pair: Pair<'_, R, M, T>,
    into: &mut F,
    empty: impl Fn() -> F + Sync,
) -> Folded
where
    R: FromBatch + csm_store::Row,
    M: FromBatch + csm_store::Row,
    F: Fold<T>,
{
    let files = tree.files_preferring(R::TABLE, M::TABLE, from, to, long);
    fold_files(&files, held, into, |(table, path)| {
        let mut fold = empty();
        let charged = if *table == R::TABLE {
            fold_file(
                path,
                pair.raw_columns,
                (from, to),
                pair.raw,
                &mut fold,
                held,
            )
        } else {
            fold_file(
                path,
                pair.minute_columns,
                (from, to),
                pair.minute,
                &mut fold,
                held,
            )
        };
        charged.map(|charged| (fold, charged))
    })
}

/// Folds a raw table's files of the range (only `columns`) into `into`.
fn fold_raw<R, F>(
    tree: &DataTree,
    (from, to, _, held): Range<'_>,
    columns: &[&str],
    into: &mut F,
) -> Folded
where
    R: FromBatch + csm_store::Row,
    F: Fold<R> + Default,
{
    let files: Vec<(Table, PathBuf)> = tree
        .hour_files(R::TABLE, from, to)
        .into_values()
        .flatten()
        .map(|path| (R::TABLE, path))
        .collect();
    fold_files(&files, held, into, |(_, path)| {
        let mut fold = F::default();
        let charged = fold_file(path, columns, (from, to), |r: R| r, &mut fold, held);
        charged.map(|charged| (fold, charged))
    })
}

/// Folds `files`, [`FILES_AT_ONCE`] at a time on [`FOLD_READERS`] threads, each into an
/// aggregate of its own (by `fold_one`, which returns it and the bytes it charged),
/// merged into `into` in the files' order; stops at the first file refused for the
/// command's budget.
fn fold_files<F, T>(
    files: &[(Table, PathBuf)],
    held: &Held,
    into: &mut F,
    fold_one: impl Fn(&(Table, PathBuf)) -> std::io::Result<(F, u64)> + Sync,
) -> Folded
where
    F: Fold<T>,
{
    let mut folded = Folded::default();
    for chunk in files.chunks(FILES_AT_ONCE) {
        let per_file = in_parallel(chunk, FOLD_READERS, &fold_one);
        for ((_, path), file) in chunk.iter().zip(per_file) {
            match file.and_then(|(fold, charged)| {
                held.release(charged);
                held.charge(path, into.merge(fold))
            }) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::OutOfMemory => {
                    folded.refused.get_or_insert(err.to_string());
                }
                Err(err) => folded
                    .warnings
                    .push(format!("skipped an unreadable file: {err}")),
            }
        }
        if folded.refused.is_some() {
            break;
        }
    }
    folded
}

/// Folds the rows of one file with `ts` in `[from, to)` into `fold`, what it grows by
/// charged to `held` batch after batch; returns the bytes charged (given back if the
/// file is refused or unreadable: its aggregate is then dropped).
fn fold_file<R: FromBatch + csm_store::Row, T, F: Fold<T>>(
    path: &Path,
    columns: &[&str],
    (from, to): (i64, i64),
    project: fn(R) -> T,
    fold: &mut F,
    held: &Held,
) -> std::io::Result<u64> {
    let mut charged = 0;
    let result = for_each_rows_held::<R>(path, Some(columns), held, |rows| {
        let grown: u64 = rows
            .into_iter()
            .filter(|r| (from..to).contains(&r.ts_us()))
            .map(|r| fold.add(project(r)))
            .sum();
        held.charge(path, grown)?;
        charged += grown;
        Ok(())
    });
    if result.is_err() {
        held.release(charged);
    }
    result.map(|()| charged)
}

/// A closure from one kind of row to a span: the fields listed before `;` copied from the
/// row's columns of the same name, the rest given. Raw rows and their roll-ups share most
/// column names, so each projection lists only what differs.
macro_rules! project {
    (|$r:ident: $row:ty| $span:ident { $($same:ident),* ; $($field:ident: $value:expr),* $(,)? }) => {
        |$r: $row| $span {
            $($field: $value,)*
            $($same: $r.$same,)*
        }
    };
}

fn fold_cpu(tree: &DataTree, range: Range<'_>, into: &mut UsersFold) -> Folded {
    let pair = Pair {
        raw_columns: &columns::CPU,
        minute_columns: &columns::CPU_MINUTE,
        raw: project!(|r: CpuRow| CpuSpan {
            ts_us, dur_ms, uid, user, cpu_ns;
            pct_peak: r.cpu_pct,
        }),
        minute: project!(|r: CpuMinuteRow| CpuSpan {
            ts_us, dur_ms, uid, user, cpu_ns;
            pct_peak: r.cpu_pct_max,
        }),
    };
    fold_pair(tree, range, pair, into, UsersFold::default)
}

fn fold_mem(tree: &DataTree, range: Range<'_>, into: &mut UsersFold) -> Folded {
    let pair = Pair {
        raw_columns: &columns::MEM,
        minute_columns: &columns::MEM_MINUTE,
        raw: project!(|r: MemRow| MemSpan {
            uid, user;
            samples: 1,
            rss_mean: r.rss_bytes,
            rss_peak: r.rss_bytes,
            pss_mean: r.pss_bytes,
            pss_peak: r.pss_bytes,
        }),
        minute: project!(|r: MemMinuteRow| MemSpan {
            uid, user, samples;
            rss_mean: r.rss_bytes_mean,
            rss_peak: r.rss_bytes_max,
            pss_mean: r.pss_bytes_mean,
            pss_peak: r.pss_bytes_mean,
        }),
    };
    fold_pair(tree, range, pair, into, UsersFold::default)
}

fn fold_net_uid(tree: &DataTree, range: Range<'_>, into: &mut UsersFold) -> Folded {
    let pair = Pair {
        raw_columns: &columns::NET_UID,
        minute_columns: &columns::NET_UID,
        raw: project!(|r: NetUidRow| UidBytes { ts_us, dur_ms, uid, user, rx_bytes, tx_bytes; }),
        minute: project!(|r: NetUidMinuteRow| UidBytes {
            ts_us, dur_ms, uid, user, rx_bytes, tx_bytes;
        }),
    };
    fold_pair(tree, range, pair, into, UsersFold::default)
}

/// `net`, only the `(raw, roll-up)` columns given: all the interfaces use, or only what
/// the users' coverage needs.
fn fold_net(
    tree: &DataTree,
    range: Range<'_>,
    (raw_columns, minute_columns): (&[&str], &[&str]),
    into: &mut NetFold,
) -> Folded {
    fn per_s(bytes: i64, dur_ms: i64) -> f64 {
        bytes as f64 * 1000.0 / dur_ms.max(1) as f64
    }
    let pair = Pair {
        raw_columns,
        minute_columns,
        raw: project!(|r: NetRow| NetSpan {
            ts_us, dur_ms, netns, iface, rx_bytes, tx_bytes, rx_packets, tx_packets,
            rx_errors, tx_errors, rx_dropped, tx_dropped;
            rx_peak: per_s(r.rx_bytes, r.dur_ms),
            tx_peak: per_s(r.tx_bytes, r.dur_ms),
        }),
        minute: project!(|r: NetMinuteRow| NetSpan {
            ts_us, dur_ms, netns, iface, rx_bytes, tx_bytes, rx_packets, tx_packets,
            rx_errors, tx_errors, rx_dropped, tx_dropped;
            rx_peak: r.rx_bytes_per_s_max,
            tx_peak: r.tx_bytes_per_s_max,
        }),
    };
    let interfaces = into.interfaces.as_ref().map(InterfacesFold::params);
    fold_pair(tree, range, pair, into, || NetFold::new(interfaces))
}

/// `events` folded: the gaps and the alerts of the range.
pub struct EventsFold {
    pub gaps: GapsFold,
    pub alerts: AlertsFold,
}

impl EventsFold {
    fn new(from_us: i64, to_us: i64) -> EventsFold {
        EventsFold {
            gaps: GapsFold::new(from_us, to_us),
            alerts: AlertsFold::new(from_us, to_us),
        }
    }

    /// Folds one event (in time order); returns the bytes the folds grew by.
    fn add(&mut self, ts_us: i64, mark: &EventMark) -> u64 {
        self.gaps.add(ts_us, mark) + self.alerts.add(ts_us, mark)
    }
}

/// One hour's events as the sections see them, in time order, and what reading them
/// charged to the command's budget.
#[derive(Default)]
struct HourMarks {
    marks: Vec<(i64, EventMark)>,
    /// The time of the last row read, and whether a row came before the one read before.
    last_ts: Option<i64>,
    out_of_order: bool,
    charged: u64,
    warnings: Vec<String>,
    refused: Option<String>,
}

/// What an hour's mark takes while it waits to be folded (a growing vector holds up to
/// twice its marks).
const MARK_BYTES: u64 = 2 * std::mem::size_of::<(i64, EventMark)>() as u64;

/// Folds `events` of `[from, to)` into `into`, in time order, an hour at a time: the
/// sections need the events sorted, and an hour's files hold only its rows, so sorting
/// each hour's rows (its parts together) sorts them all. What waits to be folded is
/// [`FILES_AT_ONCE`] hours' marks, charged to the command's budget and given back once
/// folded: a month of a flood's events (millions of rows) holds what the sections print.
fn fold_events(tree: &DataTree, (from, to, _, held): Range<'_>, into: &mut EventsFold) -> Folded {
    let hours: Vec<Vec<PathBuf>> = tree
        .hour_files(Table::Events, from, to)
        .into_values()
        .collect();
    let mut folded = Folded::default();
    for chunk in hours.chunks(FILES_AT_ONCE) {
        let per_hour = in_parallel(chunk, FOLD_READERS, |files| {
            hour_marks(files, (from, to), held)
        });
        for (files, hour) in chunk.iter().zip(per_hour) {
            folded.warnings.extend(hour.warnings);
            if let Some(refused) = hour.refused {
                folded.refused.get_or_insert(refused);
                break;
            }
            let grown: u64 = hour.marks.iter().map(|(ts, m)| into.add(*ts, m)).sum();
            held.release(hour.charged);
            let last = files.last().expect("an hour has a file");
            if let Err(err) = held.charge(last, grown) {
                folded.refused.get_or_insert(err.to_string());
                break;
            }
        }
        if folded.refused.is_some() {
            break;
        }
    }
    folded
}

/// The events of one hour's `files` with `ts` in `[from, to)`, sorted by time (rows of
/// the same time in the files' order, as a reading in order gives them). csm writes them
/// in time order, and then a run of events that neither section reads is kept as its
/// last one (all the gaps use of it is its time): a flood's `net_folded` rows cost a
/// mark per run, not per row. Rows out of order are kept all and sorted.
fn hour_marks(files: &[PathBuf], range: (i64, i64), held: &Held) -> HourMarks {
    let mut hour = read_hour_marks(files, range, held, true);
    if hour.out_of_order && hour.refused.is_none() {
        held.release(hour.charged);
        hour = read_hour_marks(files, range, held, false);
        hour.marks.sort_by_key(|(ts, _)| *ts);
    }
    hour
}

/// [`hour_marks`] as read: runs of other events kept as their last when `collapse`.
fn read_hour_marks(
    files: &[PathBuf],
    (from, to): (i64, i64),
    held: &Held,
    collapse: bool,
) -> HourMarks {
    let mut hour = HourMarks::default();
    for path in files {
        let before = hour.marks.len();
        let mut charged = 0;
        let result = for_each_rows_held::<EventRow>(path, None, held, |rows| {
            let start = hour.marks.len();
            for row in rows.into_iter().filter(|r| (from..to).contains(&r.ts_us)) {
                hour.push(row.ts_us, EventMark::of(row.event()), collapse);
            }
            let added = &hour.marks[start.min(hour.marks.len())..];
            let bytes = added.iter().map(|(_, m)| MARK_BYTES + m.held_bytes()).sum();
            held.charge(path, bytes)?;
            charged += bytes;
            Ok(())
        });
        match result {
            Ok(()) => hour.charged += charged,
            Err(err) => {
                held.release(charged);
                hour.marks.truncate(before);
                hour.last_ts = hour.marks.last().map(|(ts, _)| *ts);
                if err.kind() == std::io::ErrorKind::OutOfMemory {
                    hour.refused = Some(err.to_string());
                    break;
                }
                hour.warnings
                    .push(format!("skipped an unreadable file: {err}"));
            }
        }
    }
    hour
}

impl HourMarks {
    /// Adds the next row's mark, a run of others kept as its last when `collapse` and
    /// every row so far came in time order.
    fn push(&mut self, ts_us: i64, mark: EventMark, collapse: bool) {
        if self.last_ts.is_some_and(|last| ts_us < last) {
            self.out_of_order = true;
        }
        self.last_ts = Some(ts_us);
        if collapse && !self.out_of_order && mark == EventMark::Other {
            if let Some((ts, EventMark::Other)) = self.marks.last_mut() {
                *ts = ts_us;
                return;
            }
        }
        self.marks.push((ts_us, mark));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_other_events_in_order_wait_as_their_last_and_rows_out_of_order_are_told() {
        let mut hour = HourMarks::default();
        for (ts, mark) in [
            (1, EventMark::Other),
            (2, EventMark::Other),
            (3, EventMark::Start),
            (4, EventMark::Other),
            (5, EventMark::Other),
            (5, EventMark::Other),
        ] {
            hour.push(ts, mark, true);
        }
        assert_eq!(
            hour.marks,
            [
                (2, EventMark::Other),
                (3, EventMark::Start),
                (5, EventMark::Other)
            ]
        );
        assert!(!hour.out_of_order);
        // A row before the one read before: from then on every row is kept, and the
        // hour is read again without collapsing.
        hour.push(4, EventMark::Other, true);
        hour.push(6, EventMark::Other, true);
        assert!(hour.out_of_order);
        assert_eq!(hour.marks.len(), 5);
    }
}
