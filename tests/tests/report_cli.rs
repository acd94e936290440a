//! `csm report` on fixture data written through the real store: known rows in, the
//! report's numbers out (JSON, CSV and text), roll-ups for long ranges, and bad input
//! refused with the culprit named. Needs no root.

use std::process::Output;

use csm::store::{
    CpuRow, Event, MemRow, NetRow, NetUidRow, PingRow, Source, Store, StoreOptions, UbcRow,
};
use csm_tests::{run_csm, DataDir};
use serde_json::Value;

const S: i64 = 1_000_000;
/// 2026-11-18 11:20:00 UTC: a whole minute, in the past.
const T0: i64 = 1_795_000_800 * S;
const MIB: i64 = 1 << 20;

fn cpu(ts: i64, uid: i64, user: &str, cpu_ms: i64) -> CpuRow {
    CpuRow {
        ts_us: ts,
        dur_ms: 1000,
        uid,
        user: Some(user.into()),
        cpu_ns: cpu_ms * 1_000_000,
        cpu_pct: cpu_ms as f64 / 10.0,
        source: Source::Ebpf,
    }
}

fn net(ts: i64, netns: i64, rx: i64, tx: i64) -> NetRow {
    NetRow {
        ts_us: ts,
        dur_ms: 1000,
        iface: "eth0".into(),
        ifindex: 2,
        netns: Some(netns),
        rx_bytes: rx,
        tx_bytes: tx,
        rx_packets: 1,
        tx_packets: 2,
        source: Source::Ebpf,
        ..NetRow::default()
    }
}

fn ping(ts: i64, up: bool) -> PingRow {
    let rtts = if up { vec![1.0, 2.0, 3.0] } else { vec![] };
    PingRow {
        ts_us: ts,
        target: "gw".into(),
        addr: Some("192.0.2.1".into()),
        sent: 3,
        received: rtts.len() as i64,
        rtt_min_ms: None,
        rtt_avg_ms: None,
        rtt_max_ms: None,
        rtt_mdev_ms: None,
        rtts_ms: rtts,
        error: (!up).then(|| "timeout".into()),
    }
}

/// Ten minutes from T0 at 1 s: alice 25 % of a core, bob 5 %, carol 1 ms once; alice's
/// memory 100 MiB (200 MiB once) and her sockets 1000 B in / 2000 B out a second; eth0 in
/// two namespaces; gw pinged every 10 s, silent at 120 s and 130 s (a 20 s outage);
/// numproc's failcnt 0 → 3; the daemon started at T0 and stopped at T0 + 600 s.
fn write_fixture(data: &DataDir, finish_hours: bool) {
    let mut store = Store::open(StoreOptions::new(data.path().to_path_buf(), "h1")).unwrap();
    store.event(T0, Event::Start("csm test".into()));
    for s in 1..=600 {
        let ts = T0 + s * S;
        store.push(cpu(ts, 1001, "alice", 250));
        store.push(cpu(ts, 1002, "bob", 50));
        if s == 300 {
            store.push(cpu(ts, 1003, "carol", 1));
        }
        if s % 10 == 0 {
            store.push(MemRow {
                ts_us: ts,
                uid: 1001,
                user: Some("alice".into()),
                nproc: 2,
                rss_bytes: if s == 300 { 200 * MIB } else { 100 * MIB },
                pss_bytes: Some(50 * MIB),
                swap_bytes: None,
            });
            store.push(ping(ts - 10 * S, !(s == 130 || s == 140)));
            store.push(UbcRow {
                ts_us: ts,
                ctid: 101,
                resource: "numproc".into(),
                held: 10,
                maxheld: 20,
                barrier: 100,
                hard_limit: 100,
                failcnt: if s > 300 { 3 } else { 0 },
            });
        }
        store.push(NetUidRow {
            ts_us: ts,
            dur_ms: 1000,
            uid: 1001,
            user: Some("alice".into()),
            rx_bytes: 1000,
            tx_bytes: 2000,
        });
        store.push(net(ts, 4_026_531_840, 10_000, 20_000));
        store.push(net(ts, 4_026_532_000, 1, 0));
    }
    store.event(T0 + 600 * S, Event::Stop("SIGTERM".into()));
    let flushed_at = if finish_hours {
        T0 + 3 * 3600 * S
    } else {
        T0 + 600 * S
    };
    assert!(store.flush(flushed_at).is_empty());
}

fn rfc3339(ts_us: i64) -> String {
    csm::report::rfc3339(ts_us)
}

fn report(data: &DataDir, args: &[&str]) -> Output {
    let mut all = vec!["report", "--data-dir", data.path().to_str().unwrap()];
    if !args.contains(&"--tz") {
        all.extend(["--tz", "utc"]);
    }
    all.extend_from_slice(args);
    run_csm(all)
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "csm report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("csm report --format json prints JSON")
}

fn the_ten_minutes() -> [String; 4] {
    [
        "--from".into(),
        rfc3339(T0),
        "--to".into(),
        rfc3339(T0 + 601 * S),
    ]
}

#[test]
fn known_rows_give_known_numbers_in_json() {
    let data = DataDir::new();
    write_fixture(&data, false);
    let range = the_ten_minutes();
    let mut args: Vec<&str> = range.iter().map(String::as_str).collect();
    args.extend(["--format", "json", "--top", "2"]);
    let r = json(&report(&data, &args));
    assert_eq!(r["host"], "h1");
    assert_eq!(r["rollups"], false);

    let users = &r["users"];
    assert_eq!(users["covered_s"], 600.0);
    let alice = &users["top"][0];
    assert_eq!(alice["user"], "alice");
    assert_eq!(alice["uid"], 1001);
    assert_eq!(alice["cpu_ns"], 150_000_000_000i64);
    assert_eq!(alice["cpu_pct_mean"], 25.0);
    assert_eq!(alice["cpu_pct_peak"], 25.0);
    assert_eq!(alice["rss_bytes_mean"], (59 * 100 + 200) * MIB / 60);
    assert_eq!(alice["rss_bytes_peak"], 200 * MIB);
    assert_eq!(alice["pss_bytes_mean"], 50 * MIB);
    assert_eq!(
        (alice["rx_bytes"].as_i64(), alice["tx_bytes"].as_i64()),
        (Some(600_000), Some(1_200_000))
    );
    assert_eq!(users["top"][1]["user"], "bob");
    assert_eq!(users["top"][1]["cpu_ns"], 30_000_000_000i64);
    assert_eq!(users["rest"]["user"], "(1 others)");
    assert_eq!(users["rest"]["cpu_ns"], 1_000_000);
    assert_eq!(users["total"]["cpu_ns"], 180_001_000_000i64);

    let ifaces = r["interfaces"].as_array().unwrap();
    assert_eq!(
        ifaces.len(),
        2,
        "eth0 of two namespaces stays apart: {ifaces:?}"
    );
    assert_eq!(ifaces[0]["netns"], 4_026_531_840i64);
    assert_eq!(ifaces[0]["rx_bytes"], 6_000_000);
    assert_eq!(ifaces[0]["tx_bytes"], 12_000_000);
    assert_eq!(ifaces[0]["tx_packets"], 1200);
    assert_eq!(ifaces[0]["tx_bytes_per_s_peak"], 20_000.0);
    assert_eq!(ifaces[1]["rx_bytes"], 600);

    let gw = &r["ping"][0];
    assert_eq!(
        (gw["measurements"].as_i64(), gw["sent"].as_i64()),
        (Some(60), Some(180))
    );
    assert_eq!(gw["received"], 174);
    assert_eq!(gw["rtt_p50_ms"], 2.0);
    assert_eq!(gw["rtt_max_ms"], 3.0);
    let outage = &gw["outages"][0];
    assert_eq!(outage["start_ts"], rfc3339(T0 + 120 * S));
    assert_eq!(outage["end_ts"], rfc3339(T0 + 140 * S));
    assert_eq!(outage["duration_s"], 20.0);
    assert_eq!(outage["measurements"], 2);
    assert_eq!(outage["first_error"], "timeout");
    assert_eq!(outage["ongoing"], false);

    let numproc = &r["beancounters"][0];
    assert_eq!(
        (
            numproc["resource"].as_str(),
            numproc["failcnt_growth"].as_i64()
        ),
        (Some("numproc"), Some(3))
    );

    let gaps = r["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0]["start_ts"], rfc3339(T0 + 600 * S));
    assert_eq!(gaps[0]["cause"], "not running");
    assert_eq!(gaps[0]["duration_s"], 1.0);
}

#[test]
fn sections_can_be_chosen_and_csv_carries_the_same_numbers() {
    let data = DataDir::new();
    write_fixture(&data, false);
    let range = the_ten_minutes();
    let mut args: Vec<&str> = range.iter().map(String::as_str).collect();
    args.extend(["--format", "csv", "users", "ping"]);
    let out = report(&data, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let blocks: Vec<&str> = text.split("\n\n").collect();
    assert_eq!(blocks.len(), 3, "users, ping, outages:\n{text}");
    let users: Vec<&str> = blocks[0].lines().collect();
    assert!(
        users[0].starts_with("section,uid,user,cpu_ns,"),
        "{}",
        users[0]
    );
    assert!(
        users[1].starts_with("users,1001,alice,150000000000,25.0,"),
        "{}",
        users[1]
    );
    assert!(
        users
            .last()
            .unwrap()
            .starts_with("users,,total,180001000000,"),
        "{text}"
    );
    assert!(blocks[1].starts_with("section,target,"), "{}", blocks[1]);
    assert!(
        blocks[2].lines().nth(1).unwrap().starts_with("outages,gw,"),
        "{}",
        blocks[2]
    );
    assert!(
        !text.contains("interfaces"),
        "only the sections asked for:\n{text}"
    );
}

#[test]
fn text_is_aligned_tables_with_human_units() {
    let data = DataDir::new();
    write_fixture(&data, false);
    let range = the_ten_minutes();
    let mut args: Vec<&str> = range.iter().map(String::as_str).collect();
    args.extend(["--by", "day"]);
    let out = report(&data, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    println!("{text}");
    assert!(
        text.starts_with("csm report for h1: 2026-11-18 11:20:00 to 2026-11-18 11:30:01 (UTC)\n"),
        "{text}"
    );
    let line = |start: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("no line starting {start:?}:\n{text}"))
    };
    let header = line("user ");
    let alice = line("alice");
    assert!(
        alice.contains("2 min 30 s") && alice.contains("25.0 %"),
        "{alice}"
    );
    assert!(
        alice.contains("102 MiB") && alice.contains("200 MiB"),
        "{alice}"
    );
    // Right-aligned numbers: each column ends where its header ends.
    let end_of = |l: &str, word: &str| l.find(word).map(|i| i + word.len());
    assert_eq!(
        end_of(header, "cpu mean"),
        end_of(alice, "25.0 %"),
        "\n{header}\n{alice}"
    );
    // Namespaces by csm's one label: the host's as `host`, one this machine cannot name by
    // its inode.
    let eth0 = line("host ");
    assert!(line("inode-4026532000").contains("eth0"), "{text}");
    assert!(
        eth0.contains("2026-11-18") && eth0.contains("5.72 MiB") && eth0.contains("11.4 MiB"),
        "{eth0}"
    );
    assert!(line("gw ").contains("3.3 %"), "loss:\n{text}");
    let outage = line("gw  ");
    assert!(
        text.contains("2026-11-18 11:22:00") && text.contains("20 s"),
        "{outage}\n{text}"
    );
    assert!(text.contains("numproc"), "{text}");
    assert!(
        line("2026-11-18 11:30:00").contains("not running"),
        "{text}"
    );
}

#[test]
fn a_long_range_reads_the_rollups_with_the_same_totals() {
    let data = DataDir::new();
    write_fixture(&data, true);
    let (from, to) = (rfc3339(T0 - 3600 * S), rfc3339(T0 + 8 * 3600 * S));
    let r = json(&report(
        &data,
        &["--from", &from, "--to", &to, "--format", "json"],
    ));
    assert_eq!(r["rollups"], true);
    assert_eq!(r["users"]["top"][0]["cpu_ns"], 150_000_000_000i64);
    assert_eq!(r["users"]["total"]["cpu_ns"], 180_001_000_000i64);
    assert_eq!(r["users"]["top"][0]["tx_bytes"], 1_200_000);
    assert_eq!(r["interfaces"][0]["tx_bytes"], 12_000_000);
    assert_eq!(r["interfaces"][0]["tx_bytes_per_s_peak"], 20_000.0);
    // Ping is read raw whatever the range: the outage is exact.
    assert_eq!(r["ping"][0]["outages"][0]["duration_s"], 20.0);
}

#[test]
fn no_data_in_the_range_is_one_line_and_exit_1() {
    let data = DataDir::new();
    write_fixture(&data, false);
    let out = report(&data, &["--from", "2020-01-01", "--to", "2020-01-02"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("csm report: no data for host h1 from 2020-01-01T00:00:00"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_flags_name_the_culprit() {
    let data = DataDir::new();
    let cases: [(&[&str], &str); 5] = [
        (&["--from", "yesterday"], "yesterday"),
        (&["--tz", "Mars/Olympus"], "Mars/Olympus"),
        (&["--by", "week"], "week"),
        (&["--format", "xml"], "xml"),
        (&["--from", "2026-11-20", "--to", "2026-11-19"], "--from"),
    ];
    for (args, culprit) in cases {
        let out = report(&data, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.contains(culprit),
            "{args:?}: the first line names {culprit:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let missing = run_csm(["report", "--data-dir", "/nonexistent/csm", "--tz", "utc"]);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/csm"), "{err}");
}

/// Files planted under the data dir (a FIFO and a link to another file under hour-file
/// names) are skipped with a warning naming them: no hang, nothing read through the link,
/// the numbers unchanged.
#[test]
fn planted_fifos_and_links_are_skipped_and_named() {
    let data = DataDir::new();
    write_fixture(&data, false);
    let hour = data.path().join("cpu/host=h1/date=2026-11-18");
    let fifo = hour.join("11.1.parquet");
    let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    std::os::unix::fs::symlink("/etc/passwd", hour.join("11.2.parquet")).unwrap();
    let range = the_ten_minutes();
    let mut args: Vec<&str> = range.iter().map(String::as_str).collect();
    args.extend(["--format", "json", "users"]);
    let out = report(&data, &args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("11.1.parquet: not a regular file"), "{err}");
    assert!(err.contains("11.2.parquet"), "{err}");
    let r = json(&out);
    assert_eq!(r["users"]["total"]["cpu_ns"], 180_001_000_000i64);
}

/// A section asked for alone reads only its own tables and columns: its numbers are the
/// ones the whole report gives, for short (raw) and long (roll-up) ranges alike, and a
/// range whose only data lies in tables the section does not read still has data (exit 0),
/// while one without any says so (exit 1).
#[test]
fn each_section_alone_prints_what_the_whole_report_prints() {
    let data = DataDir::new();
    write_fixture(&data, true);
    let ranges = [
        the_ten_minutes().to_vec(),
        vec![
            "--from".into(),
            rfc3339(T0 - 3600 * S),
            "--to".into(),
            rfc3339(T0 + 8 * 3600 * S),
        ],
    ];
    for range in ranges {
        let mut args: Vec<&str> = range.iter().map(String::as_str).collect();
        args.extend(["--format", "json", "--by", "hour"]);
        let whole = json(&report(&data, &args));
        for section in ["users", "interfaces", "ping", "beancounters", "gaps"] {
            let alone = json(&report(&data, &[&args[..], &[section]].concat()));
            assert_eq!(alone[section], whole[section], "{section} over {range:?}");
            assert_eq!(
                alone["rollups"], whole["rollups"],
                "{section} over {range:?}"
            );
        }
    }
    // Nothing but the daemon's events in the range: no data, whatever the section.
    let (from, to) = (rfc3339(T0 + 700 * S), rfc3339(T0 + 800 * S));
    for section in ["gaps", "ping", "users"] {
        let out = report(&data, &["--from", &from, "--to", &to, section]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{section}: {err}");
        assert!(err.starts_with("csm report: no data for host h1"), "{err}");
    }
}
