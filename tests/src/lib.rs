//! The harness of the end-to-end tests, one of each thing:
//!
//! - [`csm_bin`] finds the real binaries, [`run_csm`] runs a one-shot `csm` command;
//! - [`Daemon`] starts `csm run` (backend, network namespace, data dir, arguments), captures
//!   its log, and stops it on drop even when the test panics ([`OnDrop`] says how);
//! - [`DataDir`] is the data dir: a temporary folder, read back through the store's own
//!   reader into typed rows ([`DataDir::rows`]) and typed events ([`DataDir::events`]);
//! - [`TestUser`], [`Netns`] and [`Link`] are the users, network namespaces and veth pairs
//!   a test creates.
//!
//! Everything a test creates is undone by a `Drop` guard, so a failing assertion still
//! cleans up.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod churn;
pub mod daemon;
pub mod data;
pub mod net;
pub mod netns;
pub mod ping;
pub mod prometheus;
pub mod run_time;
pub mod workload;

pub use daemon::{Daemon, DaemonBuilder, OnDrop};
pub use data::{DataDir, Tmpfs};
pub use netns::{veth, Ipv6, Link, Netns};
pub use run_time::{RunTime, RunTimeFollower};
pub use workload::{schedstat_ns, wait_cpu_ns, Rng, TestUser};

/// `target/release/<name>` of this workspace (`csm`, `csm-plot`): the tests run the real
/// binaries, which `cargo xtask test` builds first.
///
/// `CSM_TEST_BIN_DIR` names another folder of binaries (another build, to measure a
/// change side by side with the same test; `/bin` inside the kernel matrix's VMs).
pub fn csm_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("CSM_TEST_BIN_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release"),
        PathBuf::from,
    );
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test`, or `cargo build --release -p \
         csm-user --bins` first",
        path.display()
    );
    path
}

/// Runs `csm <args>` to its end (a command that stops by itself: `check`, a rejected
/// `run`, a `run --duration`); its output and exit status.
pub fn run_csm<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Output {
    Command::new(csm_bin("csm"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run csm")
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests load eBPF programs and create users and namespaces: run them as root \
         (cargo xtask test)"
    );
}

/// Runs a command and fails the test with its stderr if it fails; its stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {program}: {err} (is it installed?)"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a Python script (the real readers: DuckDB, pandas, pyarrow) with `args` and
/// `stdin`; fails the test with its output if the script fails. Its stdout.
pub fn python(script: &str, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3 (cargo xtask test installs duckdb, pandas, pyarrow)");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes())
        .expect("write the script's stdin");
    let out = child.wait_with_output().expect("wait for python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python readers failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Checks `done` every 100 ms until it holds; fails the test, saying what it waited for,
/// after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "waited {timeout:?} in vain: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Microseconds since the epoch, like the tables' `ts`.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}
