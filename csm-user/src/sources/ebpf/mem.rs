//! Memory per process from the eBPF task iterator (csm-ebpf/src/mem.rs): RSS and swap of
//! every process in one `read`, instead of a `status` file per process.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use anyhow::{ensure, Context, Result};
use aya::programs::ProgramFd;
use csm_common::{
    MemRecord, MEM_TRAILER_UID, MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS,
};

use crate::model::mem::ProcessMem;

/// `BPF_LINK_CREATE`, `BPF_ITER_CREATE` (enum bpf_cmd) and `BPF_TRACE_ITER` (enum
/// bpf_attach_type), from include/uapi/linux/bpf.h: aya 0.14 creates an iterator's file
/// only once per link (`IterLink::into_file`), the daemon needs one per sample.
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
const BPF_TRACE_ITER: u32 = 28;

/// A loaded and attached memory iterator; each [`MemIter::sample`] walks every task once.
pub struct MemIter {
    /// Keeps the program loaded whatever happens to the object it came from.
    _program: ProgramFd,
    link: OwnedFd,
    page_size: u64,
    /// Bytes the last walk returned, so the next read allocates once.
    last_len: usize,
}

/// The first read's size: a page, what the kernel's iterator buffer holds at first.
const MIN_READ: usize = 4096;

/// More than any host's processes need (48 bytes each: 20 million processes).
const MAX_ITER_BYTES: u64 = 1 << 30;

impl MemIter {
    /// Attaches the loaded program `program` (an `iter/task` program).
    pub fn new(program: &ProgramFd) -> Result<MemIter> {
        let program = program
            .try_clone()
            .context("duplicate the memory iterator's program fd")?;
        let link = link_create(&program).context("attach the memory iterator (bpf_link_create)")?;
        // SAFETY: sysconf has no preconditions.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        ensure!(page_size > 0, "sysconf(_SC_PAGESIZE) failed");
        Ok(MemIter {
            _program: program,
            link,
            page_size: page_size as u64,
            last_len: 0,
        })
    }

    /// Every user-space process the iterator sees now: one walk over all tasks.
    pub fn sample(&mut self) -> Result<Vec<ProcessMem>> {
        Ok(self.walk()?.processes)
    }

    /// One walk: the processes, and how many tasks it visited.
    pub fn walk(&mut self) -> Result<Walk> {
        let mut records = self.records()?;
        let tasks_visited = match records.last() {
            Some(last) if last.uid == MEM_TRAILER_UID && last.pid == 0 => {
                let visited = last.pages[0] as u64 + 1;
                records.pop();
                Some(visited)
            }
            _ => None,
        };
        Ok(Walk {
            processes: one_per_process(records)
                .iter()
                .map(|r| process_mem(r, self.page_size))
                .collect(),
            tasks_visited,
        })
    }

    /// The raw records of one walk (pid, uid and page counts per process; the last one
    /// the trailer, uid [`MEM_TRAILER_UID`]).
    pub fn records(&mut self) -> Result<Vec<MemRecord>> {
        let file = iter_create(&self.link).context("start a memory iterator walk")?;
        // Never a read shorter than a record: std's first probe read of 32 bytes lost
        // the walk's first record (pid 1) on Linux 6.18.
        let mut bytes = Vec::with_capacity((self.last_len + self.last_len / 8).max(MIN_READ));
        file.take(MAX_ITER_BYTES)
            .read_to_end(&mut bytes)
            .context("read the memory iterator")?;
        self.last_len = bytes.len();
        parse_records(&bytes)
    }
}

/// One walk of the iterator.
pub struct Walk {
    pub processes: Vec<ProcessMem>,
    /// Tasks (threads and kernel threads) the walk visited, from its trailer record.
    pub tasks_visited: Option<u64>,
}

/// The records of a walk with each pid once. The kernel's task iterator may show a
/// process twice in one walk when the walk spans several `read`s (seen on Linux 6.12 in
/// the kernel matrix: one user's 3 stopped processes came out as 4, the parent twice);
/// counting it twice would add its whole RSS to its user. The first record is kept.
fn one_per_process(mut records: Vec<MemRecord>) -> Vec<MemRecord> {
    let mut seen = std::collections::HashSet::with_capacity(records.len());
    records.retain(|r| seen.insert(r.pid));
    records
}

/// What /proc/<pid>/status shows (VmRSS = anon + file + shmem, VmSwap), each counter
/// clamped at 0 as `get_mm_counter_sum` does.
fn process_mem(record: &MemRecord, page_size: u64) -> ProcessMem {
    let pages = |i: usize| record.pages[i].max(0) as u64;
    ProcessMem {
        pid: record.pid,
        uid: record.uid,
        rss: (pages(MM_FILEPAGES) + pages(MM_ANONPAGES) + pages(MM_SHMEMPAGES)) * page_size,
        pss: None,
        swap: Some(pages(MM_SWAPENTS) * page_size),
    }
}

pub fn parse_records(bytes: &[u8]) -> Result<Vec<MemRecord>> {
    let size = std::mem::size_of::<MemRecord>();
    ensure!(
        bytes.len().is_multiple_of(size),
        "the memory iterator returned {} bytes, not a whole number of {size}-byte records",
        bytes.len()
    );
    Ok(bytes
        .chunks_exact(size)
        .map(|chunk| {
            // SAFETY: MemRecord is plain #[repr(C)] integers; any bytes are a valid value,
            // and read_unaligned does not need the chunk aligned.
            unsafe { std::ptr::read_unaligned(chunk.as_ptr() as *const MemRecord) }
        })
        .collect())
}

/// `union bpf_attr` for BPF_LINK_CREATE, up to the fields used (the kernel takes a
/// shorter attr and zero-fills the rest).
#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
}

/// `union bpf_attr` for BPF_ITER_CREATE.
#[repr(C)]
struct IterCreateAttr {
    link_fd: u32,
    flags: u32,
}

fn bpf_fd<T>(cmd: libc::c_long, attr: &T) -> io::Result<OwnedFd> {
    // SAFETY: attr points to a live, initialised #[repr(C)] struct of the given size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn link_create(program: &ProgramFd) -> io::Result<OwnedFd> {
    let attr = LinkCreateAttr {
        prog_fd: program.as_fd().as_raw_fd() as u32,
        target_fd: 0,
        attach_type: BPF_TRACE_ITER,
        flags: 0,
    };
    bpf_fd(BPF_LINK_CREATE, &attr)
}

fn iter_create(link: &OwnedFd) -> io::Result<File> {
    let attr = IterCreateAttr {
        link_fd: link.as_raw_fd() as u32,
        flags: 0,
    };
    Ok(File::from(bpf_fd(BPF_ITER_CREATE, &attr)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_become_status_figures() {
        let record = MemRecord {
            pid: 7,
            uid: 1000,
            // file, anon, swap, shmem; a negative sum (possible while per-CPU parts are
            // in flight) counts as 0, as in the kernel.
            pages: [10, 20, 3, -1],
        };
        let bytes: Vec<u8> = (0..std::mem::size_of::<MemRecord>())
            .map(|i| unsafe { *(&record as *const MemRecord as *const u8).add(i) })
            .collect();
        let parsed = parse_records(&bytes).unwrap();
        assert_eq!(parsed, vec![record]);
        assert_eq!(
            process_mem(&parsed[0], 4096),
            ProcessMem {
                pid: 7,
                uid: 1000,
                rss: 30 * 4096,
                pss: None,
                swap: Some(3 * 4096)
            }
        );
        let err = parse_records(&bytes[1..]).unwrap_err();
        assert!(err.to_string().contains("whole number"), "{err}");
    }

    #[test]
    fn a_process_shown_twice_counts_once() {
        let record = |pid, uid| MemRecord {
            pid,
            uid,
            pages: [1, 2, 0, 0],
        };
        let walk = vec![
            record(1, 0),
            record(7, 1000),
            record(8, 1000),
            record(7, 1000),
        ];
        let pids: Vec<u32> = one_per_process(walk).iter().map(|r| r.pid).collect();
        assert_eq!(pids, vec![1, 7, 8]);
    }
}
