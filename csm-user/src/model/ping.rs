//! Ping statistics: what one measurement's replies mean (min/avg/max/mdev, like iputils
//! `ping`). Percentiles over a period are `csm-plot`'s (`rtt_histogram.rs`).

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
}
