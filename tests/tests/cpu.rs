//! CPU per user, end to end and as root: the real daemon with the real eBPF programs,
//! known CPU work by test users, the Parquet read back and compared with the kernel's
//! own accounting of that work (wait4 rusage).

use std::time::{Duration, Instant};

use csm::store::{CpuRow, Source};
use csm_tests::{python, require_root, wait_cpu_ns, Daemon, DataDir, RunTime, TestUser};

/// A 5 s busy loop (no forks) as one user and 1,000 short processes as another, at once.
#[test]
fn per_user_cpu_matches_the_kernels_accounting() {
    require_root();
    let burner = TestUser::create("b");
    let forker = TestUser::create("f");
    let data = DataDir::new();
    let daemon = Daemon::builder()
        .data_dir(&data)
        .args(["--interval", "1s"])
        .backend("ebpf")
        .start();
    std::thread::sleep(Duration::from_millis(1500));

    // The burn is one process (sh's busy loop, no forks), so the test can follow its
    // exact run time in /proc/<pid>/schedstat while it runs.
    let burn = burner
        .shell("while :; do :; done")
        .spawn()
        .expect("start the burn");
    let burn_pid = burn.id();
    let started = Instant::now();
    let forks = forker
        .shell("for i in $(seq 1000); do /bin/true; done")
        .spawn()
        .expect("start the short processes");
    let follow = std::thread::spawn(move || RunTime::follow_for(burn_pid, Duration::from_secs(5)));
    let (forks_status, forks_ns) = wait_cpu_ns(forks);
    assert!(libc::WIFEXITED(forks_status) && libc::WEXITSTATUS(forks_status) == 0);
    let forks_secs = started.elapsed().as_secs_f64();
    let run_time = follow.join().unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(burn_pid as i32, libc::SIGKILL) };
    let (_, burn_ns) = wait_cpu_ns(burn);
    // Let the interval holding the end of the work close.
    std::thread::sleep(Duration::from_millis(2500));
    daemon.stop();

    let cpu = data.rows::<CpuRow>();
    let total_of = |uid: u32| -> u64 {
        cpu.iter()
            .filter(|r| r.uid == uid as i64)
            .map(|r| r.cpu_ns as u64)
            .sum()
    };
    let burn_csm = total_of(burner.uid);
    let forks_csm = total_of(forker.uid);
    println!(
        "burn: csm {:.4} s vs kernel {:.4} s; 1000 processes ({forks_secs:.2} s wall): csm {:.4} s vs kernel {:.4} s",
        burn_csm as f64 / 1e9,
        burn_ns as f64 / 1e9,
        forks_csm as f64 / 1e9,
        forks_ns as f64 / 1e9
    );
    assert_within(burn_csm, burn_ns, 0.02, "steady burn");
    assert_within(forks_csm, forks_ns, 0.02, "1,000 short processes");

    // Each 1 s interval wholly inside the burn shows what the burn really ran in it: one
    // full core on a quiet machine (100 ± 5 %), less when other work competes for the CPU.
    let burner_rows: Vec<&CpuRow> = cpu.iter().filter(|r| r.uid == burner.uid as i64).collect();
    let inside = intervals_against_run_time(&burner_rows, &run_time);
    println!("burn intervals (csm %, schedstat %): {inside:.1?}");
    assert!(
        inside.len() >= 3,
        "expected at least 3 whole intervals inside the burn: {inside:?}"
    );
    for (csm, truth) in &inside {
        assert!(
            (csm - truth).abs() <= 5.0,
            "a burn interval shows {csm:.1} % where the burn ran {truth:.1} %: {inside:?}"
        );
    }
    if run_time.had_a_core() {
        for (csm, _) in &inside {
            assert!(
                (95.0..=105.0).contains(csm),
                "quiet machine, yet {csm:.1} % in {inside:?}"
            );
        }
    }

    // Names resolve; the source is eBPF.
    let name_of_burner = cpu
        .iter()
        .find(|r| r.uid == burner.uid as i64)
        .map(|r| r.user.clone());
    assert_eq!(name_of_burner, Some(Some(burner.name.clone())));
    assert!(cpu.iter().all(|r| r.source == Source::Ebpf));
}

/// Two users burn a core each on this machine for 30 s, started right after the daemon:
/// no interval adds up to more than the machine has (the daemon's own start-up slice once
/// landed whole in the first interval: 218 % on 2 cores; a running slice read from a
/// tick-stale schedstat moved time into the next interval: 208 % in a 59 ms one), each
/// interval shows what schedstat says the burn ran in it (within 2 points), and each user
/// is charged what the kernel says the burn ran (wait4), within 1 %.
#[test]
fn two_burning_users_stay_within_the_machine_in_every_interval() {
    require_root();
    burn_two_users_for_30s(None);
}

/// The same beside a third user's 3 busy loops and a loop of short processes (a build's
/// kind of load). On the 6.18 test VM the scheduler tracepoint then misses a few switches
/// a second, and a switch-out the program had not seen the switch-in of was charged from
/// the task's own, seconds-old, switch-in mark: slices charged twice, one interval at
/// 345 % of 2 cores in CI and 372–495 % here (see `unrecorded_slice` in csm-ebpf's
/// sched.rs).
#[test]
fn burning_users_beside_a_fork_loop_stay_within_the_machine() {
    require_root();
    let loader = TestUser::create("cl");
    let mut load = loader
        .shell("for i in 1 2 3; do (while :; do :; done) & done; while :; do /bin/true; done")
        .spawn()
        .expect("start the load");
    burn_two_users_for_30s(Some(&loader));
    // The loops it started go with the user (TestUser's drop).
    let _ = load.kill();
    let _ = load.wait();
}

/// Two users burn a core each for 30 s (beside `load`'s processes, if any): checks as in
/// [`two_burning_users_stay_within_the_machine_in_every_interval`].
fn burn_two_users_for_30s(load: Option<&TestUser>) {
    // SAFETY: sysconf has no preconditions.
    let cores = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } as f64;
    let users = [TestUser::create("c1"), TestUser::create("c2")];
    let data = DataDir::new();
    let daemon = Daemon::builder()
        .data_dir(&data)
        .args(["--interval", "1s"])
        .backend("ebpf")
        .start();
    let burns: Vec<_> = users
        .iter()
        .map(|u| {
            u.shell("while :; do :; done")
                .spawn()
                .expect("start a burn")
        })
        .collect();
    let follows: Vec<_> = burns
        .iter()
        .map(|burn| {
            let pid = burn.id();
            std::thread::spawn(move || RunTime::follow_for(pid, Duration::from_secs(30)))
        })
        .collect();
    let run_times: Vec<_> = follows.into_iter().map(|f| f.join().unwrap()).collect();
    let burn_ns: Vec<u64> = burns
        .into_iter()
        .map(|burn| {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(burn.id() as i32, libc::SIGKILL) };
            wait_cpu_ns(burn).1
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2500));
    daemon.stop();

    let cpu = data.rows::<CpuRow>();
    let mut per_interval: std::collections::BTreeMap<i64, f64> = Default::default();
    for row in &cpu {
        *per_interval.entry(row.ts_us).or_default() += row.cpu_pct;
    }
    let busiest = per_interval.values().copied().fold(0.0, f64::max);
    println!(
        "{} intervals, busiest {busiest:.1} % of {cores} cores",
        per_interval.len()
    );
    for (ts, total) in &per_interval {
        assert!(
            *total <= cores * 100.0 + 1.0,
            "the interval ending at {ts} µs adds up to {total:.1} % on {cores} cores: {per_interval:?}\n\
             per uid around it (ts µs, uid, cpu_ns, %):\n{}",
            rows_around(&cpu, *ts)
        );
    }
    if let Some(loader) = load {
        let loaded = cpu.iter().filter(|r| r.uid == loader.uid as i64).count();
        assert!(
            loaded >= 25,
            "the load ran: {loaded} rows of {}",
            loader.name
        );
    }
    for ((user, truth), run_time) in users.iter().zip(burn_ns).zip(&run_times) {
        let rows: Vec<&CpuRow> = cpu.iter().filter(|r| r.uid == user.uid as i64).collect();
        let against_schedstat = intervals_against_run_time(&rows, run_time);
        println!(
            "{}: (csm %, schedstat %) per interval: {against_schedstat:.1?}",
            user.name
        );
        assert!(
            against_schedstat.len() >= 25,
            "expected at least 25 whole intervals inside {}'s 30 s burn: {against_schedstat:?}",
            user.name
        );
        for (csm, truth) in &against_schedstat {
            assert!(
                (csm - truth).abs() <= 2.0,
                "{} shows {csm:.1} % in an interval where schedstat says {truth:.1} %: {against_schedstat:.1?}",
                user.name
            );
        }
        let charged: u64 = rows.iter().map(|r| r.cpu_ns as u64).sum();
        assert_within(charged, truth, 0.01, &format!("{}'s burn", user.name));
    }
}

/// The rows of the interval ending at `ts_us` and of the two before and after it, one per
/// line, so that a failure says which uid an excess went to.
fn rows_around(cpu: &[CpuRow], ts_us: i64) -> String {
    let mut stamps: Vec<i64> = cpu.iter().map(|r| r.ts_us).collect();
    stamps.sort_unstable();
    stamps.dedup();
    let at = stamps.binary_search(&ts_us).unwrap_or(0);
    let near = &stamps[at.saturating_sub(2)..(at + 3).min(stamps.len())];
    cpu.iter()
        .filter(|r| near.contains(&r.ts_us))
        .map(|r| format!("{} {} {} {:.2}", r.ts_us, r.uid, r.cpu_ns, r.cpu_pct))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `(csm %, schedstat %)` of each row whose interval lies wholly inside the run time
/// samples.
fn intervals_against_run_time(rows: &[&CpuRow], run_time: &RunTime) -> Vec<(f64, f64)> {
    rows.iter()
        .filter(|r| {
            r.ts_us - r.dur_ms * 1000 >= run_time.first_us() && r.ts_us <= run_time.last_us()
        })
        .map(|r| (r.cpu_pct, run_time.pct(r.ts_us - r.dur_ms * 1000, r.ts_us)))
        .collect()
}

fn assert_within(measured: u64, truth: u64, tolerance: f64, what: &str) {
    assert!(truth > 0, "{what}: the workload used no CPU");
    let error = (measured as f64 - truth as f64).abs() / truth as f64;
    assert!(
        error <= tolerance,
        "{what}: csm measured {measured} ns, the kernel {truth} ns ({:.2} % off, allowed {:.0} %)",
        error * 100.0,
        tolerance * 100.0
    );
}

/// DuckDB and pandas read the cpu table with hive partitioning and the declared types.
#[test]
fn duckdb_and_pandas_read_the_cpu_table() {
    require_root();
    let data = DataDir::new();
    let daemon = Daemon::builder()
        .data_dir(&data)
        .args(["--interval", "500ms", "--host", "testhost"])
        .start();
    std::thread::sleep(Duration::from_millis(1600));
    daemon.stop();
    let script = r#"
import sys, duckdb, pandas as pd
d = sys.argv[1]
con = duckdb.connect()
cpu = f"read_parquet('{d}/cpu/**/*.parquet', hive_partitioning=true)"
types = {r[0]: r[1] for r in con.execute(f"describe select * from {cpu}").fetchall()}
want = {"ts": "TIMESTAMP WITH TIME ZONE", "dur_ms": "BIGINT", "uid": "BIGINT", "user": "VARCHAR",
        "cpu_ns": "BIGINT", "cpu_pct": "DOUBLE", "source": "VARCHAR", "host": "VARCHAR", "date": "DATE"}
for k, v in want.items():
    assert types.get(k) == v, f"duckdb: {k} is {types.get(k)}, want {v}"
n = con.execute(f"select count(*) from {cpu} where host = 'testhost'").fetchone()[0]
assert n > 0, "duckdb found no rows for host=testhost"
df = pd.read_parquet(f"{d}/cpu")
assert len(df) == n, (len(df), n)
assert str(df["ts"].dtype) in ("datetime64[us, UTC]", "datetime64[ns, UTC]"), df["ts"].dtype
for col in ("dur_ms", "uid", "cpu_ns"):
    assert str(df[col].dtype) == "int64", (col, df[col].dtype)
assert str(df["cpu_pct"].dtype) == "float64"
assert set(df["host"].astype(str)) == {"testhost"}
events = f"read_parquet('{d}/events/**/*.parquet', hive_partitioning=true)"
ev = con.execute(f"select list(event order by ts) from {events}").fetchone()[0]
assert ev[0] == "start" and ev[-1] == "stop", ev
print("rows", n, "events", ev)
"#;
    let out = python(script, &[data.path().to_str().unwrap()], "");
    println!("{out}");
}
