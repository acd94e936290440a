//! The state files of csm before they were JSON: plain text, one fact per line, read by
//! position (`csm-state 1`, `csm-state 2`, `csm-netdev-state 1`). Still read, so that the
//! first run of a new csm after a crash of an old one recovers the gap; never written.

use std::collections::BTreeMap;

use super::values::{NetdevState, State};
use crate::model::net::{IfaceCounters, UidCounters};
use crate::model::netdev;
use crate::model::{CpuSample, NetSample, Stamp};

pub const HEADER_V2: &str = "csm-state 2";
/// Files of the first version hold CPU only.
pub const HEADER_V1: &str = "csm-state 1";
pub const NETDEV_HEADER_V1: &str = "csm-netdev-state 1";

/// `None` for anything that is not a complete state file of a known version.
pub fn parse_state(text: &str) -> Option<State> {
    let mut lines = text.lines();
    let header = lines.next()?;
    if header != HEADER_V2 && header != HEADER_V1 {
        return None;
    }
    let mut state = State::default();
    let mut per_uid = BTreeMap::new();
    let (mut mono, mut wall) = (None, None);
    let (mut net_mono, mut net_wall) = (None, None);
    let mut net = NetSample::default();
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        let numbers = || numbers(&words[1..]);
        match (words.first().copied()?, words.len()) {
            ("instance", 2) => state.instance = words[1].to_string(),
            ("mono_ns", 2) => mono = Some(words[1].parse().ok()?),
            ("wall_us", 2) => wall = Some(words[1].parse().ok()?),
            ("cpu", 3) => {
                let n = numbers()?;
                per_uid.insert(u32::try_from(n[0]).ok()?, n[1]);
            }
            ("net_mono_ns", 2) => net_mono = Some(words[1].parse().ok()?),
            ("net_wall_us", 2) => net_wall = Some(words[1].parse().ok()?),
            ("iface", 7) => {
                let n = numbers()?;
                let key = (u32::try_from(n[0]).ok()?, u32::try_from(n[1]).ok()?);
                let counters = IfaceCounters {
                    rx_bytes: n[2],
                    tx_bytes: n[3],
                    rx_packets: n[4],
                    tx_packets: n[5],
                };
                net.ifaces.insert(key, counters);
            }
            ("uid_net", 4) => {
                let n = numbers()?;
                let counters = UidCounters {
                    rx_bytes: n[1],
                    tx_bytes: n[2],
                };
                net.uids.insert(u32::try_from(n[0]).ok()?, counters);
            }
            _ => return None,
        }
    }
    state.cpu = CpuSample {
        at: Stamp {
            mono_ns: mono?,
            wall_us: wall?,
        },
        per_uid,
    };
    state.net = match (net_mono, net_wall) {
        (Some(mono_ns), Some(wall_us)) => Some(NetSample {
            at: Stamp { mono_ns, wall_us },
            ..net
        }),
        (None, None) if net.ifaces.is_empty() && net.uids.is_empty() => None,
        _ => return None,
    };
    (!state.instance.is_empty()).then_some(state)
}

/// `None` for anything that is not a complete `csm-netdev-state 1` file.
pub fn parse_netdev(text: &str) -> Option<NetdevState> {
    let mut lines = text.lines();
    if lines.next()? != NETDEV_HEADER_V1 {
        return None;
    }
    let mut state = NetdevState::default();
    let (mut mono, mut wall) = (None, None);
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        match (words.first().copied()?, words.len()) {
            ("boot_id", 2) => state.boot_id = words[1].to_string(),
            ("mono_ns", 2) => mono = Some(words[1].parse().ok()?),
            ("wall_us", 2) => wall = Some(words[1].parse().ok()?),
            ("iface", 7) => {
                let ifindex = match words[2] {
                    "-" => None,
                    n => Some(n.parse().ok()?),
                };
                let n = numbers(&words[3..])?;
                let iface = netdev::IfaceSample {
                    ifindex,
                    rx_bytes: n[0],
                    tx_bytes: n[1],
                    rx_packets: n[2],
                    tx_packets: n[3],
                    link: None,
                };
                state.sample.ifaces.insert(words[1].to_string(), iface);
            }
            _ => return None,
        }
    }
    state.sample.at = Stamp {
        mono_ns: mono?,
        wall_us: wall?,
    };
    (!state.boot_id.is_empty()).then_some(state)
}

/// Every word as a number, or `None` if one is not.
fn numbers(words: &[&str]) -> Option<Vec<u64>> {
    words.iter().map(|w| w.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_and_incomplete_files() {
        assert_eq!(parse_state("csm-state 1\ninstance x\nmono_ns 1\n"), None);
        // A file of the first version (CPU only) reads.
        let v1 = parse_state("csm-state 1\ninstance x\nmono_ns 1\nwall_us 2\ncpu 0 3\n").unwrap();
        assert_eq!((v1.cpu.per_uid[&0], v1.net), (3, None));
        // Interface lines without the sample's time, or with a missing counter, are not
        // a state to trust.
        assert_eq!(
            parse_state("csm-state 2\ninstance x\nmono_ns 1\nwall_us 2\niface 1 2 3 4 5 6\n"),
            None
        );
        assert_eq!(
            parse_state("csm-state 2\ninstance x\nmono_ns 1\nwall_us 2\nnet_mono_ns 1\nnet_wall_us 2\niface 1 2 3 4 5\n"),
            None
        );
        assert_eq!(parse_state("something else"), None);
        assert_eq!(
            parse_state("csm-state 1\ninstance x\nmono_ns 1\nwall_us 2\ncpu a b\n"),
            None
        );
        let head = "csm-netdev-state 1\nboot_id b\nmono_ns 1\nwall_us 2\n";
        assert!(parse_netdev(head).is_some());
        assert_eq!(parse_netdev(&format!("{head}iface eth0 2 1 2 3\n")), None);
        assert_eq!(parse_netdev(&format!("{head}iface eth0 x 1 2 3 4\n")), None);
        assert_eq!(
            parse_netdev("csm-netdev-state 1\nmono_ns 1\nwall_us 2\n"),
            None
        );
    }
}
