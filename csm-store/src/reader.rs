//! Reading rows back: one file, or every file of a table under a data dir.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
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

/// All rows of one Parquet file, at most [`MAX_ROWS_PER_FILE`]. Errors name the file.
pub fn read_rows<R: FromBatch>(path: &Path) -> io::Result<Vec<R>> {
    read_rows_at_most(path, MAX_ROWS_PER_FILE)
}

/// [`read_rows`] with another bound.
pub fn read_rows_at_most<R: FromBatch>(path: &Path, max_rows: i64) -> io::Result<Vec<R>> {
    read_rows_from(open_named(path)?, path, max_rows)
}

/// The rows of an open file (`path` names it in errors), at most `max_rows`: the count
/// the file's metadata claims is checked before anything is decompressed, and the rows
/// are read one batch at a time.
pub fn read_rows_from<R: FromBatch>(file: File, path: &Path, max_rows: i64) -> io::Result<Vec<R>> {
    read_columns_from(file, path, max_rows, None)
}

/// [`read_rows`] reading only the columns named in `columns` (the row's other fields are
/// left at their default): each column of a file costs a decompressor of its own, so a
/// reader of thousands of hour files reads no column it does not use. A wanted column the
/// file lacks reads as [`read_rows`] reads it (nulls when nullable, else an error).
pub fn read_columns<R: FromBatch>(path: &Path, columns: &[&str]) -> io::Result<Vec<R>> {
    read_columns_from(open_named(path)?, path, MAX_ROWS_PER_FILE, Some(columns))
}

/// The `ts` column of one file, whatever its table (every table has one): enough to
/// know whether a file holds rows of a range, at the cost of one column.
pub fn read_times(path: &Path) -> io::Result<Vec<i64>> {
    let file = in_memory(open_named(path)?, path)?;
    let batches = batches(file, path, MAX_ROWS_PER_FILE, Some(&["ts"]))?;
    let mut times = Vec::new();
    for batch in batches {
        let batch = batch.map_err(|err| named(path, &err))?;
        let read = read_column::<i64>(&batch, "ts", Kind::Time);
        times.extend(read.map_err(|err| named(path, &err))?);
    }
    Ok(times)
}

fn read_columns_from<R: FromBatch>(
    file: File,
    path: &Path,
    max_rows: i64,
    columns: Option<&[&str]>,
) -> io::Result<Vec<R>> {
    let mut rows = Vec::new();
    for batch in batches(in_memory(file, path)?, path, max_rows, columns)? {
        let batch = batch.map_err(|err| named(path, &err))?;
        let read = R::from_projected_batch(&batch, columns);
        rows.extend(read.map_err(|err| named(path, &err))?);
    }
    Ok(rows)
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

/// The batches of a file, only the `columns` named (all when `None`), once the row count
/// its metadata claims is found to be at most `max_rows`.
fn batches(
    source: Source,
    path: &Path,
    max_rows: i64,
    columns: Option<&[&str]>,
) -> io::Result<ParquetRecordBatchReader> {
    match source {
        Source::Whole(bytes) => batches_of(bytes, path, max_rows, columns),
        Source::File(file) => batches_of(file, path, max_rows, columns),
    }
}

fn batches_of<T: ChunkReader + 'static>(
    source: T,
    path: &Path,
    max_rows: i64,
    columns: Option<&[&str]>,
) -> io::Result<ParquetRecordBatchReader> {
    let mut builder =
        ParquetRecordBatchReaderBuilder::try_new(source).map_err(|e| named(path, &e))?;
    let claimed = builder.metadata().file_metadata().num_rows();
    if claimed > max_rows {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            named(
                path,
                &format!(
                    "claims {claimed} rows, more than the {max_rows} a csm file holds: not read"
                ),
            ),
        ));
    }
    if let Some(columns) = columns {
        let mask = projection(builder.parquet_schema(), columns);
        builder = builder.with_projection(mask);
    }
    builder.build().map_err(|err| named(path, &err))
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
}
