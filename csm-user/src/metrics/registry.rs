//! The metric families, fed from the rows the collectors send to the store (so that
//! Prometheus's `increase()` over a range equals the sum of the Parquet rows of that
//! range), encoded on demand in the Prometheus text format or OpenMetrics.
//!
//! Counters never go backwards while the pinned eBPF maps survive: the CPU and traffic
//! counters ([`PinnedCounters`]) are saved with the state file at each flush, as of the
//! rows that flush writes, and a start that adopts the pins and that state file takes
//! them back; what the pins counted while the daemon was down then arrives as the
//! `recovered` rows of the first interval. Until those rows are in, a scrape gets 503
//! (a lower value would read as a reset). Where the pins or the state are gone (a
//! reboot, a clean stop, a corrupt state file) every counter starts again at 0, which
//! Prometheus's `rate()`/`increase()` treat as a reset; `csm_counters_reset_timestamp_seconds`
//! says when that was (prometheus-client writes no OpenMetrics `_created`). Ping,
//! event and flush counters are not backed by pins (what they counted since the last
//! flush dies with the process): they start at 0 at every start.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry, Unit};
use serde::{Deserialize, Serialize};

use crate::daemon::ctx::Rows;
use csm_store::{
    CpuRow, EventRow, MemRow, NetRow, NetUidRow, PingRow, Row, Table, TableRows, UbcRow,
};

/// The most series of one family; what is past it is summed into one series whose
/// labels say `(other)`, as the tables fold what is past their budgets.
pub const MAX_SERIES_PER_FAMILY: usize = 1000;
/// The label value of the series that carries what is past [`MAX_SERIES_PER_FAMILY`].
pub const OTHER: &str = "(other)";

/// Upper bounds of the RTT histogram's buckets, in seconds: 100 µs to 10 s, about three
/// per decade (loopback and a LAN at the bottom, a satellite link and a struggling
/// target at the top).
const RTT_BUCKETS_S: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

type FloatCounter = Counter<f64, AtomicU64>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Labels that can stand for "everything past the budget".
trait Fold: Clone + Ord {
    fn other() -> Self;
}

/// A label set of string labels, whose stand-in for "everything past the budget" has
/// every label [`OTHER`].
macro_rules! label_set {
    ($name:ident { $($(#[$doc:meta])* $field:ident),* $(,)? }) => {
        #[derive(
            Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet, Serialize, Deserialize,
        )]
        pub struct $name {
            $($(#[$doc])* pub $field: String,)*
        }

        impl Fold for $name {
            fn other() -> Self {
                $name {
                    $($field: OTHER.into(),)*
                }
            }
        }
    };
}

label_set!(UserLabels { user, uid });
label_set!(InterfaceLabels {
    interface,
    /// The namespace's inode; empty from /proc (which sees one namespace).
    netns,
});
label_set!(TargetLabels { target });
label_set!(BeancounterLabels { ctid, resource });
label_set!(EventLabels { event });

/// The label sets a family has handed out, to keep it within [`MAX_SERIES_PER_FAMILY`].
struct Budget<L> {
    seen: BTreeSet<L>,
}

impl<L: Fold> Budget<L> {
    fn new() -> Self {
        Budget {
            seen: BTreeSet::new(),
        }
    }

    /// `labels` if it has a series or there is room for one; else the `(other)` labels.
    fn admit(&mut self, labels: L) -> L {
        if self.seen.contains(&labels) {
            return labels;
        }
        if self.seen.len() + 1 >= MAX_SERIES_PER_FAMILY {
            return L::other();
        }
        self.seen.insert(labels.clone());
        labels
    }

    /// Every label set a series may have: those admitted, and `(other)`.
    fn series(&self) -> impl Iterator<Item = L> + '_ {
        self.seen.iter().cloned().chain(std::iter::once(L::other()))
    }

    /// A persisted series' labels: `(other)` stays `(other)` without taking a slot.
    fn readmit(&mut self, labels: L) -> L {
        if labels == L::other() {
            labels
        } else {
            self.admit(labels)
        }
    }
}

/// The counters that continue across a restart over surviving pins (see the module
/// documentation): per user CPU and traffic, per interface traffic, as persisted with
/// the state file. Bounded by the families' budgets (what is past them is `(other)`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PinnedCounters {
    /// When these counters were last 0 (Unix µs).
    pub since_us: i64,
    pub users: Vec<UserSeries>,
    pub interfaces: Vec<InterfaceSeries>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserSeries {
    #[serde(flatten)]
    pub labels: UserLabels,
    pub cpu_seconds: f64,
    pub receive_bytes: u64,
    pub transmit_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterfaceSeries {
    #[serde(flatten)]
    pub labels: InterfaceLabels,
    pub receive_bytes: u64,
    pub transmit_bytes: u64,
    pub receive_packets: u64,
    pub transmit_packets: u64,
}

/// After restoring [`PinnedCounters`]: the collectors whose `recovered` rows (sent just
/// before their first checkpoint) are not in yet, and how long to wait for them at most
/// (a collector whose first sample fails sends none).
struct CatchUp {
    cpu: bool,
    net: bool,
    until: Instant,
}

/// The longest a restored endpoint answers 503 waiting for the recovered rows.
const CATCH_UP_AT_MOST: Duration = Duration::from_secs(10);

/// Every family csm exposes, and what keeps them bounded.
pub struct Metrics {
    registry: Registry,
    families: Families,
    /// Apart from [`Families`]: a histogram family has no `Default`.
    ping_rtt: Family<TargetLabels, Histogram, fn() -> Histogram>,
    /// Budgets per label kind; behind a lock because rows come from the collectors'
    /// threads and the flush thread while a scrape encodes.
    budgets: Mutex<Budgets>,
    /// When the pinned counters were last 0 (`csm_counters_reset_timestamp_seconds`).
    counters_reset: FloatGauge,
    catch_up: Mutex<Option<CatchUp>>,
}

struct Budgets {
    users: Budget<UserLabels>,
    interfaces: Budget<InterfaceLabels>,
    targets: Budget<TargetLabels>,
    beancounters: Budget<BeancounterLabels>,
    events: Budget<EventLabels>,
    /// The uids of the last memory sample (their gauges are removed when they go).
    mem_users: BTreeSet<UserLabels>,
}

#[derive(Default)]
struct Families {
    user_cpu: Family<UserLabels, FloatCounter>,
    user_rss: Family<UserLabels, Gauge>,
    user_pss: Family<UserLabels, Gauge>,
    user_swap: Family<UserLabels, Gauge>,
    user_processes: Family<UserLabels, Gauge>,
    user_rx: Family<UserLabels, Counter>,
    user_tx: Family<UserLabels, Counter>,
    iface_rx_bytes: Family<InterfaceLabels, Counter>,
    iface_tx_bytes: Family<InterfaceLabels, Counter>,
    iface_rx_packets: Family<InterfaceLabels, Counter>,
    iface_tx_packets: Family<InterfaceLabels, Counter>,
    ping_sent: Family<TargetLabels, Counter>,
    ping_lost: Family<TargetLabels, Counter>,
    target_up: Family<TargetLabels, Gauge>,
    beancounter_failcnt: Family<BeancounterLabels, Counter>,
    events: Family<EventLabels, Counter>,
    flushes_failed: Counter,
    last_flush: FloatGauge,
}

fn rtt_histogram() -> Histogram {
    Histogram::new(RTT_BUCKETS_S)
}

impl Metrics {
    /// The families, with `csm_build_info` saying the version and the backend, and the
    /// start time (when every counter was last 0).
    pub fn new(backend: &str, started_us: i64) -> Metrics {
        let families = Families::default();
        let ping_rtt: Family<TargetLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(rtt_histogram);
        let mut registry = Registry::with_prefix("csm");
        register(&mut registry, &families, backend, started_us);
        let counters_reset = timestamp_gauge(
            &mut registry,
            "counters_reset_timestamp",
            "When the CPU and traffic counters were last 0: this start, or that of an earlier run whose pinned eBPF maps this one took over",
            started_us,
        );
        registry.register_with_unit(
            "ping_rtt",
            "Round-trip time of every reply",
            Unit::Seconds,
            ping_rtt.clone(),
        );
        Metrics {
            registry,
            families,
            ping_rtt,
            budgets: Mutex::new(Budgets {
                users: Budget::new(),
                interfaces: Budget::new(),
                targets: Budget::new(),
                beancounters: Budget::new(),
                events: Budget::new(),
                mem_users: BTreeSet::new(),
            }),
            counters_reset,
            catch_up: Mutex::new(None),
        }
    }

    /// The CPU and traffic counters as of the rows observed so far, for the state file.
    pub fn pinned_counters(&self) -> PinnedCounters {
        let budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let f = &self.families;
        let users = budgets
            .users
            .series()
            .filter_map(|labels| {
                let cpu = f.user_cpu.get(&labels).map(|c| c.get());
                let rx = f.user_rx.get(&labels).map(|c| c.get());
                let tx = f.user_tx.get(&labels).map(|c| c.get());
                (cpu.is_some() || rx.is_some() || tx.is_some()).then(|| UserSeries {
                    labels,
                    cpu_seconds: cpu.unwrap_or_default(),
                    receive_bytes: rx.unwrap_or_default(),
                    transmit_bytes: tx.unwrap_or_default(),
                })
            })
            .collect();
        let interfaces = budgets
            .interfaces
            .series()
            .filter(|labels| f.iface_rx_bytes.get(labels).is_some())
            .map(|labels| {
                let value = |family: &Family<InterfaceLabels, Counter>| {
                    family.get(&labels).map(|c| c.get()).unwrap_or_default()
                };
                InterfaceSeries {
                    receive_bytes: value(&f.iface_rx_bytes),
                    transmit_bytes: value(&f.iface_tx_bytes),
                    receive_packets: value(&f.iface_rx_packets),
                    transmit_packets: value(&f.iface_tx_packets),
                    labels,
                }
            })
            .collect();
        PinnedCounters {
            since_us: (self.counters_reset.get() * 1e6).round() as i64,
            users,
            interfaces,
        }
    }

    /// Continues the counters a crashed run persisted (called at start, before any row,
    /// when this run adopted its pins and its state file). Until the CPU (and, with
    /// `net`, the traffic) collector's first checkpoint is observed, [`Metrics::ready`]
    /// is false.
    pub fn restore(&self, counters: PinnedCounters, net: bool) {
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let f = &self.families;
        for series in counters.users {
            let labels = budgets.users.readmit(series.labels);
            if series.cpu_seconds.is_finite() && series.cpu_seconds > 0.0 {
                f.user_cpu.get_or_create(&labels).inc_by(series.cpu_seconds);
            }
            for (family, bytes) in [
                (&f.user_rx, series.receive_bytes),
                (&f.user_tx, series.transmit_bytes),
            ] {
                family.get_or_create(&labels).inc_by(bytes);
            }
        }
        for series in counters.interfaces {
            let labels = budgets.interfaces.readmit(series.labels);
            for (family, count) in [
                (&f.iface_rx_bytes, series.receive_bytes),
                (&f.iface_tx_bytes, series.transmit_bytes),
                (&f.iface_rx_packets, series.receive_packets),
                (&f.iface_tx_packets, series.transmit_packets),
            ] {
                family.get_or_create(&labels).inc_by(count);
            }
        }
        self.counters_reset.set(counters.since_us as f64 / 1e6);
        *self.catch_up.lock().unwrap_or_else(|e| e.into_inner()) = Some(CatchUp {
            cpu: true,
            net,
            until: Instant::now() + CATCH_UP_AT_MOST,
        });
    }

    /// False while restored counters wait for the rows of what the pins counted while
    /// the daemon was down: a scrape then would see them lower than before the crash.
    pub fn ready(&self) -> bool {
        let mut catch_up = self.catch_up.lock().unwrap_or_else(|e| e.into_inner());
        match &*catch_up {
            Some(waiting) if (waiting.cpu || waiting.net) && Instant::now() < waiting.until => {
                false
            }
            Some(_) => {
                *catch_up = None;
                true
            }
            None => true,
        }
    }

    /// A collector's checkpoint: its rows up to its first sample (the recovered ones
    /// included) are in.
    fn checkpoint(&self, rows: &Rows) {
        let mut catch_up = self.catch_up.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(waiting) = catch_up.as_mut() {
            match rows {
                Rows::CpuTotals(_) => waiting.cpu = false,
                Rows::NetTotals(_) => waiting.net = false,
                _ => {}
            }
        }
    }

    /// Rows on their way to the store: counted here as they will be written.
    pub fn observe(&self, rows: &Rows) {
        let Rows::Table(rows) = rows else {
            self.checkpoint(rows);
            return;
        };
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let b = &mut budgets;
        match rows.table() {
            Table::Cpu => self.cpu(b, typed(rows)),
            Table::Net => self.net(b, typed(rows)),
            Table::NetUid => self.net_uid(b, typed(rows)),
            Table::Mem => self.mem(b, typed(rows)),
            Table::Ping => self.ping(b, typed(rows)),
            Table::Ubc => self.ubc(b, typed(rows)),
            Table::Events => {
                let events: &[EventRow] = typed(rows);
                self.events(b, events.iter().map(|r| r.event.as_str()))
            }
            // Roll-ups are the store's own: they never come through here.
            _ => {}
        }
    }

    /// An event the store wrote itself (not through the collectors' channel).
    pub fn event(&self, name: &str) {
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        self.events(&mut budgets, std::iter::once(name));
    }

    /// A flush ended: when (if it wrote everything) or one more failure.
    pub fn flushed(&self, ok: bool, at_us: i64) {
        if ok {
            self.families.last_flush.set(at_us as f64 / 1e6);
        } else {
            self.families.flushes_failed.inc();
        }
    }

    /// The Prometheus text format (0.0.4), or OpenMetrics 1.0 (ending in `# EOF`).
    pub fn encode(&self, format: Format) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let written = match format {
            Format::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
        };
        // Writing into a String cannot fail; an encoder error would be a bug in a
        // label value, and a partial exposition is worse than none.
        if written.is_err() {
            out.clear();
        }
        out
    }

    fn cpu(&self, budgets: &mut Budgets, rows: &[CpuRow]) {
        for row in rows {
            let labels = budgets
                .users
                .admit(user_labels(row.uid, row.user.as_deref()));
            let seconds = row.cpu_ns.max(0) as f64 / 1e9;
            self.families
                .user_cpu
                .get_or_create(&labels)
                .inc_by(seconds);
        }
    }

    fn net(&self, budgets: &mut Budgets, rows: &[NetRow]) {
        let f = &self.families;
        for row in rows {
            let labels = budgets.interfaces.admit(InterfaceLabels {
                interface: row.iface.clone(),
                netns: row.netns.map(|n| n.to_string()).unwrap_or_default(),
            });
            add(&f.iface_rx_bytes, &labels, row.rx_bytes);
            add(&f.iface_tx_bytes, &labels, row.tx_bytes);
            add(&f.iface_rx_packets, &labels, row.rx_packets);
            add(&f.iface_tx_packets, &labels, row.tx_packets);
        }
    }

    fn net_uid(&self, budgets: &mut Budgets, rows: &[NetUidRow]) {
        let f = &self.families;
        for row in rows {
            let labels = budgets
                .users
                .admit(user_labels(row.uid, row.user.as_deref()));
            add(&f.user_rx, &labels, row.rx_bytes);
            add(&f.user_tx, &labels, row.tx_bytes);
        }
    }

    /// One memory sample: every uid that has processes now; the gauges of uids that
    /// had some at the last sample and have none now are removed (a user who logged out
    /// uses no memory, rather than the last value forever).
    fn mem(&self, budgets: &mut Budgets, rows: &[MemRow]) {
        let f = &self.families;
        let mut sums: BTreeMap<UserLabels, MemSum> = BTreeMap::new();
        for row in rows {
            let labels = budgets
                .users
                .admit(user_labels(row.uid, row.user.as_deref()));
            sums.entry(labels).or_default().add(row);
        }
        for (labels, sum) in &sums {
            f.user_rss.get_or_create(labels).set(sum.rss);
            f.user_processes.get_or_create(labels).set(sum.nproc);
            // PSS and swap only where they were read (PSS is read every pss_interval
            // with the eBPF backend): no series rather than a false 0.
            for (family, value) in [(&f.user_pss, sum.pss), (&f.user_swap, sum.swap)] {
                if let Some(value) = value {
                    family.get_or_create(labels).set(value);
                }
            }
        }
        let now: BTreeSet<UserLabels> = sums.into_keys().collect();
        for gone in budgets.mem_users.difference(&now) {
            for family in [&f.user_rss, &f.user_pss, &f.user_swap, &f.user_processes] {
                family.remove(gone);
            }
        }
        budgets.mem_users = now;
    }

    fn ping(&self, budgets: &mut Budgets, rows: &[PingRow]) {
        let f = &self.families;
        for row in rows {
            let labels = budgets.targets.admit(TargetLabels {
                target: row.target.clone(),
            });
            let received = row.received.clamp(0, row.sent.max(0));
            add(&f.ping_sent, &labels, row.sent);
            add(&f.ping_lost, &labels, row.sent - received);
            let rtt = self.ping_rtt.get_or_create(&labels);
            for ms in &row.rtts_ms {
                rtt.observe(ms / 1000.0);
            }
            // Up when the last measurement got a reply: the outage definition of
            // `csm report` (a run of measurements without one).
            f.target_up
                .get_or_create(&labels)
                .set(i64::from(received > 0));
        }
    }

    /// The kernel's failcnt is cumulative already: the counter follows it (from its value
    /// at this daemon's start), and never goes back.
    fn ubc(&self, budgets: &mut Budgets, rows: &[UbcRow]) {
        for row in rows {
            let labels = budgets.beancounters.admit(BeancounterLabels {
                ctid: row.ctid.to_string(),
                resource: row.resource.clone(),
            });
            let counter = self.families.beancounter_failcnt.get_or_create(&labels);
            let now = non_negative(row.failcnt);
            let before = counter.get();
            if now > before {
                counter.inc_by(now - before);
            }
        }
    }

    fn events<'a>(&self, budgets: &mut Budgets, names: impl Iterator<Item = &'a str>) {
        for name in names {
            let labels = budgets.events.admit(EventLabels {
                event: name.to_string(),
            });
            self.families.events.get_or_create(&labels).inc();
        }
    }
}

/// What the scraper asked for (`Accept`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the `Accept` header names it (Prometheus asks for it first),
    /// else the Prometheus text format every scraper reads.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// A user's memory in one sample (several rows when uids fold into `(other)`).
#[derive(Default)]
struct MemSum {
    rss: i64,
    nproc: i64,
    pss: Option<i64>,
    swap: Option<i64>,
}

impl MemSum {
    fn add(&mut self, row: &MemRow) {
        self.rss += row.rss_bytes;
        self.nproc += row.nproc;
        if let Some(pss) = row.pss_bytes {
            *self.pss.get_or_insert(0) += pss;
        }
        if let Some(swap) = row.swap_bytes {
            *self.swap.get_or_insert(0) += swap;
        }
    }
}

fn user_labels(uid: i64, user: Option<&str>) -> UserLabels {
    UserLabels {
        user: user.unwrap_or_default().to_string(),
        uid: uid.to_string(),
    }
}

/// Adds a row's count (negative: a corrupt row, counted as 0) to the family's series.
fn add<L: Clone + std::hash::Hash + Eq>(family: &Family<L, Counter>, labels: &L, value: i64) {
    family.get_or_create(labels).inc_by(non_negative(value));
}

fn non_negative(value: i64) -> u64 {
    value.max(0) as u64
}

/// Registers each listed field of a [`Families`] (a clone: the registry and the
/// [`Metrics`] share the series) under its name, unit and help text.
macro_rules! register_families {
    ($registry:expr, $families:expr; $($field:ident: $name:literal, $unit:expr, $help:literal;)*) => {
        $(register_one($registry, $name, $help, $unit, $families.$field.clone());)*
    };
}

fn register_one(
    registry: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    metric: impl Metric,
) {
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, metric),
        None => registry.register(name, help, metric),
    }
}

/// A gauge of Unix seconds, registered with its unit and set to `at_us`.
fn timestamp_gauge(registry: &mut Registry, name: &str, help: &str, at_us: i64) -> FloatGauge {
    let gauge: FloatGauge = Gauge::default();
    gauge.set(at_us as f64 / 1e6);
    registry.register_with_unit(name, help, Unit::Seconds, gauge.clone());
    gauge
}

fn register(registry: &mut Registry, f: &Families, backend: &str, started_us: i64) {
    registry.register(
        "build",
        "csm's version and the backend it collects with (eBPF, or the /proc fallback)",
        Info::new(vec![
            ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
            ("backend".to_string(), backend.to_string()),
        ]),
    );
    timestamp_gauge(
        registry,
        "start_time",
        "When this daemon process started: the ping, event and flush counters were 0 then",
        started_us,
    );
    // Each family once: (field of `f`, name, unit, help).
    register_families!(registry, f;
        user_cpu: "user_cpu", Some(Unit::Seconds), "CPU time of a user's processes";
        user_rss: "user_memory_rss", Some(Unit::Bytes), "Resident memory of a user's processes";
        user_pss: "user_memory_pss", Some(Unit::Bytes), "Proportional set size of a user's processes, at the last sample that read it (no series where it cannot be read)";
        user_swap: "user_memory_swap", Some(Unit::Bytes), "Swapped-out memory of a user's processes";
        user_processes: "user_processes", None, "Processes a user has";
        user_rx: "user_network_receive", Some(Unit::Bytes), "IP-layer bytes a user's sockets received";
        user_tx: "user_network_transmit", Some(Unit::Bytes), "IP-layer bytes a user's sockets sent";
        iface_rx_bytes: "interface_receive", Some(Unit::Bytes), "Bytes an interface received";
        iface_tx_bytes: "interface_transmit", Some(Unit::Bytes), "Bytes an interface sent";
        iface_rx_packets: "interface_receive_packets", None, "Packets an interface received";
        iface_tx_packets: "interface_transmit_packets", None, "Packets an interface sent";
        ping_sent: "ping_sent", None, "Echo requests sent to a target";
        ping_lost: "ping_lost", None, "Echo requests to a target that got no reply in time";
        target_up: "target_up", None, "1 when the target's last measurement got a reply, 0 when it got none";
        beancounter_failcnt: "beancounter_failcnt", None, "Allocations an OpenVZ beancounter refused (the kernel's failcnt)";
        events: "events", None, "Rows of the events table, by event (write_error, net_uid_overflow, collector_error, ...)";
        flushes_failed: "flush_failures", None, "Flushes that could not write everything (the rows stay in memory and are retried)";
        last_flush: "last_flush_timestamp", Some(Unit::Seconds), "When the last flush wrote everything it held";
    );
}

/// The rows of `rows`' table as its row type (none if `R` is not that table's row).
fn typed<R: Row>(rows: &TableRows) -> &[R] {
    rows.get::<R>().unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use csm_store::Source;

    /// Container 101's `numproc` beancounter at `ts_us`, its failcnt as the kernel shows it.
    fn numproc(ts_us: i64, failcnt: i64) -> UbcRow {
        UbcRow {
            ts_us,
            ctid: 101,
            resource: "numproc".into(),
            held: 1,
            maxheld: 1,
            barrier: 1,
            hard_limit: 1,
            failcnt,
        }
    }

    fn cpu(uid: i64, user: &str, cpu_ns: i64) -> CpuRow {
        CpuRow {
            ts_us: 1,
            dur_ms: 1000,
            uid,
            user: Some(user.into()),
            cpu_ns,
            cpu_pct: 0.0,
            source: Source::Ebpf,
        }
    }

    fn net(iface: &str, rx: i64) -> NetRow {
        NetRow {
            ts_us: 1,
            dur_ms: 1000,
            iface: iface.into(),
            ifindex: 2,
            netns: Some(4026531840),
            rx_bytes: rx,
            tx_bytes: 2 * rx,
            rx_packets: 1,
            tx_packets: 1,
            source: Source::Ebpf,
            ..Default::default()
        }
    }

    /// One row of every table, so that every family has a series.
    fn populated() -> Metrics {
        let metrics = Metrics::new("ebpf", 1_700_000_000_000_000);
        metrics.observe(&Rows::from(vec![cpu(1000, "alice", 1_500_000_000)]));
        metrics.observe(&Rows::from(vec![net("eth0", 100)]));
        metrics.observe(&Rows::from(vec![NetUidRow {
            ts_us: 1,
            dur_ms: 1000,
            uid: 1000,
            user: Some("alice".into()),
            rx_bytes: 5,
            tx_bytes: 6,
        }]));
        metrics.observe(&Rows::from(vec![MemRow {
            ts_us: 1,
            uid: 1000,
            user: Some("alice".into()),
            nproc: 3,
            rss_bytes: 4096,
            pss_bytes: Some(2048),
            swap_bytes: None,
        }]));
        metrics.observe(&Rows::from(vec![PingRow {
            ts_us: 1,
            target: "10.0.0.1".into(),
            sent: 3,
            received: 2,
            rtts_ms: vec![0.5, 12.0],
            ..PingRow::default()
        }]));
        metrics.observe(&Rows::from(vec![numproc(1, 7)]));
        metrics.observe(&Rows::event(csm_store::Event::NetUidOverflow { uids: 1 }));
        metrics.flushed(true, 1_700_000_001_000_000);
        metrics
    }

    /// The sample names of an exposition (`name{labels} value` or `name value`).
    fn sample_names(exposition: &str) -> BTreeSet<String> {
        exposition
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split(['{', ' ']).next().map(str::to_string))
            .collect()
    }

    #[test]
    fn rows_become_counters_with_base_units() {
        let text = populated().encode(Format::Text);
        for line in [
            "csm_user_cpu_seconds_total{user=\"alice\",uid=\"1000\"} 1.5",
            "csm_interface_receive_bytes_total{interface=\"eth0\",netns=\"4026531840\"} 100",
            "csm_interface_transmit_bytes_total{interface=\"eth0\",netns=\"4026531840\"} 200",
            "csm_user_network_transmit_bytes_total{user=\"alice\",uid=\"1000\"} 6",
            "csm_user_memory_rss_bytes{user=\"alice\",uid=\"1000\"} 4096",
            "csm_ping_sent_total{target=\"10.0.0.1\"} 3",
            "csm_ping_lost_total{target=\"10.0.0.1\"} 1",
            "csm_target_up{target=\"10.0.0.1\"} 1",
            "csm_ping_rtt_seconds_bucket{target=\"10.0.0.1\",le=\"0.001\"} 1",
            "csm_beancounter_failcnt_total{ctid=\"101\",resource=\"numproc\"} 7",
            "csm_events_total{event=\"net_uid_overflow\"} 1",
            "csm_last_flush_timestamp_seconds 1700000001.0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        let open = populated().encode(Format::OpenMetrics);
        assert!(open.ends_with("# EOF\n"), "{open}");
        assert!(
            open.contains("# TYPE csm_user_cpu_seconds counter"),
            "{open}"
        );
    }

    #[test]
    fn counters_never_go_back_and_failcnt_follows_the_kernel() {
        let metrics = populated();
        metrics.observe(&Rows::from(vec![cpu(1000, "alice", -5)]));
        metrics.observe(&Rows::from(vec![numproc(2, 3)]));
        let text = metrics.encode(Format::Text);
        assert!(text.contains("csm_user_cpu_seconds_total{user=\"alice\",uid=\"1000\"} 1.5\n"));
        assert!(
            text.contains("csm_beancounter_failcnt_total{ctid=\"101\",resource=\"numproc\"} 7\n")
        );
    }

    /// What a crashed run saved continues in the next (CPU and traffic, not ping), which
    /// answers no scrape until both collectors' first checkpoints (after their
    /// recovered rows) are in.
    #[test]
    fn pinned_counters_continue_after_the_recovered_rows() {
        let saved = populated().pinned_counters();
        assert_eq!(saved.since_us, 1_700_000_000_000_000);
        assert_eq!((saved.users.len(), saved.interfaces.len()), (1, 1));
        let after = Metrics::new("ebpf", 1_800_000_000_000_000);
        after.restore(saved.clone(), true);
        assert!(!after.ready());
        after.observe(&Rows::from(vec![cpu(1000, "alice", 500_000_000)]));
        after.observe(&Rows::CpuTotals(crate::model::CpuSample::default()));
        assert!(
            !after.ready(),
            "the traffic collector's recovered rows are not in"
        );
        after.observe(&Rows::NetTotals(crate::model::NetSample::default()));
        assert!(after.ready());
        let text = after.encode(Format::Text);
        for line in [
            "csm_user_cpu_seconds_total{user=\"alice\",uid=\"1000\"} 2.0",
            "csm_interface_receive_bytes_total{interface=\"eth0\",netns=\"4026531840\"} 100",
            "csm_user_network_transmit_bytes_total{user=\"alice\",uid=\"1000\"} 6",
            "csm_counters_reset_timestamp_seconds 1700000000.0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        assert!(!text.contains("csm_ping_sent_total{"), "{text}");
        let again = after.pinned_counters();
        assert_eq!(again.interfaces, saved.interfaces);
        assert_eq!(again.users[0].cpu_seconds, 2.0);
    }

    /// A restored run whose collector never sends its checkpoint (its first sample
    /// failed) answers scrapes again after [`CATCH_UP_AT_MOST`], and a run that
    /// restored nothing answers at once.
    #[test]
    fn a_restore_holds_scrapes_for_a_bounded_time() {
        let metrics = Metrics::new("ebpf", 0);
        assert!(metrics.ready());
        metrics.restore(PinnedCounters::default(), false);
        assert!(!metrics.ready());
        if let Some(waiting) = metrics.catch_up.lock().unwrap().as_mut() {
            waiting.until = Instant::now();
        }
        assert!(metrics.ready());
    }

    #[test]
    fn a_user_without_processes_loses_the_memory_gauges() {
        let metrics = populated();
        metrics.observe(&Rows::from(Vec::<MemRow>::new()));
        let text = metrics.encode(Format::Text);
        assert!(!text.contains("csm_user_memory_rss_bytes{"), "{text}");
    }

    #[test]
    fn series_past_the_budget_fold_into_other() {
        let metrics = Metrics::new("ebpf", 0);
        let rows: Vec<NetRow> = (0..MAX_SERIES_PER_FAMILY + 50)
            .map(|i| net(&format!("veth{i}"), 1))
            .collect();
        metrics.observe(&Rows::from(rows));
        let text = metrics.encode(Format::Text);
        let series = text
            .lines()
            .filter(|l| l.starts_with("csm_interface_receive_bytes_total{"))
            .count();
        assert_eq!(series, MAX_SERIES_PER_FAMILY);
        let other = "csm_interface_receive_bytes_total{interface=\"(other)\",netns=\"(other)\"} 51";
        assert!(text.lines().any(|l| l == other), "{text}");
    }

    /// The Grafana dashboard in `packaging/` parses, and every metric its queries name
    /// is one csm exposes.
    #[test]
    fn the_dashboard_queries_only_metrics_that_exist() {
        let dashboard: serde_json::Value = serde_json::from_str(include_str!(
            "../../../packaging/grafana/csm-dashboard.json"
        ))
        .expect("the dashboard is JSON");
        let exposed = sample_names(&populated().encode(Format::Text));
        let mut queries = Vec::new();
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                queries.push(target["expr"].as_str().expect("expr").to_string());
            }
        }
        for variable in dashboard["templating"]["list"].as_array().unwrap() {
            if variable["type"] == "query" {
                queries.push(variable["query"].as_str().unwrap().to_string());
            }
        }
        assert!(queries.len() >= 10, "{queries:?}");
        let mut named = 0;
        for query in &queries {
            for name in metric_names(query) {
                named += 1;
                assert!(
                    exposed.contains(&name),
                    "{name} (in {query}) is not exposed: {exposed:?}"
                );
            }
        }
        assert!(named >= queries.len());
    }

    /// The `csm_…` identifiers of a PromQL expression.
    fn metric_names(query: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = query;
        while let Some(at) = rest.find("csm_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            names.push(name);
        }
        names
    }
}
