//! The work a test measures and who does it: throw-away system users, the kernel's own
//! account of a process's CPU time, and random moments.

use std::process::{Child, Command};
use std::time::Duration;

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

/// Small xorshift: random moments without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn seeded() -> Rng {
        Rng(crate::now_us() as u64 | 1)
    }

    /// A number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}
