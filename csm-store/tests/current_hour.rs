//! The current hour's file while it fills (one more row group per flush, merged as the
//! hour goes on) and once the hour is over (one row group), read back by the readers
//! users have: arrow (csm's own reader), DuckDB and pyarrow.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use csm_store::{read_rows, CpuRow, Source, Store, StoreOptions, SCHEMA_VERSION};
use parquet::basic::Compression;
use parquet::file::reader::{FileReader, SerializedFileReader};

/// 2026-11-25T23:00:00Z.
const HOUR: i64 = 1_795_647_600_000_000;
const SEC: i64 = 1_000_000;
const FLUSH: i64 = 10 * SEC;
/// The hour's end plus the late-row grace (5 min) and the cpu table's final-write stagger
/// (it is the first table: none): the flush at which the hour's final write happens.
const FINAL_WRITE: i64 = HOUR + 3600 * SEC + 300 * SEC;

fn row(ts_us: i64, uid: i64) -> CpuRow {
    CpuRow {
        ts_us,
        dur_ms: 1000,
        uid,
        user: Some(format!("user{uid}")),
        cpu_ns: ts_us % 1_000_003 + uid,
        cpu_pct: 0.5,
        source: Source::Ebpf,
    }
}

/// Three users a second, and at every 5th flush a late row stamped 25 s back (as ping
/// rows are stamped with their start): `flushes` flushes' rows, pushed and flushed.
fn feed(store: &mut Store, flushes: std::ops::Range<i64>, pushed: &mut Vec<(i64, i64)>) {
    for flush in flushes {
        let end = HOUR + (flush + 1) * FLUSH;
        for s in 0..10 {
            for uid in [1000, 1001, 1002] {
                let ts = end - FLUSH + s * SEC + uid;
                store.push(row(ts, uid));
                pushed.push((ts, uid));
            }
        }
        if flush % 5 == 4 {
            let ts = end - 25 * SEC + 7;
            store.push(row(ts, 4242));
            pushed.push((ts, 4242));
        }
        assert!(store.flush(end).is_empty());
    }
}

fn hour_file(data: &Path) -> PathBuf {
    data.join("cpu/host=h1/date=2026-11-25/23.parquet")
}

/// (ts, uid) of every row, sorted: what a reader must see, each row exactly once.
fn sorted(mut rows: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    rows.sort();
    rows
}

fn read_with_arrow(path: &Path) -> Vec<(i64, i64)> {
    let rows: Vec<CpuRow> = read_rows(path).unwrap();
    sorted(rows.iter().map(|r| (r.ts_us, r.uid)).collect())
}

/// Reads `path` with DuckDB and with pyarrow; both must give the same rows. Returns the
/// rows and pyarrow's count of row groups.
fn read_with_duckdb_and_pyarrow(path: &Path) -> (Vec<(i64, i64)>, usize) {
    let script = r#"
import sys, duckdb, pyarrow as pa, pyarrow.parquet as pq
path = sys.argv[1]
con = duckdb.connect()
rows = con.execute(f"select epoch_us(ts), uid from read_parquet('{path}') order by all").fetchall()
f = pq.ParquetFile(path)
t = f.read()
pa_rows = sorted(zip(t.column("ts").cast(pa.int64()).to_pylist(), t.column("uid").to_pylist()))
assert [tuple(r) for r in rows] == pa_rows, "duckdb and pyarrow disagree"
print(f.metadata.num_row_groups)
for ts, uid in rows:
    print(ts, uid)
"#;
    let out = Command::new("python3")
        .args(["-c", script, path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run python3 (cargo xtask test installs duckdb and pyarrow)");
    assert!(
        out.status.success(),
        "python readers failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let groups = lines.next().unwrap().parse().unwrap();
    let rows = lines
        .map(|l| {
            let (ts, uid) = l.split_once(' ').unwrap();
            (ts.parse().unwrap(), uid.parse().unwrap())
        })
        .collect();
    (rows, groups)
}

fn row_groups(path: &Path) -> Vec<parquet::file::metadata::RowGroupMetaData> {
    let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
    reader.metadata().row_groups().to_vec()
}

fn key_value(path: &Path) -> BTreeMap<String, String> {
    let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
    reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
        .collect()
}

/// Each row group in time order, and saying so in its sorting metadata.
fn assert_each_group_sorted(path: &Path) {
    let file = File::open(path).unwrap();
    let builder =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let groups = builder.metadata().row_groups().len();
    for group in 0..groups {
        let meta = &builder.metadata().row_groups()[group];
        let sorting = meta.sorting_columns().expect("sorting metadata");
        assert_eq!(sorting[0].column_idx, 0);
        assert!(!sorting[0].descending);
        let file = File::open(path).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .with_row_groups(vec![group])
            .build()
            .unwrap();
        let mut ts = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let column = batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
                .unwrap();
            ts.extend(column.values().iter().copied());
        }
        assert!(
            ts.is_sorted(),
            "row group {group} of {} in time order",
            path.display()
        );
    }
}

#[test]
fn a_file_read_mid_hour_holds_every_row_once_for_arrow_duckdb_and_pyarrow() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(StoreOptions::new(dir.path(), "h1")).unwrap();
    let path = hour_file(dir.path());
    let mut pushed = Vec::new();
    for (flushes, groups_at_least) in [(0..1, 1), (1..7, 2), (7..23, 2), (23..150, 2)] {
        feed(&mut store, flushes, &mut pushed);
        let expected = sorted(pushed.clone());
        assert_eq!(
            read_with_arrow(&path),
            expected,
            "arrow, {} rows",
            pushed.len()
        );
        let (rows, groups) = read_with_duckdb_and_pyarrow(&path);
        assert_eq!(rows, expected, "duckdb and pyarrow, {} rows", pushed.len());
        assert_eq!(groups, row_groups(&path).len());
        assert!(
            (groups_at_least..=9).contains(&groups),
            "{groups} row groups after {} rows",
            pushed.len()
        );
        assert_each_group_sorted(&path);
        let kv = key_value(&path);
        assert_eq!(kv["csm.schema_version"], SCHEMA_VERSION);
        assert_eq!(kv["csm.version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(kv["csm.host"], "h1");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }
    let groups = row_groups(&path);
    assert!(groups.len() > 1, "mid-hour: several row groups");
    assert!(
        matches!(groups[0].column(0).compression(), Compression::ZSTD(_)),
        "the large row group is in zstd"
    );
}

#[test]
fn the_finished_hour_is_one_row_group_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(StoreOptions::new(dir.path(), "h1")).unwrap();
    let path = hour_file(dir.path());
    let mut pushed = Vec::new();
    feed(&mut store, 0..360, &mut pushed);
    assert!(row_groups(&path).len() > 1);
    // After the hour: still growing while late rows may come; then the final write.
    assert!(store.flush(FINAL_WRITE - FLUSH).is_empty());
    assert!(row_groups(&path).len() > 1);
    assert!(store.flush(FINAL_WRITE).is_empty());

    let groups = row_groups(&path);
    assert_eq!(groups.len(), 1, "one row group once the hour is over");
    assert_eq!(groups[0].num_rows() as usize, pushed.len());
    // (The file does not record zstd's level.)
    assert!(matches!(
        groups[0].column(0).compression(),
        Compression::ZSTD(_)
    ));
    assert_each_group_sorted(&path);
    let expected = sorted(pushed);
    assert_eq!(read_with_arrow(&path), expected);
    let (rows, count) = read_with_duckdb_and_pyarrow(&path);
    assert_eq!((rows, count), (expected, 1));
    assert_eq!(key_value(&path)["csm.host"], "h1");
    assert_eq!(
        store.table::<CpuRow>().buffered_rows(),
        0,
        "the hour left memory"
    );
}

/// A reader opening the file while flushes replace it sees, every time, exactly the rows
/// of one flush or another: never a row twice, never one missing before it.
#[test]
fn a_reader_during_flushes_sees_whole_flushes_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(StoreOptions::new(dir.path(), "h1")).unwrap();
    let path = hour_file(dir.path());
    let mut pushed = Vec::new();
    feed(&mut store, 0..1, &mut pushed);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                seen.push(read_with_arrow(&path));
            }
            seen
        })
    };
    let mut states = vec![sorted(pushed.clone())];
    for flush in 1..120 {
        feed(&mut store, flush..flush + 1, &mut pushed);
        states.push(sorted(pushed.clone()));
    }
    stop.store(true, Ordering::Relaxed);
    let seen = reader.join().unwrap();
    assert!(seen.len() > 10, "the reader read {} times", seen.len());
    for rows in &seen {
        assert!(
            states.contains(rows),
            "a read of {} rows is no flush's state",
            rows.len()
        );
    }
}
