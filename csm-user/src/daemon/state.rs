//! The last cumulative values written, persisted in the data dir (`.csm-state`) right
//! after each successful flush, so that the next run (which adopts the pinned counters)
//! can emit what accrued while the daemon was down instead of losing it.
//!
//! Self-describing JSON: a `format` and `version`, then every value by name (see
//! [`StateFile`] and [`NetdevStateFile`]); replaced atomically (temporary, fsync, rename),
//! read only as a regular file beneath the data dir, never through a link, at most
//! [`MAX_STATE_BYTES`]. Files of earlier versions (text, by position) are still read by
//! [`legacy`].

mod legacy;
mod values;

pub use values::{NetdevState, State};

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::metrics::registry::PinnedCounters;
use crate::model::net::{IfaceCounters, UidCounters};
use crate::model::netdev;
use crate::model::{CpuSample, LinkErrors, NetSample, Stamp};

pub const STATE_FILE: &str = ".csm-state";
const FORMAT: &str = "csm-state";
/// 1 and 2 were text (`legacy`).
const VERSION: u32 = 3;

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(STATE_FILE)
}

impl State {
    pub fn render(&self) -> String {
        to_json(&StateFile::from(self))
    }

    /// `None` for anything that is not a complete state file of a known version.
    pub fn parse(text: &str) -> Option<State> {
        if !is_json(text) {
            return legacy::parse_state(text);
        }
        let file: StateFile = serde_json::from_str(text).ok()?;
        (file.format == FORMAT && file.version == VERSION && !file.instance.is_empty())
            .then(|| file.into())
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

/// `.csm-state` as written: [`State`], every value named.
#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    /// `csm-state`.
    format: String,
    version: u32,
    instance: String,
    cpu: CpuFile,
    net: Option<NetFile>,
    /// Absent when the endpoint is off (and in files written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metrics: Option<PinnedCounters>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StampFile {
    mono_ns: u64,
    wall_us: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct CpuFile {
    at: StampFile,
    uids: Vec<UidCpuFile>,
}

#[derive(Debug, Serialize, Deserialize)]
struct UidCpuFile {
    uid: u32,
    cpu_ns: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct NetFile {
    at: StampFile,
    ifaces: Vec<IfaceFile>,
    uids: Vec<UidNetFile>,
    /// The kernel's error and drop counters (absent before they were collected).
    #[serde(default)]
    links: Vec<LinkFile>,
}

#[derive(Debug, Serialize, Deserialize)]
struct IfaceFile {
    netns: u32,
    ifindex: u32,
    rx_bytes: u64,
    tx_bytes: u64,
    rx_packets: u64,
    tx_packets: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct UidNetFile {
    uid: u32,
    rx_bytes: u64,
    tx_bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct LinkFile {
    netns: u32,
    ifindex: u32,
    errors: ErrorsFile,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct ErrorsFile {
    rx_errors: u64,
    tx_errors: u64,
    rx_dropped: u64,
    tx_dropped: u64,
}

impl From<Stamp> for StampFile {
    fn from(at: Stamp) -> Self {
        StampFile {
            mono_ns: at.mono_ns,
            wall_us: at.wall_us,
        }
    }
}

impl From<StampFile> for Stamp {
    fn from(at: StampFile) -> Self {
        Stamp {
            mono_ns: at.mono_ns,
            wall_us: at.wall_us,
        }
    }
}

impl From<LinkErrors> for ErrorsFile {
    fn from(e: LinkErrors) -> Self {
        ErrorsFile {
            rx_errors: e.rx_errors,
            tx_errors: e.tx_errors,
            rx_dropped: e.rx_dropped,
            tx_dropped: e.tx_dropped,
        }
    }
}

impl From<ErrorsFile> for LinkErrors {
    fn from(e: ErrorsFile) -> Self {
        LinkErrors {
            rx_errors: e.rx_errors,
            tx_errors: e.tx_errors,
            rx_dropped: e.rx_dropped,
            tx_dropped: e.tx_dropped,
        }
    }
}

impl From<&State> for StateFile {
    fn from(state: &State) -> Self {
        StateFile {
            format: FORMAT.into(),
            version: VERSION,
            instance: state.instance.clone(),
            cpu: CpuFile {
                at: state.cpu.at.into(),
                uids: (state.cpu.per_uid.iter())
                    .map(|(&uid, &cpu_ns)| UidCpuFile { uid, cpu_ns })
                    .collect(),
            },
            net: state.net.as_ref().map(NetFile::from),
            metrics: state.metrics.clone(),
        }
    }
}

impl From<&NetSample> for NetFile {
    fn from(net: &NetSample) -> Self {
        NetFile {
            at: net.at.into(),
            ifaces: (net.ifaces.iter())
                .map(|(&(netns, ifindex), c)| IfaceFile {
                    netns,
                    ifindex,
                    rx_bytes: c.rx_bytes,
                    tx_bytes: c.tx_bytes,
                    rx_packets: c.rx_packets,
                    tx_packets: c.tx_packets,
                })
                .collect(),
            uids: (net.uids.iter())
                .map(|(&uid, c)| UidNetFile {
                    uid,
                    rx_bytes: c.rx_bytes,
                    tx_bytes: c.tx_bytes,
                })
                .collect(),
            links: (net.links.iter())
                .map(|(&(netns, ifindex), &e)| LinkFile {
                    netns,
                    ifindex,
                    errors: e.into(),
                })
                .collect(),
        }
    }
}

impl From<StateFile> for State {
    fn from(file: StateFile) -> Self {
        State {
            instance: file.instance,
            cpu: CpuSample {
                at: file.cpu.at.into(),
                per_uid: (file.cpu.uids.into_iter())
                    .map(|u| (u.uid, u.cpu_ns))
                    .collect(),
            },
            net: file.net.map(NetSample::from),
            metrics: file.metrics,
        }
    }
}

impl From<NetFile> for NetSample {
    fn from(net: NetFile) -> Self {
        NetSample {
            at: net.at.into(),
            ifaces: (net.ifaces.into_iter())
                .map(|i| {
                    let counters = IfaceCounters {
                        rx_bytes: i.rx_bytes,
                        tx_bytes: i.tx_bytes,
                        rx_packets: i.rx_packets,
                        tx_packets: i.tx_packets,
                    };
                    ((i.netns, i.ifindex), counters)
                })
                .collect(),
            uids: (net.uids.into_iter())
                .map(|u| {
                    let counters = UidCounters {
                        rx_bytes: u.rx_bytes,
                        tx_bytes: u.tx_bytes,
                    };
                    (u.uid, counters)
                })
                .collect(),
            links: (net.links.into_iter())
                .map(|l| ((l.netns, l.ifindex), l.errors.into()))
                .collect(),
            ..NetSample::default()
        }
    }
}

/// A file of this csm starts with `{`; the text files of earlier versions with their
/// header line.
fn is_json(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// One line of JSON and a newline.
fn to_json(value: &impl Serialize) -> String {
    let mut text = serde_json::to_string(value).expect("plain structs always serialize");
    text.push('\n');
    text
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
const NETDEV_FORMAT: &str = "csm-netdev-state";
/// 1 was text (`legacy`).
const NETDEV_VERSION: u32 = 2;

/// `.csm-netdev-state` as written: [`NetdevState`], every value named.
#[derive(Debug, Serialize, Deserialize)]
struct NetdevStateFile {
    /// `csm-netdev-state`.
    format: String,
    version: u32,
    boot_id: String,
    at: StampFile,
    ifaces: Vec<NetdevIfaceFile>,
}

#[derive(Debug, Serialize, Deserialize)]
struct NetdevIfaceFile {
    name: String,
    /// Null where /sys/class/net does not say.
    ifindex: Option<u32>,
    rx_bytes: u64,
    tx_bytes: u64,
    rx_packets: u64,
    tx_packets: u64,
    /// Null where /proc/net/dev has no such columns.
    #[serde(default)]
    errors: Option<ErrorsFile>,
}

impl From<&NetdevState> for NetdevStateFile {
    fn from(state: &NetdevState) -> Self {
        NetdevStateFile {
            format: NETDEV_FORMAT.into(),
            version: NETDEV_VERSION,
            boot_id: state.boot_id.clone(),
            at: state.sample.at.into(),
            ifaces: (state.sample.ifaces.iter())
                .map(|(name, i)| NetdevIfaceFile {
                    name: name.clone(),
                    ifindex: i.ifindex,
                    rx_bytes: i.rx_bytes,
                    tx_bytes: i.tx_bytes,
                    rx_packets: i.rx_packets,
                    tx_packets: i.tx_packets,
                    errors: i.link.map(ErrorsFile::from),
                })
                .collect(),
        }
    }
}

impl From<NetdevStateFile> for NetdevState {
    fn from(file: NetdevStateFile) -> Self {
        let ifaces = (file.ifaces.into_iter())
            .map(|i| {
                let sample = netdev::IfaceSample {
                    ifindex: i.ifindex,
                    rx_bytes: i.rx_bytes,
                    tx_bytes: i.tx_bytes,
                    rx_packets: i.rx_packets,
                    tx_packets: i.tx_packets,
                    link: i.errors.map(LinkErrors::from),
                };
                (i.name, sample)
            })
            .collect();
        NetdevState {
            boot_id: file.boot_id,
            sample: netdev::NetSample {
                at: file.at.into(),
                ifaces,
            },
        }
    }
}

impl NetdevState {
    pub fn render(&self) -> String {
        to_json(&NetdevStateFile::from(self))
    }

    /// `None` for anything that is not a complete file of a known version.
    pub fn parse(text: &str) -> Option<NetdevState> {
        if !is_json(text) {
            return legacy::parse_netdev(text);
        }
        let file: NetdevStateFile = serde_json::from_str(text).ok()?;
        let known = file.format == NETDEV_FORMAT && file.version == NETDEV_VERSION;
        (known && !file.boot_id.is_empty()).then(|| file.into())
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
                "{} is not a `{NETDEV_FORMAT}` file of version {NETDEV_VERSION} or earlier",
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

    fn net_sample() -> NetSample {
        NetSample {
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
                    tx_packets: u64::MAX,
                },
            )]
            .into(),
            uids: [(
                1000,
                UidCounters {
                    rx_bytes: 5,
                    tx_bytes: 6,
                },
            )]
            .into(),
            links: [(
                (4026531840, 2),
                LinkErrors {
                    rx_errors: 1,
                    tx_errors: 2,
                    rx_dropped: 3,
                    tx_dropped: 4,
                },
            )]
            .into(),
            ..NetSample::default()
        }
    }

    #[test]
    fn round_trips_and_rejects_garbage() {
        let state = State {
            instance: "abc-123#42".into(),
            cpu: CpuSample {
                at: Stamp {
                    mono_ns: 5,
                    wall_us: -6,
                },
                per_uid: [(0, 10), (1000, 20)].into(),
            },
            net: Some(net_sample()),
            metrics: Some(pinned_counters()),
        };
        let dir = tempfile::tempdir().unwrap();
        state.save(dir.path()).unwrap();
        assert_eq!(State::load(dir.path()), Some(state.clone()));
        let text = state.render();
        assert!(
            text.starts_with(r#"{"format":"csm-state","version":3,"#),
            "{text}"
        );
        // Another version, another format, a missing field, an empty instance: no state.
        for (from, to) in [
            (r#""version":3"#, r#""version":4"#),
            (r#""format":"csm-state""#, r#""format":"csm-netdev-state""#),
            (r#""wall_us":-6"#, r#""wall_usx":-6"#),
            (r#""instance":"abc-123#42""#, r#""instance":"""#),
        ] {
            assert_eq!(State::parse(&text.replace(from, to)), None, "{to}");
        }
        assert_eq!(State::parse("something else"), None);
        assert_eq!(State::parse("{"), None);
        // Written before the error and drop counters were kept: no links.
        let without = text.replace(r#","links":[{"netns":4026531840,"ifindex":2,"errors":{"rx_errors":1,"tx_errors":2,"rx_dropped":3,"tx_dropped":4}}]"#, "");
        assert_ne!(without, text);
        assert!(State::parse(&without)
            .unwrap()
            .net
            .unwrap()
            .links
            .is_empty());
        // Written with the endpoint off (or before it existed): no counters to continue.
        let off = State {
            metrics: None,
            ..state.clone()
        };
        assert!(!off.render().contains("\"metrics\""));
        assert_eq!(State::parse(&off.render()), Some(off));
    }

    fn pinned_counters() -> PinnedCounters {
        use crate::metrics::registry::{InterfaceLabels, InterfaceSeries, UserLabels, UserSeries};
        PinnedCounters {
            since_us: 1_700_000_000_123_456,
            users: vec![UserSeries {
                labels: UserLabels {
                    user: "alice".into(),
                    uid: "1000".into(),
                },
                cpu_seconds: 1.25,
                receive_bytes: 7,
                transmit_bytes: 8,
            }],
            interfaces: vec![InterfaceSeries {
                labels: InterfaceLabels {
                    interface: "(other)".into(),
                    netns: "(other)".into(),
                },
                receive_bytes: 1,
                transmit_bytes: 2,
                receive_packets: 3,
                transmit_packets: 4,
            }],
        }
    }

    /// State files written by csm before they were JSON (text read by position) still
    /// read, to the same values; what is written now is JSON and reads back the same.
    #[test]
    fn files_of_earlier_releases_still_read() {
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
        assert_eq!(net.uids[&1000].tx_bytes, 6);
        assert_eq!(State::parse(&state.render()), Some(state));

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
        assert_eq!(netdev.sample.ifaces["eth0"].rx_bytes, 10_000_000_000);
        assert_eq!(NetdevState::parse(&netdev.render()), Some(netdev));
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
                link: Some(LinkErrors {
                    rx_dropped: 9,
                    ..LinkErrors::default()
                }),
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
        assert_eq!(NetdevState::load(dir.path()), Ok(Some(state.clone())));
        NetdevState::remove(dir.path()).unwrap();
        NetdevState::remove(dir.path()).unwrap();
        assert_eq!(NetdevState::load(dir.path()), Ok(None));
        fs::write(dir.path().join(NETDEV_STATE_FILE), "garbage\n").unwrap();
        let err = NetdevState::load(dir.path()).unwrap_err();
        assert!(err.contains(NETDEV_STATE_FILE), "{err}");
        let text = state.render();
        assert!(
            text.starts_with(r#"{"format":"csm-netdev-state","version":2,"#),
            "{text}"
        );
        for (from, to) in [
            (r#""version":2"#, r#""version":1"#),
            (
                r#""boot_id":"0c6e1b1e-2f0a-4c5e-9d1a-6f3b2a1c0d9e""#,
                r#""boot_id":"""#,
            ),
            (r#""ifindex":2"#, r#""ifindex":"x""#),
        ] {
            assert_eq!(NetdevState::parse(&text.replace(from, to)), None, "{to}");
        }
    }

    /// A link, a FIFO or an oversized file under the state's name is not read.
    #[test]
    fn planted_files_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        let state = State {
            instance: "x".into(),
            ..State::default()
        };
        fs::write(&target, state.render()).unwrap();
        std::os::unix::fs::symlink(&target, path(dir.path())).unwrap();
        assert_eq!(State::load(dir.path()), None, "through a link");
        fs::remove_file(path(dir.path())).unwrap();
        let big = format!(
            "{}{}",
            state.render().trim_end(),
            " ".repeat(MAX_STATE_BYTES as usize)
        );
        fs::write(path(dir.path()), big).unwrap();
        assert_eq!(State::load(dir.path()), None, "larger than the bound");
    }
}
