//! Reads per-uid CPU time from the scheduler program's maps.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aya::maps::{Array, MapData, PerCpuArray, PerCpuHashMap};
use csm_common::{names, Running, UID_BY_PID};

use super::loader::Loaded;
use super::nudge::Nudger;
use crate::model::CpuSample;
use crate::sources::clock::{self, clock_ns};
use crate::sources::host::HostPaths;

/// Turns the maps into cumulative samples that only grow.
pub struct CpuReader {
    totals: PerCpuHashMap<MapData, u32, u64>,
    running: PerCpuArray<MapData, Running>,
    /// When the first sample was taken (see `first_slice` in csm-ebpf's sched.rs); set
    /// once, kept across restarts that adopt the pins.
    baseline: Array<MapData, u64>,
    baseline_set: bool,
    /// The baseline's value once set (CLOCK_MONOTONIC ns).
    baseline_ns: u64,
    paths: HostPaths,
    /// Last value reported per uid: the running slice is estimated from wall time, so a
    /// later exact charge can come out slightly lower; reported totals never go down.
    reported: BTreeMap<u32, u64>,
    /// When each uid's charged total last moved, to find uids that are gone.
    last_change: HashMap<u32, (u64, Instant)>,
    last_prune: Instant,
    /// Closes the running slices right before each read (see nudge.rs).
    nudger: Nudger,
    /// `csm top`: the maps are a running daemon's, opened read only; never written.
    read_only: bool,
}

/// A uid whose total has not moved for this long, and that no process has any more, is
/// removed from the kernel map so that the map stays bounded on hosts with many users.
const IDLE_BEFORE_PRUNE: Duration = Duration::from_secs(600);
const PRUNE_EVERY: Duration = Duration::from_secs(300);

/// Reads of the totals, the last of which stands even if a CPU switched meanwhile (then
/// one slice may move to the next interval, as it did before this check); a read takes
/// microseconds, so a window without a switch is found on all but the busiest CPUs.
const READ_ATTEMPTS: u32 = 8;

/// True when no CPU switched tasks between two reads of the running entries: every
/// switch stamps a new switch-in time. The whole entries are compared, so that a read
/// torn by a switch on that CPU (some fields new, some old) differs too.
fn no_switch_between(before: &[Running], after: &[Running]) -> bool {
    before == after
}

/// The CPUs whose running slice began after a known time: the busy ones the nudger
/// made switch, and the idle ones, all as of `at_ns` (CLOCK_MONOTONIC).
struct Closed {
    at_ns: u64,
    cpus: BTreeSet<usize>,
}

impl Closed {
    /// When the slice running on `cpu` began at the latest, if known.
    fn began_by(&self, cpu: usize) -> Option<u64> {
        self.cpus.contains(&cpu).then_some(self.at_ns)
    }
}

/// Adds what each CPU charged to a uid and has not moved into the map yet.
fn add_pending(per_uid: &mut BTreeMap<u32, u64>, per_cpu: &[Running]) {
    for running in per_cpu.iter().filter(|r| r.pending_ns > 0) {
        *per_uid.entry(running.pending_uid).or_default() += running.pending_ns;
    }
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
        let baseline = loaded
            .take_map(names::CPU_BASELINE)
            .with_context(|| format!("map {} missing from the eBPF object", names::CPU_BASELINE))?;
        Ok(CpuReader {
            baseline: Array::try_from(baseline)
                .with_context(|| format!("map {} has an unexpected type", names::CPU_BASELINE))?,
            baseline_set: false,
            baseline_ns: 0,
            totals: PerCpuHashMap::try_from(totals)
                .with_context(|| format!("map {} has an unexpected type", names::CPU_NS))?,
            running: PerCpuArray::try_from(running)
                .with_context(|| format!("map {} has an unexpected type", names::CPU_RUNNING))?,
            paths,
            reported: BTreeMap::new(),
            last_change: HashMap::new(),
            last_prune: Instant::now(),
            nudger: Nudger::default(),
            read_only: false,
        })
    }

    /// A reader of a running daemon's maps (`csm top`) that never writes them: no
    /// baseline is set (the daemon sets it) and no entry is pruned. It still makes the
    /// busy CPUs switch before its reads, which changes no figure: a charge only lands
    /// earlier, exactly as the daemon's own reads make it land.
    pub fn never_writing(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Cumulative CPU ns per uid now: what was charged at switch-outs, plus the slices
    /// still running on each CPU.
    pub fn sample(&mut self) -> Result<CpuSample> {
        // Before the reads, not between them: the /proc walk would widen their window.
        if !self.read_only && self.last_prune.elapsed() >= PRUNE_EVERY {
            self.last_prune = Instant::now();
            self.prune_gone_uids();
        }
        self.set_baseline()?;
        let closed = self.close_running_slices()?;
        let (mut per_uid, running) = self.consistent_read()?;
        self.note_changes(&per_uid);
        let now = clock_ns(libc::CLOCK_MONOTONIC);
        for (uid, ns) in self.running_slices(&running, &closed, now) {
            *per_uid.entry(uid).or_default() += ns;
        }
        for (uid, total) in per_uid.iter_mut() {
            let reported = self.reported.entry(*uid).or_default();
            *reported = (*reported).max(*total);
            *total = *reported;
        }
        Ok(CpuSample {
            at: clock::now(),
            per_uid,
        })
    }

    /// Marks the first sample's time for the scheduler program, once: a slice already
    /// running then is charged only from here on (a restart that adopted the pins keeps
    /// the first run's mark).
    fn set_baseline(&mut self) -> Result<()> {
        if self.baseline_set {
            return Ok(());
        }
        let read = || format!("read map {}", names::CPU_BASELINE);
        self.baseline_ns = self.baseline.get(&0, 0).with_context(read)?;
        if self.read_only {
            // `csm top`: the daemon sets it; read again until it has.
            self.baseline_set = self.baseline_ns != 0;
            return Ok(());
        }
        if self.baseline_ns == 0 {
            self.baseline_ns = clock_ns(libc::CLOCK_MONOTONIC);
            self.baseline
                .set(0, self.baseline_ns, 0)
                .with_context(|| format!("write map {}", names::CPU_BASELINE))?;
        }
        self.baseline_set = true;
        Ok(())
    }

    /// Makes every CPU that runs a task switch once, so that the scheduler program charges
    /// the running slices exactly now; the open slices left for [`Self::running_slices`]
    /// are then microseconds long, and a tick-stale schedstat no longer moves CPU time
    /// between intervals.
    fn close_running_slices(&mut self) -> Result<Closed> {
        let at_ns = clock_ns(libc::CLOCK_MONOTONIC);
        let running = self.running_now()?;
        let (busy, idle): (Vec<usize>, Vec<usize>) =
            (0..running.len()).partition(|&cpu| running[cpu].busy());
        let mut cpus = self.nudger.nudge(busy);
        cpus.extend(idle);
        Ok(Closed { at_ns, cpus })
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

    /// The charged totals (the map's, plus each CPU's pending sum) and what each CPU
    /// runs, as of one moment. The two maps are
    /// read one after the other, and a task switched out between the reads would be in
    /// neither (its slice charged after the totals were read, its running entry already
    /// the next task's): that interval would come out short and the next one long, by a
    /// whole slice. So the totals are read between two reads of the running entries,
    /// again until no CPU switched in between (the switch-in time stamps say so), at most
    /// [`READ_ATTEMPTS`] times; a switch after the second read is harmless (the open
    /// slice is measured to the task's own run time, and the charge lands next time).
    fn consistent_read(&self) -> Result<(BTreeMap<u32, u64>, Vec<Running>)> {
        let mut before = self.running_now()?;
        let mut attempt = 1;
        loop {
            let mut charged = self.charged()?;
            let after = self.running_now()?;
            if no_switch_between(&before, &after) || attempt == READ_ATTEMPTS {
                add_pending(&mut charged, &after);
                return Ok((charged, after));
            }
            before = after;
            attempt += 1;
        }
    }

    fn running_now(&self) -> Result<Vec<Running>> {
        let per_cpu = self
            .running
            .get(&0, 0)
            .with_context(|| format!("read map {}", names::CPU_RUNNING))?;
        Ok(per_cpu.iter().copied().collect())
    }

    /// The slices running at `now` (CLOCK_MONOTONIC), each for the uid the task has now.
    fn running_slices(&self, per_cpu: &[Running], closed: &Closed, now: u64) -> Vec<(u32, u64)> {
        per_cpu
            .iter()
            .enumerate()
            .filter(|(_, running)| running.busy())
            .filter_map(|(cpu, running)| {
                let uid = self.uid_now(running)?;
                Some((uid, self.open_slice_ns(running, closed.began_by(cpu), now)))
            })
            .collect()
    }

    /// The uid a running task has now. A task can change uid while it runs (setpriv, su,
    /// sudo, a login: setresuid, then exec): the switch-out charges the whole slice to the
    /// uid it has then, so the open slice must go to that uid too, or it is counted twice
    /// (once for the old uid here, whose reported total never goes back, once at the
    /// switch-out). The uid recorded at switch-in stands when the task is gone.
    fn uid_now(&self, running: &Running) -> Option<u32> {
        let from_proc = (running.pid != 0)
            .then(|| self.uid_of_pid(running.pid))
            .flatten();
        match running.uid {
            UID_BY_PID => from_proc,
            recorded => Some(from_proc.unwrap_or(recorded)),
        }
    }

    /// How long the task on a CPU has run since its switch-in. The wall time since then
    /// also holds interrupt and steal time, which the kernel does not charge to the task:
    /// on a busy VM that overestimate would swallow the next interval's charge. The
    /// scheduler's own figure for the running task (`/proc/<tid>/schedstat`, up to date
    /// to the last tick) minus its value at switch-in is exact. It is bounded by the wall
    /// time since the slice began at the latest (`began_by`: the nudge before this read,
    /// else the first sample), in case the thread id means another task here (another
    /// pid namespace).
    fn open_slice_ns(&self, running: &Running, began_by: Option<u64>, now: u64) -> u64 {
        if running.task == 0 {
            // Classic tracepoint: only the wall time since the switch-in is known.
            return now.saturating_sub(running.since_ns);
        }
        let bound = now.saturating_sub(began_by.unwrap_or(self.baseline_ns));
        match self.run_time_ns(running.pid) {
            Some(ran) if ran >= running.start_runtime_ns => {
                bound.min(ran - running.start_runtime_ns)
            }
            _ => 0,
        }
    }

    /// `se.sum_exec_runtime` of a thread, the first field of its schedstat file.
    fn run_time_ns(&self, tid: u32) -> Option<u64> {
        let text =
            crate::sources::procfs::read_text(&self.paths.proc(format!("{tid}/schedstat"))).ok()?;
        first_number(&text)
    }

    /// Real uid of a thread now, from `/proc/<pid>/status`.
    fn uid_of_pid(&self, pid: u32) -> Option<u32> {
        real_uid(
            &crate::sources::procfs::read_text(&self.paths.proc(format!("{pid}/status"))).ok()?,
        )
    }

    fn note_changes(&mut self, charged: &BTreeMap<u32, u64>) {
        let now = Instant::now();
        for (&uid, &total) in charged {
            let entry = self.last_change.entry(uid).or_insert((total, now));
            if entry.0 != total {
                *entry = (total, now);
            }
        }
    }

    /// Deletes the entries of uids that are idle and have no process left. Only those:
    /// an increment landing between our read and the delete would be lost.
    fn prune_gone_uids(&mut self) {
        let now = Instant::now();
        let idle: Vec<u32> = self
            .last_change
            .iter()
            .filter(|(_, (_, changed))| now.duration_since(*changed) >= IDLE_BEFORE_PRUNE)
            .map(|(&uid, _)| uid)
            .collect();
        if idle.is_empty() {
            return;
        }
        let gone = uids_without_processes(&idle, &live_uids(&self.paths));
        for uid in gone {
            let _ = self.totals.remove(&uid);
            self.reported.remove(&uid);
            self.last_change.remove(&uid);
        }
    }
}

/// Real uids of every process, from `/proc/<pid>/status`.
fn live_uids(paths: &HostPaths) -> BTreeSet<u32> {
    let Ok(entries) = fs::read_dir(&paths.proc_root) else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| crate::sources::procfs::read_text(&e.path().join("status")).ok())
        .filter_map(|status| real_uid(&status))
        .collect()
}

/// The real uid from the text of a `/proc/<pid>/status` file.
pub fn real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The first whitespace-separated number of a /proc file's text.
fn first_number(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// The idle uids that no live process has.
pub fn uids_without_processes(idle: &[u32], live: &BTreeSet<u32>) -> Vec<u32> {
    idle.iter()
        .copied()
        .filter(|uid| !live.contains(uid))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_between_the_reads_is_seen() {
        let cpu = |task, since_ns| Running {
            task,
            since_ns,
            ..Running::default()
        };
        let before = [cpu(1, 100), cpu(2, 200)];
        assert!(no_switch_between(&before, &before));
        assert!(!no_switch_between(&before, &[cpu(1, 100), cpu(3, 250)]));
        // The same task switched out and back in: a new switch-in time.
        assert!(!no_switch_between(&before, &[cpu(1, 150), cpu(2, 200)]));
        assert!(!no_switch_between(&before, &[cpu(1, 100)]));
        // A read torn by a switch: the charge landed, the rest is still old.
        let torn = Running {
            pending_ns: 5,
            ..cpu(2, 200)
        };
        assert!(!no_switch_between(&before, &[cpu(1, 100), torn]));
    }

    #[test]
    fn pending_charges_add_to_the_maps() {
        let pending = |pending_uid, pending_ns| Running {
            pending_uid,
            pending_ns,
            ..Running::default()
        };
        let mut per_uid: BTreeMap<u32, u64> = [(0, 10), (1000, 20)].into_iter().collect();
        add_pending(
            &mut per_uid,
            &[pending(1000, 5), pending(1001, 7), pending(0, 0)],
        );
        assert_eq!(
            per_uid,
            [(0, 10), (1000, 25), (1001, 7)].into_iter().collect()
        );
    }

    #[test]
    fn real_uid_is_the_first_uid_field() {
        let status = "Name:\tsh\nUid:\t1000\t0\t0\t0\nGid:\t100\t100\t100\t100\n";
        assert_eq!(real_uid(status), Some(1000));
        assert_eq!(real_uid("Name:\tsh\n"), None);
        assert_eq!(real_uid("Uid:\tx\n"), None);
    }

    #[test]
    fn only_idle_uids_without_processes_are_pruned() {
        let live: BTreeSet<u32> = [0, 1000].into_iter().collect();
        assert_eq!(
            uids_without_processes(&[0, 1000, 1001, 1002], &live),
            vec![1001, 1002]
        );
    }

    #[test]
    fn schedstat_run_time_is_its_first_field() {
        assert_eq!(first_number("4213056789 1234 56\n"), Some(4_213_056_789));
        assert_eq!(first_number(""), None);
        assert_eq!(first_number("x 1 2"), None);
    }

    #[test]
    fn live_uids_come_from_proc() {
        let uids = live_uids(&HostPaths::default());
        assert!(uids.contains(&0), "root runs something: {uids:?}");
    }
}
