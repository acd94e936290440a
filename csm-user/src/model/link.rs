//! The kernel's own error and drop counters of an interface, and their increase over an
//! interval.
//!
//! These are the driver's counters as `dev_get_stats` sums them (veth keeps its drops per
//! CPU, the core adds its own `rx_dropped`/`tx_dropped`): what /proc/net/dev, `ip -s link`
//! and `sar -n EDEV` show. Neither backend counts them itself: both read them from the
//! kernel (see `sources::link_errors` and `sources::procfs::netdev`).

/// One interface's cumulative error and drop counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkErrors {
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

impl LinkErrors {
    fn counters(&self) -> [u64; 4] {
        [
            self.rx_errors,
            self.tx_errors,
            self.rx_dropped,
            self.tx_dropped,
        ]
    }

    /// The increase since `prev`, counter by counter through `delta` (which says what a
    /// counter going backwards means); `None` when any one is unknown.
    pub fn since(
        &self,
        prev: &LinkErrors,
        delta: impl Fn(u64, u64) -> Option<u64>,
    ) -> Option<LinkErrors> {
        let mut d = [0u64; 4];
        for (i, (p, c)) in prev.counters().iter().zip(self.counters()).enumerate() {
            d[i] = delta(*p, c)?;
        }
        Some(LinkErrors {
            rx_errors: d[0],
            tx_errors: d[1],
            rx_dropped: d[2],
            tx_dropped: d[3],
        })
    }

    pub fn is_zero(&self) -> bool {
        *self == LinkErrors::default()
    }
}

/// The increase of a 64-bit counter: a counter that went backwards (the interface was
/// re-created under the same key) is unknown.
pub fn delta_64(prev: u64, cur: u64) -> Option<u64> {
    cur.checked_sub(prev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(rx_errors: u64, tx_errors: u64, rx_dropped: u64, tx_dropped: u64) -> LinkErrors {
        LinkErrors {
            rx_errors,
            tx_errors,
            rx_dropped,
            tx_dropped,
        }
    }

    #[test]
    fn increase_counter_by_counter_and_unknown_when_one_goes_back() {
        let prev = errors(1, 2, 3, 4);
        assert_eq!(
            errors(1, 5, 3, 10).since(&prev, delta_64),
            Some(errors(0, 3, 0, 6))
        );
        assert_eq!(errors(0, 5, 3, 10).since(&prev, delta_64), None);
        assert!(prev.since(&prev, delta_64).unwrap().is_zero());
    }
}
