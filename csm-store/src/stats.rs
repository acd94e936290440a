//! The one percentile definition of csm: nearest rank, the ⌈n·q⌉-th smallest value
//! (1-based). The roll-ups (`ping_1m`), the charts and the analysis package agree on it,
//! so a p90 read from a roll-up equals the p90 a chart draws from the same replies. And
//! the one ping loss definition ([`loss_pct`]).

/// The share of echoes lost, in percent: `100·(sent − received)/sent`, a reply beyond the
/// echoes sent counting for none; `None` when nothing was sent (an unresolved name is not
/// 100 % loss). The roll-ups, `csm report`, `csm top` and the charts all use this one.
pub fn loss_pct(sent: i64, received: i64) -> Option<f64> {
    (sent > 0).then(|| 100.0 * (sent - received.clamp(0, sent)) as f64 / sent as f64)
}

/// Index (0-based) of the nearest-rank `q`-quantile among `n` sorted values: ⌈n·q⌉ − 1,
/// kept within `0..n` (`q` = 0 is the smallest value). `None` when `n` is 0.
pub fn nearest_rank_index(n: usize, q: f64) -> Option<usize> {
    if n == 0 {
        return None;
    }
    let rank = (n as f64 * q.clamp(0.0, 1.0)).ceil() as usize;
    Some(rank.clamp(1, n) - 1)
}

/// The nearest-rank `q`-quantile of values already sorted ascending; `None` if empty.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    nearest_rank_index(sorted.len(), q).map(|i| sorted[i])
}

/// The nearest-rank `q`-quantile of unsorted values (reordered in place, not fully
/// sorted: one selection); `None` if empty. NaN sorts above every number.
pub fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    let index = nearest_rank_index(values.len(), q)?;
    let (_, value, _) = values.select_nth_unstable_by(index, f64::total_cmp);
    Some(*value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_is_the_ceiling_of_n_times_q() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(quantile(&mut v, 0.5), Some(50.0));
        assert_eq!(quantile(&mut v, 0.9), Some(90.0));
        assert_eq!(quantile(&mut v, 0.901), Some(91.0));
        assert_eq!(quantile(&mut v, 1.0), Some(100.0));
        assert_eq!(quantile(&mut v, 0.0), Some(1.0));
        assert_eq!(quantile(&mut [], 0.5), None);
    }

    #[test]
    fn loss_is_the_share_not_answered_and_nothing_sent_is_no_figure() {
        assert_eq!(loss_pct(0, 0), None);
        assert_eq!(loss_pct(4, 3), Some(25.0));
        assert_eq!(loss_pct(3, 3), Some(0.0));
        assert_eq!(loss_pct(2, 5), Some(0.0));
        assert_eq!(loss_pct(18, 10), Some(100.0 * 8.0 / 18.0));
    }

    #[test]
    fn small_samples_round_up() {
        // Three replies: p50 is the 2nd, p90 and p99 the 3rd, p10 the 1st.
        let sorted = [10.0, 20.0, 30.0];
        assert_eq!(quantile_sorted(&sorted, 0.1), Some(10.0));
        assert_eq!(quantile_sorted(&sorted, 0.5), Some(20.0));
        assert_eq!(quantile_sorted(&sorted, 0.9), Some(30.0));
        assert_eq!(quantile_sorted(&sorted, 0.99), Some(30.0));
    }
}
