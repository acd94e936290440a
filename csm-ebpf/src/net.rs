//! Per-interface traffic from the netdev tracepoints, and per-uid traffic from cgroup_skb.
//!
//! `net_dev_xmit` (when the driver accepted the packet, rc == 0) and `netif_receive_skb`
//! fire once per packet the kernel's own interface counters count, in every network
//! namespace, for every interface, including ones created after load: no per-interface
//! attach. The interface is keyed by (namespace inode, ifindex), read from the `dev`
//! argument at xmit (veth has already switched `skb->dev` to its peer there) and from
//! `skb->dev` at receive.
//!
//! Per-uid bytes come from cgroup_skb programs on the cgroup2 root. The uid charged is
//! `sk->sk_uid`, the kernel uid of the socket's owner, which is the host's number for it
//! whatever user namespace the socket lives in. `bpf_get_socket_uid` is not used: it maps
//! that uid into the user namespace owning the socket's network namespace, so inside
//! `unshare -Urn` every user's traffic read as root's. A uid the map has no room for is
//! charged to `NET_UID_OVERFLOW`, never dropped.
//!
//! Interfaces are kept in two maps by who owns their namespace (`net->user_ns->owner`):
//! `NET_DEV` for root's (the host namespace and any root made), `NET_DEV_USER` for the
//! namespaces users make with `unshare -Urn`, so that a user's thousands of namespaces
//! can never take the entries root's interfaces need. An interface neither map has room
//! for is charged to its owner in `NET_DEV_OVERFLOW` (then to `NET_DEV_OVERFLOW_ANY`),
//! corrected here to the kernel's interface counters since those entries mix device
//! types: a full map loses no byte.
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
    bindings::BPF_NOEXIST,
    helpers::bpf_get_current_pid_tgid,
    helpers::bpf_probe_read_kernel,
    macros::{btf_tracepoint, cgroup_skb, map},
    maps::{HashMap, PerCpuArray, PerCpuHashMap},
    programs::{BtfTracePointContext, SkBuffContext},
};
use csm_common::{
    NetCounters, NetKey, NetOffsets, UidTraffic, MAX_IFACES, MAX_NET_OWNERS, MAX_NS_PIDS, MAX_UIDS,
    OVERFLOW_UID,
};

/// Set by userspace from the running kernel's BTF before load.
#[no_mangle]
static NET_OFFSETS: NetOffsets = NetOffsets {
    skb_len: 0,
    skb_dev: 0,
    dev_ifindex: 0,
    dev_type: 0,
    dev_net: 0,
    net_inum: 0,
    skb_sk: 0,
    sk_uid: 0,
    net_user_ns: 0,
    userns_owner: 0,
};

/// Cumulative counters per interface of root's namespaces (per CPU; userspace sums the
/// CPUs).
#[map(name = "NET_DEV")]
static NET_DEV: PerCpuHashMap<NetKey, NetCounters> = PerCpuHashMap::with_max_entries(MAX_IFACES, 0);

/// The same for namespaces users own.
#[map(name = "NET_DEV_USER")]
static NET_DEV_USER: PerCpuHashMap<NetKey, NetCounters> =
    PerCpuHashMap::with_max_entries(MAX_IFACES, 0);

/// Corrected counts of interfaces the map of their owner had no room for, per owner uid.
#[map(name = "NET_DEV_OVERFLOW")]
static NET_DEV_OVERFLOW: PerCpuHashMap<u32, NetCounters> =
    PerCpuHashMap::with_max_entries(MAX_NET_OWNERS, 0);

/// What `NET_DEV_OVERFLOW` had no room for either.
#[map(name = "NET_DEV_OVERFLOW_ANY")]
static NET_DEV_OVERFLOW_ANY: PerCpuArray<NetCounters> = PerCpuArray::with_max_entries(1, 0);

/// A process (tgid) current when a namespace's first interface entry was made.
#[map(name = "NET_NS_PID")]
static NET_NS_PID: HashMap<u32, u32> = HashMap::with_max_entries(MAX_NS_PIDS, 0);

/// Cumulative IP-layer bytes per socket uid (per CPU).
#[map(name = "NET_UID")]
static NET_UID: PerCpuHashMap<u32, UidTraffic> = PerCpuHashMap::with_max_entries(MAX_UIDS, 0);

/// Bytes of uids `NET_UID` had no room for (per CPU): a full map loses no byte.
#[map(name = "NET_UID_OVERFLOW")]
static NET_UID_OVERFLOW: PerCpuArray<UidTraffic> = PerCpuArray::with_max_entries(1, 0);

/// `net_device.type` of loopback devices (include/uapi/linux/if_arp.h).
const ARPHRD_LOOPBACK: u16 = 772;
/// `net_device.type` of Ethernet-like devices.
const ARPHRD_ETHER: u16 = 1;
/// Link-layer header the kernel counts on received Ethernet frames and
/// `netif_receive_skb` does not see (userspace adds it for the main maps).
const ETH_HLEN: u64 = 14;

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
    let (netns, owner) = if net.is_null() {
        (0, 0)
    } else {
        (field(net, off.net_inum), owner_of(net, &off))
    };
    let key = NetKey {
        netns,
        ifindex: field::<i32>(dev, off.dev_ifindex) as u32,
    };
    let bytes = len as u64;
    let map = if owner == 0 { &NET_DEV } else { &NET_DEV_USER };
    if let Some(c) = map.get_ptr_mut(key) {
        // Per-CPU value: no other CPU writes it, plain adds are safe.
        add_one(&mut *c, bytes, rx);
        return;
    }
    let dev_type: u16 = field(dev, off.dev_type);
    let mut c = NetCounters {
        dev_type: dev_type as u32,
        owner,
        ..NetCounters::default()
    };
    add_one(&mut c, bytes, rx);
    if map.insert(key, c, 0).is_ok() {
        remember_pid(netns);
        return;
    }
    count_overflow(owner, &corrected(&c));
}

/// Uid owning the user namespace of `net` (0 when the offsets are not known).
#[inline(always)]
unsafe fn owner_of(net: *const u8, off: &NetOffsets) -> u32 {
    if off.net_user_ns == 0 {
        return 0;
    }
    let user_ns: *const u8 = field(net, off.net_user_ns);
    if user_ns.is_null() {
        return 0;
    }
    field(user_ns, off.userns_owner)
}

#[inline(always)]
fn add_one(c: &mut NetCounters, bytes: u64, rx: bool) {
    if rx {
        c.rx_bytes += bytes;
        c.rx_packets += 1;
    } else {
        c.tx_bytes += bytes;
        c.tx_packets += 1;
    }
}

/// The kernel's own interface counts of one packet (what userspace does for the main
/// maps, whose entries keep their device type).
#[inline(always)]
fn corrected(c: &NetCounters) -> NetCounters {
    let mut out = NetCounters { dev_type: 0, ..*c };
    if c.dev_type as u16 == ARPHRD_ETHER {
        out.rx_bytes += ETH_HLEN * c.rx_packets;
    } else if c.dev_type as u16 == ARPHRD_LOOPBACK {
        out.tx_bytes = c.rx_bytes;
        out.tx_packets = c.rx_packets;
    }
    out
}

/// Charges a packet no interface map had room for to its owner's overflow entry.
#[inline(always)]
unsafe fn count_overflow(owner: u32, one: &NetCounters) {
    let slot = match NET_DEV_OVERFLOW.get_ptr_mut(owner) {
        Some(slot) => Some(slot),
        None => {
            // NOEXIST: a count another program on this CPU made since must stay.
            let _ = NET_DEV_OVERFLOW.insert(owner, NetCounters::default(), BPF_NOEXIST as u64);
            NET_DEV_OVERFLOW
                .get_ptr_mut(owner)
                .or_else(|| NET_DEV_OVERFLOW_ANY.get_ptr_mut(0))
        }
    };
    if let Some(slot) = slot {
        let slot = &mut *slot;
        slot.owner = owner;
        slot.rx_bytes += one.rx_bytes;
        slot.rx_packets += one.rx_packets;
        slot.tx_bytes += one.tx_bytes;
        slot.tx_packets += one.tx_packets;
    }
}

/// Notes the current process as one living in namespace `netns` (userspace checks it:
/// at receive the current task may be one the softirq interrupted).
#[inline(always)]
fn remember_pid(netns: u32) {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid != 0 {
        let _ = NET_NS_PID.insert(netns, tgid, BPF_NOEXIST as u64);
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
    let Some(counters) = uid_counters(socket_owner(ctx)) else {
        return; // unreachable: a one-entry array always has its entry
    };
    let bytes = ctx.len() as u64;
    // Atomic although per CPU: egress in process context can be interrupted on this CPU
    // by a softirq sending for the same uid (a TCP ACK), and a plain add would lose one.
    unsafe {
        let field = if rx {
            &raw mut (*counters).rx_bytes
        } else {
            &raw mut (*counters).tx_bytes
        };
        atomic_add(field, bytes);
    }
}

/// `lock *(u64 *)(ptr) += value`: BPF's atomic add. Rust's BPF target declares no
/// compare-and-swap, so `AtomicU64::fetch_add` does not exist there.
#[inline(always)]
unsafe fn atomic_add(ptr: *mut u64, value: u64) {
    core::arch::asm!(
        "lock *(u64 *)({ptr} + 0) += {value}",
        ptr = in(reg) ptr,
        value = in(reg) value,
        options(nostack),
    );
}

/// This CPU's counters of `uid`: its `NET_UID` entry, created on its first packet, or
/// the overflow slot when the map is full.
#[inline(always)]
fn uid_counters(uid: u32) -> Option<*mut UidTraffic> {
    if let Some(counters) = NET_UID.get_ptr_mut(uid) {
        return Some(counters);
    }
    // NOEXIST: another program on this CPU may have created it since the lookup; its
    // count must not be overwritten. Failing (full map, or it exists) is fine either way.
    let _ = NET_UID.insert(uid, UidTraffic::default(), BPF_NOEXIST as u64);
    NET_UID
        .get_ptr_mut(uid)
        .or_else(|| NET_UID_OVERFLOW.get_ptr_mut(0))
}

/// The uid owning the packet's socket, as the host numbers it: `skb->sk->sk_uid`.
///
/// A cgroup_skb program's context is the kernel's `sk_buff` itself (its `__sk_buff`
/// fields are rewritten loads), and the programs run only for packets of a full socket
/// (ingress: the receiving one, egress: the sender), which the kernel holds for the
/// program's run: two small reads, no freed memory. `bpf_probe_read_kernel` because the
/// verifier forbids arithmetic on the socket pointer the context gives.
#[inline(always)]
fn socket_owner(ctx: &SkBuffContext) -> u32 {
    // Only the two fields (the whole struct would be seven loads per packet).
    let (skb_sk, sk_uid) = unsafe {
        (
            core::ptr::read_volatile(&NET_OFFSETS.skb_sk),
            core::ptr::read_volatile(&NET_OFFSETS.sk_uid),
        )
    };
    if skb_sk == 0 {
        // No BTF offsets: the helper's uid, mapped into the socket's namespace.
        return ctx.get_socket_uid();
    }
    unsafe {
        let skb = ctx.skb.skb as *const u8;
        let Ok(sk) = bpf_probe_read_kernel(skb.add(skb_sk as usize) as *const *const u8) else {
            return OVERFLOW_UID;
        };
        if sk.is_null() {
            return OVERFLOW_UID;
        }
        bpf_probe_read_kernel(sk.add(sk_uid as usize) as *const u32).unwrap_or(OVERFLOW_UID)
    }
}
