//! Deltas of cumulative counters.

/// The increase of a cumulative counter between two samples.
///
/// - a key absent from the previous sample started counting after it: all of `cur` is new;
/// - a counter that went backwards (reset, re-created device, map entry replaced) is
///   unknown for this interval: `None`, never a huge or negative number.
pub fn counter_delta(prev: Option<u64>, cur: u64) -> Option<u64> {
    match prev {
        None => Some(cur),
        Some(prev) => cur.checked_sub(prev),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas() {
        assert_eq!(counter_delta(Some(10), 15), Some(5));
        assert_eq!(counter_delta(Some(10), 10), Some(0));
        assert_eq!(counter_delta(None, 7), Some(7));
        assert_eq!(counter_delta(Some(10), 3), None);
    }
}
