//! Traffic per interface over one interval, from cumulative counters that may wrap at
//! 32 bits (old and 32-bit kernels) or go backwards (device reset, re-created interface).

use std::collections::BTreeMap;

use super::link::LinkErrors;
use super::Stamp;

/// One interface's cumulative counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceSample {
    /// `None` where /sys/class/net does not say.
    pub ifindex: Option<u32>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// `None` where the file has no such columns.
    pub link: Option<LinkErrors>,
}

impl IfaceSample {
    fn counters(&self) -> [u64; 4] {
        [
            self.rx_bytes,
            self.tx_bytes,
            self.rx_packets,
            self.tx_packets,
        ]
    }
}

/// All interfaces at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetSample {
    /// When taken: the interval's length and the row's `ts` come from this.
    pub at: Stamp,
    pub ifaces: BTreeMap<String, IfaceSample>,
}

/// One interface's traffic in one interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetInterval {
    pub iface: String,
    /// The increases of the counters over the interval and the interface's current
    /// ifindex; `link` is `None` when unknown (the file lacks the columns, or one went
    /// backwards).
    pub delta: IfaceSample,
}

/// The increase of a counter that may wrap at 32 bits. A wrap is believed only when
/// both values fit in 32 bits and the increase it implies is under 2^31 (a counter does
/// not pass half its range in one interval); anything else that goes backwards is
/// unknown.
pub fn counter_delta_32(prev: u64, cur: u64, may_wrap: bool) -> Option<u64> {
    if cur >= prev {
        return Some(cur - prev);
    }
    const RANGE: u64 = 1 << 32;
    if may_wrap && prev < RANGE {
        let delta = cur + RANGE - prev;
        return (delta < RANGE / 2).then_some(delta);
    }
    None
}

/// Interfaces with traffic, errors or drops between `prev` and `cur`, in name order. An interface new in
/// `cur` has no row (its counters may hold traffic from before `prev`); one whose
/// ifindex changed or whose counter went backwards is unknown for this interval.
/// `wraps32` says whether an interface's counters can wrap at 32 bits (the sampler says
/// no once any of them has been seen above `u32::MAX`).
pub fn net_intervals(
    prev: &NetSample,
    cur: &NetSample,
    wraps32: impl Fn(&str) -> bool,
) -> Vec<NetInterval> {
    cur.ifaces
        .iter()
        .filter_map(|(name, now)| {
            let before = prev.ifaces.get(name)?;
            if before.ifindex != now.ifindex {
                return None;
            }
            let may_wrap = wraps32(name);
            let mut d = [0u64; 4];
            for (i, (p, c)) in before.counters().iter().zip(now.counters()).enumerate() {
                d[i] = counter_delta_32(*p, c, may_wrap)?;
            }
            let link = match (before.link, now.link) {
                (Some(p), Some(c)) => c.since(&p, |p, c| counter_delta_32(p, c, may_wrap)),
                _ => None,
            };
            let errors_or_drops = link.is_some_and(|l| !l.is_zero());
            (d.iter().any(|&v| v > 0) || errors_or_drops).then(|| NetInterval {
                iface: name.clone(),
                delta: IfaceSample {
                    ifindex: now.ifindex,
                    rx_bytes: d[0],
                    tx_bytes: d[1],
                    rx_packets: d[2],
                    tx_packets: d[3],
                    link,
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ifaces: &[(&str, u32, [u64; 4])]) -> NetSample {
        NetSample {
            ifaces: ifaces
                .iter()
                .map(|(n, idx, c)| {
                    (
                        n.to_string(),
                        IfaceSample {
                            ifindex: Some(*idx),
                            rx_bytes: c[0],
                            tx_bytes: c[1],
                            rx_packets: c[2],
                            tx_packets: c[3],
                            link: None,
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn wrap_at_32_bits() {
        assert_eq!(counter_delta_32(4_294_967_000, 500, true), Some(796));
        assert_eq!(counter_delta_32(10, 25, true), Some(15));
        // Not believed: would be more than half the range.
        assert_eq!(counter_delta_32(100, 50, true), None);
        // A 64-bit counter going backwards is a reset, never a wrap.
        assert_eq!(counter_delta_32(4_294_967_000, 500, false), None);
        assert_eq!(counter_delta_32(10_000_000_000, 5, true), None);
    }

    #[test]
    fn rows_only_for_known_changes() {
        let prev = sample(&[
            ("eth0", 2, [4_294_967_000, 100, 10, 10]),
            ("eth1", 3, [10_000_000_000, 0, 0, 0]),
            ("lo", 1, [5, 5, 1, 1]),
            ("tun0", 9, [0, 0, 0, 0]),
        ]);
        let cur = sample(&[
            ("eth0", 2, [500, 300, 12, 11]),
            ("eth1", 3, [20, 0, 0, 0]),
            ("lo", 1, [5, 5, 1, 1]),
            ("tun0", 10, [50, 0, 1, 0]),
            ("veth7", 11, [70, 0, 1, 0]),
        ]);
        let rows = net_intervals(&prev, &cur, |name| name != "eth1");
        assert_eq!(
            rows,
            vec![NetInterval {
                iface: "eth0".into(),
                delta: IfaceSample {
                    ifindex: Some(2),
                    rx_bytes: 796,
                    tx_bytes: 200,
                    rx_packets: 2,
                    tx_packets: 1,
                    link: None,
                },
            }]
        );
    }

    #[test]
    fn errors_and_drops_alone_make_a_row_and_unknown_ones_are_none() {
        let drops = |rx_dropped| {
            Some(LinkErrors {
                rx_dropped,
                ..LinkErrors::default()
            })
        };
        let mut prev = sample(&[("veth0", 5, [10, 10, 1, 1]), ("veth1", 6, [0, 0, 0, 0])]);
        let mut cur = sample(&[("veth0", 5, [10, 10, 1, 1]), ("veth1", 6, [7, 0, 1, 0])]);
        prev.ifaces.get_mut("veth0").unwrap().link = drops(4);
        cur.ifaces.get_mut("veth0").unwrap().link = drops(9);
        cur.ifaces.get_mut("veth1").unwrap().link = drops(1);
        let rows = net_intervals(&prev, &cur, |_| false);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].delta.rx_bytes, rows[0].delta.link), (0, drops(5)));
        assert_eq!((rows[1].delta.rx_bytes, rows[1].delta.link), (7, None));
    }
}
