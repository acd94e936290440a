//! RTT percentiles aggregated over many ping measurements.
//!
//! Percentiles over a period come from the raw `rtts_ms` of every row, never from averages
//! of averages: one row's `rtt_avg_ms` hides the spread that SmokePing-style "smoke" shows.
//! [`RttHistogram`] records every reply into an HDR histogram (1 µs resolution, 3
//! significant digits), so memory stays bounded however long the period (a month of
//! 1 s pings is millions of replies); the maximum is kept exactly beside it.

use hdrhistogram::Histogram;

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
