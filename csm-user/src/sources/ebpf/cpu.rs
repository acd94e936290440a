//! Reads per-uid CPU time from the scheduler program's maps.

use std::collections::BTreeMap;
use std::fs;

use anyhow::{Context, Result};
use aya::maps::{MapData, PerCpuArray, PerCpuHashMap};
use csm_common::{names, Running, NO_UID, UID_BY_PID};

use super::loader::Loaded;
use crate::model::CpuSample;
use crate::sources::host::HostPaths;

/// Turns the maps into cumulative samples that only grow.
pub struct CpuReader {
    totals: PerCpuHashMap<MapData, u32, u64>,
    running: PerCpuArray<MapData, Running>,
    paths: HostPaths,
    /// Last value reported per uid: the running slice is estimated from wall time, so a
    /// later exact charge can come out slightly lower; reported totals never go down.
    reported: BTreeMap<u32, u64>,
}

impl CpuReader {
    /// Takes the CPU maps out of `loaded`.
    pub fn new(loaded: &mut Loaded, paths: HostPaths) -> Result<Self> {
        let totals = loaded
            .take_map(names::CPU_NS)
            .with_context(|| format!("map {} missing from the eBPF object", names::CPU_NS))?;
        let running = loaded
            .take_map(names::CPU_RUNNING)
            .with_context(|| format!("map {} missing from the eBPF object", names::CPU_RUNNING))?;
        Ok(CpuReader {
            totals: PerCpuHashMap::try_from(totals)
                .with_context(|| format!("map {} has an unexpected type", names::CPU_NS))?,
            running: PerCpuArray::try_from(running)
                .with_context(|| format!("map {} has an unexpected type", names::CPU_RUNNING))?,
            paths,
            reported: BTreeMap::new(),
        })
    }

    /// Cumulative CPU ns per uid now: what was charged at switch-outs, plus the slices
    /// still running on each CPU.
    pub fn sample(&mut self) -> Result<CpuSample> {
        let mut per_uid = self.charged()?;
        for (uid, ns) in self.running_slices()? {
            *per_uid.entry(uid).or_default() += ns;
        }
        for (uid, total) in per_uid.iter_mut() {
            let reported = self.reported.entry(*uid).or_default();
            *reported = (*reported).max(*total);
            *total = *reported;
        }
        Ok(CpuSample {
            mono_ns: clock_ns(libc::CLOCK_MONOTONIC),
            wall_us: chrono::Utc::now().timestamp_micros(),
            per_uid,
        })
    }

    /// Number of uids in the kernel map, to watch its bound.
    pub fn tracked_uids(&self) -> usize {
        self.totals.keys().count()
    }

    fn charged(&self) -> Result<BTreeMap<u32, u64>> {
        let mut per_uid = BTreeMap::new();
        for entry in self.totals.iter() {
            let (uid, per_cpu) = entry.with_context(|| format!("read map {}", names::CPU_NS))?;
            per_uid.insert(uid, per_cpu.iter().sum());
        }
        Ok(per_uid)
    }

    fn running_slices(&self) -> Result<Vec<(u32, u64)>> {
        let per_cpu = self
            .running
            .get(&0, 0)
            .with_context(|| format!("read map {}", names::CPU_RUNNING))?;
        // Both programs stamp switch-ins with bpf_ktime_get_ns (CLOCK_MONOTONIC).
        let now = clock_ns(libc::CLOCK_MONOTONIC);
        Ok(per_cpu
            .iter()
            .filter_map(|running| {
                let uid = match running.uid {
                    NO_UID => return None,
                    UID_BY_PID => self.uid_of_pid(running.pid)?,
                    uid => uid,
                };
                (running.since_ns > 0).then(|| (uid, now.saturating_sub(running.since_ns)))
            })
            .collect())
    }

    /// Real uid of a thread, from `/proc/<pid>/status` (classic tracepoint only).
    fn uid_of_pid(&self, pid: u32) -> Option<u32> {
        let status = fs::read_to_string(self.paths.proc(format!("{pid}/status"))).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Removes uids from the kernel map (and our memory of them). Only for uids that have
    /// no process left: an increment landing between the read and the delete would be lost.
    pub fn forget(&mut self, uids: &[u32]) {
        for uid in uids {
            let _ = self.totals.remove(uid);
            self.reported.remove(uid);
        }
    }
}

pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a local timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
