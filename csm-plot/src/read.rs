//! Reading the Parquet files of one host and time range (found by [`DataTree`], in
//! csm-store): only the columns a chart needs.

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use csm_store::Table;
// Which files of a host and range to read is csm's, shared with `csm report`.
pub use csm_store::tree::{choose_host, hosts_in, DataTree};

/// What went wrong while reading: `unreadable` files make the exit status 1, `notes`
/// (absent tables, nothing in range) are only said.
#[derive(Debug, Default)]
pub struct Problems {
    pub unreadable: Vec<String>,
    pub notes: Vec<String>,
}

impl Problems {
    pub fn merge(&mut self, other: Problems) {
        self.unreadable.extend(other.unreadable);
        self.notes.extend(other.notes);
    }
}

/// The earliest row time in `[from_us, to_us)` of any charted table (read from the
/// first hour file of each), to fit a default range to less data; `None` if none.
/// Unreadable files are skipped here: drawing names them.
pub fn first_row_us(tree: &DataTree, from_us: i64, to_us: i64) -> Option<i64> {
    // Every collected table but the daemon's own events: the data a chart draws.
    Table::ALL
        .into_iter()
        .filter(|&table| table != Table::Events)
        .filter_map(|table| {
            let hours = tree.hour_files(table, from_us, to_us);
            let (_, files) = hours.into_iter().next()?;
            files
                .iter()
                .filter_map(|file| earliest_ts(file, from_us, to_us))
                .min()
        })
        .min()
}

/// The earliest `ts` of a file within `[from_us, to_us)`.
fn earliest_ts(path: &Path, from_us: i64, to_us: i64) -> Option<i64> {
    let batches = read_columns(path, &[csm_store::CpuRow::COLUMN.ts_us]).ok()?;
    batches
        .iter()
        .filter_map(|batch| {
            let ts = batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::TimestampMicrosecondArray>()?;
            ts.iter()
                .flatten()
                .filter(|t| (from_us..to_us).contains(t))
                .min()
        })
        .min()
}

/// Reads the named top-level columns of one file (all of it: files are one hour).
pub fn read_columns(path: &Path, columns: &[&str]) -> Result<Vec<RecordBatch>, String> {
    let fail = |e: &dyn std::fmt::Display| format!("cannot read {}: {e}", path.display());
    // Not through a link, not blocking on a FIFO, a regular file only; and no file that
    // claims more rows than csm ever writes in one (a small file can claim millions of
    // rows and decompress to gigabytes).
    let file = csm_store::beneath::open_regular_nofollow(path).map_err(|e| fail(&e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| fail(&e))?;
    let claimed = builder.metadata().file_metadata().num_rows();
    if claimed > csm_store::MAX_ROWS_PER_FILE {
        return Err(fail(&format!(
            "claims {claimed} rows, more than the {} a csm file holds: not read",
            csm_store::MAX_ROWS_PER_FILE
        )));
    }
    let roots = {
        let fields = builder.schema().fields();
        let mut roots = Vec::with_capacity(columns.len());
        for name in columns {
            let index = fields
                .iter()
                .position(|f| f.name() == name)
                .ok_or_else(|| fail(&format!("no column {name:?}")))?;
            roots.push(index);
        }
        roots
    };
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(65_536)
        .build()
        .map_err(|e| fail(&e))?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|e| fail(&e))
}

/// Typed access to a batch's columns by name; a missing or mistyped column is an error
/// that names the file.
pub struct Columns<'a> {
    pub batch: &'a RecordBatch,
    pub path: &'a Path,
}

impl<'a> Columns<'a> {
    fn column(&self, name: &str) -> Result<&'a dyn Array, String> {
        self.batch
            .column_by_name(name)
            .map(|c| c.as_ref())
            .ok_or_else(|| format!("cannot read {}: no column {name:?}", self.path.display()))
    }

    fn mistyped(&self, name: &str, want: &str) -> String {
        format!(
            "cannot read {}: column {name:?} is not {want}",
            self.path.display()
        )
    }

    pub fn ts(&self) -> Result<&'a arrow::array::TimestampMicrosecondArray, String> {
        let col = self.column("ts")?;
        match col.data_type() {
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                Ok(col.as_primitive::<TimestampMicrosecondType>())
            }
            _ => Err(self.mistyped("ts", "TIMESTAMP(MICROS)")),
        }
    }

    pub fn i64s(&self, name: &str) -> Result<&'a Int64Array, String> {
        self.column(name)?
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| self.mistyped(name, "INT64"))
    }

    pub fn f64s(&self, name: &str) -> Result<&'a Float64Array, String> {
        self.column(name)?
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or_else(|| self.mistyped(name, "DOUBLE"))
    }

    pub fn strs(&self, name: &str) -> Result<&'a StringArray, String> {
        self.column(name)?
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| self.mistyped(name, "a string"))
    }

    pub fn f64_lists(&self, name: &str) -> Result<&'a arrow::array::ListArray, String> {
        self.column(name)?
            .as_any()
            .downcast_ref::<arrow::array::ListArray>()
            .ok_or_else(|| self.mistyped(name, "a list"))
    }
}

/// Reads every file with `columns`, handing each batch to `take`; a file that fails to
/// read is named in `problems` and skipped. (A file is read whole before `take` sees it,
/// so a damaged file adds nothing; a column of the wrong type stops at the first batch.)
pub fn read_files(
    files: &[(Table, PathBuf)],
    columns_of: impl Fn(Table) -> &'static [&'static str],
    mut take: impl FnMut(Table, &Columns) -> Result<(), String>,
    problems: &mut Problems,
) {
    for (table, path) in files {
        let result = read_columns(path, columns_of(*table)).and_then(|batches| {
            batches
                .iter()
                .try_for_each(|batch| take(*table, &Columns { batch, path }))
        });
        if let Err(message) = result {
            problems.unreadable.push(message);
        }
    }
}

/// A user's label: the name (made safe to show), else `uid N`.
pub fn user_label(names: &StringArray, uids: &Int64Array, row: usize) -> String {
    if names.is_valid(row) {
        csm_store::names::safe_text(names.value(row)).into_owned()
    } else {
        format!("uid {}", uids.value(row))
    }
}
