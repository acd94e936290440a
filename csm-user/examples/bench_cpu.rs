//! Benchmark of the CPU accounting (`cargo xtask bench cpu`, as root):
//! - the sched_switch handler's kernel run time per event (BPF_ENABLE_STATS);
//! - the end-to-end cost per context switch: a pipe ping-pong between two threads pinned
//!   to one CPU, with and without the programs attached, alternated, medians;
//! - the daemon's own CPU (from /proc/<pid>/task/*/schedstat, ns) and RSS at 1 s interval.
//!
//! Medians and ratios from one run: the machines are shared and noisy.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use csm::sources::ebpf::load_and_attach;
use csm::sources::host::HostPaths;
use csm_common::names;

const ROUNDS: usize = 7;
const ROUND_TRIPS: usize = 100_000;

fn main() -> Result<()> {
    let daemon_secs: u64 = std::env::var("CSM_BENCH_DAEMON_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    handler_cost()?;
    daemon_cost(Duration::from_secs(daemon_secs))?;
    Ok(())
}

fn handler_cost() -> Result<()> {
    // Keeps run-time statistics on while the fd lives.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("enable BPF stats")?;
    let mut per_run = Vec::new();
    let mut with = Vec::new();
    let mut without = Vec::new();
    for _ in 0..ROUNDS {
        without.push(ping_pong_us_per_switch()?);
        let loaded = load_and_attach(&HostPaths::default())?;
        let program = loaded
            .program(names::PROG_SCHED_SWITCH_BTF)
            .context("tp_btf program missing")?;
        let before = program.info()?;
        with.push(ping_pong_us_per_switch()?);
        let after = program.info()?;
        let runs = after.run_count() - before.run_count();
        let ns = (after.run_time() - before.run_time()).as_nanos() as f64;
        per_run.push(ns / runs as f64);
    }
    let (run, w, wo) = (
        median(&mut per_run),
        median(&mut with),
        median(&mut without),
    );
    println!(
        "sched_switch handler (tp_btf): {run:.0} ns per run (median of {ROUNDS}, kernel BPF stats)"
    );
    println!(
        "context switch, 2 threads on one CPU: {wo:.3} µs without csm, {w:.3} µs with: +{:.3} µs ({:+.1} %)",
        w - wo,
        (w / wo - 1.0) * 100.0
    );
    Ok(())
}

/// Two threads pinned to CPU 0 pass a byte back and forth through pipes: every pass is a
/// context switch. Returns µs per switch.
fn ping_pong_us_per_switch() -> Result<f64> {
    let (a_read, a_write) = pipe()?;
    let (b_read, b_write) = pipe()?;
    let partner = std::thread::spawn(move || {
        pin_to_cpu0();
        let mut byte = [0u8; 1];
        for _ in 0..ROUND_TRIPS {
            read_exact(a_read, &mut byte);
            write_all(b_write, &byte);
        }
    });
    pin_to_cpu0();
    let start = Instant::now();
    let mut byte = [1u8; 1];
    for _ in 0..ROUND_TRIPS {
        write_all(a_write, &byte);
        read_exact(b_read, &mut byte);
    }
    let elapsed = start.elapsed();
    partner.join().expect("partner thread");
    for fd in [a_read, a_write, b_read, b_write] {
        // SAFETY: our own fds, closed once.
        unsafe { libc::close(fd) };
    }
    Ok(elapsed.as_secs_f64() * 1e6 / (2 * ROUND_TRIPS) as f64)
}

fn pipe() -> Result<(i32, i32)> {
    let mut fds = [0i32; 2];
    // SAFETY: valid array of two fds.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

fn read_exact(fd: i32, buf: &mut [u8]) {
    // SAFETY: valid buffer.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(n, 1, "pipe read");
}

fn write_all(fd: i32, buf: &[u8]) {
    // SAFETY: valid buffer.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    assert_eq!(n, 1, "pipe write");
}

fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn daemon_cost(window: Duration) -> Result<()> {
    let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/csm");
    let data = tempfile::tempdir()?;
    let total = window + Duration::from_secs(15);
    let mut child = Command::new(&binary)
        .args(["run", "--interval", "1s", "--data-dir"])
        .arg(data.path())
        .args(["--duration", &format!("{}s", total.as_secs())])
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(10));
    let cpu0 = task_run_time_ns(pid)?;
    let t0 = Instant::now();
    std::thread::sleep(window);
    let cpu1 = task_run_time_ns(pid)?;
    let secs = t0.elapsed().as_secs_f64();
    let (rss, hwm) = (status_kib(pid, "VmRSS:")?, status_kib(pid, "VmHWM:")?);
    // SIGTERM: a clean stop removes the daemon's pinned eBPF state (a SIGKILL would leave
    // its programs attached).
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
    let pct = (cpu1 - cpu0) as f64 / (secs * 1e9) * 100.0;
    println!(
        "daemon at 1 s interval over {secs:.0} s: {pct:.3} % of one core ({:.2} ms CPU per second), RSS {:.1} MiB (peak {:.1} MiB)",
        (cpu1 - cpu0) as f64 / 1e6 / secs,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    Ok(())
}

/// Sum of every thread's run time (ns) from /proc/<pid>/task/*/schedstat.
fn task_run_time_ns(pid: u32) -> Result<u64> {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        let text = fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        total += text
            .split_whitespace()
            .next()
            .unwrap_or("0")
            .parse::<u64>()?;
    }
    Ok(total)
}

fn status_kib(pid: u32, key: &str) -> Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(key))
        .with_context(|| format!("no {key}"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}
