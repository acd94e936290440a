//! Memory per process from the kernel's own counters: a task iterator (`iter/task`) that
//! writes one [`MemRecord`] per process, so a memory sample costs one `read` of the
//! iterator instead of two /proc files per process.
//!
//! Before Linux 6.2 the counters are `mm_struct.rss_stat.count[]`, atomics, which
//! /proc/<pid>/status shows as they are (`get_mm_counter`, clamped at 0): the iterator
//! reads them the same way (`read_atomic_counters`).
//!
//! Since 6.2 they are `mm_struct.rss_stat[]`, `struct percpu_counter`: a
//! central `count` plus a per-CPU part not yet folded into it (less than the counter's batch,
//! 32 pages on small machines, per CPU).
//! /proc/<pid>/status on Linux 6.18 adds the per-CPU parts (`get_mm_counter_sum`; checked
//! here: a stopped process's VmRSS always equals its smaps_rollup Rss, which reading only
//! `count` would miss by up to the batch), so this does too, and the figures equal /proc's. Reading a per-CPU part needs the CPU's per-CPU offset,
//! which this kernel exports neither as a symbol nor through typed pointers (no `percpu`
//! BTF tags): it is learnt from a one-slot per-CPU array, whose per-CPU pointer
//! (`bpf_array.pptrs[0]`) and its address on each CPU (`bpf_map_lookup_percpu_elem`)
//! differ by exactly that offset.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::generated::{bpf_map_lookup_percpu_elem, bpf_probe_read_kernel, bpf_seq_write},
    macros::map,
    maps::PerCpuArray,
};
use csm_common::{MemOffsets, MemRecord, MEM_MAX_CPUS, MEM_TRAILER_UID, NR_MM_COUNTERS};

/// Set by userspace from the running kernel's BTF before load.
#[no_mangle]
static MEM_OFFSETS: MemOffsets = MemOffsets {
    task_pid: 0,
    task_tgid: 0,
    task_flags: 0,
    task_mm: 0,
    task_real_cred: 0,
    cred_uid: 0,
    mm_rss_stat: 0,
    counter_size: 0,
    counter_count: 0,
    counter_counters: 0,
    array_pptrs: 0,
    nr_cpus: 0,
    atomic_counters: 0,
};

/// Only its addresses matter (see the module comment); its value is scratch space.
#[map(name = "MEM_CPU_PROBE")]
static MEM_CPU_PROBE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// `PF_KTHREAD` (include/linux/sched.h): kernel threads have no memory of their own.
const PF_KTHREAD: u32 = 0x0020_0000;

/// `struct bpf_iter__task`: the program's context.
#[repr(C)]
struct IterTask {
    meta: *const IterMeta,
    task: *const u8,
}

/// `struct bpf_iter_meta`
#[repr(C)]
struct IterMeta {
    seq: *mut c_void,
    session_id: u64,
    seq_num: u64,
}

#[no_mangle]
#[link_section = "iter/task"]
pub fn mem_tasks(ctx: *mut c_void) -> i32 {
    unsafe { report_task(ctx as *const IterTask) };
    0
}

/// Loads a field at a constant byte offset from a BTF pointer.
#[inline(always)]
unsafe fn field<T: Copy>(base: *const u8, offset: u32) -> T {
    core::ptr::read_volatile(base.add(offset as usize) as *const T)
}

#[inline(always)]
unsafe fn report_task(ctx: *const IterTask) {
    let off = core::ptr::read_volatile(&MEM_OFFSETS);
    let task = core::ptr::read_volatile(&(*ctx).task);
    if task.is_null() {
        // The end of the walk: how many tasks it visited, so that userspace can tell
        // whether any task was out of its sight.
        let meta = core::ptr::read_volatile(&(*ctx).meta);
        let trailer = MemRecord {
            pid: 0,
            uid: MEM_TRAILER_UID,
            pages: [core::ptr::read_volatile(&(*meta).seq_num) as i64, 0, 0, 0],
        };
        write(ctx, &trailer);
        return;
    }
    let pid: i32 = field(task, off.task_pid);
    let tgid: i32 = field(task, off.task_tgid);
    let flags: u32 = field(task, off.task_flags);
    // One record per process (its leader); a process whose leader has exited has no mm
    // there, as /proc/<pid>/status shows no VmRSS for it.
    if pid != tgid || flags & PF_KTHREAD != 0 {
        return;
    }
    let mm: *const u8 = field(task, off.task_mm);
    if mm.is_null() {
        return; // a zombie
    }
    let cred: *const u8 = field(task, off.task_real_cred);
    let mut record = MemRecord {
        pid: tgid as u32,
        uid: field(cred, off.cred_uid),
        pages: [0; NR_MM_COUNTERS],
    };
    if off.atomic_counters != 0 {
        read_atomic_counters(&off, mm, &mut record.pages);
        write(ctx, &record);
        return;
    }
    let mut per_cpu = [0u64; NR_MM_COUNTERS];
    for (i, slot) in per_cpu.iter_mut().enumerate() {
        let counter = mm.add((off.mm_rss_stat + i as u32 * off.counter_size) as usize);
        record.pages[i] = field(counter, off.counter_count);
        *slot = field(counter, off.counter_counters);
    }
    add_per_cpu_parts(&off, &per_cpu, &mut record.pages);
    write(ctx, &record);
}

/// Before Linux 6.2: `mm->rss_stat.count[]`, atomics, read as /proc's `get_mm_counter`
/// reads them (no per-thread caches; userspace clamps at 0 as it does).
#[inline(always)]
unsafe fn read_atomic_counters(off: &MemOffsets, mm: *const u8, pages: &mut [i64; NR_MM_COUNTERS]) {
    let mut counts = [0i64; NR_MM_COUNTERS];
    if read_kernel(
        &mut counts,
        (mm as u64).wrapping_add(off.mm_rss_stat as u64),
    ) {
        *pages = counts;
    }
}

#[inline(always)]
unsafe fn write(ctx: *const IterTask, record: &MemRecord) {
    let meta = core::ptr::read_volatile(&(*ctx).meta);
    let seq = core::ptr::read_volatile(&(*meta).seq);
    bpf_seq_write(
        seq as *mut _,
        record as *const MemRecord as *const c_void,
        core::mem::size_of::<MemRecord>() as u32,
    );
}

/// Adds every CPU's not yet folded part of each counter (`percpu_counter_sum`).
#[inline(always)]
unsafe fn add_per_cpu_parts(
    off: &MemOffsets,
    counters: &[u64; NR_MM_COUNTERS],
    pages: &mut [i64; NR_MM_COUNTERS],
) {
    let map = &MEM_CPU_PROBE as *const PerCpuArray<u64> as *mut c_void;
    let Some(scratch) = MEM_CPU_PROBE.get_ptr_mut(0) else {
        return;
    };
    // The array's per-CPU pointer, read from the map's kernel struct (the verifier allows
    // no arithmetic on a map pointer, so it is read as a plain address).
    let mut percpu_ptr = 0u64;
    if !read_kernel(
        &mut percpu_ptr,
        as_number(scratch, map as u64).wrapping_add(off.array_pptrs as u64),
    ) {
        return;
    }
    // percpu_counter_init_many allocates the mm's counters as one per-CPU block, so the
    // four parts are usually adjacent and one read per CPU gets them all.
    let adjacent = counters[1] == counters[0] + 4
        && counters[2] == counters[0] + 8
        && counters[3] == counters[0] + 12;
    let key = 0u32;
    let mut cpu = 0u32;
    while cpu < MEM_MAX_CPUS && cpu < off.nr_cpus {
        let here = bpf_map_lookup_percpu_elem(map, &key as *const u32 as *const c_void, cpu);
        cpu += 1;
        if here.is_null() {
            continue;
        }
        let cpu_offset = as_number(scratch, here as u64).wrapping_sub(percpu_ptr);
        if adjacent {
            let mut parts = [0i32; NR_MM_COUNTERS];
            if read_kernel(&mut parts, counters[0].wrapping_add(cpu_offset)) {
                for i in 0..NR_MM_COUNTERS {
                    pages[i] += parts[i] as i64;
                }
            }
        } else {
            for i in 0..NR_MM_COUNTERS {
                let mut part = 0i32;
                if read_kernel(&mut part, counters[i].wrapping_add(cpu_offset)) {
                    pages[i] += part as i64;
                }
            }
        }
    }
}

/// A pointer as a plain number: the verifier forbids arithmetic on a map pointer, and
/// between a map value pointer and an unbounded number, but a pointer stored into a map
/// value (allowed to a privileged loader) reads back as a number.
#[inline(always)]
unsafe fn as_number(slot: *mut u64, pointer: u64) -> u64 {
    core::ptr::write_volatile(slot, pointer);
    core::ptr::read_volatile(slot)
}

#[inline(always)]
unsafe fn read_kernel<T>(dst: &mut T, address: u64) -> bool {
    bpf_probe_read_kernel(
        dst as *mut T as *mut c_void,
        core::mem::size_of::<T>() as u32,
        address as *const c_void,
    ) == 0
}
