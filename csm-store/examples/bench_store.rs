//! Store benchmark: writes simulated days through the real `Store` (1 s interval) and
//! reports bytes on disk per day per table (roll-ups included), the cost of a flush
//! every 10 s through an hour, and the DuckDB time of per-user daily totals.
//!
//! `cargo run --release -p csm-store --example bench_store -- [--days N] [--dir DIR] [--keep]
//! [--uniform-noise]`
//!
//! The simulated host (`csm_store::sim`, shared with `csm report`'s benchmark): 20 users, of whom 5 are busy all day and 15 active a tenth of the time
//! (in 10-minute stretches); 4 interfaces; per-user traffic for 5 users; memory of every
//! user every 10 s; 2 ping targets every 60 s. Values carry realistic noise (timestamps a
//! few ms after the second, CPU and byte counts that vary every interval):
//! - CPU: each busy user at a steady level, each second uniformly 0–10 % below it;
//! - traffic (per interface, per user): a level that follows the day (±30 %), each second
//!   uniformly within ±25 % of it; packets from a mean packet size that varies ±10 %;
//! - memory: RSS a whole number of 4 KiB pages and PSS whole KiB (as /proc reports
//!   them), each within 1 MiB of the user's level, PSS below RSS.
//!
//! `--uniform-noise` runs the earlier simulation instead: every second's bytes uniform
//! between 0 and twice the mean and packets exactly bytes/900; RSS with byte-granular
//! noise; PSS anywhere in a 256 MiB range (above RSS at times).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use csm_store::sim::{write_days, Sim, DAY_START, SEC};
use csm_store::{Store, StoreOptions, Table};

fn main() {
    let mut days = 30;
    let mut dir: Option<PathBuf> = None;
    let mut keep = false;
    let mut uniform_noise = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--days" => days = args.next().and_then(|v| v.parse().ok()).unwrap_or(days),
            "--dir" => dir = args.next().map(PathBuf::from),
            "--keep" => keep = true,
            "--uniform-noise" => uniform_noise = true,
            other => {
                eprintln!("bench_store: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    println!("machine: {}", csm_store::layout::machine());
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = dir.unwrap_or_else(|| temp.path().to_path_buf());

    flush_cost(&dir.join("flush-cost"), uniform_noise);

    let data = dir.join("month");
    let started = Instant::now();
    write_days(&data, "bench", days, uniform_noise).expect("write the simulated days");
    println!(
        "wrote {days} simulated days in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    println!("\nbytes on disk per day, by table (mean over {days} days):");
    let mut total = 0u64;
    for table in Table::ALL.iter().chain(Table::ROLLUPS.iter()) {
        let bytes = dir_bytes(&data.join(table.name()));
        total += bytes;
        println!("  {:<12} {:>10} B/day", table.name(), bytes / days as u64);
    }
    println!(
        "  {:<12} {:>10} B/day  (target <= 8 MB)",
        "TOTAL",
        total / days as u64
    );

    duckdb_query(&data);
    if keep {
        println!("\ndata kept in {}", data.display());
        std::mem::forget(temp);
    }
}

/// One hour of one host at 1 s, flushed every 10 s as the daemon does: the cost of each
/// flush as the hour fills.
fn flush_cost(dir: &Path, uniform_noise: bool) {
    let mut store = Store::open(StoreOptions::new(dir, "bench")).expect("open store");
    let mut sim = Sim::new(uniform_noise);
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    let mut rss_before_final = 0.0;
    for s in 1..=3600 + 600 {
        let t = DAY_START + s * SEC;
        if s == 3600 + 290 {
            // The finished hour's final (strongest) writes and roll-ups come next: their
            // memory peak is the daemon's hourly one.
            rss_before_final = reset_peak_rss_mib();
        }
        sim.second(&mut store, t);
        if s % 10 == 0 {
            let (started, cpu0) = (Instant::now(), thread_cpu_ms());
            let errors = store.flush(t);
            wall.push(started.elapsed().as_secs_f64() * 1e3);
            cpu.push(thread_cpu_ms() - cpu0);
            assert!(errors.is_empty());
        }
    }
    let stats = |v: &[f64]| {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        (mean, v.iter().cloned().fold(0.0, f64::max))
    };
    let ((wall_mean, wall_max), (cpu_mean, cpu_max)) = (stats(&wall), stats(&cpu));
    println!(
        "flush every 10 s over 70 simulated minutes (all tables, roll-ups at the hour's end):\n  \
         CPU mean {cpu_mean:.2} ms, max {cpu_max:.2} ms => {:.3} % of a core; \
         wall (with fsync) mean {wall_mean:.2} ms, max {wall_max:.2} ms",
        cpu_mean / 10_000.0 * 100.0
    );
    // Flush i ran at second 10 (i + 1): how the cost grows through the hour.
    let mean_cpu = |seconds: std::ops::Range<usize>| {
        let v = &cpu[seconds.start / 10..seconds.end / 10];
        v.iter().sum::<f64>() / v.len() as f64
    };
    println!(
        "  CPU per flush through the hour: {:.2} ms in its first 10 minutes, {:.2} ms in its \
         last 10 minutes",
        mean_cpu(0..600),
        mean_cpu(3000..3590)
    );
    println!(
        "  memory: RSS {rss_before_final:.1} MiB before the finished hour's final writes, \
         peak {:.1} MiB during them",
        status_mib("VmHWM:")
    );
}

/// Resets the process's RSS high-water mark (`/proc/self/clear_refs`) and returns the
/// current RSS, in MiB.
fn reset_peak_rss_mib() -> f64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_mib("VmRSS:")
}

/// A `kB` field of `/proc/self/status`, in MiB.
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn thread_cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a local timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

fn duckdb_query(data: &Path) {
    let script = format!(
        r#"
import time, duckdb
con = duckdb.connect()
for table in ("cpu", "cpu_1m"):
    q = f"""
      select date, uid, any_value("user") as "user", sum(cpu_ns) / 1e9 as cpu_s
      from read_parquet('{data}/{{table}}/**/*.parquet', hive_partitioning = true)
      group by date, uid order by date, uid"""
    con.execute(q).fetchall()  # warm the file cache
    best = 1e9
    for _ in range(3):
        t = time.perf_counter(); rows = con.execute(q).fetchall(); best = min(best, time.perf_counter() - t)
    print(f"duckdb per-user daily totals from {{table}}: {{len(rows)}} rows in {{best*1000:.0f}} ms")
"#,
        data = data.display()
    );
    match Command::new("python3").arg("-c").arg(script).status() {
        Ok(s) if s.success() => {}
        other => println!("duckdb query not run ({other:?}); pip install duckdb"),
    }
}
