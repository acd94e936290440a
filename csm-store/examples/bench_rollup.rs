//! What the roll-up of a flood hour holds: `bench_rollup write <dir> <interfaces> <order>`
//! writes 5 `net` parts of a million rows into the hour 10:00 of 2026-11-25 (host `h`), in
//! time order as the daemon writes them (`in-order`: part `i` holds minutes 12i to 12i+11)
//! or going round the hour every 3,590 rows (`cyclic`: every part holds every minute);
//! with `<hour>` (hours since the epoch) into that hour instead, for a daemon's catch-up to
//! find. `bench_rollup roll <dir>` then rolls the hour up as the daemon does (flush after flush)
//! and prints its peak RSS (VmHWM), so run each in its own process; `bench_rollup read
//! <dir>` only reads the raw rows, batch after batch: the floor under the roll-up.

use std::path::{Path, PathBuf};
use std::time::Instant;

use csm_store::layout::MICROS_PER_HOUR;
use csm_store::{bombs, NetRow, Store, StoreOptions, Table};

/// 2026-11-25T10:00Z, in hours since the epoch.
const HOUR: i64 = 1_795_564_800 / 3600 + 10;
const PARTS: usize = 5;
const ROWS_PER_PART: usize = 1_000_000;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn write(data: &Path, interfaces: usize, in_order: bool, hour: i64) {
    let hour_us = hour * MICROS_PER_HOUR;
    let seconds_per_part = 3600 / PARTS;
    for part in 0..PARTS {
        let path = bombs::hour_part(data, Table::Net, "h", hour, part);
        if in_order {
            let from = hour_us + (part * seconds_per_part) as i64 * 1_000_000;
            bombs::honest_net_in_order(&path, from, seconds_per_part, ROWS_PER_PART, interfaces)
        } else {
            bombs::honest_net(&path, hour_us, ROWS_PER_PART, interfaces)
        }
        .unwrap();
    }
}

fn roll(data: &Path) {
    let start_kib = status_kib("VmRSS:");
    let started = Instant::now();
    let now = (HOUR + 2) * MICROS_PER_HOUR;
    let mut store = Store::open(StoreOptions::new(data, "h")).unwrap();
    store.catch_up_rollups(now);
    let mut flushes = 0;
    while store.rollups_pending() {
        assert!(store.flush(now).is_empty());
        flushes += 1;
    }
    println!(
        "{}: roll-up of {} raw rows in {flushes} flushes, {:.1} s: peak RSS {} MiB (start {} MiB)",
        csm_store::layout::machine(),
        PARTS * ROWS_PER_PART,
        started.elapsed().as_secs_f64(),
        status_kib("VmHWM:") / 1024,
        start_kib / 1024,
    );
}

/// Only reads the parts' rows, a batch at a time, as the roll-up does: the floor under it.
fn read(data: &Path) {
    let mut rows = 0;
    for part in 0..PARTS {
        let path = bombs::hour_part(data, Table::Net, "h", HOUR, part);
        csm_store::for_each_rows_at::<NetRow>(&path, None, |batch| {
            rows += batch.len();
            Ok(())
        })
        .unwrap();
    }
    println!(
        "{}: read {rows} raw rows: peak RSS {} MiB",
        csm_store::layout::machine(),
        status_kib("VmHWM:") / 1024
    );
}

fn main() {
    let usage =
        "usage: bench_rollup write <dir> <interfaces> in-order|cyclic | roll <dir> | read <dir>";
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["write", dir, interfaces, order] => write(
            &PathBuf::from(dir),
            interfaces.parse().expect(usage),
            order == "in-order",
            HOUR,
        ),
        ["write", dir, interfaces, order, hour] => write(
            &PathBuf::from(dir),
            interfaces.parse().expect(usage),
            order == "in-order",
            hour.parse().expect(usage),
        ),
        ["roll", dir] => roll(&PathBuf::from(dir)),
        ["read", dir] => read(&PathBuf::from(dir)),
        _ => panic!("{usage}"),
    }
}
