//! The ping monitor end to end, as root: the real `csm` binary runs inside a network
//! namespace of the test's own (no default route, resolver on its own loopback) and
//! pings only addresses inside the test's namespaces or 127.0.0.0/8; its Parquet output
//! is read back and checked against iputils `ping` and the known timeline.
//!
//! Addresses: 198.18.0.0/15 and 2001:2::/48 (benchmarking ranges) on veth pairs between
//! the test's namespaces; 192.0.2.7 (TEST-NET-1) as the address with no route.

use std::thread::sleep;
use std::time::{Duration, Instant};

use csm::store::PingRow;
use csm_tests::ping::{median, of, outages, parse_system_ping, rss_kib};
use csm_tests::{now_us, Daemon, DataDir, Ipv6, Link, Netns};

const SECOND: i64 = 1_000_000;

/// `csm run` inside `ns` with this config for `duration`, not waited for: the test's
/// timeline starts as it is spawned.
fn csm_in(ns: &Netns, data: &DataDir, config: &str, duration: &str) -> Daemon {
    Daemon::builder()
        .netns(ns)
        .data_dir(data)
        .arg("--config")
        .arg(data.config(config))
        .args(["--duration", duration])
        .spawn()
}

fn sleep_until(at: Instant) {
    sleep(at.saturating_duration_since(Instant::now()));
}

/// Where in its second (µs) a row's measurement started: the schedule's lateness.
fn offset_us(row: &PingRow) -> i64 {
    row.ts_us.rem_euclid(SECOND)
}

/// All rows but the last: the measurement in flight when `--duration` ends is written
/// with what it has by then (fewer echoes sent), as it should be.
fn but_last<'a>(rows: &'a [&'a PingRow]) -> &'a [&'a PingRow] {
    let last = rows.last().expect("no rows");
    assert!(last.sent <= 3 && last.received <= last.sent, "{last:?}");
    &rows[..rows.len() - 1]
}

/// Rows of a 1 s target follow each other at 1 s, without a missed or doubled slot.
fn assert_one_second_apart(rows: &[&PingRow]) {
    for pair in rows.windows(2) {
        let step = pair[1].ts_us - pair[0].ts_us;
        assert!(
            (900_000..=1_100_000).contains(&step),
            "{}: rows {} µs apart at {}",
            pair[0].target,
            step,
            pair[1].ts_us
        );
    }
}

#[test]
fn answers_like_system_ping_then_outage_and_recovery() {
    csm_tests::require_root();
    let link = Link::new("a", Ipv6::On);
    link.address("198.18.1.1/30", "198.18.1.2/30");
    let data = DataDir::new();
    let config = "[ping]\ninterval = \"1s\"\ncount = 3\ntargets = [\"198.18.1.2\"]\n";
    let start = Instant::now();
    let csm = csm_in(&link.client, &data, config, "42s");

    // iputils ping at the same time, 20 echoes 200 ms apart.
    sleep_until(start + Duration::from_secs(3));
    let sys_from = now_us();
    let sys = link
        .client
        .command("ping")
        .args(["-n", "-q", "-c", "20", "-i", "0.2", "198.18.1.2"])
        .output()
        .expect("iputils ping (apt-get install iputils-ping)");
    let sys_to = now_us();
    let sys_text = String::from_utf8_lossy(&sys.stdout).to_string();
    let (sys_min, sys_avg, sys_max, _) =
        parse_system_ping(&sys_text).unwrap_or_else(|| panic!("ping said: {sys_text}"));

    sleep_until(start + Duration::from_secs(12));
    let down_at = now_us();
    link.set_server_link(false);
    sleep_until(start + Duration::from_secs(32));
    let up_at = now_us();
    link.set_server_link(true);
    csm.wait();

    let rows = data.rows::<PingRow>();
    let rows = of(&rows, "198.18.1.2");
    assert!(rows.len() >= 38, "{} rows: {rows:?}", rows.len());
    assert_one_second_apart(&rows);
    for row in but_last(&rows) {
        assert_eq!(row.addr.as_deref(), Some("198.18.1.2"));
        assert_eq!(row.sent, 3, "{row:?}");
    }

    // Before the link went down every echo was answered, as fast as iputils saw it.
    let before: Vec<_> = rows.iter().filter(|r| r.ts_us + SECOND < down_at).collect();
    assert!(before.len() >= 9, "{before:?}");
    assert!(before.iter().all(|r| r.received == r.sent), "{before:?}");
    let mut ours: Vec<f64> = rows
        .iter()
        .filter(|r| r.ts_us >= sys_from && r.ts_us < sys_to)
        .flat_map(|r| r.rtts_ms.iter().copied())
        .collect();
    assert!(ours.len() >= 9, "{ours:?}");
    let ours_median = median(&mut ours);
    eprintln!(
        "RTT ms: csm median {ours_median:.3} (min {:.3}, max {:.3}, n {}); iputils \
         min/avg/max {sys_min:.3}/{sys_avg:.3}/{sys_max:.3}",
        ours[0],
        ours[ours.len() - 1],
        ours.len()
    );
    assert!(
        (ours_median - sys_avg).abs() < 0.25,
        "csm median {ours_median} ms vs iputils avg {sys_avg} ms"
    );

    // While it was down: no replies. The row started just before the cut may be partial.
    let down: Vec<_> = rows
        .iter()
        .filter(|r| r.ts_us >= down_at && r.ts_us + SECOND <= up_at)
        .collect();
    assert!(down.len() >= 18, "{down:?}");
    assert!(down.iter().all(|r| r.received == 0), "{down:?}");

    // Recovery: answered again from the first or second measurement after the link came up.
    let after: Vec<_> = rows.iter().filter(|r| r.ts_us >= up_at).collect();
    assert!(after.len() >= 8, "{after:?}");
    assert!(after[..2].iter().any(|r| r.received > 0), "{after:?}");
    assert!(after[2..].iter().all(|r| r.received == r.sent), "{after:?}");

    // The outage query finds exactly this outage, to the measurement interval.
    let found = outages(data.path());
    eprintln!("outages: {found:?} (link down at {down_at}, up at {up_at})");
    assert_eq!(found.len(), 1, "{found:?}");
    let o = &found[0];
    assert_eq!(o.target, "198.18.1.2");
    assert!(!o.ongoing);
    assert!((o.start_us - down_at).abs() <= SECOND, "{o:?}");
    // The measurement started up to one interval before the link came back may already
    // get its later echoes answered; one re-learning the neighbour may still miss.
    let end = o.end_us.unwrap();
    assert!(end >= up_at - SECOND && end <= up_at + 2 * SECOND, "{o:?}");
    assert!((18.5..=21.5).contains(&o.duration_s), "{o:?}");
    assert!((19..=21).contains(&o.measurements), "{o:?}");
}

#[test]
fn bad_targets_give_rows_and_the_others_keep_their_schedule() {
    csm_tests::require_root();
    let link = Link::new("b", Ipv6::On);
    link.address("198.18.2.1/29", "198.18.2.2/29");
    link.server
        .ip(&["addr", "add", "198.18.2.3/29", "dev", &link.server_if]);
    link.address("2001:2::1/64", "2001:2::2/64");
    // A name only this namespace knows, moved to another address mid-run.
    link.client.write_etc("hosts", "198.18.2.2 csmping-moved\n");
    let data = DataDir::new();
    let config = "[ping]\ninterval = \"1s\"\ncount = 3\n\
         targets = [\"198.18.2.2\", \"2001:2::2\", \"192.0.2.7\", \"csmping-moved\"]\n\
         [[ping.target]]\nhost = \"does-not-exist.invalid\"\ninterval = \"2s\"\n";
    let start = Instant::now();
    let from = now_us();
    let csm = csm_in(&link.client, &data, config, "10s");
    // Move it half-way between two measurements, so which address each row used is clear.
    sleep_until(start + Duration::from_secs(5));
    let to_mid_second = (1_500_000 - now_us().rem_euclid(SECOND)) % SECOND;
    sleep(Duration::from_micros(to_mid_second as u64));
    let moved_at = now_us();
    link.client.write_etc("hosts", "198.18.2.3 csmping-moved\n");
    csm.wait();
    let to = now_us();
    let rows = data.rows::<PingRow>();

    let invalid = of(&rows, "does-not-exist.invalid");
    assert!((4..=5).contains(&invalid.len()), "{invalid:?}");
    for row in &invalid {
        assert_eq!((row.sent, row.received, row.addr.as_deref()), (0, 0, None));
        let error = row.error.as_deref().unwrap_or_default();
        assert!(error.starts_with("name does not resolve"), "{row:?}");
    }
    for pair in invalid.windows(2) {
        assert_eq!((pair[1].ts_us - pair[0].ts_us + SECOND / 2) / SECOND, 2);
    }

    let unroutable = of(&rows, "192.0.2.7");
    for row in &unroutable {
        assert_eq!((row.sent, row.received), (0, 0), "{row:?}");
        assert_eq!(row.addr.as_deref(), Some("192.0.2.7"));
        let error = row.error.as_deref().unwrap_or_default();
        assert!(error.starts_with("network unreachable"), "{row:?}");
    }

    let v6 = of(&rows, "2001:2::2");
    for row in but_last(&v6) {
        assert_eq!((row.sent, row.received), (3, 3), "{row:?}");
        assert_eq!(row.addr.as_deref(), Some("2001:2::2"));
        assert_eq!(row.error, None);
    }

    let moved = of(&rows, "csmping-moved");
    for addr in ["198.18.2.2", "198.18.2.3"] {
        let n = moved
            .iter()
            .filter(|r| r.addr.as_deref() == Some(addr))
            .count();
        assert!(n >= 3, "{n} rows pinged {addr}: {moved:?}");
    }
    for row in but_last(&moved) {
        assert_eq!((row.sent, row.received), (3, 3), "{row:?}");
        let want = if row.ts_us < moved_at {
            "198.18.2.2"
        } else {
            "198.18.2.3"
        };
        assert_eq!(row.addr.as_deref(), Some(want), "{row:?}");
    }

    // Every 1 s target kept its slots: about one row per second of the run, each
    // started shortly after its whole second.
    let seconds = ((to - from) / SECOND) as usize;
    for target in ["198.18.2.2", "2001:2::2", "192.0.2.7", "csmping-moved"] {
        let rows = of(&rows, target);
        assert!(rows.len() + 2 >= seconds, "{target}: {} rows", rows.len());
        assert_one_second_apart(&rows);
        let late = rows.iter().map(|r| offset_us(r)).max().unwrap();
        assert!(
            late < 100_000,
            "{target}: a measurement started {late} µs late"
        );
    }
}

#[test]
fn two_hundred_targets_hold_their_schedule_and_memory() {
    csm_tests::require_root();
    let ns = Netns::new("c", Ipv6::On);
    let targets: Vec<String> = (1..=200)
        .map(|i| format!("\"127.0.{}.{}\"", i / 100, i % 100 + 1))
        .collect();
    let data = DataDir::new();
    let config = format!(
        "[ping]\ninterval = \"1s\"\ncount = 3\ntargets = [{}]\n",
        targets.join(", ")
    );
    let start = Instant::now();
    let csm = csm_in(&ns, &data, &config, "60s");
    let pid = csm.pid();
    let mut rss = Vec::new();
    for s in (5..=55).step_by(5) {
        sleep_until(start + Duration::from_secs(s));
        rss.push((s, rss_kib(pid).unwrap_or(0)));
    }
    csm.wait();
    let rows = data.rows::<PingRow>();
    eprintln!("RSS KiB at seconds: {rss:?}; {} rows", rows.len());

    let mut offsets_first = Vec::new();
    let mut offsets_last = Vec::new();
    let first_ts = rows.iter().map(|r| r.ts_us).min().unwrap();
    let last_ts = rows.iter().map(|r| r.ts_us).max().unwrap();
    let (mut sent, mut received) = (0, 0);
    for target in &targets {
        let target = target.trim_matches('"');
        let rows = of(&rows, target);
        assert!(rows.len() >= 57, "{target}: {} rows", rows.len());
        assert_one_second_apart(&rows);
        for row in rows {
            sent += row.sent;
            received += row.received;
            let offset = offset_us(row) as f64 / 1000.0;
            if row.ts_us < first_ts + 10 * SECOND {
                offsets_first.push(offset);
            } else if row.ts_us > last_ts - 10 * SECOND {
                offsets_last.push(offset);
            }
        }
    }
    let first = median(&mut offsets_first);
    let last = median(&mut offsets_last);
    let worst = offsets_first
        .iter()
        .chain(&offsets_last)
        .fold(0.0f64, |a, &b| a.max(b));
    eprintln!(
        "start lateness ms: median first 10 s {first:.2}, last 10 s {last:.2}, worst {worst:.1}; \
         received {received}/{sent}"
    );
    assert!(
        last - first < 20.0,
        "schedule drifts: {first} ms → {last} ms"
    );
    assert!(worst < 250.0, "a measurement started {worst} ms late");
    assert!(received * 100 >= sent * 99, "{received}/{sent} replies");

    // The store keeps the current hour's rows in memory (≈ 12 000 rows a minute here),
    // so RSS may grow by that much; a leak per echo or per task would be far larger.
    let at = |s: u64| rss.iter().find(|(t, _)| *t == s).unwrap().1;
    let growth = at(55).saturating_sub(at(15));
    assert!(at(15) > 0 && growth < 16 * 1024, "RSS {rss:?}");
}
