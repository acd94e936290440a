//! Ping statistics: what one measurement's replies mean (min/avg/max/mdev, like iputils
//! `ping`), and RTT percentiles aggregated over many measurements.
//!
//! Percentiles over a period come from the raw `rtts_ms` of every row, never from averages
//! of averages: one row's `rtt_avg_ms` hides the spread that SmokePing-style "smoke" shows.
//! [`RttHistogram`] records every reply into an HDR histogram (1 µs resolution, 3
//! significant digits), so memory stays bounded however long the period (a month of
//! 1 s pings is millions of replies); the maximum is kept exactly beside it.

use hdrhistogram::Histogram;

/// Round-trip statistics of one measurement, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RttStats {
    pub min_ms: f64,
    pub avg_ms: f64,
    pub max_ms: f64,
    /// Mean deviation as iputils defines it: sqrt(mean(x²) − mean(x)²).
    pub mdev_ms: f64,
}

/// Statistics of the replies; `None` without replies (the row's RTT columns stay null).
pub fn rtt_stats(rtts_ms: &[f64]) -> Option<RttStats> {
    if rtts_ms.is_empty() {
        return None;
    }
    let n = rtts_ms.len() as f64;
    let sum: f64 = rtts_ms.iter().sum();
    let sum_sq: f64 = rtts_ms.iter().map(|x| x * x).sum();
    let avg = sum / n;
    // Rounding can make the difference slightly negative for equal values.
    let variance = (sum_sq / n - avg * avg).max(0.0);
    Some(RttStats {
        min_ms: rtts_ms.iter().copied().fold(f64::INFINITY, f64::min),
        avg_ms: avg,
        max_ms: rtts_ms.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        mdev_ms: variance.sqrt(),
    })
}

/// What one measurement produced, before statistics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measurement {
    /// The address pinged (`None` when the name did not resolve).
    pub addr: Option<String>,
    /// Echo requests the kernel accepted.
    pub sent: u32,
    /// Every matched reply's RTT, in the order the replies came.
    pub rtts_ms: Vec<f64>,
    /// Why there was no answer, when it was not plain loss.
    pub error: Option<String>,
}

/// RTTs are recorded in microseconds; one hour caps the range (a longer RTT is clamped).
const HIST_MAX_US: u64 = 3_600_000_000;

/// Replies of many measurements, for percentiles over a period.
pub struct RttHistogram {
    hist: Histogram<u64>,
    /// Exact: the histogram's own maximum is only as precise as its buckets.
    max_ms: Option<f64>,
}

impl Default for RttHistogram {
    fn default() -> Self {
        RttHistogram {
            hist: Histogram::new_with_bounds(1, HIST_MAX_US, 3)
                .expect("constant histogram bounds are valid"),
            max_ms: None,
        }
    }
}

impl RttHistogram {
    pub fn record(&mut self, rtt_ms: f64) {
        if !rtt_ms.is_finite() {
            return;
        }
        let us = (rtt_ms * 1000.0).round().clamp(1.0, HIST_MAX_US as f64) as u64;
        self.hist.saturating_record(us);
        self.max_ms = Some(self.max_ms.map_or(rtt_ms, |m| m.max(rtt_ms)));
    }

    /// Replies recorded.
    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// The `q`-quantile (0..=1) in ms, within the histogram's 3 significant digits and
    /// never above the true maximum; `None` without replies.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let max = self.max_ms?;
        // The middle of the value's bucket: the histogram only knows the bucket.
        let us = self.hist.median_equivalent(self.hist.value_at_quantile(q));
        Some((us as f64 / 1000.0).min(max))
    }

    pub fn max_ms(&self) -> Option<f64> {
        self.max_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn stats_match_iputils_definitions() {
        let s = rtt_stats(&[1.0, 2.0, 3.0]).unwrap();
        assert!(close(s.min_ms, 1.0) && close(s.max_ms, 3.0) && close(s.avg_ms, 2.0));
        // iputils: sqrt(tsum2/n - (tsum/n)^2) = sqrt(14/3 - 4)
        assert!(close(s.mdev_ms, (14.0f64 / 3.0 - 4.0).sqrt()), "{s:?}");
    }

    #[test]
    fn one_reply_has_zero_deviation() {
        let s = rtt_stats(&[0.042]).unwrap();
        assert_eq!((s.min_ms, s.avg_ms, s.max_ms), (0.042, 0.042, 0.042));
        assert_eq!(s.mdev_ms, 0.0);
    }

    #[test]
    fn equal_values_never_give_nan() {
        let s = rtt_stats(&[0.1, 0.1, 0.1]).unwrap();
        assert!(s.mdev_ms.is_finite() && s.mdev_ms >= 0.0);
    }

    #[test]
    fn no_replies_no_stats() {
        assert_eq!(rtt_stats(&[]), None);
    }

    #[test]
    fn percentiles_over_many_replies() {
        // 100 replies of 1..=100 ms, in any order.
        let mut hist = RttHistogram::default();
        for v in (1..=100).rev() {
            hist.record(f64::from(v));
        }
        assert_eq!(hist.len(), 100);
        // 3 significant digits: within 0.1 %.
        let near = |v: Option<f64>, want: f64| (v.unwrap() - want).abs() <= want * 0.001;
        assert!(near(hist.quantile_ms(0.5), 50.0));
        assert!(near(hist.quantile_ms(0.9), 90.0));
        assert!(near(hist.quantile_ms(0.99), 99.0));
        assert_eq!(hist.max_ms(), Some(100.0), "the maximum is exact");
    }

    #[test]
    fn a_single_reply_is_every_percentile_exactly() {
        let mut hist = RttHistogram::default();
        assert_eq!(hist.quantile_ms(0.99), None);
        hist.record(7.5);
        hist.record(f64::NAN);
        assert_eq!(hist.len(), 1);
        assert_eq!(hist.quantile_ms(0.99), Some(7.5));
        assert_eq!(hist.quantile_ms(0.5), Some(7.5));
    }
}
