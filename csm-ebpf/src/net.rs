//! Per-interface traffic from the netdev tracepoints, and per-uid traffic from cgroup_skb.
//!
//! `net_dev_xmit` (when the driver accepted the packet, rc == 0) and `netif_receive_skb`
//! fire once per packet the kernel's own interface counters count, in every network
//! namespace, for every interface, including ones created after load: no per-interface
//! attach. The interface is keyed by (namespace inode, ifindex), read from the `dev`
//! argument at xmit (veth has already switched `skb->dev` to its peer there) and from
//! `skb->dev` at receive.
//!
//! Per-uid bytes stay with cgroup_skb, although a loopback packet then runs four programs
//! (measured by `bench_net`: the BPF-stats figure of each includes about 30 ns that the
//! stats themselves add). Counting egress at `net_dev_xmit` from `skb->sk` instead was
//! measured (about 7 ns less work per loopback packet, one program fewer) and rejected:
//! the driver may already have freed the skb there (hence the tracepoint's own `skb_len`
//! argument), stacked devices (VLAN, bond, macvlan, bridge) and tunnels transmit the same
//! skb again, and the helper's uid is mapped into the socket's user namespace while
//! `sk->sk_uid` is not.

use aya_ebpf::{
    macros::{btf_tracepoint, cgroup_skb, map},
    maps::PerCpuHashMap,
    programs::{BtfTracePointContext, SkBuffContext},
};
use csm_common::{NetCounters, NetKey, NetOffsets, UidTraffic, MAX_IFACES, MAX_UIDS};

/// Set by userspace from the running kernel's BTF before load.
#[no_mangle]
static NET_OFFSETS: NetOffsets = NetOffsets {
    skb_len: 0,
    skb_dev: 0,
    dev_ifindex: 0,
    dev_type: 0,
    dev_net: 0,
    net_inum: 0,
};

/// Cumulative counters per interface (per CPU; userspace sums the CPUs).
#[map(name = "NET_DEV")]
static NET_DEV: PerCpuHashMap<NetKey, NetCounters> = PerCpuHashMap::with_max_entries(MAX_IFACES, 0);

/// Cumulative IP-layer bytes per socket uid (per CPU).
#[map(name = "NET_UID")]
static NET_UID: PerCpuHashMap<u32, UidTraffic> = PerCpuHashMap::with_max_entries(MAX_UIDS, 0);

/// `net_device.type` of loopback devices (include/uapi/linux/if_arp.h).
const ARPHRD_LOOPBACK: u16 = 772;

/// Loads a field at a constant byte offset from a BTF pointer (the verifier rejects
/// variable offsets, hence `.rodata` constants rather than a map).
#[inline(always)]
unsafe fn field<T: Copy>(base: *const u8, offset: u32) -> T {
    core::ptr::read_volatile(base.add(offset as usize) as *const T)
}

#[btf_tracepoint(function = "net_dev_xmit")]
pub fn net_dev_xmit_btf(ctx: BtfTracePointContext) -> u32 {
    // TP_PROTO(struct sk_buff *skb, int rc, struct net_device *dev, unsigned int skb_len)
    let rc: i32 = ctx.arg(1);
    if rc == 0 {
        let dev: *const u8 = ctx.arg(2);
        // The skb may already be freed: its length comes as an argument.
        let len: u32 = ctx.arg(3);
        unsafe {
            // Loopback counts each packet once, as received, and reports that count as
            // both directions; its receive side alone is counted here (it also leaves
            // out packets the backlog dropped, which xmit still calls a success).
            let off = core::ptr::read_volatile(&NET_OFFSETS);
            if dev.is_null() || field::<u16>(dev, off.dev_type) == ARPHRD_LOOPBACK {
                return 0;
            }
            count(dev, len, false)
        };
    }
    0
}

#[btf_tracepoint(function = "netif_receive_skb")]
pub fn netif_receive_skb_btf(ctx: BtfTracePointContext) -> u32 {
    // TP_PROTO(struct sk_buff *skb)
    let skb: *const u8 = ctx.arg(0);
    unsafe {
        let off = core::ptr::read_volatile(&NET_OFFSETS);
        let len: u32 = field(skb, off.skb_len);
        let dev: *const u8 = field(skb, off.skb_dev);
        count(dev, len, true);
    }
    0
}

#[inline(always)]
unsafe fn count(dev: *const u8, len: u32, rx: bool) {
    if dev.is_null() {
        return;
    }
    let off = core::ptr::read_volatile(&NET_OFFSETS);
    let net: *const u8 = field(dev, off.dev_net);
    let key = NetKey {
        netns: if net.is_null() {
            0
        } else {
            field(net, off.net_inum)
        },
        ifindex: field::<i32>(dev, off.dev_ifindex) as u32,
    };
    let bytes = len as u64;
    match NET_DEV.get_ptr_mut(key) {
        // Per-CPU value: no other CPU writes it, plain adds are safe.
        Some(c) => {
            let c = &mut *c;
            if rx {
                c.rx_bytes += bytes;
                c.rx_packets += 1;
            } else {
                c.tx_bytes += bytes;
                c.tx_packets += 1;
            }
        }
        None => {
            let dev_type: u16 = field(dev, off.dev_type);
            let mut c = NetCounters {
                dev_type: dev_type as u32,
                ..NetCounters::default()
            };
            if rx {
                c.rx_bytes = bytes;
                c.rx_packets = 1;
            } else {
                c.tx_bytes = bytes;
                c.tx_packets = 1;
            }
            let _ = NET_DEV.insert(key, c, 0);
        }
    }
}

#[cgroup_skb(ingress)]
pub fn net_uid_ingress(ctx: SkBuffContext) -> i32 {
    count_uid(&ctx, true);
    1 // always let the packet pass: this only counts
}

#[cgroup_skb(egress)]
pub fn net_uid_egress(ctx: SkBuffContext) -> i32 {
    count_uid(&ctx, false);
    1
}

/// `len` of a cgroup_skb context starts at the network header: IP-layer bytes.
#[inline(always)]
fn count_uid(ctx: &SkBuffContext, rx: bool) {
    let uid = ctx.get_socket_uid();
    let bytes = ctx.len() as u64;
    match NET_UID.get_ptr_mut(uid) {
        Some(t) => unsafe {
            if rx {
                (*t).rx_bytes += bytes;
            } else {
                (*t).tx_bytes += bytes;
            }
        },
        None => {
            let t = if rx {
                UidTraffic {
                    rx_bytes: bytes,
                    tx_bytes: 0,
                }
            } else {
                UidTraffic {
                    rx_bytes: 0,
                    tx_bytes: bytes,
                }
            };
            let _ = NET_UID.insert(uid, t, 0);
        }
    }
}
