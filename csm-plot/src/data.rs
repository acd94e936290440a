//! Table rows turned into what the charts draw: binned per pixel column by key (user,
//! interface), plus the few exact totals the charts print.

use csm_store::names::safe_text;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use super::bins::{gauge_spans, Binned, Grid};
use super::read::{read_pair, read_typed, user_label, DataTree, Problems, Spans};
use csm_store::{
    CpuMinuteRow, CpuRow, Event, EventRow, MemMinuteRow, MemRow, NetMinuteRow, NetRow,
    NetUidMinuteRow, NetUidRow, PingRow, Table, UbcRow,
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
    /// How many interfaces are summed under [`OTHER_INTERFACES`] (not among the
    /// [`MAX_INTERFACES_CHARTED`] busiest).
    pub others: usize,
}

/// An interface in its network namespace: what one set of interface charts is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetKey {
    pub iface: String,
    /// `None` in the host's own namespace (whose charts keep the plain names); else its
    /// label (csm-store's `netns`: its /run/netns name, its owner process, `inode-<n>`).
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

/// Interfaces charted on their own, the busiest over the range: each costs its charts
/// (four files) and a series per chart, and a user may create thousands in its own
/// namespaces; the rest are summed into one [`OTHER_INTERFACES`] set of charts.
pub const MAX_INTERFACES_CHARTED: usize = 32;

/// The key (and chart name) of the interfaces beyond the busiest, summed.
pub const OTHER_INTERFACES: &str = "(other)";

/// Which interfaces get charts of their own: the [`MAX_INTERFACES_CHARTED`] with the
/// highest weight (bytes, or errors and drops) over the range; ties by namespace and name.
pub(crate) struct Charted {
    keys: HashMap<Option<i64>, HashSet<String>>,
    /// Interfaces with a weight that are not charted on their own.
    pub others: usize,
}

impl Charted {
    /// The busiest of the `weights` (per namespace inode, per interface).
    pub(crate) fn busiest(weights: HashMap<Option<i64>, HashMap<String, f64>>) -> Charted {
        let mut all: Vec<(f64, Option<i64>, String)> = weights
            .into_iter()
            .flat_map(|(netns, ifaces)| {
                ifaces
                    .into_iter()
                    .map(move |(iface, weight)| (weight, netns, iface))
            })
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let others = all.len().saturating_sub(MAX_INTERFACES_CHARTED);
        let mut keys: HashMap<Option<i64>, HashSet<String>> = HashMap::new();
        for (_, netns, iface) in all.into_iter().take(MAX_INTERFACES_CHARTED) {
            keys.entry(netns).or_default().insert(iface);
        }
        Charted { keys, others }
    }

    pub(crate) fn contains(&self, netns: Option<i64>, iface: &str) -> bool {
        self.keys
            .get(&netns)
            .is_some_and(|ifaces| ifaces.contains(iface))
    }

    /// The key an interface's rows are charted under: its own, or [`OTHER_INTERFACES`].
    pub(crate) fn key(
        &self,
        labels: &mut NamespaceLabels,
        netns: Option<i64>,
        iface: &str,
    ) -> NetKey {
        if self.contains(netns, iface) {
            NetKey {
                iface: safe_text(iface).into_owned(),
                namespace: labels.get(netns),
            }
        } else {
            NetKey {
                iface: OTHER_INTERFACES.to_string(),
                namespace: None,
            }
        }
    }
}

/// Adds `weight` to an interface's entry of `weights` (a string made once per interface,
/// not once per row).
pub(crate) fn add_weight(
    weights: &mut HashMap<Option<i64>, HashMap<String, f64>>,
    netns: Option<i64>,
    iface: &str,
    weight: f64,
) {
    let ifaces = weights.entry(netns).or_default();
    match ifaces.get_mut(iface) {
        Some(sum) => *sum += weight,
        None => {
            ifaces.insert(iface.to_string(), weight);
        }
    }
}

/// `net` and `net_1m` rows as the traffic charts take them.
fn read_net(files: &[(Table, PathBuf)], take: impl FnMut(NetSpan), problems: &mut Problems) {
    let (n, m) = (NetRow::COLUMN, NetMinuteRow::COLUMN);
    let raw = [n.ts_us, n.dur_ms, n.iface, n.netns, n.rx_bytes, n.tx_bytes];
    let minute = [
        m.ts_us,
        m.dur_ms,
        m.iface,
        m.netns,
        m.rx_bytes,
        m.tx_bytes,
        m.rx_bytes_per_s_max,
        m.tx_bytes_per_s_max,
    ];
    let raw_span = |r: NetRow| {
        let bytes = (r.rx_bytes, r.tx_bytes);
        NetSpan::of((r.ts_us, r.dur_ms), r.iface, r.netns, bytes, None)
    };
    let minute_span = |r: NetMinuteRow| {
        let (bytes, maxima) = (
            (r.rx_bytes, r.tx_bytes),
            (r.rx_bytes_per_s_max, r.tx_bytes_per_s_max),
        );
        NetSpan::of((r.ts_us, r.dur_ms), r.iface, r.netns, bytes, Some(maxima))
    };
    let spans = Spans {
        raw: (&raw, raw_span),
        minute: (&minute, minute_span),
    };
    read_pair(files, spans, take, problems);
}

/// Traffic per interface: the files are read twice, first for each interface's bytes
/// (to chart the busiest), then binned; what is held is the interfaces' sums and the
/// charted series, whatever the rows.
pub fn load_net(tree: &DataTree, grid: Grid, problems: &mut Problems) -> Option<NetData> {
    let files = table_files(tree, Table::Net, Some(Table::NetMinute), &grid, problems)?;
    let mut weights = HashMap::new();
    let mut first_pass = Problems::default();
    read_net(
        &files,
        |span| {
            if span.in_grid(&grid) && charted_interface(&span.iface) {
                let bytes = (span.bytes.0 as f64) + (span.bytes.1 as f64);
                add_weight(&mut weights, span.netns, &span.iface, bytes);
            }
        },
        // The second pass says what could not be read.
        &mut first_pass,
    );
    let charted = Charted::busiest(weights);
    let mut data = NetData {
        rx: Binned::new(grid),
        tx: Binned::new(grid),
        diff: Binned::new(grid),
        totals: BTreeMap::new(),
        interfaces: BTreeMap::new(),
        others: charted.others,
    };
    let mut labels = NamespaceLabels::default();
    read_net(
        &files,
        |span| add_net_span(&mut data, &mut labels, &charted, span),
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

/// Namespace labels (csm-store's one label), `None` for the host's: its interfaces keep
/// their plain names.
pub(crate) struct NamespaceLabels(csm_store::netns::NetnsLabels);

impl Default for NamespaceLabels {
    fn default() -> Self {
        NamespaceLabels(csm_store::netns::NetnsLabels::local())
    }
}

impl NamespaceLabels {
    pub(crate) fn get(&mut self, inode: Option<i64>) -> Option<String> {
        self.0.label_unless_host(inode)
    }
}

/// The time a row covers: it ends at `end` (its `ts`) and lasted `dur_ms`.
#[derive(Clone, Copy)]
struct Covered {
    end: i64,
    dur_ms: i64,
}

impl Covered {
    /// Where the span starts (a row of no duration counts as one millisecond).
    fn start(self) -> i64 {
        self.end - self.dur_ms.max(1) * US_PER_MS
    }
}

/// One `net` or `net_1m` row, as the charts take it.
struct NetSpan {
    covered: Covered,
    iface: String,
    netns: Option<i64>,
    bytes: (i64, i64),
    /// A roll-up's highest single-interval rates.
    maxima: Option<(f64, f64)>,
}

impl NetSpan {
    /// A span ending at `end` that lasted `dur_ms`.
    fn of(
        (end, dur_ms): (i64, i64),
        iface: String,
        netns: Option<i64>,
        bytes: (i64, i64),
        maxima: Option<(f64, f64)>,
    ) -> Self {
        NetSpan {
            covered: Covered { end, dur_ms },
            iface,
            netns,
            bytes,
            maxima,
        }
    }

    fn in_grid(&self, grid: &Grid) -> bool {
        self.covered.end > grid.from_us && self.covered.start() < grid.to_us
    }
}

fn add_net_span(
    data: &mut NetData,
    labels: &mut NamespaceLabels,
    charted: &Charted,
    span: NetSpan,
) {
    let grid = data.rx.grid;
    if !span.in_grid(&grid) || !charted_interface(&span.iface) {
        return;
    }
    let (start, end) = (span.covered.start(), span.covered.end);
    let seconds = (end - start) as f64 / 1e6;
    let (rx_bytes, tx_bytes) = (span.bytes.0 as f64, span.bytes.1 as f64);
    let (rx_rate, tx_rate) = (rx_bytes / seconds, tx_bytes / seconds);
    let (rx_max, tx_max) = match span.maxima {
        Some((rm, tm)) => (rm.max(rx_rate), tm.max(tx_rate)),
        None => (rx_rate, tx_rate),
    };
    let net_key = charted.key(labels, span.netns, &span.iface);
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

/// CPU per user in percent of one core.
pub fn load_cpu(tree: &DataTree, grid: Grid, problems: &mut Problems) -> Option<Binned> {
    let files = table_files(tree, Table::Cpu, Some(Table::CpuMinute), &grid, problems)?;
    let mut binned = Binned::new(grid);
    let mut slots = UserSlots::default();
    let (c, m) = (CpuRow::COLUMN, CpuMinuteRow::COLUMN);
    let raw = [c.ts_us, c.dur_ms, c.uid, c.user, c.cpu_pct];
    let minute = [m.ts_us, m.dur_ms, m.uid, m.user, m.cpu_pct, m.cpu_pct_max];
    let raw_span =
        |r: CpuRow| UserSpan::of((r.ts_us, r.dur_ms), r.uid, r.user, (r.cpu_pct, r.cpu_pct));
    let minute_span = |r: CpuMinuteRow| {
        UserSpan::of(
            (r.ts_us, r.dur_ms),
            r.uid,
            r.user,
            (r.cpu_pct, r.cpu_pct_max),
        )
    };
    let add = |span: UserSpan| {
        let slot = slots.get(&mut [&mut binned], span.user.as_deref(), span.uid);
        let (mean, max) = span.values;
        binned.add_span_at(
            slot,
            span.covered.start(),
            span.covered.end,
            mean,
            max.max(mean),
        );
    };
    let spans = Spans {
        raw: (&raw, raw_span),
        minute: (&minute, minute_span),
    };
    read_pair(&files, spans, add, problems);
    Some(binned)
}

/// One user's row of a counter table (raw or roll-up), as the per-user charts take it:
/// two values over the span (CPU mean and peak; bytes in and out).
struct UserSpan {
    covered: Covered,
    uid: i64,
    user: Option<String>,
    values: (f64, f64),
}

impl UserSpan {
    /// The span of `uid`'s row ending at `end` that lasted `dur_ms`.
    fn of((end, dur_ms): (i64, i64), uid: i64, user: Option<String>, values: (f64, f64)) -> Self {
        UserSpan {
            covered: Covered { end, dur_ms },
            uid,
            user,
            values,
        }
    }
}

/// Key slots by uid, so a label string is made once per user and not once per row.
#[derive(Default)]
struct UserSlots {
    slots: std::collections::HashMap<i64, usize>,
}

impl UserSlots {
    /// The user's slot in every one of `binneds` (they get keys together, so the slots
    /// are the same).
    fn get(&mut self, binneds: &mut [&mut Binned], name: Option<&str>, uid: i64) -> usize {
        *self.slots.entry(uid).or_insert_with(|| {
            let label = user_label(name, uid);
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
    let add = |span: UserSpan| {
        let (start, end) = (span.covered.start(), span.covered.end);
        let seconds = (end - start) as f64 / 1e6;
        let slot = slots.get(
            &mut [&mut data.rx, &mut data.tx],
            span.user.as_deref(),
            span.uid,
        );
        let (r, t) = (span.values.0 / seconds, span.values.1 / seconds);
        data.rx.add_span_at(slot, start, end, r, r);
        data.tx.add_span_at(slot, start, end, t, t);
    };
    let (u, m) = (NetUidRow::COLUMN, NetUidMinuteRow::COLUMN);
    let raw = [u.ts_us, u.dur_ms, u.uid, u.user, u.rx_bytes, u.tx_bytes];
    let minute = [m.ts_us, m.dur_ms, m.uid, m.user, m.rx_bytes, m.tx_bytes];
    // `net_uid` and `net_uid_1m` have the same columns: one projection for both.
    macro_rules! bytes_span {
        ($row:ty) => {
            |r: $row| {
                let bytes = (r.rx_bytes as f64, r.tx_bytes as f64);
                UserSpan::of((r.ts_us, r.dur_ms), r.uid, r.user, bytes)
            }
        };
    }
    let raw_span = bytes_span!(NetUidRow);
    let minute_span = bytes_span!(NetUidMinuteRow);
    let spans = Spans {
        raw: (&raw, raw_span),
        minute: (&minute, minute_span),
    };
    read_pair(&files, spans, add, problems);
    Some(data)
}

/// Resident memory per user, bytes.
pub fn load_mem(tree: &DataTree, grid: Grid, problems: &mut Problems) -> Option<Binned> {
    let files = table_files(tree, Table::Mem, Some(Table::MemMinute), &grid, problems)?;
    // Gauge rows are instants: collect them first, then give each the span to the next.
    let mut binned = Binned::new(grid);
    let mut slots = UserSlots::default();
    let mut samples: Vec<(i64, usize, f64)> = Vec::new();
    let (r, m) = (MemRow::COLUMN, MemMinuteRow::COLUMN);
    read_typed(
        &files,
        &[r.ts_us, r.uid, r.user, r.rss_bytes],
        |r: MemRow| {
            let slot = slots.get(&mut [&mut binned], r.user.as_deref(), r.uid);
            samples.push((r.ts_us, slot, r.rss_bytes as f64));
        },
        problems,
    );
    read_typed(
        &files,
        &[m.ts_us, m.uid, m.user, m.rss_bytes_mean, m.rss_bytes_max],
        |r: MemMinuteRow| {
            let slot = slots.get(&mut [&mut binned], r.user.as_deref(), r.uid);
            let (mean, max) = (r.rss_bytes_mean as f64, r.rss_bytes_max as f64);
            binned.add_span_at(slot, r.ts_us - MINUTE_US, r.ts_us, mean, max);
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
    let p = PingRow::COLUMN;
    read_typed(
        &files,
        &[p.ts_us, p.target, p.sent, p.received, p.rtts_ms, p.error],
        |r: PingRow| {
            if r.ts_us < grid.from_us || r.ts_us >= grid.to_us {
                return;
            }
            targets
                .entry(safe_text(&r.target).into_owned())
                .or_default()
                .push(PingSample {
                    ts_us: r.ts_us,
                    sent: r.sent,
                    received: r.received,
                    rtts_ms: r.rtts_ms,
                    error: r.error,
                });
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
    let u = UbcRow::COLUMN;
    read_typed(
        &files,
        &[
            u.ts_us,
            u.ctid,
            u.resource,
            u.held,
            u.barrier,
            u.hard_limit,
            u.failcnt,
        ],
        |r: UbcRow| {
            if r.ts_us < grid.from_us || r.ts_us >= grid.to_us {
                return;
            }
            data.entry(r.ctid)
                .or_default()
                .entry(r.resource)
                .or_default()
                .push(UbcSample {
                    ts_us: r.ts_us,
                    held: r.held as f64,
                    barrier: r.barrier as f64,
                    limit: r.hard_limit as f64,
                    failcnt: r.failcnt,
                });
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
    let e = EventRow::COLUMN;
    read_typed(
        &files,
        &[e.ts_us, e.event, e.detail],
        |r: EventRow| {
            let at = r.ts_us;
            match Event::parse(&r.event, r.detail.as_deref()) {
                Event::Stop(_) => events.push((at, false)),
                Event::Start(_) => events.push((at, true)),
                Event::Host { cores: n, .. } if cores.is_none_or(|(seen, _)| at >= seen) => {
                    cores = Some((at, n as usize));
                }
                _ => {}
            }
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
