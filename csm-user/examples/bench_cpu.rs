//! What csm costs the CPU (`cargo xtask bench cpu`, as root). One line per figure.
//!
//! - Context-switch storm: two processes pinned to CPU 0 bounce a byte over two pipes
//!   (two switches per round trip) for 2 s: without csm, with the whole daemon running
//!   (`csm run --interval 1s`, everything on, 2 s after its programs attached), and with
//!   only an empty program on sched_switch (the floor of any design); 12 rounds of the
//!   three in rotating order, 2 s of rest after each start and stop; the median rates and
//!   the medians of the losses paired within a round.
//! - The sched_switch handler's kernel run time per event (BPF stats) during the storm,
//!   beside an empty program on the same hook (the floor the stats add to every program):
//!   "handler − floor" is the handler's own body and compares across machines.
//! - The daemon at 1 s (memory every 10 s, the defaults) beside 0, 1,000 and 10,000
//!   sleeping processes: % of one core in user+sys (/proc/<pid>/stat; the memory
//!   iterator runs in the daemon's own read, so it is in here) and in its eBPF programs
//!   (BPF stats of the programs it pinned), peak RSS (VmHWM, start-up included) and steady
//!   RSS; once per PSS cadence (`[mem] pss_interval`): 10 s (a full smaps_rollup walk at
//!   every memory sample, what csm did before the task iterator), 60 s and 1 h (no walk in
//!   the window: the iterator alone). A window of 60 s holds exactly one 60 s boundary, so
//!   the default 5 min costs the 1 h figure plus a fifth of the difference to the 60 s one
//!   (printed as derived).
//!
//! Environment: CSM_BENCH_PAIRS (12; 0 skips the storm), CSM_BENCH_STORM_SECS (2), CSM_BENCH_DAEMON_SECS (60),
//! CSM_BENCH_PROCESSES (`0,1000,10000`), CSM_BENCH_PSS_INTERVALS (`10s,60s,1h`),
//! CSM_BENCH_BINARY (the daemon; target/release/csm, another build to compare),
//! CSM_BENCH_BACKEND (`--backend` of the daemon runs; `proc` measures the /proc samplers:
//! no programs, so 0 % in eBPF).
//! Medians and ratios from one run: the machines are shared and noisy.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aya::programs::links::PinnedLink;
use aya::programs::{loaded_programs, BtfTracePoint};
use aya::Btf;
use csm::sources::ebpf::pins::{data_dir_key, BPFFS};
use csm::sources::ebpf::{load_and_attach, Loaded};
use csm::sources::host::HostPaths;
use csm_common::names;

fn main() -> Result<()> {
    let pairs = env_or("CSM_BENCH_PAIRS", 12);
    let storm_secs = Duration::from_secs_f64(env_or("CSM_BENCH_STORM_SECS", 2.0));
    let daemon_secs = Duration::from_secs(env_or("CSM_BENCH_DAEMON_SECS", 60));
    let processes: Vec<usize> = std::env::var("CSM_BENCH_PROCESSES")
        .unwrap_or_else(|_| "0,1000,10000".into())
        .split(',')
        .filter(|n| !n.trim().is_empty())
        .map(|n| n.trim().parse().context("CSM_BENCH_PROCESSES"))
        .collect::<Result<_>>()?;
    println!("machine: {}", csm_store::layout::machine());
    if pairs > 0 {
        storm_with_and_without_daemon(pairs, storm_secs)?;
        handler_cost(pairs.min(7), storm_secs)?;
    }
    let pss_intervals: Vec<String> = std::env::var("CSM_BENCH_PSS_INTERVALS")
        .unwrap_or_else(|_| "10s,60s,1h".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    for n in processes {
        let mut costs = Vec::new();
        for pss in &pss_intervals {
            costs.push((pss.as_str(), daemon_cost(n, daemon_secs, pss)?));
        }
        let cost = |name: &str| costs.iter().find(|(p, _)| *p == name).map(|(_, c)| *c);
        if let (Some(minute), Some(hour)) = (cost("60s"), cost("1h")) {
            // From user+sys: the eBPF part does not depend on the PSS cadence (on a busy
            // machine it follows the other processes' context switches and packets).
            let user = hour.0 + (minute.0 - hour.0) / 5.0;
            println!(
                "daemon at 1 s with {n} sleeping processes, PSS every 5 min (the default; derived: \
                 user+sys 1 h + (60 s - 1 h) / 5, eBPF of the 1 h run): {:.3} % of one core = \
                 {user:.3} % user+sys + {:.3} % eBPF",
                user + hour.1,
                hour.1
            );
        }
    }
    Ok(())
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn storm_with_and_without_daemon(pairs: usize, secs: Duration) -> Result<()> {
    let (mut without, mut with, mut empty) = (Vec::new(), Vec::new(), Vec::new());
    let (mut losses, mut floor_losses) = (Vec::new(), Vec::new());
    for round in 0..pairs {
        // Rotate the order, and let each start and stop settle: a daemon's teardown
        // (programs and maps freed by deferred kernel work) or start-up (its first
        // samples) would otherwise land in the neighbouring run.
        let mut off = 0.0;
        let mut on = 0.0;
        let mut floor = 0.0;
        for arm in (0..3).map(|i| (i + round) % 3) {
            match arm {
                0 => off = storm_round_trips_per_s(secs)?,
                1 => on = storm_with_daemon(secs)?,
                _ => floor = storm_with_empty_program(secs)?,
            }
        }
        without.push(off);
        with.push(on);
        empty.push(floor);
        losses.push((off - on) / off * 100.0);
        floor_losses.push((off - floor) / off * 100.0);
    }
    let (off, on, floor) = (median(&mut without), median(&mut with), median(&mut empty));
    println!(
        "context-switch storm (2 processes on CPU 0, pipes, {pairs} interleaved rounds of {:.1} s): \
         {off:.0} round trips/s without csm, {on:.0} with the daemon, {floor:.0} with only an \
         empty program on sched_switch (medians)",
        secs.as_secs_f64()
    );
    println!(
        "context-switch storm: {:.2} % fewer round trips with csm, {:.2} % with the empty program \
         alone (the floor any sched_switch program costs; medians of the paired losses), \
         {:+.3} µs per switch with csm",
        median(&mut losses),
        median(&mut floor_losses),
        (1e6 / on - 1e6 / off) / 2.0
    );
    Ok(())
}

const SETTLE: Duration = Duration::from_secs(2);

fn storm_with_daemon(secs: Duration) -> Result<f64> {
    let daemon = Daemon::start(Duration::from_secs(secs.as_secs() + 30), None)?;
    std::thread::sleep(SETTLE);
    let on = storm_round_trips_per_s(secs)?;
    daemon.stop();
    std::thread::sleep(SETTLE);
    Ok(on)
}

/// The storm with csm's sched_switch handler replaced by the empty program (no daemon,
/// and the network programs it also attaches do not run for pipes): what any program on
/// that hook costs there.
fn storm_with_empty_program(secs: Duration) -> Result<f64> {
    let mut loaded = load_and_attach(&HostPaths::default())?;
    if !loaded.detach_program(names::PROG_SCHED_SWITCH_BTF) {
        bail!("{} was not attached", names::PROG_SCHED_SWITCH_BTF);
    }
    attach_empty_program(&mut loaded)?;
    std::thread::sleep(SETTLE);
    let rate = storm_round_trips_per_s(secs)?;
    drop(loaded);
    std::thread::sleep(SETTLE);
    Ok(rate)
}

fn attach_empty_program(loaded: &mut Loaded) -> Result<()> {
    let btf = Btf::from_sys_fs().context("kernel BTF")?;
    let floor: &mut BtfTracePoint = loaded
        .program_mut(names::PROG_FLOOR_SCHED)
        .context("floor program missing")?
        .try_into()?;
    floor.load("sched_switch", &btf).context("load floor")?;
    floor.attach().context("attach floor")?;
    Ok(())
}

/// Two processes pinned to CPU 0 pass a byte back and forth through two pipes for `secs`:
/// every pass is a context switch. Returns round trips per second.
fn storm_round_trips_per_s(secs: Duration) -> Result<f64> {
    let (a_read, a_write) = pipe()?;
    let (b_read, b_write) = pipe()?;
    // SAFETY: the child only makes async-signal-safe calls (close, sched_setaffinity,
    // read, write, _exit) before it exits.
    let partner = unsafe { libc::fork() };
    if partner < 0 {
        bail!("fork: {}", std::io::Error::last_os_error());
    }
    if partner == 0 {
        // Only the parent's ends stay open there: its close is our end of file.
        close(&[a_write, b_read]);
        pin_to_cpu0();
        let mut byte = [0u8; 1];
        // Until the parent closes its end.
        while read_byte(a_read, &mut byte) {
            write_byte(b_write, &byte);
        }
        // SAFETY: leaving the forked child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    close(&[a_read, b_write]);
    let saved = affinity();
    pin_to_cpu0();
    let start = Instant::now();
    let mut byte = [1u8; 1];
    let mut trips = 0u64;
    while start.elapsed() < secs {
        for _ in 0..256 {
            write_byte(a_write, &byte);
            read_byte(b_read, &mut byte);
        }
        trips += 256;
    }
    let elapsed = start.elapsed();
    restore_affinity(&saved);
    close(&[a_write, b_read]);
    reap(partner);
    Ok(trips as f64 / elapsed.as_secs_f64())
}

/// The sched_switch handler's kernel run time per event during the storm, beside the
/// empty program on the same hook, both attached at once with BPF stats on.
fn handler_cost(rounds: usize, secs: Duration) -> Result<()> {
    // Keeps run-time statistics on while the fd lives.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("enable BPF stats")?;
    let mut loaded = load_and_attach(&HostPaths::default())?;
    attach_empty_program(&mut loaded)?;
    let (mut handler, mut empty) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let stats = |name| -> Result<(u64, u64)> {
            let info = loaded.program(name).context("program")?.info()?;
            Ok((info.run_time().as_nanos() as u64, info.run_count()))
        };
        let (h0, f0) = (
            stats(names::PROG_SCHED_SWITCH_BTF)?,
            stats(names::PROG_FLOOR_SCHED)?,
        );
        storm_round_trips_per_s(secs)?;
        let (h1, f1) = (
            stats(names::PROG_SCHED_SWITCH_BTF)?,
            stats(names::PROG_FLOOR_SCHED)?,
        );
        let per_run = |a: (u64, u64), b: (u64, u64)| (b.0 - a.0) as f64 / (b.1 - a.1).max(1) as f64;
        handler.push(per_run(h0, h1));
        empty.push(per_run(f0, f1));
    }
    let (h, f) = (median(&mut handler), median(&mut empty));
    println!(
        "sched_switch handler (tp_btf, BPF stats, median of {rounds} storms): {h:.1} ns per run, \
         empty program on the same hook {f:.1} ns, body {:.1} ns, handler/floor {:.2}",
        h - f,
        h / f
    );
    Ok(())
}

/// The daemon's cost beside `sleepers` processes with PSS walked every `pss_interval`: %
/// of one core in user+sys and in its eBPF programs.
fn daemon_cost(sleepers: usize, window: Duration, pss_interval: &str) -> Result<(f64, f64)> {
    let children = Sleepers::spawn(sleepers)?;
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("enable BPF stats")?;
    let daemon = Daemon::start(window + Duration::from_secs(30), Some(pss_interval))?;
    // Start-up done, first samples taken; then a whole number of memory intervals.
    std::thread::sleep(Duration::from_secs(5));
    let programs = daemon.program_ids()?;
    let (cpu0, bpf0, t0) = (
        ticks(daemon.pid())?,
        bpf_run_time_ns(&programs)?,
        Instant::now(),
    );
    std::thread::sleep(window);
    let (cpu1, bpf1, secs) = (
        ticks(daemon.pid())?,
        bpf_run_time_ns(&programs)?,
        t0.elapsed().as_secs_f64(),
    );
    let (rss, hwm) = (
        status_kib(daemon.pid(), "VmRSS:")?,
        status_kib(daemon.pid(), "VmHWM:")?,
    );
    daemon.stop();
    drop(children);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let user_pct = (cpu1 - cpu0) as f64 / hz / secs * 100.0;
    let bpf_pct = (bpf1 - bpf0) as f64 / 1e9 / secs * 100.0;
    println!(
        "daemon at 1 s, memory every 10 s, PSS every {pss_interval}, {sleepers} sleeping \
         processes beside, over {secs:.0} s: {:.3} % of one core = {user_pct:.3} % user+sys \
         (/proc/<pid>/stat) + {bpf_pct:.3} % in its eBPF programs (BPF stats, {} programs)",
        user_pct + bpf_pct,
        programs.len()
    );
    println!(
        "daemon memory with {sleepers} sleeping processes, PSS every {pss_interval}: peak RSS \
         {:.1} MiB (VmHWM, start-up included), steady RSS {:.1} MiB",
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    Ok((user_pct, bpf_pct))
}

/// CSM_BENCH_BACKEND=proc: the daemon runs on /proc alone.
fn proc_backend() -> Option<&'static str> {
    (std::env::var("CSM_BENCH_BACKEND").as_deref() == Ok("proc")).then_some("proc")
}

/// `csm run --interval 1s` in a data dir of its own, stopped with SIGTERM (a clean stop
/// removes its pinned eBPF state).
struct Daemon {
    child: Child,
    data: tempfile::TempDir,
    /// `[mem] pss_interval`, when the benchmark sets it.
    _config: Option<tempfile::NamedTempFile>,
}

impl Daemon {
    fn start(limit: Duration, pss_interval: Option<&str>) -> Result<Daemon> {
        let binary = std::env::var_os("CSM_BENCH_BINARY").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/csm"),
            PathBuf::from,
        );
        let data = tempfile::tempdir()?;
        let mut command = Command::new(&binary);
        command.args(["run", "--interval", "1s"]);
        if let Some(backend) = proc_backend() {
            command.args(["--backend", backend]);
        }
        let config = match pss_interval {
            Some(pss) => {
                use std::io::Write;
                let mut config = tempfile::NamedTempFile::new()?;
                writeln!(config, "[mem]\npss_interval = \"{pss}\"")?;
                command.arg("--config").arg(config.path());
                Some(config)
            }
            None => None,
        };
        let child = command
            .arg("--data-dir")
            .arg(data.path())
            .args(["--duration", &format!("{}s", limit.as_secs())])
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let daemon = Daemon {
            child,
            data,
            _config: config,
        };
        daemon.wait_attached()?;
        Ok(daemon)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's pin folder: `<key of the data dir>-<build stamp>` (the stamp of the
    /// daemon's build, which may differ from this benchmark's: CSM_BENCH_BINARY).
    fn pin_dir(&self) -> Option<PathBuf> {
        let prefix = format!("{}-", data_dir_key(self.data.path()));
        fs::read_dir(Path::new(BPFFS).join("csm"))
            .ok()?
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
    }

    /// Until the scheduler program's link is pinned (programs loaded and attached); the
    /// /proc backend pins nothing: its first samples are taken within the 5 s that follow.
    fn wait_attached(&self) -> Result<()> {
        if proc_backend().is_some() {
            return Ok(());
        }
        let link = format!("link_{}", names::PROG_SCHED_SWITCH_BTF);
        let start = Instant::now();
        while !self.pin_dir().is_some_and(|dir| dir.join(&link).exists()) {
            if start.elapsed() > Duration::from_secs(30) {
                bail!("the daemon did not pin {link} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Ids of the programs behind the daemon's pinned links.
    fn program_ids(&self) -> Result<Vec<u32>> {
        if proc_backend().is_some() {
            return Ok(Vec::new());
        }
        let mut ids = Vec::new();
        let dir = self.pin_dir().context("the daemon's pin folder is gone")?;
        for entry in fs::read_dir(&dir).with_context(|| format!("list {}", dir.display()))? {
            let path = entry?.path();
            let is_link = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("link_"));
            if is_link {
                let link = PinnedLink::from_pin(&path)
                    .with_context(|| format!("open {}", path.display()))?;
                let info = aya::programs::links::FdLink::from(link).info()?;
                ids.push(info.program_id());
            }
        }
        Ok(ids)
    }

    fn stop(mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let _ = self.child.wait();
        }
    }
}

/// Total kernel run time (BPF stats) of the programs with these ids.
fn bpf_run_time_ns(ids: &[u32]) -> Result<u64> {
    let mut total = 0;
    for info in loaded_programs() {
        let info = info?;
        if ids.contains(&info.id()) {
            total += info.run_time().as_nanos() as u64;
        }
    }
    Ok(total)
}

/// Children that only sleep, killed and reaped on drop.
struct Sleepers(Vec<libc::pid_t>);

impl Sleepers {
    fn spawn(n: usize) -> Result<Sleepers> {
        let mut pids = Sleepers(Vec::with_capacity(n));
        for _ in 0..n {
            // SAFETY: the child only calls pause() and _exit().
            let pid = unsafe { libc::fork() };
            if pid < 0 {
                bail!("fork: {}", std::io::Error::last_os_error());
            }
            if pid == 0 {
                // SAFETY: async-signal-safe calls in the forked child.
                unsafe {
                    libc::pause();
                    libc::_exit(0);
                }
            }
            pids.0.push(pid);
        }
        Ok(pids)
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // SAFETY: our own children.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for &pid in &self.0 {
            reap(pid);
        }
    }
}

fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

/// utime + stime of a process, all threads, in clock ticks.
fn ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let after = &text[text.rfind(')').context("stat")? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

fn status_kib(pid: u32, key: &str) -> Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(key))
        .with_context(|| format!("no {key}"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

fn pipe() -> Result<(i32, i32)> {
    let mut fds = [0i32; 2];
    // SAFETY: valid array of two fds.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

fn close(fds: &[i32]) {
    for &fd in fds {
        // SAFETY: our own fds, closed once.
        unsafe { libc::close(fd) };
    }
}

/// False at end of file.
fn read_byte(fd: i32, buf: &mut [u8; 1]) -> bool {
    // SAFETY: valid buffer.
    unsafe { libc::read(fd, buf.as_mut_ptr().cast(), 1) == 1 }
}

fn write_byte(fd: i32, buf: &[u8; 1]) {
    // SAFETY: valid buffer; a failed write ends the partner's loop at its next read.
    unsafe { libc::write(fd, buf.as_ptr().cast(), 1) };
}

fn affinity() -> libc::cpu_set_t {
    // SAFETY: sched_getaffinity fills the zeroed set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        set
    }
}

fn restore_affinity(set: &libc::cpu_set_t) {
    // SAFETY: a valid set.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
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
