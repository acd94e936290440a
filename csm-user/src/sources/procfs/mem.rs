//! Memory per process: uid, RSS and swap from `status`, PSS from `smaps_rollup`.
//!
//! Cost: `status` and `stat` are two small reads per process per sample. `smaps_rollup`
//! walks the process's page tables in the kernel under its mmap lock: with many processes
//! it cost 25 times everything else the daemon did together. So it is skipped where the PSS
//! cannot have moved. A process's PSS moves when its own pages change (which takes a page
//! fault or moves its RSS or swap) or when a page it shares gains or loses a sharer, which
//! another process's pages changing, or a process starting or exiting, does. So when no
//! process started or exited and no process's RSS (anon/file/shmem parts), swap or fault
//! counts moved since the last sample, every PSS is the one walked before; otherwise every
//! process is walked. One exception keeps the daemon's own steady churn from forcing walks:
//! csm never forks, so its anonymous pages are its own and their changes move only its own
//! PSS (it alone is walked again). Every [`FULL_PSS_WALK_EVERY`]th sample walks all
//! regardless, for changes no counter shows (KSM merging pages, where enabled).

use std::collections::HashMap;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use anyhow::{Context, Result};

use super::pid::{parse_stat, parse_status, PidStatus};
use super::smaps::parse_smaps_rollup;
use super::{read_process_file, read_text, WarnOnce};
use crate::model::mem::ProcessMem;
use crate::sources::host::HostPaths;

/// Every this many samples, every process's PSS is walked even when no counter moved.
pub const FULL_PSS_WALK_EVERY: u64 = 30;

pub struct ProcMemSampler {
    paths: HostPaths,
    /// Whether this kernel has smaps_rollup (4.14+); found out once, at the first process
    /// that has a status with memory.
    has_rollup: Option<bool>,
    warnings: WarnOnce,
    /// Each process's counters at the last sample and its PSS at its last walk.
    last: HashMap<u32, Walked>,
    samples: u64,
    /// smaps_rollup reads in the last sample (for tests and the benchmark).
    pub last_walks: usize,
}

/// A process's PSS and the counters that, unchanged, say it is still the PSS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Walked {
    fingerprint: Fingerprint,
    pss: Option<u64>,
}

/// Start time (a reused pid is another process), RSS and its parts, swap, page faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fingerprint {
    starttime: u64,
    rss: u64,
    /// `RssAnon`, `RssFile`, `RssShmem`.
    rss_parts: [Option<u64>; 3],
    swap: Option<u64>,
    faults: (u64, u64),
}

impl Fingerprint {
    /// Whether a change from `before` to `self` can move the PSS of *other* processes:
    /// always, but for csm's own process when only its anonymous pages changed.
    fn moves_others(&self, before: &Fingerprint, own_process: bool) -> bool {
        if !own_process {
            return self != before;
        }
        self.starttime != before.starttime || self.rss_parts[1..] != before.rss_parts[1..]
    }
}

/// One process's `status` and `stat`, before its PSS is known.
struct Seen {
    pid: u32,
    uid: u32,
    rss: u64,
    swap: Option<u64>,
    /// `None` when `stat` is unreadable or garbled: then the PSS is walked every time.
    fingerprint: Option<Fingerprint>,
}

impl ProcMemSampler {
    pub fn new(paths: HostPaths) -> Self {
        ProcMemSampler {
            paths,
            has_rollup: None,
            warnings: WarnOnce::default(),
            last: HashMap::new(),
            samples: 0,
            last_walks: 0,
        }
    }

    /// Every user-space process now (kernel threads and zombies have no memory).
    pub fn sample(&mut self) -> Result<Vec<ProcessMem>> {
        let seen = self.read_counters()?;
        let walk_all =
            self.samples.is_multiple_of(FULL_PSS_WALK_EVERY) || self.sharing_moved(&seen);
        self.samples += 1;
        self.last_walks = 0;
        let previous = std::mem::take(&mut self.last);
        let mut out = Vec::with_capacity(seen.len());
        for process in seen {
            let reusable = previous
                .get(&process.pid)
                .filter(|last| !walk_all && process.fingerprint == Some(last.fingerprint));
            let pss = match reusable {
                Some(last) => last.pss,
                None => {
                    self.last_walks += 1;
                    self.pss(&self.paths.proc_root.join(process.pid.to_string()))
                }
            };
            if let Some(fingerprint) = process.fingerprint {
                self.last.insert(process.pid, Walked { fingerprint, pss });
            }
            out.push(ProcessMem {
                pid: process.pid,
                uid: process.uid,
                rss: process.rss,
                pss,
                swap: process.swap,
            });
        }
        Ok(out)
    }

    /// Whether a process started or exited, or changed in a way that can move the PSS of
    /// others, since the last sample.
    fn sharing_moved(&self, seen: &[Seen]) -> bool {
        let own_pid = std::process::id();
        seen.len() != self.last.len()
            || seen.iter().any(
                |process| match (process.fingerprint, self.last.get(&process.pid)) {
                    (Some(now), Some(last)) => {
                        now.moves_others(&last.fingerprint, process.pid == own_pid)
                    }
                    _ => true,
                },
            )
    }

    fn read_counters(&mut self) -> Result<Vec<Seen>> {
        let root = self.paths.proc_root.clone();
        let entries =
            fs::read_dir(&root).with_context(|| format!("cannot list {}", root.display()))?;
        let mut seen = Vec::with_capacity(self.last.len());
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(process) = self.counters(pid, &entry.path()) {
                seen.push(process);
            }
        }
        Ok(seen)
    }

    fn counters(&mut self, pid: u32, dir: &Path) -> Option<Seen> {
        let path = dir.join("status");
        let text = read_process_file(&path, &mut self.warnings)?;
        let (status, warnings) = parse_status(&text);
        self.warnings.lines(&path, &warnings);
        let (uid, rss) = (status.ruid?, status.rss_bytes?);
        Some(Seen {
            pid,
            uid,
            rss,
            swap: status.swap_bytes,
            fingerprint: self.fingerprint(dir, &status),
        })
    }

    fn fingerprint(&mut self, dir: &Path, status: &PidStatus) -> Option<Fingerprint> {
        let path = dir.join("stat");
        let stat = parse_stat(&read_process_file(&path, &mut self.warnings)?).ok()?;
        Some(Fingerprint {
            starttime: stat.starttime,
            rss: status.rss_bytes?,
            rss_parts: status.rss_parts,
            swap: status.swap_bytes,
            faults: (stat.minflt, stat.majflt),
        })
    }

    fn pss(&mut self, dir: &Path) -> Option<u64> {
        if self.has_rollup == Some(false) {
            return None;
        }
        let path = dir.join("smaps_rollup");
        match read_text(&path) {
            Ok(text) => {
                self.has_rollup = Some(true);
                let (rollup, warnings) = parse_smaps_rollup(&text);
                self.warnings.lines(&path, &warnings);
                rollup.pss_bytes
            }
            Err(err) if err.kind() == ErrorKind::NotFound => {
                // Absent for the first process looked at: the kernel has none. Later, a
                // process that exited meanwhile.
                self.has_rollup.get_or_insert(false);
                None
            }
            Err(err) if err.kind() == ErrorKind::PermissionDenied => {
                // Once, not per process: reading another process's smaps needs
                // CAP_SYS_PTRACE over it.
                self.warnings.keyed(
                    "smaps_rollup EACCES".into(),
                    format!(
                        "some smaps_rollup files are unreadable ({}: {err}): pss is null for \
                     their users",
                        path.display()
                    ),
                );
                None
            }
            Err(err) => {
                self.warnings.warn(format!("{}: {err}", path.display()));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use super::*;

    /// Children killed on drop.
    struct Children(Vec<Child>);

    impl Drop for Children {
        fn drop(&mut self) {
            for child in &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    fn by_pid(sample: &[ProcessMem], pid: u32) -> ProcessMem {
        *sample.iter().find(|p| p.pid == pid).expect("child sampled")
    }

    /// The last pid the kernel handed out and the number of processes: unchanged, no
    /// process started or exited meanwhile.
    fn process_churn_mark() -> (String, usize) {
        let loadavg = fs::read_to_string("/proc/loadavg").unwrap();
        let last_pid = loadavg.split_whitespace().nth(4).unwrap().to_string();
        let count = fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .count();
        (last_pid, count)
    }

    /// Samples with the PSS cache against a sampler that walks every smaps_rollup, on
    /// children of this test: idle ones (their PSS is reused) and one that grows between
    /// samples (walked again). RSS, PSS and swap must be equal process by process and in
    /// sum. A process starting or exiting elsewhere on the machine between the walk and the
    /// comparison moves shared pages' PSS (the documented limit): then the round is redone.
    #[test]
    fn cached_pss_equals_a_full_walk() {
        let mut children = Children(Vec::new());
        for _ in 0..3 {
            children
                .0
                .push(Command::new("sleep").arg("60").spawn().unwrap());
        }
        // Holds a 4 MB string in memory once it reads a line.
        let grower = Command::new("sh")
            .args([
                "-c",
                "read x; a=$(head -c 4000000 /dev/zero | tr '\\0' x); sleep 60",
            ])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        children.0.push(grower);
        let pids: Vec<u32> = children.0.iter().map(|c| c.id()).collect();
        std::thread::sleep(Duration::from_millis(300));

        let mut sampler = ProcMemSampler::new(HostPaths::default());
        let first = sampler.sample().unwrap();
        assert_eq!(
            sampler.last_walks,
            first.len(),
            "the first sample walks every process"
        );
        let grower_rss = by_pid(&first, pids[3]).rss;
        let stdin = children.0[3].stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").unwrap();
        let start = Instant::now();
        while status_rss(pids[3]) < grower_rss + 3_000_000 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the shell did not grow"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));

        let mut rounds = 0;
        loop {
            rounds += 1;
            let mark = process_churn_mark();
            let cached = sampler.sample().unwrap();
            let full = ProcMemSampler::new(HostPaths::default()).sample().unwrap();
            if process_churn_mark() != mark && rounds < 20 {
                continue;
            }
            let ours =
                |sample: &[ProcessMem]| pids.iter().map(|&p| by_pid(sample, p)).collect::<Vec<_>>();
            let (ours_cached, ours_full) = (ours(&cached), ours(&full));
            assert_eq!(ours_cached, ours_full, "round {rounds}");
            assert!(ours_full.iter().all(|p| p.pss.is_some()), "{ours_full:?}");
            let sum = |v: &[ProcessMem]| {
                v.iter()
                    .map(|p| (p.rss, p.pss, p.swap))
                    .fold((0, 0, 0), |a, b| {
                        (a.0 + b.0, a.1 + b.1.unwrap(), a.2 + b.2.unwrap_or(0))
                    })
            };
            assert_eq!(sum(&ours_cached), sum(&ours_full));
            assert!(ours_full[3].rss > grower_rss + 3_000_000);
            break;
        }
    }

    fn status_rss(pid: u32) -> u64 {
        let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        parse_status(&text).0.rss_bytes.unwrap_or(0)
    }

    /// A /proc tree with `status`, `stat` and `smaps_rollup` per process.
    struct FakeProc(tempfile::TempDir);

    impl FakeProc {
        fn new() -> FakeProc {
            FakeProc(tempfile::tempdir().unwrap())
        }

        /// RSS parts and PSS in kB, minflt, start time.
        fn process(&self, pid: u32, (anon, file): (u64, u64), faults: u64, start: u64, pss: u64) {
            let dir = self.0.path().join(pid.to_string());
            fs::create_dir_all(&dir).unwrap();
            let status = format!(
                "Name:\tx\nUid:\t1000\t1000\t1000\t1000\nVmRSS:\t{} kB\nRssAnon:\t{anon} kB\n\
                 RssFile:\t{file} kB\nRssShmem:\t0 kB\nVmSwap:\t0 kB\n",
                anon + file
            );
            fs::write(dir.join("status"), status).unwrap();
            let stat =
                format!("{pid} (x) S 1 1 1 0 -1 0 {faults} 0 0 0 1 1 0 0 20 0 1 0 {start} 1000 10");
            fs::write(dir.join("stat"), stat).unwrap();
            let rollup = format!(
                "0-1 ---p 0 00:00 0 [rollup]\nRss: {} kB\nPss: {pss} kB\n",
                anon + file
            );
            fs::write(dir.join("smaps_rollup"), rollup).unwrap();
        }

        fn sampler(&self) -> ProcMemSampler {
            ProcMemSampler::new(HostPaths {
                proc_root: self.0.path().to_path_buf(),
                ..HostPaths::default()
            })
        }
    }

    fn pss_of(sample: &[ProcessMem], pid: u32) -> Option<u64> {
        by_pid(sample, pid).pss
    }

    #[test]
    fn pss_is_reused_only_while_no_process_changed() {
        let proc = FakeProc::new();
        let own = std::process::id();
        for pid in [10, 11, own] {
            proc.process(pid, (100, 50), 7, 5, 80);
        }
        let mut sampler = proc.sampler();
        assert_eq!(sampler.sample().unwrap().len(), 3);
        assert_eq!(sampler.last_walks, 3);
        // Nothing moved: nothing walked, the PSS walked before is reported.
        proc.process(10, (100, 50), 7, 5, 99);
        let sample = sampler.sample().unwrap();
        assert_eq!(
            (sampler.last_walks, pss_of(&sample, 10)),
            (0, Some(80 * 1024))
        );
        // A fault in another process (same RSS): every process walked.
        proc.process(11, (100, 50), 8, 5, 80);
        let sample = sampler.sample().unwrap();
        assert_eq!(
            (sampler.last_walks, pss_of(&sample, 10)),
            (3, Some(99 * 1024))
        );
        // The daemon's own anonymous pages: only itself walked.
        proc.process(own, (140, 50), 9, 5, 120);
        let sample = sampler.sample().unwrap();
        assert_eq!(
            (sampler.last_walks, pss_of(&sample, own)),
            (1, Some(120 * 1024))
        );
        // ... but its file pages may be shared: every process walked.
        proc.process(own, (140, 60), 10, 5, 125);
        sampler.sample().unwrap();
        assert_eq!(sampler.last_walks, 3);
        // A process starts, then exits: every process walked.
        proc.process(12, (10, 10), 1, 5, 15);
        assert_eq!(sampler.sample().unwrap().len(), 4);
        assert_eq!(sampler.last_walks, 4);
        fs::remove_dir_all(proc.0.path().join("12")).unwrap();
        sampler.sample().unwrap();
        assert_eq!(sampler.last_walks, 3);
        // A reused pid with the same counters is another process (its start time).
        proc.process(10, (100, 50), 7, 6, 99);
        sampler.sample().unwrap();
        assert_eq!(sampler.last_walks, 3);
        sampler.sample().unwrap();
        assert_eq!(sampler.last_walks, 0);
    }

    #[test]
    fn a_new_sampler_walks_every_process_and_every_full_walk_round_again() {
        let mut sampler = ProcMemSampler::new(HostPaths::default());
        for i in 0..=FULL_PSS_WALK_EVERY {
            let sample = sampler.sample().unwrap();
            if i % FULL_PSS_WALK_EVERY == 0 {
                assert_eq!(sampler.last_walks, sample.len(), "sample {i}");
            }
        }
    }
}
