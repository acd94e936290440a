//! Reading rows back: one file, or every file of a table under a data dir.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::table::{FromBatch, Row, Table};

/// All rows of one Parquet file. Errors name the file.
pub fn read_rows<R: FromBatch>(path: &Path) -> io::Result<Vec<R>> {
    let named =
        |err: &dyn std::fmt::Display| io::Error::other(format!("{}: {err}", path.display()));
    let file = File::open(path).map_err(|err| io::Error::new(err.kind(), named(&err)))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|err| named(&err))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|err| named(&err))?;
        rows.extend(R::from_batch(&batch).map_err(|err| named(&err))?);
    }
    Ok(rows)
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
