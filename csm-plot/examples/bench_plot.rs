//! How fast csm-plot draws a month: 30 days of 1 s data for 20 users and 4 interfaces,
//! stored as the 1-minute roll-ups for the first 29 days and as raw rows for the last day
//! (as the roll-up job leaves the tree), plus ping, mem and events. Times `csm-plot` over
//! the whole month (median of several runs) and reports every SVG's size.
//!
//! `cargo run --release -p csm-plot --example bench_plot`
//! Targets: all charts in under 2 s, each SVG under 1 MB.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use csm_plot::args::{PlotKind, Request};
use csm_store::layout::{self, MICROS_PER_HOUR};
use csm_store::writer::writer_properties;
use csm_store::{CpuRow, MemRow, NetRow, NetUidRow, PingRow, Store, StoreOptions, Table};
use parquet::arrow::ArrowWriter;

/// 2026-10-01T00:00:00Z
const START_US: i64 = 1_790_812_800_000_000;
const DAYS: i64 = 30;
const USERS: i64 = 20;
const IFACES: [&str; 4] = ["eth0", "eth1", "tun0", "wg0"];
const HOST: &str = "benchhost";
const SECOND: i64 = 1_000_000;
const MINUTE: i64 = 60 * SECOND;
const RUNS: usize = 5;

/// A small deterministic noise source (no rand dependency for a benchmark).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Per-user CPU % at a time: a daily wave, noise, and now and then a burst.
fn cpu_pct(user: i64, ts_us: i64, noise: &mut Noise) -> f64 {
    let day = (ts_us as f64 / 86_400e6 * std::f64::consts::TAU).sin();
    let base = 2.0 + 40.0 / (user + 1) as f64;
    (base * (1.0 + 0.5 * day) + noise.next() * 3.0).max(0.0)
}

/// Interface bytes per second: a relay-like symmetric load, a little asymmetry, spikes.
fn net_rates(iface: usize, ts_us: i64, noise: &mut Noise) -> (f64, f64) {
    let day = (ts_us as f64 / 86_400e6 * std::f64::consts::TAU).sin();
    let base = 2e6 / (iface + 1) as f64 * (1.0 + 0.4 * day);
    let spike = if noise.next() < 2e-5 { 1e8 } else { 0.0 };
    let rx = base * (0.9 + 0.2 * noise.next());
    (rx, rx * 1.02 + spike)
}

fn user_name(user: i64) -> String {
    format!("user{user:02}")
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let generated = Instant::now();
    write_rollups(dir.path());
    write_last_day_raw(dir.path());
    println!(
        "generated 30 days in {:.1} s",
        generated.elapsed().as_secs_f64()
    );

    let out = tempfile::tempdir().expect("temp dir");
    let request = Request {
        data_dir: dir.path().to_path_buf(),
        from_us: START_US,
        to_us: START_US + DAYS * 86_400 * SECOND,
        host: Some(HOST.into()),
        out: out.path().to_path_buf(),
        allow_unsafe_out_dir: false,
        plots: PlotKind::ALL.to_vec(),
        tz: csm_plot::zone::Zone::utc(),
        fit_from: false,
    };
    let mut cpu_times: Vec<f64> = Vec::new();
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let cpu_before = cpu_seconds();
            let started = Instant::now();
            let status = csm_plot::run(&request);
            assert_eq!(status, 0, "csm-plot failed");
            cpu_times.push(cpu_seconds() - cpu_before);
            started.elapsed()
        })
        .collect();
    times.sort();
    cpu_times.sort_by(f64::total_cmp);
    let median = times[RUNS / 2];
    println!(
        "CPU time (user+sys, all threads) per run: median {:.3} s; load average now {}",
        cpu_times[RUNS / 2],
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "render all charts, 30 days: median {:.3} s over {RUNS} runs (min {:.3} s, max {:.3} s)",
        median.as_secs_f64(),
        times[0].as_secs_f64(),
        times[RUNS - 1].as_secs_f64()
    );
    report_sizes(out.path());
    // BENCH_PLOT_OUT=dir keeps the month's charts for looking at.
    if let Some(keep) = std::env::var_os("BENCH_PLOT_OUT") {
        std::fs::create_dir_all(&keep).expect("BENCH_PLOT_OUT");
        for entry in std::fs::read_dir(out.path()).expect("out dir").flatten() {
            std::fs::copy(entry.path(), Path::new(&keep).join(entry.file_name())).expect("copy");
        }
    }
    println!(
        "targets: under 2 s {}",
        if median.as_secs_f64() < 2.0 {
            "met"
        } else {
            "MISSED"
        }
    );
}

/// CPU seconds this process has used so far, in all threads: on a machine shared with
/// builds, wall time says more about the neighbours than about csm-plot.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn report_sizes(out: &Path) {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(out)
        .expect("out dir")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().expect("size").len(),
            )
        })
        .collect();
    files.sort();
    let biggest = files.iter().map(|f| f.1).max().unwrap_or(0);
    for (name, size) in &files {
        println!("  {name:<24} {:>8.1} KiB", *size as f64 / 1024.0);
    }
    println!(
        "{} charts, largest {:.1} KiB: under 1 MB {}",
        files.len(),
        biggest as f64 / 1024.0,
        if biggest < 1_000_000 { "met" } else { "MISSED" }
    );
}

/// Writes one hour of a roll-up table, as the roll-up job would.
fn write_hour(data_dir: &Path, table: Table, hour: i64, columns: Vec<ArrayRef>) {
    let batch = RecordBatch::try_new(table.schema(), columns).expect("batch matches schema");
    let (date_dir, hh) =
        layout::hour_location(&layout::table_host_dir(data_dir, table, HOST), hour);
    std::fs::create_dir_all(&date_dir).expect("date dir");
    let file = File::create(date_dir.join(format!("{hh}.parquet"))).expect("file");
    let props = writer_properties(table, HOST);
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
}

fn ts_array(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
}

fn ints(values: Vec<i64>) -> ArrayRef {
    Arc::new(Int64Array::from(values))
}

fn floats(values: Vec<f64>) -> ArrayRef {
    Arc::new(Float64Array::from(values))
}

fn strings(values: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

/// Minute ends of an hour.
fn minutes(hour: i64) -> impl Iterator<Item = i64> {
    (1..=60).map(move |m| hour * MICROS_PER_HOUR + m * MINUTE)
}

fn write_rollups(data_dir: &Path) {
    let first_hour = START_US / MICROS_PER_HOUR;
    let rollup_hours = (DAYS - 1) * 24;
    let mut noise = Noise(7);
    for hour in first_hour..first_hour + rollup_hours {
        write_user_rollups(data_dir, hour, &mut noise);
        write_net_rollup(data_dir, hour, &mut noise);
    }
}

/// cpu_1m, net_uid_1m and mem_1m for one hour: one row per user per minute.
fn write_user_rollups(data_dir: &Path, hour: i64, noise: &mut Noise) {
    let rows: Vec<(i64, i64)> = minutes(hour)
        .flat_map(|ts| (0..USERS).map(move |u| (ts, u)))
        .collect();
    let n = rows.len();
    let ts: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let uids: Vec<i64> = rows.iter().map(|r| 1000 + r.1).collect();
    let names: Vec<String> = rows.iter().map(|r| user_name(r.1)).collect();
    let pct: Vec<f64> = rows.iter().map(|r| cpu_pct(r.1, r.0, noise)).collect();
    let pct_max: Vec<f64> = pct.iter().map(|p| p * (1.2 + noise.next())).collect();
    // The columns cpu_1m and net_uid_1m begin with: ts, dur_ms, uid, user.
    let minute_of_user = |more: Vec<ArrayRef>| -> Vec<ArrayRef> {
        let key = [
            ts_array(ts.clone()),
            ints(vec![60_000; n]),
            ints(uids.clone()),
            strings(names.clone()),
        ];
        key.into_iter().chain(more).collect()
    };
    write_hour(
        data_dir,
        Table::CpuMinute,
        hour,
        minute_of_user(vec![
            ints(pct.iter().map(|p| (p * 6e8) as i64).collect()),
            floats(pct.clone()),
            floats(pct_max),
            strings(vec!["ebpf".into(); n]),
        ]),
    );
    let rx: Vec<i64> = rows
        .iter()
        .map(|r| (6e6 / (r.1 + 1) as f64 * (0.5 + noise.next())) as i64)
        .collect();
    let tx: Vec<i64> = rx.iter().map(|b| b + (noise.next() * 1e5) as i64).collect();
    write_hour(
        data_dir,
        Table::NetUidMinute,
        hour,
        minute_of_user(vec![ints(rx), ints(tx)]),
    );
    let rss: Vec<i64> = rows
        .iter()
        .map(|r| ((200 + 50 * r.1) as f64 * 1048576.0 * (1.0 + 0.1 * noise.next())) as i64)
        .collect();
    write_hour(
        data_dir,
        Table::MemMinute,
        hour,
        vec![
            ts_array(ts),
            ints(uids),
            strings(names),
            ints(vec![6; n]),
            ints(vec![12; n]),
            ints(rss.clone()),
            ints(rss.iter().map(|r| r + 10 * 1048576).collect()),
            Arc::new(Int64Array::from(vec![None::<i64>; n])),
            Arc::new(Int64Array::from(vec![None::<i64>; n])),
        ],
    );
}

/// net_1m for one hour: one row per interface per minute, with the busiest second.
fn write_net_rollup(data_dir: &Path, hour: i64, noise: &mut Noise) {
    let rows: Vec<(i64, usize)> = minutes(hour)
        .flat_map(|ts| (0..IFACES.len()).map(move |i| (ts, i)))
        .collect();
    let n = rows.len();
    let rates: Vec<(f64, f64)> = rows.iter().map(|r| net_rates(r.1, r.0, noise)).collect();
    let rx: Vec<i64> = rates.iter().map(|r| (r.0 * 60.0) as i64).collect();
    let tx: Vec<i64> = rates.iter().map(|r| (r.1 * 60.0) as i64).collect();
    write_hour(
        data_dir,
        Table::NetMinute,
        hour,
        vec![
            ts_array(rows.iter().map(|r| r.0).collect()),
            ints(vec![60_000; n]),
            strings(rows.iter().map(|r| IFACES[r.1].to_string()).collect()),
            ints(rows.iter().map(|r| r.1 as i64 + 2).collect()),
            Arc::new(Int64Array::from(vec![None::<i64>; n])),
            ints(rx.clone()),
            ints(tx.clone()),
            ints(rx.iter().map(|b| b / 1200).collect()),
            ints(tx.iter().map(|b| b / 1200).collect()),
            floats(rates.iter().map(|r| r.0 * 1.5).collect()),
            floats(rates.iter().map(|r| r.1 * 1.5).collect()),
            strings(vec!["ebpf".into(); n]),
        ],
    );
}

/// The last day as `csm run` writes it: 1 s cpu, net and net_uid rows, mem every 10 s,
/// ping every minute for three targets.
fn write_last_day_raw(data_dir: &Path) {
    let mut store = Store::open(StoreOptions::new(data_dir.to_path_buf(), HOST)).expect("store");
    let day_start = START_US + (DAYS - 1) * 86_400 * SECOND;
    let names: Vec<Option<String>> = (0..USERS).map(|u| Some(user_name(u))).collect();
    let mut noise = Noise(11);
    store.event(day_start, csm_store::Event::Start("bench".into()));
    for hour in 0..24 {
        for s in 1..=3600 {
            let ts = day_start + (hour * 3600 + s) * SECOND;
            push_second(&mut store, ts, &names, &mut noise);
        }
        // Flush hour by hour: the writer keeps finished hours only briefly.
        let flushed_until = day_start + (hour + 1) * 3600 * SECOND + 10 * MINUTE;
        assert!(store.flush(flushed_until).is_empty(), "flush failed");
    }
}

fn push_second(store: &mut Store, ts: i64, names: &[Option<String>], noise: &mut Noise) {
    for u in 0..USERS {
        let pct = cpu_pct(u, ts, noise);
        store.push(CpuRow {
            ts_us: ts,
            dur_ms: 1000,
            uid: 1000 + u,
            user: names[u as usize].clone(),
            cpu_ns: (pct * 1e7) as i64,
            cpu_pct: pct,
            source: csm_store::Source::Ebpf,
        });
        let rx = (1e5 / (u + 1) as f64 * (0.5 + noise.next())) as i64;
        store.push(NetUidRow {
            ts_us: ts,
            dur_ms: 1000,
            uid: 1000 + u,
            user: names[u as usize].clone(),
            rx_bytes: rx,
            tx_bytes: rx + 500,
        });
        if ts % (10 * SECOND) == 0 {
            store.push(MemRow {
                ts_us: ts,
                uid: 1000 + u,
                user: names[u as usize].clone(),
                nproc: 6,
                rss_bytes: (200 + 50 * u) * 1_048_576,
                pss_bytes: None,
                swap_bytes: None,
            });
        }
    }
    for (i, iface) in IFACES.iter().enumerate() {
        let (rx, tx) = net_rates(i, ts, noise);
        store.push(NetRow {
            ts_us: ts,
            dur_ms: 1000,
            iface: iface.to_string(),
            ifindex: i as i64 + 2,
            netns: None,
            rx_bytes: rx as i64,
            tx_bytes: tx as i64,
            rx_packets: rx as i64 / 1200,
            tx_packets: tx as i64 / 1200,
            source: csm_store::Source::Ebpf,
            ..Default::default()
        });
    }
    if ts % MINUTE == 0 {
        for (t, target) in ["example.org", "192.0.2.7", "2001:db8::1"]
            .iter()
            .enumerate()
        {
            let rtts: Vec<f64> = (0..3)
                .map(|_| 10.0 * (t + 1) as f64 + noise.next() * 5.0)
                .collect();
            store.push(PingRow {
                ts_us: ts - 3 * SECOND,
                target: target.to_string(),
                addr: None,
                sent: 3,
                received: 3,
                rtt_min_ms: None,
                rtt_avg_ms: None,
                rtt_max_ms: None,
                rtt_mdev_ms: None,
                rtts_ms: rtts,
                error: None,
            });
        }
    }
}
