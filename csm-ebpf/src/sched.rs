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
    maps::{Array, PerCpuArray, PerCpuHashMap},
    programs::{BtfTracePointContext, TracePointContext},
};
use csm_common::{Running, SwitchFormat, TaskOffsets, MAX_UIDS, NO_UID, UID_BY_PID};

/// Set by userspace from the running kernel's BTF before load.
#[no_mangle]
static TASK_OFFSETS: TaskOffsets = TaskOffsets {
    sum_exec_runtime: 0,
    prev_sum_exec_runtime: 0,
    exec_start: 0,
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

/// CLOCK_MONOTONIC time of userspace's first sample, set once by userspace (0 before).
#[map(name = "CPU_BASELINE")]
static CPU_BASELINE: Array<u64> = Array::with_max_entries(1, 0);

/// Charges `ns` to `uid` on this CPU: into the CPU's pending sum while the uid stays the
/// same, into `CPU_NS` when it changes.
#[inline(always)]
fn charge(running: &mut Running, uid: u32, ns: u64) {
    if running.pending_uid == uid {
        running.pending_ns += ns;
        return;
    }
    if running.pending_ns != 0 {
        add_to_map(running.pending_uid, running.pending_ns);
    }
    running.pending_uid = uid;
    running.pending_ns = ns;
}

#[inline(always)]
fn add_to_map(uid: u32, ns: u64) {
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

    // No clock read here: the kernel's run time says how long a task ran, and a clock
    // read cost a third of this handler (33 of 93 ns per run on a 2-core Xeon VM).
    let prev_pid: i32 = field(prev, off.pid);
    // The run queue's task clock now: both tasks' `exec_start` are this CPU's clock, and
    // the one just accounted is current (the idle task's is never updated).
    let clock_now: u64 = field::<u64>(prev, off.exec_start).max(field(next, off.exec_start));
    if prev_pid != 0 {
        let runtime: u64 = field(prev, off.sum_exec_runtime);
        let ran = if running.task == prev as u64 {
            runtime.saturating_sub(running.start_runtime_ns)
        } else {
            unrecorded_slice(running, prev, runtime, clock_now, &off)
        };
        let cred: *const u8 = field(prev, off.real_cred);
        let uid: u32 = field(cred, off.cred_uid);
        charge(running, uid, ran);
        running.last_out_task = prev as u64;
        running.last_out_runtime_ns = runtime;
    }

    let next_pid: i32 = field(next, off.pid);
    running.task = next as u64;
    running.start_runtime_ns = field(next, off.sum_exec_runtime);
    running.start_clock_ns = clock_now;
    running.pid = next_pid as u32;
    running.uid = if next_pid == 0 {
        NO_UID
    } else {
        let cred: *const u8 = field(next, off.real_cred);
        field(cred, off.cred_uid)
    };
}

/// The slice of a task switched out where this program did not record its switch-in:
/// the CPU's first switch since load, or a switch the tracepoint did not show. A kernel
/// can switch that way: on a 6.18 VM a few times a second, always right after a switch
/// to one service's threads. There the task's own switch-in mark
/// (`se.prev_sum_exec_runtime`) was seconds old, before slices already charged, and
/// charging from it counted them twice (345 % of 2 cores in one interval). So the slice
/// starts no earlier than where this CPU last charged the same task, and is no longer
/// than the run queue's task clock has run since the last switch seen here.
#[inline(always)]
unsafe fn unrecorded_slice(
    running: &Running,
    prev: *const u8,
    runtime: u64,
    clock_now: u64,
    off: &TaskOffsets,
) -> u64 {
    let mut from: u64 = field(prev, off.prev_sum_exec_runtime);
    if running.last_out_task == prev as u64 {
        from = from.max(running.last_out_runtime_ns);
    }
    let ran = runtime.saturating_sub(from);
    if running.task == 0 {
        // First switch on this CPU since load: nothing recorded here yet.
        return first_slice(ran);
    }
    ran.min(clock_now.saturating_sub(running.start_clock_ns))
}

/// A slice that began before this program first saw its CPU switch: only its part since
/// userspace's first sample is charged. The rest belongs to no interval (it is before the
/// first one), and a long such slice (the daemon's own start-up, BTF parsing and all)
/// once landed whole in the first interval: 218 % on 2 cores.
#[inline(always)]
fn first_slice(ran: u64) -> u64 {
    match CPU_BASELINE.get(0) {
        Some(&baseline) if baseline != 0 => {
            ran.min(unsafe { bpf_ktime_get_ns() }.saturating_sub(baseline))
        }
        _ => ran,
    }
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
        charge(running, uid, now.saturating_sub(running.since_ns));
    }
    running.task = 0;
    running.start_runtime_ns = 0;
    running.since_ns = now;
    running.pid = next_pid as u32;
    running.uid = if next_pid == 0 { NO_UID } else { UID_BY_PID };
}
