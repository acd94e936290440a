//! Buffers each table's rows per hour and rewrites the hour's file atomically at every
//! flush, so the current hour is always readable and a crash loses at most one flush
//! interval.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::events::Event;
use super::layout::{self, MICROS_PER_HOUR};
use super::rollup;
use super::rows::{CpuRow, EventRow, FromBatch, MemRow, NetRow, NetUidRow, PingRow, Row, UbcRow};
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
    /// Most rows one table keeps in memory (written or not). Past it the oldest written
    /// rows are let go first (they are on disk), then the oldest unwritten ones, counted.
    pub max_rows_per_table: usize,
}

impl StoreOptions {
    pub fn new(data_dir: impl Into<PathBuf>, host: impl Into<String>) -> Self {
        StoreOptions {
            data_dir: data_dir.into(),
            host: host.into(),
            max_rows_per_table: DEFAULT_MAX_ROWS_PER_TABLE,
        }
    }
}

/// About 300 MB across the busiest tables at worst; hours of a busy host at 1 s.
pub const DEFAULT_MAX_ROWS_PER_TABLE: usize = 1_000_000;

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
    /// For the rewrites of an hour that is still filling: cheap to compress.
    props: Arc<WriterProperties>,
    /// For the last write of a finished hour: smallest on disk.
    final_props: Arc<WriterProperties>,
    hours: BTreeMap<i64, HourBuffer<R>>,
    max_rows: usize,
    /// Unwritten rows let go because of the memory bound, not yet reported.
    dropped: u64,
    /// Hours that were written completely and left memory, for the roll-ups.
    finished: Vec<i64>,
    /// Added to the late-row grace before a finished hour's final write: different per
    /// table, so that the final writes (tens of ms each for a busy table) and roll-ups
    /// fall into different flushes rather than stalling one.
    final_write_delay_us: i64,
}

/// Between the final writes of successive tables (one default flush interval).
const FINAL_WRITE_STAGGER_US: i64 = 10_000_000;

/// One hour of one table. `rows[..written]` are in `part` on disk (sorted); the rest
/// came since the last successful write. `compacted`: `part` was last written with the
/// final (strongest) compression.
struct HourBuffer<R> {
    rows: Vec<R>,
    written: usize,
    part: PathBuf,
    compacted: bool,
}

impl<R> HourBuffer<R> {
    fn dirty(&self) -> bool {
        self.written < self.rows.len()
    }
}

impl<R: Row> TableWriter<R> {
    pub fn new(opts: &StoreOptions) -> Self {
        TableWriter {
            dir: layout::table_host_dir(&opts.data_dir, R::TABLE, &opts.host),
            props: Arc::new(flush_properties(R::TABLE, &opts.host)),
            final_props: Arc::new(writer_properties(R::TABLE, &opts.host)),
            hours: BTreeMap::new(),
            max_rows: opts.max_rows_per_table.max(1),
            dropped: 0,
            finished: Vec::new(),
            final_write_delay_us: Table::ALL.iter().position(|t| *t == R::TABLE).unwrap_or(0)
                as i64
                * FINAL_WRITE_STAGGER_US,
        }
    }

    pub fn push(&mut self, row: R) {
        let hour = row.hour();
        let dir = &self.dir;
        let buffer = self.hours.entry(hour).or_insert_with(|| HourBuffer {
            rows: Vec::new(),
            written: 0,
            part: new_part(dir, hour),
            compacted: false,
        });
        buffer.rows.push(row);
        if self.buffered_rows() > self.max_rows {
            self.shed();
        }
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

    /// Rows held that are not on disk yet.
    pub fn unwritten_rows(&self) -> usize {
        self.hours.values().map(|h| h.rows.len() - h.written).sum()
    }

    /// Unwritten rows let go because of the memory bound since the last call.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// Hours written completely and let go since the last call.
    pub fn take_finished(&mut self) -> Vec<i64> {
        std::mem::take(&mut self.finished)
    }

    /// Frees memory down to 90 % of the bound: first rows already on disk (their hour
    /// continues in a new part, so the file on disk keeps them), oldest hours first; then
    /// the oldest unwritten rows, which are counted as dropped.
    fn shed(&mut self) {
        let target = self.max_rows - self.max_rows / 10;
        let mut total = self.buffered_rows();
        let dir = self.dir.clone();
        for (&hour, buffer) in self.hours.iter_mut() {
            if total <= target {
                return;
            }
            if buffer.written > 0 {
                buffer.rows.drain(..buffer.written);
                total -= buffer.written;
                buffer.written = 0;
                buffer.part = new_part(&dir, hour);
                buffer.compacted = false;
            }
        }
        for buffer in self.hours.values_mut() {
            if total <= target {
                break;
            }
            buffer.rows.sort_by_key(|r| r.ts_us());
            let n = (total - target).min(buffer.rows.len());
            buffer.rows.drain(..n);
            total -= n;
            self.dropped += n as u64;
        }
        self.hours.retain(|_, b| !b.rows.is_empty());
    }

    /// Rewrites every hour that got rows since its last write; rewrites an hour that is
    /// over once more with the final compression, then lets go of it. A failed hour stays
    /// in memory and is retried next time.
    pub fn flush(&mut self, now_us: i64) -> Vec<WriteError> {
        let mut errors = Vec::new();
        let wait = LATE_ROW_GRACE_US + self.final_write_delay_us;
        let over = |hour: i64| now_us >= (hour + 1) * MICROS_PER_HOUR + wait;
        for (&hour, buffer) in self.hours.iter_mut() {
            let last_write = over(hour);
            if !buffer.dirty() && (!last_write || buffer.compacted) {
                continue;
            }
            buffer.rows.sort_by_key(|r| r.ts_us());
            let props = if last_write {
                &self.final_props
            } else {
                &self.props
            };
            match write_part(&buffer.part, &buffer.rows, props) {
                Ok(()) => {
                    buffer.written = buffer.rows.len();
                    buffer.compacted = last_write;
                }
                Err(source) => errors.push(WriteError {
                    path: buffer.part.clone(),
                    source,
                }),
            }
        }
        let finished = &mut self.finished;
        self.hours.retain(|&hour, buffer| {
            let keep = buffer.dirty() || !over(hour) || !buffer.compacted;
            if !keep {
                finished.push(hour);
            }
            keep
        });
        errors
    }
}

fn new_part(table_host_dir: &Path, hour: i64) -> PathBuf {
    let (date_dir, hh) = layout::hour_location(table_host_dir, hour);
    layout::free_part_path(&date_dir, &hh)
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
    /// Finished hours whose roll-ups are still to be written, per source table.
    rollups_due: BTreeMap<Table, Vec<i64>>,
}

/// How far back the start-up looks for finished hours that lack their roll-ups (the
/// daemon was down when they ended).
const ROLLUP_CATCH_UP_HOURS: i64 = 48;

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
            rollups_due: BTreeMap::new(),
            opts,
        })
    }

    pub fn event(&mut self, ts_us: i64, event: Event) {
        self.events.push(EventRow::new(ts_us, &event));
    }

    /// Rows held that are not on disk yet, across tables.
    pub fn unwritten_rows(&self) -> usize {
        self.cpu.unwritten_rows()
            + self.mem.unwritten_rows()
            + self.net.unwritten_rows()
            + self.net_uid.unwritten_rows()
            + self.ping.unwritten_rows()
            + self.ubc.unwritten_rows()
            + self.events.unwritten_rows()
    }

    /// Writes what is held, notes rows the memory bound let go (as `events` rows), and
    /// writes the roll-ups of hours that just finished.
    pub fn flush(&mut self, now_us: i64) -> Vec<WriteError> {
        self.note_dropped(now_us);
        let mut errors = self.cpu.flush(now_us);
        errors.extend(self.mem.flush(now_us));
        errors.extend(self.net.flush(now_us));
        errors.extend(self.net_uid.flush(now_us));
        errors.extend(self.ping.flush(now_us));
        errors.extend(self.ubc.flush(now_us));
        errors.extend(self.events.flush(now_us));
        for (table, hours) in [
            (Table::Cpu, self.cpu.take_finished()),
            (Table::Mem, self.mem.take_finished()),
            (Table::Net, self.net.take_finished()),
            (Table::NetUid, self.net_uid.take_finished()),
            (Table::Ping, self.ping.take_finished()),
        ] {
            self.rollups_due.entry(table).or_default().extend(hours);
        }
        if errors.is_empty() {
            errors.extend(self.write_due_rollups());
        }
        errors
    }

    fn note_dropped(&mut self, now_us: i64) {
        let dropped = [
            ("cpu", self.cpu.take_dropped()),
            ("mem", self.mem.take_dropped()),
            ("net", self.net.take_dropped()),
            ("net_uid", self.net_uid.take_dropped()),
            ("ping", self.ping.take_dropped()),
            ("ubc", self.ubc.take_dropped()),
            ("events", self.events.take_dropped()),
        ];
        for (table, n) in dropped {
            if n > 0 {
                self.event(
                    now_us,
                    Event::RowsDropped(format!(
                        "table={table} rows={n} (memory bound of {} rows reached while writing failed)",
                        self.opts.max_rows_per_table
                    )),
                );
            }
        }
    }

    /// Queues the roll-ups of recent finished hours that have raw files but no roll-up
    /// file (the daemon was down when the hour ended). Call once at start.
    pub fn catch_up_rollups(&mut self, now_us: i64) {
        let current = layout::hour_of(now_us);
        for (source, rollup) in ROLLUP_PAIRS {
            let raw = layout::table_host_dir(&self.opts.data_dir, source, &self.opts.host);
            let done = layout::table_host_dir(&self.opts.data_dir, rollup, &self.opts.host);
            let due = self.rollups_due.entry(source).or_default();
            for hour in current - ROLLUP_CATCH_UP_HOURS..current {
                let (raw_dir, hh) = layout::hour_location(&raw, hour);
                let (done_dir, _) = layout::hour_location(&done, hour);
                let has_raw = !layout::hour_parts(&raw_dir, &hh).is_empty();
                if has_raw && !done_dir.join(format!("{hh}.parquet")).exists() {
                    due.push(hour);
                }
            }
        }
    }

    fn write_due_rollups(&mut self) -> Vec<WriteError> {
        let mut errors = Vec::new();
        let data_dir = self.opts.data_dir.clone();
        let host = self.opts.host.clone();
        for (&table, hours) in self.rollups_due.iter_mut() {
            hours.sort_unstable();
            hours.dedup();
            hours.retain(|&hour| {
                let result = match table {
                    Table::Cpu => roll_up(&data_dir, &host, hour, rollup::cpu_minutes),
                    Table::Mem => roll_up(&data_dir, &host, hour, rollup::mem_minutes),
                    Table::Net => roll_up(&data_dir, &host, hour, rollup::net_minutes),
                    Table::NetUid => roll_up(&data_dir, &host, hour, rollup::net_uid_minutes),
                    Table::Ping => roll_up(&data_dir, &host, hour, rollup::ping_minutes),
                    _ => Ok(()),
                };
                match result {
                    Ok(()) => false,
                    Err(err) => {
                        errors.push(err);
                        true
                    }
                }
            });
        }
        errors
    }

    /// Deletes whole date partitions of this host that ended more than `retain` ago.
    /// Returns the folders removed.
    pub fn apply_retention(&self, now_us: i64, retain: std::time::Duration) -> Vec<PathBuf> {
        let cutoff_us = now_us - retain.as_micros().min(i64::MAX as u128) as i64;
        let mut removed = Vec::new();
        for table in Table::ALL.iter().chain(Table::ROLLUPS.iter()) {
            let dir = layout::table_host_dir(&self.opts.data_dir, *table, &self.opts.host);
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(day_end) = layout::date_partition_end_us(&name) else {
                    continue;
                };
                if day_end <= cutoff_us && fs::remove_dir_all(entry.path()).is_ok() {
                    removed.push(entry.path());
                }
            }
        }
        removed
    }
}

const ROLLUP_PAIRS: [(Table, Table); 5] = [
    (Table::Cpu, Table::CpuMinute),
    (Table::Mem, Table::MemMinute),
    (Table::Net, Table::NetMinute),
    (Table::NetUid, Table::NetUidMinute),
    (Table::Ping, Table::PingMinute),
];

/// Reads every part of one finished hour of a raw table from disk and (re)writes the
/// hour's roll-up file. Idempotent: the roll-up is always computed from all parts.
fn roll_up<R, M>(
    data_dir: &Path,
    host: &str,
    hour: i64,
    minutes: impl Fn(&[R]) -> Vec<M>,
) -> Result<(), WriteError>
where
    R: Row + FromBatch,
    M: Row,
{
    let raw = layout::table_host_dir(data_dir, R::TABLE, host);
    let (raw_dir, hh) = layout::hour_location(&raw, hour);
    let mut rows: Vec<R> = Vec::new();
    for part in layout::hour_parts(&raw_dir, &hh) {
        match read_rows::<R>(&part) {
            Ok(mut more) => rows.append(&mut more),
            // An unreadable raw part is not ours to fix; roll up the rest.
            Err(err) => tracing::warn!("roll-up skips {}: {err}", part.display()),
        }
    }
    let out = minutes(&rows);
    if out.is_empty() {
        return Ok(());
    }
    let dir = layout::table_host_dir(data_dir, M::TABLE, host);
    let (date_dir, hh) = layout::hour_location(&dir, hour);
    let path = date_dir.join(format!("{hh}.parquet"));
    // Written once: the final compression.
    let props = Arc::new(writer_properties(M::TABLE, host));
    write_part(&path, &out, &props).map_err(|source| WriteError { path, source })
}

/// All rows of one Parquet file.
pub fn read_rows<R: FromBatch>(path: &Path) -> io::Result<Vec<R>> {
    let file = File::open(path)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(io::Error::other)?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(io::Error::other)?;
        rows.extend(R::from_batch(&batch).map_err(io::Error::other)?);
    }
    Ok(rows)
}

/// Columns with few distinct values per hour: dictionary-encoded (ids, names, counts).
/// `dur_ms` is not one of them: it is the same for all rows of an interval, so
/// BYTE_STREAM_SPLIT hands zstd runs of equal bytes (2% smaller than the dictionary's
/// bit-packed ids, measured).
const LOW_CARDINALITY: [&str; 8] = [
    "uid",
    "ifindex",
    "netns",
    "ctid",
    "sent",
    "received",
    "nproc",
    "measurements",
];

/// Encodings chosen per column, from measurements (examples/bench_store.rs):
/// - `ts`: DELTA_BINARY_PACKED (rows of one interval share a timestamp: deltas are 0 or
///   one interval);
/// - names and low-cardinality integers (uid, ifindex…): dictionary (RLE ids);
/// - measured integers (ns, bytes, packets, `dur_ms`): no dictionary (it would only fall
///   back), BYTE_STREAM_SPLIT so zstd sees the all-zero high bytes as long runs;
/// - doubles, `rtts_ms` items included: BYTE_STREAM_SPLIT (rates are rounded to 10
///   significant bits, see `rows::quantize`, so their low mantissa bytes are zero runs);
/// - zstd level 19 for files written for the last time (a finished hour, a roll-up),
///   level 6 for the rewrites of the current hour at every flush (see [`flush_properties`]);
/// - one row group and one data page per column per hourly file, chunk-level statistics,
///   no page index or offset index (files are hourly already);
/// - no embedded Arrow schema (see [`writer_options`]);
/// - rows sorted by time, and the files say so.
pub fn writer_properties(table: Table, host: &str) -> WriterProperties {
    properties(table, host, FINAL_ZSTD_LEVEL)
}

/// [`writer_properties`] with the cheaper compression of the rewrites of the current hour.
pub fn flush_properties(table: Table, host: &str) -> WriterProperties {
    properties(table, host, FLUSH_ZSTD_LEVEL)
}

/// zstd level of the current hour's file, rewritten whole at every flush.
const FLUSH_ZSTD_LEVEL: i32 = 6;
/// zstd level of a file written for the last time (measured in examples/bench_store.rs:
/// 6% smaller than level 6; levels above 19 gain nothing more here).
const FINAL_ZSTD_LEVEL: i32 = 19;

fn properties(table: Table, host: &str, zstd_level: i32) -> WriterProperties {
    let metadata = vec![
        KeyValue::new("csm.schema_version".into(), SCHEMA_VERSION.to_string()),
        KeyValue::new("csm.version".into(), env!("CARGO_PKG_VERSION").to_string()),
        KeyValue::new("csm.host".into(), host.to_string()),
        KeyValue::new("csm.table".into(), table.name().to_string()),
    ];
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(zstd_level).expect("valid zstd level"),
        ))
        // One page per column chunk: pages are compressed apart, and nothing here reads
        // a page alone.
        .set_data_page_row_count_limit(usize::MAX)
        .set_data_page_size_limit(64 << 20)
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        // One page per chunk: an offset index would only repeat the chunk's offset.
        .set_offset_index_disabled(true)
        .set_max_row_group_row_count(Some(4_000_000))
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: false,
        }]))
        .set_key_value_metadata(Some(metadata));
    for field in table.schema().fields() {
        let name = field.name().as_str();
        let path = ColumnPath::from(name);
        match field.data_type() {
            DataType::Timestamp(..) => {
                builder = builder
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
            }
            DataType::Int64 if !LOW_CARDINALITY.contains(&name) => {
                builder = builder
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_encoding(path, Encoding::BYTE_STREAM_SPLIT);
            }
            DataType::Float64 => {
                builder = builder
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_encoding(path, Encoding::BYTE_STREAM_SPLIT);
            }
            // `rtts_ms`: the doubles inside the list, like any other measured double.
            DataType::List(item) if item.data_type() == &DataType::Float64 => {
                let path = ColumnPath::new(vec![name.into(), "list".into(), item.name().clone()]);
                builder = builder
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_encoding(path, Encoding::BYTE_STREAM_SPLIT);
            }
            _ => {}
        }
    }
    builder.build()
}

/// The embedded Arrow schema (`ARROW:schema`, 0.6–1 KB a file, a tenth of a small
/// hourly file) is left out: every column type of these tables maps back from its
/// Parquet type unchanged (`timestamp(isAdjustedToUTC)` reads as `Timestamp(µs, "UTC")`;
/// tested below).
fn writer_options(props: &WriterProperties) -> ArrowWriterOptions {
    ArrowWriterOptions::new()
        .with_properties(props.clone())
        .with_skip_arrow_metadata(true)
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
        let mut writer =
            ArrowWriter::try_new_with_options(file, batch.schema(), writer_options(props))
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
    use crate::store::Source;
    use arrow::array::{Array, Int64Array, StringArray};

    fn cpu_row(ts_us: i64, uid: i64) -> CpuRow {
        CpuRow {
            ts_us,
            dur_ms: 1000,
            uid,
            user: (uid == 0).then(|| "root".to_string()),
            cpu_ns: 5,
            cpu_pct: 0.5,
            source: Source::Ebpf,
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
        let opts = StoreOptions::new(dir.path(), "h1");
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
    fn every_table_reads_back_with_its_own_schema_without_the_arrow_metadata() {
        for table in Table::ALL.iter().chain(Table::ROLLUPS.iter()) {
            let schema = table.schema();
            let batch = arrow::record_batch::RecordBatch::new_empty(schema.clone());
            let props = writer_properties(*table, "h");
            let file = tempfile::tempfile().unwrap();
            let mut writer = ArrowWriter::try_new_with_options(
                file.try_clone().unwrap(),
                schema.clone(),
                writer_options(&props),
            )
            .unwrap();
            writer.write(&batch).unwrap();
            writer.close().unwrap();
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
            let kv = builder.metadata().file_metadata().key_value_metadata();
            assert!(kv.unwrap().iter().all(|e| e.key != "ARROW:schema"));
            assert_eq!(
                builder.schema().fields(),
                schema.fields(),
                "{}",
                table.name()
            );
        }
    }

    #[test]
    fn metadata_names_schema_version_and_host() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions::new(dir.path(), "h1");
        let mut store = Store::open(opts).unwrap();
        store.event(1_000_000, Event::Start("test".into()));
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
        let opts = StoreOptions::new(dir.path(), "h");
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
        let opts = StoreOptions::new(dir.path(), "h");
        Store::open(opts).unwrap();
        assert!(!date.join(".00.parquet.tmp").exists());
        assert!(date.join("00.parquet").exists());
    }

    #[test]
    fn finished_hours_leave_memory_once_written() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions::new(dir.path(), "h");
        let mut store = Store::open(opts).unwrap();
        store.cpu.push(cpu_row(1_000_000, 1));
        assert!(store.flush(1_000_000).is_empty());
        assert_eq!(store.cpu.buffered_rows(), 1);
        assert!(store.flush(MICROS_PER_HOUR + LATE_ROW_GRACE_US).is_empty());
        assert_eq!(store.cpu.buffered_rows(), 0);
    }

    #[test]
    fn a_finished_hour_is_rewritten_once_with_the_final_compression() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(StoreOptions::new(dir.path(), "h")).unwrap();
        for s in 0..600 {
            store.cpu.push(cpu_row(s * 1_000_000, s % 7));
        }
        assert!(store.flush(600_000_000).is_empty());
        let file = dir.path().join("cpu/host=h/date=1970-01-01/00.parquet");
        let flushed = fs::metadata(&file).unwrap().ino();
        // Over, but still inside the grace for late rows: not rewritten.
        assert!(store.flush(MICROS_PER_HOUR).is_empty());
        assert_eq!(fs::metadata(&file).unwrap().ino(), flushed);
        assert!(store.flush(MICROS_PER_HOUR + LATE_ROW_GRACE_US).is_empty());
        assert_ne!(fs::metadata(&file).unwrap().ino(), flushed, "rewritten");
        assert_eq!(store.cpu.buffered_rows(), 0);
        assert_eq!(read_all(&file).num_rows(), 600);
    }

    #[test]
    fn final_writes_of_different_tables_fall_into_different_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(StoreOptions::new(dir.path(), "h")).unwrap();
        store.cpu.push(cpu_row(1_000_000, 1));
        store.mem.push(MemRow {
            ts_us: 1_000_000,
            uid: 1,
            user: None,
            nproc: 1,
            rss_bytes: 4096,
            pss_bytes: None,
            swap_bytes: None,
        });
        let done = MICROS_PER_HOUR + LATE_ROW_GRACE_US;
        assert!(store.flush(done).is_empty());
        assert_eq!(
            (store.cpu.buffered_rows(), store.mem.buffered_rows()),
            (0, 1)
        );
        assert!(store.flush(done + FINAL_WRITE_STAGGER_US).is_empty());
        assert_eq!(store.mem.buffered_rows(), 0);
        let rolled = dir.path().join("mem_1m/host=h/date=1970-01-01/00.parquet");
        assert_eq!(read_all(&rolled).num_rows(), 1);
    }

    #[test]
    fn memory_bound_sheds_written_rows_first_then_counts_dropped_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = StoreOptions::new(dir.path(), "h");
        opts.max_rows_per_table = 10;
        let mut store = Store::open(opts).unwrap();
        for s in 0..8 {
            store.cpu.push(cpu_row(s * 1_000_000, 1));
        }
        assert!(store.flush(8_000_000).is_empty());
        // More rows than the bound arrive before the next flush.
        let date = dir.path().join("cpu/host=h/date=1970-01-01");
        for s in 8..20 {
            store.cpu.push(cpu_row(s * 1_000_000, 1));
        }
        assert!(store.cpu.buffered_rows() <= 10);
        // The written rows went first and stay on disk in their part.
        assert_eq!(read_all(&date.join("00.parquet")).num_rows(), 8);
        let dropped = store.cpu.take_dropped();
        assert_eq!(dropped as usize + store.cpu.buffered_rows(), 12);
        assert!(store.flush(20_000_000).is_empty());
        // The rest continues in a new part: nothing duplicated.
        let second = read_all(&date.join("00.1.parquet"));
        assert_eq!(second.num_rows(), 12 - dropped as usize);
    }

    #[test]
    fn dropped_rows_become_an_event() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = StoreOptions::new(dir.path(), "h");
        opts.max_rows_per_table = 5;
        let mut store = Store::open(opts).unwrap();
        for s in 0..7 {
            store.cpu.push(cpu_row(s * 1_000_000, 1));
        }
        assert!(store.flush(7_000_000).is_empty());
        assert!(store.flush(8_000_000).is_empty());
        let events = read_all(&dir.path().join("events/host=h/date=1970-01-01/00.parquet"));
        let names = events
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(names.value(0), "rows_dropped");
    }

    #[test]
    fn a_deleted_data_dir_is_recreated_with_every_row_held() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut store = Store::open(StoreOptions::new(&data, "h")).unwrap();
        store.cpu.push(cpu_row(1_000_000, 1));
        assert!(store.flush(1_000_000).is_empty());
        fs::remove_dir_all(&data).unwrap();
        store.cpu.push(cpu_row(2_000_000, 1));
        assert!(store.flush(2_000_000).is_empty());
        let file = data.join("cpu/host=h/date=1970-01-01/00.parquet");
        assert_eq!(read_all(&file).num_rows(), 2, "the hour is rewritten whole");
    }

    #[test]
    fn finished_hours_get_rollups_from_every_part() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions::new(dir.path(), "h");
        // Two runs in the same hour (a restart): two parts.
        for uid in [1, 2] {
            let mut store = Store::open(opts.clone()).unwrap();
            store.cpu.push(cpu_row(30_000_000, uid));
            assert!(store.flush(30_000_000).is_empty());
        }
        let mut store = Store::open(opts).unwrap();
        store.catch_up_rollups(3 * MICROS_PER_HOUR);
        assert!(store.flush(3 * MICROS_PER_HOUR).is_empty());
        let rolled = read_all(&dir.path().join("cpu_1m/host=h/date=1970-01-01/00.parquet"));
        assert_eq!(rolled.num_rows(), 2);
        let ts = rolled
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(ts.value(0), 60_000_000, "ts is the end of the minute");
    }

    fn ping_row(ts_us: i64, target: &str, rtts_ms: Vec<f64>) -> PingRow {
        PingRow {
            ts_us,
            target: target.into(),
            addr: Some("192.0.2.7".into()),
            sent: 3,
            received: rtts_ms.len() as i64,
            rtt_min_ms: rtts_ms.iter().copied().reduce(f64::min),
            rtt_avg_ms: None,
            rtt_max_ms: rtts_ms.iter().copied().reduce(f64::max),
            rtt_mdev_ms: None,
            error: rtts_ms.is_empty().then(|| "timeout".into()),
            rtts_ms,
        }
    }

    #[test]
    fn ping_rows_read_back_whole_and_finished_hours_get_ping_1m() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions::new(dir.path(), "h");
        let rows = vec![
            ping_row(10_000_000, "a", vec![20.5, 21.25, 19.0]),
            ping_row(10_000_000, "b", vec![]),
            ping_row(70_000_000, "a", vec![22.0]),
        ];
        {
            let mut store = Store::open(opts.clone()).unwrap();
            store.ping.extend(rows.clone());
            assert!(store.flush(80_000_000).is_empty());
        }
        let raw = dir.path().join("ping/host=h/date=1970-01-01/00.parquet");
        let mut back = read_rows::<PingRow>(&raw).unwrap();
        back.sort_by(|x, y| (x.ts_us, &x.target).cmp(&(y.ts_us, &y.target)));
        assert_eq!(back, rows);

        // The daemon was down when the hour ended: the next start rolls it up.
        let mut store = Store::open(opts).unwrap();
        store.catch_up_rollups(2 * MICROS_PER_HOUR);
        assert!(store.flush(2 * MICROS_PER_HOUR).is_empty());
        let rolled = read_all(&dir.path().join("ping_1m/host=h/date=1970-01-01/00.parquet"));
        assert_eq!(rolled.num_rows(), 3);
        let col = |name: &str| rolled.column_by_name(name).unwrap().clone();
        let received = col("received");
        let received = received.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(received.values(), &[3, 0, 1]);
        let p50 = col("rtt_p50_ms");
        let p50 = p50
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .unwrap();
        assert_eq!(p50.value(0), 20.5);
        assert!(p50.is_null(1), "no replies, no percentiles");
        assert_eq!(p50.value(2), 22.0);
    }

    #[test]
    fn retention_removes_whole_old_days_of_this_host_only() {
        let dir = tempfile::tempdir().unwrap();
        for p in [
            "cpu/host=h/date=2026-01-01",
            "cpu/host=h/date=2026-03-01",
            "cpu_1m/host=h/date=2026-01-01",
            "cpu/host=other/date=2026-01-01",
        ] {
            fs::create_dir_all(dir.path().join(p)).unwrap();
        }
        let store = Store::open(StoreOptions::new(dir.path(), "h")).unwrap();
        // 2026-03-02T00:00Z, keep 30 days.
        let now = 1_772_409_600_000_000;
        let removed = store.apply_retention(now, std::time::Duration::from_secs(30 * 86_400));
        assert_eq!(removed.len(), 2);
        assert!(!dir.path().join("cpu/host=h/date=2026-01-01").exists());
        assert!(dir.path().join("cpu/host=h/date=2026-03-01").exists());
        assert!(dir.path().join("cpu/host=other/date=2026-01-01").exists());
    }
}
