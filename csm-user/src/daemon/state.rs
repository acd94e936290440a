//! The last cumulative values written, persisted in the data dir (`.csm-state`) right
//! after each successful flush, so that the next run (which adopts the pinned counters)
//! can emit what accrued while the daemon was down instead of losing it.
//!
//! Plain text, one fact per line; replaced atomically (temporary, fsync, rename).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::model::net::{IfaceCounters, UidCounters};
use crate::model::netdev;
use crate::model::{CpuSample, NetSample, Stamp};

pub const STATE_FILE: &str = ".csm-state";
const HEADER: &str = "csm-state 2";
/// Files of the previous version hold CPU only; still read.
const HEADER_V1: &str = "csm-state 1";

#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    /// Identity of the counters the values come from (see `Loaded::instance`).
    pub instance: String,
    /// The last CPU sample whose rows were written.
    pub cpu: CpuSample,
    /// The last traffic sample whose rows were written (when traffic is counted by eBPF).
    pub net: Option<NetSample>,
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(STATE_FILE)
}

impl State {
    pub fn render(&self) -> String {
        let mut out = format!("{HEADER}\ninstance {}\n", self.instance);
        out.push_str(&stamp_lines("", self.cpu.at));
        for (uid, ns) in &self.cpu.per_uid {
            out.push_str(&format!("cpu {uid} {ns}\n"));
        }
        if let Some(net) = &self.net {
            out.push_str(&stamp_lines("net_", net.at));
            for ((netns, ifindex), c) in &net.ifaces {
                out.push_str(&format!(
                    "iface {netns} {ifindex} {} {} {} {}\n",
                    c.rx_bytes, c.tx_bytes, c.rx_packets, c.tx_packets
                ));
            }
            for (uid, c) in &net.uids {
                out.push_str(&format!("uid_net {uid} {} {}\n", c.rx_bytes, c.tx_bytes));
            }
        }
        out
    }

    /// `None` for anything that is not a complete state file of a known version.
    pub fn parse(text: &str) -> Option<State> {
        let mut lines = text.lines();
        let header = lines.next()?;
        if header != HEADER && header != HEADER_V1 {
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

    /// `None` when there is no readable state file (a link, a FIFO or a file larger than
    /// [`MAX_STATE_BYTES`] planted under its name is not read).
    pub fn load(data_dir: &Path) -> Option<State> {
        State::parse(&read_state_file(data_dir, STATE_FILE).ok()??)
    }

    /// Replaces the state file atomically.
    pub fn save(&self, data_dir: &Path) -> io::Result<()> {
        write_atomically(data_dir, STATE_FILE, &self.render())
    }
}

/// When a sample was taken, as both state files write it.
fn stamp_lines(prefix: &str, at: Stamp) -> String {
    format!(
        "{prefix}mono_ns {}\n{prefix}wall_us {}\n",
        at.mono_ns, at.wall_us
    )
}

/// Every word as a number, or `None` if one is not.
fn numbers(words: &[&str]) -> Option<Vec<u64>> {
    words.iter().map(|w| w.parse().ok()).collect()
}

/// More than a state file of the most uids and interfaces csm tracks (16,384 uids, as
/// many interfaces) ever holds.
pub const MAX_STATE_BYTES: u64 = 16 << 20;

/// The text of `<data_dir>/<name>`: opened relative to the data dir, not through a link,
/// without blocking, only if a regular file, at most [`MAX_STATE_BYTES`]; `Ok(None)` if
/// there is none.
fn read_state_file(data_dir: &Path, name: &str) -> io::Result<Option<String>> {
    csm_store::beneath::read_text_in(data_dir, name, MAX_STATE_BYTES)
}

/// Replaces `<data_dir>/<name>` with `text`, whole (see `csm_store::atomic`).
fn write_atomically(data_dir: &Path, name: &str, text: &str) -> io::Result<()> {
    csm_store::atomic::write_file(&data_dir.join(name), 0o640, text.as_bytes())
}

pub const NETDEV_STATE_FILE: &str = ".csm-netdev-state";
const NETDEV_HEADER: &str = "csm-netdev-state 1";

/// The /proc backend's counterpart: the last `/proc/net/dev` sample whose rows were
/// written, and the boot it belongs to (the counters count since boot). A clean stop
/// removes the file, as it removes the eBPF pins; a run that finds it after a crash in
/// the same boot writes the gap's traffic.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetdevState {
    pub boot_id: String,
    pub sample: netdev::NetSample,
}

impl NetdevState {
    pub fn render(&self) -> String {
        let mut out = format!("{NETDEV_HEADER}\nboot_id {}\n", self.boot_id);
        out.push_str(&stamp_lines("", self.sample.at));
        // Interface names hold no whitespace (the kernel refuses such names).
        for (name, c) in &self.sample.ifaces {
            let ifindex = c.ifindex.map_or("-".to_string(), |i| i.to_string());
            out.push_str(&format!(
                "iface {name} {ifindex} {} {} {} {}\n",
                c.rx_bytes, c.tx_bytes, c.rx_packets, c.tx_packets
            ));
        }
        out
    }

    /// `None` for anything that is not a complete file of this version.
    pub fn parse(text: &str) -> Option<NetdevState> {
        let mut lines = text.lines();
        if lines.next()? != NETDEV_HEADER {
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

    /// `Ok(None)` when there is no file (the last run stopped cleanly, or never ran);
    /// an error naming the file when it cannot be read or is not a state file.
    pub fn load(data_dir: &Path) -> Result<Option<NetdevState>, String> {
        let path = data_dir.join(NETDEV_STATE_FILE);
        let text = match read_state_file(data_dir, NETDEV_STATE_FILE) {
            Ok(Some(text)) => text,
            Ok(None) => return Ok(None),
            Err(err) => return Err(format!("cannot read {err}")),
        };
        match NetdevState::parse(&text) {
            Some(state) => Ok(Some(state)),
            None => Err(format!(
                "{} is not a `{NETDEV_HEADER}` file",
                path.display()
            )),
        }
    }

    pub fn save(&self, data_dir: &Path) -> io::Result<()> {
        write_atomically(data_dir, NETDEV_STATE_FILE, &self.render())
    }

    /// At a clean stop: nothing is left to recover.
    pub fn remove(data_dir: &Path) -> io::Result<()> {
        match fs::remove_file(data_dir.join(NETDEV_STATE_FILE)) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let state = State {
            instance: "abc-123#42".into(),
            cpu: CpuSample {
                at: Stamp {
                    mono_ns: 5,
                    wall_us: 6,
                },
                per_uid: [(0, 10), (1000, 20)].into_iter().collect(),
            },
            net: Some(NetSample {
                at: Stamp {
                    mono_ns: 7,
                    wall_us: 8,
                },
                ifaces: [(
                    (4026531840, 2),
                    IfaceCounters {
                        rx_bytes: 1,
                        tx_bytes: 2,
                        rx_packets: 3,
                        tx_packets: 4,
                    },
                )]
                .into_iter()
                .collect(),
                uids: [(
                    1000,
                    UidCounters {
                        rx_bytes: 5,
                        tx_bytes: 6,
                    },
                )]
                .into_iter()
                .collect(),
                ..NetSample::default()
            }),
        };
        let dir = tempfile::tempdir().unwrap();
        state.save(dir.path()).unwrap();
        assert_eq!(State::load(dir.path()), Some(state));
        assert_eq!(State::parse("csm-state 1\ninstance x\nmono_ns 1\n"), None);
        // A file of the previous version (CPU only) still reads.
        let v1 = State::parse("csm-state 1\ninstance x\nmono_ns 1\nwall_us 2\ncpu 0 3\n").unwrap();
        assert_eq!((v1.cpu.per_uid[&0], v1.net), (3, None));
        // Interface lines without the sample's time, or with a missing counter, are not
        // a state to trust.
        assert_eq!(
            State::parse("csm-state 2\ninstance x\nmono_ns 1\nwall_us 2\niface 1 2 3 4 5 6\n"),
            None
        );
        assert_eq!(
            State::parse("csm-state 2\ninstance x\nmono_ns 1\nwall_us 2\nnet_mono_ns 1\nnet_wall_us 2\niface 1 2 3 4 5\n"),
            None
        );
        assert_eq!(State::parse("something else"), None);
        assert_eq!(
            State::parse("csm-state 1\ninstance x\nmono_ns 1\nwall_us 2\ncpu a b\n"),
            None
        );
    }

    /// State files written by csm before samples carried a `Stamp` read the same, and
    /// are written byte for byte the same: the format did not change.
    #[test]
    fn files_of_the_previous_release_read_and_render_identically() {
        let written = "csm-state 2\ninstance csm-3f2a#17\nmono_ns 123456789012\n\
            wall_us 1795000800000000\ncpu 0 42\ncpu 1000 7000000000\n\
            net_mono_ns 123456789013\nnet_wall_us 1795000800000001\n\
            iface 4026531840 1 100 100 2 2\nuid_net 1000 5 6\n";
        let state = State::parse(written).unwrap();
        assert_eq!(
            state.cpu.at,
            Stamp {
                mono_ns: 123_456_789_012,
                wall_us: 1_795_000_800_000_000
            }
        );
        assert_eq!(state.cpu.per_uid[&1000], 7_000_000_000);
        let net = state.net.as_ref().unwrap();
        assert_eq!(net.at.mono_ns, 123_456_789_013);
        assert_eq!(net.ifaces[&(4026531840, 1)].rx_packets, 2);
        assert_eq!(state.render(), written);

        let written = "csm-netdev-state 1\nboot_id 0c6e1b1e\nmono_ns 5\nwall_us 6\n\
            iface eth0 2 10000000000 1 2 3\niface venet0 - 0 0 0 0\n";
        let netdev = NetdevState::parse(written).unwrap();
        assert_eq!(
            netdev.sample.at,
            Stamp {
                mono_ns: 5,
                wall_us: 6
            }
        );
        assert_eq!(netdev.sample.ifaces["venet0"].ifindex, None);
        assert_eq!(netdev.render(), written);
    }

    #[test]
    fn netdev_state_round_trips_and_rejects_garbage() {
        let mut sample = netdev::NetSample {
            at: Stamp {
                mono_ns: 5,
                wall_us: 6,
            },
            ..Default::default()
        };
        sample.ifaces.insert(
            "eth0".into(),
            netdev::IfaceSample {
                ifindex: Some(2),
                rx_bytes: 10_000_000_000,
                tx_bytes: 1,
                rx_packets: 2,
                tx_packets: 3,
            },
        );
        sample.ifaces.insert(
            "venet0".into(),
            netdev::IfaceSample {
                ifindex: None,
                ..Default::default()
            },
        );
        let state = NetdevState {
            boot_id: "0c6e1b1e-2f0a-4c5e-9d1a-6f3b2a1c0d9e".into(),
            sample,
        };
        let dir = tempfile::tempdir().unwrap();
        state.save(dir.path()).unwrap();
        assert_eq!(NetdevState::load(dir.path()), Ok(Some(state)));
        NetdevState::remove(dir.path()).unwrap();
        NetdevState::remove(dir.path()).unwrap();
        assert_eq!(NetdevState::load(dir.path()), Ok(None));
        fs::write(dir.path().join(NETDEV_STATE_FILE), "garbage\n").unwrap();
        let err = NetdevState::load(dir.path()).unwrap_err();
        assert!(err.contains(NETDEV_STATE_FILE), "{err}");
        let head = "csm-netdev-state 1\nboot_id b\nmono_ns 1\nwall_us 2\n";
        assert!(NetdevState::parse(head).is_some());
        assert_eq!(
            NetdevState::parse(&format!("{head}iface eth0 2 1 2 3\n")),
            None
        );
        assert_eq!(
            NetdevState::parse(&format!("{head}iface eth0 x 1 2 3 4\n")),
            None
        );
        assert_eq!(
            NetdevState::parse("csm-netdev-state 1\nmono_ns 1\nwall_us 2\n"),
            None
        );
    }
}
