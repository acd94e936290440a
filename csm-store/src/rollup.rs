//! 1-minute roll-ups of a finished hour (`cpu_1m`, `net_1m`, `net_uid_1m`, `mem_1m`,
//! `ping_1m`).
//!
//! Rules:
//! - A counter row (`cpu`, `net`, `net_uid`) goes to the minute holding the middle of the
//!   interval it covers, clamped into the row's own hour, so every raw row lands in exactly
//!   one roll-up row of exactly one hourly roll-up file.
//! - Counters are summed. `dur_ms` is the time the minute's rows cover (the sum of the
//!   lengths of the distinct intervals seen in that minute, across the whole table); it can
//!   exceed 60 000 when a row covers a collection gap (a recovery after a crash).
//! - Rates are means over the covered time; `*_max` keep the highest single interval so
//!   that spikes survive the roll-up.
//! - Gauges (`mem`) go to the minute they were sampled in: count, mean and max.
//! - Ping measurements go to the minute they started in (their `ts`): sent and received
//!   summed, RTT min/mean/max and percentiles over every reply of the minute.
//! - `ts` of a roll-up row is the end of its minute; the file's rows are sorted by minute,
//!   then by key.
//!
//! What is held: a [`Job`] reads the hour's parts twice, a row group at a time. The first
//! pass decodes only the columns that place a row in its minute (`ts`, and `dur_ms` for
//! counters) and notes, for each minute, its last row (part, row group, row: the
//! [`Plan`]) and the intervals each minute covers. The second pass adds the rows up and,
//! after each batch, writes out every minute whose last row is read (and every minute
//! before it, so that the file stays sorted), as rows of the roll-up file: a temporary,
//! renamed over the roll-up file at the end, in row groups of about 4 MiB encoded. So what
//! is held is the minutes a later row still adds to: with parts in time order, as the
//! daemon writes them, a minute or two of keys, whatever the hour's keys × 60 minutes;
//! with rows out of order (a part written after a restart, a spill taken in), the minutes
//! they reach back to, at most the hour's. The result does not depend on the order.
//! One difference from reading once: a part the reader refuses only in the second pass
//! (a string column past its bounds, which the first pass does not decode: not a file csm
//! wrote) has its intervals counted in `dur_ms`, though its rows are left out as before.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::beneath;
use crate::column::{read_column, Kind};
use crate::events::Source;
use crate::layout::{self, hour_of, MICROS_PER_HOUR};
use crate::reader::{for_each_batch_in, BOUNDS};
use crate::table::{FromBatch, Row, Table};
use crate::tables::{
    CpuMinuteRow, CpuRow, MemMinuteRow, MemRow, NetMinuteRow, NetRow, NetUidMinuteRow, NetUidRow,
    PingMinuteRow, PingRow,
};
use crate::writer::{writer_properties, StreamedPart, WriteError};

pub const MICROS_PER_MINUTE: i64 = 60_000_000;

/// Start of the minute a counter row belongs to (see the module rules).
fn counter_minute(ts_us: i64, dur_ms: i64) -> i64 {
    // Saturating: a corrupt `dur_ms` read back from disk must not overflow.
    let middle = ts_us.saturating_sub(dur_ms.max(0).saturating_mul(500));
    let minute = middle.div_euclid(MICROS_PER_MINUTE) * MICROS_PER_MINUTE;
    let hour_start = hour_of(ts_us) * MICROS_PER_HOUR;
    minute.clamp(hour_start, hour_start + MICROS_PER_HOUR - MICROS_PER_MINUTE)
}

fn gauge_minute(ts_us: i64) -> i64 {
    ts_us.div_euclid(MICROS_PER_MINUTE) * MICROS_PER_MINUTE
}

/// Each distinct interval end of an hour at its longest length: what a minute's rows
/// cover (see [`Intervals::per_minute`]).
#[derive(Default)]
pub struct Intervals(BTreeMap<i64, i64>);

impl Intervals {
    fn add(&mut self, ts: i64, dur: i64) {
        let d = self.0.entry(ts).or_default();
        *d = (*d).max(dur);
    }

    /// Covered milliseconds per minute: each distinct interval end counted once.
    fn per_minute(&self) -> Covered {
        let mut per_minute = BTreeMap::new();
        for (&ts, &dur) in &self.0 {
            let covered = per_minute.entry(counter_minute(ts, dur)).or_default();
            *covered = dur.max(0).saturating_add(*covered);
        }
        Covered(per_minute)
    }
}

/// The milliseconds each minute's intervals cover, by minute start.
#[derive(Default)]
pub struct Covered(BTreeMap<i64, i64>);

impl Covered {
    fn of(&self, minute: i64) -> i64 {
        self.0.get(&minute).copied().unwrap_or(0)
    }
}

/// Where a row is in the hour's reading order: (part, row group, row in the group).
type Place = (usize, usize, usize);

/// What the first pass finds in an hour's parts.
#[derive(Default)]
pub struct Plan {
    intervals: Intervals,
    /// Each minute's last row.
    last: BTreeMap<i64, Place>,
}

impl Plan {
    fn note<R: RollUp>(&mut self, ts_us: i64, dur_ms: i64, at: Place) {
        let last = self.last.entry(R::minute_of(ts_us, dur_ms)).or_insert(at);
        *last = (*last).max(at);
        if R::COUNTER {
            self.intervals.add(ts_us, dur_ms);
        }
    }

    /// The start of the first minute a row after `passed` still adds to: every minute
    /// before it is whole once `passed` is read.
    fn whole_before(&self, passed: Place) -> i64 {
        self.last
            .iter()
            .find(|(_, &last)| last > passed)
            .map_or(i64::MAX, |(&minute, _)| minute)
    }
}

/// Minutes being added up: by minute start, then by key, so that the minutes done are
/// taken out oldest first, each in key order.
pub struct ByMinute<K, V>(BTreeMap<i64, BTreeMap<K, V>>);

impl<K, V> Default for ByMinute<K, V> {
    fn default() -> Self {
        ByMinute(BTreeMap::new())
    }
}

impl<K: Ord, V> ByMinute<K, V> {
    /// The value under `key` in `minute`, made by `new(minute end)` the first time.
    fn entry(&mut self, minute: i64, key: K, new: impl FnOnce(i64) -> V) -> &mut V {
        self.0
            .entry(minute)
            .or_default()
            .entry(key)
            .or_insert_with(|| new(minute.saturating_add(MICROS_PER_MINUTE)))
    }

    /// The minutes that start before `end`, taken out: (minute start, key, value).
    fn take_before(&mut self, end: i64) -> impl Iterator<Item = (i64, K, V)> {
        let later = self.0.split_off(&end);
        std::mem::replace(&mut self.0, later)
            .into_iter()
            .flat_map(|(minute, keys)| keys.into_iter().map(move |(k, v)| (minute, k, v)))
    }

    /// The minute rows of the minutes before `end`, with each one's covered time set by
    /// `cover(row, covered_ms)`.
    fn take_covered(&mut self, end: i64, covered: &Covered, cover: impl Fn(&mut V, i64)) -> Vec<V> {
        self.take_before(end)
            .map(|(minute, _, mut row)| {
                cover(&mut row, covered.of(minute));
                row
            })
            .collect()
    }
}

/// A minute row's user name: the last one its rows knew (a row may come without one).
fn keep_known_name(name: &mut Option<String>, seen: &Option<String>) {
    if seen.is_some() {
        name.clone_from(seen);
    }
}

fn rate_per_s(value: i64, dur_ms: i64) -> f64 {
    if dur_ms <= 0 {
        0.0
    } else {
        value as f64 * 1000.0 / dur_ms as f64
    }
}

fn add_cpu(acc: &mut ByMinute<i64, CpuMinuteRow>, rows: &[CpuRow]) {
    for r in rows {
        let minute = counter_minute(r.ts_us, r.dur_ms);
        let row = acc.entry(minute, r.uid, |ts_us| CpuMinuteRow {
            ts_us,
            uid: r.uid,
            source: r.source,
            ..Default::default()
        });
        row.cpu_ns = row.cpu_ns.saturating_add(r.cpu_ns);
        row.cpu_pct_max = row.cpu_pct_max.max(r.cpu_pct);
        keep_known_name(&mut row.user, &r.user);
    }
}

fn take_cpu(
    acc: &mut ByMinute<i64, CpuMinuteRow>,
    end: i64,
    covered: &Covered,
) -> Vec<CpuMinuteRow> {
    acc.take_covered(end, covered, |r, covered| {
        r.dur_ms = covered;
        r.cpu_pct = if covered > 0 {
            r.cpu_ns as f64 * 100.0 / (covered as f64 * 1e6)
        } else {
            0.0
        };
    })
}

pub fn cpu_minutes(rows: &[CpuRow]) -> Vec<CpuMinuteRow> {
    CpuRow::minutes(rows)
}

/// An interface: name, index, namespace.
type NetKey = (String, i64, Option<i64>);

/// The interfaces of an hour, each held once: a minute's entries refer to them by number
/// (an entry of a minute is then about 130 bytes, not its row and a copy of the name).
#[derive(Default)]
pub struct Interfaces {
    /// By name, then (index, namespace): found without making a key.
    numbers: HashMap<String, Vec<(i64, Option<i64>, u32)>>,
    keys: Vec<NetKey>,
}

impl Interfaces {
    fn number(&mut self, r: &NetRow) -> u32 {
        if let Some(same) = self.numbers.get(r.iface.as_str()) {
            if let Some(&(_, _, n)) = same
                .iter()
                .find(|&&(i, ns, _)| (i, ns) == (r.ifindex, r.netns))
            {
                return n;
            }
        }
        let n = self.keys.len() as u32;
        self.keys.push((r.iface.clone(), r.ifindex, r.netns));
        self.numbers
            .entry(r.iface.clone())
            .or_default()
            .push((r.ifindex, r.netns, n));
        n
    }
}

/// One interface's counters of one minute.
pub struct NetAcc {
    source: Source,
    bytes_packets: [i64; 4],
    rates_max: [f64; 2],
    errors_drops: [Option<i64>; 4],
}

/// `net`'s minutes: interfaces by number.
#[derive(Default)]
pub struct NetMinutes {
    interfaces: Interfaces,
    minutes: ByMinute<u32, NetAcc>,
}

fn add_net(acc: &mut NetMinutes, rows: &[NetRow]) {
    for r in rows {
        let number = acc.interfaces.number(r);
        let minute = counter_minute(r.ts_us, r.dur_ms);
        let sums = acc.minutes.entry(minute, number, |_| NetAcc {
            source: r.source,
            bytes_packets: [0; 4],
            rates_max: [0.0; 2],
            errors_drops: [None; 4],
        });
        let values = [r.rx_bytes, r.tx_bytes, r.rx_packets, r.tx_packets];
        for (sum, v) in sums.bytes_packets.iter_mut().zip(values) {
            *sum = sum.saturating_add(v);
        }
        let rates = [
            rate_per_s(r.rx_bytes, r.dur_ms),
            rate_per_s(r.tx_bytes, r.dur_ms),
        ];
        for (max, rate) in sums.rates_max.iter_mut().zip(rates) {
            *max = max.max(rate);
        }
        let known = [r.rx_errors, r.tx_errors, r.rx_dropped, r.tx_dropped];
        for (sum, v) in sums.errors_drops.iter_mut().zip(known) {
            *sum = sum_known(*sum, v);
        }
    }
}

/// The minutes' rows in the file's order: by minute, then by interface.
fn take_net(acc: &mut NetMinutes, end: i64, covered: &Covered) -> Vec<NetMinuteRow> {
    let keys = &acc.interfaces.keys;
    let mut taken: Vec<(i64, &NetKey, NetAcc)> = acc
        .minutes
        .take_before(end)
        .map(|(minute, number, sums)| (minute, &keys[number as usize], sums))
        .collect();
    taken.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    taken
        .into_iter()
        .map(|(minute, (iface, ifindex, netns), sums)| {
            let [rx_bytes, tx_bytes, rx_packets, tx_packets] = sums.bytes_packets;
            let [rx_bytes_per_s_max, tx_bytes_per_s_max] = sums.rates_max;
            let [rx_errors, tx_errors, rx_dropped, tx_dropped] = sums.errors_drops;
            NetMinuteRow {
                ts_us: minute + MICROS_PER_MINUTE,
                dur_ms: covered.of(minute),
                iface: iface.clone(),
                ifindex: *ifindex,
                netns: *netns,
                rx_bytes,
                tx_bytes,
                rx_packets,
                tx_packets,
                rx_bytes_per_s_max,
                tx_bytes_per_s_max,
                source: sums.source,
                rx_errors,
                tx_errors,
                rx_dropped,
                tx_dropped,
            }
        })
        .collect()
}

pub fn net_minutes(rows: &[NetRow]) -> Vec<NetMinuteRow> {
    NetRow::minutes(rows)
}

/// The sum of the values that are known, null only when none is: how counts that may be
/// unknown (the `net` error and drop columns) add up, in roll-ups and readers alike.
pub fn sum_known(acc: Option<i64>, value: Option<i64>) -> Option<i64> {
    match (acc, value) {
        (Some(a), Some(v)) => Some(a.saturating_add(v)),
        (a, v) => a.or(v),
    }
}

fn add_net_uid(acc: &mut ByMinute<i64, NetUidMinuteRow>, rows: &[NetUidRow]) {
    for r in rows {
        let minute = counter_minute(r.ts_us, r.dur_ms);
        let row = acc.entry(minute, r.uid, |ts_us| NetUidMinuteRow {
            ts_us,
            uid: r.uid,
            ..Default::default()
        });
        row.rx_bytes = row.rx_bytes.saturating_add(r.rx_bytes);
        row.tx_bytes = row.tx_bytes.saturating_add(r.tx_bytes);
        keep_known_name(&mut row.user, &r.user);
    }
}

fn take_net_uid(
    acc: &mut ByMinute<i64, NetUidMinuteRow>,
    end: i64,
    covered: &Covered,
) -> Vec<NetUidMinuteRow> {
    acc.take_covered(end, covered, |r, covered| r.dur_ms = covered)
}

pub fn net_uid_minutes(rows: &[NetUidRow]) -> Vec<NetUidMinuteRow> {
    NetUidRow::minutes(rows)
}

/// One uid's memory samples of one minute.
#[derive(Default)]
pub struct MemAcc {
    user: Option<String>,
    n: i64,
    nproc_max: i64,
    rss_sum: i128,
    rss_max: i64,
    pss: (i128, i64),
    swap: (i128, i64),
}

fn add_mem(acc: &mut ByMinute<i64, MemAcc>, rows: &[MemRow]) {
    for r in rows {
        let acc = acc.entry(gauge_minute(r.ts_us), r.uid, |_| MemAcc::default());
        acc.n += 1;
        acc.nproc_max = acc.nproc_max.max(r.nproc);
        acc.rss_sum += r.rss_bytes as i128;
        acc.rss_max = acc.rss_max.max(r.rss_bytes);
        if let Some(p) = r.pss_bytes {
            acc.pss.0 += p as i128;
            acc.pss.1 += 1;
        }
        if let Some(s) = r.swap_bytes {
            acc.swap.0 += s as i128;
            acc.swap.1 += 1;
        }
        keep_known_name(&mut acc.user, &r.user);
    }
}

fn take_mem(acc: &mut ByMinute<i64, MemAcc>, end: i64, _: &Covered) -> Vec<MemMinuteRow> {
    let mean = |(sum, n): (i128, i64)| (n > 0).then(|| (sum / n as i128) as i64);
    acc.take_before(end)
        .map(|(minute, uid, a)| MemMinuteRow {
            ts_us: minute + MICROS_PER_MINUTE,
            uid,
            user: a.user,
            samples: a.n,
            nproc_max: a.nproc_max,
            rss_bytes_mean: (a.rss_sum / a.n.max(1) as i128) as i64,
            rss_bytes_max: a.rss_max,
            pss_bytes_mean: mean(a.pss),
            swap_bytes_mean: mean(a.swap),
        })
        .collect()
}

pub fn mem_minutes(rows: &[MemRow]) -> Vec<MemMinuteRow> {
    MemRow::minutes(rows)
}

/// One target's measurements of one minute.
#[derive(Default)]
pub struct PingAcc {
    measurements: i64,
    sent: i64,
    rtts: Vec<f64>,
}

fn add_ping(acc: &mut ByMinute<String, PingAcc>, rows: &[PingRow]) {
    for r in rows {
        let acc = acc.entry(gauge_minute(r.ts_us), r.target.clone(), |_| {
            PingAcc::default()
        });
        acc.measurements += 1;
        acc.sent = acc.sent.saturating_add(r.sent.max(0));
        acc.rtts
            .extend(r.rtts_ms.iter().copied().filter(|v| v.is_finite()));
    }
}

/// Per target and minute. `received` counts the replies (the RTTs recorded), as the raw
/// rows' `received` does. Percentiles are exact nearest ranks over every reply of the
/// minute (the smallest RTT with at least p % of the replies at or below it): a minute
/// holds a few hundred replies at most, so sorting them costs nothing.
fn take_ping(acc: &mut ByMinute<String, PingAcc>, end: i64, _: &Covered) -> Vec<PingMinuteRow> {
    acc.take_before(end)
        .map(|(minute, target, mut a)| {
            a.rtts.sort_by(f64::total_cmp);
            let received = a.rtts.len() as i64;
            let rank = |p: f64| crate::stats::quantile_sorted(&a.rtts, p);
            PingMinuteRow {
                ts_us: minute + MICROS_PER_MINUTE,
                target,
                measurements: a.measurements,
                sent: a.sent,
                received,
                loss_pct: crate::stats::loss_pct(a.sent, received),
                rtt_min_ms: a.rtts.first().copied(),
                rtt_avg_ms: (received > 0).then(|| a.rtts.iter().sum::<f64>() / received as f64),
                rtt_p50_ms: rank(0.5),
                rtt_p90_ms: rank(0.9),
                rtt_p99_ms: rank(0.99),
                rtt_max_ms: a.rtts.last().copied(),
            }
        })
        .collect()
}

pub fn ping_minutes(rows: &[PingRow]) -> Vec<PingMinuteRow> {
    PingRow::minutes(rows)
}

/// What [`Table::visit_written`](crate::Table::visit_written) hands each table's row
/// type to, by how the daemon writes it.
pub trait WrittenTables {
    fn rolled_up<R: RollUp>(&mut self);
    fn plain<R: Row + FromBatch>(&mut self);
}

/// A raw table with a 1-minute roll-up: its rows, added batch after batch, make the
/// roll-up's rows. What is held between batches is one entry per key and minute (and a
/// minute's RTTs for `ping`) of the minutes not yet taken out, never the raw rows.
pub trait RollUp: Row + FromBatch {
    type Minute: Row;
    type Acc: Default + Send;
    /// Whether rows cover an interval (`dur_ms`, placed by its middle) or are samples
    /// (placed by their `ts`).
    const COUNTER: bool;
    /// The columns that place a row in its minute (see [`RollUp::minute_of`]).
    const PLACED_BY: &'static [&'static str];
    /// The row's end (or sampling time) and length (0 for samples).
    fn interval(&self) -> (i64, i64);
    fn add(acc: &mut Self::Acc, rows: &[Self]);
    /// The minute rows of every minute that starts before `end`, taken out of `acc`, in
    /// the file's order.
    fn take_before(acc: &mut Self::Acc, end: i64, covered: &Covered) -> Vec<Self::Minute>;

    /// Start of the minute a row of this `ts` and `dur_ms` goes to.
    fn minute_of(ts_us: i64, dur_ms: i64) -> i64 {
        if Self::COUNTER {
            counter_minute(ts_us, dur_ms)
        } else {
            gauge_minute(ts_us)
        }
    }

    /// The roll-up of rows all at hand.
    fn minutes(rows: &[Self]) -> Vec<Self::Minute> {
        let mut plan = Plan::default();
        for row in rows {
            let (ts_us, dur_ms) = row.interval();
            plan.note::<Self>(ts_us, dur_ms, (0, 0, 0));
        }
        let mut acc = Self::Acc::default();
        Self::add(&mut acc, rows);
        Self::take_before(&mut acc, i64::MAX, &plan.intervals.per_minute())
    }
}

macro_rules! roll_ups {
    ($($raw:ident => $minute:ty, $acc:ty: $add:ident, $take:ident, $kind:ident;)+) => {$(
        impl RollUp for $raw {
            type Minute = $minute;
            type Acc = $acc;
            const COUNTER: bool = roll_ups!(@counter $kind);
            const PLACED_BY: &'static [&'static str] = roll_ups!(@placed $raw $kind);
            fn interval(&self) -> (i64, i64) {
                roll_ups!(@interval self $kind)
            }
            fn add(acc: &mut $acc, rows: &[Self]) {
                $add(acc, rows)
            }
            fn take_before(acc: &mut $acc, end: i64, covered: &Covered) -> Vec<$minute> {
                $take(acc, end, covered)
            }
        }
    )+};
    (@counter counter) => { true };
    (@counter gauge) => { false };
    (@placed $raw:ident counter) => { &[$raw::COLUMN.ts_us, $raw::COLUMN.dur_ms] };
    (@placed $raw:ident gauge) => { &[$raw::COLUMN.ts_us] };
    (@interval $row:ident counter) => { ($row.ts_us, $row.dur_ms) };
    (@interval $row:ident gauge) => { ($row.ts_us, 0) };
}

roll_ups! {
    CpuRow => CpuMinuteRow, ByMinute<i64, CpuMinuteRow>: add_cpu, take_cpu, counter;
    MemRow => MemMinuteRow, ByMinute<i64, MemAcc>: add_mem, take_mem, gauge;
    NetRow => NetMinuteRow, NetMinutes: add_net, take_net, counter;
    NetUidRow => NetUidMinuteRow, ByMinute<i64, NetUidMinuteRow>: add_net_uid, take_net_uid, counter;
    PingRow => PingMinuteRow, ByMinute<String, PingAcc>: add_ping, take_ping, gauge;
}

/// Which pass a [`Job`] is in (see the module notes).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Placing each row in its minute: the [`Plan`].
    Plan,
    /// Adding rows up and writing out the minutes done.
    Add,
}

/// One hour's roll-up in progress: the raw parts of the hour, the next row group to
/// read, the plan, the minutes not yet written out and the roll-up file being written. It
/// goes through the hour a few row groups per step (so that a flood of raw rows neither
/// holds them nor stalls a flush), twice (see the module notes), and puts the roll-up
/// file in place at the end, from every row of every part: nothing is skipped. A daemon
/// stopped mid-way leaves no roll-up file (the temporary is removed), finds the hour
/// without one at its next start and rolls it up again from the start.
pub struct Job<R: RollUp> {
    hour: i64,
    /// The hour's part names, listed at the first step.
    parts: Option<Vec<OsString>>,
    pass: Pass,
    /// The row group read next: (part, row group).
    at: (usize, usize),
    plan: Plan,
    minutes: Minutes<R>,
}

/// The second pass's minutes, and the roll-up file they are written out to.
struct Minutes<R: RollUp> {
    acc: R::Acc,
    /// What each minute covers, from the plan.
    covered: Covered,
    /// The roll-up file, from its first rows on.
    file: Option<StreamedPart>,
}

impl<R: RollUp> Minutes<R> {
    /// Writes out the minutes that start before `end` to the roll-up file at `path`, a
    /// minute at a time: beside the minutes held, one minute's rows are, not all of them
    /// when the hour's rows come out of order.
    fn write_before(
        &mut self,
        plan: &Plan,
        end: i64,
        data_dir: &Path,
        path: &Path,
        host: &str,
    ) -> io::Result<()> {
        let minute_ends = plan
            .last
            .range(..end)
            .map(|(&minute, _)| minute.saturating_add(MICROS_PER_MINUTE));
        // Then whatever the plan did not foresee (a part changed between the passes).
        for until in minute_ends.chain([end]) {
            let rows = R::take_before(&mut self.acc, until.min(end), &self.covered);
            if !rows.is_empty() {
                self.write(&rows, data_dir, path, host)?;
            }
        }
        Ok(())
    }

    fn write(
        &mut self,
        rows: &[R::Minute],
        data_dir: &Path,
        path: &Path,
        host: &str,
    ) -> io::Result<()> {
        let file = match self.file.as_mut() {
            Some(file) => file,
            None => {
                // Written once: the final compression.
                let props = Arc::new(writer_properties(R::Minute::TABLE, host));
                self.file
                    .insert(StreamedPart::create::<R::Minute>(data_dir, path, &props)?)
            }
        };
        file.write(rows)
    }
}

/// A roll-up job of any table, for the store's queue.
pub trait Step: Send {
    /// The raw table and hour rolled up.
    fn what(&self) -> (Table, i64);
    /// Reads row groups until about `rows` rows are read or the hour is done; puts the
    /// roll-up file in place when done. Returns the rows read and whether it is done. A
    /// part that cannot be read is not ours to fix: it is warned about, named, and the
    /// rest rolled up.
    fn step(
        &mut self,
        data_dir: &Path,
        host: &str,
        rows: usize,
    ) -> Result<(usize, bool), WriteError>;
}

impl<R: RollUp> Job<R> {
    pub fn new(hour: i64) -> Job<R> {
        Job {
            hour,
            parts: None,
            pass: Pass::Plan,
            at: (0, 0),
            plan: Plan::default(),
            minutes: Minutes {
                acc: R::Acc::default(),
                covered: Covered::default(),
                file: None,
            },
        }
    }

    /// The folder of the hour's raw parts below `data_dir`, opened without following a link.
    fn open_dir(
        &self,
        data_dir: &Path,
        host: &str,
    ) -> Option<(std::os::fd::OwnedFd, PathBuf, String)> {
        let raw = layout::table_host_dir(data_dir, R::TABLE, host);
        let (dir, hh) = layout::hour_location(&raw, self.hour);
        let rel = dir.strip_prefix(data_dir).ok()?;
        match beneath::open_dir(data_dir, rel, false) {
            Ok(fd) => Some((fd, dir, hh)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => {
                tracing::warn!("roll-up skips {}: {err}", dir.display());
                None
            }
        }
    }

    /// The first pass over the row group at `self.at` of `file`; returns the part's row
    /// groups.
    fn plan_group(
        &mut self,
        file: std::fs::File,
        path: &Path,
        read: &mut usize,
    ) -> io::Result<usize> {
        let (part, group) = self.at;
        let plan = &mut self.plan;
        let mut row = 0;
        for_each_batch_in(
            file,
            path,
            Some(R::PLACED_BY),
            &BOUNDS,
            Some(group..group + 1),
            |batch| {
                let ts: Vec<i64> =
                    read_column(&batch, R::PLACED_BY[0], Kind::Time).map_err(io::Error::other)?;
                let dur: Vec<i64> = match R::PLACED_BY.get(1) {
                    Some(name) => {
                        read_column(&batch, name, Kind::Measured).map_err(io::Error::other)?
                    }
                    None => vec![0; ts.len()],
                };
                *read += ts.len();
                for (ts_us, dur_ms) in ts.into_iter().zip(dur) {
                    plan.note::<R>(ts_us, dur_ms, (part, group, row));
                    row += 1;
                }
                Ok(())
            },
        )
    }

    /// The second pass over the row group at `self.at` of `file`: its rows added up, and
    /// after each batch the minutes no later row adds to written out. Returns the part's
    /// row groups, or `Err(Ok(_))` when the roll-up file could not be written.
    fn add_group(
        &mut self,
        file: std::fs::File,
        path: &Path,
        read: &mut usize,
        out: (&Path, &Path, &str),
    ) -> Result<usize, Result<io::Error, io::Error>> {
        let (part, group) = self.at;
        let (plan, minutes) = (&self.plan, &mut self.minutes);
        let (data_dir, out_path, host) = out;
        let mut row = 0;
        let mut write_error = None;
        let result =
            for_each_batch_in(file, path, None, &BOUNDS, Some(group..group + 1), |batch| {
                let rows = R::from_batch(&batch).map_err(io::Error::other)?;
                *read += rows.len();
                R::add(&mut minutes.acc, &rows);
                row += rows.len();
                let end = plan.whole_before((part, group, row.saturating_sub(1)));
                minutes
                    .write_before(plan, end, data_dir, out_path, host)
                    .map_err(|err| {
                        let said = err.to_string();
                        write_error = Some(err);
                        io::Error::other(said)
                    })
            });
        match (result, write_error) {
            (_, Some(err)) => Err(Ok(err)),
            (Ok(groups), None) => Ok(groups),
            (Err(err), None) => Err(Err(err)),
        }
    }

    /// The second pass starts from the first part.
    fn start_adding(&mut self) {
        self.minutes.covered = std::mem::take(&mut self.plan.intervals).per_minute();
        (self.pass, self.at) = (Pass::Add, (0, 0));
    }

    fn out_path(&self, data_dir: &Path, host: &str) -> PathBuf {
        let dir = layout::table_host_dir(data_dir, R::Minute::TABLE, host);
        let (date_dir, hh) = layout::hour_location(&dir, self.hour);
        date_dir.join(format!("{hh}.parquet"))
    }
}

impl<R: RollUp> Step for Job<R>
where
    R::Acc: Send,
{
    fn what(&self) -> (Table, i64) {
        (R::TABLE, self.hour)
    }

    fn step(
        &mut self,
        data_dir: &Path,
        host: &str,
        rows: usize,
    ) -> Result<(usize, bool), WriteError> {
        let Some((fd, dir, hh)) = self.open_dir(data_dir, host) else {
            return self.done(data_dir, host, 0);
        };
        let parts = self
            .parts
            .get_or_insert_with(|| match beneath::entries(&fd) {
                Ok(entries) => {
                    layout::hour_part_names(entries.into_iter().map(|(name, _)| name), &hh)
                }
                Err(err) => {
                    tracing::warn!("roll-up skips {}: {err}", dir.display());
                    Vec::new()
                }
            })
            .clone();
        let out_path = self.out_path(data_dir, host);
        let mut read = 0;
        while read < rows {
            let Some(name) = parts.get(self.at.0).cloned() else {
                if self.pass == Pass::Plan {
                    self.start_adding();
                    continue;
                }
                return self.done(data_dir, host, read);
            };
            let path = dir.join(&name);
            let (part, group) = self.at;
            let file = beneath::open_regular_at(&fd, name.as_os_str()).map_err(Err);
            let result = file.and_then(|file| match self.pass {
                Pass::Plan => self.plan_group(file, &path, &mut read).map_err(Err),
                Pass::Add => self.add_group(file, &path, &mut read, (data_dir, &out_path, host)),
            });
            // The last row read: the row group's last, or the part's when it ends here.
            let passed = match result {
                Ok(groups) if group + 1 < groups => {
                    self.at.1 += 1;
                    (part, group, usize::MAX)
                }
                Ok(_) => {
                    self.at = (part + 1, 0);
                    (part, usize::MAX, usize::MAX)
                }
                Err(Ok(source)) => {
                    return Err(WriteError {
                        path: out_path,
                        source,
                    })
                }
                Err(Err(err)) => {
                    // Refused or unreadable from its start: what it holds is not csm's.
                    tracing::warn!("roll-up skips {}: {err}", path.display());
                    self.at = (part + 1, 0);
                    (part, usize::MAX, usize::MAX)
                }
            };
            if self.pass == Pass::Add {
                let end = self.plan.whole_before(passed);
                self.minutes
                    .write_before(&self.plan, end, data_dir, &out_path, host)
                    .map_err(|source| WriteError {
                        path: out_path.clone(),
                        source,
                    })?;
            }
        }
        Ok((read, false))
    }
}

impl<R: RollUp> Job<R> {
    /// Writes out every minute left and puts the roll-up file in place (none when the
    /// hour has no rows).
    fn done(
        &mut self,
        data_dir: &Path,
        host: &str,
        read: usize,
    ) -> Result<(usize, bool), WriteError> {
        let path = self.out_path(data_dir, host);
        let hour = self.hour;
        let mut job = std::mem::replace(self, Job::new(hour));
        let written = job
            .minutes
            .write_before(&job.plan, i64::MAX, data_dir, &path, host)
            .and_then(|()| job.minutes.file.take().map_or(Ok(()), StreamedPart::finish));
        written
            .map(|()| (read, true))
            .map_err(|source| WriteError { path, source })
    }
}

/// A new roll-up job of `R`'s table for `hour`.
pub(crate) fn job<R: RollUp>(hour: i64) -> Box<dyn Step>
where
    R::Acc: Send,
{
    Box::new(Job::<R>::new(hour))
}

/// Rolls up one finished hour of a raw table whole (every part, every row group) and
/// writes its roll-up file. Idempotent: the roll-up is always computed from all parts.
pub fn roll_up<R: RollUp>(data_dir: &Path, host: &str, hour: i64) -> Result<(), WriteError>
where
    R::Acc: Send,
{
    let mut job = Job::<R>::new(hour);
    while !job.step(data_dir, host, usize::MAX)?.1 {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Source;

    const H: i64 = 1_795_647_600_000_000; // 2026-11-25T23:00:00Z

    fn cpu(ts_s: i64, uid: i64, ns: i64) -> CpuRow {
        CpuRow {
            ts_us: H + ts_s * 1_000_000 + 3_000,
            dur_ms: 1000,
            uid,
            user: Some(format!("u{uid}")),
            cpu_ns: ns,
            cpu_pct: ns as f64 / 1e7,
            source: Source::Ebpf,
        }
    }

    #[test]
    fn cpu_sums_counters_keeps_the_spike_and_means_over_coverage() {
        // uid 1 busy for the first minute (60 rows ending at 1..=60 s), with one spike;
        // uid 2 only a few seconds.
        let mut rows: Vec<CpuRow> = (1..=60).map(|s| cpu(s, 1, 500_000_000)).collect();
        rows[10].cpu_ns = 1_000_000_000;
        rows[10].cpu_pct = 100.0;
        rows.push(cpu(5, 2, 100_000_000));
        rows.push(cpu(61, 1, 200_000_000));
        let out = cpu_minutes(&rows);
        assert_eq!(out.len(), 3);
        let u1 = &out[0];
        assert_eq!((u1.ts_us, u1.uid), (H + 60_000_000, 1));
        assert_eq!(u1.dur_ms, 60_000);
        assert_eq!(u1.cpu_ns, 59 * 500_000_000 + 1_000_000_000);
        assert!((u1.cpu_pct - 50.833_333).abs() < 1e-3);
        assert_eq!(u1.cpu_pct_max, 100.0);
        let u2 = &out[1];
        assert_eq!((u2.uid, u2.cpu_ns, u2.dur_ms), (2, 100_000_000, 60_000));
        assert!(
            (u2.cpu_pct - 100.0 / 600.0).abs() < 1e-9,
            "mean over the minute"
        );
        assert_eq!(out[2].ts_us, H + 120_000_000);
        let total: i64 = out.iter().map(|r| r.cpu_ns).sum();
        assert_eq!(
            total,
            rows.iter().map(|r| r.cpu_ns).sum::<i64>(),
            "nothing lost"
        );
    }

    #[test]
    fn rows_stay_in_their_hour() {
        // First row of the hour: its middle is in the previous hour, clamped to this one.
        let first = cpu(0, 1, 10);
        // Last row of the hour, ending just before the next.
        let mut last = cpu(3599, 1, 20);
        last.ts_us = H + MICROS_PER_HOUR - 1;
        let out = cpu_minutes(&[first, last]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].ts_us, H + MICROS_PER_MINUTE);
        assert_eq!(out[1].ts_us, H + MICROS_PER_HOUR);
        assert!(out.iter().all(|r| r.hour() == hour_of(H)));
    }

    #[test]
    fn gap_rows_count_their_whole_length() {
        let mut gap = cpu(30, 1, 20_000_000_000);
        gap.dur_ms = 20_000;
        let out = cpu_minutes(&[gap]);
        assert_eq!(out[0].dur_ms, 20_000);
        assert!((out[0].cpu_pct - 100.0).abs() < 1e-9);
    }

    #[test]
    fn absurd_values_from_a_corrupt_file_do_not_panic() {
        let mut row = cpu(5, 1, i64::MAX);
        row.dur_ms = i64::MAX;
        let mut negative = cpu(6, 1, 10);
        negative.dur_ms = -5;
        let out = cpu_minutes(&[row.clone(), row, negative]);
        assert!(out.iter().all(|r| r.hour() == hour_of(H)));
        assert_eq!(
            out.iter().map(|r| r.cpu_ns).max(),
            Some(i64::MAX),
            "sums saturate"
        );
    }

    #[test]
    fn net_sums_and_keeps_peak_rates() {
        let row = |s: i64, iface: &str, rx: i64, tx: i64| NetRow {
            ts_us: H + s * 1_000_000,
            dur_ms: 1000,
            iface: iface.into(),
            ifindex: if iface == "lo" { 1 } else { 2 },
            netns: Some(4026531840),
            rx_bytes: rx,
            tx_bytes: tx,
            rx_packets: 1,
            tx_packets: 2,
            source: Source::Ebpf,
            rx_errors: Some(1),
            tx_errors: Some(0),
            rx_dropped: Some(rx % 7),
            tx_dropped: None,
        };
        let mut rows = vec![
            row(1, "eth0", 100, 1000),
            row(2, "eth0", 5000, 10),
            row(2, "lo", 7, 7),
            row(70, "eth0", 1, 1),
        ];
        // An interval whose drops are unknown (the interface was new) adds nothing.
        rows[1].rx_dropped = None;
        let out = net_minutes(&rows);
        assert_eq!(out.len(), 3);
        let eth = out
            .iter()
            .find(|r| r.iface == "eth0" && r.ts_us == H + 60_000_000)
            .unwrap();
        assert_eq!(
            (eth.rx_bytes, eth.tx_bytes, eth.rx_packets, eth.tx_packets),
            (5100, 1010, 2, 4)
        );
        assert_eq!(
            (eth.rx_bytes_per_s_max, eth.tx_bytes_per_s_max),
            (5000.0, 1000.0)
        );
        assert_eq!(
            eth.dur_ms, 2000,
            "two distinct intervals seen in that minute"
        );
        assert_eq!(
            (eth.rx_errors, eth.tx_errors, eth.rx_dropped, eth.tx_dropped),
            (Some(2), Some(0), Some(100 % 7), None),
            "sums of the known values, null when none is known"
        );
    }

    #[test]
    fn net_uid_sums() {
        let row = |s: i64, uid: i64| NetUidRow {
            ts_us: H + s * 1_000_000,
            dur_ms: 1000,
            uid,
            user: None,
            rx_bytes: 10,
            tx_bytes: 3,
        };
        let out = net_uid_minutes(&[row(1, 5), row(2, 5), row(3, 6)]);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].uid, out[0].rx_bytes, out[0].tx_bytes), (5, 20, 6));
        assert_eq!(out[0].user, None);
    }

    #[test]
    fn mem_means_and_maxes_gauges() {
        let row = |s: i64, rss: i64, pss: Option<i64>| MemRow {
            ts_us: H + s * 1_000_000,
            uid: 1000,
            user: Some("a".into()),
            nproc: rss / 100,
            rss_bytes: rss,
            pss_bytes: pss,
            swap_bytes: None,
        };
        let out = mem_minutes(&[
            row(0, 1000, Some(10)),
            row(10, 3000, None),
            row(60, 5, None),
        ]);
        assert_eq!(out.len(), 2);
        let m = &out[0];
        assert_eq!(m.ts_us, H + 60_000_000);
        assert_eq!(
            (m.samples, m.nproc_max, m.rss_bytes_mean, m.rss_bytes_max),
            (2, 30, 2000, 3000)
        );
        assert_eq!((m.pss_bytes_mean, m.swap_bytes_mean), (Some(10), None));
        assert_eq!(out[1].samples, 1);
    }

    fn ping(ts_ms: i64, target: &str, sent: i64, rtts: &[f64]) -> PingRow {
        PingRow {
            ts_us: H + ts_ms * 1000,
            target: target.into(),
            addr: None,
            sent,
            received: rtts.len() as i64,
            rtt_min_ms: None,
            rtt_avg_ms: None,
            rtt_max_ms: None,
            rtt_mdev_ms: None,
            rtts_ms: rtts.to_vec(),
            error: None,
        }
    }

    #[test]
    fn ping_percentiles_over_every_reply_of_the_minute() {
        // Target a, first minute: RTTs 1..=100 ms in 34 measurements of 3 echoes, two
        // lost. Target b: nothing came back. A measurement at 60 s is the next minute.
        let mut rows: Vec<PingRow> = (0..34)
            .map(|m| {
                let rtts: Vec<f64> = (m * 3 + 1..=(m * 3 + 3).min(100))
                    .map(|v| v as f64)
                    .collect();
                ping(m * 1700, "a", 3, &rtts)
            })
            .collect();
        rows.push(ping(59_999, "b", 3, &[]));
        rows.push(ping(60_000, "a", 3, &[7.5]));
        let out = ping_minutes(&rows);
        assert_eq!(out.len(), 3);
        let a = &out[0];
        assert_eq!((a.ts_us, a.target.as_str()), (H + 60_000_000, "a"));
        assert_eq!((a.measurements, a.sent, a.received), (34, 102, 100));
        assert!((a.loss_pct.unwrap() - 200.0 / 102.0).abs() < 1e-12);
        assert_eq!((a.rtt_min_ms, a.rtt_max_ms), (Some(1.0), Some(100.0)));
        assert_eq!(a.rtt_avg_ms, Some(50.5));
        // Nearest rank: 50 of the 100 replies are at or below 50 ms.
        assert_eq!(
            (a.rtt_p50_ms, a.rtt_p90_ms, a.rtt_p99_ms),
            (Some(50.0), Some(90.0), Some(99.0))
        );
        let b = &out[1];
        assert_eq!((b.target.as_str(), b.sent, b.received), ("b", 3, 0));
        assert_eq!(b.loss_pct, Some(100.0));
        assert_eq!(
            (b.rtt_min_ms, b.rtt_p50_ms, b.rtt_max_ms),
            (None, None, None)
        );
        let next = &out[2];
        assert_eq!((next.ts_us, next.received), (H + 120_000_000, 1));
        assert_eq!((next.rtt_p50_ms, next.rtt_p99_ms), (Some(7.5), Some(7.5)));
        assert!(out.iter().all(|r| r.hour() == hour_of(H)));
    }

    #[test]
    fn ping_sums_equal_the_raw_sums_and_unsent_means_no_loss_figure() {
        let mut rows = Vec::new();
        for m in 0..240 {
            let target = ["a", "b", "c"][m as usize % 3];
            let got = (m * 7 % 4) as usize;
            let rtts: Vec<f64> = (0..got)
                .map(|k| 10.0 + (m * 13 + k as i64) as f64 % 9.0)
                .collect();
            rows.push(ping(m * 15_000, target, 3, &rtts));
        }
        rows.push(ping(5_000, "unresolvable", 0, &[]));
        let out = ping_minutes(&rows);
        let sum = |f: fn(&PingMinuteRow) -> i64| out.iter().map(f).sum::<i64>();
        assert_eq!(sum(|r| r.measurements), rows.len() as i64);
        assert_eq!(sum(|r| r.sent), rows.iter().map(|r| r.sent).sum::<i64>());
        assert_eq!(
            sum(|r| r.received),
            rows.iter().map(|r| r.received).sum::<i64>()
        );
        let unsent = out.iter().find(|r| r.target == "unresolvable").unwrap();
        assert_eq!((unsent.sent, unsent.loss_pct), (0, None));
        assert!(out.iter().all(|r| r.hour() == hour_of(H)));
    }

    /// `rows` written as part `part` of `table`'s hour of `H` under `data`, in row groups
    /// of `group` rows (a part the daemon wrote before a restart, or a flush's group).
    fn write_part_in_groups<R: Row>(data: &Path, part: usize, rows: &[R], group: usize) {
        let path = crate::bombs::hour_part(data, R::TABLE, "h", hour_of(H), part);
        let props = writer_properties(R::TABLE, "h");
        let file = std::fs::File::create(path).unwrap();
        let options = crate::growing::writer_options(&props);
        let mut writer =
            parquet::arrow::ArrowWriter::try_new_with_options(file, R::TABLE.schema(), options)
                .unwrap();
        for chunk in rows.chunks(group) {
            writer.write(&R::to_batch(chunk).unwrap()).unwrap();
            writer.flush().unwrap();
        }
        writer.close().unwrap();
    }

    /// What the roll-up file holds once written and read back (rates are stored rounded).
    fn as_written<R: Row + FromBatch>(dir: &Path, rows: &[R]) -> Vec<R> {
        let path = dir.join("whole.parquet");
        let props = Arc::new(writer_properties(R::TABLE, "h"));
        crate::writer::write_part(dir, &path, rows, &props).unwrap();
        crate::read_rows(&path).unwrap()
    }

    /// An hour of `net` rows, every second, of 7 interfaces (one of them in a second
    /// namespace, one without drop counts), each interval's rows together.
    fn net_hour() -> Vec<NetRow> {
        let mut rows = Vec::new();
        for s in 1..3600 {
            for i in 0..7 {
                rows.push(NetRow {
                    ts_us: H + s * 1_000_000 + 2_000,
                    dur_ms: 1000,
                    iface: format!("veth{}", i % 6),
                    ifindex: 10 + i,
                    netns: Some(4_026_531_840 + i / 6),
                    rx_bytes: s * 1000 + i,
                    tx_bytes: (s * 7 + i) % 5000,
                    rx_packets: s % 13,
                    tx_packets: i,
                    source: Source::Ebpf,
                    rx_errors: Some(s % 3),
                    tx_errors: Some(0),
                    rx_dropped: (i != 3).then_some(s % 5),
                    tx_dropped: None,
                });
            }
        }
        rows
    }

    fn rolled_up_file(data: &Path) -> Vec<NetMinuteRow> {
        roll_up::<NetRow>(data, "h", hour_of(H)).unwrap();
        let dir = layout::table_host_dir(data, Table::NetMinute, "h");
        let (dir, hh) = layout::hour_location(&dir, hour_of(H));
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [format!("{hh}.parquet")], "no temporary left");
        crate::read_rows(&dir.join(format!("{hh}.parquet"))).unwrap()
    }

    #[test]
    fn written_as_it_goes_the_file_is_the_roll_up_of_every_row_in_order() {
        // Three parts in time order (as the daemon writes them), in row groups that end
        // mid-minute; the last part starts with a recovery row covering a 10-minute
        // collection gap, whose middle lies in a minute of the first part.
        let mut rows = net_hour();
        rows.retain(|r| !(1800..2400).contains(&((r.ts_us - H) / 1_000_000)));
        let gap = NetRow {
            ts_us: H + 2400 * 1_000_000 + 2_000,
            dur_ms: 2_400_000,
            ..rows[0].clone()
        };
        let data = tempfile::tempdir().unwrap();
        let (first, rest) = rows.split_at(5_000);
        let (second, third) = rest.split_at(9_000);
        write_part_in_groups(data.path(), 0, first, 999);
        write_part_in_groups(data.path(), 1, second, 4_000);
        let mut last = vec![gap.clone()];
        last.extend_from_slice(third);
        write_part_in_groups(data.path(), 2, &last, 1_234);
        rows.push(gap);

        let expected = as_written(data.path(), &net_minutes(&rows));
        let got = rolled_up_file(data.path());
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "the same rows, in the same order");
        let minute_of_gap = counter_minute(H + 2400 * 1_000_000 + 2_000, 2_400_000);
        assert!(
            minute_of_gap < H + 1800 * 1_000_000,
            "the gap row reaches back"
        );
    }

    #[test]
    fn rows_out_of_order_roll_up_the_same() {
        // Every part holds rows of the whole hour, shuffled: no minute is whole before
        // the last part is read.
        let mut rows = net_hour();
        let mut state = 7_u64;
        for i in (1..rows.len()).rev() {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            rows.swap(i, (state >> 33) as usize % (i + 1));
        }
        let data = tempfile::tempdir().unwrap();
        for (part, rows) in rows.chunks(rows.len() / 3 + 1).enumerate() {
            write_part_in_groups(data.path(), part, rows, 2_048);
        }
        let expected = as_written(data.path(), &net_minutes(&rows));
        assert!(rolled_up_file(data.path()) == expected);
    }

    #[test]
    fn a_job_stopped_mid_way_leaves_no_file() {
        let data = tempfile::tempdir().unwrap();
        write_part_in_groups(data.path(), 0, &net_hour(), 1_000);
        let mut job = Job::<NetRow>::new(hour_of(H));
        // The plan (25,193 rows), then part of the second pass: some minutes written out.
        let (read, done) = job.step(data.path(), "h", 40_000).unwrap();
        assert!(!done && read >= 40_000);
        let dir = layout::table_host_dir(data.path(), Table::NetMinute, "h");
        let (dir, _) = layout::hour_location(&dir, hour_of(H));
        let temporaries = || std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(
            temporaries(),
            1,
            "the roll-up file is written to its temporary"
        );
        drop(job);
        assert_eq!(temporaries(), 0, "and nothing is left of it");
    }

    #[test]
    fn the_gauges_and_ping_roll_up_the_same_written_as_they_go() {
        let data = tempfile::tempdir().unwrap();
        let mem: Vec<MemRow> = (0..3600)
            .map(|s| MemRow {
                ts_us: H + s * 1_000_000,
                uid: s % 3,
                user: Some(format!("u{}", s % 3)),
                nproc: s % 17,
                rss_bytes: s * 4096,
                pss_bytes: (s % 2 == 0).then_some(s),
                swap_bytes: None,
            })
            .collect();
        write_part_in_groups(data.path(), 0, &mem, 700);
        roll_up::<MemRow>(data.path(), "h", hour_of(H)).unwrap();
        let path = |table| {
            let dir = layout::table_host_dir(data.path(), table, "h");
            let (dir, hh) = layout::hour_location(&dir, hour_of(H));
            dir.join(format!("{hh}.parquet"))
        };
        let got: Vec<MemMinuteRow> = crate::read_rows(&path(Table::MemMinute)).unwrap();
        assert!(got == as_written(data.path(), &mem_minutes(&mem)));

        let pings: Vec<PingRow> = (0..1200)
            .map(|m| {
                ping(
                    m * 3000,
                    ["a", "b"][m as usize % 2],
                    3,
                    &[1.0 + m as f64 % 7.0],
                )
            })
            .collect();
        write_part_in_groups(data.path(), 0, &pings, 333);
        roll_up::<PingRow>(data.path(), "h", hour_of(H)).unwrap();
        let got: Vec<PingMinuteRow> = crate::read_rows(&path(Table::PingMinute)).unwrap();
        assert!(got == as_written(data.path(), &ping_minutes(&pings)));
    }
}
