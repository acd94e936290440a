//! Table rows turned into what the charts draw: binned per pixel column by key (user,
//! interface), plus the few exact totals the charts print.

use csm_store::names::safe_text;
use std::collections::BTreeMap;
use std::path::PathBuf;

use arrow::array::Array;

use super::bins::{gauge_spans, Binned, Grid};
use super::read::{read_files, user_label, Columns, DataTree, Problems};
use csm_store::{
    CpuMinuteRow, CpuRow, Event, EventRow, MemMinuteRow, MemRow, NetMinuteRow, NetRow, NetUidRow,
    PingRow, Table, UbcRow,
};

const US_PER_MS: i64 = 1_000;
const MINUTE_US: i64 = 60_000_000;

pub use csm_store::tree::ROLLUP_ABOVE_US;

/// Files of a counter table in range, or a note saying why there are none.
pub(crate) fn table_files(
    tree: &DataTree,
    raw: Table,
    rollup: Option<Table>,
    grid: &Grid,
    problems: &mut Problems,
) -> Option<Vec<(Table, PathBuf)>> {
    let long = grid.to_us - grid.from_us > ROLLUP_ABOVE_US;
    let has_rollup = rollup.is_some_and(|t| tree.has_table(t));
    if !tree.has_table(raw) && !has_rollup {
        problems.notes.push(format!(
            "no {} table for host {} in {}: its charts are skipped",
            raw.name(),
            tree.host,
            tree.data_dir.display()
        ));
        return None;
    }
    let files = match rollup {
        Some(rollup) => tree.files_preferring(raw, rollup, grid.from_us, grid.to_us, long),
        None => tree
            .hour_files(raw, grid.from_us, grid.to_us)
            .into_values()
            .flatten()
            .map(|f| (raw, f))
            .collect(),
    };
    if files.is_empty() {
        problems.notes.push(format!(
            "no {} rows for host {} in the range: its charts are skipped",
            raw.name(),
            tree.host
        ));
        return None;
    }
    Some(files)
}

/// Per-interface traffic in bytes/s, and exact byte totals.
pub struct NetData {
    pub rx: Binned,
    pub tx: Binned,
    /// tx − rx per row, so the diff keeps its own extremes.
    pub diff: Binned,
    pub totals: BTreeMap<String, Totals>,
    /// Each key's interface and network namespace (keys are unique per pair).
    pub interfaces: BTreeMap<String, NetKey>,
}

/// An interface in its network namespace: what one set of interface charts is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetKey {
    pub iface: String,
    /// `None` in the host's own namespace (whose charts keep the plain names); else a
    /// readable label: the namespace's name under /run/netns, or its inode.
    pub namespace: Option<String>,
}

impl NetKey {
    /// The key the binned tables use: the interface name in the host namespace,
    /// `iface@label` elsewhere.
    pub fn key(&self) -> String {
        match &self.namespace {
            None => self.iface.clone(),
            Some(ns) => format!("{}@{ns}", self.iface),
        }
    }
}

/// The host's own network namespace: `init_net` has the fixed inode PROC_NET_INIT_INO
/// (0xF0000000) on every Linux since 3.8. Rows from /proc carry no namespace: the host's.
pub const HOST_NETNS_INODE: i64 = 0xF000_0000;

/// Folders where tools name network namespaces (ip netns, Docker).
pub const NETNS_NAME_DIRS: [&str; 2] = ["/run/netns", "/run/docker/netns"];

/// The readable label of a namespace inode: the name of the file under `dirs` that is that
/// namespace (a bind mount of it has its inode); else the process that owns it, as
/// `<comm>-<pid>` of its lowest pid under `proc` (a container's init); else `inode-<n>`.
/// `None` for the host's. Only the machine that collected the data can name them.
pub fn namespace_label(
    inode: Option<i64>,
    dirs: &[&std::path::Path],
    proc: &std::path::Path,
) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let inode = inode.filter(|&n| n != HOST_NETNS_INODE)?;
    let named = dirs.iter().find_map(|dir| {
        std::fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
            let same = std::fs::metadata(entry.path()).ok()?.ino() == inode as u64;
            same.then(|| entry.file_name().to_string_lossy().into_owned())
        })
    });
    let label = named
        .or_else(|| owning_process(inode, proc))
        .unwrap_or_else(|| format!("inode-{inode}"));
    Some(safe_text(&label).into_owned())
}

/// `<comm>-<pid>` of the lowest pid whose `ns/net` link reads `net:[<inode>]`.
fn owning_process(inode: i64, proc: &std::path::Path) -> Option<String> {
    let wanted = format!("net:[{inode}]");
    let mut pids: Vec<u32> = std::fs::read_dir(proc)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.into_iter().find_map(|pid| {
        let dir = proc.join(pid.to_string());
        let link = std::fs::read_link(dir.join("ns/net")).ok()?;
        if link.to_str()? != wanted {
            return None;
        }
        let comm = csm_store::beneath::read_text(&dir.join("comm"), 4096).unwrap_or_default();
        Some(
            format!("{}-{pid}", comm.trim())
                .trim_start_matches('-')
                .to_string(),
        )
    })
}

/// Bytes over the range, and the asymmetric part each way (summed per row).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    pub rx: f64,
    pub tx: f64,
    pub more_out: f64,
    pub more_in: f64,
}

/// Loopback carries every byte both ways: its charts would say nothing.
fn charted_interface(iface: &str) -> bool {
    iface != "lo"
}

pub fn load_net(tree: &DataTree, grid: Grid, problems: &mut Problems) -> Option<NetData> {
    let files = table_files(tree, Table::Net, Some(Table::NetMinute), &grid, problems)?;
    let mut data = NetData {
        rx: Binned::new(grid),
        tx: Binned::new(grid),
        diff: Binned::new(grid),
        totals: BTreeMap::new(),
        interfaces: BTreeMap::new(),
    };
    let mut labels = NamespaceLabels::default();
    let columns = |table: Table| -> &'static [&'static str] {
        match table {
            Table::NetMinute => &[
                NetRow::COLUMN.ts_us,
                NetRow::COLUMN.dur_ms,
                NetRow::COLUMN.iface,
                NetRow::COLUMN.netns,
                NetRow::COLUMN.rx_bytes,
                NetRow::COLUMN.tx_bytes,
                NetMinuteRow::COLUMN.rx_bytes_per_s_max,
                NetMinuteRow::COLUMN.tx_bytes_per_s_max,
            ],
            _ => &[
                NetRow::COLUMN.ts_us,
                NetRow::COLUMN.dur_ms,
                NetRow::COLUMN.iface,
                NetRow::COLUMN.netns,
                NetRow::COLUMN.rx_bytes,
                NetRow::COLUMN.tx_bytes,
            ],
        }
    };
    read_files(
        &files,
        columns,
        |table, cols| add_net_batch(&mut data, &mut labels, table, cols),
        problems,
    );
    if data.rx.is_empty() {
        problems.notes.push(format!(
            "no traffic for host {} in the range on any interface but lo (lo is not charted: \
             it counts every byte both ways): the interface charts are skipped",
            tree.host
        ));
        return None;
    }
    Some(data)
}

/// Namespace labels looked up once per inode (each lookup lists the netns folders).
#[derive(Default)]
pub(crate) struct NamespaceLabels(BTreeMap<Option<i64>, Option<String>>);

impl NamespaceLabels {
    pub(crate) fn get(&mut self, inode: Option<i64>) -> Option<String> {
        self.0
            .entry(inode)
            .or_insert_with(|| {
                let dirs: Vec<&std::path::Path> =
                    NETNS_NAME_DIRS.iter().map(std::path::Path::new).collect();
                namespace_label(inode, &dirs, std::path::Path::new("/proc"))
            })
            .clone()
    }
}

fn add_net_batch(
    data: &mut NetData,
    labels: &mut NamespaceLabels,
    table: Table,
    cols: &Columns,
) -> Result<(), String> {
    let (ts, dur, iface, netns) = (
        cols.ts()?,
        cols.i64s(NetRow::COLUMN.dur_ms)?,
        cols.strs(NetRow::COLUMN.iface)?,
        cols.i64s(NetRow::COLUMN.netns)?,
    );
    let (rx, tx) = (
        cols.i64s(NetRow::COLUMN.rx_bytes)?,
        cols.i64s(NetRow::COLUMN.tx_bytes)?,
    );
    let maxima = match table {
        Table::NetMinute => Some((
            cols.f64s(NetMinuteRow::COLUMN.rx_bytes_per_s_max)?,
            cols.f64s(NetMinuteRow::COLUMN.tx_bytes_per_s_max)?,
        )),
        _ => None,
    };
    let grid = data.rx.grid;
    for row in 0..cols.batch.num_rows() {
        let end = ts.value(row);
        let start = end - dur.value(row).max(1) * US_PER_MS;
        if end <= grid.from_us || start >= grid.to_us || !charted_interface(iface.value(row)) {
            continue;
        }
        let seconds = (end - start) as f64 / 1e6;
        let (rx_bytes, tx_bytes) = (rx.value(row) as f64, tx.value(row) as f64);
        let (rx_rate, tx_rate) = (rx_bytes / seconds, tx_bytes / seconds);
        let (rx_max, tx_max) = match maxima {
            Some((rm, tm)) => (rm.value(row).max(rx_rate), tm.value(row).max(tx_rate)),
            None => (rx_rate, tx_rate),
        };
        let inode = netns.is_valid(row).then(|| netns.value(row));
        let net_key = NetKey {
            iface: safe_text(iface.value(row)).into_owned(),
            namespace: labels.get(inode),
        };
        let name = &net_key.key();
        if !data.interfaces.contains_key(name) {
            data.interfaces.insert(name.clone(), net_key.clone());
        }
        // The three tables get keys together, so their slots agree.
        let slot = data.rx.key_index(name);
        data.tx.key_index(name);
        data.diff.key_index(name);
        data.rx.add_span_at(slot, start, end, rx_rate, rx_max);
        data.tx.add_span_at(slot, start, end, tx_rate, tx_max);
        let diff = tx_rate - rx_rate;
        data.diff.add_span_at(slot, start, end, diff, diff);
        let totals = match data.totals.get_mut(name) {
            Some(totals) => totals,
            None => data.totals.entry(name.to_string()).or_default(),
        };
        totals.rx += rx_bytes;
        totals.tx += tx_bytes;
        totals.more_out += (tx_bytes - rx_bytes).max(0.0);
        totals.more_in += (rx_bytes - tx_bytes).max(0.0);
    }
    Ok(())
}

/// CPU per user in percent of one core.
pub fn load_cpu(tree: &DataTree, grid: Grid, problems: &mut Problems) -> Option<Binned> {
    let files = table_files(tree, Table::Cpu, Some(Table::CpuMinute), &grid, problems)?;
    let mut binned = Binned::new(grid);
    let mut slots = UserSlots::default();
    let columns = |table: Table| -> &'static [&'static str] {
        match table {
            Table::CpuMinute => &[
                CpuRow::COLUMN.ts_us,
                CpuRow::COLUMN.dur_ms,
                CpuRow::COLUMN.uid,
                CpuRow::COLUMN.user,
                CpuRow::COLUMN.cpu_pct,
                CpuMinuteRow::COLUMN.cpu_pct_max,
            ],
            _ => &[
                CpuRow::COLUMN.ts_us,
                CpuRow::COLUMN.dur_ms,
                CpuRow::COLUMN.uid,
                CpuRow::COLUMN.user,
                CpuRow::COLUMN.cpu_pct,
            ],
        }
    };
    read_files(
        &files,
        columns,
        |table, cols| {
            let (ts, dur, pct) = (
                cols.ts()?,
                cols.i64s(CpuRow::COLUMN.dur_ms)?,
                cols.f64s(CpuRow::COLUMN.cpu_pct)?,
            );
            let (uid, user) = (
                cols.i64s(CpuRow::COLUMN.uid)?,
                cols.strs(CpuRow::COLUMN.user)?,
            );
            let pct_max = match table {
                Table::CpuMinute => Some(cols.f64s(CpuMinuteRow::COLUMN.cpu_pct_max)?),
                _ => None,
            };
            for row in 0..cols.batch.num_rows() {
                let end = ts.value(row);
                let start = end - dur.value(row).max(1) * US_PER_MS;
                let mean = pct.value(row);
                let max = pct_max.map_or(mean, |m| m.value(row).max(mean));
                let slot = slots.get(&mut [&mut binned], user, uid, row);
                binned.add_span_at(slot, start, end, mean, max);
            }
            Ok(())
        },
        problems,
    );
    Some(binned)
}

/// Key slots by uid, so a label string is made once per user and not once per row.
#[derive(Default)]
struct UserSlots {
    slots: std::collections::HashMap<i64, usize>,
}

impl UserSlots {
    /// The user's slot in every one of `binneds` (they get keys together, so the slots
    /// are the same).
    fn get(
        &mut self,
        binneds: &mut [&mut Binned],
        names: &arrow::array::StringArray,
        uids: &arrow::array::Int64Array,
        row: usize,
    ) -> usize {
        let uid = uids.value(row);
        *self.slots.entry(uid).or_insert_with(|| {
            let label = user_label(names, uids, row);
            binneds
                .iter_mut()
                .map(|b| b.key_index(&label))
                .last()
                .unwrap_or(0)
        })
    }
}

/// Per-user traffic (IP-layer bytes of each user's sockets), bytes/s.
pub struct UserNetData {
    pub rx: Binned,
    pub tx: Binned,
}

pub fn load_net_users(tree: &DataTree, grid: Grid, problems: &mut Problems) -> Option<UserNetData> {
    let files = table_files(
        tree,
        Table::NetUid,
        Some(Table::NetUidMinute),
        &grid,
        problems,
    )?;
    let mut data = UserNetData {
        rx: Binned::new(grid),
        tx: Binned::new(grid),
    };
    let mut slots = UserSlots::default();
    read_files(
        &files,
        |_| {
            &[
                NetUidRow::COLUMN.ts_us,
                NetUidRow::COLUMN.dur_ms,
                NetUidRow::COLUMN.uid,
                NetUidRow::COLUMN.user,
                NetUidRow::COLUMN.rx_bytes,
                NetUidRow::COLUMN.tx_bytes,
            ]
        },
        |_, cols| {
            let (ts, dur, uid, user) = (
                cols.ts()?,
                cols.i64s(NetUidRow::COLUMN.dur_ms)?,
                cols.i64s(NetUidRow::COLUMN.uid)?,
                cols.strs(NetUidRow::COLUMN.user)?,
            );
            let (rx, tx) = (
                cols.i64s(NetUidRow::COLUMN.rx_bytes)?,
                cols.i64s(NetUidRow::COLUMN.tx_bytes)?,
            );
            for row in 0..cols.batch.num_rows() {
                let end = ts.value(row);
                let start = end - dur.value(row).max(1) * US_PER_MS;
                let seconds = (end - start) as f64 / 1e6;
                let slot = slots.get(&mut [&mut data.rx, &mut data.tx], user, uid, row);
                let (r, t) = (
                    rx.value(row) as f64 / seconds,
                    tx.value(row) as f64 / seconds,
                );
                data.rx.add_span_at(slot, start, end, r, r);
                data.tx.add_span_at(slot, start, end, t, t);
            }
            Ok(())
        },
        problems,
    );
    Some(data)
}

/// Resident memory per user, bytes.
pub fn load_mem(tree: &DataTree, grid: Grid, problems: &mut Problems) -> Option<Binned> {
    let files = table_files(tree, Table::Mem, Some(Table::MemMinute), &grid, problems)?;
    // Gauge rows are instants: collect them first, then give each the span to the next.
    let mut binned = Binned::new(grid);
    let mut slots = UserSlots::default();
    let mut samples: Vec<(i64, usize, f64)> = Vec::new();
    let columns = |table: Table| -> &'static [&'static str] {
        match table {
            Table::MemMinute => &[
                MemRow::COLUMN.ts_us,
                MemRow::COLUMN.uid,
                MemRow::COLUMN.user,
                MemMinuteRow::COLUMN.rss_bytes_mean,
                MemMinuteRow::COLUMN.rss_bytes_max,
            ],
            _ => &[
                MemRow::COLUMN.ts_us,
                MemRow::COLUMN.uid,
                MemRow::COLUMN.user,
                MemRow::COLUMN.rss_bytes,
            ],
        }
    };
    read_files(
        &files,
        columns,
        |table, cols| {
            let (ts, uid, user) = (
                cols.ts()?,
                cols.i64s(MemRow::COLUMN.uid)?,
                cols.strs(MemRow::COLUMN.user)?,
            );
            if table == Table::MemMinute {
                let (mean, max) = (
                    cols.i64s(MemMinuteRow::COLUMN.rss_bytes_mean)?,
                    cols.i64s(MemMinuteRow::COLUMN.rss_bytes_max)?,
                );
                for row in 0..cols.batch.num_rows() {
                    let slot = slots.get(&mut [&mut binned], user, uid, row);
                    let end = ts.value(row);
                    let (mean, max) = (mean.value(row) as f64, max.value(row) as f64);
                    binned.add_span_at(slot, end - MINUTE_US, end, mean, max);
                }
            } else {
                let rss = cols.i64s(MemRow::COLUMN.rss_bytes)?;
                for row in 0..cols.batch.num_rows() {
                    let slot = slots.get(&mut [&mut binned], user, uid, row);
                    samples.push((ts.value(row), slot, rss.value(row) as f64));
                }
            }
            Ok(())
        },
        problems,
    );
    add_gauge_samples(&mut binned, samples);
    Some(binned)
}

/// Samples taken at the same instants for every key: each lasts until the table's next
/// sampling time, unless that is a gap.
fn add_gauge_samples(binned: &mut Binned, mut samples: Vec<(i64, usize, f64)>) {
    samples.sort_by_key(|s| s.0);
    let mut times: Vec<i64> = samples.iter().map(|s| s.0).collect();
    times.dedup();
    let ends: BTreeMap<i64, i64> = gauge_spans(&times).into_iter().collect();
    for (start, slot, value) in samples {
        let end = ends.get(&start).copied().unwrap_or(start + 1);
        binned.add_span_at(slot, start, end, value, value);
    }
}

/// One ping measurement.
#[derive(Clone, Debug, PartialEq)]
pub struct PingSample {
    pub ts_us: i64,
    pub sent: i64,
    pub received: i64,
    pub rtts_ms: Vec<f64>,
    /// Why nothing was sent or received (an unresolvable name), if the daemon said.
    pub error: Option<String>,
}

/// Ping measurements per target, in time order.
pub fn load_ping(
    tree: &DataTree,
    grid: Grid,
    problems: &mut Problems,
) -> Option<BTreeMap<String, Vec<PingSample>>> {
    // A measurement is stamped with its start; the one just before the range may still run.
    let files = table_files(tree, Table::Ping, None, &grid, problems)?;
    let mut targets: BTreeMap<String, Vec<PingSample>> = BTreeMap::new();
    read_files(
        &files,
        |_| {
            &[
                PingRow::COLUMN.ts_us,
                PingRow::COLUMN.target,
                PingRow::COLUMN.sent,
                PingRow::COLUMN.received,
                PingRow::COLUMN.rtts_ms,
                PingRow::COLUMN.error,
            ]
        },
        |_, cols| {
            let (ts, target) = (cols.ts()?, cols.strs(PingRow::COLUMN.target)?);
            let (sent, received, rtts) = (
                cols.i64s(PingRow::COLUMN.sent)?,
                cols.i64s(PingRow::COLUMN.received)?,
                cols.f64_lists(PingRow::COLUMN.rtts_ms)?,
            );
            let error = cols.strs(PingRow::COLUMN.error)?;
            for row in 0..cols.batch.num_rows() {
                let ts_us = ts.value(row);
                if ts_us < grid.from_us || ts_us >= grid.to_us {
                    continue;
                }
                let list = rtts.value(row);
                let values = list
                    .as_any()
                    .downcast_ref::<arrow::array::Float64Array>()
                    .map(|a| a.iter().flatten().collect())
                    .unwrap_or_default();
                targets
                    .entry(safe_text(target.value(row)).into_owned())
                    .or_default()
                    .push(PingSample {
                        ts_us,
                        sent: sent.value(row),
                        received: received.value(row),
                        rtts_ms: values,
                        error: error.is_valid(row).then(|| error.value(row).to_string()),
                    });
            }
            Ok(())
        },
        problems,
    );
    for samples in targets.values_mut() {
        samples.sort_by_key(|s| s.ts_us);
    }
    Some(targets)
}

/// One beancounter reading.
#[derive(Clone, Debug, PartialEq)]
pub struct UbcSample {
    pub ts_us: i64,
    pub held: f64,
    pub barrier: f64,
    pub limit: f64,
    pub failcnt: i64,
}

/// Beancounters per container, per resource, in time order.
pub type UbcData = BTreeMap<i64, BTreeMap<String, Vec<UbcSample>>>;

pub fn load_ubc(tree: &DataTree, grid: Grid, problems: &mut Problems) -> Option<UbcData> {
    if !tree.has_table(Table::Ubc) {
        // Only OpenVZ containers have beancounters: not worth a note elsewhere.
        return None;
    }
    let files = table_files(tree, Table::Ubc, None, &grid, problems)?;
    let mut data = UbcData::new();
    read_files(
        &files,
        |_| {
            &[
                UbcRow::COLUMN.ts_us,
                UbcRow::COLUMN.ctid,
                UbcRow::COLUMN.resource,
                UbcRow::COLUMN.held,
                UbcRow::COLUMN.barrier,
                UbcRow::COLUMN.hard_limit,
                UbcRow::COLUMN.failcnt,
            ]
        },
        |_, cols| {
            let (ts, ctid, resource) = (
                cols.ts()?,
                cols.i64s(UbcRow::COLUMN.ctid)?,
                cols.strs(UbcRow::COLUMN.resource)?,
            );
            let (held, barrier, limit, failcnt) = (
                cols.i64s(UbcRow::COLUMN.held)?,
                cols.i64s(UbcRow::COLUMN.barrier)?,
                cols.i64s(UbcRow::COLUMN.hard_limit)?,
                cols.i64s(UbcRow::COLUMN.failcnt)?,
            );
            for row in 0..cols.batch.num_rows() {
                let ts_us = ts.value(row);
                if ts_us < grid.from_us || ts_us >= grid.to_us {
                    continue;
                }
                data.entry(ctid.value(row))
                    .or_default()
                    .entry(resource.value(row).to_string())
                    .or_default()
                    .push(UbcSample {
                        ts_us,
                        held: held.value(row) as f64,
                        barrier: barrier.value(row) as f64,
                        limit: limit.value(row) as f64,
                        failcnt: failcnt.value(row),
                    });
            }
            Ok(())
        },
        problems,
    );
    for resources in data.values_mut() {
        for samples in resources.values_mut() {
            samples.sort_by_key(|s| s.ts_us);
        }
    }
    Some(data)
}

/// What the `events` table says about the daemon over the range.
#[derive(Debug, Default)]
pub struct DaemonFacts {
    /// When the daemon was stopped: from each `stop` to the next `start` (or the range end).
    pub down: Vec<(i64, i64)>,
    /// The core count of the machine the data came from (the latest `host` event).
    pub cores: Option<usize>,
}

/// Reads the `events` of the range (and the day before, for the `stop` that began a
/// period still going at the range start). An absent events table is no problem: gaps
/// in the data still show as gaps, and the core count falls back to this machine's.
pub fn load_daemon_facts(tree: &DataTree, grid: Grid, problems: &mut Problems) -> DaemonFacts {
    if !tree.has_table(Table::Events) {
        return DaemonFacts::default();
    }
    let files: Vec<(Table, PathBuf)> = tree
        .hour_files(Table::Events, grid.from_us - 24 * 3_600_000_000, grid.to_us)
        .into_values()
        .flatten()
        .map(|f| (Table::Events, f))
        .collect();
    let mut events: Vec<(i64, bool)> = Vec::new();
    let mut cores: Option<(i64, usize)> = None;
    read_files(
        &files,
        |_| {
            &[
                EventRow::COLUMN.ts_us,
                EventRow::COLUMN.event,
                EventRow::COLUMN.detail,
            ]
        },
        |_, cols| {
            let (ts, event, detail) = (
                cols.ts()?,
                cols.strs(EventRow::COLUMN.event)?,
                cols.strs(EventRow::COLUMN.detail)?,
            );
            for row in 0..cols.batch.num_rows() {
                let detail = (!detail.is_null(row)).then(|| detail.value(row));
                let at = ts.value(row);
                match Event::parse(event.value(row), detail) {
                    Event::Stop(_) => events.push((at, false)),
                    Event::Start(_) => events.push((at, true)),
                    Event::Host { cores: n, .. } if cores.is_none_or(|(seen, _)| at >= seen) => {
                        cores = Some((at, n as usize));
                    }
                    _ => {}
                }
            }
            Ok(())
        },
        problems,
    );
    DaemonFacts {
        down: down_periods(events, grid.to_us),
        cores: cores.map(|(_, n)| n),
    }
}

/// Pairs each stop with the next start.
fn down_periods(mut events: Vec<(i64, bool)>, end_us: i64) -> Vec<(i64, i64)> {
    events.sort();
    let mut periods = Vec::new();
    let mut stopped_at: Option<i64> = None;
    for (ts, is_start) in events {
        match (is_start, stopped_at) {
            (true, Some(stop)) => {
                periods.push((stop, ts));
                stopped_at = None;
            }
            (false, None) => stopped_at = Some(ts),
            _ => {}
        }
    }
    if let Some(stop) = stopped_at {
        periods.push((stop, end_us));
    }
    periods
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_named_by_their_file_else_their_process_else_their_inode() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blue"), b"").unwrap();
        let inode = std::fs::metadata(dir.path().join("blue")).unwrap().ino() as i64;
        let dirs = [dir.path()];
        // A fake /proc: pids 70 and 42 in another namespace (42 is its init), 1 in the host's.
        let proc = tempfile::tempdir().unwrap();
        let other = inode + 1_000_000;
        for (pid, ns, comm) in [
            (1, HOST_NETNS_INODE, "init"),
            (70, other, "sh"),
            (42, other, "nginx"),
        ] {
            let pid_dir = proc.path().join(pid.to_string());
            std::fs::create_dir_all(pid_dir.join("ns")).unwrap();
            std::os::unix::fs::symlink(format!("net:[{ns}]"), pid_dir.join("ns/net")).unwrap();
            std::fs::write(pid_dir.join("comm"), format!("{comm}\n")).unwrap();
        }
        let label = |n| namespace_label(n, &dirs, proc.path());
        assert_eq!(label(Some(inode)), Some("blue".into()));
        assert_eq!(label(Some(other)), Some("nginx-42".into()));
        assert_eq!(label(Some(other + 1)), Some(format!("inode-{}", other + 1)));
        assert_eq!(label(Some(HOST_NETNS_INODE)), None);
        assert_eq!(label(None), None);
    }

    #[test]
    fn cores_come_from_the_host_event() {
        let cores_of = |detail| match Event::parse("host", Some(detail)) {
            Event::Host { cores, .. } => Some(cores),
            _ => None,
        };
        assert_eq!(cores_of("cores=16 kernel=6.1.0-28-amd64"), Some(16));
        assert_eq!(cores_of("kernel=6.1 cores=0"), None);
        assert_eq!(cores_of("kernel=6.1"), None);
        assert_eq!(cores_of("cores=many"), None);
    }

    #[test]
    fn each_stop_pairs_with_the_next_start() {
        let periods = down_periods(vec![(50, true), (10, false), (30, true), (70, false)], 100);
        assert_eq!(periods, vec![(10, 30), (70, 100)]);
    }
}
