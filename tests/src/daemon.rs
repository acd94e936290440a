//! `csm run` as a child of the test: one builder for every way a test starts it, its
//! stderr captured line by line, and the child always stopped.
//!
//! ```no_run
//! # use csm_tests::{Daemon, DataDir, Ipv6, Netns};
//! let data = DataDir::new();
//! let ns = Netns::new("doc", Ipv6::Off);
//! let daemon = Daemon::builder()
//!     .backend("ebpf")
//!     .netns(&ns)
//!     .data_dir(&data)
//!     .args(["--interval", "1s"])
//!     .start();
//! let log = daemon.stop();
//! ```

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::netns::Netns;

/// What dropping a daemon that still runs does (the test panicked, or never stopped it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnDrop {
    /// SIGTERM, then SIGKILL if it still runs 10 s later. A clean stop removes the pinned
    /// eBPF state; a SIGKILL would leave the programs attached and counting.
    #[default]
    Stop,
    /// SIGKILL at once: for tests that kill the daemon on purpose anyway (their
    /// [`DataDir`](crate::DataDir) removes the pins it leaves).
    Kill,
}

/// How to start `csm run`; see [`Daemon::builder`].
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until start() or spawn()"]
pub struct DaemonBuilder {
    args: Vec<OsString>,
    netns: Option<String>,
    /// A command that execs csm (its path and arguments follow), e.g. a mount namespace.
    wrapper: Vec<OsString>,
    on_drop: OnDrop,
}

impl DaemonBuilder {
    /// `--backend <backend>` (`auto`, `ebpf`, `proc`).
    pub fn backend(self, backend: &str) -> Self {
        self.args(["--backend", backend])
    }

    /// `--data-dir <dir>`.
    pub fn data_dir(self, dir: impl AsRef<Path>) -> Self {
        self.arg("--data-dir").arg(dir.as_ref())
    }

    /// Runs the daemon inside this network namespace (`ip netns exec`, which execs: the
    /// child's pid is the daemon's).
    pub fn netns<'a>(mut self, ns: impl Into<Option<&'a Netns>>) -> Self {
        self.netns = ns.into().map(|ns| ns.name.clone());
        self
    }

    /// Runs the daemon through `command`, which is handed csm's path and arguments and
    /// must exec it (so that the child's pid stays the daemon's): for example
    /// `unshare --mount sh -c 'setup; exec "$0" "$@"'`.
    pub fn wrapper<S: AsRef<OsStr>>(mut self, command: impl IntoIterator<Item = S>) -> Self {
        self.wrapper = command.into_iter().map(|a| a.as_ref().to_owned()).collect();
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Host `test`, a 1 s interval and a 1 s flush: what most root tests run at.
    pub fn every_second(self) -> Self {
        self.args([
            "--host",
            "test",
            "--interval",
            "1s",
            "--flush-interval",
            "1s",
        ])
    }

    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn on_drop(mut self, on_drop: OnDrop) -> Self {
        self.on_drop = on_drop;
        self
    }

    /// Starts the daemon and returns at once.
    pub fn spawn(self) -> Daemon {
        let csm = crate::csm_bin("csm");
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(&csm);
                cmd
            }
            None => Command::new(&csm),
        };
        if let Some((program, args)) = self.wrapper.split_first() {
            let inner = cmd;
            cmd = Command::new(program);
            cmd.args(args)
                .arg(inner.get_program())
                .args(inner.get_args());
        }
        let mut child = cmd
            .arg("run")
            .args(&self.args)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start csm run");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Daemon {
            child: Some(child),
            log,
            reader: Some(reader),
            on_drop: self.on_drop,
        }
    }

    /// Starts the daemon and waits until it logs `csm collecting`: its data dir is locked,
    /// its backend chosen and its collectors started.
    pub fn start(self) -> Daemon {
        let mut daemon = self.spawn();
        daemon.wait_for_log("csm collecting", Duration::from_secs(30));
        daemon
    }
}

/// A running `csm run`, stopped as [`OnDrop`] says when dropped.
pub struct Daemon {
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    on_drop: OnDrop,
}

impl Daemon {
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::default()
    }

    /// The eBPF daemon of the tests that kill it on purpose (crashes, pins, a full disk):
    /// `--backend ebpf --host test --data-dir <data>`, SIGKILLed on drop; the data dir
    /// removes the pins it leaves.
    pub fn killable(data: &crate::DataDir) -> DaemonBuilder {
        Daemon::builder()
            .backend("ebpf")
            .args(["--host", "test"])
            .data_dir(data)
            .on_drop(OnDrop::Kill)
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Its stderr so far, line by line.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn log_text(&self) -> String {
        self.log().join("\n")
    }

    /// Waits until a line of its log contains `needle`; fails the test (with the log) if
    /// none does within `timeout` or the daemon exits first.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return;
            }
            if !self.alive() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The reader may not have caught up with a daemon that just exited.
        std::thread::sleep(Duration::from_millis(100));
        let log = self.log_text();
        assert!(
            log.contains(needle),
            "csm never logged {needle:?} (running: {}); log so far:\n{log}",
            self.alive()
        );
    }

    /// SIGTERM, then waits for a clean exit (status 0): its whole log.
    pub fn stop(self) -> Vec<String> {
        self.signal(libc::SIGTERM);
        self.wait()
    }

    /// SIGKILL, and reaps it: its whole log.
    pub fn kill(mut self) -> Vec<String> {
        self.signal(libc::SIGKILL);
        self.finish();
        self.log()
    }

    /// Waits for the daemon to end by itself (`--duration`) and checks it succeeded: its
    /// whole log.
    pub fn wait(mut self) -> Vec<String> {
        let status = self.finish();
        let log = self.log();
        assert!(
            status.success(),
            "csm exited with {status}; log:\n{}",
            log.join("\n")
        );
        log
    }

    /// Waits for the daemon to end (after a signal the test sent) without judging how:
    /// its exit status and whole log.
    pub fn wait_status(mut self) -> (ExitStatus, Vec<String>) {
        let status = self.finish();
        (status, self.log())
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) of our own child by its pid.
        unsafe { libc::kill(self.pid() as i32, signal) };
    }

    /// Waits for the child to exit and for its last log lines.
    fn finish(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = child.wait().expect("wait for csm");
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(child) = &mut self.child else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            match self.on_drop {
                OnDrop::Stop => {
                    // SAFETY: kill(2) of our own child by its pid.
                    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    let _ = child.kill();
                }
                OnDrop::Kill => {
                    let _ = child.kill();
                }
            }
        }
        self.finish();
        if std::thread::panicking() {
            eprintln!("log of csm run:\n{}", self.log_text());
        }
    }
}
