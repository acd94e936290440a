//! Writes the Parquet bombs of `csm_store::bombs` into data dirs, one per bomb, as hour
//! files of host `test` two hours ago, for measuring readers by hand:
//! `write_bombs <out>` makes `<out>/rows`, `<out>/dict4k`, `<out>/dict100k`, `<out>/honest`;
//! `write_bombs <out> names` only `<out>/names` (one `net` file of a million rows, each
//! interface named once); `write_bombs <out> events` only `<out>/events` (three hours of
//! a flood's `events`, a million rows each, and a `cpu` hour).

use std::path::{Path, PathBuf};

use csm_store::bombs;
use csm_store::layout::MICROS_PER_HOUR;
use csm_store::{CpuRow, Source, Table};

fn part(data: &Path, table: Table, hour: i64, part: usize) -> PathBuf {
    bombs::hour_part(data, table, "test", hour, part)
}

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).expect("usage: write_bombs <out>"));
    let hour = chrono::Utc::now().timestamp_micros() / MICROS_PER_HOUR - 2;
    let at = hour * MICROS_PER_HOUR;
    if std::env::args().nth(2).as_deref() == Some("names") {
        let names = part(&out.join("names"), Table::Net, hour, 0);
        bombs::honest_net(&names, at, 1_000_000, 1_000_000).unwrap();
        println!("wrote {}", names.display());
        return;
    }
    let cpu: Vec<CpuRow> = (1..3600)
        .map(|s| CpuRow {
            ts_us: at + s * 1_000_000,
            dur_ms: 1000,
            uid: 0,
            user: Some("root".into()),
            cpu_ns: 1_000_000,
            cpu_pct: 0.1,
            source: Source::Proc,
        })
        .collect();
    if std::env::args().nth(2).as_deref() == Some("events") {
        for h in hour - 1..=hour + 1 {
            let events = part(&out.join("events"), Table::Events, h, 0);
            bombs::event_flood(&events, h * MICROS_PER_HOUR, 1_000_000).unwrap();
        }
        bombs::honest(&part(&out.join("events"), Table::Cpu, hour, 0), &cpu).unwrap();
        println!("wrote {}", out.join("events").display());
        return;
    }
    let rows = out.join("rows");
    bombs::row_bomb(
        &part(&rows, Table::Net, hour, 0),
        at,
        30_000_000,
        1000,
        true,
    )
    .unwrap();
    for (name, rows, len) in [
        ("dict4k", 1_000_000, 4096),
        ("dict100k", 100_000, 100 << 10),
    ] {
        let dir = out.join(name);
        bombs::dictionary_bomb(&part(&dir, Table::Events, hour, 0), at, rows, len).unwrap();
        bombs::honest(&part(&dir, Table::Cpu, hour, 0), &cpu).unwrap();
    }
    let honest = out.join("honest");
    for n in 0..30 {
        bombs::honest_net(&part(&honest, Table::Net, hour, n), at, 1_000_000, 4096).unwrap();
    }
    println!("wrote {}", out.display());
}
