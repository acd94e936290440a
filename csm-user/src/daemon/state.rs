//! The last cumulative values written, persisted in the data dir (`.csm-state`) right
//! after each successful flush, so that the next run (which adopts the pinned counters)
//! can emit what accrued while the daemon was down instead of losing it.
//!
//! Plain text, one fact per line; replaced atomically (temporary, fsync, rename).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::model::net::{IfaceCounters, UidCounters};
use crate::model::{CpuSample, NetSample};

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
        let mut out = format!(
            "{HEADER}\ninstance {}\nmono_ns {}\nwall_us {}\n",
            self.instance, self.cpu.mono_ns, self.cpu.wall_us
        );
        for (uid, ns) in &self.cpu.per_uid {
            out.push_str(&format!("cpu {uid} {ns}\n"));
        }
        if let Some(net) = &self.net {
            out.push_str(&format!(
                "net_mono_ns {}\nnet_wall_us {}\n",
                net.mono_ns, net.wall_us
            ));
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
            let numbers =
                || -> Option<Vec<u64>> { words[1..].iter().map(|w| w.parse().ok()).collect() };
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
            mono_ns: mono?,
            wall_us: wall?,
            per_uid,
        };
        state.net = match (net_mono, net_wall) {
            (Some(mono_ns), Some(wall_us)) => Some(NetSample {
                mono_ns,
                wall_us,
                ..net
            }),
            (None, None) if net.ifaces.is_empty() && net.uids.is_empty() => None,
            _ => return None,
        };
        (!state.instance.is_empty()).then_some(state)
    }

    pub fn load(data_dir: &Path) -> Option<State> {
        State::parse(&fs::read_to_string(path(data_dir)).ok()?)
    }

    /// Replaces the state file atomically.
    pub fn save(&self, data_dir: &Path) -> io::Result<()> {
        let target = path(data_dir);
        let temp = data_dir.join(format!("{STATE_FILE}.tmp"));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(&temp)?;
        file.write_all(self.render().as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, &target)?;
        File::open(data_dir)?.sync_all()
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
                mono_ns: 5,
                wall_us: 6,
                per_uid: [(0, 10), (1000, 20)].into_iter().collect(),
            },
            net: Some(NetSample {
                mono_ns: 7,
                wall_us: 8,
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
}
