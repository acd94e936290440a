//! Buffers each table's rows per hour and rewrites the hour's file atomically at every
//! flush, so the current hour is always readable and a crash loses at most one flush
//! interval.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::layout::{self, hour_of, MICROS_PER_HOUR};
use super::rows::{CpuRow, EventRow, MemRow, NetRow, NetUidRow, PingRow, Row, UbcRow};
use super::schema::{Table, SCHEMA_VERSION};

/// Data files reveal what each user does: owner and group only.
const FILE_MODE: u32 = 0o640;
const DIR_MODE: u32 = 0o750;

/// How long a finished hour stays in memory after its last flush, for rows that arrive
/// late (a ping measurement is stamped with its start time).
const LATE_ROW_GRACE_US: i64 = 5 * 60 * 1_000_000;

#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub data_dir: PathBuf,
    /// Host partition value (already sanitized).
    pub host: String,
}

/// A failed write of one file; the rows stay buffered and are written at the next flush.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Rows of one table, by hour, waiting to be (re)written.
pub struct TableWriter<R: Row> {
    dir: PathBuf,
    props: Arc<WriterProperties>,
    hours: BTreeMap<i64, HourBuffer<R>>,
}

struct HourBuffer<R> {
    rows: Vec<R>,
    part: PathBuf,
    dirty: bool,
}

impl<R: Row> TableWriter<R> {
    pub fn new(opts: &StoreOptions) -> Self {
        TableWriter {
            dir: layout::table_host_dir(&opts.data_dir, R::TABLE, &opts.host),
            props: Arc::new(writer_properties(R::TABLE, &opts.host)),
            hours: BTreeMap::new(),
        }
    }

    pub fn push(&mut self, row: R) {
        let hour = hour_of(row.ts_us());
        let dir = &self.dir;
        let buffer = self.hours.entry(hour).or_insert_with(|| {
            let (date_dir, hh) = layout::hour_location(dir, hour);
            HourBuffer {
                rows: Vec::new(),
                part: layout::free_part_path(&date_dir, &hh),
                dirty: false,
            }
        });
        buffer.rows.push(row);
        buffer.dirty = true;
    }

    pub fn extend(&mut self, rows: impl IntoIterator<Item = R>) {
        for row in rows {
            self.push(row);
        }
    }

    /// Rows held in memory (written or not).
    pub fn buffered_rows(&self) -> usize {
        self.hours.values().map(|h| h.rows.len()).sum()
    }

    /// Rewrites every hour that got rows since its last write; forgets hours that are
    /// over and written. A failed hour stays dirty and is retried next time.
    pub fn flush(&mut self, now_us: i64) -> Vec<WriteError> {
        let mut errors = Vec::new();
        for buffer in self.hours.values_mut().filter(|b| b.dirty) {
            buffer.rows.sort_by_key(|r| r.ts_us());
            match write_part(&buffer.part, &buffer.rows, &self.props) {
                Ok(()) => buffer.dirty = false,
                Err(source) => errors.push(WriteError {
                    path: buffer.part.clone(),
                    source,
                }),
            }
        }
        self.hours.retain(|&hour, buffer| {
            let hour_end = (hour + 1) * MICROS_PER_HOUR;
            buffer.dirty || now_us < hour_end + LATE_ROW_GRACE_US
        });
        errors
    }
}

/// Every table's writer.
pub struct Store {
    pub opts: StoreOptions,
    pub cpu: TableWriter<CpuRow>,
    pub mem: TableWriter<MemRow>,
    pub net: TableWriter<NetRow>,
    pub net_uid: TableWriter<NetUidRow>,
    pub ping: TableWriter<PingRow>,
    pub ubc: TableWriter<UbcRow>,
    pub events: TableWriter<EventRow>,
}

impl Store {
    /// Prepares the data dir: creates it (0750), checks it is writable, and removes
    /// temporaries a crash left behind.
    pub fn open(opts: StoreOptions) -> io::Result<Store> {
        create_dir_all(&opts.data_dir)?;
        check_writable(&opts.data_dir)?;
        remove_stray_temporaries(&opts.data_dir)?;
        Ok(Store {
            cpu: TableWriter::new(&opts),
            mem: TableWriter::new(&opts),
            net: TableWriter::new(&opts),
            net_uid: TableWriter::new(&opts),
            ping: TableWriter::new(&opts),
            ubc: TableWriter::new(&opts),
            events: TableWriter::new(&opts),
            opts,
        })
    }

    pub fn event(&mut self, ts_us: i64, event: &str, detail: Option<String>) {
        self.events.push(EventRow {
            ts_us,
            event: event.to_string(),
            detail,
        });
    }

    pub fn flush(&mut self, now_us: i64) -> Vec<WriteError> {
        let mut errors = self.cpu.flush(now_us);
        errors.extend(self.mem.flush(now_us));
        errors.extend(self.net.flush(now_us));
        errors.extend(self.net_uid.flush(now_us));
        errors.extend(self.ping.flush(now_us));
        errors.extend(self.ubc.flush(now_us));
        errors.extend(self.events.flush(now_us));
        errors
    }
}

/// Encodings chosen per column: timestamps delta-encoded, names dictionary-encoded,
/// zstd on top; files sorted by time and saying so.
pub fn writer_properties(table: Table, host: &str) -> WriterProperties {
    let metadata = vec![
        KeyValue::new("csm.schema_version".into(), SCHEMA_VERSION.to_string()),
        KeyValue::new("csm.version".into(), env!("CARGO_PKG_VERSION").to_string()),
        KeyValue::new("csm.host".into(), host.to_string()),
        KeyValue::new("csm.table".into(), table.name().to_string()),
    ];
    let ts = ColumnPath::from("ts");
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid zstd level"),
        ))
        .set_dictionary_enabled(true)
        .set_column_dictionary_enabled(ts.clone(), false)
        .set_column_encoding(ts, Encoding::DELTA_BINARY_PACKED)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: false,
        }]))
        .set_key_value_metadata(Some(metadata))
        .build()
}

/// Writes rows to a hidden temporary, fsyncs it, renames it over `part`, fsyncs the folder.
fn write_part<R: Row>(part: &Path, rows: &[R], props: &Arc<WriterProperties>) -> io::Result<()> {
    let dir = part.parent().expect("a part path has a folder");
    create_dir_all(dir)?;
    let batch = R::to_batch(rows).map_err(io::Error::other)?;
    let temp = layout::temp_path(part);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&temp)?;
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    let result = (|| {
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some((**props).clone()))
            .map_err(io::Error::other)?;
        writer.write(&batch).map_err(io::Error::other)?;
        let file = writer.into_inner().map_err(io::Error::other)?;
        file.sync_all()?;
        fs::rename(&temp, part)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

fn check_writable(dir: &Path) -> io::Result<()> {
    let probe = dir.join(format!(".csm-write-probe-{}", std::process::id()));
    File::create(&probe)?;
    fs::remove_file(&probe)
}

/// Deletes temporaries a crash left behind; visible `.parquet` files are never touched.
pub fn remove_stray_temporaries(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() && layout::is_temp_file(&entry.file_name().to_string_lossy()) {
                fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn cpu_row(ts_us: i64, uid: i64) -> CpuRow {
        CpuRow {
            ts_us,
            dur_ms: 1000,
            uid,
            user: (uid == 0).then(|| "root".to_string()),
            cpu_ns: 5,
            cpu_pct: 0.5,
            source: "ebpf",
        }
    }

    fn read_all(path: &Path) -> arrow::record_batch::RecordBatch {
        let file = File::open(path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
        arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
    }

    #[test]
    fn rows_land_in_their_hour_and_read_back_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            data_dir: dir.path().into(),
            host: "h1".into(),
        };
        let mut store = Store::open(opts).unwrap();
        let hour = 1_795_647_600_000_000; // 2026-11-25T23:00:00Z
        store.cpu.push(cpu_row(hour + 2_000_000, 1000));
        store.cpu.push(cpu_row(hour + 1_000_000, 0));
        store.cpu.push(cpu_row(hour + MICROS_PER_HOUR, 1000));
        assert!(store.flush(hour + 2_000_000).is_empty());

        let first = dir.path().join("cpu/host=h1/date=2026-11-25/23.parquet");
        let batch = read_all(&first);
        assert_eq!(batch.num_rows(), 2);
        let uids = batch
            .column(2)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(uids.values(), &[0, 1000], "rows are sorted by ts");
        let users = batch
            .column(3)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(users.value(0), "root");
        assert!(users.is_null(1));
        let next = dir.path().join("cpu/host=h1/date=2026-11-26/00.parquet");
        assert_eq!(read_all(&next).num_rows(), 1);

        let mode = fs::metadata(&first).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE);
        let dir_mode = fs::metadata(first.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, DIR_MODE);
    }

    #[test]
    fn metadata_names_schema_version_and_host() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            data_dir: dir.path().into(),
            host: "h1".into(),
        };
        let mut store = Store::open(opts).unwrap();
        store.event(1_000_000, "start", None);
        assert!(store.flush(1_000_000).is_empty());
        let path = dir.path().join("events/host=h1/date=1970-01-01/00.parquet");
        let file = File::open(path).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let kv = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap();
        let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
        assert_eq!(get("csm.schema_version").as_deref(), Some(SCHEMA_VERSION));
        assert_eq!(get("csm.host").as_deref(), Some("h1"));
    }

    #[test]
    fn restart_in_the_same_hour_writes_a_new_part() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            data_dir: dir.path().into(),
            host: "h".into(),
        };
        for _ in 0..2 {
            let mut store = Store::open(opts.clone()).unwrap();
            store.cpu.push(cpu_row(1_000_000, 1));
            assert!(store.flush(1_000_000).is_empty());
        }
        let date = dir.path().join("cpu/host=h/date=1970-01-01");
        assert_eq!(read_all(&date.join("00.parquet")).num_rows(), 1);
        assert_eq!(read_all(&date.join("00.1.parquet")).num_rows(), 1);
    }

    #[test]
    fn stray_temporaries_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let date = dir.path().join("cpu/host=h/date=1970-01-01");
        fs::create_dir_all(&date).unwrap();
        fs::write(date.join(".00.parquet.tmp"), b"half").unwrap();
        fs::write(date.join("00.parquet"), b"keep").unwrap();
        let opts = StoreOptions {
            data_dir: dir.path().into(),
            host: "h".into(),
        };
        Store::open(opts).unwrap();
        assert!(!date.join(".00.parquet.tmp").exists());
        assert!(date.join("00.parquet").exists());
    }

    #[test]
    fn finished_hours_leave_memory_once_written() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            data_dir: dir.path().into(),
            host: "h".into(),
        };
        let mut store = Store::open(opts).unwrap();
        store.cpu.push(cpu_row(1_000_000, 1));
        assert!(store.flush(1_000_000).is_empty());
        assert_eq!(store.cpu.buffered_rows(), 1);
        assert!(store.flush(MICROS_PER_HOUR + LATE_ROW_GRACE_US).is_empty());
        assert_eq!(store.cpu.buffered_rows(), 0);
    }
}
