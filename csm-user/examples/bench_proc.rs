//! Cost of one /proc sample (CPU sampler: stat of every process, status when new; memory
//! sampler: status + smaps_rollup of every process, and status alone: the samples between
//! two PSS walks of `mem.pss_interval`) at 100, 1,000 and 10,000 processes.
//!
//! Fake trees are generated in a temp dir (file reads without the kernel's text
//! formatting, so a lower bound for the parsing side); the live /proc is measured as it is
//! and with extra sleeping processes spawned (`--spawn 1000` adds 1,000, killed at exit).
//!
//! `cargo run --release -p csm-user --example bench_proc [-- --runs 7 --spawn 1000]`

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use csm::sources::host::HostPaths;
use csm::sources::procfs::cpu::{ChildTimes, ProcCpuSampler};
use csm::sources::procfs::mem::ProcMemSampler;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let runs = flag("--runs", 7);
    let spawn = flag("--spawn", 0);
    println!("median of {runs} samples (after one warm-up sample)");
    println!(
        "{:<28} {:>8} {:>12} {:>14} {:>12} {:>14}",
        "tree", "procs", "cpu/sample", "cpu/process", "mem/sample", "mem w/o PSS"
    );
    for n in [100, 1_000, 10_000] {
        let dir = tempfile::tempdir().expect("temp dir");
        fake_tree(dir.path(), n);
        let paths = HostPaths {
            proc_root: dir.path().to_path_buf(),
            sys_root: dir.path().join("sys"),
        };
        report("fake tree (temp dir)", &paths, runs);
    }
    report("live /proc", &HostPaths::default(), runs);
    if spawn > 0 {
        let children = Sleepers::spawn(spawn);
        let label = format!("live /proc + {} sleepers", children.0.len());
        report(&label, &HostPaths::default(), runs);
    }
}

fn report(label: &str, paths: &HostPaths, runs: usize) {
    let mut cpu = ProcCpuSampler::new(paths.clone(), ChildTimes::Recover);
    let mut mem = ProcMemSampler::new(paths.clone());
    cpu.sample().expect("cpu sample");
    let cpu_t = median(runs, || {
        cpu.sample().expect("cpu sample");
    });
    let n = cpu.tracked_processes();
    mem.sample().expect("mem sample");
    let mem_t = median(runs, || {
        mem.sample().expect("mem sample");
    });
    let skip_none = std::collections::HashSet::new();
    let status_t = median(runs, || {
        mem.status_except(&skip_none).expect("mem sample");
    });
    println!(
        "{label:<28} {n:>8} {:>12} {:>14} {:>12} {:>14}",
        fmt(cpu_t),
        fmt(cpu_t / n.max(1) as u32),
        fmt(mem_t),
        fmt(status_t)
    );
}

fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn fmt(d: Duration) -> String {
    if d >= Duration::from_millis(1) {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    }
}

const STATUS_TAIL: &str = "FDSize:\t64\nGroups:\t\nVmPeak:\t  12000 kB\nVmSize:\t  11000 kB\n\
    VmLck:\t       0 kB\nVmPin:\t       0 kB\nVmHWM:\t    5000 kB\nVmRSS:\t    4000 kB\n\
    RssAnon:\t    1000 kB\nRssFile:\t    3000 kB\nRssShmem:\t       0 kB\nVmData:\t    1200 kB\n\
    VmStk:\t     132 kB\nVmExe:\t     900 kB\nVmLib:\t    2000 kB\nVmPTE:\t      60 kB\n\
    VmSwap:\t       0 kB\nHugetlbPages:\t       0 kB\nThreads:\t1\nSigQ:\t0/95000\n\
    SigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\nSigBlk:\t0000000000010000\n\
    SigIgn:\t0000000000380004\nSigCgt:\t000000004b817efb\nCapInh:\t0000000000000000\n\
    CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\n\
    CapAmb:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t0\nCpus_allowed:\t3\n\
    Cpus_allowed_list:\t0-1\nvoluntary_ctxt_switches:\t10\nnonvoluntary_ctxt_switches:\t1\n";

const ROLLUP: &str = "55d0a0e2e000-7ffc2b1f9000 ---p 00000000 00:00 0      [rollup]\n\
    Rss:                4000 kB\nPss:                1500 kB\nPss_Anon:            900 kB\n\
    Pss_File:            600 kB\nPss_Shmem:             0 kB\nShared_Clean:       2500 kB\n\
    Shared_Dirty:          0 kB\nPrivate_Clean:       500 kB\nPrivate_Dirty:      1000 kB\n\
    Referenced:         4000 kB\nAnonymous:          1000 kB\nLazyFree:              0 kB\n\
    AnonHugePages:         0 kB\nShmemPmdMapped:        0 kB\nFilePmdMapped:         0 kB\n\
    Shared_Hugetlb:        0 kB\nPrivate_Hugetlb:       0 kB\nSwap:                  0 kB\n\
    SwapPss:               0 kB\nLocked:                0 kB\n";

/// `n` processes with realistic stat, status and smaps_rollup files, 50 uids.
fn fake_tree(root: &Path, n: u32) {
    for pid in 1..=n {
        let dir = root.join(pid.to_string());
        fs::create_dir_all(&dir).expect("mkdir");
        let uid = 1000 + pid % 50;
        let stat = format!(
            "{pid} (worker {pid}) S 1 {pid} {pid} 0 -1 4194560 2870 7412 0 3 {} {} 11 6 20 0 1 0 \
             {} 9732096 1263 18446744073709551615 1 1 0 0 0 0 65536 3686404 1266761467 0 0 0 17 1 \
             0 0 0 0 0\n",
            pid * 3,
            pid,
            pid * 10
        );
        fs::write(dir.join("stat"), stat).expect("stat");
        let status = format!(
            "Name:\tworker\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{pid}\nNgid:\t0\n\
             Pid:\t{pid}\nPPid:\t1\nTracerPid:\t0\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n\
             Gid:\t{uid}\t{uid}\t{uid}\t{uid}\n{STATUS_TAIL}"
        );
        fs::write(dir.join("status"), status).expect("status");
        fs::write(dir.join("smaps_rollup"), ROLLUP).expect("smaps_rollup");
    }
}

/// Sleeping processes, killed and reaped on drop.
struct Sleepers(Vec<Child>);

impl Sleepers {
    fn spawn(n: usize) -> Self {
        let children = (0..n)
            .filter_map(|_| {
                Command::new("sleep")
                    .arg("600")
                    .stdin(Stdio::null())
                    .spawn()
                    .ok()
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        Sleepers(children)
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}
