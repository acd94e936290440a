//! Writes a small, exactly known data set through the real `Store` (all raw tables and,
//! because the hours finish, their roll-ups), for the `analysis/` tests and the notebook:
//! tables the daemon cannot fill on a test machine (net, net_uid, mem, ping with an
//! outage) get real csm-written Parquet this way.
//!
//! `write_fixture --data-dir DIR --host NAME [--start RFC3339] [--hours N]`
//!
//! Every second of the range: uid 1001 (alice) uses 10 % of a core (100 ms), uid 1002
//! (bob) 50 %; eth0 receives 1000 B and sends 3000 B; lo 500 B each way; per-user
//! traffic: alice 100 B in / 400 B out; every interface drops 1 received packet a second,
//! no errors. Memory every 10 s: alice 100 MiB, bob 300 MiB.
//! Ping every 60 s to "gw.example" (down from minute 30 to minute 44 of the first hour)
//! and "192.0.2.7" (always up).

use chrono::DateTime;
use csm_store::{CpuRow, MemRow, NetRow, NetUidRow, Store, StoreOptions};

const SEC: i64 = 1_000_000;

fn main() {
    let mut data_dir = None;
    let mut host = "fixture".to_string();
    let mut start = "2026-11-25T10:00:00Z".to_string();
    let mut hours = 2i64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--data-dir", Some(v)) => data_dir = Some(v),
            ("--host", Some(v)) => host = v,
            ("--start", Some(v)) => start = v,
            ("--hours", Some(v)) => hours = v.parse().unwrap_or(hours),
            (other, _) => {
                eprintln!("write_fixture: bad argument {other}");
                std::process::exit(2);
            }
        }
    }
    let Some(data_dir) = data_dir else {
        eprintln!("write_fixture: --data-dir is required");
        std::process::exit(2);
    };
    let start = match DateTime::parse_from_rfc3339(&start) {
        Ok(t) => t.timestamp_micros(),
        Err(err) => {
            eprintln!("write_fixture: --start: {err}");
            std::process::exit(2);
        }
    };
    let mut store = match Store::open(StoreOptions::new(&data_dir, &host)) {
        Ok(s) => s,
        Err(err) => {
            eprintln!("write_fixture: {data_dir}: {err}");
            std::process::exit(1);
        }
    };
    store.event(start, csm_store::Event::Start("write_fixture".into()));
    let users = [
        (1001, "alice", 100_000_000, 100 << 20),
        (1002, "bob", 500_000_000, 300 << 20),
    ];
    for s in 1..=hours * 3600 {
        let ts = start + s * SEC;
        for (uid, name, ns, rss) in users {
            store.push(CpuRow {
                ts_us: ts,
                dur_ms: 1000,
                uid,
                user: Some(name.into()),
                cpu_ns: ns,
                cpu_pct: ns as f64 / 1e7,
                source: csm_store::Source::Ebpf,
            });
            if s % 10 == 0 {
                store.push(MemRow {
                    ts_us: ts,
                    uid,
                    user: Some(name.into()),
                    nproc: 2,
                    rss_bytes: rss,
                    pss_bytes: Some(rss / 2),
                    swap_bytes: None,
                });
            }
        }
        for (iface, ifindex, rx, tx) in [("lo", 1, 500, 500), ("eth0", 2, 1000, 3000)] {
            store.push(NetRow {
                ts_us: ts,
                dur_ms: 1000,
                iface: iface.into(),
                ifindex,
                netns: Some(4_026_531_840),
                rx_bytes: rx,
                tx_bytes: tx,
                rx_packets: 1,
                tx_packets: 2,
                source: csm_store::Source::Ebpf,
                rx_errors: Some(0),
                tx_errors: Some(0),
                rx_dropped: Some(1),
                tx_dropped: Some(0),
            });
        }
        store.push(NetUidRow {
            ts_us: ts,
            dur_ms: 1000,
            uid: 1001,
            user: Some("alice".into()),
            rx_bytes: 100,
            tx_bytes: 400,
        });
        if s % 60 == 0 {
            let minute = s / 60 - 1;
            for target in ["gw.example", "192.0.2.7"] {
                let down = target == "gw.example" && (30..45).contains(&minute);
                let rtts = if down { vec![] } else { vec![10.0, 12.0, 14.0] };
                let row =
                    csm_store::sim::ping_minute(ts - 60 * SEC, target, "192.0.2.1", rtts, 1.633);
                store.push(row);
            }
        }
        if s % 600 == 0 {
            check(store.flush(ts));
        }
    }
    let end = start + hours * 3600 * SEC;
    store.event(end, csm_store::Event::Stop("write_fixture".into()));
    // Past the late-row grace: the hours finish and get their roll-ups.
    check(store.flush(end));
    check(store.flush(end + 3600 * SEC));
}

fn check(errors: Vec<csm_store::WriteError>) {
    if let Some(first) = errors.first() {
        eprintln!("write_fixture: {first}");
        std::process::exit(1);
    }
}
