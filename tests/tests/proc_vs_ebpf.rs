//! As root on this machine: the /proc backend against eBPF on the same workload of a
//! test user (created with useradd, removed afterwards).
//!
//! - steady: one busy loop; `--backend proc` and `--backend ebpf` run side by side and
//!   agree within 3 % over the intervals both cover;
//! - short-lived: a shell that runs many short child processes; prints how much of eBPF's
//!   CPU time /proc sees without and with the recovery through the parent's
//!   cutime/cstime (the blind spot), and asserts that the recovery closes most of it.
//!
//! Skipped (with a message) when not root.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use csm::sources::host::HostPaths;
use csm::sources::procfs::acct::parse_acct_v3;
use csm::sources::procfs::cpu::{ChildTimes, ProcCpuSampler};
use csm::sources::taskstats::ExitListener;
use csm::store::{CpuRow, MemRow};
use csm_tests::{Daemon, DataDir, OnDrop, TestUser};

/// Runs `script` with sh as `user`, in a process group of its own (killed on drop).
fn spawn_as(user: &TestUser, script: &str) -> Killed {
    let child = Command::new("/bin/sh")
        .args(["-c", script])
        .uid(user.uid)
        .gid(user.gid)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn workload");
    Killed(child)
}

/// A workload's process group, killed (by its own id) and reaped on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // SAFETY: kill(2) of the process group this test created (pgid = its pid).
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// BSD process accounting into a file, switched off again on drop.
struct Accounting;

impl Accounting {
    fn start(file: &Path) -> Accounting {
        std::fs::write(file, b"").unwrap();
        let path = std::ffi::CString::new(file.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: acct(2) with a valid NUL-terminated path.
        let rc = unsafe { libc::syscall(libc::SYS_acct, path.as_ptr()) };
        assert_eq!(rc, 0, "acct(2): {}", std::io::Error::last_os_error());
        Accounting
    }
}

impl Drop for Accounting {
    fn drop(&mut self) {
        // SAFETY: acct(NULL) switches accounting off.
        unsafe { libc::syscall(libc::SYS_acct, std::ptr::null::<libc::c_char>()) };
    }
}

/// `csm run` for `secs` seconds with 1 s intervals into `data`.
fn daemon(backend: &str, data: &DataDir, secs: u64) -> Daemon {
    Daemon::builder()
        .backend(backend)
        .args(["--interval", "1s", "--duration", &format!("{secs}s")])
        .data_dir(data)
        .on_drop(OnDrop::Kill)
        .spawn()
}

/// cpu_ns of one uid per interval, keyed by the whole second the interval ends on (ticks
/// are aligned to seconds; `ts` is when the sample was taken, a few ms later).
fn cpu_by_ts(data: &DataDir, uid: u32) -> BTreeMap<i64, i64> {
    data.rows::<CpuRow>()
        .iter()
        .filter(|r| r.uid == uid as i64)
        .map(|r| ((r.ts_us + 500_000) / 1_000_000, r.cpu_ns))
        .collect()
}

fn sleep_to_next_second() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    std::thread::sleep(Duration::from_nanos(
        1_000_000_000 - now.subsec_nanos() as u64,
    ));
}

#[test]
fn proc_and_ebpf_agree_on_a_steady_workload() {
    csm_tests::require_root();
    let user = TestUser::create("ps");
    let _burn = spawn_as(&user, "while :; do :; done");
    let (ebpf_dir, proc_dir) = (DataDir::new(), DataDir::new());
    let ebpf = daemon("ebpf", &ebpf_dir, 9);
    let proc = daemon("proc", &proc_dir, 9);
    // Both end by themselves, successfully.
    ebpf.wait();
    proc.wait();

    let (e, p) = (
        cpu_by_ts(&ebpf_dir, user.uid),
        cpu_by_ts(&proc_dir, user.uid),
    );
    // Whole intervals both cover: drop each side's first and last row.
    let inner = |m: &BTreeMap<i64, i64>| -> Vec<i64> {
        let keys: Vec<i64> = m.keys().copied().collect();
        keys[1..keys.len().saturating_sub(1)].to_vec()
    };
    let common: Vec<i64> = inner(&e)
        .into_iter()
        .filter(|ts| inner(&p).contains(ts))
        .collect();
    assert!(common.len() >= 5, "too few common intervals: {e:?} {p:?}");
    let sum = |m: &BTreeMap<i64, i64>| common.iter().map(|ts| m[ts]).sum::<i64>() as f64;
    let (se, sp) = (sum(&e), sum(&p));
    let diff = (sp - se).abs() / se;
    eprintln!(
        "steady: {} intervals, ebpf {:.3} s, proc {:.3} s, difference {:.2} %",
        common.len(),
        se / 1e9,
        sp / 1e9,
        diff * 100.0
    );
    assert!(diff < 0.03, "proc {sp} vs ebpf {se}: {:.2} %", diff * 100.0);
    // The mem table is written with either backend.
    for dir in [&ebpf_dir, &proc_dir] {
        let mem = dir.rows::<MemRow>();
        let mine: Vec<_> = mem.iter().filter(|r| r.uid == user.uid as i64).collect();
        assert!(
            !mine.is_empty(),
            "no mem rows for the test user in {}",
            dir.path().display()
        );
        assert!(mine.iter().all(|r| r.nproc == 1 && r.rss_bytes > 0));
    }
}

/// Shares of eBPF's CPU time for one workload, in percent.
struct Shares {
    ebpf_s: f64,
    stat_only: f64,
    with_cutime: f64,
    with_acct: f64,
    acct_records: usize,
    /// The exited tasks' own time from taskstats alone.
    taskstats: f64,
    /// The same from the exact run time, with delay accounting on.
    taskstats_run_real: f64,
    exits: usize,
}

/// `kernel.task_delayacct` set for the test, restored on drop.
struct DelayAcct(Option<String>);

impl DelayAcct {
    const PATH: &'static str = "/proc/sys/kernel/task_delayacct";
    fn on() -> DelayAcct {
        let old = std::fs::read_to_string(Self::PATH).ok();
        let _ = std::fs::write(Self::PATH, "1");
        DelayAcct(old)
    }
}

impl Drop for DelayAcct {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = std::fs::write(Self::PATH, old.trim());
        }
    }
}

/// Runs `script` as `user` for `secs` seconds under eBPF, both /proc variants and
/// process accounting, over the same whole seconds.
fn measure(user: &TestUser, script: &str, secs: u64) -> Shares {
    // Delay accounting applies to tasks created after it is switched on.
    let _delayacct = DelayAcct::on();
    let _work = spawn_as(user, script);
    let ebpf_dir = DataDir::new();
    let ebpf = daemon("ebpf", &ebpf_dir, secs);
    let mut without = ProcCpuSampler::new(HostPaths::default(), ChildTimes::Ignore);
    let mut with = ProcCpuSampler::new(HostPaths::default(), ChildTimes::Recover);
    let take = |s: &mut ProcCpuSampler| -> u64 {
        let sample = s.sample().unwrap();
        sample.per_uid.get(&user.uid).copied().unwrap_or(0)
    };
    sleep_to_next_second();
    sleep_to_next_second();
    let first_ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    let mut listener = ExitListener::open(cpus.trim()).expect("taskstats");
    let mut exits = Vec::new();
    let acct_file = ebpf_dir.beside("pacct");
    let accounting = Accounting::start(&acct_file);
    let (w0, r0) = (take(&mut without), take(&mut with));
    listener.drain();
    let samples = secs - 4;
    for _ in 0..samples {
        sleep_to_next_second();
        take(&mut without);
        take(&mut with);
        exits.extend(listener.drain());
    }
    let (w1, r1) = (take(&mut without), take(&mut with));
    drop(accounting);
    exits.extend(listener.drain());
    let mine_exits: Vec<_> = exits.iter().filter(|x| x.uid == user.uid).collect();
    let exited_us: u64 = mine_exits.iter().map(|x| x.utime_us + x.stime_us).sum();
    let exited_run_ns: u64 = mine_exits.iter().map(|x| x.run_real_ns).sum();
    let last_ts = first_ts + samples as i64;
    ebpf.wait();
    let records = parse_acct_v3(&std::fs::read(&acct_file).unwrap());
    let mine: Vec<_> = records.iter().filter(|r| r.uid == user.uid).collect();
    let exited: u64 = mine.iter().map(|r| r.cpu_ns).sum();
    let e: i64 = cpu_by_ts(&ebpf_dir, user.uid)
        .range((first_ts + 1)..=last_ts)
        .map(|(_, v)| v)
        .sum();
    assert!(e > 0, "eBPF saw no CPU for the workload");
    let share = |v: u64| v as f64 / e as f64 * 100.0;
    Shares {
        ebpf_s: e as f64 / 1e9,
        stat_only: share(w1 - w0),
        with_cutime: share(r1 - r0),
        with_acct: share(w1 - w0 + exited),
        acct_records: mine.len(),
        taskstats: share(exited_us * 1000),
        taskstats_run_real: share(exited_run_ns),
        exits: mine_exits.len(),
    }
}

#[test]
fn short_lived_processes_blind_spot_and_recovery() {
    csm_tests::require_root();
    let user = TestUser::create("pq");
    // A shell that runs short children one after another and waits for each.
    for (label, loops) in [("~5 ms children", 3_000), ("~50 ms children", 30_000)] {
        let script =
            format!("while :; do sh -c 'i=0; while [ $i -lt {loops} ]; do i=$((i+1)); done'; done");
        let s = measure(&user, &script, 12);
        eprintln!(
            "short-lived ({label}): eBPF {:.3} s; /proc stat only {:.1} %; \
             + parent's cutime/cstime {:.1} %; stat + process accounting {:.1} % \
             ({} records); taskstats exits alone: utime+stime {:.1} %, run time {:.1} % \
             ({} exits)",
            s.ebpf_s,
            s.stat_only,
            s.with_cutime,
            s.with_acct,
            s.acct_records,
            s.taskstats,
            s.taskstats_run_real,
            s.exits
        );
        assert!(s.with_cutime > s.stat_only, "recovery recovered nothing");
        assert!(
            (90.0..=105.0).contains(&s.with_cutime),
            "recovered share {:.1} %",
            s.with_cutime
        );
    }
}

/// The /proc backend's exit records come through a socket the kernel drops records from
/// when it is full: such an interval must be counted (the `exit_records_lost` event is
/// written from this count), and draining must go on. A 4 KiB buffer (the kernel's
/// minimum is about that) overflows with a few hundred exits between two samples; the
/// daemon's 8 MiB one does not.
#[test]
fn a_full_exit_record_socket_is_counted_and_drained() {
    csm_tests::require_root();
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    let small = ExitListener::open_with_buffer(cpus.trim(), 4096).expect("taskstats");
    let large = ExitListener::open(cpus.trim()).expect("taskstats");
    let mut sampler =
        ProcCpuSampler::new(HostPaths::default(), ChildTimes::Ignore).with_exit_records(small);
    let mut control =
        ProcCpuSampler::new(HostPaths::default(), ChildTimes::Ignore).with_exit_records(large);
    sampler.sample().expect("first sample");
    control.sample().expect("first sample");
    let exits = 500;
    for _ in 0..exits {
        let status = Command::new("/bin/true").status().expect("run /bin/true");
        assert!(status.success());
    }
    sampler.sample().expect("a sample after the overflow");
    control.sample().expect("a sample after the same exits");
    let (dropped, control_dropped) = (
        sampler.exit_record_overflows(),
        control.exit_record_overflows(),
    );
    eprintln!("{exits} exits: 4 KiB socket overflowed {dropped} time(s), 8 MiB {control_dropped}");
    assert!(dropped > 0, "{exits} exits did not overflow a 4 KiB socket");
    assert_eq!(control_dropped, 0, "the daemon's 8 MiB socket overflowed");
    // Draining went on: the emptied socket takes the next exit without a new overflow.
    Command::new("/bin/true").status().expect("run /bin/true");
    sampler.sample().expect("a later sample");
    assert_eq!(
        sampler.exit_record_overflows(),
        dropped,
        "one exit overflowed the drained socket"
    );
}
