//! `csm report` benchmark: 30 simulated days of 20 users and 4 interfaces (csm-store's
//! simulated host, the one `bench_store` writes), then the time of `csm report` over the
//! whole month (the 1-minute roll-ups), over one day, and over the last hour (raw rows),
//! each the median of 5 runs of the real binary.
//!
//! `cargo xtask bench report`, or `cargo run --release -p csm-user --example bench_report
//! -- [--days N] [--dir DIR [--reuse]]` with `target/release/csm` built; `--reuse` keeps the
//! days an earlier run wrote under DIR instead of writing them again (6 min here).
//! CSM_BENCH_BINARY: another build of csm, timed interleaved with this one (run for run,
//! same data), so that the two are compared under the same load.
//! Target: the month in under 1 s.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use csm::report::rfc3339;
use csm_store::sim::{write_days, DAY_START, SEC};

fn main() {
    let mut days = 30;
    let mut dir: Option<PathBuf> = None;
    let mut reuse = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--days" => days = args.next().and_then(|v| v.parse().ok()).unwrap_or(days),
            "--dir" => dir = args.next().map(PathBuf::from),
            "--reuse" => reuse = true,
            other => {
                eprintln!("bench_report: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let temp = tempfile::tempdir().expect("temp dir");
    let data = dir
        .unwrap_or_else(|| temp.path().to_path_buf())
        .join("month");
    println!("machine: {}", csm_store::layout::machine());
    if reuse && data.is_dir() {
        println!("reusing the days written under {}", data.display());
    } else {
        let started = Instant::now();
        write_days(&data, "bench", days, false).expect("write the simulated days");
        println!(
            "wrote {days} simulated days (20 users, 4 interfaces, 2 ping targets) in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let csm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/csm");
    let mut builds = vec![("", csm)];
    if let Some(other) = std::env::var_os("CSM_BENCH_BINARY") {
        builds.push((" [CSM_BENCH_BINARY]", PathBuf::from(other)));
    }
    println!("load average before: {}", load_average());
    let end = DAY_START + days * 86_400 * SEC;
    for (what, from) in [
        ("the whole month (roll-ups)", DAY_START),
        ("the last day (roll-ups)", end - 86_400 * SEC),
        ("the last hour (raw rows)", end - 3600 * SEC),
    ] {
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); builds.len()];
        for _ in 0..5 {
            for (build, (_, binary)) in builds.iter().enumerate() {
                times[build].push(time_report(binary, &data, from, end + SEC));
            }
        }
        for ((label, _), mut times) in builds.iter().zip(times) {
            times.sort_by(f64::total_cmp);
            let target = if from == DAY_START {
                "  (target < 1 s)"
            } else {
                ""
            };
            println!(
                "csm report over {what}{label}: median {:.3} s (min {:.3}, max {:.3}){target}",
                times[2], times[0], times[4],
            );
        }
    }
    println!("load average after: {}", load_average());
}

/// The 1, 5 and 15 minute load averages: how busy the shared machine was.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Wall time of one `csm report --format json` over `[from, to)`, output discarded.
fn time_report(csm: &Path, data: &Path, from: i64, to: i64) -> f64 {
    let started = Instant::now();
    let out = Command::new(csm)
        .args(["report", "--data-dir"])
        .arg(data)
        .args([
            "--from",
            &rfc3339(from),
            "--to",
            &rfc3339(to),
            "--tz",
            "utc",
        ])
        .args(["--format", "json", "--by", "day"])
        .output()
        .unwrap_or_else(|err| panic!("run {}: {err} (build it first)", csm.display()));
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "csm report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}
