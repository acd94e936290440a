//! Tables read back as rows of named cells (the /proc backend tests compare them with
//! fixture numbers).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampMicrosecondType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The release `csm` binary.
pub fn csm_binary() -> PathBuf {
    crate::binary("csm")
}

/// One cell of a table read back.
#[derive(Clone, Debug, PartialEq, PartialOrd)]
pub enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Str(String),
}

impl Cell {
    pub fn int(&self) -> i64 {
        match self {
            Cell::Int(v) => *v,
            other => panic!("not an integer: {other:?}"),
        }
    }
    pub fn str(&self) -> &str {
        match self {
            Cell::Str(v) => v,
            other => panic!("not a string: {other:?}"),
        }
    }
}

pub type Record = BTreeMap<String, Cell>;

/// Every row of `<data_dir>/<table>/**/*.parquet`, sorted by `ts` (timestamps as
/// microseconds).
pub fn read_table(data_dir: &Path, table: &str) -> Vec<Record> {
    let mut files = Vec::new();
    crate::collect_parquet(&data_dir.join(table), &mut files);
    let mut out = Vec::new();
    for file in files {
        let f = File::open(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let reader = ParquetRecordBatchReaderBuilder::try_new(f)
            .and_then(|b| b.build())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for batch in reader {
            let batch = batch.unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let schema = batch.schema();
            for row in 0..batch.num_rows() {
                let mut record = Record::new();
                for (i, field) in schema.fields().iter().enumerate() {
                    record.insert(field.name().clone(), cell(batch.column(i), row));
                }
                out.push(record);
            }
        }
    }
    out.sort_by_key(|r| r.get("ts").map(Cell::int).unwrap_or(0));
    out
}

fn cell(column: &dyn Array, row: usize) -> Cell {
    if column.is_null(row) {
        return Cell::Null;
    }
    match column.data_type() {
        DataType::Int64 => Cell::Int(column.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => Cell::Float(column.as_primitive::<Float64Type>().value(row)),
        DataType::Timestamp(_, _) => {
            Cell::Int(column.as_primitive::<TimestampMicrosecondType>().value(row))
        }
        DataType::Utf8 => Cell::Str(column.as_string::<i32>().value(row).to_string()),
        other => Cell::Str(format!("<{other}>")),
    }
}
