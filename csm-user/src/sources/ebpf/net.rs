//! Network accounting: reading the netdev and cgroup_skb programs' maps into cumulative
//! samples (attaching them is in [`super::attach`]).
//!
//! Measured to match `/proc/net/dev` exactly (packets and bytes) on lo and veth, in the
//! daemon's namespace and in others (tests/tests/net.rs). Known limits, not yet measured
//! or handled:
//! - a NIC driver that uses GRO hands `netif_receive_skb` one merged skb for several
//!   wire packets, while the driver counted each: received packets and header bytes come
//!   out low on busy physical NICs (veth and lo do not use GRO by default);
//! - VLAN devices untag inside the receive path without a second `netif_receive_skb`:
//!   their received traffic shows on the lower device only;
//! - without BTF (no tp_btf) there is no per-interface accounting: the classic
//!   tracepoints carry neither the namespace nor the ifindex.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use anyhow::{Context, Result};
use aya::maps::{HashMap, MapData, PerCpuArray, PerCpuHashMap};
use csm_common::{names, NetCounters, NetKey, UidTraffic, OVERFLOW_UID};

use super::loader::Loaded;
use crate::model::{IfaceCounters, NetSample, UidCounters};
use crate::sources::clock;

/// Link-layer header of Ethernet-like devices (veth, virtio-net, bridges…).
const ETH_HLEN: u64 = 14;

/// Makes tracepoint counts match the kernel's own interface counters, which is what
/// /proc/net/dev and `ip -s link` show. Measured on this kernel (see EBPF-NOTES.md):
/// - Ethernet-like devices count the 14-byte header both ways; `netif_receive_skb` sees
///   the packet after `eth_type_trans` pulled it, so received bytes lack it;
/// - loopback counts each packet once, after `eth_type_trans`, and reports that one
///   count as both received and sent: the eBPF side counts only its receive side.
pub fn corrected(c: &NetCounters) -> IfaceCounters {
    let mut out = IfaceCounters {
        rx_bytes: c.rx_bytes,
        tx_bytes: c.tx_bytes,
        rx_packets: c.rx_packets,
        tx_packets: c.tx_packets,
    };
    match c.dev_type as u16 {
        libc::ARPHRD_ETHER => out.rx_bytes += ETH_HLEN * c.rx_packets,
        libc::ARPHRD_LOOPBACK => {
            out.tx_bytes = c.rx_bytes;
            out.tx_packets = c.rx_packets;
        }
        _ => {}
    }
    out
}

/// Sums per-CPU netdev counters (the device type is the same on every CPU that saw
/// the interface; CPUs that did not have zeroes).
fn sum_counters(per_cpu: &[NetCounters]) -> NetCounters {
    per_cpu
        .iter()
        .fold(NetCounters::default(), |acc, c| NetCounters {
            rx_bytes: acc.rx_bytes + c.rx_bytes,
            rx_packets: acc.rx_packets + c.rx_packets,
            tx_bytes: acc.tx_bytes + c.tx_bytes,
            tx_packets: acc.tx_packets + c.tx_packets,
            dev_type: acc.dev_type.max(c.dev_type),
            owner: acc.owner.max(c.owner),
        })
}

/// Reads the network maps into cumulative samples.
pub struct NetReader {
    /// Interfaces of root's namespaces.
    ifaces: PerCpuHashMap<MapData, NetKey, NetCounters>,
    /// Interfaces of namespaces users own.
    user_ifaces: PerCpuHashMap<MapData, NetKey, NetCounters>,
    /// The two interface maps' descriptors (root's, users'), for the batch reads.
    iface_fds: [OwnedFd; 2],
    /// Possible CPUs: the values per entry of a per-CPU map.
    cpus: usize,
    /// What the interface maps had no room for, per owner uid (already corrected).
    iface_overflow: PerCpuHashMap<MapData, u32, NetCounters>,
    /// What `iface_overflow` had no room for either, reported as [`OVERFLOW_UID`].
    iface_overflow_any: PerCpuArray<MapData, NetCounters>,
    /// A process seen in each namespace: where its interfaces' names are asked for.
    ns_pids: HashMap<MapData, u32, u32>,
    uids: PerCpuHashMap<MapData, u32, UidTraffic>,
    /// What the uid map had no room for, reported as [`OVERFLOW_UID`].
    overflow: PerCpuArray<MapData, UidTraffic>,
}

impl NetReader {
    /// Takes the network maps out of `loaded`.
    pub fn new(loaded: &mut Loaded) -> Result<Self> {
        let (ifaces, root_fd) = take_per_cpu_hash_with_fd(loaded, names::NET_DEV)?;
        let (user_ifaces, user_fd) = take_per_cpu_hash_with_fd(loaded, names::NET_DEV_USER)?;
        Ok(NetReader {
            ifaces,
            user_ifaces,
            iface_fds: [root_fd, user_fd],
            cpus: aya::util::nr_cpus().map_err(|(what, err)| anyhow::anyhow!("{what}: {err}"))?,
            iface_overflow: take_per_cpu_hash(loaded, names::NET_DEV_OVERFLOW)?,
            iface_overflow_any: take_per_cpu_array(loaded, names::NET_DEV_OVERFLOW_ANY)?,
            ns_pids: take_hash(loaded, names::NET_NS_PID)?,
            uids: take_per_cpu_hash(loaded, names::NET_UID)?,
            overflow: take_per_cpu_array(loaded, names::NET_UID_OVERFLOW)?,
        })
    }

    /// Cumulative counters of every interface and uid seen since load; the traffic of
    /// uids the map had no room for is under [`OVERFLOW_UID`].
    pub fn sample(&self) -> Result<NetSample> {
        let mut sample = NetSample {
            at: clock::now(),
            ..NetSample::default()
        };
        // Root's map is read first: its namespaces are known before the users' entries.
        let mut roots_netns = std::collections::HashSet::new();
        for (map, fd, name) in [
            (&self.ifaces, &self.iface_fds[0], names::NET_DEV),
            (&self.user_ifaces, &self.iface_fds[1], names::NET_DEV_USER),
        ] {
            let entries = read_whole(map, fd.as_fd(), self.cpus)
                .with_context(|| format!("read map {name}"))?;
            for (key, per_cpu) in entries {
                let sum = sum_counters(&per_cpu);
                let iface = (key.netns, key.ifindex);
                if sum.owner == 0 {
                    roots_netns.insert(key.netns);
                } else if roots_netns.contains(&key.netns) {
                    sample.shadowed.insert(iface, corrected(&sum));
                    continue;
                } else {
                    sample.ns_owners.insert(key.netns, sum.owner);
                }
                sample.ifaces.insert(iface, corrected(&sum));
            }
        }
        for entry in self.iface_overflow.iter() {
            let (owner, per_cpu) =
                entry.with_context(|| format!("read map {}", names::NET_DEV_OVERFLOW))?;
            sample
                .iface_overflow
                .insert(owner, corrected(&sum_counters(&per_cpu)));
        }
        let any = self
            .iface_overflow_any
            .get(&0, 0)
            .with_context(|| format!("read map {}", names::NET_DEV_OVERFLOW_ANY))?;
        let any = corrected(&sum_counters(&any));
        if any != IfaceCounters::default() {
            sample.iface_overflow.insert(OVERFLOW_UID, any);
        }
        for entry in self.uids.iter() {
            let (uid, per_cpu) = entry.with_context(|| format!("read map {}", names::NET_UID))?;
            sample.uids.insert(uid, sum_uid_traffic(&per_cpu));
        }
        let overflow = self
            .overflow
            .get(&0, 0)
            .with_context(|| format!("read map {}", names::NET_UID_OVERFLOW))?;
        sample.uids.insert(OVERFLOW_UID, sum_uid_traffic(&overflow));
        Ok(sample)
    }

    /// A process the eBPF side saw in namespace `netns` (not checked: it may have been
    /// interrupted by a packet of another namespace, or be gone).
    pub fn ns_pid(&self, netns: u32) -> Option<u32> {
        self.ns_pids.get(&netns, 0).ok()
    }

    /// Deletes map entries of interfaces and uids that are gone or idle, after their
    /// last counts were read, and the remembered process of `namespaces`. An interface's
    /// entry is read again just before its delete and kept if it moved since the sample
    /// (`ifaces` holds the sampled counters): a packet is lost only if it lands in the
    /// microseconds between that read and the delete, not in the whole interval's work.
    /// `user_owned` says which map a namespace's interfaces are in (a namespace's inode
    /// is reused once it is gone, so the same key may be in both). The interfaces whose
    /// entries are gone now.
    pub fn forget(
        &mut self,
        ifaces: &[((u32, u32), IfaceCounters)],
        user_owned: impl Fn(u32) -> bool,
        uids: &[u32],
        namespaces: &[u32],
    ) -> Vec<(u32, u32)> {
        let mut deleted = Vec::with_capacity(ifaces.len());
        for &((netns, ifindex), sampled) in ifaces {
            let key = NetKey { netns, ifindex };
            let map = if user_owned(netns) {
                &mut self.user_ifaces
            } else {
                &mut self.ifaces
            };
            let unchanged = match map.get(&key, 0) {
                Ok(per_cpu) => corrected(&sum_counters(&per_cpu)) == sampled,
                Err(_) => true, // already gone
            };
            if unchanged {
                let _ = map.remove(&key);
                deleted.push((netns, ifindex));
            }
        }
        for netns in namespaces {
            let _ = self.ns_pids.remove(netns);
        }
        // The overflow slot is not an entry: its counters stay cumulative.
        for uid in uids.iter().filter(|uid| **uid != OVERFLOW_UID) {
            let _ = self.uids.remove(uid);
        }
        deleted
    }

    /// Entries in the root and user interface maps and the uid map, to watch their
    /// bounds.
    pub fn map_sizes(&self) -> (usize, usize, usize) {
        (
            self.ifaces.keys().count(),
            self.user_ifaces.keys().count(),
            self.uids.keys().count(),
        )
    }
}

fn sum_uid_traffic(per_cpu: &[UidTraffic]) -> UidCounters {
    per_cpu
        .iter()
        .fold(UidCounters::default(), |acc, t| UidCounters {
            rx_bytes: acc.rx_bytes + t.rx_bytes,
            tx_bytes: acc.tx_bytes + t.tx_bytes,
        })
}

fn take_per_cpu_array<V: aya::Pod>(
    loaded: &mut Loaded,
    name: &str,
) -> Result<PerCpuArray<MapData, V>> {
    let map = loaded
        .take_map(name)
        .with_context(|| format!("map {name} missing from the eBPF object"))?;
    PerCpuArray::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

fn take_hash<K: aya::Pod, V: aya::Pod>(
    loaded: &mut Loaded,
    name: &str,
) -> Result<HashMap<MapData, K, V>> {
    let map = loaded
        .take_map(name)
        .with_context(|| format!("map {name} missing from the eBPF object"))?;
    HashMap::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

/// Every entry of a per-CPU hash map: with batch lookups (a few system calls), or where
/// the kernel has none (before 5.6), with aya's iterator (two per entry).
fn read_whole<K: aya::Pod, V: aya::Pod>(
    map: &PerCpuHashMap<MapData, K, V>,
    fd: BorrowedFd<'_>,
    cpus: usize,
) -> Result<Vec<(K, Vec<V>)>> {
    match super::batch::per_cpu_entries::<K, V>(fd, cpus) {
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {}
        read => return Ok(read?),
    }
    let mut entries = Vec::new();
    for entry in map.iter() {
        let (key, per_cpu) = entry?;
        entries.push((key, per_cpu.to_vec()));
    }
    Ok(entries)
}

/// [`take_per_cpu_hash`], and a descriptor of the map of its own.
fn take_per_cpu_hash_with_fd<K: aya::Pod, V: aya::Pod>(
    loaded: &mut Loaded,
    name: &str,
) -> Result<(PerCpuHashMap<MapData, K, V>, OwnedFd)> {
    let map = loaded
        .take_map(name)
        .with_context(|| format!("map {name} missing from the eBPF object"))?;
    let aya::maps::Map::PerCpuHashMap(data) = &map else {
        anyhow::bail!("map {name} is not a per-CPU hash map");
    };
    let fd = (data.fd().as_fd().try_clone_to_owned())
        .with_context(|| format!("duplicate the descriptor of map {name}"))?;
    let map = PerCpuHashMap::try_from(map)
        .with_context(|| format!("map {name} has an unexpected type"))?;
    Ok((map, fd))
}

fn take_per_cpu_hash<K: aya::Pod, V: aya::Pod>(
    loaded: &mut Loaded,
    name: &str,
) -> Result<PerCpuHashMap<MapData, K, V>> {
    let map = loaded
        .take_map(name)
        .with_context(|| format!("map {name} missing from the eBPF object"))?;
    PerCpuHashMap::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_correction_per_device_type() {
        let raw = |dev_type| NetCounters {
            rx_bytes: 1000,
            rx_packets: 10,
            tx_bytes: 1000,
            tx_packets: 10,
            dev_type,
            owner: 0,
        };
        let eth = corrected(&raw(1));
        assert_eq!((eth.rx_bytes, eth.tx_bytes), (1140, 1000));
        let lo = corrected(&NetCounters {
            tx_bytes: 0,
            tx_packets: 0,
            ..raw(772)
        });
        assert_eq!((lo.rx_bytes, lo.tx_bytes, lo.tx_packets), (1000, 1000, 10));
        let tun = corrected(&raw(65534));
        assert_eq!((tun.rx_bytes, tun.tx_bytes), (1000, 1000));
    }
}
