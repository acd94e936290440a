//! The store: every table's writer in one registry keyed by [`Table`], flushed together;
//! roll-ups of finished hours; retention of old date partitions; the daemon's events.

use std::any::Any;
use std::collections::BTreeMap;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::beneath;
use crate::data_dir::{check_ownership, DataDirLock};
use crate::events::Event;
use crate::layout;
use crate::rollup::{job, RollUp, Step, WrittenTables};
use crate::spill;
use crate::table::{FromBatch, Row};
use crate::tables::{EventRow, Table};
use crate::writer::{
    check_writable, create_dir_all, remove_stray_temporaries, StoreOptions, TableWriter, WriteError,
};

/// Rows of any one table, so that one channel can carry every table's rows to the store.
pub struct TableRows {
    table: Table,
    len: usize,
    rows: Box<dyn Any + Send>,
}

impl TableRows {
    pub fn table(&self) -> Table {
        self.table
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The rows, if they are `R`'s.
    pub fn get<R: Row>(&self) -> Option<&[R]> {
        self.rows.downcast_ref::<Vec<R>>().map(Vec::as_slice)
    }
}

impl<R: Row> From<Vec<R>> for TableRows {
    fn from(rows: Vec<R>) -> TableRows {
        TableRows {
            table: R::TABLE,
            len: rows.len(),
            rows: Box::new(rows),
        }
    }
}

impl std::fmt::Debug for TableRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TableRows({})", self.table.name())
    }
}

/// One table's writer, whatever its row type.
trait AnyTable: Send {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn extend_any(&mut self, rows: Box<dyn Any + Send>);
    fn flush(&mut self, now_us: i64) -> Vec<WriteError>;
    fn unwritten_rows(&self) -> usize;
    fn take_dropped(&mut self) -> u64;
    fn take_finished(&mut self) -> Vec<i64>;
    fn bytes_written(&self) -> u64;
    fn buffered_file_bytes(&self) -> usize;
    fn compact_at_next_flush(&mut self);
    /// Writes the unwritten rows as the table's spill file in `dir`; how many.
    fn spill(&self, dir: &OwnedFd, host: &str) -> io::Result<usize>;
    /// The rows of the table's spill file in `dir`, if any.
    fn read_spilled(
        &self,
        dir: &OwnedFd,
        dir_path: &Path,
        max_rows: i64,
    ) -> io::Result<Option<TableRows>>;
}

impl<R: Row + FromBatch> AnyTable for TableWriter<R> {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn extend_any(&mut self, rows: Box<dyn Any + Send>) {
        if let Ok(rows) = rows.downcast::<Vec<R>>() {
            self.extend(*rows);
        }
    }
    fn flush(&mut self, now_us: i64) -> Vec<WriteError> {
        TableWriter::flush(self, now_us)
    }
    fn unwritten_rows(&self) -> usize {
        TableWriter::unwritten_rows(self)
    }
    fn take_dropped(&mut self) -> u64 {
        TableWriter::take_dropped(self)
    }
    fn take_finished(&mut self) -> Vec<i64> {
        TableWriter::take_finished(self)
    }
    fn bytes_written(&self) -> u64 {
        TableWriter::bytes_written(self)
    }
    fn buffered_file_bytes(&self) -> usize {
        TableWriter::buffered_file_bytes(self)
    }
    fn compact_at_next_flush(&mut self) {
        TableWriter::compact_at_next_flush(self)
    }
    fn spill(&self, dir: &OwnedFd, host: &str) -> io::Result<usize> {
        let rows = self.unwritten();
        if !rows.is_empty() {
            spill::write(dir, &rows, host)?;
        }
        Ok(rows.len())
    }
    fn read_spilled(
        &self,
        dir: &OwnedFd,
        dir_path: &Path,
        max_rows: i64,
    ) -> io::Result<Option<TableRows>> {
        Ok(spill::read::<R>(dir, dir_path, max_rows)?.map(TableRows::from))
    }
}

/// A job writing one finished hour's roll-up from the raw table's files.
type RollUpFn = fn(i64) -> Box<dyn Step>;

/// A registered table: its writer and, for raw tables with a 1-minute roll-up, how to
/// write it and where it goes.
struct Entry {
    writer: Box<dyn AnyTable>,
    roll_up: Option<(Table, RollUpFn)>,
}

impl Entry {
    fn plain<R: Row + FromBatch>(opts: &StoreOptions) -> Entry {
        Entry {
            writer: Box::new(TableWriter::<R>::new(opts)),
            roll_up: None,
        }
    }

    fn rolled_up<R: RollUp + FromBatch>(opts: &StoreOptions) -> Entry {
        Entry {
            writer: Box::new(TableWriter::<R>::new(opts)),
            roll_up: Some((R::Minute::TABLE, job::<R>)),
        }
    }
}

/// Makes the writer of every table the daemon writes, from the catalog.
struct Entries<'a> {
    opts: &'a StoreOptions,
    tables: BTreeMap<Table, Entry>,
}

impl WrittenTables for Entries<'_> {
    fn rolled_up<R: RollUp>(&mut self) {
        self.tables
            .insert(R::TABLE, Entry::rolled_up::<R>(self.opts));
    }

    fn plain<R: Row + FromBatch>(&mut self) {
        self.tables.insert(R::TABLE, Entry::plain::<R>(self.opts));
    }
}

/// Every table's writer, and the data dir's lock.
pub struct Store {
    pub opts: StoreOptions,
    _lock: DataDirLock,
    tables: BTreeMap<Table, Entry>,
    /// Finished hours whose roll-ups are still to be written, per source table.
    rollups_due: BTreeMap<Table, Vec<i64>>,
    /// The roll-up being written, a few row groups per flush.
    rollup_job: Option<Box<dyn Step>>,
    /// Events the store wrote of its own accord since [`Store::take_own_events`].
    own_events: u64,
}

/// How far back the start-up looks for finished hours that lack their roll-ups (the
/// daemon was down when they ended).
const ROLLUP_CATCH_UP_HOURS: i64 = 48;

/// Raw rows a flush reads at most for roll-ups (a row group is never split): about a
/// tenth of a second of one core's work, so that a flood's hour neither stalls a flush
/// nor is skipped.
pub const ROLLUP_ROWS_PER_FLUSH: usize = 256 * 1024;

impl Store {
    /// Prepares the data dir: creates it (0750), refuses it if another user could write
    /// in it, takes its lock (a second daemon stops here, having touched nothing), checks
    /// it is writable, and removes temporaries a crash left behind.
    pub fn open(opts: StoreOptions) -> io::Result<Store> {
        create_dir_all(&opts.data_dir)?;
        check_ownership(&opts.data_dir, opts.allow_unsafe_data_dir)?;
        let lock = DataDirLock::acquire(&opts.data_dir)?;
        check_writable(&opts.data_dir)?;
        remove_stray_temporaries(&opts.data_dir)?;
        let mut entries = Entries {
            opts: &opts,
            tables: BTreeMap::new(),
        };
        Table::visit_written(&mut entries);
        Ok(Store {
            _lock: lock,
            tables: entries.tables,
            rollups_due: BTreeMap::new(),
            rollup_job: None,
            own_events: 0,
            opts,
        })
    }

    /// The writer of `R`'s table.
    ///
    /// # Panics
    /// If `R` is a roll-up row: those are written from the raw files, not pushed.
    pub fn table<R: Row>(&self) -> &TableWriter<R> {
        self.tables
            .get(&R::TABLE)
            .and_then(|e| e.writer.as_any().downcast_ref())
            .unwrap_or_else(|| panic!("{} is not written through the store", R::TABLE.name()))
    }

    /// The writer of `R`'s table, to push rows into (see [`Store::table`]).
    pub fn table_mut<R: Row>(&mut self) -> &mut TableWriter<R> {
        self.tables
            .get_mut(&R::TABLE)
            .and_then(|e| e.writer.as_any_mut().downcast_mut())
            .unwrap_or_else(|| panic!("{} is not written through the store", R::TABLE.name()))
    }

    pub fn push<R: Row>(&mut self, row: R) {
        self.table_mut::<R>().push(row);
    }

    pub fn extend<R: Row>(&mut self, rows: impl IntoIterator<Item = R>) {
        self.table_mut::<R>().extend(rows);
    }

    /// Rows of whichever table they belong to.
    pub fn extend_rows(&mut self, rows: TableRows) {
        if let Some(entry) = self.tables.get_mut(&rows.table) {
            entry.writer.extend_any(rows.rows);
        }
    }

    pub fn event(&mut self, ts_us: i64, event: Event) {
        self.push(EventRow::new(ts_us, &event));
    }

    /// Rows held that are not on disk yet, across tables.
    pub fn unwritten_rows(&self) -> usize {
        self.tables
            .values()
            .map(|e| e.writer.unwritten_rows())
            .sum()
    }

    /// Writes every table's unwritten rows to its spill file in `dir` (see [`spill`]),
    /// for the next start to take in: after a stop's last flush failed. Returns how many
    /// rows; the rows stay held.
    pub fn spill_unwritten(&self, dir: &OwnedFd) -> io::Result<usize> {
        let mut rows = 0;
        for entry in self.tables.values() {
            rows += entry.writer.spill(dir, &self.opts.host)?;
        }
        Ok(rows)
    }

    /// Takes in the rows of every spill file in `dir` (`dir_path` names it in errors),
    /// to be written by the next flush; how many. All or nothing: one file refused (a
    /// link, a FIFO, oversized, not Parquet) and no row is taken in.
    pub fn merge_spilled(&mut self, dir: &OwnedFd, dir_path: &Path) -> io::Result<usize> {
        let max_rows = self.opts.max_rows_per_table as i64;
        let mut spilled = Vec::new();
        for entry in self.tables.values() {
            spilled.extend(entry.writer.read_spilled(dir, dir_path, max_rows)?);
        }
        let mut rows = 0;
        for table_rows in spilled {
            rows += table_rows.len();
            self.extend_rows(table_rows);
        }
        Ok(rows)
    }

    /// Bytes of the tables' files written so far (each replacement of a file counts
    /// whole; roll-ups not included).
    pub fn bytes_written(&self) -> u64 {
        self.tables.values().map(|e| e.writer.bytes_written()).sum()
    }

    /// Bytes of the current hours' files held in memory, every table.
    pub fn buffered_file_bytes(&self) -> usize {
        self.tables
            .values()
            .map(|e| e.writer.buffered_file_bytes())
            .sum()
    }

    /// Makes the next flush write every current hour's file whole, in one row group: call
    /// before the last flush of a stop (see [`TableWriter::compact_at_next_flush`]).
    pub fn compact_at_next_flush(&mut self) {
        for entry in self.tables.values_mut() {
            entry.writer.compact_at_next_flush();
        }
    }

    /// Writes what is held, notes rows the memory bound let go (as `events` rows), and
    /// writes the roll-ups of hours that just finished.
    pub fn flush(&mut self, now_us: i64) -> Vec<WriteError> {
        self.note_dropped(now_us);
        let mut errors = Vec::new();
        for (&table, entry) in self.tables.iter_mut() {
            errors.extend(entry.writer.flush(now_us));
            let finished = entry.writer.take_finished();
            if entry.roll_up.is_some() && !finished.is_empty() {
                self.rollups_due.entry(table).or_default().extend(finished);
            }
        }
        if errors.is_empty() {
            errors.extend(self.write_due_rollups());
        }
        errors
    }

    fn note_dropped(&mut self, now_us: i64) {
        let dropped: Vec<(Table, u64)> = self
            .tables
            .iter_mut()
            .map(|(&table, e)| (table, e.writer.take_dropped()))
            .filter(|&(_, n)| n > 0)
            .collect();
        for (table, n) in dropped {
            self.own_events += 1;
            self.event(
                now_us,
                Event::RowsDropped(format!(
                    "table={} rows={n} (memory bound of {} rows reached while writing failed)",
                    table.name(),
                    self.opts.max_rows_per_table
                )),
            );
        }
    }

    /// How many `rows_dropped` events the store wrote of its own accord since the last
    /// call (the daemon counts every event it writes; these it does not see otherwise).
    pub fn take_own_events(&mut self) -> u64 {
        std::mem::take(&mut self.own_events)
    }

    /// Queues the roll-ups of recent finished hours that have raw files but no roll-up
    /// file (the daemon was down when the hour ended). Call once at start.
    pub fn catch_up_rollups(&mut self, now_us: i64) {
        let current = layout::hour_of(now_us);
        let (data_dir, host) = (&self.opts.data_dir, &self.opts.host);
        for (&source, entry) in &self.tables {
            let Some((rollup, _)) = entry.roll_up else {
                continue;
            };
            let raw = layout::table_host_dir(data_dir, source, host);
            let done = layout::table_host_dir(data_dir, rollup, host);
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

    /// Goes on with the roll-ups due, oldest hour of each table first, for at most
    /// [`ROLLUP_ROWS_PER_FLUSH`] raw rows: a flood's hour is rolled up over several
    /// flushes, holding its minutes, never its rows. A roll-up that fails to write is due
    /// again at the next flush.
    fn write_due_rollups(&mut self) -> Vec<WriteError> {
        let mut budget = ROLLUP_ROWS_PER_FLUSH;
        while budget > 0 {
            if self.rollup_job.is_none() {
                self.rollup_job = self.next_rollup_job();
            }
            let Some(job) = self.rollup_job.as_mut() else {
                break;
            };
            match job.step(&self.opts.data_dir, &self.opts.host, budget) {
                Ok((read, done)) => {
                    budget = budget.saturating_sub(read.max(1));
                    if done {
                        self.rollup_job = None;
                    }
                }
                Err(err) => {
                    let (table, hour) = job.what();
                    self.rollups_due.entry(table).or_default().push(hour);
                    self.rollup_job = None;
                    release_freed_heap();
                    return vec![err];
                }
            }
        }
        if budget < ROLLUP_ROWS_PER_FLUSH {
            release_freed_heap();
        }
        Vec::new()
    }

    /// A job for the oldest hour due of the first table that has one.
    fn next_rollup_job(&mut self) -> Option<Box<dyn Step>> {
        for (table, hours) in self.rollups_due.iter_mut() {
            hours.sort_unstable();
            hours.dedup();
            if hours.is_empty() {
                continue;
            }
            let hour = hours.remove(0);
            if let Some((_, new_job)) = self.tables.get(table).and_then(|e| e.roll_up) {
                return Some(new_job(hour));
            }
        }
        None
    }

    /// Whether roll-ups are due or under way.
    pub fn rollups_pending(&self) -> bool {
        self.rollup_job.is_some() || self.rollups_due.values().any(|h| !h.is_empty())
    }

    /// Deletes whole date partitions of this host that ended more than `retain` ago.
    /// Returns the folders removed. Folders are opened below the data dir and removed
    /// without following any link (a planted link is removed, not what it points to).
    pub fn apply_retention(&self, now_us: i64, retain: std::time::Duration) -> Vec<PathBuf> {
        let cutoff_us = now_us - retain.as_micros().min(i64::MAX as u128) as i64;
        let mut removed = Vec::new();
        for &table in Table::EVERY {
            let dir = layout::table_host_dir(&self.opts.data_dir, table, &self.opts.host);
            let Ok(rel) = dir.strip_prefix(&self.opts.data_dir) else {
                continue;
            };
            let Ok(fd) = beneath::open_dir(&self.opts.data_dir, rel, false) else {
                continue;
            };
            for (name, _) in beneath::entries(&fd).unwrap_or_default() {
                let Some(day_end) = name.to_str().and_then(layout::date_partition_end_us) else {
                    continue;
                };
                if day_end <= cutoff_us && beneath::remove_tree_at(&fd, &name).is_ok() {
                    removed.push(dir.join(name));
                }
            }
        }
        removed
    }
}

/// Gives the heap a roll-up step freed back to the system. The daemon flushes on
/// whichever thread of tokio's blocking pool is free, and glibc keeps what one thread
/// freed in that thread's arena, where the next step, on another thread, does not reuse
/// it: a 4,096-interface hour caught up at start peaked at 182 MB (104 MB with one arena).
fn release_freed_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap pages, of every arena.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use crate::tables::{CpuRow, MemRow, PingRow};
    use std::fs::{self, File};
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;
    use crate::events::Source;
    use crate::growing::writer_options;
    use crate::layout::MICROS_PER_HOUR;
    use crate::reader::read_rows;
    use crate::table::SCHEMA_VERSION;
    use crate::writer::{
        writer_properties, DIR_MODE, FILE_MODE, FINAL_WRITE_STAGGER_US, LATE_ROW_GRACE_US,
    };
    use arrow::array::{Array, Int64Array, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;

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

    /// The unwritten rows (only those) spill and are taken in by another store, whose
    /// flush writes them; a FIFO under a spill name refuses the whole spill.
    #[test]
    fn unwritten_rows_spill_and_are_taken_in_whole() {
        let dir = tempfile::tempdir().unwrap();
        let spill_dir = tempfile::tempdir().unwrap();
        let hour = 1_795_647_600_000_000;
        let mut store = Store::open(StoreOptions::new(dir.path(), "h")).unwrap();
        store.push(cpu_row(hour + 1_000_000, 7));
        assert!(store.flush(hour + 1_000_000).is_empty());
        store.push(cpu_row(hour + 2_000_000, 8));
        store.event(hour + 2_000_000, Event::Stop("SIGTERM".into()));
        let spill = beneath::open_root(spill_dir.path()).unwrap();
        assert_eq!(store.spill_unwritten(&spill).unwrap(), 2);
        drop(store);

        let mut next = Store::open(StoreOptions::new(dir.path(), "h")).unwrap();
        assert_eq!(next.merge_spilled(&spill, spill_dir.path()).unwrap(), 2);
        assert!(next.flush(hour + 3_000_000).is_empty());
        let mut uids: Vec<i64> = crate::reader::read_table::<CpuRow>(dir.path())
            .unwrap()
            .iter()
            .map(|r| r.uid)
            .collect();
        uids.sort();
        assert_eq!(uids, [7, 8], "the written row once, the spilled one once");
        let events = crate::reader::read_table::<EventRow>(dir.path()).unwrap();
        assert_eq!(events.len(), 1);

        fs::remove_file(spill_dir.path().join("events.parquet")).unwrap();
        let fifo = std::ffi::CString::new(
            spill_dir
                .path()
                .join("events.parquet")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let before = next.unwritten_rows();
        let err = next.merge_spilled(&spill, spill_dir.path()).unwrap_err();
        assert!(err.to_string().contains("events.parquet"), "{err}");
        assert_eq!(next.unwritten_rows(), before, "no row of a refused spill");
    }

    #[test]
    fn rows_land_in_their_hour_and_read_back_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions::new(dir.path(), "h1");
        let mut store = Store::open(opts).unwrap();
        let hour = 1_795_647_600_000_000; // 2026-11-25T23:00:00Z
        store.push(cpu_row(hour + 2_000_000, 1000));
        store.push(cpu_row(hour + 1_000_000, 0));
        store.push(cpu_row(hour + MICROS_PER_HOUR, 1000));
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
        for &table in Table::EVERY {
            let schema = table.schema();
            let batch = arrow::record_batch::RecordBatch::new_empty(schema.clone());
            let props = writer_properties(table, "h");
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
            store.push(cpu_row(1_000_000, 1));
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
        store.push(cpu_row(1_000_000, 1));
        assert!(store.flush(1_000_000).is_empty());
        assert_eq!(store.table::<CpuRow>().buffered_rows(), 1);
        assert!(store.flush(MICROS_PER_HOUR + LATE_ROW_GRACE_US).is_empty());
        assert_eq!(store.table::<CpuRow>().buffered_rows(), 0);
    }

    #[test]
    fn a_finished_hour_is_rewritten_once_with_the_final_compression() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(StoreOptions::new(dir.path(), "h")).unwrap();
        for s in 0..600 {
            store.push(cpu_row(s * 1_000_000, s % 7));
        }
        assert!(store.flush(600_000_000).is_empty());
        let file = dir.path().join("cpu/host=h/date=1970-01-01/00.parquet");
        let flushed = fs::metadata(&file).unwrap().ino();
        // Over, but still inside the grace for late rows: not rewritten.
        assert!(store.flush(MICROS_PER_HOUR).is_empty());
        assert_eq!(fs::metadata(&file).unwrap().ino(), flushed);
        assert!(store.flush(MICROS_PER_HOUR + LATE_ROW_GRACE_US).is_empty());
        assert_ne!(fs::metadata(&file).unwrap().ino(), flushed, "rewritten");
        assert_eq!(store.table::<CpuRow>().buffered_rows(), 0);
        assert_eq!(read_all(&file).num_rows(), 600);
    }

    #[test]
    fn final_writes_of_different_tables_fall_into_different_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(StoreOptions::new(dir.path(), "h")).unwrap();
        store.push(cpu_row(1_000_000, 1));
        store.push(MemRow {
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
            (
                store.table::<CpuRow>().buffered_rows(),
                store.table::<MemRow>().buffered_rows()
            ),
            (0, 1)
        );
        assert!(store.flush(done + FINAL_WRITE_STAGGER_US).is_empty());
        assert_eq!(store.table::<MemRow>().buffered_rows(), 0);
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
            store.push(cpu_row(s * 1_000_000, 1));
        }
        assert!(store.flush(8_000_000).is_empty());
        // More rows than the bound arrive before the next flush.
        let date = dir.path().join("cpu/host=h/date=1970-01-01");
        for s in 8..20 {
            store.push(cpu_row(s * 1_000_000, 1));
        }
        assert!(store.table::<CpuRow>().buffered_rows() <= 10);
        // The written rows went first and stay on disk in their part.
        assert_eq!(read_all(&date.join("00.parquet")).num_rows(), 8);
        let dropped = store.table_mut::<CpuRow>().take_dropped();
        assert_eq!(
            dropped as usize + store.table::<CpuRow>().buffered_rows(),
            12
        );
        assert!(store.flush(20_000_000).is_empty());
        // The rest continues in a new part: nothing duplicated.
        let second = read_all(&date.join("00.1.parquet"));
        assert_eq!(second.num_rows(), 12 - dropped as usize);
    }

    #[test]
    fn a_compacting_flush_leaves_the_current_hour_in_one_row_group() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(StoreOptions::new(dir.path(), "h")).unwrap();
        let file = dir.path().join("cpu/host=h/date=1970-01-01/00.parquet");
        let groups = |file: &Path| {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(file).unwrap());
            reader.unwrap().metadata().num_row_groups()
        };
        for s in 0..5 {
            store.push(cpu_row(s * 10_000_000 + 1, 1));
            store.push(cpu_row(s * 10_000_000 + 2, 2));
            assert!(store.flush((s + 1) * 10_000_000).is_empty());
        }
        assert!(groups(&file) > 1);
        store.compact_at_next_flush();
        assert!(store.flush(60_000_000).is_empty());
        assert_eq!(groups(&file), 1);
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&file).unwrap());
        let codec = reader
            .unwrap()
            .metadata()
            .row_group(0)
            .column(0)
            .compression();
        assert!(matches!(codec, parquet::basic::Compression::ZSTD(_)));
        let rows = read_rows::<CpuRow>(&file).unwrap();
        assert_eq!(rows.len(), 10);
        assert!(rows.is_sorted_by_key(|r| r.ts_us));
        // Only once: later flushes grow the file again (from one row group of all).
        for s in 7..10 {
            store.push(cpu_row(s * 10_000_000 + 1, 1));
            assert!(store.flush((s + 1) * 10_000_000).is_empty());
        }
        assert_eq!(groups(&file), 2);
        assert_eq!(read_rows::<CpuRow>(&file).unwrap().len(), 13);
    }

    /// A flush that fails after its rows were encoded (and merged with rows on disk, late
    /// rows among them), then the memory bound: the rows on disk leave memory, the others
    /// go to a new part, and the two parts hold every row once.
    #[test]
    fn a_failed_write_then_the_memory_bound_keep_every_row_once() {
        failed_write_then_memory_bound(false);
    }

    /// The same when the failed write was to write the hour whole (a stop's last flush,
    /// or a finished hour's final write), late rows among the new ones.
    #[test]
    fn a_failed_whole_write_then_the_memory_bound_keep_every_row_once() {
        failed_write_then_memory_bound(true);
    }

    fn failed_write_then_memory_bound(whole: bool) {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = StoreOptions::new(dir.path(), "h");
        opts.max_rows_per_table = 30;
        let mut store = Store::open(opts).unwrap();
        let ts = |s: i64| 100_000_000 + s * 1_000_000;
        for s in 0..10 {
            store.push(cpu_row(ts(s), 1));
        }
        assert!(store.flush(ts(10)).is_empty());
        let date = dir.path().join("cpu/host=h/date=1970-01-01");
        // A folder where the temporary goes (it is not removed): the next write fails.
        let blocker = crate::layout::temp_path(&date.join("00.parquet")).join("x");
        fs::create_dir_all(&blocker).unwrap();
        for s in 10..20 {
            // Late rows too, older than every row on disk.
            store.push(cpu_row(if s % 3 == 0 { ts(s - 50) } else { ts(s) }, 2));
        }
        if whole {
            store.compact_at_next_flush();
        }
        assert_eq!(store.flush(ts(20)).len(), 1, "the write fails");
        for s in 20..31 {
            store.push(cpu_row(ts(s), 3));
        }
        assert!(store.table::<CpuRow>().buffered_rows() <= 27, "shed");
        fs::remove_dir_all(blocker.parent().unwrap()).unwrap();
        assert!(store.flush(ts(31)).is_empty());
        assert_eq!(store.table_mut::<CpuRow>().take_dropped(), 0);
        let mut back: Vec<(i64, i64)> = ["00.parquet", "00.1.parquet"]
            .iter()
            .flat_map(|name| read_rows::<CpuRow>(&date.join(name)).unwrap())
            .map(|r| (r.ts_us, r.uid))
            .collect();
        back.sort();
        let mut expected: Vec<(i64, i64)> = (0..10)
            .map(|s| (ts(s), 1))
            .chain((10..20).map(|s| (if s % 3 == 0 { ts(s - 50) } else { ts(s) }, 2)))
            .chain((20..31).map(|s| (ts(s), 3)))
            .collect();
        expected.sort();
        assert_eq!(back, expected);
        assert_eq!(
            read_rows::<CpuRow>(&date.join("00.parquet")).unwrap().len(),
            10
        );
    }

    #[test]
    fn dropped_rows_become_an_event() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = StoreOptions::new(dir.path(), "h");
        opts.max_rows_per_table = 5;
        let mut store = Store::open(opts).unwrap();
        for s in 0..7 {
            store.push(cpu_row(s * 1_000_000, 1));
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
        store.push(cpu_row(1_000_000, 1));
        assert!(store.flush(1_000_000).is_empty());
        fs::remove_dir_all(&data).unwrap();
        store.push(cpu_row(2_000_000, 1));
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
            store.push(cpu_row(30_000_000, uid));
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
            store.extend(rows.clone());
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
    fn a_refused_second_store_touches_nothing_of_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(StoreOptions::new(dir.path(), "h")).unwrap();
        let date = dir.path().join("cpu/host=h/date=1970-01-01");
        fs::create_dir_all(&date).unwrap();
        // The running store's temporary, half written.
        fs::write(date.join(".00.parquet.tmp"), b"half").unwrap();
        let err = Store::open(StoreOptions::new(dir.path(), "h"))
            .err()
            .expect("the second store is refused");
        assert!(
            err.to_string().starts_with("in use by another csm"),
            "{err}"
        );
        assert!(date.join(".00.parquet.tmp").exists());
        drop(first);
        Store::open(StoreOptions::new(dir.path(), "h")).unwrap();
        assert!(
            !date.join(".00.parquet.tmp").exists(),
            "stale once nobody holds it"
        );
    }

    #[test]
    fn every_collected_table_has_a_writer_and_rows_find_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(StoreOptions::new(dir.path(), "h")).unwrap();
        assert_eq!(
            store.tables.keys().copied().collect::<Vec<_>>(),
            Table::written().collect::<Vec<_>>()
        );
        store.extend_rows(vec![cpu_row(1_000_000, 7)].into());
        store.extend_rows(vec![EventRow::new(1_000_000, &Event::Stop("x".into()))].into());
        assert_eq!(store.unwritten_rows(), 2);
        assert!(store.flush(2_000_000).is_empty());
        let cpu: Vec<CpuRow> = crate::read_table(dir.path()).unwrap();
        assert_eq!(cpu, [cpu_row(1_000_000, 7)]);
        let events: Vec<EventRow> = crate::read_table(dir.path()).unwrap();
        assert_eq!(events[0].event(), Event::Stop("x".into()));
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
