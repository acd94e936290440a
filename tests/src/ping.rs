//! Reading the `ping` table back, running the outage query, and what iputils says.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::array::{
    Array, AsArray, Float64Array, Int64Array, ListArray, StringArray, TimestampMicrosecondArray,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// One `ping` row as read from Parquet.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub ts_us: i64,
    pub target: String,
    pub addr: Option<String>,
    pub sent: i64,
    pub received: i64,
    pub rtt_avg_ms: Option<f64>,
    pub rtts_ms: Vec<f64>,
    pub error: Option<String>,
}

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            parquet_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
}

/// Every row of `<data_dir>/ping`, sorted by (target, ts).
pub fn read_rows(data_dir: &Path) -> Vec<Row> {
    let mut files = Vec::new();
    parquet_files(&data_dir.join("ping"), &mut files);
    let mut rows = Vec::new();
    for file in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&file).unwrap())
            .unwrap_or_else(|err| panic!("{}: {err}", file.display()))
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let col = |name: &str| batch.column_by_name(name).unwrap().clone();
            let ts = col("ts");
            let ts = ts
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap();
            let target = col("target");
            let target = target.as_any().downcast_ref::<StringArray>().unwrap();
            let addr = col("addr");
            let addr = addr.as_any().downcast_ref::<StringArray>().unwrap();
            let sent = col("sent");
            let sent = sent.as_any().downcast_ref::<Int64Array>().unwrap();
            let received = col("received");
            let received = received.as_any().downcast_ref::<Int64Array>().unwrap();
            let avg = col("rtt_avg_ms");
            let avg = avg.as_any().downcast_ref::<Float64Array>().unwrap();
            let rtts = col("rtts_ms");
            let rtts = rtts.as_any().downcast_ref::<ListArray>().unwrap();
            let error = col("error");
            let error = error.as_any().downcast_ref::<StringArray>().unwrap();
            for i in 0..batch.num_rows() {
                let opt_str = |a: &StringArray| (!a.is_null(i)).then(|| a.value(i).to_string());
                let list = rtts.value(i);
                let list = list.as_primitive::<arrow::datatypes::Float64Type>();
                rows.push(Row {
                    ts_us: ts.value(i),
                    target: target.value(i).to_string(),
                    addr: opt_str(addr),
                    sent: sent.value(i),
                    received: received.value(i),
                    rtt_avg_ms: (!avg.is_null(i)).then(|| avg.value(i)),
                    rtts_ms: list.values().to_vec(),
                    error: opt_str(error),
                });
            }
        }
    }
    rows.sort_by(|a, b| (&a.target, a.ts_us).cmp(&(&b.target, b.ts_us)));
    rows
}

/// The rows of one target.
pub fn of<'a>(rows: &'a [Row], target: &str) -> Vec<&'a Row> {
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
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is needed for the DuckDB outage query (pip install duckdb)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "outage query failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
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
