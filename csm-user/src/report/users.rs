//! The users section: per uid, CPU-seconds and mean/peak CPU % (100 = one core), mean and
//! peak RSS and PSS, bytes in and out of its sockets; sorted by CPU, the top N listed and
//! the others summed on one line.

use std::collections::BTreeMap;

use serde::Serialize;

use csm_store::units::{bytes, cpu_time, duration, pct};

use super::read::Rows;
use super::render::{SectionOutput, TextContext};
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

/// The section from the range's rows.
pub fn users(rows: &Rows, top: usize) -> Users {
    let covered_us = covered_us(rows);
    let pct = |cpu_ns: i64| {
        if covered_us > 0 {
            cpu_ns as f64 / (covered_us as f64 * 1000.0) * 100.0
        } else {
            0.0
        }
    };
    let mut by_uid: BTreeMap<i64, User> = BTreeMap::new();
    for span in &rows.cpu {
        let user = entry(&mut by_uid, span.uid, &span.user);
        user.cpu_ns += span.cpu_ns;
        let peak = user.cpu_pct_peak.get_or_insert(span.pct_peak);
        *peak = peak.max(span.pct_peak);
    }
    for bytes in &rows.net_uid {
        let user = entry(&mut by_uid, bytes.uid, &bytes.user);
        user.rx_bytes += bytes.rx_bytes;
        user.tx_bytes += bytes.tx_bytes;
    }
    let mut memory: BTreeMap<i64, Memory> = BTreeMap::new();
    for span in &rows.mem {
        entry(&mut by_uid, span.uid, &span.user);
        let m = memory.entry(span.uid).or_default();
        m.samples += span.samples;
        m.rss_sum += span.rss_mean as i128 * span.samples as i128;
        m.rss_peak = m.rss_peak.max(span.rss_peak);
        if let Some(pss) = span.pss_mean {
            m.pss_samples += span.samples;
            m.pss_sum += pss as i128 * span.samples as i128;
        }
        if let Some(peak) = span.pss_peak {
            m.pss_peak = Some(m.pss_peak.map_or(peak, |p| p.max(peak)));
        }
    }
    for (uid, m) in memory {
        let user = by_uid.get_mut(&uid).expect("entered above");
        user.rss_bytes_mean = (m.samples > 0).then(|| (m.rss_sum / m.samples as i128) as i64);
        user.rss_bytes_peak = (m.samples > 0).then_some(m.rss_peak);
        user.pss_bytes_mean =
            (m.pss_samples > 0).then(|| (m.pss_sum / m.pss_samples as i128) as i64);
        user.pss_bytes_peak = m.pss_peak;
    }
    let mut all: Vec<User> = by_uid.into_values().collect();
    for user in &mut all {
        user.cpu_pct_mean = pct(user.cpu_ns);
    }
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

/// The line of `uid`, named by the latest name seen (`uid N` without one).
fn entry<'a>(by_uid: &'a mut BTreeMap<i64, User>, uid: i64, name: &Option<String>) -> &'a mut User {
    let user = by_uid.entry(uid).or_insert_with(|| User {
        uid: Some(uid),
        user: format!("uid {uid}"),
        ..User::default()
    });
    if let Some(name) = name {
        user.user.clone_from(name);
    }
    user
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
/// over hours it was down.
pub fn covered_us(rows: &Rows) -> i64 {
    let mut spans: Vec<(i64, i64)> = rows
        .cpu
        .iter()
        .map(|r| (r.ts_us, r.dur_ms))
        .chain(rows.net.iter().map(|r| (r.ts_us, r.dur_ms)))
        .chain(rows.net_uid.iter().map(|r| (r.ts_us, r.dur_ms)))
        .map(|(ts, dur_ms)| (ts - dur_ms * 1000, ts))
        .collect();
    spans.sort_unstable();
    let mut covered = 0;
    let mut open: Option<(i64, i64)> = None;
    for (start, end) in spans {
        open = match open {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                covered += e - s;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    covered + open.map_or(0, |(s, e)| e - s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::read::{CpuSpan, MemSpan, UidBytes};

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
        let report = users(&rows, 1);
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
        let report = users(&rows, 2);
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
        assert_eq!(covered_us(&rows), 10 * S);
        assert_eq!(users(&rows, 10).top[0].cpu_pct_mean, 50.0);
    }
}
