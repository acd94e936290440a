//! Writes ping rows with known loss, RTTs and outages through the real `Store`, reads them
//! back with the store's reader, and prints the Rust definitions' answers as JSON: per
//! target the loss % (`stats::loss_pct`), the nearest-rank RTT percentiles
//! (`stats::quantile_sorted`) and the outages (`outages::outages`), the very calls
//! `csm report`, the roll-ups and the charts make. `analysis/tests/test_definitions.py`
//! runs it and holds the Python and SQL definitions of `analysis/` equal to these answers
//! on the same files.
//!
//! `definitions --data-dir DIR [--host NAME]` (the host defaults to `defs`).

use std::collections::BTreeMap;

use csm_store::{read_rows, PingRow, Store, StoreOptions, Table};

const S: i64 = 1_000_000;
/// 2026-11-18 11:20:00 UTC: a whole minute, in the past.
const T0: i64 = 1_795_000_800 * S;

fn main() {
    let mut data_dir = None;
    let mut host = "defs".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--data-dir", Some(v)) => data_dir = Some(v),
            ("--host", Some(v)) => host = v,
            (other, _) => fail(2, &format!("bad argument {other}")),
        }
    }
    let Some(data_dir) = data_dir else {
        fail(2, "--data-dir is required")
    };
    write(&data_dir, &host);
    let rows = read_back(&data_dir);
    println!("{}", answers(&rows));
}

fn fail(code: i32, message: &str) -> ! {
    eprintln!("definitions: {message}");
    std::process::exit(code)
}

/// One measurement: `sent` echoes, these replies (RTTs in ms), an error or none.
fn row(ts_us: i64, target: &str, sent: i64, rtts: &[f64], error: Option<&str>) -> PingRow {
    let mean = (!rtts.is_empty()).then(|| rtts.iter().sum::<f64>() / rtts.len() as f64);
    PingRow {
        ts_us,
        target: target.into(),
        addr: error.is_none().then(|| "192.0.2.1".to_string()),
        sent,
        received: rtts.len() as i64,
        rtt_min_ms: rtts.iter().copied().reduce(f64::min),
        rtt_avg_ms: mean,
        rtt_max_ms: rtts.iter().copied().reduce(f64::max),
        rtt_mdev_ms: None,
        rtts_ms: rtts.to_vec(),
        error: error.map(str::to_string),
    }
}

/// Three targets: `a` with partial loss, uneven steps, a closed and an ongoing outage and
/// RTTs whose p99 differs between nearest rank and the interpolating or floor-index
/// quantiles; `b` never resolved (nothing sent: no loss figure, one ongoing outage); `c`
/// always up, eleven distinct RTTs.
fn write(data_dir: &str, host: &str) {
    let mut store = Store::open(StoreOptions::new(data_dir, host))
        .unwrap_or_else(|err| fail(1, &format!("{data_dir}: {err}")));
    let a: [(i64, &[f64]); 10] = [
        (0, &[1.0, 2.0, 3.0]),
        (10, &[4.0, 5.0]),
        (20, &[]),
        (27, &[]),
        (34, &[6.0, 7.0, 8.0]),
        (41, &[9.0]),
        (136, &[]),
        (139, &[10.0, 20.5, 30.25]),
        (142, &[]),
        (145, &[]),
    ];
    for (t, rtts) in a {
        store.push(row(T0 + t * S, "a", 3, rtts, None));
    }
    for i in 0..4 {
        store.push(row(
            T0 + i * 60 * S,
            "b",
            0,
            &[],
            Some("name does not resolve"),
        ));
    }
    let c: Vec<f64> = (1..=11).map(|i| f64::from(i) * 0.5 + 0.125).collect();
    for (i, chunk) in c.chunks(4).enumerate() {
        store.push(row(T0 + i as i64 * 30 * S, "c", 4, chunk, None));
    }
    let lost = store.flush(T0 + 3600 * S);
    if !lost.is_empty() {
        fail(1, &format!("flush failed: {lost:?}"));
    }
}

/// Every ping row of the data dir, by the store's reader, in time order.
fn read_back(data_dir: &str) -> Vec<PingRow> {
    let mut rows = Vec::new();
    let files = csm_store::table_files(std::path::Path::new(data_dir), Table::Ping)
        .unwrap_or_else(|err| fail(1, &format!("{data_dir}: {err}")));
    for path in files {
        match read_rows::<PingRow>(&path) {
            Ok(read) => rows.extend(read),
            Err(err) => fail(1, &format!("{}: {err}", path.display())),
        }
    }
    rows.sort_by_key(|r| r.ts_us);
    rows
}

/// The answers as one JSON object, targets by name.
fn answers(rows: &[PingRow]) -> String {
    let mut by_target: BTreeMap<&str, Vec<&PingRow>> = BTreeMap::new();
    for r in rows {
        by_target.entry(&r.target).or_default().push(r);
    }
    let targets: Vec<String> = by_target
        .iter()
        .map(|(target, rows)| format!("{}: {}", json_str(target), target_answers(rows)))
        .collect();
    format!("{{{}}}", targets.join(", "))
}

fn target_answers(rows: &[&PingRow]) -> String {
    use csm_store::stats::{loss_pct, quantile_sorted};
    let sent = rows.iter().map(|r| r.sent).sum();
    let received = rows.iter().map(|r| r.received).sum();
    let mut rtts: Vec<f64> = rows.iter().flat_map(|r| r.rtts_ms.clone()).collect();
    rtts.sort_unstable_by(f64::total_cmp);
    let outages: Vec<String> = csm_store::outages::of_rows(rows.iter().copied())
        .iter()
        .map(|o| {
            format!(
                "{{\"start_us\": {}, \"end_us\": {}, \"duration_s\": {}, \"measurements\": {}, \"ongoing\": {}}}",
                o.start_us,
                o.end_us.map_or_else(|| "null".to_string(), |v| v.to_string()),
                o.duration_us() as f64 / 1e6,
                o.measurements,
                o.ongoing()
            )
        })
        .collect();
    format!(
        "{{\"sent\": {sent}, \"received\": {received}, \"loss_pct\": {}, \"rtt_p50_ms\": {}, \
         \"rtt_p90_ms\": {}, \"rtt_p99_ms\": {}, \"rtt_max_ms\": {}, \"outages\": [{}]}}",
        json_opt(loss_pct(sent, received)),
        json_opt(quantile_sorted(&rtts, 0.5)),
        json_opt(quantile_sorted(&rtts, 0.9)),
        json_opt(quantile_sorted(&rtts, 0.99)),
        json_opt(rtts.last().copied()),
        outages.join(", ")
    )
}

/// A number as JSON (Rust's shortest round-trip form), `null` for none.
fn json_opt(value: Option<f64>) -> String {
    value.map_or_else(|| "null".to_string(), |v| format!("{v:?}"))
}

/// A plain target name as a JSON string (the fixture's names need no escapes).
fn json_str(text: &str) -> String {
    format!("\"{text}\"")
}
