//! CPU cost of a live `csm top` at 1 s refresh, as a % of one core (target: under 1 %):
//! a real eBPF daemon runs on a temporary data dir, and `csm top` runs in a
//! pseudo-terminal for 30 s, once reading the daemon's maps and once sampling /proc
//! itself (`--backend proc`), side by side. Its CPU time comes from schedstat.
//!
//! As root, after `cargo build --release -p csm-user --bins`:
//! `cargo run --release -p csm-user --example bench_top [-- --seconds 30]`
//! (`cargo xtask bench top` does both).

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

fn main() {
    let seconds = common::seconds_arg(30);
    let csm = common::built_csm();
    let data = tempfile::tempdir().expect("temp dir");
    let mut daemon = Command::new(&csm)
        .args(["run", "--backend", "ebpf", "--interval", "1s", "--data-dir"])
        .arg(data.path())
        .stderr(Stdio::null())
        .spawn()
        .expect("start csm run");
    let start = Instant::now();
    while csm::top::source::daemon_pid(data.path())
        .ok()
        .flatten()
        .is_none()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let processes = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .count();
    println!("csm top at 1 s refresh, {seconds} s each, {processes} processes on this host");
    let data_dir = data.path().to_str().unwrap();
    for (label, extra) in [
        ("daemon's maps (ebpf)", vec!["--data-dir", data_dir]),
        ("/proc sampled by top", vec!["--backend", "proc"]),
    ] {
        let pct = measure(&csm, &extra, seconds);
        println!("{label:<24} {pct:>6.3} % of one core");
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let _ = daemon.wait();
}

/// Runs `csm top <args>` in a pseudo-terminal; the CPU it used over `seconds` after a
/// 3 s warm-up, in % of one core.
fn measure(csm: &PathBuf, args: &[&str], seconds: u64) -> f64 {
    let (master, slave) = openpty();
    let mut child = spawn_on_terminal(csm, args, &slave);
    drop(slave);
    let mut reader = File::from(master.try_clone().unwrap());
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
    });
    std::thread::sleep(Duration::from_secs(3));
    let (t0, c0) = (Instant::now(), cpu_ns(child.id()));
    std::thread::sleep(Duration::from_secs(seconds));
    let (elapsed, c1) = (t0.elapsed(), cpu_ns(child.id()));
    let pct = (c1 - c0) as f64 / 1e9 / elapsed.as_secs_f64() * 100.0;
    // `q`, as a user would.
    let mut writer = File::from(master);
    std::io::Write::write_all(&mut writer, b"q").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "csm top exited with {status}");
    pct
}

fn spawn_on_terminal(csm: &PathBuf, args: &[&str], slave: &OwnedFd) -> Child {
    use std::os::unix::process::CommandExt;
    let stdio = || Stdio::from(slave.try_clone().unwrap());
    let mut cmd = Command::new(csm);
    cmd.arg("top")
        .args(args)
        .env("TERM", "xterm-256color")
        .stdin(stdio())
        .stdout(stdio())
        .stderr(stdio());
    // SAFETY: setsid and ioctl are async-signal-safe; the child gets the terminal as its
    // controlling terminal (stdin, fd 0).
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    cmd.spawn().expect("start csm top")
}

fn openpty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: valid out-pointers; no name buffer or termios.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned two new descriptors.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// Run time of a process's threads, in ns (`/proc/<pid>/task/*/schedstat`: the
/// scheduler's own figure, finer than stat's clock ticks; `top` runs on one thread, plus
/// short-lived ones only to name interfaces of other network namespaces).
fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the process runs")
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|text| text.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}
