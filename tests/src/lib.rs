//! Helpers shared by the end-to-end tests: the real binaries, test users, a daemon that is
//! always stopped, and Parquet read back with the arrow reader.
//!
//! Everything a test creates is removed by a `Drop` guard, so a failing assertion still
//! cleans up.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod daemon_support;
pub mod net;
pub mod netns;
pub mod ping;
pub mod ping_support;
pub mod records;

use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The workspace's `target/release/<name>`, built by `cargo xtask test` before the tests.
pub fn binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/release")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test` (it builds the binaries first)",
        path.display()
    );
    path
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests load eBPF programs and create users: run them as root (cargo xtask test)"
    );
}

/// A system user that exists for the test's lifetime.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TestUser {
    pub fn create(tag: &str) -> TestUser {
        let name = format!("csmt{}{}", std::process::id() % 100_000, tag);
        let _ = Command::new("userdel").arg(&name).output();
        let status = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                &name,
            ])
            .status()
            .expect("run useradd");
        assert!(status.success(), "useradd {name} failed");
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, &name])
                .output()
                .expect("run id");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("numeric id")
        };
        TestUser {
            uid: id("-u"),
            gid: id("-g"),
            name,
        }
    }

    /// `sh -c script` running as this user (setpriv switches uid and gid before exec).
    pub fn shell(&self, script: &str) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            &format!("--reuid={}", self.uid),
            &format!("--regid={}", self.gid),
            "--clear-groups",
            "--",
            "sh",
            "-c",
            script,
        ]);
        cmd
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // Any process left behind would keep the user busy.
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", &self.name])
            .status();
        std::thread::sleep(Duration::from_millis(50));
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}

/// CPU time (user + system, ns) of a child and all the descendants it waited for, from
/// `wait4`: the kernel's own accounting, to compare against. Also returns the raw wait
/// status.
pub fn wait_cpu_ns(child: Child) -> (i32, u64) {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child; pointers are valid locals.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4 failed: {}", std::io::Error::last_os_error());
    let ns = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1_000;
    (status, ns(usage.ru_utime) + ns(usage.ru_stime))
}

/// Time a thread has run, in ns, from `/proc/<pid>/schedstat` (the scheduler's own
/// `sum_exec_runtime`).
pub fn schedstat_ns(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A `csm run` that is stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Daemon {
    child: Option<Child>,
    stderr_lines: mpsc::Receiver<String>,
    pub log: Vec<String>,
}

impl Daemon {
    /// Starts `csm run <args>` and waits until it says it is collecting.
    pub fn start(args: &[&str]) -> Daemon {
        let mut child = Command::new(binary("csm"))
            .arg("run")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("NO_COLOR", "1")
            .spawn()
            .expect("start csm run");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut daemon = Daemon {
            child: Some(child),
            stderr_lines: rx,
            log: Vec::new(),
        };
        daemon.wait_for_log("csm collecting", Duration::from_secs(30));
        daemon
    }

    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.stderr_lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.log.push(line);
                    if found {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!(
            "csm never logged {needle:?}; log so far:\n{}",
            self.log.join("\n")
        );
    }

    /// SIGTERM, then waits for a clean exit (status 0).
    pub fn stop(mut self) -> Vec<String> {
        let mut child = self.child.take().expect("running");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().expect("wait for csm");
        self.log.extend(self.stderr_lines.try_iter());
        assert!(
            status.success(),
            "csm exited with {status}; log:\n{}",
            self.log.join("\n")
        );
        std::mem::take(&mut self.log)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_gracefully(&mut child);
        }
    }
}

/// SIGTERM, then SIGKILL if the daemon is still running after 10 s. A clean stop removes
/// its pinned eBPF state; a SIGKILL would leave its programs attached and counting.
pub fn stop_gracefully(child: &mut Child) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Every row of a table under a data dir, read with the arrow Parquet reader.
pub fn read_table(data_dir: &Path, table: &str) -> RecordBatch {
    let mut files = Vec::new();
    collect_parquet(&data_dir.join(table), &mut files);
    assert!(
        !files.is_empty(),
        "no Parquet files for table {table} in {}",
        data_dir.display()
    );
    let batches: Vec<RecordBatch> = files
        .iter()
        .flat_map(|path| {
            let file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
                .build()
                .unwrap()
                .map(|b| b.expect("a readable row group"))
        })
        .collect();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("same schema")
}

pub fn collect_parquet(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_parquet(&path, out);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
}

/// A column as i64 values.
pub fn i64s(batch: &RecordBatch, name: &str) -> Vec<i64> {
    use arrow::array::{Array, Int64Array, TimestampMicrosecondArray};
    let col = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"));
    if let Some(a) = col.as_any().downcast_ref::<Int64Array>() {
        return a.values().to_vec();
    }
    if let Some(a) = col.as_any().downcast_ref::<TimestampMicrosecondArray>() {
        return a.values().to_vec();
    }
    panic!("column {name} is {:?}, not Int64", col.data_type());
}

pub fn f64s(batch: &RecordBatch, name: &str) -> Vec<f64> {
    use arrow::array::Float64Array;
    let col = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"));
    col.as_any()
        .downcast_ref::<Float64Array>()
        .unwrap_or_else(|| panic!("column {name} is {:?}, not Float64", col.data_type()))
        .values()
        .to_vec()
}

pub fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    use arrow::array::{Array, StringArray};
    let col = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"));
    let a = col
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap_or_else(|| panic!("column {name} is {:?}, not Utf8", col.data_type()));
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
        .collect()
}

pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}
