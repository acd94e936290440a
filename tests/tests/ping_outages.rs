//! The outage query (`analysis/queries/ping_outages.sql`) on rows written by the real
//! store, with known outages, and `csm report`'s outages (csm-store's one definition, which
//! the ping chart draws too) equal to the query's to the microsecond. Needs python3 with
//! duckdb, not root.

use csm::daemon::tasks::ping::ping_row;
use csm::model::ping::Measurement;
use csm::store::{Store, StoreOptions};
use csm_tests::ping::outages;
use csm_tests::{run_csm, DataDir};

const S: i64 = 1_000_000;
/// 2026-11-18 11:20:00 UTC: a whole minute, in the past.
const T0: i64 = 1_795_000_800 * S;

fn measurement(up: bool, error: Option<&str>) -> Measurement {
    Measurement {
        addr: error.is_none().then(|| "192.0.2.1".to_string()),
        sent: if error.is_some() { 0 } else { 3 },
        rtts_ms: if up { vec![1.0, 1.1, 0.9] } else { vec![] },
        error: error.map(str::to_string),
    }
}

#[test]
fn outages_have_start_end_length_and_count() {
    let data = DataDir::new();
    let mut store = Store::open(StoreOptions::new(data.path().to_path_buf(), "h1")).unwrap();
    // Target a, every 10 s: up 0..50, down 50..120 (7 measurements), up 120..150,
    // down from 150 to the end (ongoing, 2 measurements).
    for i in 0..17 {
        let t = T0 + i * 10 * S;
        let up = !(5..12).contains(&i) && i < 15;
        store.push(ping_row(t, "a", measurement(up, None)));
    }
    // Target b never resolves: one ongoing outage of 4 measurements, every 60 s.
    for i in 0..4 {
        let t = T0 + i * 60 * S;
        let m = measurement(false, Some("name does not resolve"));
        store.push(ping_row(t, "b", m));
    }
    // Target c is always up: no outage.
    store.push(ping_row(T0, "c", measurement(true, None)));
    assert!(store.flush(T0).is_empty());

    let found = outages(data.path());
    let summary: Vec<_> = found
        .iter()
        .map(|o| {
            (
                o.target.as_str(),
                o.start_us,
                o.end_us,
                o.duration_s,
                o.measurements,
                o.ongoing,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("a", T0 + 50 * S, Some(T0 + 120 * S), 70.0, 7, false),
            ("a", T0 + 150 * S, None, 20.0, 2, true),
            ("b", T0, None, 240.0, 4, true),
        ]
    );
}

/// `csm report`'s outages over the same rows equal the SQL query's, field by field.
#[test]
fn the_report_and_the_query_find_the_same_outages() {
    let data = DataDir::new();
    let mut store = Store::open(StoreOptions::new(data.path().to_path_buf(), "h1")).unwrap();
    // Uneven steps (10 s, 7 s, a 95 s gap, 3 s), a one-measurement outage, an ongoing one
    // at the end, and a target whose only measurement failed (ongoing, 0 s).
    let mut t = T0;
    for (i, up) in [
        true, false, false, true, false, true, true, false, false, false,
    ]
    .into_iter()
    .enumerate()
    {
        store.push(ping_row(t, "a", measurement(up, None)));
        t += match i {
            0..=2 => 10 * S,
            3..=5 => 7 * S,
            6 => 95 * S,
            _ => 3 * S,
        };
    }
    store.push(ping_row(
        T0,
        "b",
        measurement(false, Some("name does not resolve")),
    ));
    assert!(store.flush(T0).is_empty());

    let sql = outages(data.path());
    let to = csm::report::rfc3339(T0 + 3600 * S);
    let out = run_csm([
        "report",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--from",
        &csm::report::rfc3339(T0),
        "--to",
        &to,
        "--format",
        "json",
        "ping",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let us = |v: &serde_json::Value| v.as_str().map(parse_us);
    let mut from_report = Vec::new();
    for target in report["ping"].as_array().unwrap() {
        for o in target["outages"].as_array().unwrap() {
            from_report.push((
                target["target"].as_str().unwrap().to_string(),
                us(&o["start_ts"]).unwrap(),
                us(&o["end_ts"]),
                o["duration_s"].as_f64().unwrap(),
                o["measurements"].as_i64().unwrap(),
                o["ongoing"].as_bool().unwrap(),
            ));
        }
    }
    let from_sql: Vec<_> = sql
        .iter()
        .map(|o| {
            (
                o.target.clone(),
                o.start_us,
                o.end_us,
                o.duration_s,
                o.measurements,
                o.ongoing,
            )
        })
        .collect();
    assert_eq!(from_report, from_sql);
    assert_eq!(from_sql.len(), 4, "{from_sql:?}");
}

/// An RFC 3339 time of the report → µs since the epoch.
fn parse_us(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|err| panic!("{text:?}: {err}"))
        .timestamp_micros()
}
