//! The `ping` table's rows of one target, the outage query run by DuckDB, and what
//! iputils says.

use std::path::{Path, PathBuf};

use csm::store::PingRow;

/// The rows of one target.
pub fn of<'a>(rows: &'a [PingRow], target: &str) -> Vec<&'a PingRow> {
    rows.iter().filter(|r| r.target == target).collect()
}

/// One row of `analysis/queries/ping_outages.sql`.
#[derive(Clone, Debug, PartialEq)]
pub struct Outage {
    pub target: String,
    pub start_us: i64,
    pub end_us: Option<i64>,
    pub duration_s: f64,
    pub measurements: i64,
    pub ongoing: bool,
}

/// The outage query file, from the repository.
pub fn outage_sql() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../analysis/queries/ping_outages.sql")
}

/// Runs the outage query over `data_dir` with DuckDB (Python package `duckdb`).
pub fn outages(data_dir: &Path) -> Vec<Outage> {
    let sql = std::fs::read_to_string(outage_sql()).unwrap();
    let sql = sql.replace("<data-dir>", &data_dir.display().to_string());
    // The query's columns, flattened to tab-separated text for this side to parse.
    let script = r#"
import sys, duckdb
rows = duckdb.sql(sys.stdin.read()).fetchall()
for host, target, start, end, dur, dur_s, n, err, ongoing in rows:
    us = lambda t: "" if t is None else str(int(t.timestamp() * 1_000_000))
    print("\t".join([target, us(start), us(end), repr(dur_s), str(n), str(ongoing)]))
"#;
    crate::python(script, &[], &sql)
        .lines()
        .map(parse_outage)
        .collect()
}

fn parse_outage(line: &str) -> Outage {
    let f: Vec<&str> = line.split('\t').collect();
    Outage {
        target: f[0].to_string(),
        start_us: f[1].parse().unwrap(),
        end_us: (!f[2].is_empty()).then(|| f[2].parse().unwrap()),
        duration_s: f[3].parse().unwrap(),
        measurements: f[4].parse().unwrap(),
        ongoing: f[5] == "True",
    }
}

/// iputils `ping`'s summary: (min, avg, max, mdev) in ms, from its `rtt` line.
pub fn parse_system_ping(output: &str) -> Option<(f64, f64, f64, f64)> {
    let line = output.lines().find(|l| l.contains("min/avg/max"))?;
    let numbers = line.split('=').nth(1)?.trim().split(' ').next()?;
    let v: Vec<f64> = numbers.split('/').filter_map(|x| x.parse().ok()).collect();
    (v.len() == 4).then(|| (v[0], v[1], v[2], v[3]))
}

/// Resident memory of a process in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The median of some values (NaN-free).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_iputils_summary() {
        let out = "--- 10.0.0.2 ping statistics ---\n5 packets transmitted, 5 received, 0% \
                   packet loss, time 801ms\nrtt min/avg/max/mdev = 0.031/0.047/0.070/0.013 ms\n";
        assert_eq!(parse_system_ping(out), Some((0.031, 0.047, 0.070, 0.013)));
    }
}
