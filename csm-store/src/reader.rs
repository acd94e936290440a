//! THE reader of csm's Parquet files: every consumer (`csm report`, `csm-plot`, top's
//! ping history, the daemon's roll-ups, the tests) reads through it, so that every bound
//! on what a file may make a reader decode is here, once.
//!
//! A file is read a batch of [`BATCH_ROWS`] rows at a time and held to [`BOUNDS`]:
//! - what its footer claims is checked before anything is decompressed: rows in the file
//!   and in each row group, and each wanted column chunk's uncompressed size;
//! - what is decoded is counted as it is decoded, whatever the footer claims: rows (never
//!   more than the row groups claim), bytes per column and per file, and the length of
//!   every string. Text columns are decoded as dictionaries (never expanded to one string
//!   per row before they are measured): a dictionary of long strings referenced by a
//!   million rows is refused when its strings are measured, not after the expansion
//!   took gigabytes (or aborted the process: an allocation failure is an abort in Rust);
//! - what a command holds across files is charged to a [`Held`] budget: a reader that
//!   keeps rows, or aggregates whose size grows with what it reads (a line per interface
//!   name), refuses the file that would take it past the budget, naming the file and the
//!   bound; a reader that aggregates as it goes ([`for_each_batch`], [`for_each_rows`])
//!   holds one batch besides its aggregates.
//!
//! Every refusal is an `InvalidData` error (`OutOfMemory` for the command's budget) whose
//! message is one line: `<file>: <what> ...: not read`.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::ChunkReader;
use parquet::schema::types::SchemaDescriptor;

use crate::column::{read_column, Kind};
use crate::table::{FromBatch, Row, Table};
use crate::writer::DEFAULT_MAX_ROWS_PER_TABLE;

/// Most rows a file csm wrote can hold: an hour's part never outgrows the writer's memory
/// bound ([`DEFAULT_MAX_ROWS_PER_TABLE`]). A file claiming more was not written by csm
/// (a few hundred kilobytes of Parquet can claim tens of millions of rows) and is refused
/// before anything is decompressed.
pub const MAX_ROWS_PER_FILE: i64 = DEFAULT_MAX_ROWS_PER_TABLE as i64;

/// Rows decoded at a time: what a reader that aggregates as it goes holds.
pub const BATCH_ROWS: usize = 8192;

const MIB: u64 = 1 << 20;

/// What one file may make a reader decode. Every bound is far above what csm writes (a
/// million-row `net` part decodes to about 110 MB in all, its longest column to 16 MB;
/// names are at most a few hundred bytes) and far below what hurts a 256 MB reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Rows the footer may claim, in all and in any row group; rows decoded never exceed
    /// what the row groups claim.
    pub rows_per_file: i64,
    /// Bytes of one column, claimed (each chunk's uncompressed size in the footer) and
    /// decoded (strings as one copy per row), over the file.
    pub bytes_per_column: u64,
    /// Bytes decoded from the file, every column.
    pub bytes_per_file: u64,
    /// Bytes of one string value.
    pub bytes_per_string: usize,
}

/// The bounds of every read.
pub const BOUNDS: Bounds = Bounds {
    rows_per_file: MAX_ROWS_PER_FILE,
    bytes_per_column: 128 * MIB,
    bytes_per_file: 512 * MIB,
    bytes_per_string: 64 << 10,
};

/// What a command may hold of the rows it read, across every file, as the allocator
/// counts it: the total that a reader keeping rows or aggregates is refused past. The
/// readers of many rows aggregate as they go (`csm report` folds the counter tables
/// into per-user and per-interface lines, csm-plot bins into pixel columns), so what is
/// kept is the aggregates and the few tables kept as rows (beancounters): a month of
/// ping to 10 targets every 10 s holds about 100 MiB by this count. With the files being
/// decoded ([`DECODING_PER_COMMAND`]) a command stays under 256 MB.
pub const HELD_PER_COMMAND: u64 = 128 * MIB;

/// What a command's reading threads may decode at once, besides what they hold: the
/// decode windows of the files being read (see [`Held::decoding`]). A csm file holds one
/// page per column chunk, so decoding a row group holds each wanted column chunk whole,
/// decompressed: about 50 MB for a million-row `net` part. Measured (`/usr/bin/time`,
/// a million interface names per file): four such files on three readers took the
/// report to 247–308 MB with the 128 MiB budget; one file at a time, 178 MB.
pub const DECODING_PER_COMMAND: u64 = 96 * MIB;

/// A command's budget of held bytes, shared by its reading threads. Rows kept are
/// charged as their in-memory size (the row struct plus its strings). The files being
/// decoded are bounded apart, by [`DECODING_PER_COMMAND`]: a reader waits for others to
/// finish rather than decode past it.
#[derive(Debug)]
pub struct Held {
    limit: u64,
    used: AtomicU64,
    /// A charge was refused: the command fails.
    refused: AtomicBool,
    decoding_limit: u64,
    /// The decode windows of the files being read.
    decoding: Mutex<u64>,
    decoded: Condvar,
}

impl Held {
    pub const fn new(limit: u64) -> Held {
        Held {
            limit,
            used: AtomicU64::new(0),
            refused: AtomicBool::new(false),
            decoding_limit: DECODING_PER_COMMAND,
            decoding: Mutex::new(0),
            decoded: Condvar::new(),
        }
    }

    /// The command's default budget, [`HELD_PER_COMMAND`].
    pub const fn per_command() -> Held {
        Held::new(HELD_PER_COMMAND)
    }

    /// Bytes charged so far.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Gives back `bytes` charged before (what was held and is dropped).
    pub fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Waits until a file whose decoding holds `window` bytes fits beside the files being
    /// decoded (always, when none is: a file alone is bounded by [`BOUNDS`]), and
    /// counts it until the guard is dropped.
    fn decoding(&self, window: u64) -> Decoding<'_> {
        let mut decoding = self.decoding.lock().unwrap_or_else(|e| e.into_inner());
        while *decoding > 0 && decoding.saturating_add(window) > self.decoding_limit {
            decoding = self
                .decoded
                .wait(decoding)
                .unwrap_or_else(|e| e.into_inner());
        }
        *decoding += window;
        Decoding { held: self, window }
    }

    /// Charges `bytes` read from `path`, or refuses (`OutOfMemory`, naming the file and
    /// the bound) if they do not fit; a refused charge is not kept. Once a charge was
    /// refused every later one is: the command fails, and its other reading threads stop
    /// at their next batch instead of filling what the refused one gave back (memory a
    /// thread frees stays with that thread's allocator arena).
    pub fn charge(&self, path: &Path, bytes: u64) -> io::Result<()> {
        if self.refused.load(Ordering::Relaxed) {
            return Err(self.refusal(path));
        }
        let before = self.used.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) <= self.limit {
            return Ok(());
        }
        self.used.fetch_sub(bytes, Ordering::Relaxed);
        self.refused.store(true, Ordering::Relaxed);
        Err(self.refusal(path))
    }

    /// The refusal of `path` for the command's bound.
    fn refusal(&self, path: &Path) -> io::Error {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!(
                "{}: not read: what was read would hold more than the {} MiB a command \
                 holds (the reader's bound); read a shorter range",
                path.display(),
                self.limit / MIB
            ),
        )
    }
}

/// A file being decoded, counted in its command's [`Held`] until dropped.
struct Decoding<'a> {
    held: &'a Held,
    window: u64,
}

impl Drop for Decoding<'_> {
    fn drop(&mut self) {
        let mut decoding = self.held.decoding.lock().unwrap_or_else(|e| e.into_inner());
        *decoding -= self.window;
        self.held.decoded.notify_all();
    }
}

/// All rows of one Parquet file, at most [`MAX_ROWS_PER_FILE`]. Errors name the file.
pub fn read_rows<R: FromBatch>(path: &Path) -> io::Result<Vec<R>> {
    read_rows_at_most(path, MAX_ROWS_PER_FILE)
}

/// [`read_rows`] with another bound.
pub fn read_rows_at_most<R: FromBatch>(path: &Path, max_rows: i64) -> io::Result<Vec<R>> {
    read_rows_from(open_named(path)?, path, max_rows)
}

/// The rows of an open file (`path` names it in errors), at most `max_rows`.
pub fn read_rows_from<R: FromBatch>(file: File, path: &Path, max_rows: i64) -> io::Result<Vec<R>> {
    let bounds = Bounds {
        rows_per_file: max_rows,
        ..BOUNDS
    };
    collect(file, path, None, &bounds, None)
}

/// [`read_rows`] reading only the columns named in `columns` (the row's other fields are
/// left at their default): each column of a file costs a decompressor of its own, so a
/// reader of thousands of hour files reads no column it does not use. A wanted column the
/// file lacks reads as [`read_rows`] reads it (nulls when nullable, else an error).
pub fn read_columns<R: FromBatch>(path: &Path, columns: &[&str]) -> io::Result<Vec<R>> {
    collect(open_named(path)?, path, Some(columns), &BOUNDS, None)
}

/// The rows of one file (only `columns`, all when `None`), charged to the command's
/// `held` budget: the reader of a command that keeps rows from many files.
pub fn read_rows_held<R: FromBatch>(
    path: &Path,
    columns: Option<&[&str]>,
    held: &Held,
) -> io::Result<Vec<R>> {
    collect(open_named(path)?, path, columns, &BOUNDS, Some(held))
}

/// The `ts` column of one file, whatever its table (every table has one): enough to
/// know whether a file holds rows of a range, at the cost of one column.
pub fn read_times(path: &Path) -> io::Result<Vec<i64>> {
    let mut times = Vec::new();
    for_each_batch(open_named(path)?, path, Some(&["ts"]), &BOUNDS, |batch| {
        let read = read_column::<i64>(&batch, "ts", Kind::Time);
        times.extend(read.map_err(|err| named(path, &err))?);
        Ok(())
    })?;
    Ok(times)
}

/// Rows of one file a batch at a time, handed to `each` as they are decoded: a reader
/// that aggregates holds one batch, whatever the file's size.
pub fn for_each_rows<R: FromBatch>(
    file: File,
    path: &Path,
    columns: Option<&[&str]>,
    mut each: impl FnMut(Vec<R>) -> io::Result<()>,
) -> io::Result<()> {
    for_each_batch(file, path, columns, &BOUNDS, |batch| {
        each(R::from_projected_batch(&batch, columns).map_err(|err| named(path, &err))?)
    })
}

/// [`for_each_rows`] of the file at `path`, opened as every data file is (no link, no
/// FIFO).
pub fn for_each_rows_at<R: FromBatch>(
    path: &Path,
    columns: Option<&[&str]>,
    each: impl FnMut(Vec<R>) -> io::Result<()>,
) -> io::Result<()> {
    for_each_rows(open_named(path)?, path, columns, each)
}

/// [`for_each_rows_at`] by one of a command's reading threads: the file is decoded once
/// its decode window fits beside the other threads' (see [`Held::decoding`]).
pub fn for_each_rows_held<R: FromBatch>(
    path: &Path,
    columns: Option<&[&str]>,
    held: &Held,
    mut each: impl FnMut(Vec<R>) -> io::Result<()>,
) -> io::Result<()> {
    let read = FileRead {
        path,
        columns,
        bounds: &BOUNDS,
        groups: None,
        held: Some(held),
    };
    read.batches(open_named(path)?, |batch| {
        each(R::from_projected_batch(&batch, columns).map_err(|err| named(path, &err))?)
    })
    .map(drop)
}

/// The rows of a file collected, charged to `held` when given.
fn collect<R: FromBatch>(
    file: File,
    path: &Path,
    columns: Option<&[&str]>,
    bounds: &Bounds,
    held: Option<&Held>,
) -> io::Result<Vec<R>> {
    let mut rows = Vec::new();
    let mut charged = 0;
    let read = FileRead {
        path,
        columns,
        bounds,
        groups: None,
        held,
    };
    let result = read.batches(file, |batch| {
        if let Some(held) = held {
            let bytes = held_bytes::<R>(&batch);
            held.charge(path, bytes)?;
            charged += bytes;
        }
        let read = R::from_projected_batch(&batch, columns);
        rows.extend(read.map_err(|err| named(path, &err))?);
        Ok(())
    });
    if let (Err(_), Some(held)) = (&result, held) {
        // Nothing of a refused file is kept: give its charges back.
        held.used.fetch_sub(charged, Ordering::Relaxed);
    }
    result.map(|_| rows)
}

/// What a batch's rows take once read into `R`s and kept: the structs twice (a growing
/// vector holds up to twice its rows, and a reader gathering files copies them once
/// more), and each string as the allocator gives it (at least 32 bytes).
fn held_bytes<R>(batch: &RecordBatch) -> u64 {
    let strings: usize = batch
        .columns()
        .iter()
        .filter_map(|column| column.as_string_opt::<i32>())
        .map(|strings| {
            let offsets = strings.offsets();
            offsets
                .windows(2)
                .map(|w| allocated((w[1] - w[0]).max(0) as usize))
                .sum::<usize>()
        })
        .sum();
    (2 * batch.num_rows() * std::mem::size_of::<R>() + strings) as u64
}

/// Bytes the allocator takes for a string of `len` bytes (none for an empty one).
fn allocated(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        len.max(24) + 8
    }
}

/// The batches of one file (only the `columns` named, all when `None`), each handed to
/// `each` once it is decoded and found within `bounds` (text columns as plain strings).
/// Errors name the file; refusals say which bound.
pub fn for_each_batch(
    file: File,
    path: &Path,
    columns: Option<&[&str]>,
    bounds: &Bounds,
    each: impl FnMut(RecordBatch) -> io::Result<()>,
) -> io::Result<()> {
    for_each_batch_in(file, path, columns, bounds, None, each).map(drop)
}

/// [`for_each_batch`] of only the row groups `groups` (all when `None`; what is past the
/// file's last is not there). Returns how many row groups the file has, so that a reader
/// can go through a large file a few row groups at a time.
pub fn for_each_batch_in(
    file: File,
    path: &Path,
    columns: Option<&[&str]>,
    bounds: &Bounds,
    groups: Option<std::ops::Range<usize>>,
    each: impl FnMut(RecordBatch) -> io::Result<()>,
) -> io::Result<usize> {
    let read = FileRead {
        path,
        columns,
        bounds,
        groups,
        held: None,
    };
    read.batches(file, each)
}

/// What to read of one file.
struct FileRead<'a> {
    path: &'a Path,
    columns: Option<&'a [&'a str]>,
    bounds: &'a Bounds,
    groups: Option<std::ops::Range<usize>>,
    /// The command whose decode windows bound this one, if any.
    held: Option<&'a Held>,
}

/// Files up to this size are read whole, in one read, before decoding: the decoder reads
/// a file from disk with a duplicated descriptor, a seek and a read per column, and
/// those system calls were a tenth of a month's report (hour files are kilobytes).
/// Larger files are read by parts, as the decoder asks, never whole.
const READ_WHOLE_BELOW: u64 = 16 << 20;

/// What the decoder reads: a small file's bytes, or the file itself.
enum Source {
    Whole(Bytes),
    File(File),
}

/// The bytes of a file smaller than [`READ_WHOLE_BELOW`], else the file.
fn in_memory(mut file: File, path: &Path) -> io::Result<Source> {
    let size = file.metadata().map_err(|err| named(path, &err))?.len();
    if size >= READ_WHOLE_BELOW {
        return Ok(Source::File(file));
    }
    // From the start whatever the descriptor's position (the decoder reads by offset),
    // and bounded: the file may have grown since it was measured, and is then read by
    // parts after all.
    let mut bytes = Vec::with_capacity(size as usize);
    file.seek(SeekFrom::Start(0))
        .and_then(|_| (&mut file).take(READ_WHOLE_BELOW).read_to_end(&mut bytes))
        .map_err(|err| named(path, &err))?;
    if bytes.len() as u64 >= READ_WHOLE_BELOW {
        return Ok(Source::File(file));
    }
    Ok(Source::Whole(Bytes::from(bytes)))
}

/// A refusal: the file and what it would take past which bound.
fn refused(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}: not read", path.display()),
    )
}

impl FileRead<'_> {
    /// The batches of `file`; returns how many row groups it has.
    fn batches(
        &self,
        file: File,
        each: impl FnMut(RecordBatch) -> io::Result<()>,
    ) -> io::Result<usize> {
        match in_memory(file, self.path)? {
            Source::Whole(bytes) => {
                let whole = bytes.len() as u64;
                self.stream(bytes, whole, each)
            }
            Source::File(file) => self.stream(file, 0, each),
        }
    }

    /// The batches of `source`, which holds `whole` bytes in memory.
    fn stream<T: ChunkReader + 'static>(
        &self,
        source: T,
        whole: u64,
        mut each: impl FnMut(RecordBatch) -> io::Result<()>,
    ) -> io::Result<usize> {
        let path = self.path;
        let plain = ArrowReaderMetadata::load(&source, ArrowReaderOptions::new())
            .map_err(|err| named(path, &err))?;
        let mask = match self.columns {
            Some(columns) => projection(plain.parquet_schema(), columns),
            None => ProjectionMask::all(),
        };
        check_claims(plain.metadata(), &mask, self.bounds).map_err(|w| refused(path, &w))?;
        let row_groups = plain.metadata().num_row_groups();
        let groups: Vec<usize> = match &self.groups {
            Some(range) => (range.start..range.end.min(row_groups)).collect(),
            None => (0..row_groups).collect(),
        };
        let claimed: i64 = groups
            .iter()
            .map(|&g| plain.metadata().row_group(g).num_rows().max(0))
            .sum();
        if groups.is_empty() {
            return Ok(row_groups);
        }
        let window = whole + decode_window(plain.metadata(), &mask, &groups);
        let _decoding = self.held.map(|held| held.decoding(window));
        // The command failed while this file waited: decode nothing more.
        if let Some(held) = self
            .held
            .filter(|held| held.refused.load(Ordering::Relaxed))
        {
            return Err(held.refusal(path));
        }
        // Text columns decoded as dictionaries, measured, then expanded (see the module).
        let options = ArrowReaderOptions::new().with_schema(dictionary_text(plain.schema()));
        let hinted = ArrowReaderMetadata::try_new(plain.metadata().clone(), options)
            .map_err(|err| named(path, &err))?;
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(source, hinted)
            .with_projection(mask)
            .with_row_groups(groups)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|err| named(path, &err))?;
        let mut tally = Tally::default();
        for batch in reader {
            let batch = batch.map_err(|err| named(path, &err))?;
            tally.rows += batch.num_rows() as i64;
            if tally.rows > claimed {
                let what = format!("decodes to more than the {claimed} rows its row groups claim");
                return Err(refused(path, &what));
            }
            let batch = tally
                .measure(batch, self.bounds)
                .map_err(|what| refused(path, &what))?;
            each(batch)?;
        }
        Ok(row_groups)
    }
}

/// What decoding one of `groups` holds at most, by the footer's claims: each wanted
/// column chunk decompressed (csm writes one page per chunk).
fn decode_window(metadata: &ParquetMetaData, mask: &ProjectionMask, groups: &[usize]) -> u64 {
    let group_window = |&g: &usize| -> u64 {
        let chunks = metadata.row_group(g).columns().iter().enumerate();
        chunks
            .filter(|(leaf, _)| mask.leaf_included(*leaf))
            .map(|(_, chunk)| chunk.uncompressed_size().max(0) as u64)
            .sum()
    };
    groups.iter().map(group_window).max().unwrap_or(0)
}

/// The rows the row groups claim, once every claim of the footer is within `bounds`
/// (else what is over which bound).
fn check_claims(
    metadata: &ParquetMetaData,
    mask: &ProjectionMask,
    bounds: &Bounds,
) -> Result<i64, String> {
    let file_rows = metadata.file_metadata().num_rows();
    if file_rows > bounds.rows_per_file {
        return Err(format!(
            "claims {file_rows} rows, more than the {} a csm file holds",
            bounds.rows_per_file
        ));
    }
    let mut rows: i64 = 0;
    let mut column_bytes = vec![0u64; metadata.file_metadata().schema_descr().num_columns()];
    for (index, group) in metadata.row_groups().iter().enumerate() {
        rows = rows.saturating_add(group.num_rows().max(0));
        if rows > bounds.rows_per_file {
            return Err(format!(
                "row groups up to {index} claim {rows} rows, more than the {} a csm file holds",
                bounds.rows_per_file
            ));
        }
        for (leaf, chunk) in group.columns().iter().enumerate() {
            if !mask.leaf_included(leaf) {
                continue;
            }
            let total = &mut column_bytes[leaf];
            *total = total.saturating_add(chunk.uncompressed_size().max(0) as u64);
            if *total > bounds.bytes_per_column {
                return Err(format!(
                    "column {} claims {} bytes uncompressed, more than the {} MiB a column may hold",
                    chunk.column_path(),
                    *total,
                    bounds.bytes_per_column / MIB
                ));
            }
        }
    }
    Ok(rows)
}

/// The schema with every top-level text column read as a dictionary.
fn dictionary_text(schema: &SchemaRef) -> SchemaRef {
    let fields = schema.fields().iter().map(|field| match field.data_type() {
        DataType::Utf8 => Arc::new(field.as_ref().clone().with_data_type(DataType::Dictionary(
            Box::new(DataType::Int32),
            Box::new(DataType::Utf8),
        ))),
        _ => field.clone(),
    });
    Arc::new(Schema::new_with_metadata(
        fields.collect::<Vec<_>>(),
        schema.metadata().clone(),
    ))
}

/// What a file has decoded so far.
#[derive(Default)]
struct Tally {
    rows: i64,
    bytes: u64,
    /// By the batch's column index (every batch of a file has the same columns).
    column_bytes: Vec<u64>,
}

impl Tally {
    /// Counts a batch's bytes (strings as expanded), refusing what is past a bound, and
    /// returns it with its text columns as plain strings.
    fn measure(&mut self, batch: RecordBatch, bounds: &Bounds) -> Result<RecordBatch, String> {
        let schema = batch.schema();
        self.column_bytes.resize(batch.num_columns(), 0);
        let mut fields = Vec::with_capacity(batch.num_columns());
        let mut arrays = Vec::with_capacity(batch.num_columns());
        for (index, (field, array)) in schema.fields().iter().zip(batch.columns()).enumerate() {
            let (bytes, plain) = decoded(field.name(), array, bounds)?;
            let column = &mut self.column_bytes[index];
            *column = column.saturating_add(bytes);
            self.bytes = self.bytes.saturating_add(bytes);
            if *column > bounds.bytes_per_column {
                return Err(format!(
                    "column {} decodes to more than the {} MiB a column may hold",
                    field.name(),
                    bounds.bytes_per_column / MIB
                ));
            }
            if self.bytes > bounds.bytes_per_file {
                return Err(format!(
                    "decodes to more than the {} MiB a file may hold",
                    bounds.bytes_per_file / MIB
                ));
            }
            let plain_type = plain.data_type().clone();
            fields.push(Field::new(field.name(), plain_type, field.is_nullable()));
            arrays.push(plain);
        }
        let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
        RecordBatch::try_new(schema, arrays).map_err(|err| err.to_string())
    }
}

/// A column's decoded bytes (a text column's as one copy of its string per row) and the
/// column with its text expanded, once no string is longer than the bound.
fn decoded(name: &str, array: &ArrayRef, bounds: &Bounds) -> Result<(u64, ArrayRef), String> {
    let too_long = |len: usize| {
        format!(
            "column {name} holds a string of {len} bytes, more than the {} KiB a string may hold",
            bounds.bytes_per_string >> 10
        )
    };
    if let Some(dictionary) = array.as_dictionary_opt::<Int32Type>() {
        let Some(values) = dictionary.values().as_string_opt::<i32>() else {
            return Ok((array.get_array_memory_size() as u64, array.clone()));
        };
        let lengths: Vec<usize> = values
            .offsets()
            .windows(2)
            .map(|w| (w[1] - w[0]).max(0) as usize)
            .collect();
        if let Some(&longest) = lengths
            .iter()
            .max()
            .filter(|&&l| l > bounds.bytes_per_string)
        {
            return Err(too_long(longest));
        }
        let expanded: u64 = dictionary
            .keys()
            .iter()
            .flatten()
            .map(|key| lengths.get(key.max(0) as usize).copied().unwrap_or(0) as u64)
            .sum();
        // Refused before the copy if it alone is past the column's bound.
        let bytes = expanded + 4 * array.len() as u64;
        if bytes > bounds.bytes_per_column {
            return Ok((bytes, array.clone()));
        }
        let plain = arrow::compute::cast(array, &DataType::Utf8).map_err(|e| e.to_string())?;
        return Ok((bytes, plain));
    }
    if let Some(strings) = array.as_string_opt::<i32>() {
        let offsets = strings.offsets();
        if let Some(longest) = offsets
            .windows(2)
            .map(|w| (w[1] - w[0]).max(0) as usize)
            .max()
            .filter(|&l| l > bounds.bytes_per_string)
        {
            return Err(too_long(longest));
        }
    }
    Ok((array.get_buffer_memory_size() as u64, array.clone()))
}

/// The file's top-level columns named in `columns` (a list column with its items).
fn projection(schema: &SchemaDescriptor, columns: &[&str]) -> ProjectionMask {
    let roots = schema.root_schema().get_fields().iter().enumerate();
    let wanted = roots.filter(|(_, field)| columns.contains(&field.name()));
    ProjectionMask::roots(schema, wanted.map(|(index, _)| index))
}

/// An error naming the file it is about.
fn named(path: &Path, err: &dyn std::fmt::Display) -> io::Error {
    io::Error::other(format!("{}: {err}", path.display()))
}

/// [`open_regular`], errors naming the file.
fn open_named(path: &Path) -> io::Result<File> {
    open_regular(path)
        .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))
}

/// Opens a regular file for reading, never through a link and never blocking on a FIFO
/// or device that someone planted under a data file's name.
fn open_regular(path: &Path) -> io::Result<File> {
    crate::beneath::open_regular_nofollow(path)
}

/// Every `*.parquet` file of `table` under `data_dir` (all hosts and dates), in path
/// order. Links are not followed and hidden temporaries are skipped.
pub fn table_files(data_dir: &Path, table: Table) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let root = data_dir.join(table.name());
    if fs::symlink_metadata(&root).is_err() {
        return Ok(files);
    }
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() && name.ends_with(".parquet") && !name.starts_with('.') {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Every row of `R`'s table under `data_dir`, sorted by time.
pub fn read_table<R: Row + FromBatch>(data_dir: &Path) -> io::Result<Vec<R>> {
    let mut rows = Vec::new();
    for file in table_files(data_dir, R::TABLE)? {
        rows.extend(read_rows::<R>(&file)?);
    }
    rows.sort_by_key(|r| r.ts_us());
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::NetUidRow;

    fn rows(n: i64) -> Vec<NetUidRow> {
        (0..n)
            .map(|i| NetUidRow {
                ts_us: i,
                dur_ms: 1000,
                uid: 1000,
                user: None,
                rx_bytes: i,
                tx_bytes: 0,
            })
            .collect()
    }

    #[test]
    fn a_file_claiming_more_rows_than_csm_writes_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00.parquet");
        let props = std::sync::Arc::new(crate::writer::writer_properties(Table::NetUid, "h"));
        crate::writer::write_part(dir.path(), &path, &rows(1001), &props).unwrap();
        let err = read_rows_at_most::<NetUidRow>(&path, 1000).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(
            err.to_string().ends_with(
                "00.parquet: claims 1001 rows, more than the 1000 a csm file holds: not read"
            ),
            "{err}"
        );
        assert_eq!(
            read_rows_at_most::<NetUidRow>(&path, 1001).unwrap(),
            rows(1001)
        );
    }

    #[test]
    fn only_the_columns_asked_for_are_read_and_the_others_left_at_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00.parquet");
        let props = std::sync::Arc::new(crate::writer::writer_properties(Table::Ping, "h"));
        let ping = crate::PingRow {
            ts_us: 7,
            target: "gw".into(),
            addr: Some("192.0.2.1".into()),
            sent: 3,
            received: 2,
            rtt_min_ms: Some(1.0),
            rtt_avg_ms: Some(1.5),
            rtt_max_ms: Some(2.0),
            rtt_mdev_ms: Some(0.5),
            rtts_ms: vec![1.0, 2.0],
            error: None,
        };
        crate::writer::write_part(dir.path(), &path, std::slice::from_ref(&ping), &props).unwrap();
        let c = crate::PingRow::COLUMN;
        let read: Vec<crate::PingRow> =
            read_columns(&path, &[c.ts_us, c.target, c.received, c.rtts_ms]).unwrap();
        let expected = crate::PingRow {
            ts_us: 7,
            target: "gw".into(),
            received: 2,
            rtts_ms: vec![1.0, 2.0],
            ..crate::PingRow::default()
        };
        assert_eq!(read, [expected]);
        assert_eq!(read_times(&path).unwrap(), [7]);
        assert_eq!(read_rows::<crate::PingRow>(&path).unwrap(), [ping]);
    }

    #[test]
    fn table_files_skip_links_and_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let date = dir.path().join("net_uid/host=h/date=1970-01-01");
        std::fs::create_dir_all(&date).unwrap();
        let props = std::sync::Arc::new(crate::writer::writer_properties(Table::NetUid, "h"));
        crate::writer::write_part(dir.path(), &date.join("00.parquet"), &rows(3), &props).unwrap();
        std::fs::write(date.join(".01.parquet.tmp"), b"half").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", date.join("02.parquet")).unwrap();
        let files = table_files(dir.path(), Table::NetUid).unwrap();
        assert_eq!(files, [date.join("00.parquet")]);
        assert_eq!(read_table::<NetUidRow>(dir.path()).unwrap().len(), 3);
    }

    #[test]
    fn a_fifo_or_link_under_a_data_file_name_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("03.parquet");
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let err = read_rows::<NetUidRow>(&fifo).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("03.parquet: not a regular file (a FIFO)"),
            "{err}"
        );
        let link = dir.path().join("04.parquet");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        assert!(read_rows::<NetUidRow>(&link).is_err());
    }

    /// Reads a bomb with `read`, asserting the error is one line naming the file.
    fn refusal(path: &Path, read: impl Fn(&Path) -> io::Result<usize>) -> String {
        let err = read(path).expect_err("the bomb was read");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("{}: ", path.display())),
            "{message}"
        );
        assert!(message.ends_with(": not read"), "{message}");
        assert!(!message.contains('\n'), "{message}");
        message
    }

    fn count_rows<R: FromBatch>(path: &Path) -> io::Result<usize> {
        read_rows::<R>(path).map(|rows| rows.len())
    }

    #[test]
    fn row_groups_claiming_more_rows_than_a_file_holds_are_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00.parquet");
        crate::bombs::row_bomb(&path, 0, 1_500_000, 1000, false).unwrap();
        let message = refusal(&path, count_rows::<crate::NetRow>);
        assert!(
            message.contains("claims 1500000 rows, more than the 1000000 a csm file holds"),
            "{message}"
        );
    }

    #[test]
    fn a_row_group_decoding_to_more_rows_than_it_claims_yields_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00.parquet");
        crate::bombs::row_bomb(&path, 0, 1_500_000, 1000, true).unwrap();
        // The decoder stops at the row group's claimed rows, or the reader refuses: never
        // more rows than claimed.
        match count_rows::<crate::NetRow>(&path) {
            Ok(rows) => assert!(rows <= 1000, "{rows} rows"),
            Err(err) => {
                let message = err.to_string();
                assert!(
                    message.contains("decodes to more than the 1000 rows"),
                    "{message}"
                )
            }
        }
    }

    #[test]
    fn a_dictionary_of_long_strings_is_refused_before_it_is_expanded() {
        let dir = tempfile::tempdir().unwrap();
        // 4 KB strings, 100,000 rows: 410 MB expanded, a few KB on disk.
        let long = dir.path().join("00.parquet");
        crate::bombs::dictionary_bomb(&long, 0, 100_000, 4096).unwrap();
        assert!(fs::metadata(&long).unwrap().len() < 1 << 20);
        let message = refusal(&long, count_rows::<crate::EventRow>);
        assert!(
            message.contains("column detail decodes to more than the 128 MiB a column may hold"),
            "{message}"
        );
        // 100 KB strings: refused at the first batch, whatever the count.
        let longer = dir.path().join("01.parquet");
        crate::bombs::dictionary_bomb(&longer, 0, 1000, 100 << 10).unwrap();
        let message = refusal(&longer, count_rows::<crate::EventRow>);
        assert!(
            message.contains(
                "column detail holds a string of 102400 bytes, more than the 64 KiB a string may hold"
            ),
            "{message}"
        );
        // The same strings within the bounds read back.
        let fine = dir.path().join("02.parquet");
        crate::bombs::dictionary_bomb(&fine, 0, 1000, 4096).unwrap();
        let rows: Vec<crate::EventRow> = read_rows(&fine).unwrap();
        assert_eq!(rows.len(), 1000);
        assert_eq!(rows[1].detail.as_deref().map(str::len), Some(4096));
        assert!(rows[1]
            .detail
            .as_deref()
            .unwrap()
            .bytes()
            .all(|b| b == b'b'));
    }

    #[test]
    fn what_a_command_holds_is_bounded_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = (0..3)
            .map(|i| {
                let path = dir.path().join(format!("{i:02}.parquet"));
                crate::bombs::honest_net(&path, 0, 100_000, 4096).unwrap();
                path
            })
            .collect();
        let one: Vec<crate::NetRow> = read_rows(&files[0]).unwrap();
        assert_eq!(one.len(), 100_000);
        // Room for two files' rows, not three.
        let held = Held::new(held_bytes_of(&one) * 5 / 2);
        for path in &files[..2] {
            let rows: Vec<crate::NetRow> = read_rows_held(path, None, &held).unwrap();
            assert_eq!(rows.len(), 100_000);
        }
        let before = held.used();
        let err = read_rows_held::<crate::NetRow>(&files[2], None, &held).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("{}: not read: ", files[2].display())),
            "{message}"
        );
        assert_eq!(
            held.used(),
            before,
            "a refused file's charges are given back"
        );
        // A reader that aggregates as it goes holds a batch at a time, whatever the count.
        let mut sum = 0i64;
        for path in &files {
            for_each_rows_at::<crate::NetRow>(path, Some(&["ts", "rx_bytes"]), |rows| {
                sum += rows.iter().map(|r| r.rx_bytes).sum::<i64>();
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(sum, 3 * one.iter().map(|r| r.rx_bytes).sum::<i64>());
    }

    #[test]
    fn files_decode_within_the_commands_windows_and_a_refusal_stops_every_reader() {
        let held = Held::new(1000);
        let path = Path::new("00.parquet");
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let first = held.decoding(DECODING_PER_COMMAND - 10);
            let waiting = scope.spawn(|| {
                let _second = held.decoding(20);
                // Admitted only once the first window was given back.
                assert!(done.load(Ordering::SeqCst));
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            done.store(true, Ordering::SeqCst);
            drop(first);
            waiting.join().unwrap();
        });
        // A file alone is always admitted, whatever its window.
        drop(held.decoding(2 * DECODING_PER_COMMAND));
        held.charge(path, 600).unwrap();
        assert!(held.charge(path, 600).is_err());
        // The command failed: what would fit is refused too.
        let err = held.charge(path, 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
        assert!(
            err.to_string().starts_with("00.parquet: not read: "),
            "{err}"
        );
        assert_eq!(held.used(), 600);
    }

    /// What [`Held`] charges for rows read.
    fn held_bytes_of(rows: &[crate::NetRow]) -> u64 {
        let strings: usize = rows
            .iter()
            .map(|r| allocated(r.iface.len()) + allocated(r.source.as_str().len()))
            .sum();
        (2 * rows.len() * std::mem::size_of::<crate::NetRow>() + strings) as u64
    }
}
