//! When a sample was taken, on the two clocks that matter.

/// The moment a sample was taken: the monotonic clock measures the interval (it never
/// jumps), the wall clock dates the row (`ts`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamp {
    /// CLOCK_MONOTONIC nanoseconds.
    pub mono_ns: u64,
    /// Wall-clock microseconds since the epoch (UTC).
    pub wall_us: i64,
}

impl Stamp {
    /// Nanoseconds from `prev` to `cur` (0 if `cur` is not later).
    pub fn elapsed_ns(prev: Stamp, cur: Stamp) -> u64 {
        cur.mono_ns.saturating_sub(prev.mono_ns)
    }

    /// Interval length in whole milliseconds, as the `dur_ms` column holds it.
    pub fn dur_ms(prev: Stamp, cur: Stamp) -> i64 {
        (Stamp::elapsed_ns(prev, cur) / 1_000_000) as i64
    }

    /// A moment known by its monotonic time only (the wall clock at the epoch), for
    /// tests of interval lengths.
    #[cfg(test)]
    pub fn monotonic(mono_ns: u64) -> Stamp {
        Stamp {
            mono_ns,
            wall_us: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_come_from_the_monotonic_clock() {
        let prev = Stamp {
            mono_ns: 1_000_000_000,
            wall_us: 50,
        };
        let cur = Stamp {
            mono_ns: 3_500_999_999,
            wall_us: 10,
        };
        assert_eq!(Stamp::elapsed_ns(prev, cur), 2_500_999_999);
        assert_eq!(Stamp::dur_ms(prev, cur), 2500);
        assert_eq!(Stamp::dur_ms(cur, prev), 0, "never negative");
    }
}
