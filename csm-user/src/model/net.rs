//! Traffic per interface and per uid over one interval.

use std::collections::BTreeMap;

use super::counter::counter_delta;
use super::link::{delta_64, LinkErrors};
use super::stamp::Stamp;

/// An interface: its ifindex inside the network namespace with this inode.
pub type IfaceKey = (u32, u32);

/// Cumulative counters of one interface, corrected to the kernel's own interface
/// counters (`/proc/net/dev` semantics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceCounters {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// Cumulative IP-layer bytes of one uid's sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UidCounters {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// Cumulative traffic counters at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetSample {
    /// When taken: the interval's length and the row's `ts` come from this.
    pub at: Stamp,
    pub ifaces: BTreeMap<IfaceKey, IfaceCounters>,
    pub uids: BTreeMap<u32, UidCounters>,
    /// The kernel's error and drop counters of every interface of the namespaces read,
    /// keyed like `ifaces` (not counted by eBPF: read from the kernel at the sample).
    pub links: BTreeMap<IfaceKey, LinkErrors>,
    /// Owner uid of each namespace a user (not root) owns, by namespace inode.
    pub ns_owners: BTreeMap<u32, u32>,
    /// Traffic of interfaces the maps had no room for, per owner uid.
    pub iface_overflow: BTreeMap<u32, IfaceCounters>,
    /// Entries of the users' map whose namespace inode root's map also has: a user's
    /// namespace died and root's new one got its inode (the kernel reuses them at once).
    /// They are left out of `ifaces` and `ns_owners`, which would make root's namespace
    /// the user's (its rows folded with the user's, the same key in both maps).
    pub shadowed: BTreeMap<IfaceKey, IfaceCounters>,
}

impl NetSample {
    /// Drops interfaces and uids whose map entries were deleted: when they come back
    /// their counters restart from zero, which must read as "new", not "backwards".
    pub fn forget(&mut self, ifaces: &[IfaceKey], uids: &[u32]) {
        for key in ifaces {
            self.ifaces.remove(key);
            self.links.remove(key);
        }
        for uid in uids {
            self.uids.remove(uid);
        }
    }
}

/// Per-interface deltas, for interfaces with traffic in the interval. An interface with
/// any counter going backwards is unknown for the interval: no row.
pub fn iface_deltas(prev: &NetSample, cur: &NetSample) -> Vec<(IfaceKey, IfaceCounters)> {
    deltas(&prev.ifaces, &cur.ifaces)
}

/// Per-owner deltas of the traffic the interface maps had no room for.
pub fn iface_overflow_deltas(prev: &NetSample, cur: &NetSample) -> Vec<(u32, IfaceCounters)> {
    deltas(&prev.iface_overflow, &cur.iface_overflow)
}

/// Per-uid deltas, for uids with traffic in the interval (same rules as interfaces).
pub fn uid_deltas(prev: &NetSample, cur: &NetSample) -> Vec<(u32, UidCounters)> {
    deltas(&prev.uids, &cur.uids)
}

/// Per-interface increase of the kernel's error and drop counters, for every interface
/// in both samples whose counters did not go backwards (zero increases included: a row
/// with traffic then says "no drops", not "unknown"). An interface new in `cur` is
/// unknown: its counters hold everything since it was created.
pub fn link_deltas(prev: &NetSample, cur: &NetSample) -> BTreeMap<IfaceKey, LinkErrors> {
    cur.links
        .iter()
        .filter_map(|(key, now)| Some((*key, now.since(prev.links.get(key)?, delta_64)?)))
        .collect()
}

/// A key's set of cumulative counters.
trait Cumulative: Copy + Default + PartialEq {
    /// The increase of every counter since `prev` ([`counter_delta`]'s rules); `None`
    /// when any one went backwards.
    fn delta(prev: Option<&Self>, cur: &Self) -> Option<Self>;
}

impl Cumulative for IfaceCounters {
    fn delta(prev: Option<&Self>, cur: &Self) -> Option<Self> {
        Some(IfaceCounters {
            rx_bytes: counter_delta(prev.map(|p| p.rx_bytes), cur.rx_bytes)?,
            tx_bytes: counter_delta(prev.map(|p| p.tx_bytes), cur.tx_bytes)?,
            rx_packets: counter_delta(prev.map(|p| p.rx_packets), cur.rx_packets)?,
            tx_packets: counter_delta(prev.map(|p| p.tx_packets), cur.tx_packets)?,
        })
    }
}

impl Cumulative for UidCounters {
    fn delta(prev: Option<&Self>, cur: &Self) -> Option<Self> {
        Some(UidCounters {
            rx_bytes: counter_delta(prev.map(|p| p.rx_bytes), cur.rx_bytes)?,
            tx_bytes: counter_delta(prev.map(|p| p.tx_bytes), cur.tx_bytes)?,
        })
    }
}

/// The keys of `cur` whose counters grew since `prev`, with the increase.
fn deltas<K: Copy + Ord, C: Cumulative>(
    prev: &BTreeMap<K, C>,
    cur: &BTreeMap<K, C>,
) -> Vec<(K, C)> {
    cur.iter()
        .filter_map(|(key, counters)| {
            let delta = C::delta(prev.get(key), counters)?;
            (delta != C::default()).then_some((*key, delta))
        })
        .collect()
}

/// Keys whose last activity (CLOCK_MONOTONIC ns) is at least `idle_ns` before `now_ns`.
pub fn idle_keys<K: Copy + Ord>(
    last_active: &BTreeMap<K, u64>,
    now_ns: u64,
    idle_ns: u64,
) -> Vec<K> {
    last_active
        .iter()
        .filter(|(_, &at)| now_ns.saturating_sub(at) >= idle_ns)
        .map(|(key, _)| *key)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(rx: u64, tx: u64) -> IfaceCounters {
        IfaceCounters {
            rx_bytes: rx * 100,
            tx_bytes: tx * 100,
            rx_packets: rx,
            tx_packets: tx,
        }
    }

    fn sample(mono_ns: u64, ifaces: &[(IfaceKey, IfaceCounters)]) -> NetSample {
        NetSample {
            at: Stamp::monotonic(mono_ns),
            ifaces: ifaces.iter().copied().collect(),
            ..NetSample::default()
        }
    }

    #[test]
    fn deltas_of_active_interfaces_only() {
        let prev = sample(0, &[((1, 1), iface(10, 10)), ((1, 2), iface(5, 5))]);
        let cur = sample(
            1_000_000_000,
            &[
                ((1, 1), iface(13, 11)),
                ((1, 2), iface(5, 5)),
                ((2, 1), iface(1, 0)),
            ],
        );
        assert_eq!(
            iface_deltas(&prev, &cur),
            vec![((1, 1), iface(3, 1)), ((2, 1), iface(1, 0))]
        );
        assert_eq!(Stamp::dur_ms(prev.at, cur.at), 1000);
    }

    #[test]
    fn backwards_counter_is_unknown_and_forgotten_key_is_new() {
        let mut prev = sample(0, &[((1, 1), iface(10, 10))]);
        let cur = sample(1, &[((1, 1), iface(2, 12))]);
        assert!(iface_deltas(&prev, &cur).is_empty());
        prev.forget(&[(1, 1)], &[]);
        assert_eq!(iface_deltas(&prev, &cur), vec![((1, 1), iface(2, 12))]);
    }

    #[test]
    fn uid_deltas_follow_the_same_rules() {
        let mut prev = NetSample::default();
        prev.uids.insert(
            7,
            UidCounters {
                rx_bytes: 5,
                tx_bytes: 5,
            },
        );
        prev.uids.insert(
            8,
            UidCounters {
                rx_bytes: 5,
                tx_bytes: 5,
            },
        );
        let mut cur = prev.clone();
        cur.uids.insert(
            7,
            UidCounters {
                rx_bytes: 9,
                tx_bytes: 5,
            },
        );
        cur.uids.insert(
            8,
            UidCounters {
                rx_bytes: 1,
                tx_bytes: 5,
            },
        );
        assert_eq!(
            uid_deltas(&prev, &cur),
            vec![(
                7,
                UidCounters {
                    rx_bytes: 4,
                    tx_bytes: 0
                }
            )]
        );
    }

    #[test]
    fn link_deltas_of_interfaces_in_both_samples() {
        let errors = |rx_dropped| LinkErrors {
            rx_dropped,
            ..LinkErrors::default()
        };
        let mut prev = sample(0, &[]);
        prev.links = [
            ((1, 1), errors(5)),
            ((1, 2), errors(9)),
            ((1, 3), errors(1)),
        ]
        .into();
        let mut cur = sample(1, &[]);
        cur.links = [
            ((1, 1), errors(8)),
            ((1, 2), errors(2)),
            ((1, 3), errors(1)),
        ]
        .into();
        cur.links.insert((1, 4), errors(7));
        let d = link_deltas(&prev, &cur);
        assert_eq!(d, [((1, 1), errors(3)), ((1, 3), errors(0))].into());
        cur.forget(&[(1, 1)], &[]);
        assert!(!cur.links.contains_key(&(1, 1)));
    }

    #[test]
    fn idle_after_the_limit_only() {
        let last: BTreeMap<u32, u64> = [(1, 100), (2, 500), (3, 0)].into_iter().collect();
        assert_eq!(idle_keys(&last, 600, 500), vec![1, 3]);
        assert!(idle_keys(&last, 100, 500).is_empty());
    }
}
