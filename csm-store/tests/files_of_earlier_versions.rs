//! Files written before the tables were declared through `table!` read back identically.
//!
//! `fixtures/written-by-main-2026-11-28/` is a data dir written by `main` as of
//! 2026-11-28 (commit 6cb48ab, hand-written schemas and batches), with
//! `cargo run --release --example write_fixture -- --data-dir … --host fixture --hours 2`:
//! two users' CPU every second, memory every 10 s, two interfaces, one user's traffic, two
//! ping targets (one down from minute 30 to 44), start/stop events, and the roll-ups of
//! both hours.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use csm_store::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/written-by-main-2026-11-28")
}

fn batch_of(path: &Path) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// Every file of `R`'s table: the rows read through the declaration, written back into a
/// batch, equal the file's own columns exactly (types, nullability, values), and the
/// columns added since the file was written are null in every row; returns every row.
fn round_trip<R: Row + FromBatch>() -> Vec<R> {
    let files = table_files(&fixture(), R::TABLE).unwrap();
    assert!(!files.is_empty(), "{} has files", R::TABLE.name());
    for file in &files {
        let on_disk = batch_of(file);
        let rows = read_rows::<R>(file).unwrap();
        let again = only_columns_on_disk(R::to_batch(&rows).unwrap(), &on_disk);
        assert_eq!(on_disk.schema(), again.schema(), "{}", file.display());
        assert_eq!(on_disk, again, "{}", file.display());
    }
    read_table::<R>(&fixture()).unwrap()
}

/// `batch` with only the columns `on_disk` has, in its order, after checking that every
/// other column is all nulls.
fn only_columns_on_disk(batch: RecordBatch, on_disk: &RecordBatch) -> RecordBatch {
    let schema = batch.schema();
    let on_disk_schema = on_disk.schema();
    for field in schema.fields() {
        if on_disk_schema.index_of(field.name()).is_err() {
            let column = batch.column_by_name(field.name()).unwrap();
            assert_eq!(
                column.null_count(),
                batch.num_rows(),
                "{} is null",
                field.name()
            );
        }
    }
    let on_disk_indices: Vec<usize> = on_disk_schema
        .fields()
        .iter()
        .map(|f| schema.index_of(f.name()).unwrap())
        .collect();
    batch.project(&on_disk_indices).unwrap()
}

#[test]
fn raw_tables_read_back_identically() {
    let cpu = round_trip::<CpuRow>();
    assert_eq!(cpu.len(), 2 * 7200);
    let alice: Vec<&CpuRow> = cpu.iter().filter(|r| r.uid == 1001).collect();
    assert_eq!(
        alice.iter().map(|r| r.cpu_ns).sum::<i64>(),
        7200 * 100_000_000
    );
    assert!(alice.iter().all(|r| r.cpu_pct == 10.0
        && r.source == Source::Ebpf
        && r.user.as_deref() == Some("alice")));

    let mem = round_trip::<MemRow>();
    assert_eq!(mem.len(), 2 * 720);
    assert!(mem
        .iter()
        .all(|r| r.pss_bytes == Some(r.rss_bytes / 2) && r.swap_bytes.is_none()));

    let net = round_trip::<NetRow>();
    assert_eq!(net.len(), 2 * 7200);
    let eth0_tx: i64 = net
        .iter()
        .filter(|r| r.iface == "eth0")
        .map(|r| r.tx_bytes)
        .sum();
    assert_eq!(eth0_tx, 7200 * 3000);
    assert!(net.iter().all(|r| r.netns == Some(4_026_531_840)));
    assert!(
        net.iter()
            .all(|r| r.rx_dropped.is_none() && r.tx_errors.is_none()),
        "errors and drops were not collected then"
    );

    let net_uid = round_trip::<NetUidRow>();
    assert_eq!(net_uid.iter().map(|r| r.tx_bytes).sum::<i64>(), 7200 * 400);

    let ping = round_trip::<PingRow>();
    assert_eq!(ping.len(), 2 * 120);
    let lost: Vec<&PingRow> = ping.iter().filter(|r| r.received == 0).collect();
    assert_eq!(lost.len(), 15, "gw.example was down for 15 measurements");
    assert!(lost.iter().all(|r| r.target == "gw.example"
        && r.rtts_ms.is_empty()
        && r.error.as_deref() == Some("timeout")));
    let up = ping.iter().find(|r| r.received == 3).unwrap();
    assert_eq!(up.rtts_ms, [10.0, 12.0, 14.0]);

    let events: Vec<Event> = round_trip::<EventRow>()
        .iter()
        .map(EventRow::event)
        .collect();
    assert_eq!(
        events,
        [
            Event::Start("write_fixture".into()),
            Event::Stop("write_fixture".into())
        ]
    );
}

#[test]
fn rollup_tables_read_back_identically() {
    let cpu = round_trip::<CpuMinuteRow>();
    assert_eq!(cpu.len(), 2 * 120);
    let bob: Vec<&CpuMinuteRow> = cpu.iter().filter(|r| r.uid == 1002).collect();
    // The row ending at 12:00:00 belongs to hour 12, which has no roll-up yet.
    assert_eq!(
        bob.iter().map(|r| r.cpu_ns).sum::<i64>(),
        7199 * 500_000_000
    );
    assert!(bob
        .iter()
        .all(|r| r.cpu_pct == 50.0 && r.cpu_pct_max == 50.0));
    let net = round_trip::<NetMinuteRow>();
    assert_eq!(net.len(), 2 * 120);
    assert_eq!(round_trip::<NetUidMinuteRow>().len(), 120);
    let mem = round_trip::<MemMinuteRow>();
    let alice = mem.iter().filter(|r| r.uid == 1001);
    // Every 10 s sample but the one at 12:00:00, which is in hour 12 (no roll-up yet).
    assert_eq!(alice.map(|r| r.samples).sum::<i64>(), 719);
    assert!(mem
        .iter()
        .all(|r| r.rss_bytes_mean == r.rss_bytes_max
            && r.pss_bytes_mean == Some(r.rss_bytes_max / 2)));
    let ping = round_trip::<PingMinuteRow>();
    assert_eq!(ping.len(), 2 * 120);
    assert_eq!(
        ping.iter().filter(|r| r.loss_pct == Some(100.0)).count(),
        15
    );
}
