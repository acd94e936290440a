//! The outage query (`analysis/queries/ping_outages.sql`) on rows written by the real
//! store, with known outages. Needs python3 with duckdb, not root.

use csm::daemon::tasks::ping::ping_row;
use csm::model::ping::Measurement;
use csm::store::{Store, StoreOptions};
use csm_tests::ping::outages;
use csm_tests::DataDir;

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
