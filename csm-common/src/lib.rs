//! Types shared by the eBPF programs (`csm-ebpf`) and userspace (`csm-user`).
//!
//! Everything here is `#[repr(C)]`, `Copy` and free of padding surprises, because the
//! same bytes are written by the kernel side and read by userspace through BPF maps.
#![no_std]

/// Names of the maps and programs, so both sides agree on them.
pub mod names {
    pub const CPU_NS: &str = "CPU_NS";
    pub const CPU_RUNNING: &str = "CPU_RUNNING";
    pub const CPU_BASELINE: &str = "CPU_BASELINE";
    pub const PROG_SCHED_SWITCH_BTF: &str = "sched_switch_btf";
    pub const PROG_SCHED_SWITCH_TP: &str = "sched_switch_tp";
    pub const NET_DEV: &str = "NET_DEV";
    pub const NET_UID: &str = "NET_UID";
    pub const NET_UID_OVERFLOW: &str = "NET_UID_OVERFLOW";
    /// Interfaces of network namespaces a user (not root) owns: kept apart from
    /// `NET_DEV` so that a user's objects never take root's entries.
    pub const NET_DEV_USER: &str = "NET_DEV_USER";
    /// Traffic of interfaces the two interface maps had no room for, per owner uid.
    pub const NET_DEV_OVERFLOW: &str = "NET_DEV_OVERFLOW";
    /// Traffic neither an interface map nor `NET_DEV_OVERFLOW` had room for.
    pub const NET_DEV_OVERFLOW_ANY: &str = "NET_DEV_OVERFLOW_ANY";
    /// A process seen sending or receiving in a namespace, per namespace inode: how
    /// userspace names its interfaces without walking /proc.
    pub const NET_NS_PID: &str = "NET_NS_PID";
    pub const PROG_NET_XMIT_BTF: &str = "net_dev_xmit_btf";
    pub const PROG_NET_RECV_BTF: &str = "netif_receive_skb_btf";
    pub const PROG_NET_UID_INGRESS: &str = "net_uid_ingress";
    pub const PROG_NET_UID_EGRESS: &str = "net_uid_egress";
    /// The task iterator that reports every process's memory counters.
    pub const PROG_MEM_TASKS: &str = "mem_tasks";
    /// One-slot per-CPU array the iterator uses to find each CPU's per-CPU offset.
    pub const MEM_CPU_PROBE: &str = "MEM_CPU_PROBE";
    /// Empty programs on the same hooks, loaded by `bench_net` and `bench_cpu` only
    /// (measurement floor).
    pub const PROG_FLOOR_SCHED: &str = "floor_sched_switch";
    pub const PROG_FLOOR_XMIT: &str = "floor_net_dev_xmit";
    pub const PROG_FLOOR_RECV: &str = "floor_netif_receive_skb";
    pub const PROG_FLOOR_EGRESS: &str = "floor_cgroup_egress";
    pub const PROG_FLOOR_INGRESS: &str = "floor_cgroup_ingress";
}

/// Upper bound of distinct uids the per-uid CPU map holds. Entries of uids that are gone
/// are deleted by userspace, so this only has to exceed the uids active at once.
pub const MAX_UIDS: u32 = 16_384;

/// Key under which userspace reports the traffic `NET_UID` had no room for (a full map),
/// or whose socket owner could not be read: written as uid -1, user `(overflow)`. No
/// Linux uid is `u32::MAX` (it is `(uid_t) -1`, "no uid" to every syscall).
pub const OVERFLOW_UID: u32 = u32::MAX;

/// Marker in [`Running::uid`] for "this CPU is idle" (or the state is not known yet).
pub const NO_UID: u32 = u32::MAX;

/// Marker in [`Running::uid`] for "a task runs, resolve its uid from [`Running::pid`]":
/// the classic tracepoint sees only the incoming task's pid.
pub const UID_BY_PID: u32 = u32::MAX - 1;

/// Field offsets in the classic `sched/sched_switch` tracepoint record, read from its
/// `format` file in tracefs by userspace.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwitchFormat {
    pub prev_pid: u32,
    pub next_pid: u32,
}

impl Default for SwitchFormat {
    /// The layout every kernel since 2.6.32 has used.
    fn default() -> Self {
        SwitchFormat {
            prev_pid: 24,
            next_pid: 56,
        }
    }
}

/// What each CPU is running right now, so userspace can charge the slice that has not
/// been switched out yet (a task alone on a CPU is only charged at switch-out).
///
/// Written by `sched_switch` for the incoming task; one per CPU in a per-CPU array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Running {
    /// Task pointer of the incoming task, so the switch-out can check it is the same task.
    pub task: u64,
    /// `se.sum_exec_runtime` of the incoming task when it was switched in (tp_btf only).
    pub start_runtime_ns: u64,
    /// CLOCK_MONOTONIC time at switch-in (classic tracepoint only: the tp_btf program
    /// has the task's own run time, and a clock read would cost a third of it).
    pub since_ns: u64,
    /// Real uid of the incoming task, or [`NO_UID`] when idle.
    pub uid: u32,
    /// Pid (thread id) of the incoming task; the classic tracepoint cannot read its uid,
    /// so userspace resolves it from /proc for the open slice.
    pub pid: u32,
    /// CPU time charged on this CPU to `pending_uid` and not yet added to `CPU_NS`:
    /// consecutive charges to one uid (the common case: a task, idle, the same task
    /// again) add up here and save the hash lookup; a charge to another uid first moves
    /// this into the map. Userspace adds it to `CPU_NS` at every read.
    pub pending_ns: u64,
    /// Whose `pending_ns` it is.
    pub pending_uid: u32,
    pub _pad: u32,
    /// The run queue's task clock (`se.exec_start` of the incoming task) at the switch-in
    /// (tp_btf only): bounds the slice of a task whose switch-in the program did not see.
    pub start_clock_ns: u64,
    /// The task last switched out on this CPU, and its `se.sum_exec_runtime` then (tp_btf
    /// only): what it was charged up to, for a switch-out that finds another task
    /// recorded here (see `unrecorded_slice` in csm-ebpf's sched.rs).
    pub last_out_task: u64,
    pub last_out_runtime_ns: u64,
}

impl Running {
    /// True when this CPU runs a task (not idle) that a program recorded.
    pub fn busy(&self) -> bool {
        (self.task != 0 || self.since_ns != 0) && self.uid != NO_UID
    }
}

/// Byte offsets inside kernel structures, read from the running kernel's BTF by
/// userspace and written into the program's `.rodata` before load (aya-ebpf has no
/// CO-RE; the verifier accepts direct loads only at constant offsets).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskOffsets {
    /// `task_struct.se.sum_exec_runtime`
    pub sum_exec_runtime: u32,
    /// `task_struct.se.prev_sum_exec_runtime` (runtime when last switched in)
    pub prev_sum_exec_runtime: u32,
    /// `task_struct.se.exec_start` (the run queue's task clock at the task's last
    /// accounting: its switch-in, or its switch-out when read at one)
    pub exec_start: u32,
    /// `task_struct.real_cred`
    pub real_cred: u32,
    /// `cred.uid`
    pub cred_uid: u32,
    /// `task_struct.pid`
    pub pid: u32,
}

/// Upper bound of (network namespace, interface) pairs each netdev map holds (`NET_DEV`
/// for namespaces root owns, `NET_DEV_USER` for the others). Userspace deletes the
/// entries of interfaces that are gone, and those of users' namespaces once idle.
pub const MAX_IFACES: u32 = 8_192;

/// Upper bound of owner uids `NET_DEV_OVERFLOW` holds (owners are real local users:
/// a user cannot make a namespace owned by another uid).
pub const MAX_NET_OWNERS: u32 = 1_024;

/// Upper bound of namespaces `NET_NS_PID` remembers a process of.
pub const MAX_NS_PIDS: u32 = 16_384;

/// Key of the netdev map: an interface is its ifindex inside its network namespace
/// (ifindex alone mixes a container's `lo` into the host's).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetKey {
    /// Inode number of the network namespace (`ls -i /proc/<pid>/ns/net`).
    pub netns: u32,
    pub ifindex: u32,
}

/// Cumulative netdev counters of one interface on one CPU, as the tracepoints see them:
/// `rx_bytes` excludes the link-layer header and `tx_bytes` includes it; userspace
/// corrects that per device type to match the kernel's own interface counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    /// `net_device.type` (ARPHRD_*), for the header correction. 0 in the overflow
    /// maps, whose counts the eBPF side has already corrected.
    pub dev_type: u32,
    /// Uid owning the namespace's user namespace (`net->user_ns->owner`, a kernel
    /// uid): 0 for root's namespaces.
    pub owner: u32,
}

/// Cumulative IP-layer bytes of one uid's sockets on one CPU (cgroup_skb).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UidTraffic {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// Byte offsets the netdev programs need, from the running kernel's BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetOffsets {
    /// `sk_buff.len`
    pub skb_len: u32,
    /// `sk_buff.dev`
    pub skb_dev: u32,
    /// `net_device.ifindex`
    pub dev_ifindex: u32,
    /// `net_device.type`
    pub dev_type: u32,
    /// `net_device.nd_net.net`
    pub dev_net: u32,
    /// `net.ns.inum`
    pub net_inum: u32,
    /// `sk_buff.sk` (0: unknown, the per-uid programs then use `bpf_get_socket_uid`)
    pub skb_sk: u32,
    /// `sock.sk_uid`: the socket owner as a kernel uid (the initial user namespace's
    /// number, whatever namespace the socket lives in)
    pub sk_uid: u32,
    /// `net.user_ns` (0: unknown, every namespace then counts as root's)
    pub net_user_ns: u32,
    /// `user_namespace.owner`: the kernel uid that created the user namespace
    pub userns_owner: u32,
}

/// Byte offsets and sizes the memory iterator needs, from the running kernel's BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemOffsets {
    /// `task_struct.pid` and `task_struct.tgid`: only thread-group leaders are reported.
    pub task_pid: u32,
    pub task_tgid: u32,
    /// `task_struct.flags` (PF_KTHREAD: kernel threads are skipped)
    pub task_flags: u32,
    /// `task_struct.mm`
    pub task_mm: u32,
    /// `task_struct.real_cred` and `cred.uid`: the real uid, as /proc's first Uid field.
    pub task_real_cred: u32,
    pub cred_uid: u32,
    /// `mm_struct.rss_stat`: an array of `struct percpu_counter` (Linux 6.2+), or the
    /// `count` array of atomics in it (before 6.2, `atomic_counters`).
    pub mm_rss_stat: u32,
    /// `sizeof(struct percpu_counter)`
    pub counter_size: u32,
    /// `percpu_counter.count` (s64) and `percpu_counter.counters` (s32 __percpu *)
    pub counter_count: u32,
    pub counter_counters: u32,
    /// `bpf_array.pptrs`: where a per-CPU array keeps its per-CPU pointers, to learn each
    /// CPU's per-CPU offset (the kernel exports no other way without kallsyms data symbols).
    pub array_pptrs: u32,
    /// Number of possible CPU ids (highest possible CPU + 1); at most [`MEM_MAX_CPUS`].
    /// 0 with `atomic_counters`: there are no per-CPU parts.
    pub nr_cpus: u32,
    /// 1 where `mm_struct.rss_stat` is `struct mm_rss_stat { atomic_long_t count[]; }`
    /// (before Linux 6.2): `mm_rss_stat` is then the offset of `count`, `counter_size` 8,
    /// and each counter is read with `bpf_probe_read_kernel` (the verifiers of 5.10 and
    /// 6.1 refuse a direct load into an array of typedef'd structs).
    pub atomic_counters: u32,
}

/// CPUs whose per-CPU parts of the memory counters the iterator adds; a host with more
/// gets no iterator (and the /proc sampler).
pub const MEM_MAX_CPUS: u32 = 1024;

/// Indexes into `mm_struct.rss_stat` (enum in include/linux/mm_types_task.h, the same
/// since Linux 4.5).
pub const MM_FILEPAGES: usize = 0;
pub const MM_ANONPAGES: usize = 1;
pub const MM_SWAPENTS: usize = 2;
pub const MM_SHMEMPAGES: usize = 3;
pub const NR_MM_COUNTERS: usize = 4;

/// `MemRecord::uid` of the record the iterator writes last, at the end of a walk: its
/// `pid` is 0 and `pages[0]` the number of tasks (threads, kernel threads included) the
/// walk visited, less one (the kernel's `seq_num` of the last one).
pub const MEM_TRAILER_UID: u32 = u32::MAX;

/// One process's memory counters, as the iterator writes them (a fixed-size record per
/// thread-group leader with an mm). Each counter is the exact sum of its central count
/// and every CPU's part, in pages (what /proc/<pid>/status shows on Linux 6.18, before the
/// clamp at 0 that userspace applies).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemRecord {
    pub pid: u32,
    pub uid: u32,
    pub pages: [i64; NR_MM_COUNTERS],
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::MemOffsets {}
    // SAFETY: plain #[repr(C)] integers without padding holes that matter to readers.
    unsafe impl aya::Pod for super::Running {}
    unsafe impl aya::Pod for super::TaskOffsets {}
    unsafe impl aya::Pod for super::SwitchFormat {}
    unsafe impl aya::Pod for super::NetKey {}
    unsafe impl aya::Pod for super::NetCounters {}
    unsafe impl aya::Pod for super::UidTraffic {}
    unsafe impl aya::Pod for super::NetOffsets {}
}
