//! Store benchmark: writes simulated days through the real `Store` (1 s interval) and
//! reports bytes on disk per day per table (roll-ups included), the cost of a flush
//! every 10 s through an hour, and the DuckDB time of per-user daily totals.
//!
//! `cargo run --release -p csm-store --example bench_store -- [--days N] [--dir DIR] [--keep]
//! [--uniform-noise] [--flush growing|whole|both]` (`--days 0`: the flush cost alone)
//!
//! The flush cost is measured for the store as it is (`growing`: each flush encodes its
//! new rows as one more row group of the hour's file) and, side by side in the same run
//! (`both`, the default: two stores fed the same rows, flushed one after the other in
//! alternating order), as csm did before (`whole`: the hour's file re-encoded whole at every
//! flush). RSS figures are the process's: run `--flush growing` or `--flush whole` alone to
//! get one store's.
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
    let mut modes = vec![FlushMode::Growing, FlushMode::Whole];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--days" => days = args.next().and_then(|v| v.parse().ok()).unwrap_or(days),
            "--dir" => dir = args.next().map(PathBuf::from),
            "--keep" => keep = true,
            "--uniform-noise" => uniform_noise = true,
            "--flush" => {
                modes = match args.next().as_deref() {
                    Some("growing") => vec![FlushMode::Growing],
                    Some("whole") => vec![FlushMode::Whole],
                    Some("both") => vec![FlushMode::Growing, FlushMode::Whole],
                    other => {
                        eprintln!(
                            "bench_store: --flush takes growing, whole or both, not {other:?}"
                        );
                        std::process::exit(2);
                    }
                }
            }
            other => {
                eprintln!("bench_store: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    println!("machine: {}", csm_store::layout::machine());
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = dir.unwrap_or_else(|| temp.path().to_path_buf());

    flush_cost(&dir.join("flush-cost"), uniform_noise, &modes);
    if days == 0 {
        return;
    }

    let data = dir.join("month");
    let started = Instant::now();
    write_days(&data, "bench", days, uniform_noise).expect("write the simulated days");
    println!(
        "wrote {days} simulated days in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    println!("\nbytes on disk per day, by table (mean over {days} days):");
    let mut total = 0u64;
    for &table in Table::EVERY {
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

#[derive(Clone, Copy, PartialEq)]
enum FlushMode {
    /// Each flush encodes its new rows as one more row group (the store as it is).
    Growing,
    /// Each flush re-encodes the hour's file whole (csm before).
    Whole,
}

impl FlushMode {
    fn name(self) -> &'static str {
        match self {
            FlushMode::Growing => "growing (new rows only)",
            FlushMode::Whole => "whole (hour re-encoded)",
        }
    }
}

/// One store fed the simulated host, and what each of its flushes cost.
struct FlushRun {
    mode: FlushMode,
    store: Store,
    sim: Sim,
    wall_ms: Vec<f64>,
    cpu_ms: Vec<f64>,
    bytes: Vec<u64>,
}

/// One hour of one host at 1 s, flushed every 10 s as the daemon does: the cost of each
/// flush as the hour fills, for each mode, side by side.
fn flush_cost(dir: &Path, uniform_noise: bool, modes: &[FlushMode]) {
    let mut runs: Vec<FlushRun> = modes
        .iter()
        .map(|&mode| {
            let mut opts = StoreOptions::new(dir.join(format!("{}", mode as u8)), "bench");
            opts.rewrite_whole_hour_at_flush = mode == FlushMode::Whole;
            FlushRun {
                mode,
                store: Store::open(opts).expect("open store"),
                sim: Sim::new(uniform_noise),
                wall_ms: Vec::new(),
                cpu_ms: Vec::new(),
                bytes: Vec::new(),
            }
        })
        .collect();
    let mut rss_before_final = 0.0;
    let mut held_before_final = Vec::new();
    for s in 1..=3600 + 600 {
        let t = DAY_START + s * SEC;
        if s == 3600 + 290 {
            // The finished hour's final (strongest) writes and roll-ups come next: their
            // memory peak is the daemon's hourly one.
            held_before_final = runs.iter().map(|r| r.store.buffered_file_bytes()).collect();
            rss_before_final = reset_peak_rss_mib();
        }
        for run in runs.iter_mut() {
            run.sim.second(&mut run.store, t);
        }
        if s % 10 == 0 {
            // Alternate which store flushes first: neither always gets the warm caches.
            let n = runs.len();
            for k in 0..n {
                let run = &mut runs[(k + (s / 10) as usize) % n];
                let bytes0 = run.store.bytes_written();
                let (started, cpu0) = (Instant::now(), thread_cpu_ms());
                let errors = run.store.flush(t);
                run.wall_ms.push(started.elapsed().as_secs_f64() * 1e3);
                run.cpu_ms.push(thread_cpu_ms() - cpu0);
                run.bytes.push(run.store.bytes_written() - bytes0);
                assert!(errors.is_empty());
            }
        }
    }
    println!(
        "flush every 10 s over 70 simulated minutes (all tables, roll-ups at the hour's end):"
    );
    let cpu_mean = |run: &FlushRun| mean(&run.cpu_ms);
    for (i, run) in runs.iter().enumerate() {
        report_flush_run(run, held_before_final.get(i).copied().unwrap_or(0));
    }
    if let [growing, whole] = &runs[..] {
        println!(
            "  growing / whole, same run: CPU per flush {:.2}x (mean), {:.2}x in the hour's \
             first 10 minutes, {:.2}x in its last 10 minutes",
            cpu_mean(growing) / cpu_mean(whole),
            mean(window(&growing.cpu_ms, 0..600)) / mean(window(&whole.cpu_ms, 0..600)),
            mean(window(&growing.cpu_ms, 3000..3590)) / mean(window(&whole.cpu_ms, 3000..3590)),
        );
    }
    println!(
        "  memory (this process, every store above): RSS {rss_before_final:.1} MiB before the \
         finished hour's final writes, peak {:.1} MiB during them",
        status_mib("VmHWM:")
    );
}

fn report_flush_run(run: &FlushRun, held_bytes: usize) {
    let (cpu, wall) = (&run.cpu_ms, &run.wall_ms);
    let bytes: Vec<f64> = run.bytes.iter().map(|&b| b as f64).collect();
    let (first, last) = (0..600, 3000..3590);
    println!(
        "  {}:\n    CPU mean {:.2} ms, max {:.2} ms => {:.3} % of a core; wall (with fsync) \
         mean {:.2} ms, max {:.2} ms",
        run.mode.name(),
        mean(cpu),
        max(cpu),
        mean(cpu) / 10_000.0 * 100.0,
        mean(wall),
        max(wall)
    );
    println!(
        "    CPU per flush: first 10 minutes mean {:.2} ms, max {:.2} ms; last 10 minutes \
         mean {:.2} ms, max {:.2} ms; hour's end (final writes, roll-ups) max {:.2} ms",
        mean(window(cpu, first.clone())),
        max(window(cpu, first.clone())),
        mean(window(cpu, last.clone())),
        max(window(cpu, last.clone())),
        max(window(cpu, 3600..4200)),
    );
    println!(
        "    bytes written per flush (data files, each replacement whole): first 10 minutes \
         {:.0} B, last 10 minutes {:.0} B, over the run {:.0} B; files held in memory before \
         the final writes {:.0} KiB",
        mean(window(&bytes, first)),
        mean(window(&bytes, last)),
        mean(&bytes),
        held_bytes as f64 / 1024.0
    );
}

/// The flushes made in the simulated seconds `seconds` (flush i ran at second 10 (i + 1)).
fn window<T>(per_flush: &[T], seconds: std::ops::Range<usize>) -> &[T] {
    &per_flush[seconds.start / 10..(seconds.end / 10).min(per_flush.len())]
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn max(v: &[f64]) -> f64 {
    v.iter().cloned().fold(0.0, f64::max)
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
