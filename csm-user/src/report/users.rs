//! The users section: per uid, CPU-seconds and mean/peak CPU % (100 = one core), mean and
//! peak RSS and PSS, bytes in and out of its sockets; sorted by CPU, the top N listed and
//! the others summed on one line.

use std::collections::BTreeMap;

use serde::Serialize;

use csm_store::units::{bytes, cpu_time, duration, pct};

use super::render::{SectionOutput, TextContext};
use super::spans::{CpuSpan, MemSpan, UidBytes};
use super::table::{CsvTable, TextTable};

/// One user's line (or the line of the others, or the total).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct User {
    /// `None` on the lines that sum several users.
    pub uid: Option<i64>,
    /// The name, `uid N` without one; `(N others)` and `total` on the summing lines.
    pub user: String,
    pub cpu_ns: i64,
    /// CPU time over the time with data (`covered_s`), 100 = one core.
    pub cpu_pct_mean: f64,
    /// The highest single interval (of a minute's intervals with roll-ups); not on the
    /// summing lines.
    pub cpu_pct_peak: Option<f64>,
    /// Over the samples taken while the user had processes.
    pub rss_bytes_mean: Option<i64>,
    pub rss_bytes_peak: Option<i64>,
    pub pss_bytes_mean: Option<i64>,
    /// With roll-ups, the highest minute's mean.
    pub pss_bytes_peak: Option<i64>,
    pub rx_bytes: i64,
    pub tx_bytes: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Users {
    /// Seconds of the range covered by counter rows (the daemon running).
    pub covered_s: f64,
    pub top: Vec<User>,
    /// The users beyond the top N, summed; absent when there are none.
    pub rest: Option<User>,
    /// Every user, summed: what a query over the same files gives.
    pub total: User,
}

impl Users {
    /// The listed users, the others' line and the total, in the order they are printed.
    fn lines(&self) -> impl Iterator<Item = &User> {
        self.top.iter().chain(&self.rest).chain([&self.total])
    }
}

impl SectionOutput for Users {
    fn text(&self, _: &TextContext, out: &mut String) {
        out.push_str(&format!(
            "\nUsers (CPU: 100 % = one core, mean over the {} with data)\n",
            duration((self.covered_s * 1e6) as i64)
        ));
        let mut table = TextTable::new(
            vec![
                "user", "cpu time", "cpu mean", "cpu peak", "rss mean", "rss peak", "pss mean",
                "pss peak", "in", "out",
            ],
            1,
        );
        let dash = || "-".to_string();
        let opt_bytes = |v: Option<i64>| v.map_or_else(dash, bytes);
        for user in self.lines() {
            table.push(vec![
                user.user.clone(),
                cpu_time(user.cpu_ns),
                pct(user.cpu_pct_mean),
                user.cpu_pct_peak.map_or_else(dash, pct),
                opt_bytes(user.rss_bytes_mean),
                opt_bytes(user.rss_bytes_peak),
                opt_bytes(user.pss_bytes_mean),
                opt_bytes(user.pss_bytes_peak),
                bytes(user.rx_bytes),
                bytes(user.tx_bytes),
            ]);
        }
        table.write(out);
    }

    fn csv(&self) -> Vec<CsvTable> {
        vec![CsvTable::of("users", self.lines())]
    }
}

#[derive(Default)]
struct Memory {
    samples: i64,
    rss_sum: i128,
    rss_peak: i64,
    pss_samples: i64,
    pss_sum: i128,
    pss_peak: Option<i64>,
}

impl Memory {
    fn add(&mut self, span: &MemSpan) {
        self.samples += span.samples;
        self.rss_sum += span.rss_mean as i128 * span.samples as i128;
        self.rss_peak = self.rss_peak.max(span.rss_peak);
        if let Some(pss) = span.pss_mean {
            self.pss_samples += span.samples;
            self.pss_sum += pss as i128 * span.samples as i128;
        }
        self.pss_peak = max_known(self.pss_peak, span.pss_peak);
    }

    fn merge(&mut self, later: Memory) {
        self.samples += later.samples;
        self.rss_sum += later.rss_sum;
        self.rss_peak = self.rss_peak.max(later.rss_peak);
        self.pss_samples += later.pss_samples;
        self.pss_sum += later.pss_sum;
        self.pss_peak = max_known(self.pss_peak, later.pss_peak);
    }
}

fn max_known(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// One uid's counters as the rows are folded.
#[derive(Default)]
struct Totals {
    cpu_ns: i64,
    cpu_pct_peak: Option<f64>,
    rx_bytes: i64,
    tx_bytes: i64,
    memory: Option<Memory>,
    /// The latest name a row gave (rows are folded in the order a reading in order gives
    /// them: `cpu`, then `net_uid`, then `mem`, each in time order).
    name: Option<String>,
}

impl Totals {
    fn merge(&mut self, later: Totals) {
        self.cpu_ns += later.cpu_ns;
        self.cpu_pct_peak = match (self.cpu_pct_peak, later.cpu_pct_peak) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.rx_bytes += later.rx_bytes;
        self.tx_bytes += later.tx_bytes;
        match (&mut self.memory, later.memory) {
            (Some(memory), Some(later)) => memory.merge(later),
            (memory, later) => *memory = memory.take().or(later),
        }
        if later.name.is_some() {
            self.name = later.name;
        }
    }
}

/// The users section folded as the rows are read: per uid sums, peaks and the latest
/// name, and the time covered; what it holds grows with the uids and the gaps of the
/// range, not with its rows.
#[derive(Default)]
pub struct UsersFold {
    by_uid: BTreeMap<i64, Totals>,
    pub coverage: Coverage,
    /// Rows folded (of `cpu`, `net_uid` and `mem`).
    pub rows: u64,
}

/// What a uid's line holds, charged to the command's budget when a uid is first seen.
const UID_BYTES: u64 = 256;

impl UsersFold {
    fn totals(&mut self, uid: i64, name: Option<String>) -> (&mut Totals, u64) {
        self.rows += 1;
        let mut grown = 0;
        let totals = self.by_uid.entry(uid).or_insert_with(|| {
            grown = UID_BYTES;
            Totals::default()
        });
        if name.is_some() {
            totals.name = name;
        }
        (totals, grown)
    }

    /// Folds one span of CPU; returns the bytes it added to what the fold holds.
    pub fn cpu(&mut self, span: CpuSpan) -> u64 {
        let covered = self.coverage.add(span.ts_us, span.dur_ms);
        let (totals, grown) = self.totals(span.uid, span.user);
        totals.cpu_ns += span.cpu_ns;
        let peak = totals.cpu_pct_peak.get_or_insert(span.pct_peak);
        *peak = peak.max(span.pct_peak);
        covered + grown
    }

    /// Folds one span of socket bytes.
    pub fn net_uid(&mut self, bytes: UidBytes) -> u64 {
        let covered = self.coverage.add(bytes.ts_us, bytes.dur_ms);
        let (totals, grown) = self.totals(bytes.uid, bytes.user);
        totals.rx_bytes += bytes.rx_bytes;
        totals.tx_bytes += bytes.tx_bytes;
        covered + grown
    }

    /// Folds one memory sample (or a minute's).
    pub fn mem(&mut self, span: MemSpan) -> u64 {
        let (totals, grown) = self.totals(span.uid, span.user.clone());
        totals.memory.get_or_insert_with(Memory::default).add(&span);
        grown
    }

    /// Adds a fold of rows read after this one's; returns the bytes this one grew by.
    pub fn merge(&mut self, later: UsersFold) -> u64 {
        self.rows += later.rows;
        let mut grown = self.coverage.merge(later.coverage);
        for (uid, totals) in later.by_uid {
            match self.by_uid.entry(uid) {
                std::collections::btree_map::Entry::Occupied(mut mine) => {
                    mine.get_mut().merge(totals)
                }
                std::collections::btree_map::Entry::Vacant(vacant) => {
                    grown += UID_BYTES;
                    vacant.insert(totals);
                }
            }
        }
        grown
    }
}

/// The section from the folded rows.
pub fn users(fold: UsersFold, top: usize) -> Users {
    let covered_us = fold.coverage.total_us();
    let pct = |cpu_ns: i64| {
        if covered_us > 0 {
            cpu_ns as f64 / (covered_us as f64 * 1000.0) * 100.0
        } else {
            0.0
        }
    };
    let mut all: Vec<User> = fold
        .by_uid
        .into_iter()
        .map(|(uid, totals)| user_line(uid, totals, pct))
        .collect();
    // Most CPU first; then most traffic, then by uid, so the order is stable.
    all.sort_by(|a, b| {
        b.cpu_ns
            .cmp(&a.cpu_ns)
            .then((b.rx_bytes + b.tx_bytes).cmp(&(a.rx_bytes + a.tx_bytes)))
            .then(a.uid.cmp(&b.uid))
    });
    let total = summed("total", &all, pct);
    let others = all.split_off(top.min(all.len()));
    let rest =
        (!others.is_empty()).then(|| summed(&format!("({} others)", others.len()), &others, pct));
    Users {
        covered_s: covered_us as f64 / 1e6,
        top: all,
        rest,
        total,
    }
}

/// A uid's line from its totals, named by the latest name seen (`uid N` without one).
fn user_line(uid: i64, totals: Totals, pct: impl Fn(i64) -> f64) -> User {
    let memory = totals.memory.unwrap_or_default();
    let (samples, pss_samples) = (memory.samples as i128, memory.pss_samples as i128);
    User {
        uid: Some(uid),
        user: totals.name.unwrap_or_else(|| format!("uid {uid}")),
        cpu_ns: totals.cpu_ns,
        cpu_pct_mean: pct(totals.cpu_ns),
        cpu_pct_peak: totals.cpu_pct_peak,
        rss_bytes_mean: (samples > 0).then(|| (memory.rss_sum / samples) as i64),
        rss_bytes_peak: (samples > 0).then_some(memory.rss_peak),
        pss_bytes_mean: (pss_samples > 0).then(|| (memory.pss_sum / pss_samples) as i64),
        pss_bytes_peak: memory.pss_peak,
        rx_bytes: totals.rx_bytes,
        tx_bytes: totals.tx_bytes,
    }
}

/// Several users on one line: sums (memory means add up too: together they held that).
fn summed(label: &str, users: &[User], pct: impl Fn(i64) -> f64) -> User {
    let sum = |f: fn(&User) -> Option<i64>| {
        users
            .iter()
            .filter_map(f)
            .fold(None, |acc: Option<i64>, v| Some(acc.unwrap_or(0) + v))
    };
    let cpu_ns = users.iter().map(|u| u.cpu_ns).sum();
    User {
        uid: None,
        user: label.to_string(),
        cpu_ns,
        cpu_pct_mean: pct(cpu_ns),
        cpu_pct_peak: None,
        rss_bytes_mean: sum(|u| u.rss_bytes_mean),
        rss_bytes_peak: None,
        pss_bytes_mean: sum(|u| u.pss_bytes_mean),
        pss_bytes_peak: None,
        rx_bytes: users.iter().map(|u| u.rx_bytes).sum(),
        tx_bytes: users.iter().map(|u| u.tx_bytes).sum(),
    }
}

/// The time covered by counter rows (cpu, net, net_uid): the union of their spans
/// `[ts − dur, ts]`, so that a mean CPU % is over the time the daemon was measuring, not
/// over hours it was down. Kept as disjoint runs (start → end), merged as spans come:
/// it holds one entry per gap of the range, not one per row.
#[derive(Debug, Default)]
pub struct Coverage {
    runs: BTreeMap<i64, i64>,
}

/// What a run of [`Coverage`] holds.
const RUN_BYTES: u64 = 64;

impl Coverage {
    /// Adds the span of a row ending at `ts_us` that lasted `dur_ms`; returns the bytes
    /// added to what it holds.
    pub fn add(&mut self, ts_us: i64, dur_ms: i64) -> u64 {
        self.insert(ts_us - dur_ms * 1000, ts_us)
    }

    fn insert(&mut self, mut start: i64, mut end: i64) -> u64 {
        // Spans touching or overlapping `[start, end]` are taken into it.
        if let Some((&s, &e)) = self.runs.range(..=start).next_back() {
            if e >= start {
                if e >= end {
                    return 0;
                }
                start = s;
            }
        }
        let touched: Vec<(i64, i64)> = self
            .runs
            .range(start..=end)
            .map(|(&s, &e)| (s, e))
            .collect();
        let grown = if touched.is_empty() { RUN_BYTES } else { 0 };
        for (s, e) in touched {
            self.runs.remove(&s);
            end = end.max(e);
        }
        self.runs.insert(start, end);
        grown
    }

    /// Adds the spans of a later fold; returns the bytes added.
    pub fn merge(&mut self, later: Coverage) -> u64 {
        later
            .runs
            .into_iter()
            .map(|(start, end)| self.insert(start, end))
            .sum()
    }

    /// Microseconds covered.
    pub fn total_us(&self) -> i64 {
        self.runs.iter().map(|(s, e)| e - s).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows as `Rows::read` folds them: `cpu`, then `net_uid`, then `mem`.
    #[derive(Default)]
    struct Rows {
        cpu: Vec<CpuSpan>,
        mem: Vec<MemSpan>,
        net_uid: Vec<UidBytes>,
    }

    fn fold(rows: &Rows) -> UsersFold {
        let mut fold = UsersFold::default();
        for span in &rows.cpu {
            fold.cpu(span.clone());
        }
        for bytes in &rows.net_uid {
            fold.net_uid(bytes.clone());
        }
        for span in &rows.mem {
            fold.mem(span.clone());
        }
        fold
    }

    const S: i64 = 1_000_000;

    fn cpu(ts_s: i64, uid: i64, cpu_ms: i64) -> CpuSpan {
        CpuSpan {
            ts_us: ts_s * S,
            dur_ms: 1000,
            uid,
            user: Some(format!("u{uid}")),
            cpu_ns: cpu_ms * 1_000_000,
            pct_peak: cpu_ms as f64 / 10.0,
        }
    }

    fn mem(uid: i64, rss: i64, pss: Option<i64>) -> MemSpan {
        MemSpan {
            uid,
            user: None,
            samples: 1,
            rss_mean: rss,
            rss_peak: rss,
            pss_mean: pss,
            pss_peak: pss,
        }
    }

    /// With the eBPF memory iterator PSS is walked every `mem.pss_interval` and null in
    /// the samples between: its mean and peak are over the samples that have one.
    #[test]
    fn pss_mean_and_peak_skip_samples_without_a_walk() {
        let mut rows = Rows::default();
        rows.cpu.push(cpu(1, 1, 1000));
        rows.mem = vec![
            mem(1, 100, Some(40)),
            mem(1, 100, None),
            mem(1, 100, None),
            mem(1, 100, Some(60)),
            mem(1, 100, None),
        ];
        let report = users(fold(&rows), 1);
        let user = &report.top[0];
        assert_eq!(
            (user.pss_bytes_mean, user.pss_bytes_peak),
            (Some(50), Some(60))
        );
        assert_eq!(user.rss_bytes_mean, Some(100));
    }

    #[test]
    fn cpu_memory_and_bytes_per_user_sorted_by_cpu() {
        // 10 s: uid 1 at 100 % for 10 s, uid 2 at 50 % for 4 s, uid 3 at 10 % once.
        let mut rows = Rows::default();
        for t in 1..=10 {
            rows.cpu.push(cpu(t, 1, 1000));
        }
        for t in 1..=4 {
            rows.cpu.push(cpu(t, 2, 500));
        }
        rows.cpu.push(cpu(7, 3, 100));
        rows.mem = vec![
            mem(2, 100, Some(50)),
            mem(2, 300, Some(70)),
            mem(1, 10, None),
        ];
        rows.net_uid.push(UidBytes {
            ts_us: 5 * S,
            dur_ms: 1000,
            uid: 2,
            user: None,
            rx_bytes: 7,
            tx_bytes: 9,
        });
        let report = users(fold(&rows), 2);
        assert_eq!(report.covered_s, 10.0);
        let [first, second] = &report.top[..] else {
            panic!("{report:?}")
        };
        assert_eq!((first.user.as_str(), first.cpu_ns), ("u1", 10_000_000_000));
        assert_eq!(first.cpu_pct_mean, 100.0);
        assert_eq!(first.cpu_pct_peak, Some(100.0));
        assert_eq!(
            (first.rss_bytes_mean, first.pss_bytes_mean),
            (Some(10), None)
        );
        assert_eq!(second.cpu_ns, 2_000_000_000);
        assert_eq!(second.cpu_pct_mean, 20.0);
        assert_eq!(second.cpu_pct_peak, Some(50.0));
        assert_eq!(
            (second.rss_bytes_mean, second.rss_bytes_peak),
            (Some(200), Some(300))
        );
        assert_eq!(
            (second.pss_bytes_mean, second.pss_bytes_peak),
            (Some(60), Some(70))
        );
        assert_eq!((second.rx_bytes, second.tx_bytes), (7, 9));
        let rest = report.rest.as_ref().unwrap();
        assert_eq!(
            (rest.user.as_str(), rest.cpu_ns),
            ("(1 others)", 100_000_000)
        );
        assert_eq!(report.total.cpu_ns, 12_100_000_000);
        assert_eq!((report.total.rx_bytes, report.total.tx_bytes), (7, 9));
        assert!((report.total.cpu_pct_mean - 121.0).abs() < 1e-9);
    }

    #[test]
    fn the_mean_is_over_the_time_with_data_not_the_gaps() {
        // 5 s of data, a 100 s gap, 5 s more: 10 s covered.
        let mut rows = Rows::default();
        for t in (1..=5).chain(106..=110) {
            rows.cpu.push(cpu(t, 1, 500));
        }
        assert_eq!(fold(&rows).coverage.total_us(), 10 * S);
        assert_eq!(users(fold(&rows), 10).top[0].cpu_pct_mean, 50.0);
    }

    /// The runs of time covered are the union of the spans whatever order they come in
    /// (files are folded apart and merged): touching spans join, nested ones add nothing.
    #[test]
    fn coverage_is_the_union_in_any_order() {
        // (end s, duration s): 1–3 touching, 2–3 inside, 10–12 apart, 11–14 overlapping.
        let spans = [(2, 1), (3, 1), (3, 1), (12, 2), (14, 3), (1, 1)];
        let mut in_order = Coverage::default();
        let mut merged = Coverage::default();
        let mut later = Coverage::default();
        for (i, (end, dur)) in spans.iter().enumerate() {
            in_order.add(end * S, dur * 1000);
            let fold = if i % 2 == 0 { &mut merged } else { &mut later };
            fold.add(end * S, dur * 1000);
        }
        merged.merge(later);
        // [0, 3] and [10, 14]: 3 s + 4 s.
        assert_eq!(in_order.total_us(), 7 * S);
        assert_eq!(merged.total_us(), 7 * S);
        assert_eq!(merged.runs.len(), 2);
    }

    /// Files are folded apart and merged in their order: the name a later file gives wins,
    /// as it did when every row was read in order.
    #[test]
    fn a_later_files_name_wins_when_folds_merge() {
        let mut first = UsersFold::default();
        first.cpu(cpu(1, 7, 100));
        let mut later = UsersFold::default();
        let mut renamed = cpu(2, 7, 300);
        renamed.user = Some("renamed".into());
        later.cpu(renamed);
        let mut unnamed = cpu(3, 7, 100);
        unnamed.user = None;
        later.cpu(unnamed);
        first.merge(later);
        let report = users(first, 10);
        let user = &report.top[0];
        assert_eq!(user.user, "renamed");
        assert_eq!((user.cpu_ns, user.cpu_pct_peak), (500_000_000, Some(30.0)));
        assert_eq!(report.covered_s, 3.0);
    }
}
