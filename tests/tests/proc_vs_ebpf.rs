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
use csm::sources::procfs::{ChildTimes, ProcCpuSampler};
use csm_tests::{csm_binary, read_table};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A system user that exists for the test only.
struct TestUser {
    name: String,
    uid: u32,
}

impl TestUser {
    fn create(name: &str) -> TestUser {
        let _ = Command::new("userdel").arg(name).output();
        let status = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/bin/sh", name])
            .status()
            .expect("run useradd");
        assert!(status.success(), "useradd {name} failed");
        let out = Command::new("id").args(["-u", name]).output().unwrap();
        let uid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        TestUser {
            name: name.to_string(),
            uid,
        }
    }

    /// Runs `script` with sh as this user.
    fn spawn(&self, script: &str) -> Killed {
        let child = Command::new("/bin/sh")
            .args(["-c", script])
            .uid(self.uid)
            .gid(self.uid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn workload");
        Killed(child)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
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

/// `csm run` for `secs` seconds with 1 s intervals into `data`.
fn daemon(backend: &str, data: &Path, secs: u64) -> Killed {
    let child = Command::new(csm_binary())
        .args(["run", "--backend", backend, "--interval", "1s"])
        .arg("--duration")
        .arg(format!("{secs}s"))
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start csm");
    Killed(child)
}

fn wait_ok(mut d: Killed, what: &str) {
    let status = d.0.wait().unwrap();
    assert!(status.success(), "csm --backend {what}: {status:?}");
}

/// cpu_ns of one uid per interval, keyed by the whole second the interval ends on (ticks
/// are aligned to seconds; `ts` is when the sample was taken, a few ms later).
fn cpu_by_ts(data: &Path, uid: u32) -> BTreeMap<i64, i64> {
    read_table(data, "cpu")
        .iter()
        .filter(|r| r["uid"].int() == uid as i64)
        .map(|r| ((r["ts"].int() + 500_000) / 1_000_000, r["cpu_ns"].int()))
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
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let user = TestUser::create("csmt_proc_steady");
    let _burn = user.spawn("while :; do :; done");
    let tmp = tempfile::tempdir().unwrap();
    let (ebpf_dir, proc_dir) = (tmp.path().join("ebpf"), tmp.path().join("proc"));
    let ebpf = daemon("ebpf", &ebpf_dir, 9);
    let proc = daemon("proc", &proc_dir, 9);
    wait_ok(ebpf, "ebpf");
    wait_ok(proc, "proc");

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
}

#[test]
fn short_lived_processes_blind_spot_and_recovery() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let user = TestUser::create("csmt_proc_short");
    // Each child runs for a few ms to a few tens of ms; the parent shell waits for it.
    let _work =
        user.spawn("while :; do sh -c 'i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done'; done");
    let tmp = tempfile::tempdir().unwrap();
    let ebpf_dir = tmp.path().join("ebpf");
    let secs = 12;
    let ebpf = daemon("ebpf", &ebpf_dir, secs);
    // Both /proc variants in this process, sampling on the same 1 s boundaries.
    let mut without = ProcCpuSampler::new(HostPaths::default(), ChildTimes::Ignore);
    let mut with = ProcCpuSampler::new(HostPaths::default(), ChildTimes::Recover);
    sleep_to_next_second();
    sleep_to_next_second();
    let first_ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let w0 = without
        .sample()
        .unwrap()
        .per_uid
        .get(&user.uid)
        .copied()
        .unwrap_or(0);
    let r0 = with
        .sample()
        .unwrap()
        .per_uid
        .get(&user.uid)
        .copied()
        .unwrap_or(0);
    let samples = secs - 4;
    for _ in 0..samples {
        sleep_to_next_second();
        without.sample().unwrap();
        with.sample().unwrap();
    }
    let last_ts = first_ts + samples as i64;
    let w1 = without
        .sample()
        .unwrap()
        .per_uid
        .get(&user.uid)
        .copied()
        .unwrap_or(0);
    let r1 = with
        .sample()
        .unwrap()
        .per_uid
        .get(&user.uid)
        .copied()
        .unwrap_or(0);
    wait_ok(ebpf, "ebpf");

    let e: i64 = cpu_by_ts(&ebpf_dir, user.uid)
        .range((first_ts + 1)..=last_ts)
        .map(|(_, v)| v)
        .sum();
    assert!(e > 0, "eBPF saw no CPU for the workload");
    let share = |v: u64| v as f64 / e as f64 * 100.0;
    let (sw, sr) = (share(w1 - w0), share(r1 - r0));
    eprintln!(
        "short-lived: {samples} s, ebpf {:.3} s; /proc stat only {:.1} %; \
         + children's cutime/cstime {:.1} %",
        e as f64 / 1e9,
        sw,
        sr
    );
    assert!(
        sr > sw,
        "recovery recovered nothing: {sw:.1} % -> {sr:.1} %"
    );
    assert!((90.0..=105.0).contains(&sr), "recovered share {sr:.1} %");
}
