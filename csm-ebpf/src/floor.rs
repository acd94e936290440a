//! Empty programs on the hooks csm uses, for `bench_net` and `bench_cpu` only (the daemon
//! never loads them): their BPF-stats run time per event is the measurement floor, what the stats
//! themselves (two clock reads and the indirect call) add to every program's figure.

use aya_ebpf::{
    macros::{btf_tracepoint, cgroup_skb},
    programs::{BtfTracePointContext, SkBuffContext},
};

#[btf_tracepoint(function = "sched_switch")]
pub fn floor_sched_switch(_ctx: BtfTracePointContext) -> u32 {
    0
}

#[btf_tracepoint(function = "net_dev_xmit")]
pub fn floor_net_dev_xmit(_ctx: BtfTracePointContext) -> u32 {
    0
}

#[btf_tracepoint(function = "netif_receive_skb")]
pub fn floor_netif_receive_skb(_ctx: BtfTracePointContext) -> u32 {
    0
}

#[cgroup_skb(egress)]
pub fn floor_cgroup_egress(_ctx: SkBuffContext) -> i32 {
    1
}

#[cgroup_skb(ingress)]
pub fn floor_cgroup_ingress(_ctx: SkBuffContext) -> i32 {
    1
}
