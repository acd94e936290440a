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
//!
//! The tail of a seen process goes to the parent's uid that way, or nowhere when the
//! parent does not wait: a 10 s burn killed and reaped by a root process lost up to one
//! interval (−8.9 % at 1 s intervals in a 5.10 VM, −2.2 to −3.4 % natively), and short
//! processes were root's when they, or the user's shell running them, ended under a root
//! process that lives on (−20 to −28 % for a user's shell of 2,000 short processes on a
//! quiet 6.18 host, where the whole run spans one or two samples). With
//! [`ProcCpuSampler::with_exit_records`] the sampler reads the kernel's exit record of
//! every task (taskstats) and charges it to the task's own uid:
//! - a tracked single-threaded process's record, minus what was counted, is its tail;
//! - a process never tracked (it lived and died between two samples) is charged whole,
//!   and known to the nearest tracked process above it (found through the parents named
//!   by this drain's and the previous drain's records), whose cutime/cstime gets it when
//!   it, or a process under it, reaps it: a dead one's (a shell's last commands) go with
//!   its own tail, a live one's (a root daemon's children) are taken back out of its
//!   cutime growth, now or, reaped after the scan, at the next sample (the known amount
//!   is kept one sample: a parent that never waits cannot swallow later growth);
//! - what a reaper's cutime grows by beyond the records (a record is sent before the
//!   process tears down its address space, and holds tick-sampled times without delay
//!   accounting: a few-ms process's record is a fraction of its run time) is shared by
//!   the uids it reaped, an equal part per process.
//!
//! A record names its process (`ac_tgid`) from taskstats v12 (Linux 5.18): a thread's
//! record then counts with its process (nothing for a tracked one, whose stat has it).
//! Before v12 a thread's record looks like a child of its process's parent, so there the
//! records of processes never tracked are used only under a dead tracked parent that had
//! no multi-threaded child, and a live reaper's growth stays its own (as without records).
//! A multi-threaded process's own record covers its last thread alone: its tail goes
//! through its parent's cutime.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};

use super::pid::{parse_stat, parse_status, PidStat};
use super::{read_process_file, WarnOnce};
use crate::model::CpuSample;
use crate::model::Stamp;
use crate::sources::clock;
use crate::sources::host::HostPaths;
use crate::sources::taskstats::{ExitListener, TaskExit};

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
    exits: Option<ExitRecords>,
    /// Samples taken, to age the exit records.
    samples: u64,
}

/// The exit records, kept for the sample that drained them and the next: a process seen
/// as a zombie has its record before it leaves /proc.
struct ExitRecords {
    /// None in unit tests, which hand the records in.
    listener: Option<ExitListener>,
    /// Per tracked pid: its utime + stime at exit in ns (`None`: two exits of that pid,
    /// reused, in the window: which one was tracked is unknown), and the sample that
    /// drained it.
    by_pid: HashMap<u32, (Option<u64>, u64)>,
    /// The records this sample drained of processes never tracked, by the nearest
    /// tracked process above them (their parent, or their parent's when that was never
    /// tracked either), when it died since the previous sample: (uid, ns). They exited
    /// after the previous sample's drain, so after its scan: its cutime there did not
    /// have them.
    by_parent: HashMap<u32, Vec<(u32, u64)>>,
    /// The same, by the nearest tracked process above them when it lives on: it reaps
    /// them (or their parent), so its cutime/cstime grows by them now or at the next
    /// sample.
    by_live_ancestor: HashMap<u32, Vec<(u32, u64)>>,
    /// The parent of each process never tracked that exited in this drain or the
    /// previous one (`None`: two, pid reused), and the sample that drained it: a
    /// grandchild's record names its parent, not the tracked ancestor.
    parents: HashMap<u32, (Option<u32>, u64)>,
    /// Processes never tracked charged from their records at this sample or the
    /// previous one: when one shows up as a zombie (exited, not yet reaped), its time is
    /// counted already.
    charged: HashMap<u32, u64>,
    /// Records of processes never tracked whose parent had neither been tracked nor sent
    /// its record yet: a shell's command exits before the shell does, so its record may
    /// come a drain earlier than the shell's. Tried again once at the next sample.
    unresolved: Vec<TaskExit>,
    /// Whether the kernel's records name their process (taskstats v12, `ac_tgid`): then
    /// every process a live reaper reaps has a usable record.
    with_tgid: bool,
    /// Per live reaper, how many processes of each uid it reaped according to the
    /// records of this sample and of the previous one: who the part of its cutime growth
    /// that the records miss belongs to (see [`ProcCpuSampler::split_excess`]).
    reaped: HashMap<u32, BTreeMap<u32, u64>>,
    reaped_before: HashMap<u32, BTreeMap<u32, u64>>,
}

impl ExitRecords {
    fn new(listener: Option<ExitListener>) -> Self {
        ExitRecords {
            listener,
            by_pid: HashMap::new(),
            by_parent: HashMap::new(),
            by_live_ancestor: HashMap::new(),
            parents: HashMap::new(),
            charged: HashMap::new(),
            unresolved: Vec::new(),
            with_tgid: false,
            reaped: HashMap::new(),
            reaped_before: HashMap::new(),
        }
    }

    /// Forgets what the sample before the previous one drained.
    fn age(&mut self, now: u64) {
        let recent = |at: u64| at + 1 >= now;
        self.by_pid.retain(|_, (_, at)| recent(*at));
        self.parents.retain(|_, (_, at)| recent(*at));
        self.charged.retain(|_, at| recent(*at));
        self.by_parent.clear();
        self.by_live_ancestor.clear();
        self.reaped_before = std::mem::take(&mut self.reaped);
    }
}

/// The tracked process above a process never tracked: the one whose cutime/cstime its
/// time reaches.
enum Reaper {
    /// The same process at both samples: its cutime grows by it.
    Live(u32),
    /// Tracked at the previous sample, gone now.
    Dead(u32),
    /// Not known yet: a parent that was never tracked and whose record has not come.
    Unknown,
}

/// A task's CPU time at exit: the scheduler's own run time when delay accounting gives
/// it (exact: what /proc's figures are scaled to), else utime + stime as the ticks
/// sampled them, which under contention favour busy loops (they are running when ticks
/// come, short runs between ticks are not).
fn exit_ns(exit: &TaskExit) -> u64 {
    if exit.sum_exec_ns > 0 {
        return exit.sum_exec_ns;
    }
    exit.utime_us
        .saturating_add(exit.stime_us)
        .saturating_mul(1000)
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
            exits: None,
            samples: 0,
        }
    }

    /// Also takes the tails of exited processes from their exit records (taskstats).
    pub fn with_exit_records(mut self, listener: ExitListener) -> Self {
        self.exits = Some(ExitRecords::new(Some(listener)));
        self
    }

    /// Times the kernel dropped exit records (the taskstats socket overflowed) since
    /// the sampler started; 0 without exit records.
    pub fn exit_record_overflows(&self) -> u64 {
        self.exits
            .as_ref()
            .and_then(|e| e.listener.as_ref())
            .map_or(0, ExitListener::overflows)
    }

    /// Number of processes seen in the last sample.
    pub fn tracked_processes(&self) -> usize {
        self.pids.len()
    }

    pub fn sample(&mut self) -> Result<CpuSample> {
        let at = clock::now();
        let current = self.scan()?;
        // Drained after the scan: a process gone from it has sent its exit record already
        // (the kernel sends it in do_exit, before the parent can reap it).
        let exits = match self.exits.as_mut().and_then(|e| e.listener.as_mut()) {
            Some(listener) => listener.drain(),
            None => Vec::new(),
        };
        Ok(self.account(at, current, exits))
    }

    /// Charges what the processes `current` used since the previous sample.
    fn account(
        &mut self,
        at: Stamp,
        current: HashMap<u32, Tracked>,
        exits: Vec<TaskExit>,
    ) -> CpuSample {
        self.keep_exits(exits, &current);
        for (uid, ns) in self.charge(&current) {
            *self.totals.entry(uid).or_default() += ns;
        }
        self.pids = current;
        self.first = false;
        self.samples += 1;
        CpuSample {
            at,
            per_uid: self.totals.clone(),
        }
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

    /// Sorts this drain's exit records: a tracked process's own record by its pid; a
    /// process never tracked by the tracked process above it (see [`Reaper`]), to its
    /// own uid. Left to the cutime recovery: threads of tracked processes, records whose
    /// tracked ancestor is new since the previous sample (its own figures have them),
    /// whose chain of parents is broken or ambiguous, and, on kernels whose records have
    /// no tgid, the records that may be a thread's (see [`Self::may_be_a_thread`]).
    fn keep_exits(&mut self, records: Vec<TaskExit>, current: &HashMap<u32, Tracked>) {
        let Some(mut exits) = self.exits.take() else {
            return;
        };
        let now = self.samples;
        exits.age(now);
        let tracked = |pid: &u32| self.pids.contains_key(pid) || current.contains_key(pid);
        let untracked: Vec<&TaskExit> = records
            .iter()
            .filter(|e| !tracked(&e.tgid.unwrap_or(e.pid)))
            .collect();
        let retried = std::mem::take(&mut exits.unresolved);
        exits.with_tgid |= records.iter().any(|e| e.tgid.is_some());
        for exit in &untracked {
            let parent = (Some(exit.ppid), now);
            exits
                .parents
                .entry(exit.tgid.unwrap_or(exit.pid))
                .and_modify(|(p, at)| {
                    if *p != Some(exit.ppid) {
                        *p = None;
                    }
                    *at = now;
                })
                .or_insert(parent);
        }
        let threaded_parents = self.threaded_parents(current);
        let fresh = untracked.into_iter().map(|e| (e, true));
        let again = retried
            .iter()
            .filter(|e| !tracked(&e.pid))
            .map(|e| (e, false));
        for (exit, first_try) in fresh.chain(again) {
            if exit.tgid.is_none() && threaded_parents.contains(&exit.ppid) {
                continue;
            }
            let charge = (exit.uid, exit_ns(exit));
            match self.reaper(exit.ppid, current, &exits.parents) {
                // Before taskstats v12 a record of a short-lived thread of a tracked
                // process looks like a sibling of that process: only the dead
                // parent's records are taken there (the rule of `threaded_parents`).
                Some(Reaper::Live(pid)) if exit.tgid.is_some() => {
                    exits.by_live_ancestor.entry(pid).or_default().push(charge)
                }
                Some(Reaper::Dead(pid)) => exits.by_parent.entry(pid).or_default().push(charge),
                Some(Reaper::Unknown) if first_try => {
                    exits.unresolved.push(*exit);
                    continue;
                }
                _ => continue,
            }
            exits.charged.insert(exit.tgid.unwrap_or(exit.pid), now);
        }
        for exit in records.iter().filter(|e| e.tgid.is_none_or(|t| t == e.pid)) {
            if tracked(&exit.pid) {
                exits
                    .by_pid
                    .entry(exit.pid)
                    .and_modify(|(ns, at)| (*ns, *at) = (None, now))
                    .or_insert((Some(exit_ns(exit)), now));
            }
        }
        self.exits = Some(exits);
    }

    /// Parents of a process that had several threads at either sample: before taskstats
    /// v12 a thread's record looks like a child of its process's parent.
    fn threaded_parents(&self, current: &HashMap<u32, Tracked>) -> HashSet<u32> {
        self.pids
            .values()
            .chain(current.values())
            .filter(|t| t.stat.num_threads > 1)
            .map(|t| t.stat.ppid)
            .collect()
    }

    /// The nearest tracked process above `ppid` (itself included), following the parents
    /// of exited processes never tracked. Bounded: a cycle cannot happen in a real tree
    /// but can with reused pids.
    fn reaper(
        &self,
        ppid: u32,
        current: &HashMap<u32, Tracked>,
        parents: &HashMap<u32, (Option<u32>, u64)>,
    ) -> Option<Reaper> {
        let mut pid = ppid;
        for _ in 0..64 {
            match (self.pids.get(&pid), current.get(&pid)) {
                _ if pid == 0 => return None,
                (Some(p), Some(c)) if p.stat.starttime == c.stat.starttime => {
                    return Some(Reaper::Live(pid))
                }
                (Some(_), None) => return Some(Reaper::Dead(pid)),
                // New since the previous sample (or a reused pid): its first figures
                // count whole, its cutime included.
                (_, Some(_)) => return None,
                (None, None) => match parents.get(&pid) {
                    Some((parent, _)) => pid = (*parent)?,
                    None => return Some(Reaper::Unknown),
                },
            }
        }
        None
    }

    /// Whether `pid`, new in this scan, is a zombie whose exit record was charged at the
    /// previous sample (it exited after that scan, unseen, and is not reaped yet).
    fn charged_already(&self, pid: u32, now: &Tracked) -> bool {
        now.stat.zombie
            && self
                .exits
                .as_ref()
                .is_some_and(|e| e.charged.get(&pid).is_some_and(|at| *at < self.samples))
    }

    /// Whether `pid` is the same process now as at the previous sample.
    fn alive(&self, current: &HashMap<u32, Tracked>, pid: &u32) -> bool {
        matches!((self.pids.get(pid), current.get(pid)),
            (Some(p), Some(c)) if p.stat.starttime == c.stat.starttime)
    }

    /// The tails of the processes tracked at the previous sample that have exited since,
    /// from exit records, per dead pid: what to charge to which uid (ns). Its own time
    /// beyond the previous sample when it was single-threaded, and that of the processes
    /// never tracked below it that exited since.
    fn tails(&self, current: &HashMap<u32, Tracked>) -> HashMap<u32, Vec<(u32, u64)>> {
        let Some(exits) = &self.exits else {
            return HashMap::new();
        };
        let mut tails = HashMap::new();
        for (pid, dead) in self
            .pids
            .iter()
            .filter(|(pid, _)| !self.alive(current, pid))
        {
            let mut charges = Vec::new();
            let own = exits.by_pid.get(pid).and_then(|(ns, _)| *ns);
            if let Some(at_exit) = own.filter(|_| dead.stat.num_threads == 1) {
                let counted = dead.stat.own_ticks().saturating_mul(self.ns_per_tick);
                charges.push((dead.uid, at_exit.saturating_sub(counted)));
            }
            charges.extend(exits.by_parent.get(pid).into_iter().flatten());
            if !charges.is_empty() {
                tails.insert(*pid, charges);
            }
        }
        tails
    }

    /// Nanoseconds each uid used since the previous sample.
    fn charge(&mut self, current: &HashMap<u32, Tracked>) -> BTreeMap<u32, u64> {
        let tails = self.tails(current);
        let fresh = self.known_child_ticks(current, &tails);
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
                // sample, which is the baseline, and for a zombie charged from its exit
                // record already).
                None if self.first || self.charged_already(*pid, now) => (0, 0),
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
            if own > 0 {
                *per_uid.entry(now.uid).or_default() += own.saturating_mul(self.ns_per_tick);
            }
            if recovered > 0 {
                let excess = recovered.saturating_mul(self.ns_per_tick);
                let shares = match prev {
                    Some(_) => self.split_excess(*pid, now.uid, excess),
                    None => vec![(now.uid, excess)],
                };
                for (uid, ns) in shares.into_iter().filter(|(_, ns)| *ns > 0) {
                    *per_uid.entry(uid).or_default() += ns;
                }
            }
        }
        let unseen = self.exits.iter().flat_map(|e| e.by_live_ancestor.values());
        for &(uid, ns) in tails.values().flatten().chain(unseen.flatten()) {
            *per_uid.entry(uid).or_default() += ns;
        }
        per_uid
    }

    /// For each live process, the ticks already counted of its descendants that exited
    /// since the previous sample: they come back in its cutime/cstime when it reaps them.
    /// A dead process's time lands with its nearest live ancestor (its parent reaped it,
    /// and its parent's own reaper got that in turn). A tail taken from an exit record is
    /// known too, and so are the records of processes never tracked below a live one.
    fn known_child_ticks(
        &mut self,
        current: &HashMap<u32, Tracked>,
        tails: &HashMap<u32, Vec<(u32, u64)>>,
    ) -> HashMap<u32, u64> {
        let alive = |pid: &u32| self.alive(current, pid);
        let to_ticks = |charges: Option<&Vec<(u32, u64)>>| {
            let ns: u64 = charges.into_iter().flatten().map(|(_, ns)| ns).sum();
            (ns + self.ns_per_tick / 2) / self.ns_per_tick
        };
        let tail_ticks = |pid: &u32| to_ticks(tails.get(pid));
        let mut known: HashMap<u32, u64> = HashMap::new();
        let mut reaped: HashMap<u32, BTreeMap<u32, u64>> = HashMap::new();
        let mut count = |reaper: u32, charges: Option<&Vec<(u32, u64)>>| {
            for (uid, _) in charges.into_iter().flatten() {
                *reaped.entry(reaper).or_default().entry(*uid).or_default() += 1;
            }
        };
        for (pid, charges) in self.exits.iter().flat_map(|e| &e.by_live_ancestor) {
            *known.entry(*pid).or_default() += to_ticks(Some(charges));
            count(*pid, Some(charges));
        }
        for (pid, dead) in self.pids.iter().filter(|(pid, _)| !alive(pid)) {
            let mut ancestor = dead.stat.ppid;
            // Bounded: a cycle cannot happen in a real tree but can in a fixture.
            for _ in 0..64 {
                if ancestor == *pid || ancestor == 0 {
                    break;
                }
                if alive(&ancestor) {
                    *known.entry(ancestor).or_default() +=
                        dead.stat.own_ticks() + dead.stat.child_ticks() + tail_ticks(pid);
                    count(ancestor, tails.get(pid));
                    break;
                }
                match self.pids.get(&ancestor) {
                    Some(parent) => ancestor = parent.stat.ppid,
                    None => break,
                }
            }
        }
        if let Some(exits) = &mut self.exits {
            exits.reaped = reaped;
        }
        known
    }

    /// Who gets `excess` ns of `reaper`'s cutime/cstime growth beyond what was known: the
    /// part the exit records miss. A record is sent before the process tears down its
    /// address space and files (do_exit calls taskstats_exit before exit_mm), and without
    /// delay accounting it holds tick-sampled times, so a short process's record falls
    /// well short of what its reaper's cutime gets. Where records name their process
    /// (v12) every reaped process has one: the excess is shared among the uids the
    /// reaper reaped this sample and the previous one, an equal part per process. Else,
    /// or with no such records, it is the reaper's (as without records).
    fn split_excess(&self, reaper: u32, reaper_uid: u32, excess: u64) -> Vec<(u32, u64)> {
        let reaped = self
            .exits
            .as_ref()
            .filter(|e| e.with_tgid)
            .map(|e| {
                let mut all = e.reaped.get(&reaper).cloned().unwrap_or_default();
                for (uid, n) in e.reaped_before.get(&reaper).into_iter().flatten() {
                    *all.entry(*uid).or_default() += n;
                }
                all
            })
            .unwrap_or_default();
        let processes: u64 = reaped.values().sum();
        if processes == 0 {
            return vec![(reaper_uid, excess)];
        }
        let mut shares: Vec<(u32, u64)> = reaped
            .iter()
            .map(|(uid, n)| {
                (
                    *uid,
                    (excess as u128 * *n as u128 / processes as u128) as u64,
                )
            })
            .collect();
        let given: u64 = shares.iter().map(|(_, ns)| ns).sum();
        shares.push((reaper_uid, excess - given));
        shares
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
        /// Rewrites `pid`'s state and thread count.
        fn set_state(&self, pid: u32, state: char, threads: u64) {
            let stat = self.dir.path().join(format!("{pid}/stat"));
            let text = fs::read_to_string(&stat).unwrap();
            let text = text
                .replace(") S ", &format!(") {state} "))
                .replace(" 20 0 1 0 ", &format!(" 20 0 {threads} 0 "));
            fs::write(&stat, text).unwrap();
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

    /// A sampler with exit records handed in by the test, its first sample taken.
    fn with_records(f: &FakeProc) -> ProcCpuSampler {
        let mut sampler = ProcCpuSampler::new(f.paths(), ChildTimes::Recover);
        sampler.exits = Some(ExitRecords::new(None));
        sampler.sample().unwrap();
        sampler
    }

    /// A tree of root's 100 alone and a sampler with records handed in, its first
    /// sample taken.
    fn under_a_root_reaper() -> (FakeProc, ProcCpuSampler) {
        let f = FakeProc::new();
        f.set(100, 1, 0, [0, 0, 0, 0]);
        let sampler = with_records(&f);
        (f, sampler)
    }

    fn sample_with_exits(s: &mut ProcCpuSampler, exits: Vec<TaskExit>) -> CpuSample {
        let current = s.scan().unwrap();
        s.account(clock::now(), current, exits)
    }

    /// The exit record of `pid` after `ticks` of CPU time.
    fn exit(pid: u32, ticks: u64) -> TaskExit {
        child_exit(pid, 100, ticks)
    }

    /// The exit record of `pid`, a child of `ppid`, after `ticks` of CPU time (a kernel
    /// with taskstats v12: the record names its process).
    fn child_exit(pid: u32, ppid: u32, ticks: u64) -> TaskExit {
        TaskExit {
            pid,
            tgid: Some(pid),
            ppid,
            uid: 1000,
            utime_us: ticks * ns_per_tick() / 1000,
            stime_us: 0,
            run_real_ns: 0,
            sum_exec_ns: 0,
        }
    }

    #[test]
    fn a_tail_comes_from_the_exit_record_to_the_process_own_uid() {
        let f = FakeProc::new();
        f.set(100, 1, 0, [0, 0, 0, 0]);
        f.set(101, 100, 1000, [50, 0, 0, 0]);
        let mut with = with_records(&f);
        let mut without = f.sampler(ChildTimes::Recover);
        // uid 1000's 101 runs 40 ticks after the sample and exits; root's 100 reaps it.
        f.kill(101);
        f.set(100, 1, 0, [0, 0, 90, 0]);
        // A record whose parent was never tracked (nor is in the records) is not used.
        let a = sample_with_exits(&mut with, vec![exit(101, 90), child_exit(777, 50, 5)]);
        assert_eq!(ticks(&a, 1000), 40, "the tail, to the process's uid");
        assert_eq!(ticks(&a, 0), 0, "not again through the reaper's cutime");
        let b = without.sample().unwrap();
        assert_eq!(
            (ticks(&b, 1000), ticks(&b, 0)),
            (0, 40),
            "before: the reaper's"
        );
    }

    #[test]
    fn a_dead_shell_children_since_the_last_sample_go_to_their_own_uid() {
        let f = FakeProc::new();
        f.set(100, 1, 0, [0, 0, 0, 0]);
        f.set(101, 100, 1000, [10, 0, 40, 0]);
        let mut s = with_records(&f);
        // The shell 101 runs 2 ticks and two commands (5 and 7 ticks, never seen) after the
        // sample, reaps them and exits; root's 100 reaps it (cutime 10+2+40+12). Another
        // tracked parent's unseen child is not the dead shell's.
        f.kill(101);
        f.set(100, 1, 0, [0, 0, 64, 0]);
        let records = vec![
            child_exit(201, 101, 5),
            child_exit(202, 101, 7),
            exit(101, 12),
            uid_exit(2000, 203, 100, 3),
        ];
        let a = sample_with_exits(&mut s, records);
        assert_eq!((ticks(&a, 1000), ticks(&a, 0)), (14, 0));
        // Root's unseen child 203 of uid 2000 too: its own uid; root's cutime shows it at
        // the next sample (reaped after the scan), the known amount is carried to it.
        assert_eq!(ticks(&a, 2000), 3);
        f.set(100, 1, 0, [0, 0, 67, 0]);
        let b = sample_with_exits(&mut s, vec![]);
        assert_eq!((ticks(&b, 1000), ticks(&b, 2000), ticks(&b, 0)), (14, 3, 0));
    }

    /// The record of `pid`, a child of `ppid` run by `uid`, after `ticks` of CPU time.
    fn uid_exit(uid: u32, pid: u32, ppid: u32, ticks: u64) -> TaskExit {
        TaskExit {
            uid,
            ..child_exit(pid, ppid, ticks)
        }
    }

    /// The record of `pid`, a thread of process `tgid` (a kernel with taskstats v12).
    fn thread_exit(pid: u32, tgid: u32, ppid: u32, ticks: u64) -> TaskExit {
        TaskExit {
            tgid: Some(tgid),
            ..child_exit(pid, ppid, ticks)
        }
    }

    /// The record of `pid` on a kernel before taskstats v12 (no tgid).
    fn old_exit(pid: u32, ppid: u32, ticks: u64) -> TaskExit {
        TaskExit {
            tgid: None,
            ..child_exit(pid, ppid, ticks)
        }
    }

    #[test]
    fn unseen_children_of_a_live_root_reaper_go_to_their_own_uid() {
        let (f, mut s) = under_a_root_reaper();
        // Root's 100 forks and reaps uid 1000's 201 (5 ticks) and 202 (7), and a root
        // child 203 (4) between two samples; 204 (9) exits after the scan, so root's
        // cutime shows it only at the next sample.
        f.set(100, 1, 0, [1, 0, 16, 0]);
        let records = vec![
            child_exit(201, 100, 5),
            child_exit(202, 100, 7),
            uid_exit(0, 203, 100, 4),
            child_exit(204, 100, 9),
        ];
        let a = sample_with_exits(&mut s, records);
        assert_eq!((ticks(&a, 1000), ticks(&a, 0)), (21, 1 + 4));
        f.set(100, 1, 0, [1, 0, 25, 0]);
        let b = sample_with_exits(&mut s, vec![]);
        assert_eq!((ticks(&b, 1000), ticks(&b, 0)), (21, 5), "204 not twice");
        // Later growth is root's again.
        f.set(100, 1, 0, [1, 0, 27, 0]);
        let c = sample_with_exits(&mut s, vec![]);
        assert_eq!((ticks(&c, 1000), ticks(&c, 0)), (21, 7));
    }

    #[test]
    fn a_grandchild_through_an_unseen_shell_goes_to_its_own_uid() {
        let (f, mut s) = under_a_root_reaper();
        // Root's 100 runs uid 1000's shell 301 (2 ticks), which runs 302 (5), which runs
        // 303 (1); all never seen. 304, the shell's command of uid 2000, exits in this
        // drain but the shell 305 (3) exits only in the next: the record of 304 waits
        // for its parent's. Root's cutime: 8 now, 3 + 6 at the next sample.
        f.set(100, 1, 0, [0, 0, 8, 0]);
        let records = vec![
            child_exit(303, 302, 1),
            child_exit(302, 301, 5),
            child_exit(301, 100, 2),
            uid_exit(2000, 304, 305, 6),
        ];
        let a = sample_with_exits(&mut s, records);
        assert_eq!((ticks(&a, 1000), ticks(&a, 2000), ticks(&a, 0)), (8, 0, 0));
        f.set(100, 1, 0, [0, 0, 17, 0]);
        let b = sample_with_exits(&mut s, vec![child_exit(305, 100, 3)]);
        assert_eq!((ticks(&b, 1000), ticks(&b, 2000), ticks(&b, 0)), (11, 6, 0));
    }

    #[test]
    fn what_records_miss_is_shared_by_the_uids_reaped() {
        let f = FakeProc::new();
        f.set(100, 1, 0, [0, 0, 0, 0]);
        f.set(101, 100, 1000, [10, 0, 0, 0]);
        let mut s = with_records(&f);
        // Root's 100 reaps three unseen processes of uid 1000 and one of uid 2000 whose
        // records say 1 tick each, and uid 1000's tracked 101, which ran 2 more ticks and
        // two children (1 tick each by their records) and exited: 3 + 1 + 2 records of
        // uid 1000 (101's own and its children's), 1 of uid 2000. Root's cutime grows by
        // 27: 10 counted of 101, 4 + 2 + 2 by the records, 9 they missed (the exits).
        f.kill(101);
        f.set(100, 1, 0, [0, 0, 27, 0]);
        let mut records: Vec<TaskExit> = (201..204).map(|p| child_exit(p, 100, 1)).collect();
        records.push(uid_exit(2000, 204, 100, 1));
        records.extend([child_exit(301, 101, 1), child_exit(302, 101, 1)]);
        records.push(exit(101, 12));
        let a = sample_with_exits(&mut s, records.clone());
        // 9 ticks over 7 processes: 6/7 to uid 1000's six, 1/7 to uid 2000's one (the
        // nanosecond lost to rounding is root's).
        let ns = |uid| a.per_uid.get(&uid).copied().unwrap_or(0);
        let tick = ns_per_tick();
        assert_eq!(ns(1000), (3 + 2 + 2) * tick + 9 * tick * 6 / 7);
        assert_eq!(ns(2000), tick + 9 * tick / 7);
        assert_eq!(ns(0), 9 * tick - 9 * tick * 6 / 7 - 9 * tick / 7);
        // Before taskstats v12 the excess stays with the reaper (a record may be a
        // thread's, and unseen children of a live reaper have none in use).
        let g = FakeProc::new();
        g.set(100, 1, 0, [0, 0, 0, 0]);
        g.set(101, 100, 1000, [10, 0, 0, 0]);
        let mut old = with_records(&g);
        g.kill(101);
        g.set(100, 1, 0, [0, 0, 27, 0]);
        let records = records.into_iter().map(|e| TaskExit { tgid: None, ..e });
        let b = sample_with_exits(&mut old, records.collect());
        assert_eq!((ticks(&b, 1000), ticks(&b, 2000), ticks(&b, 0)), (4, 0, 13));
    }

    #[test]
    fn a_parent_that_never_waits_does_not_swallow_later_growth() {
        let (f, mut s) = under_a_root_reaper();
        // 100 ignores SIGCHLD: its children are reaped at once, its cutime never grows.
        let a = sample_with_exits(&mut s, vec![child_exit(201, 100, 5)]);
        assert_eq!((ticks(&a, 1000), ticks(&a, 0)), (5, 0));
        let b = sample_with_exits(&mut s, vec![]);
        assert_eq!((ticks(&b, 1000), ticks(&b, 0)), (5, 0));
        // Growth two samples later (a child it waited for, without a usable record) is
        // the reaper's: the known 5 ticks were kept one sample only.
        f.set(100, 1, 0, [0, 0, 4, 0]);
        let c = sample_with_exits(&mut s, vec![]);
        assert_eq!((ticks(&c, 1000), ticks(&c, 0)), (5, 4));
    }

    #[test]
    fn thread_records_with_a_tgid() {
        let f = FakeProc::new();
        f.set(100, 1, 0, [0, 0, 0, 0]);
        f.set(101, 100, 1000, [0, 0, 0, 0]);
        f.set_state(101, 'S', 2);
        let mut s = with_records(&f);
        // A thread 150 of the tracked 101 exits (7 ticks, in 101's utime); an unseen
        // two-threaded 201 of uid 1001 runs 3 + 4 ticks, reaped by root's 100.
        f.set(101, 100, 1000, [7, 0, 0, 0]);
        f.set_state(101, 'S', 2);
        f.set(100, 1, 0, [0, 0, 7, 0]);
        let of_1001 = |e: TaskExit| TaskExit { uid: 1001, ..e };
        let records = vec![
            thread_exit(150, 101, 100, 7),
            of_1001(thread_exit(202, 201, 100, 4)),
            of_1001(thread_exit(201, 201, 100, 3)),
        ];
        let a = sample_with_exits(&mut s, records);
        assert_eq!((ticks(&a, 1000), ticks(&a, 1001), ticks(&a, 0)), (7, 7, 0));
    }

    #[test]
    fn thread_records_without_a_tgid_are_left_to_the_cutime() {
        let f = FakeProc::new();
        f.set(100, 1, 0, [0, 0, 0, 0]);
        f.set(101, 100, 1000, [0, 0, 0, 0]);
        f.set_state(101, 'S', 2);
        let mut s = with_records(&f);
        // As above on a kernel before v12: 150 (a thread of 101) and 201 (an unseen
        // child of 100) look alike; neither is charged from its record.
        f.set(101, 100, 1000, [7, 0, 0, 0]);
        f.set_state(101, 'S', 2);
        f.set(100, 1, 0, [0, 0, 3, 0]);
        let records = vec![old_exit(150, 100, 7), old_exit(201, 100, 3)];
        let a = sample_with_exits(&mut s, records);
        assert_eq!((ticks(&a, 1000), ticks(&a, 0)), (7, 3));
        // Nor below a live single-threaded parent (a short thread may have come and gone
        // between two samples); below a dead one, as before (the shell test).
        f.set(101, 100, 1000, [7, 0, 2, 0]);
        let b = sample_with_exits(&mut s, vec![old_exit(301, 101, 2)]);
        assert_eq!((ticks(&b, 1000), ticks(&b, 0)), (9, 3));
    }

    #[test]
    fn reused_pids_in_records() {
        let (f, mut s) = under_a_root_reaper();
        // pid 300 exits twice: as root's 100's child (2 ticks) and as a child of an
        // untracked process (never resolved); 310 (uid 3000), a child of "300", is
        // ambiguous: not charged from its record; its 4 ticks in root's cutime are the
        // excess over the records, shared by the uids root reaped (300's).
        f.set(100, 1, 0, [0, 0, 6, 0]);
        let records = vec![
            uid_exit(3000, 310, 300, 4),
            child_exit(300, 100, 2),
            child_exit(300, 50, 8),
        ];
        let a = sample_with_exits(&mut s, records);
        assert_eq!((ticks(&a, 1000), ticks(&a, 3000), ticks(&a, 0)), (6, 0, 0));
        // 400 is charged from its record (5), then shows up as a zombie: not again; 401
        // is charged (3) and its pid is reused by a live process (6): that one counts.
        let b = sample_with_exits(
            &mut s,
            vec![child_exit(400, 100, 5), child_exit(401, 100, 3)],
        );
        assert_eq!((ticks(&b, 1000), ticks(&b, 0)), (14, 0));
        f.set(400, 100, 1000, [5, 0, 0, 0]);
        f.set_state(400, 'Z', 1);
        f.set(401, 100, 1000, [6, 0, 0, 0]);
        f.set(100, 1, 0, [0, 0, 9, 0]);
        let c = sample_with_exits(&mut s, vec![]);
        assert_eq!((ticks(&c, 1000), ticks(&c, 0)), (20, 0));
        // The zombie reaped: root's cutime grows by its 5, already counted.
        f.kill(400);
        f.set(100, 1, 0, [0, 0, 14, 0]);
        let d = sample_with_exits(&mut s, vec![]);
        assert_eq!((ticks(&d, 1000), ticks(&d, 0)), (20, 0));
    }

    #[test]
    fn a_zombie_record_is_used_when_the_process_leaves_proc() {
        let f = FakeProc::new();
        f.set(100, 1, 0, [0, 0, 0, 0]);
        f.set(101, 100, 1000, [50, 0, 0, 0]);
        let mut s = with_records(&f);
        // Seen as a zombie with its final 60 ticks; its record comes at the same scan.
        f.set(101, 100, 1000, [60, 0, 0, 0]);
        assert_eq!(
            ticks(&sample_with_exits(&mut s, vec![exit(101, 60)]), 1000),
            10
        );
        // Reaped: nothing more for either uid.
        f.kill(101);
        f.set(100, 1, 0, [0, 0, 60, 0]);
        let a = sample_with_exits(&mut s, vec![]);
        assert_eq!((ticks(&a, 1000), ticks(&a, 0)), (10, 0));
    }

    #[test]
    fn multi_threaded_or_ambiguous_records_are_not_used() {
        let f = FakeProc::new();
        f.set(100, 1, 0, [0, 0, 0, 0]);
        f.set(101, 100, 1000, [50, 0, 0, 0]);
        f.set(102, 100, 1000, [50, 0, 0, 0]);
        let mut s = with_records(&f);
        // 102 had two threads: its record is its last thread's alone.
        let stat = f.dir.path().join("102/stat");
        let text = fs::read_to_string(&stat)
            .unwrap()
            .replace(" 20 0 1 0 ", " 20 0 2 0 ");
        fs::write(&stat, text).unwrap();
        sample_with_exits(&mut s, vec![]);
        f.kill(101);
        f.kill(102);
        f.set(100, 1, 0, [0, 0, 150, 0]);
        // pid 101 exited twice (reused) in the window: which record is whose is unknown.
        let a = sample_with_exits(&mut s, vec![exit(101, 70), exit(101, 3), exit(102, 5)]);
        assert_eq!(
            (ticks(&a, 1000), ticks(&a, 0)),
            (0, 50),
            "tails to the reaper"
        );
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
