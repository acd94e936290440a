//! Reading a whole per-CPU hash map with `BPF_MAP_LOOKUP_BATCH` (Linux 5.6): one system
//! call per [`BATCH`] entries, where aya's iterator makes two per entry (next key, then
//! lookup). The interface maps hold up to 16,384 entries a user can fill (8,300
//! namespaces each with a busy `lo`), and are read every interval: that was ~33,000 system
//! calls an interval, 109–602 ms on a loaded 2-core machine. aya has no batch API, hence
//! this small wrapper, like the iterator's in `mem.rs`.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd};

use aya::Pod;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Entries asked for per call. A hash map's batch never splits a bucket: a bucket with
/// more entries than this is retried with room for them (`ENOSPC`).
pub const BATCH: u32 = 1024;

/// `union bpf_attr`'s `batch` member (BPF_MAP_*_BATCH).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every entry of the per-CPU hash map `map`: its key and one value per possible CPU
/// (`cpus` of them). `Err` with `EINVAL` where the kernel has no batch lookup.
pub fn per_cpu_entries<K: Pod, V: Pod>(
    map: BorrowedFd<'_>,
    cpus: usize,
) -> io::Result<Vec<(K, Vec<V>)>> {
    // The kernel lays out each CPU's value rounded up to 8 bytes.
    let stride = size_of::<V>().div_ceil(8) * 8;
    let mut want = BATCH;
    let mut keys: Vec<u8> = Vec::new();
    let mut values: Vec<u8> = Vec::new();
    let mut entries = Vec::new();
    // The position: a bucket index for hash maps (u32); none before the first call.
    let mut position: Option<u32> = None;
    let mut next: u32 = 0;
    loop {
        keys.resize(want as usize * size_of::<K>(), 0);
        values.resize(want as usize * cpus * stride, 0);
        let mut attr = BatchAttr {
            in_batch: position.as_ref().map_or(0, |p| p as *const u32 as u64),
            out_batch: &mut next as *mut u32 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: want,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: attr is a live #[repr(C)] bpf_attr prefix; the buffers it points to
        // hold `count` keys and `count * cpus` values of the map's sizes, and `next` one
        // position; all outlive the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                size_of::<BatchAttr>() as libc::c_uint,
            )
        };
        let error = (rc < 0).then(io::Error::last_os_error);
        let got = attr.count.min(want) as usize;
        for i in 0..got {
            // SAFETY: the kernel filled `got` keys and their values; Pod types have no
            // invalid bit patterns, and read_unaligned needs no alignment.
            let key =
                unsafe { (keys.as_ptr().add(i * size_of::<K>()) as *const K).read_unaligned() };
            let per_cpu = (0..cpus)
                .map(|cpu| {
                    let at = (i * cpus + cpu) * stride;
                    // SAFETY: as above, within the values buffer.
                    unsafe { (values.as_ptr().add(at) as *const V).read_unaligned() }
                })
                .collect();
            entries.push((key, per_cpu));
        }
        match error {
            None => position = Some(next),
            // The last entries came with the end.
            Some(err) if err.raw_os_error() == Some(libc::ENOENT) => return Ok(entries),
            // One bucket holds more than `want`: ask again from the same place.
            Some(err) if err.raw_os_error() == Some(libc::ENOSPC) && got == 0 => {
                want = want.checked_mul(2).ok_or(err)?;
            }
            Some(err) => return Err(err),
        }
    }
}
