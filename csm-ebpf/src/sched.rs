//! Per-uid CPU time from the scheduler.
//!
//! At every `sched_switch` the outgoing task's uid is charged what it ran since it was
//! switched in, and the incoming task is remembered per CPU so that userspace can also
//! charge the slice that is still running when it reads (a task alone on a CPU would
//! otherwise only show up when it is finally switched out).
//!
//! The tp_btf program charges the kernel's own accounting (`se.sum_exec_runtime`,
//! which excludes steal time); the classic tracepoint, for kernels without BTF, charges
//! wall time between switches.

use aya_ebpf::{
    helpers::{bpf_get_current_uid_gid, bpf_ktime_get_ns},
    macros::{btf_tracepoint, map, tracepoint},
    maps::{PerCpuArray, PerCpuHashMap},
    programs::{BtfTracePointContext, TracePointContext},
};
use csm_common::{Running, SwitchFormat, TaskOffsets, MAX_UIDS, NO_UID, UID_BY_PID};

/// Set by userspace from the running kernel's BTF before load.
#[no_mangle]
static TASK_OFFSETS: TaskOffsets = TaskOffsets {
    sum_exec_runtime: 0,
    prev_sum_exec_runtime: 0,
    real_cred: 0,
    cred_uid: 0,
    pid: 0,
};

/// Set by userspace from tracefs before load.
#[no_mangle]
static SWITCH_FORMAT: SwitchFormat = SwitchFormat {
    prev_pid: 24,
    next_pid: 56,
};

/// Cumulative on-CPU nanoseconds per uid (per CPU; userspace sums the CPUs).
#[map(name = "CPU_NS")]
static CPU_NS: PerCpuHashMap<u32, u64> = PerCpuHashMap::with_max_entries(MAX_UIDS, 0);

/// What each CPU runs now (index 0 of a per-CPU array).
#[map(name = "CPU_RUNNING")]
static CPU_RUNNING: PerCpuArray<Running> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn charge(uid: u32, ns: u64) {
    match CPU_NS.get_ptr_mut(uid) {
        // Per-CPU value: no other CPU writes it, a plain add is safe.
        Some(total) => unsafe { *total += ns },
        None => {
            let _ = CPU_NS.insert(uid, ns, 0);
        }
    }
}

/// Loads a field at a constant byte offset from a BTF pointer.
#[inline(always)]
unsafe fn field<T: Copy>(base: *const u8, offset: u32) -> T {
    core::ptr::read_volatile(base.add(offset as usize) as *const T)
}

#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch_btf(ctx: BtfTracePointContext) -> u32 {
    // TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next, ...)
    let prev: *const u8 = ctx.arg(1);
    let next: *const u8 = ctx.arg(2);
    unsafe { account_switch_btf(prev, next) };
    0
}

#[inline(always)]
unsafe fn account_switch_btf(prev: *const u8, next: *const u8) {
    let off = core::ptr::read_volatile(&TASK_OFFSETS);
    let Some(running) = CPU_RUNNING.get_ptr_mut(0) else {
        return;
    };
    let running = &mut *running;

    let prev_pid: i32 = field(prev, off.pid);
    if prev_pid != 0 {
        let runtime: u64 = field(prev, off.sum_exec_runtime);
        // The switch-in we recorded, or (first switch after load) the kernel's own mark.
        let start = if running.task == prev as u64 {
            running.start_runtime_ns
        } else {
            field(prev, off.prev_sum_exec_runtime)
        };
        let cred: *const u8 = field(prev, off.real_cred);
        let uid: u32 = field(cred, off.cred_uid);
        charge(uid, runtime.saturating_sub(start));
    }

    let next_pid: i32 = field(next, off.pid);
    running.task = next as u64;
    running.start_runtime_ns = field(next, off.sum_exec_runtime);
    running.since_ns = bpf_ktime_get_ns();
    running.pid = next_pid as u32;
    running.uid = if next_pid == 0 {
        NO_UID
    } else {
        let cred: *const u8 = field(next, off.real_cred);
        field(cred, off.cred_uid)
    };
}

#[tracepoint(category = "sched", name = "sched_switch")]
pub fn sched_switch_tp(ctx: TracePointContext) -> u32 {
    unsafe { account_switch_tp(&ctx) };
    0
}

#[inline(always)]
unsafe fn account_switch_tp(ctx: &TracePointContext) {
    let format = core::ptr::read_volatile(&SWITCH_FORMAT);
    let Some(running) = CPU_RUNNING.get_ptr_mut(0) else {
        return;
    };
    let running = &mut *running;
    let now = bpf_ktime_get_ns();
    let prev_pid: i32 = ctx.read_at(format.prev_pid as usize).unwrap_or(0);
    let next_pid: i32 = ctx.read_at(format.next_pid as usize).unwrap_or(0);

    // `current` is still the outgoing task here.
    if prev_pid != 0 && running.since_ns != 0 {
        let uid = bpf_get_current_uid_gid() as u32;
        charge(uid, now.saturating_sub(running.since_ns));
    }
    running.task = 0;
    running.start_runtime_ns = 0;
    running.since_ns = now;
    running.pid = next_pid as u32;
    running.uid = if next_pid == 0 { NO_UID } else { UID_BY_PID };
}
