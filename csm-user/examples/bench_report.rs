//! `csm report` benchmark: 30 simulated days of 20 users and 4 interfaces (csm-store's
//! simulated host, the one `bench_store` writes), then the time of `csm report` over the
//! whole month (the 1-minute roll-ups), over one day, and over the last hour (raw rows),
//! each the median of 5 runs of the real binary.
//!
//! `cargo xtask bench report`, or `cargo run --release -p csm-user --example bench_report
//! -- [--days N] [--dir DIR]` with `target/release/csm` built.
//! Target: the month in under 1 s.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use csm::report::rfc3339;
use csm_store::sim::{write_days, DAY_START, SEC};

fn main() {
    let mut days = 30;
    let mut dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--days" => days = args.next().and_then(|v| v.parse().ok()).unwrap_or(days),
            "--dir" => dir = args.next().map(PathBuf::from),
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
    let started = Instant::now();
    write_days(&data, "bench", days, false).expect("write the simulated days");
    println!(
        "wrote {days} simulated days (20 users, 4 interfaces, 2 ping targets) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let csm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/csm");
    let end = DAY_START + days * 86_400 * SEC;
    for (what, from) in [
        ("the whole month (roll-ups)", DAY_START),
        ("the last day (roll-ups)", end - 86_400 * SEC),
        ("the last hour (raw rows)", end - 3600 * SEC),
    ] {
        let mut times: Vec<f64> = (0..5)
            .map(|_| time_report(&csm, &data, from, end + SEC))
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "csm report over {what}: median {:.3} s (min {:.3}, max {:.3}){}",
            times[2],
            times[0],
            times[4],
            if from == DAY_START {
                "  (target < 1 s)"
            } else {
                ""
            }
        );
    }
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
