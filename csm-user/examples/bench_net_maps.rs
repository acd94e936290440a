//! What reading the interface maps costs per interval (run as root, release build):
//! `cargo run --release -p csm-user --example bench_net_maps -- [ENTRIES] [ROUNDS]`
//!
//! A per-CPU hash map shaped like `NET_DEV_USER` (`NetKey` → `NetCounters`, 16,384
//! entries at most) is filled with ENTRIES entries (default 8,300: issue 21's attack 1,
//! one busy `lo` per namespace), then read whole ROUNDS times (default 30) both ways,
//! alternating within each round so that a busy neighbour hurts both alike: aya's
//! iterator (next key + lookup per entry: what the daemon did) and `BPF_MAP_LOOKUP_BATCH`
//! (`sources::ebpf::batch`, what it does now). Every round checks that both read the same
//! entries. Reported: the median and worst wall time of a whole read, and their ratio.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use aya::maps::{Map, MapData, PerCpuHashMap};
use csm::sources::ebpf::batch;
use csm_common::{NetCounters, NetKey};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_TYPE_PERCPU_HASH: u32 = 5;
const MAX_ENTRIES: u32 = 16_384;

#[repr(C)]
#[derive(Default)]
struct CreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

#[repr(C)]
struct UpdateAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<i64> {
    // SAFETY: attr is a live #[repr(C)] bpf_attr prefix whose pointers outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(rc)
}

/// A per-CPU hash map of `entries` interfaces, each CPU's counters distinct.
fn filled_map(entries: u32, cpus: usize) -> Result<OwnedFd> {
    let mut create = CreateAttr {
        map_type: BPF_MAP_TYPE_PERCPU_HASH,
        key_size: std::mem::size_of::<NetKey>() as u32,
        value_size: std::mem::size_of::<NetCounters>() as u32,
        max_entries: MAX_ENTRIES,
        ..CreateAttr::default()
    };
    let fd = bpf(BPF_MAP_CREATE, &mut create).context("BPF_MAP_CREATE")?;
    // SAFETY: a new descriptor the kernel just returned.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    for i in 0..entries {
        let key = NetKey {
            netns: 4_026_531_840 + i,
            ifindex: 1,
        };
        let values: Vec<NetCounters> = (0..cpus as u64)
            .map(|cpu| NetCounters {
                rx_bytes: 1000 * u64::from(i) + cpu,
                rx_packets: u64::from(i),
                tx_bytes: 7 * u64::from(i) + cpu,
                tx_packets: u64::from(i) + 1,
                dev_type: 772,
                owner: 1000,
            })
            .collect();
        let mut update = UpdateAttr {
            map_fd: fd.as_raw_fd() as u32,
            _pad: 0,
            key: &key as *const NetKey as u64,
            value: values.as_ptr() as u64,
            flags: 0,
        };
        bpf(BPF_MAP_UPDATE_ELEM, &mut update).context("BPF_MAP_UPDATE_ELEM")?;
    }
    Ok(fd)
}

type Entries = Vec<((u32, u32), Vec<NetCounters>)>;

fn by_iterator(map: &PerCpuHashMap<MapData, NetKey, NetCounters>) -> Result<Entries> {
    let mut entries = Vec::new();
    for entry in map.iter() {
        let (key, per_cpu) = entry?;
        entries.push(((key.netns, key.ifindex), per_cpu.to_vec()));
    }
    entries.sort_by_key(|e| e.0);
    Ok(entries)
}

fn by_batch(fd: &OwnedFd, cpus: usize) -> Result<Entries> {
    let mut entries: Entries = batch::per_cpu_entries::<NetKey, NetCounters>(fd.as_fd(), cpus)?
        .into_iter()
        .map(|(key, per_cpu)| ((key.netns, key.ifindex), per_cpu))
        .collect();
    entries.sort_by_key(|e| e.0);
    Ok(entries)
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let entries: u32 = args.next().map_or(Ok(8_300), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(30), |a| a.parse())?;
    if entries > MAX_ENTRIES {
        bail!("at most {MAX_ENTRIES} entries");
    }
    let cpus = aya::util::nr_cpus().map_err(|(what, err)| anyhow::anyhow!("{what}: {err}"))?;
    let fd = filled_map(entries, cpus)?;
    let map: PerCpuHashMap<MapData, NetKey, NetCounters> =
        PerCpuHashMap::try_from(Map::PerCpuHashMap(MapData::from_fd(fd.try_clone()?)?))?;
    let (mut iterated, mut batched) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        let a = by_iterator(&map)?;
        iterated.push(started.elapsed().as_secs_f64() * 1e3);
        let started = Instant::now();
        let b = by_batch(&fd, cpus)?;
        batched.push(started.elapsed().as_secs_f64() * 1e3);
        if a != b || a.len() != entries as usize {
            bail!("the two reads differ ({} and {} entries)", a.len(), b.len());
        }
    }
    let worst = |t: &[f64]| t.iter().copied().fold(0.0, f64::max);
    let (wi, wb) = (worst(&iterated), worst(&batched));
    let (mi, mb) = (median(&mut iterated), median(&mut batched));
    println!(
        "{entries} entries, {cpus} possible CPUs, {rounds} rounds: iterator median {mi:.2} ms \
         (worst {wi:.2}), batch median {mb:.2} ms (worst {wb:.2}): {:.1}x",
        mi / mb
    );
    Ok(())
}
