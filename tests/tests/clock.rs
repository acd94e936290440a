//! The clock is sacred (issue 21, point 3): under namespace churn (5,000 sleeping
//! processes and an unprivileged user creating and destroying network namespaces in a
//! loop), and under a user's busy loops on every core, the collection intervals stay
//! within 10 % of 1 s, ping measurements of a loopback target start on time, and no
//! false outage is recorded.
//!
//! Prints what it measured (worst interval deviation per table, worst ping start
//! lateness, the daemon's CPU share); `CSM_TEST_BIN_DIR=<other build>/release` measures
//! another build with the same load.
//!
//! Run as root: `cargo test --release -p csm-tests --test clock -- --nocapture`.

use std::collections::BTreeMap;
use std::thread::sleep;
use std::time::{Duration, Instant};

use csm::store::outages::{measured, outages};
use csm::store::{CpuRow, NetRow, PingRow};
use csm_tests::churn::Churn;
use csm_tests::{now_us, require_root, Daemon, DataDir, TestUser};

const SECOND_US: i64 = 1_000_000;
/// Intervals within 10 % of their setting (1 s).
const MOST_DEVIATION: f64 = 0.10;
/// How long the load runs while the daemon collects.
const LOADED: Duration = Duration::from_secs(30);

/// The daemon's CPU time (user + system), from /proc/<pid>/stat, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of stat(5), 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The worst deviation from 1 s among the intervals that overlap `[from, to)`: each
/// distinct `(ts, dur_ms)`, and the spacing of consecutive interval starts (with the
/// window's own ends, so that a collector stalled through the window counts too); and
/// how many intervals start in the window.
fn worst_deviation(intervals: &[(i64, i64)], from: i64, to: i64) -> (f64, usize) {
    let chosen: Vec<(i64, i64)> = intervals
        .iter()
        .copied()
        .filter(|&(ts, dur_ms)| ts < to && ts + dur_ms * 1000 > from)
        .collect();
    let lengths = chosen.iter().map(|&(_, dur_ms)| dur_ms * 1000);
    let starts: Vec<i64> = std::iter::once(from)
        .chain(
            chosen
                .iter()
                .map(|&(ts, _)| ts)
                .filter(|ts| (from..to).contains(ts)),
        )
        .chain(std::iter::once(to))
        .collect();
    // The window's ends are not interval starts: a gap to them counts only when longer.
    let spacing = starts.windows(2).map(|w| (w[1] - w[0]).max(SECOND_US));
    let worst = lengths
        .chain(spacing)
        .map(|us| (us - SECOND_US).abs() as f64 / SECOND_US as f64)
        .fold(0.0, f64::max);
    let started = starts.len() - 2;
    (worst, started)
}

/// The distinct intervals of a table's rows, in time order.
fn intervals(rows: impl IntoIterator<Item = (i64, i64)>) -> Vec<(i64, i64)> {
    let distinct: BTreeMap<i64, i64> = rows.into_iter().collect();
    distinct.into_iter().collect()
}

/// What the daemon recorded while a load ran.
struct OnTime {
    cpu_worst: f64,
    cpu_n: usize,
    net_worst: f64,
    net_n: usize,
    loaded_ping: Vec<PingRow>,
    found: Vec<csm::store::outages::Outage>,
    cpu_share: f64,
    /// Nice value and scheduling policy of each of the daemon's threads while it ran,
    /// by thread id.
    threads: BTreeMap<u32, Sched>,
    log: String,
}

/// Runs the daemon at 1 s with a loopback ping target every second, starts the load
/// `start_load` makes after 3 s, keeps it for [`LOADED`], and measures what the rows
/// say of the loaded window. `what` names the load in the printed line.
fn collect_under<L>(what: &str, start_load: impl FnOnce() -> L) -> OnTime {
    let data = DataDir::new();
    let config = data.config("[ping]\ninterval = \"1s\"\ncount = 3\n");
    let daemon = Daemon::builder()
        .data_dir(&data)
        .every_second()
        .arg("--config")
        .arg(&config)
        .args(["--ping", "127.0.0.1"])
        .start();
    sleep(Duration::from_secs(3));

    let load = start_load();
    let clk_tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (ticks_before, loaded_from, t0) = (cpu_ticks(daemon.pid()), now_us(), Instant::now());
    sleep(LOADED);
    let cpu_share =
        (cpu_ticks(daemon.pid()) - ticks_before) as f64 / clk_tck / t0.elapsed().as_secs_f64();
    let threads = thread_sched(daemon.pid());
    let loaded_to = now_us();
    drop(load);
    sleep(Duration::from_secs(2));
    let log = daemon.stop().join("\n");

    // Intervals that start in the loaded window (the first one starts before it).
    let cpu = intervals(data.rows::<CpuRow>().iter().map(|r| (r.ts_us, r.dur_ms)));
    let net = intervals(data.rows::<NetRow>().iter().map(|r| (r.ts_us, r.dur_ms)));
    let (cpu_worst, cpu_n) = worst_deviation(&cpu, loaded_from, loaded_to);
    let (net_worst, net_n) = worst_deviation(&net, loaded_from, loaded_to);

    let ping: Vec<PingRow> = data
        .rows::<PingRow>()
        .into_iter()
        .filter(|r| r.target == "127.0.0.1")
        .collect();
    let loaded_ping: Vec<PingRow> = ping
        .iter()
        .filter(|r| (loaded_from..loaded_to).contains(&r.ts_us))
        .cloned()
        .collect();
    let latest_start_ms = loaded_ping
        .iter()
        .map(|r| r.ts_us.rem_euclid(SECOND_US) as f64 / 1000.0)
        .fold(0.0, f64::max);
    let ping_starts: Vec<i64> = std::iter::once(loaded_from)
        .chain(loaded_ping.iter().map(|r| r.ts_us))
        .chain(std::iter::once(loaded_to))
        .collect();
    let longest_ping_gap_s = ping_starts
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / 1e6)
        .fold(0.0, f64::max);
    let not_measured = ping
        .iter()
        .filter(|r| !measured(r.sent, r.error.as_deref()))
        .count();
    let found = outages(
        ping.iter()
            .map(|r| (r.ts_us, r.received, measured(r.sent, r.error.as_deref()))),
    );
    // What the definition before "not measured" existed would have called outages.
    let counting_unmeasured = outages(ping.iter().map(|r| (r.ts_us, r.received, true)));
    println!(
        "under {what} for {LOADED:?}: cpu intervals {cpu_n}, worst {:.1} %; net intervals \
         {net_n}, worst {:.1} %; ping {} measurements, latest start {latest_start_ms:.1} ms \
         into its second, longest gap between starts {longest_ping_gap_s:.1} s, \
         {not_measured} not measured, {} outages ({} counting unmeasured ones); daemon {:.1} % \
         of a core; threads (nice, policy) {:?}",
        cpu_worst * 100.0,
        net_worst * 100.0,
        loaded_ping.len(),
        found.len(),
        counting_unmeasured.len(),
        cpu_share * 100.0,
        threads.values().collect::<Vec<_>>(),
    );
    OnTime {
        cpu_worst,
        cpu_n,
        net_worst,
        net_n,
        loaded_ping,
        found,
        cpu_share,
        threads,
        log,
    }
}

/// A thread's nice value and scheduling policy (0 normal, 2 round robin: sched(7)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sched {
    nice: i64,
    policy: i64,
}

/// How each thread of `pid` is scheduled, from fields 19 and 41 of stat(5).
fn thread_sched(pid: u32) -> BTreeMap<u32, Sched> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .flatten()
        .filter_map(|task| {
            let tid: u32 = task.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let after_name = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = after_name.split_whitespace().collect();
            // Fields are numbered from 1 and the first two (pid, name) are cut.
            let field = |n: usize| fields.get(n - 3)?.parse().ok();
            Some((
                tid,
                Sched {
                    nice: field(19)?,
                    policy: field(41)?,
                },
            ))
        })
        .collect()
}

/// Every interval (of the `cpu` table too when `cpu_too`) and ping measurement of the
/// loaded window on time, no false outage.
fn assert_on_time(m: &OnTime, cpu_too: bool) {
    let log = &m.log;
    assert!(m.found.is_empty(), "false outages: {:?}\n{log}", m.found);
    assert!(
        m.loaded_ping.len() as u64 >= LOADED.as_secs() - 2,
        "a measurement every second: {} in {LOADED:?}",
        m.loaded_ping.len()
    );
    assert!(
        m.loaded_ping
            .iter()
            .all(|r| r.received == r.sent && r.sent == 3),
        "every loopback echo answered: {:?}",
        m.loaded_ping
    );
    assert!(
        m.cpu_n as u64 >= LOADED.as_secs() - 2,
        "cpu rows: {}",
        m.cpu_n
    );
    assert!(
        !cpu_too || m.cpu_worst <= MOST_DEVIATION,
        "a cpu interval off by {:.1} %",
        m.cpu_worst * 100.0
    );
    assert!(
        m.net_n as u64 >= LOADED.as_secs() - 2,
        "net rows: {}",
        m.net_n
    );
    assert!(
        m.net_worst <= MOST_DEVIATION,
        "a net interval off by {:.1} %",
        m.net_worst * 100.0
    );
}

#[test]
fn namespace_churn_stretches_no_interval_and_makes_no_false_outage() {
    require_root();
    if !Churn::possible() {
        panic!("an unprivileged user cannot run `unshare -Urn` here: the attack cannot be made");
    }
    let measured = collect_under("churn", || Churn::start(5000));
    assert_on_time(&measured, true);
}

/// Busy loops that keep both cores busy, run by a test user (no privilege).
struct BusyLoops {
    children: Vec<std::process::Child>,
    _user: TestUser,
}

impl BusyLoops {
    fn start(per_core: usize) -> BusyLoops {
        let user = TestUser::create("busy");
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let children = (0..per_core * cores)
            .map(|_| user.shell("while :; do :; done").spawn().unwrap())
            .collect();
        BusyLoops {
            children,
            _user: user,
        }
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A user who keeps every core busy with 12 busy loops each (load 24 on 2 cores) cannot
/// delay the daemon's traffic ticks or pings: those threads run at SCHED_RR 1, the memory
/// walk at nice −10 (csm-user/src/daemon/priority.rs), the rest of the daemon at its own
/// priority. Measured on the 2-core test VM with three builds beside, before: 4 to 7 of
/// 58 intervals outside 10 %, the worst 1,364 ms. The CPU reader keeps the daemon's
/// priority (raised, its readings went past the machine's capacity: see
/// `tasks::spawn_all`), so its intervals are printed, and bounded only by the rows being
/// there: a known gap, in docs/security.md.
#[test]
fn a_users_busy_loops_delay_no_traffic_tick_nor_ping() {
    require_root();
    let measured = collect_under("busy loops", || BusyLoops::start(12));
    let threads: Vec<Sched> = measured.threads.values().copied().collect();
    let count = |sched: Sched| threads.iter().filter(|&&t| t == sched).count();
    const ROUND_ROBIN: i64 = 2;
    assert!(
        count(Sched {
            nice: 0,
            policy: ROUND_ROBIN
        }) >= 2,
        "net and ping threads round robin: {threads:?}"
    );
    assert!(
        count(Sched {
            nice: -10,
            policy: 0
        }) >= 1,
        "the memory walk at nice -10: {threads:?}"
    );
    assert!(
        count(Sched { nice: 0, policy: 0 }) >= 2,
        "the CPU reader and the other threads at the daemon's own priority: {threads:?}"
    );
    assert_on_time(&measured, false);
    // The busy loops do not make the daemon work more.
    assert!(
        measured.cpu_share < 0.05,
        "daemon {:.1} % of a core",
        measured.cpu_share * 100.0
    );
}
