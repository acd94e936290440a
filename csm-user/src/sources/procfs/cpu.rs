//! CPU time per uid from `/proc/<pid>/stat` (utime + stime) and the real uid in
//! `/proc/<pid>/status`.
//!
//! Per-uid sums of live processes go down whenever a process exits, so the sampler keeps
//! each process's last values and adds only their increases to per-uid cumulative totals,
//! which never go down.
//!
//! The blind spot: a process that starts and ends between two samples is never seen, and
//! a seen process's time between its last sample and its exit (its tail) is lost. With
//! [`ChildTimes::Recover`], the sampler reads what the kernel adds to a parent's
//! cutime/cstime when it reaps a child (the child's utime + stime + cutime + cstime),
//! subtracts what it had already counted of the children that disappeared, and charges the
//! rest to the parent's uid. Not recovered: children whose parent does not wait for them
//! (SIGCHLD ignored, or a parent that exits before reaping: then init reaps them), and
//! time of a child that ran under another uid than its parent is charged to the parent's.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};

use super::pid::{parse_stat, parse_status, PidStat};
use super::{read_process_file, WarnOnce};
use crate::model::CpuSample;
use crate::sources::clock;
use crate::sources::host::HostPaths;

/// Whether to recover exited children's time from their parents' cutime/cstime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildTimes {
    Ignore,
    Recover,
}

/// What the sampler remembers of one process between samples.
#[derive(Clone, Copy, Debug)]
struct Tracked {
    stat: PidStat,
    uid: u32,
    /// Owner of `/proc/<pid>` (the effective uid) when the uid was read: when it changes
    /// (setuid), `status` is read again.
    owner: u32,
}

pub struct ProcCpuSampler {
    paths: HostPaths,
    child_times: ChildTimes,
    ns_per_tick: u64,
    pids: HashMap<u32, Tracked>,
    /// Cumulative CPU ns per uid since the first sample.
    totals: BTreeMap<u32, u64>,
    /// Already counted child ticks not yet seen in the reaper's cutime/cstime, per live
    /// pid, kept for one more sample: a scan reads the parent before the child, so a child
    /// reaped in between is gone while the parent's cutime does not have it yet.
    pending: HashMap<u32, u64>,
    first: bool,
    warnings: WarnOnce,
}

impl ProcCpuSampler {
    pub fn new(paths: HostPaths, child_times: ChildTimes) -> Self {
        ProcCpuSampler {
            paths,
            child_times,
            ns_per_tick: ns_per_tick(),
            pids: HashMap::new(),
            totals: BTreeMap::new(),
            pending: HashMap::new(),
            first: true,
            warnings: WarnOnce::default(),
        }
    }

    /// Number of processes seen in the last sample.
    pub fn tracked_processes(&self) -> usize {
        self.pids.len()
    }

    pub fn sample(&mut self) -> Result<CpuSample> {
        let at = clock::now();
        let current = self.scan()?;
        let ticks = self.charge(&current);
        for (uid, t) in ticks {
            *self.totals.entry(uid).or_default() += t.saturating_mul(self.ns_per_tick);
        }
        self.pids = current;
        self.first = false;
        Ok(CpuSample {
            at,
            per_uid: self.totals.clone(),
        })
    }

    /// Reads every process now. Processes that vanish while being read are skipped.
    fn scan(&mut self) -> Result<HashMap<u32, Tracked>> {
        let root = &self.paths.proc_root;
        let entries =
            fs::read_dir(root).with_context(|| format!("cannot list {}", root.display()))?;
        let mut current = HashMap::with_capacity(self.pids.len() + 16);
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(tracked) = self.read_process(pid, &entry.path()) {
                current.insert(pid, tracked);
            }
        }
        Ok(current)
    }

    fn read_process(&mut self, pid: u32, dir: &Path) -> Option<Tracked> {
        let stat_path = dir.join("stat");
        let text = read_process_file(&stat_path, &mut self.warnings)?;
        let stat = match parse_stat(&text) {
            Ok(stat) => stat,
            Err(w) => {
                self.warnings.lines(&stat_path, &[w]);
                return None;
            }
        };
        let owner = fs::metadata(dir).ok()?.uid();
        match self.pids.get(&pid) {
            Some(prev) if prev.stat.starttime == stat.starttime && prev.owner == owner => {
                Some(Tracked { stat, ..*prev })
            }
            _ => {
                let uid = self.real_uid(dir)?;
                Some(Tracked { stat, uid, owner })
            }
        }
    }

    fn real_uid(&mut self, dir: &Path) -> Option<u32> {
        let path = dir.join("status");
        let text = read_process_file(&path, &mut self.warnings)?;
        let (status, warnings) = parse_status(&text);
        self.warnings.lines(&path, &warnings);
        if status.ruid.is_none() {
            self.warnings
                .warn(format!("{}: no Uid line; process skipped", path.display()));
        }
        status.ruid
    }

    /// Ticks each uid used since the previous sample.
    fn charge(&mut self, current: &HashMap<u32, Tracked>) -> BTreeMap<u32, u64> {
        let fresh = self.known_child_ticks(current);
        let carried: HashMap<u32, u64> = self.pending.drain().collect();
        let mut per_uid = BTreeMap::new();
        for (pid, now) in current {
            let prev = self
                .pids
                .get(pid)
                .filter(|p| p.stat.starttime == now.stat.starttime);
            let (own, child) = match prev {
                Some(p) => (
                    now.stat.own_ticks().saturating_sub(p.stat.own_ticks()),
                    now.stat.child_ticks().saturating_sub(p.stat.child_ticks()),
                ),
                // A new process: all its time falls in this interval (except at the first
                // sample, which is the baseline).
                None if self.first => (0, 0),
                None => (now.stat.own_ticks(), now.stat.child_ticks()),
            };
            let new_known = fresh.get(pid).copied().unwrap_or(0);
            let already = new_known + carried.get(pid).copied().unwrap_or(0);
            let recovered = match self.child_times {
                ChildTimes::Recover => child.saturating_sub(already),
                ChildTimes::Ignore => 0,
            };
            let unused = already.saturating_sub(child).min(new_known);
            if unused > 0 && prev.is_some() {
                self.pending.insert(*pid, unused);
            }
            let ticks = own + recovered;
            if ticks > 0 {
                *per_uid.entry(now.uid).or_default() += ticks;
            }
        }
        per_uid
    }

    /// For each live process, the ticks already counted of its descendants that exited
    /// since the previous sample: they come back in its cutime/cstime when it reaps them.
    /// A dead process's time lands with its nearest live ancestor (its parent reaped it,
    /// and its parent's own reaper got that in turn).
    fn known_child_ticks(&self, current: &HashMap<u32, Tracked>) -> HashMap<u32, u64> {
        let alive = |pid: &u32| {
            matches!((self.pids.get(pid), current.get(pid)),
                (Some(p), Some(c)) if p.stat.starttime == c.stat.starttime)
        };
        let mut known = HashMap::new();
        for (pid, dead) in self.pids.iter().filter(|(pid, _)| !alive(pid)) {
            let mut ancestor = dead.stat.ppid;
            // Bounded: a cycle cannot happen in a real tree but can in a fixture.
            for _ in 0..64 {
                if ancestor == *pid || ancestor == 0 {
                    break;
                }
                if alive(&ancestor) {
                    *known.entry(ancestor).or_default() +=
                        dead.stat.own_ticks() + dead.stat.child_ticks();
                    break;
                }
                match self.pids.get(&ancestor) {
                    Some(parent) => ancestor = parent.stat.ppid,
                    None => break,
                }
            }
        }
        known
    }
}

/// Nanoseconds per clock tick (USER_HZ, nearly always 100).
fn ns_per_tick() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1_000_000_000 / if hz > 0 { hz as u64 } else { 100 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake /proc with processes `(pid, ppid, uid, utime, stime, cutime, cstime)`.
    struct FakeProc {
        dir: tempfile::TempDir,
    }

    impl FakeProc {
        fn new() -> Self {
            FakeProc {
                dir: tempfile::tempdir().unwrap(),
            }
        }
        fn paths(&self) -> HostPaths {
            HostPaths {
                proc_root: self.dir.path().to_path_buf(),
                sys_root: self.dir.path().join("sys"),
            }
        }
        fn set(&self, pid: u32, ppid: u32, uid: u32, times: [u64; 4]) {
            let d = self.dir.path().join(pid.to_string());
            fs::create_dir_all(&d).unwrap();
            let [u, s, cu, cs] = times;
            fs::write(
                d.join("stat"),
                format!("{pid} (p {pid}) S {ppid} 1 1 0 -1 0 0 0 0 0 {u} {s} {cu} {cs} 20 0 1 0 {pid}00 0 0\n"),
            )
            .unwrap();
            fs::write(
                d.join("status"),
                format!("Name:\tp\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"),
            )
            .unwrap();
        }
        fn kill(&self, pid: u32) {
            fs::remove_dir_all(self.dir.path().join(pid.to_string())).unwrap();
        }
        /// A sampler of this tree that has taken its first sample.
        fn sampler(&self, child_times: ChildTimes) -> ProcCpuSampler {
            let mut sampler = ProcCpuSampler::new(self.paths(), child_times);
            sampler.sample().unwrap();
            sampler
        }
    }

    fn ticks(sample: &CpuSample, uid: u32) -> u64 {
        sample.per_uid.get(&uid).copied().unwrap_or(0) / ns_per_tick()
    }

    #[test]
    fn exited_children_come_back_through_the_parent() {
        let f = FakeProc::new();
        f.set(100, 1, 1000, [10, 0, 0, 0]);
        f.set(101, 100, 1000, [50, 10, 0, 0]);
        let mut with = ProcCpuSampler::new(f.paths(), ChildTimes::Recover);
        let mut without = ProcCpuSampler::new(f.paths(), ChildTimes::Ignore);
        with.sample().unwrap();
        without.sample().unwrap();
        // 101 runs 40 more ticks (unseen tail) and exits; an unseen child ran 30 ticks;
        // the parent reaped both: its cutime+cstime grow by 60+40+30.
        f.kill(101);
        f.set(100, 1, 1000, [12, 0, 100, 30]);
        // A new process of another uid is counted whole.
        f.set(300, 1, 1001, [5, 2, 0, 0]);
        let a = with.sample().unwrap();
        let b = without.sample().unwrap();
        assert_eq!(ticks(&a, 1000), 2 + 40 + 30);
        assert_eq!(ticks(&b, 1000), 2);
        assert_eq!(ticks(&a, 1001), 7);
        assert_eq!(ticks(&b, 1001), 7);
    }

    #[test]
    fn child_gone_before_the_parent_shows_it_is_not_counted_twice() {
        let f = FakeProc::new();
        f.set(100, 1, 1000, [0, 0, 0, 0]);
        f.set(101, 100, 1000, [50, 0, 0, 0]);
        let mut s = f.sampler(ChildTimes::Recover);
        f.kill(101);
        assert_eq!(ticks(&s.sample().unwrap(), 1000), 0);
        // The parent's cutime shows the child one sample late: only the 5-tick tail is new.
        f.set(100, 1, 1000, [0, 0, 55, 0]);
        assert_eq!(ticks(&s.sample().unwrap(), 1000), 5);
    }

    #[test]
    fn grandchildren_land_with_the_nearest_live_ancestor() {
        let f = FakeProc::new();
        f.set(100, 1, 1000, [0, 0, 0, 0]);
        f.set(101, 100, 1000, [10, 0, 0, 0]);
        f.set(102, 101, 1000, [20, 0, 0, 0]);
        let mut s = f.sampler(ChildTimes::Recover);
        f.kill(102);
        f.kill(101);
        // 101 reaped 102 (20 + 3 tail), then 100 reaped 101 (10 + 1 tail + 23).
        f.set(100, 1, 1000, [0, 0, 34, 0]);
        assert_eq!(ticks(&s.sample().unwrap(), 1000), 4);
    }

    #[test]
    fn totals_never_go_down_when_processes_exit() {
        let f = FakeProc::new();
        f.set(100, 1, 1000, [500, 0, 0, 0]);
        let mut s = f.sampler(ChildTimes::Ignore);
        f.set(100, 1, 1000, [600, 0, 0, 0]);
        assert_eq!(ticks(&s.sample().unwrap(), 1000), 100);
        f.kill(100);
        assert_eq!(ticks(&s.sample().unwrap(), 1000), 100);
    }
}
