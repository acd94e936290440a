//! Ticks aligned to the wall clock: with a 1 s interval, rows end on whole seconds, so
//! rows of several hosts (and several tables) line up.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time from now to the next multiple of `interval` since the epoch.
pub fn until_next_boundary(interval: Duration) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    time_to_boundary(now, interval)
}

pub fn time_to_boundary(now: Duration, interval: Duration) -> Duration {
    let step = interval.as_nanos().max(1);
    let into = now.as_nanos() % step;
    Duration::from_nanos((step - into) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_to_the_next_multiple() {
        let s = Duration::from_secs(1);
        assert_eq!(
            time_to_boundary(Duration::from_millis(10_250), s),
            Duration::from_millis(750)
        );
        // Exactly on a boundary: wait a whole interval, never zero (no busy loop).
        assert_eq!(time_to_boundary(Duration::from_secs(10), s), s);
        let m = Duration::from_secs(60);
        assert_eq!(
            time_to_boundary(Duration::from_secs(125), m),
            Duration::from_secs(55)
        );
    }
}
