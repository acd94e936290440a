//! Parquet bombs planted as hour files (issue 21 point 4): a file whose row groups decode
//! to 30 million rows while its footer claims a thousand, dictionaries of long strings
//! referenced by every row, and many honest million-row files. `csm report` and
//! `csm-plot` (the real binaries) stay under 256 MB of peak RSS on each and name the file
//! they refused. Needs no root: nothing here runs the daemon.

use std::path::{Path, PathBuf};

use csm::store::bombs;
use csm::store::layout::MICROS_PER_HOUR;
use csm::store::Table;
use csm_tests::{csm_bin, python, DataDir};

/// The bound of the acceptance, in kB.
const PEAK_KB: u64 = 256 * 1024;

/// An hour two hours ago: finished, in every default range.
fn hour() -> i64 {
    chrono::Utc::now().timestamp_micros() / MICROS_PER_HOUR - 2
}

/// Where the part `part` of `table`'s hour goes (created).
fn part(data: &Path, table: Table, hour: i64, part: usize) -> PathBuf {
    bombs::hour_part(data, table, "test", hour, part)
}

/// Runs `program args` from a small Python parent: its peak RSS (ru_maxrss of the
/// child, kB), exit status and stderr. (A child forked from this test would count the
/// test's own peak: it built the bombs.)
fn measured(program: &Path, args: &[&str]) -> (u64, i32, String) {
    let mut argv = vec![program.to_str().unwrap()];
    argv.extend_from_slice(args);
    let out = python(
        "import resource, subprocess, sys\n\
         p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n\
         print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
         print(p.returncode)\n\
         sys.stdout.write(p.stderr.decode())",
        &argv,
        "",
    );
    let mut lines = out.splitn(3, '\n');
    let peak = lines.next().unwrap().trim().parse().unwrap();
    let code = lines.next().unwrap().trim().parse().unwrap();
    (peak, code, lines.next().unwrap_or_default().to_string())
}

fn report(data: &DataDir, section: &str) -> (u64, i32, String) {
    let args = [
        "report",
        section,
        "--data-dir",
        data.path().to_str().unwrap(),
        "--host",
        "test",
        "--from",
        "-4h",
    ];
    measured(&csm_bin("csm"), &args)
}

fn plot(data: &DataDir, chart: &str) -> (u64, i32, String) {
    let out = data.beside("charts");
    let args = [
        "--data-dir",
        data.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--host",
        "test",
        "--from",
        "-4h",
        chart,
    ];
    measured(&csm_bin("csm-plot"), &args)
}

/// Asserts a run stayed under the bound and named `file` as not read, on one line.
fn refused(what: &str, (peak_kb, code, stderr): (u64, i32, String), file: &Path, needle: &str) {
    eprintln!("{what}: peak {peak_kb} kB, exit {code}: {stderr}");
    assert!(peak_kb < PEAK_KB, "{what}: peak RSS {peak_kb} kB");
    let line = stderr
        .lines()
        .find(|l| l.contains(&file.display().to_string()))
        .unwrap_or_else(|| panic!("{what}: {} not named: {stderr}", file.display()));
    assert!(line.contains(needle), "{what}: {line}");
    assert!(line.contains("not read"), "{what}: {line}");
    assert_ne!(code, 101, "{what}: a panic");
}

#[test]
fn row_groups_decoding_to_30_million_rows() {
    let data = DataDir::new();
    let hour = hour();
    // The footer claims 30 million rows (the file's count is the row groups' sum).
    let file = part(data.path(), Table::Net, hour, 0);
    bombs::row_bomb(&file, hour * MICROS_PER_HOUR, 30_000_000, 1000, false).unwrap();
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size < 2 << 20, "{size} bytes");
    let needle = "claims 30000000 rows";
    refused(
        "report, row bomb",
        report(&data, "interfaces"),
        &file,
        needle,
    );
    refused("plot, row bomb", plot(&data, "net"), &file, needle);

    // The row group lies too: a thousand rows claimed, 30 million encoded.
    let lying = part(data.path(), Table::Net, hour, 1);
    bombs::row_bomb(&lying, hour * MICROS_PER_HOUR, 30_000_000, 1000, true).unwrap();
    std::fs::remove_file(&file).unwrap();
    for (what, (peak_kb, code, stderr)) in [
        ("report, lying row group", report(&data, "interfaces")),
        ("plot, lying row group", plot(&data, "net")),
    ] {
        eprintln!("{what}: peak {peak_kb} kB, exit {code}: {stderr}");
        assert!(peak_kb < PEAK_KB, "{what}: peak RSS {peak_kb} kB");
        assert_ne!(code, 101, "{what}: a panic");
    }
}

#[test]
fn dictionaries_of_long_strings() {
    for (rows, len, needle) in [
        (
            1_000_000,
            4096,
            "decodes to more than the 128 MiB a column may hold",
        ),
        (100_000, 100 << 10, "holds a string of 102400 bytes"),
    ] {
        let data = DataDir::new();
        let hour = hour();
        let file = part(data.path(), Table::Events, hour, 0);
        bombs::dictionary_bomb(&file, hour * MICROS_PER_HOUR, rows, len).unwrap();
        let size = std::fs::metadata(&file).unwrap().len();
        assert!(size < 2 << 20, "{size} bytes");
        refused("report, dictionary", report(&data, "gaps"), &file, needle);
        // csm-plot reads the events of every chart's range (when the daemon was down).
        let cpu = part(data.path(), Table::Cpu, hour, 0);
        write_cpu(&cpu, hour);
        refused("plot, dictionary", plot(&data, "cpu"), &file, needle);
    }
}

#[test]
fn many_honest_million_row_files() {
    let data = DataDir::new();
    let hour = hour();
    for n in 0..6 {
        let file = part(data.path(), Table::Net, hour, n);
        bombs::honest_net(&file, hour * MICROS_PER_HOUR, 1_000_000, 16).unwrap();
    }
    // The report folds each row into its interface's line as it reads: every one of the
    // 6 million rows is counted, in what 16 lines take.
    let (peak_kb, code, stderr) = report(&data, "interfaces");
    eprintln!("report, 6 x 1M rows: peak {peak_kb} kB, exit {code}: {stderr}");
    assert!(peak_kb < PEAK_KB, "peak RSS {peak_kb} kB");
    assert_eq!((code, stderr.as_str()), (0, ""));
    let lines = report_json(&data, "interfaces")["interfaces"].clone();
    let lines = lines.as_array().unwrap();
    assert_eq!(lines.len(), 16);
    for line in lines {
        // Interface `fK` has the rows i ≡ K (mod 16) of each file, rx i bytes, tx 2i.
        let k: u64 = line["iface"].as_str().unwrap()[1..].parse().unwrap();
        let rows = (1_000_000 - k).div_ceil(16);
        let rx = 6 * (rows * k + 16 * rows * (rows - 1) / 2);
        assert_eq!(line["rx_bytes"].as_u64(), Some(rx), "{line}");
        assert_eq!(line["tx_bytes"].as_u64(), Some(2 * rx), "{line}");
        assert_eq!(line["rx_packets"].as_u64(), Some(6 * rows), "{line}");
    }
    // csm-plot bins as it reads: it charts all 6 million rows.
    let (peak_kb, code, stderr) = plot(&data, "net");
    eprintln!("plot, 6 x 1M rows: peak {peak_kb} kB, exit {code}: {stderr}");
    assert!(peak_kb < PEAK_KB, "peak RSS {peak_kb} kB");
    assert_eq!(code, 0, "{stderr}");
}

/// A million interface names in one file: what a report folds grows with the names, so
/// it is charged to the command's budget and the file that would take it past is refused
/// in one line, the report staying under 256 MB. csm-plot charts the 32 busiest and sums
/// the others into one set of charts that says how many it sums.
#[test]
fn a_million_interface_names_past_the_command_budget() {
    let data = DataDir::new();
    let hour = hour();
    let file = part(data.path(), Table::Net, hour, 0);
    bombs::honest_net(&file, hour * MICROS_PER_HOUR, 1_000_000, 1_000_000).unwrap();
    let (peak_kb, code, stderr) = report(&data, "interfaces");
    eprintln!("report, 1M interfaces: peak {peak_kb} kB, exit {code}: {stderr}");
    refused_past_the_budget((peak_kb, code, &stderr), std::slice::from_ref(&file));
    // Three more such files: read on three threads, they would each hold a decode window
    // (about 50 MB) and a fold of their own; 247-308 MB before the windows were bounded
    // per command and a refusal stopped the other threads.
    let copies: Vec<PathBuf> = (1..4)
        .map(|n| {
            let copy = part(data.path(), Table::Net, hour, n);
            std::fs::copy(&file, &copy).unwrap();
            copy
        })
        .collect();
    let (peak_kb, code, stderr) = report(&data, "interfaces");
    eprintln!("report, 4 x 1M interfaces: peak {peak_kb} kB, exit {code}: {stderr}");
    let mut files = copies.clone();
    files.push(file.clone());
    refused_past_the_budget((peak_kb, code, &stderr), &files);
    for copy in copies {
        std::fs::remove_file(copy).unwrap();
    }
    let (peak_kb, code, stderr) = plot(&data, "net");
    eprintln!("plot, 1M interfaces: peak {peak_kb} kB, exit {code}: {stderr}");
    assert!(peak_kb < PEAK_KB, "peak RSS {peak_kb} kB");
    assert_eq!(code, 0, "{stderr}");
    let charts = data.beside("charts");
    let traffic: Vec<String> = std::fs::read_dir(&charts)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("net-") && !name.starts_with("net-diff"))
        .filter(|name| !name.starts_with("net-log") && !name.starts_with("net-symlog"))
        .collect();
    assert_eq!(traffic.len(), 33, "{traffic:?}");
    let others = std::fs::read_to_string(charts.join("net-other-interfaces.svg")).unwrap();
    assert!(
        others.contains("the 999968 other interfaces summed (beyond the 32 busiest)"),
        "{}",
        &others[..others.len().min(2000)]
    );
}

/// Three hours of a flood's `events`, a million rows each (a month of `net_folded` rows
/// is about 2.6 million): the gaps and alerts sections fold them as they are read and
/// hold what they print, every gap and alert exact.
#[test]
fn millions_of_events_folded() {
    let data = DataDir::new();
    let hour = hour();
    let hours = [hour - 1, hour, hour + 1];
    for h in hours {
        bombs::event_flood(
            &part(data.path(), Table::Events, h, 0),
            h * MICROS_PER_HOUR,
            1_000_000,
        )
        .unwrap();
    }
    // Data to report on (events alone are the daemon's, not data).
    write_cpu(&part(data.path(), Table::Cpu, hour, 0), hour);
    for section in ["gaps", "alerts"] {
        let (peak_kb, code, stderr) = report(&data, section);
        eprintln!("report {section}, 3 x 1M events: peak {peak_kb} kB, exit {code}: {stderr}");
        assert!(peak_kb < PEAK_KB, "peak RSS {peak_kb} kB");
        assert_eq!((code, stderr.as_str()), (0, ""));
    }
    let second = |h: i64, s: i64| (h * MICROS_PER_HOUR + s * 1_000_000) / 1_000_000;
    let unix = |v: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
            .unwrap()
            .timestamp()
    };
    let gaps = report_json(&data, "gaps")["gaps"].clone();
    let gaps = gaps.as_array().unwrap();
    // A stop at each hour's last second, the next start at the next hour's first; the
    // last stop runs to the end of the range.
    assert_eq!(gaps.len(), 3, "{gaps:?}");
    for (gap, h) in gaps.iter().zip(hours) {
        assert_eq!(unix(&gap["start_ts"]), second(h, 3_599), "{gap}");
    }
    for gap in &gaps[..2] {
        assert_eq!(gap["cause"], "stopped", "{gap}");
        assert_eq!(gap["duration_s"].as_f64(), Some(1.0), "{gap}");
    }
    assert_eq!(gaps[2]["cause"], "not running");
    assert!(gaps[2]["end_ts"].is_null(), "{}", gaps[2]);
    let alerts = report_json(&data, "alerts")["alerts"].clone();
    let alerts = alerts.as_array().unwrap();
    assert_eq!(alerts.len(), 3, "{alerts:?}");
    for (alert, h) in alerts.iter().zip(hours) {
        assert_eq!(alert["name"], "flood");
        assert_eq!(alert["subject"], "uid=1000");
        assert_eq!(unix(&alert["start_ts"]), second(h, 9), "{alert}");
        assert_eq!(unix(&alert["end_ts"]), second(h, 20), "{alert}");
        assert_eq!(alert["duration_s"].as_f64(), Some(11.0), "{alert}");
    }
}

/// Asserts a report stayed under the bound and was refused in one line naming one of
/// `files` and the command's budget.
fn refused_past_the_budget((peak_kb, code, stderr): (u64, i32, &str), files: &[PathBuf]) {
    assert!(peak_kb < PEAK_KB, "peak RSS {peak_kb} kB");
    assert_eq!(code, 1, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        files
            .iter()
            .any(|file| lines[0].contains(&format!("{}: not read", file.display()))),
        "{stderr}"
    );
    assert!(
        lines[0].contains("more than the 128 MiB a command holds"),
        "{stderr}"
    );
}

/// `csm report SECTION --format json` over the test hours (unmeasured).
fn report_json(data: &DataDir, section: &str) -> serde_json::Value {
    let out = std::process::Command::new(csm_bin("csm"))
        .args(["report", section, "--format", "json", "--data-dir"])
        .arg(data.path())
        .args(["--host", "test", "--from", "-4h"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An honest `cpu` file of the hour, so that csm-plot has something to chart.
fn write_cpu(path: &Path, hour: i64) {
    let rows: Vec<csm::store::CpuRow> = (1..3600)
        .map(|s| csm::store::CpuRow {
            ts_us: hour * MICROS_PER_HOUR + s * 1_000_000,
            dur_ms: 1000,
            uid: 0,
            user: Some("root".into()),
            cpu_ns: 1_000_000,
            cpu_pct: 0.1,
            source: csm::store::Source::Proc,
        })
        .collect();
    bombs::honest(path, &rows).unwrap();
}
