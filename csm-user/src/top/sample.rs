//! Two readings of the counters, `interval` apart, become one [`Snapshot`] of rates:
//! `top` keeps its own previous reading and never relies on the daemon's.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Result;
use csm_store::netns::{NetnsLabels, HOST_LABEL};
use serde::Serialize;

use super::ping::{PingLine, PingReader};
use super::source::Counters;
use crate::model::mem::mem_per_uid;
use crate::model::net::{iface_deltas, uid_deltas, IfaceKey};
use crate::model::{cpu_intervals, netdev, CpuSample, NetSample, Stamp};
use crate::sources::host::HostPaths;
use crate::sources::netns::IfaceNames;
use crate::sources::procfs::mem::ProcMemSampler;
use crate::sources::users::UserNames;

/// The column the tables are sorted by.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Cpu,
    Mem,
    Rx,
    Tx,
    Name,
}

impl SortKey {
    /// The key that sorts by this column in the live view.
    pub fn from_key(c: char) -> Option<SortKey> {
        Some(match c {
            'c' => SortKey::Cpu,
            'm' => SortKey::Mem,
            'r' => SortKey::Rx,
            't' => SortKey::Tx,
            'n' => SortKey::Name,
            _ => return None,
        })
    }
}

/// What `top` shows at one refresh. Rates are per second over the last interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Snapshot {
    /// End of the interval, µs since the epoch.
    pub ts_us: i64,
    /// Length of the interval the rates cover, in seconds.
    pub interval_s: f64,
    /// Where the figures come from.
    pub source: String,
    pub users: Vec<UserLine>,
    pub interfaces: Vec<IfaceLine>,
    pub ping: Vec<PingLine>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct UserLine {
    pub uid: u32,
    /// Null when the uid has no name.
    pub user: Option<String>,
    /// 100 = one core busy for the whole interval; short-lived processes included with
    /// the eBPF counters.
    pub cpu_pct: f64,
    pub nproc: u64,
    pub rss_bytes: u64,
    /// Bytes per second through the uid's sockets; null without eBPF traffic counters.
    pub rx_bytes_per_s: Option<f64>,
    pub tx_bytes_per_s: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct IfaceLine {
    pub iface: String,
    pub ifindex: Option<u32>,
    /// The network namespace's inode (null from /proc: `top`'s own namespace).
    pub netns: Option<u32>,
    /// True for `top`'s own network namespace.
    pub host_netns: bool,
    /// The namespace as the tables show it (csm-store's one label: `host`, its
    /// `/run/netns` name, its owner process, `inode-<n>`); JSON keeps the inode.
    #[serde(skip)]
    pub netns_label: String,
    pub rx_bytes_per_s: f64,
    pub tx_bytes_per_s: f64,
    pub rx_packets_per_s: f64,
    pub tx_packets_per_s: f64,
}

/// One reading of every counter.
struct Reading {
    cpu: CpuSample,
    net: NetReading,
}

enum NetReading {
    Ebpf(NetSample),
    Proc(netdev::NetSample),
    None,
}

/// Interface names are looked up again after this long (renames, new namespaces).
const NAMES_REFRESH: Duration = Duration::from_secs(30);

pub struct Sampler {
    counters: Counters,
    ping: PingReader,
    mem: ProcMemSampler,
    users: UserNames,
    iface_names: IfaceNames,
    names: BTreeMap<IfaceKey, String>,
    names_at: Instant,
    netns_labels: NetnsLabels,
    prev: Option<Reading>,
}

impl Sampler {
    pub fn new(counters: Counters, ping: PingReader) -> Self {
        let paths = HostPaths::default();
        Sampler {
            counters,
            ping,
            mem: ProcMemSampler::rss_only(paths.clone()),
            users: UserNames::default(),
            iface_names: IfaceNames::new(paths),
            names: BTreeMap::new(),
            names_at: Instant::now(),
            netns_labels: NetnsLabels::local(),
            prev: None,
        }
    }

    /// The first reading, that the first snapshot is measured from.
    pub fn prime(&mut self) -> Result<()> {
        self.prev = Some(self.read()?);
        Ok(())
    }

    /// A new reading, and the rates since the previous one.
    pub fn sample(&mut self) -> Result<Snapshot> {
        let cur = self.read()?;
        let snapshot = match self.prev.take() {
            Some(prev) => self.snapshot(&prev, &cur)?,
            None => Snapshot::default(),
        };
        self.prev = Some(cur);
        Ok(snapshot)
    }

    fn read(&mut self) -> Result<Reading> {
        Ok(match &mut self.counters {
            Counters::Ebpf {
                cpu,
                net,
                daemon_pid,
            } => {
                // The maps outlive a stopped daemon while `top` holds them, frozen (its
                // clean stop detaches the programs): say so rather than show zeros.
                anyhow::ensure!(
                    std::path::Path::new(&format!("/proc/{daemon_pid}")).exists(),
                    "csm pid {daemon_pid} stopped: its counters no longer count"
                );
                Reading {
                    cpu: cpu.sample()?,
                    net: match net {
                        Some(net) => NetReading::Ebpf(net.sample()?),
                        None => NetReading::None,
                    },
                }
            }
            Counters::Proc { cpu, net, .. } => Reading {
                cpu: cpu.sample()?,
                net: NetReading::Proc(net.sample()?),
            },
        })
    }

    fn snapshot(&mut self, prev: &Reading, cur: &Reading) -> Result<Snapshot> {
        let secs = Stamp::elapsed_ns(prev.cpu.at, cur.cpu.at) as f64 / 1e9;
        let per_s = |v: u64| if secs > 0.0 { v as f64 / secs } else { 0.0 };
        let mut users: BTreeMap<u32, UserLine> = BTreeMap::new();
        for interval in cpu_intervals(&prev.cpu, &cur.cpu) {
            users.entry(interval.uid).or_default().cpu_pct = interval.cpu_pct;
        }
        for (uid, mem) in mem_per_uid(&self.mem.sample()?) {
            let line = users.entry(uid).or_default();
            (line.nproc, line.rss_bytes) = (mem.nproc, mem.rss);
        }
        let interfaces = match (&prev.net, &cur.net) {
            (NetReading::Ebpf(prev), NetReading::Ebpf(cur)) => {
                for line in users.values_mut() {
                    (line.rx_bytes_per_s, line.tx_bytes_per_s) = (Some(0.0), Some(0.0));
                }
                for (uid, d) in uid_deltas(prev, cur) {
                    let line = users.entry(uid).or_default();
                    line.rx_bytes_per_s = Some(per_s(d.rx_bytes));
                    line.tx_bytes_per_s = Some(per_s(d.tx_bytes));
                }
                self.ebpf_interfaces(prev, cur, &per_s)
            }
            (NetReading::Proc(prev), NetReading::Proc(cur)) => proc_interfaces(prev, cur, &per_s),
            _ => Vec::new(),
        };
        for (uid, line) in users.iter_mut() {
            line.uid = *uid;
            line.user = self.users.name(*uid);
        }
        let mut snapshot = Snapshot {
            ts_us: cur.cpu.at.wall_us,
            interval_s: secs,
            source: self.counters.describe(),
            users: users.into_values().collect(),
            interfaces,
            ping: self.ping.latest(),
        };
        snapshot.sort(SortKey::Cpu, false);
        Ok(snapshot)
    }

    /// Every interface the daemon counts, busy or not, with its name in its namespace.
    fn ebpf_interfaces(
        &mut self,
        prev: &NetSample,
        cur: &NetSample,
        per_s: &dyn Fn(u64) -> f64,
    ) -> Vec<IfaceLine> {
        self.refresh_names(cur.ifaces.keys().copied().collect());
        let deltas: BTreeMap<IfaceKey, _> = iface_deltas(prev, cur).into_iter().collect();
        let host = self.iface_names.host_netns();
        cur.ifaces
            .keys()
            .filter(|key| prev.ifaces.contains_key(key))
            .map(|&(netns, ifindex)| {
                let d = deltas.get(&(netns, ifindex)).copied().unwrap_or_default();
                IfaceLine {
                    iface: self
                        .names
                        .get(&(netns, ifindex))
                        .cloned()
                        .unwrap_or_default(),
                    ifindex: Some(ifindex),
                    netns: Some(netns),
                    host_netns: Some(netns) == host,
                    netns_label: if Some(netns) == host {
                        HOST_LABEL.to_string()
                    } else {
                        self.netns_labels.label(Some(i64::from(netns)))
                    },
                    rx_bytes_per_s: per_s(d.rx_bytes),
                    tx_bytes_per_s: per_s(d.tx_bytes),
                    rx_packets_per_s: per_s(d.rx_packets),
                    tx_packets_per_s: per_s(d.tx_packets),
                }
            })
            .collect()
    }

    /// Names of new interfaces now; of all of them again every [`NAMES_REFRESH`].
    fn refresh_names(&mut self, keys: BTreeSet<IfaceKey>) {
        if self.names_at.elapsed() >= NAMES_REFRESH {
            self.names.clear();
            self.netns_labels.refresh();
            self.names_at = Instant::now();
        }
        let missing: Vec<IfaceKey> = keys
            .into_iter()
            .filter(|k| !self.names.contains_key(k))
            .collect();
        if missing.is_empty() {
            return;
        }
        for (key, name) in self.iface_names.resolve(&missing) {
            self.names.insert(key, name.label(key.1));
        }
    }
}

fn proc_interfaces(
    prev: &netdev::NetSample,
    cur: &netdev::NetSample,
    per_s: &dyn Fn(u64) -> f64,
) -> Vec<IfaceLine> {
    let busy: BTreeMap<String, netdev::NetInterval> = netdev::net_intervals(prev, cur, |_| true)
        .into_iter()
        .map(|i| (i.iface.clone(), i))
        .collect();
    cur.ifaces
        .iter()
        .filter(|(name, _)| prev.ifaces.contains_key(*name))
        .map(|(name, now)| {
            let d = busy.get(name);
            let rate = |f: fn(&netdev::NetInterval) -> u64| d.map(f).map(per_s).unwrap_or(0.0);
            IfaceLine {
                iface: name.clone(),
                ifindex: now.ifindex,
                netns: None,
                host_netns: true,
                netns_label: HOST_LABEL.to_string(),
                rx_bytes_per_s: rate(|i| i.delta.rx_bytes),
                tx_bytes_per_s: rate(|i| i.delta.tx_bytes),
                rx_packets_per_s: rate(|i| i.delta.rx_packets),
                tx_packets_per_s: rate(|i| i.delta.tx_packets),
            }
        })
        .collect()
}

impl Snapshot {
    /// Sorts both tables by `key` (largest first, names A to Z), or the other way round.
    pub fn sort(&mut self, key: SortKey, reversed: bool) {
        let user_name = |l: &UserLine| l.user.clone().unwrap_or_else(|| l.uid.to_string());
        self.users.sort_by(|a, b| {
            let order = match key {
                SortKey::Cpu => b.cpu_pct.total_cmp(&a.cpu_pct),
                SortKey::Mem => b.rss_bytes.cmp(&a.rss_bytes),
                SortKey::Rx => opt(b.rx_bytes_per_s).total_cmp(&opt(a.rx_bytes_per_s)),
                SortKey::Tx => opt(b.tx_bytes_per_s).total_cmp(&opt(a.tx_bytes_per_s)),
                SortKey::Name => user_name(a).cmp(&user_name(b)),
            };
            let order = order.then(a.uid.cmp(&b.uid));
            if reversed {
                order.reverse()
            } else {
                order
            }
        });
        self.interfaces.sort_by(|a, b| {
            let total = |l: &IfaceLine| l.rx_bytes_per_s + l.tx_bytes_per_s;
            let order = match key {
                SortKey::Rx => b.rx_bytes_per_s.total_cmp(&a.rx_bytes_per_s),
                SortKey::Tx => b.tx_bytes_per_s.total_cmp(&a.tx_bytes_per_s),
                SortKey::Name => a.iface.cmp(&b.iface),
                SortKey::Cpu | SortKey::Mem => total(b).total_cmp(&total(a)),
            };
            let order = order
                .then(a.iface.cmp(&b.iface))
                .then(a.netns.cmp(&b.netns));
            if reversed {
                order.reverse()
            } else {
                order
            }
        });
    }
}

fn opt(v: Option<f64>) -> f64 {
    v.unwrap_or(-1.0)
}
