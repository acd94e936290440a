//! Buffers each table's rows per hour and replaces the hour's file atomically at every
//! flush, so the current hour is always readable and a crash loses at most one flush
//! interval. While the hour fills, each flush encodes only its own new rows, as one more
//! row group of the file kept in memory (`growing.rs`); the hour's last write re-encodes
//! all its rows into one row group with the strongest compression.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::column::ColumnEncoding;
use crate::growing::{writer_options, GrowingFile};
use crate::layout::{self, MICROS_PER_HOUR};
use crate::table::{Row, Table, SCHEMA_VERSION};
use crate::{atomic, beneath};

/// Data files reveal what each user does: owner and group only.
pub const FILE_MODE: u32 = 0o640;
pub const DIR_MODE: u32 = 0o750;

/// How long a finished hour stays in memory after its last flush, for rows that arrive
/// late (a ping measurement is stamped with its start time).
pub(crate) const LATE_ROW_GRACE_US: i64 = 5 * 60 * 1_000_000;

#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub data_dir: PathBuf,
    /// Host partition value (already sanitized).
    pub host: String,
    /// Most rows one table keeps in memory (written or not). Past it the oldest written
    /// rows are let go first (they are on disk), then the oldest unwritten ones, counted.
    pub max_rows_per_table: usize,
    /// Use a data dir that another user owns or may write to (see
    /// [`check_ownership`](crate::data_dir::check_ownership)).
    pub allow_unsafe_data_dir: bool,
    /// Re-encode the current hour's file whole at every flush, as csm did before the
    /// file grew by one row group per flush: only for `bench_store`'s side-by-side.
    #[doc(hidden)]
    pub rewrite_whole_hour_at_flush: bool,
}

impl StoreOptions {
    pub fn new(data_dir: impl Into<PathBuf>, host: impl Into<String>) -> Self {
        StoreOptions {
            data_dir: data_dir.into(),
            host: host.into(),
            max_rows_per_table: DEFAULT_MAX_ROWS_PER_TABLE,
            allow_unsafe_data_dir: false,
            rewrite_whole_hour_at_flush: false,
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
    /// The data dir: every path below it is opened relative to it, never through a link.
    root: PathBuf,
    dir: PathBuf,
    /// For the row groups of an hour that is still filling: cheap to compress (large
    /// ones, and the whole-hour rewrites of `rewrite_whole_hour`) ...
    props: Arc<WriterProperties>,
    /// ... and cheaper still (small ones).
    small_props: Arc<WriterProperties>,
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
    /// See [`StoreOptions::rewrite_whole_hour_at_flush`].
    rewrite_whole_hour: bool,
    /// The next flush writes every current hour it writes, or that has row groups, whole.
    compact_next_flush: bool,
    /// Bytes of the files written so far (each replacement counts whole).
    bytes_written: u64,
}

/// Between the final writes of successive tables (one default flush interval).
pub(crate) const FINAL_WRITE_STAGGER_US: i64 = 10_000_000;

/// One hour of one table. `rows[..written]` are in `part` on disk; the rest came since
/// the last successful write (shedding counts on that, so rows before `written` never move).
/// `growing` holds `part`'s row groups, encoded: the first `growing.rows()` rows.
/// `compacted`: `part` was last written with the final (strongest) compression, all rows
/// sorted in one row group.
struct HourBuffer<R> {
    rows: Vec<R>,
    written: usize,
    part: PathBuf,
    compacted: bool,
    growing: Option<GrowingFile>,
}

impl<R: Row> HourBuffer<R> {
    fn new(part: PathBuf) -> Self {
        HourBuffer {
            rows: Vec::new(),
            written: 0,
            part,
            compacted: false,
            growing: None,
        }
    }

    fn dirty(&self) -> bool {
        self.written < self.rows.len()
    }

    /// Starts `part` afresh: none of the rows held are in it or in its bytes.
    fn restart_in(&mut self, part: PathBuf) {
        self.written = 0;
        self.part = part;
        self.compacted = false;
        self.growing = None;
    }

    /// Encodes the rows that came since the last flush as one more row group and replaces
    /// `part` with the file so far. Returns the file's size.
    fn write_growing(
        &mut self,
        data_dir: &Path,
        [small, large]: [&Arc<WriterProperties>; 2],
    ) -> io::Result<u64> {
        let growing = self
            .growing
            .get_or_insert_with(|| GrowingFile::new(R::TABLE.schema(), small, large));
        if let Err(err) = growing.append(&mut self.rows, self.written) {
            // Start over from the first row next time.
            self.growing = None;
            return Err(err);
        }
        let bytes = replace_part(data_dir, &self.part, |file| growing.write_file(file))?;
        self.written = self.rows.len();
        Ok(bytes)
    }

    /// Every row, sorted, in one row group: the hour's last write (with the final
    /// compression), or a stop's. Returns the file's size. The rows on disk keep their
    /// places until the write succeeds (a late row sorted in among them by a write that
    /// then failed would be shed as written, and a written one kept twice): when the new
    /// rows do not all come after them, the file is written from a sorted copy.
    fn write_whole(&mut self, data_dir: &Path, props: &Arc<WriterProperties>) -> io::Result<u64> {
        self.rows[self.written..].sort_by_key(|r| r.ts_us());
        let bytes = if self.rows.is_sorted_by_key(|r| r.ts_us()) {
            write_part(data_dir, &self.part, &self.rows, props)?
        } else {
            let mut sorted = self.rows.clone();
            sorted.sort_by_key(|r| r.ts_us());
            let bytes = write_part(data_dir, &self.part, &sorted, props)?;
            self.rows = sorted;
            bytes
        };
        self.written = self.rows.len();
        self.growing = None;
        Ok(bytes)
    }
}

impl<R: Row> TableWriter<R> {
    pub fn new(opts: &StoreOptions) -> Self {
        TableWriter {
            root: opts.data_dir.clone(),
            dir: layout::table_host_dir(&opts.data_dir, R::TABLE, &opts.host),
            props: Arc::new(flush_properties(R::TABLE, &opts.host)),
            small_props: Arc::new(small_group_properties(R::TABLE, &opts.host)),
            final_props: Arc::new(writer_properties(R::TABLE, &opts.host)),
            hours: BTreeMap::new(),
            max_rows: opts.max_rows_per_table.max(1),
            dropped: 0,
            finished: Vec::new(),
            final_write_delay_us: Table::written().position(|t| t == R::TABLE).unwrap_or(0) as i64
                * FINAL_WRITE_STAGGER_US,
            rewrite_whole_hour: opts.rewrite_whole_hour_at_flush,
            compact_next_flush: false,
            bytes_written: 0,
        }
    }

    pub fn push(&mut self, row: R) {
        let hour = row.hour();
        let dir = &self.dir;
        let buffer = self
            .hours
            .entry(hour)
            .or_insert_with(|| HourBuffer::new(new_part(dir, hour)));
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

    /// Bytes of the current hours' files held in memory (see `growing.rs`).
    pub fn buffered_file_bytes(&self) -> usize {
        self.hours
            .values()
            .filter_map(|h| h.growing.as_ref())
            .map(GrowingFile::bytes)
            .sum()
    }

    /// Bytes of the files this writer wrote (each replacement of a file counts whole).
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Rows held that are not on disk yet.
    pub fn unwritten_rows(&self) -> usize {
        self.hours.values().map(|h| h.rows.len() - h.written).sum()
    }

    /// The rows held that are not on disk yet, every hour (for a spill when a stop's last
    /// flush fails).
    pub fn unwritten(&self) -> Vec<R> {
        (self.hours.values())
            .flat_map(|h| h.rows[h.written..].iter().cloned())
            .collect()
    }

    /// Makes the next flush write each current hour's file (that the flush writes, or
    /// that grew by row groups) whole, as one row group at zstd 6: for the last flush
    /// before a stop, so that the files a stopped daemon leaves are as whole rewrites left
    /// them.
    pub fn compact_at_next_flush(&mut self) {
        self.compact_next_flush = true;
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
                buffer.restart_in(new_part(&dir, hour));
            }
        }
        for buffer in self.hours.values_mut() {
            if total <= target {
                break;
            }
            buffer.rows.sort_by_key(|r| r.ts_us());
            let n = (total - target).min(buffer.rows.len());
            buffer.rows.drain(..n);
            // Nothing of this part is on disk (its written rows went above): only the
            // bytes of rows encoded but not yet written, some of them just dropped.
            buffer.growing = None;
            total -= n;
            self.dropped += n as u64;
        }
        self.hours.retain(|_, b| !b.rows.is_empty());
    }

    /// Writes every hour that got rows since its last write (its new rows as one more row
    /// group); rewrites an hour that is over once more, whole, with the final compression,
    /// then lets go of it. A failed hour stays in memory and is retried next time.
    pub fn flush(&mut self, now_us: i64) -> Vec<WriteError> {
        let mut errors = Vec::new();
        let wait = LATE_ROW_GRACE_US + self.final_write_delay_us;
        let over = |hour: i64| now_us >= (hour + 1) * MICROS_PER_HOUR + wait;
        let compact = std::mem::take(&mut self.compact_next_flush);
        for (&hour, buffer) in self.hours.iter_mut() {
            let last_write = over(hour);
            let compact = compact && (buffer.dirty() || buffer.growing.is_some());
            if !buffer.dirty() && !compact && (!last_write || buffer.compacted) {
                continue;
            }
            let written = if last_write {
                buffer.write_whole(&self.root, &self.final_props)
            } else if self.rewrite_whole_hour || compact {
                buffer.write_whole(&self.root, &self.props)
            } else {
                buffer.write_growing(&self.root, [&self.small_props, &self.props])
            };
            match written {
                Ok(bytes) => {
                    self.bytes_written += bytes;
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

/// How a table's files are written, from measurements (examples/bench_store.rs):
/// - each column's encoding from its [`Kind`](crate::column::Kind) in the table's
///   declaration (`tables.rs`);
/// - zstd level 19 for files written for the last time (a finished hour, a roll-up); the
///   current hour's row groups: level 6 for the large ones, Snappy for the few last flushes'
///   (see [`flush_properties`] and [`small_group_properties`]);
/// - one row group per hourly file (the current hour: a few, see `growing.rs`; a roll-up
///   of more than about 4 MiB encoded: one per 4 MiB, see [`StreamedPart`]) and one data
///   page per column per row group, chunk-level statistics, no page index or offset index
///   (files are hourly already);
/// - no embedded Arrow schema (see [`writer_options`](crate::growing::writer_options));
/// - rows sorted by time, and the files say so.
pub fn writer_properties(table: Table, host: &str) -> WriterProperties {
    properties(table, host, zstd(FINAL_ZSTD_LEVEL))
}

/// [`writer_properties`] with the cheaper compression of the current hour's large row
/// groups (and of the whole-hour rewrites csm did at every flush before).
pub fn flush_properties(table: Table, host: &str) -> WriterProperties {
    properties(table, host, zstd(FLUSH_ZSTD_LEVEL))
}

/// [`writer_properties`] with Snappy, for the current hour's small row groups (the last
/// flushes' rows, see `growing.rs`): parquet creates a zstd compressor and decompressor
/// for every column chunk, and for a flush's few rows that setup cost more than the
/// encoding itself (bench_store, every row group of the current hour in one codec: CPU
/// per flush in the hour's first 10 minutes 6.4 ms with zstd 6, 5.8 ms with
/// zstd 1, 3.3 ms with Snappy); small groups are a small part of the file's bytes.
pub fn small_group_properties(table: Table, host: &str) -> WriterProperties {
    properties(table, host, Compression::SNAPPY)
}

fn zstd(level: i32) -> Compression {
    Compression::ZSTD(ZstdLevel::try_new(level).expect("valid zstd level"))
}

/// zstd level of the current hour's large row groups.
const FLUSH_ZSTD_LEVEL: i32 = 6;
/// zstd level of a file written for the last time (measured in examples/bench_store.rs:
/// 6% smaller than level 6; levels above 19 gain nothing more here).
const FINAL_ZSTD_LEVEL: i32 = 19;

fn properties(table: Table, host: &str, compression: Compression) -> WriterProperties {
    let metadata = vec![
        KeyValue::new("csm.schema_version".into(), SCHEMA_VERSION.to_string()),
        KeyValue::new("csm.version".into(), env!("CARGO_PKG_VERSION").to_string()),
        KeyValue::new("csm.host".into(), host.to_string()),
        KeyValue::new("csm.table".into(), table.name().to_string()),
    ];
    let mut builder = WriterProperties::builder()
        .set_compression(compression)
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
    for column in table.columns() {
        // The doubles of a list column (`rtts_ms`) are encoded as its items.
        let path = match column.data_type {
            arrow::datatypes::DataType::List(ref item) => {
                ColumnPath::new(vec![column.name.into(), "list".into(), item.name().clone()])
            }
            _ => ColumnPath::from(column.name),
        };
        builder = match column.kind.encoding() {
            ColumnEncoding::Dictionary => builder,
            ColumnEncoding::DeltaBinaryPacked => builder
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED),
            ColumnEncoding::ByteStreamSplit => builder
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, Encoding::BYTE_STREAM_SPLIT),
        };
    }
    builder.build()
}

/// Writes rows to a hidden temporary, fsyncs it, renames it over `part`, fsyncs the folder.
/// `part` lies below `data_dir`; its folders are created (or opened) relative to the data
/// dir, never through a link. Returns the file's size.
pub(crate) fn write_part<R: Row>(
    data_dir: &Path,
    part: &Path,
    rows: &[R],
    props: &Arc<WriterProperties>,
) -> io::Result<u64> {
    let batch = R::to_batch(rows).map_err(io::Error::other)?;
    replace_part(data_dir, part, |file| {
        let mut writer =
            ArrowWriter::try_new_with_options(file, batch.schema(), writer_options(props))
                .map_err(io::Error::other)?;
        writer.write(&batch).map_err(io::Error::other)?;
        writer.into_inner().map_err(io::Error::other)?;
        Ok(())
    })
}

/// Replaces `part` whole with what `fill` writes into the new file (see [`write_part`]);
/// returns the file's size.
fn replace_part(
    data_dir: &Path,
    part: &Path,
    fill: impl FnOnce(&mut fs::File) -> io::Result<()>,
) -> io::Result<u64> {
    let (dir, name, temp) = part_folder(data_dir, part)?;
    atomic::replace_file_at(&dir, &name, &temp, FILE_MODE, |mut file| {
        fill(&mut file)?;
        let bytes = file.metadata()?.len();
        Ok((file, bytes))
    })
}

/// `part`'s folder below `data_dir`, created or opened relative to the data dir (never
/// through a link), with the part's name and its temporary's name.
fn part_folder(data_dir: &Path, part: &Path) -> io::Result<(OwnedFd, String, String)> {
    let rel_dir = part
        .parent()
        .and_then(|dir| dir.strip_prefix(data_dir).ok())
        .ok_or_else(|| io::Error::other(format!("{} is not below the data dir", part.display())))?;
    create_dir_all(data_dir)?;
    let dir = beneath::open_dir(data_dir, rel_dir, true)?;
    Ok((dir, file_name(part), file_name(&layout::temp_path(part))))
}

/// In-progress bytes (encoded, before compression) past which a [`StreamedPart`] ends its
/// row group: what writing a large file holds, whatever its rows.
const STREAMED_GROUP_BYTES: usize = 4 << 20;

/// A part written over several calls, as its rows become known: rows go to its temporary
/// (see [`write_part`]) as row groups of at most about [`STREAMED_GROUP_BYTES`], and
/// [`finish`](Self::finish) puts it in place. Dropped unfinished, the temporary is removed
/// and the part left as it was.
pub(crate) struct StreamedPart {
    replacement: atomic::Replacement,
    writer: ArrowWriter<fs::File>,
}

impl StreamedPart {
    pub(crate) fn create<R: Row>(
        data_dir: &Path,
        part: &Path,
        props: &Arc<WriterProperties>,
    ) -> io::Result<StreamedPart> {
        let (dir, name, temp) = part_folder(data_dir, part)?;
        let replacement = atomic::Replacement::begin(dir, &name, &temp, FILE_MODE)?;
        let file = replacement.file().try_clone()?;
        let writer =
            ArrowWriter::try_new_with_options(file, R::TABLE.schema(), writer_options(props))
                .map_err(io::Error::other)?;
        Ok(StreamedPart {
            replacement,
            writer,
        })
    }

    pub(crate) fn write<R: Row>(&mut self, rows: &[R]) -> io::Result<()> {
        let batch = R::to_batch(rows).map_err(io::Error::other)?;
        self.writer.write(&batch).map_err(io::Error::other)?;
        if self.writer.in_progress_size() > STREAMED_GROUP_BYTES {
            self.writer.flush().map_err(io::Error::other)?;
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> io::Result<()> {
        self.writer.close().map_err(io::Error::other)?;
        self.replacement.commit()
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Creates the data dir itself (its path is the administrator's), mode [`DIR_MODE`].
pub(crate) fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    // The umask may have taken bits away.
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
}

/// Creates and removes a probe file (new, never through a link).
pub(crate) fn check_writable(dir: &Path) -> io::Result<()> {
    let probe = dir.join(format!(".csm-write-probe-{}", std::process::id()));
    atomic::write_file(&probe, FILE_MODE, b"")?;
    fs::remove_file(&probe)
}

/// Deletes temporaries a crash left behind; visible `.parquet` files are never touched.
/// The walk goes folder descriptor to folder descriptor and never through a link.
pub fn remove_stray_temporaries(dir: &Path) -> io::Result<usize> {
    remove_temporaries_in(&beneath::open_root(dir)?)
}

fn remove_temporaries_in(dir: &std::os::fd::OwnedFd) -> io::Result<usize> {
    use rustix::fs::{FileType, Mode, OFlags};
    let mut removed = 0;
    for (name, kind) in beneath::entries(dir)? {
        let kind = match kind {
            Some(kind) => kind,
            None => rustix::fs::statat(dir, &name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .map(|st| FileType::from_raw_mode(st.st_mode))?,
        };
        if kind == FileType::Directory {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let child = rustix::fs::openat(dir, &name, flags, Mode::empty())?;
            removed += remove_temporaries_in(&child)?;
        } else if kind == FileType::RegularFile && layout::is_temp_file(&name.to_string_lossy()) {
            rustix::fs::unlinkat(dir, &name, rustix::fs::AtFlags::empty())?;
            removed += 1;
        }
    }
    Ok(removed)
}
