//! CPU time per uid over one interval.

use std::collections::BTreeMap;

use super::counter::counter_delta;
use super::stamp::Stamp;

/// Cumulative CPU nanoseconds per uid at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuSample {
    /// When taken: the interval's length and the row's `ts` come from this.
    pub at: Stamp,
    pub per_uid: BTreeMap<u32, u64>,
}

/// One uid's CPU time in one interval.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuInterval {
    pub uid: u32,
    pub cpu_ns: u64,
    /// 100 = one core busy for the whole interval.
    pub cpu_pct: f64,
}

/// The uids that used CPU between `prev` and `cur`, in uid order. Uids with no time, and
/// uids whose counter went backwards (unknown), get no row.
pub fn cpu_intervals(prev: &CpuSample, cur: &CpuSample) -> Vec<CpuInterval> {
    let dur_ns = Stamp::elapsed_ns(prev.at, cur.at);
    if dur_ns == 0 {
        return Vec::new();
    }
    cur.per_uid
        .iter()
        .filter_map(|(&uid, &total)| {
            let cpu_ns = counter_delta(prev.per_uid.get(&uid).copied(), total)?;
            (cpu_ns > 0).then(|| CpuInterval {
                uid,
                cpu_ns,
                cpu_pct: cpu_ns as f64 * 100.0 / dur_ns as f64,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(mono_ns: u64, per_uid: &[(u32, u64)]) -> CpuSample {
        CpuSample {
            at: Stamp::monotonic(mono_ns),
            per_uid: per_uid.iter().copied().collect(),
        }
    }

    #[test]
    fn one_core_busy_is_100_percent() {
        let prev = sample(0, &[(1000, 5_000_000_000)]);
        let cur = sample(2_000_000_000, &[(1000, 7_000_000_000)]);
        let rows = cpu_intervals(&prev, &cur);
        assert_eq!(
            rows,
            vec![CpuInterval {
                uid: 1000,
                cpu_ns: 2_000_000_000,
                cpu_pct: 100.0
            }]
        );
        assert_eq!(Stamp::dur_ms(prev.at, cur.at), 2000);
    }

    #[test]
    fn new_uid_counts_from_zero_and_idle_uid_has_no_row() {
        let prev = sample(0, &[(1, 10)]);
        let cur = sample(1_000_000_000, &[(1, 10), (2, 250_000_000)]);
        let rows = cpu_intervals(&prev, &cur);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].uid, 2);
        assert!((rows[0].cpu_pct - 25.0).abs() < 1e-9);
    }

    #[test]
    fn counter_going_backwards_is_unknown_not_negative() {
        let prev = sample(0, &[(1, 100)]);
        let cur = sample(1_000_000_000, &[(1, 50)]);
        assert!(cpu_intervals(&prev, &cur).is_empty());
    }

    #[test]
    fn zero_length_interval_has_no_rows() {
        let s = sample(5, &[(1, 100)]);
        assert!(cpu_intervals(&s, &s).is_empty());
    }
}
