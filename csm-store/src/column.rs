//! What a column is: its [`Kind`] (which decides the Arrow type, the Parquet encoding and
//! how stored values are rounded) and the Rust type of its field ([`Value`], which
//! decides nullability and the conversion to and from Arrow arrays).
//!
//! A table declaration ([`crate::table!`]) names one kind per field; everything else
//! follows from these two, so that the schema, the writer's batch, the reader and the
//! encodings cannot disagree.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float64Array, Float64Builder, Int64Array, ListArray, ListBuilder, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::events::Source;

/// What a column holds. The kind picks the encoding, measured in `examples/bench_store.rs`:
/// - [`Kind::Time`]: `ts`, TIMESTAMP(MICROS, UTC), DELTA_BINARY_PACKED (rows of one
///   interval share a time stamp: deltas are 0 or one interval);
/// - [`Kind::Id`]: integers with few distinct values per hour (uid, ifindex, netns, ctid,
///   ping counts): dictionary (RLE ids);
/// - [`Kind::Measured`]: measured integers (ns, bytes, packets, `dur_ms`): no dictionary
///   (it would only fall back), BYTE_STREAM_SPLIT so zstd sees the all-zero high bytes as
///   long runs. `dur_ms` is the same for all rows of an interval, and BYTE_STREAM_SPLIT
///   hands zstd runs of equal bytes (2 % smaller than a dictionary's bit-packed ids);
/// - [`Kind::Rate`]: derived doubles (percentages, rates), rounded by [`quantize`],
///   BYTE_STREAM_SPLIT;
/// - [`Kind::Rtt`]: round-trip times in ms, rounded by [`round_rtt`], BYTE_STREAM_SPLIT
///   (for a list column, its items);
/// - [`Kind::Text`]: names and labels: dictionary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Time,
    Id,
    Measured,
    Rate,
    Rtt,
    Text,
}

impl Kind {
    /// How values of this kind are stored, for the writer's properties.
    pub fn encoding(self) -> ColumnEncoding {
        match self {
            Kind::Time => ColumnEncoding::DeltaBinaryPacked,
            Kind::Id | Kind::Text => ColumnEncoding::Dictionary,
            Kind::Measured | Kind::Rate | Kind::Rtt => ColumnEncoding::ByteStreamSplit,
        }
    }

    /// The stored value of a double of this kind.
    fn round(self, v: f64) -> f64 {
        match self {
            Kind::Rate => quantize(v),
            Kind::Rtt => round_rtt(v),
            _ => v,
        }
    }
}

/// The Parquet encoding of a column (of its items, for a list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnEncoding {
    DeltaBinaryPacked,
    Dictionary,
    ByteStreamSplit,
}

/// One column of a table, as its declaration gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub data_type: DataType,
    pub nullable: bool,
}

impl Column {
    pub fn new<V: Value>(name: &'static str, kind: Kind) -> Column {
        Column {
            name,
            kind,
            data_type: V::data_type(kind),
            nullable: V::NULLABLE,
        }
    }

    pub fn field(&self) -> Field {
        Field::new(self.name, self.data_type.clone(), self.nullable)
    }
}

/// A Rust field type a column can hold.
pub trait Value: Sized + Default {
    /// Null is a value of the type (`Option<…>`): the column is nullable, and a file
    /// written before the column existed reads as all nulls.
    const NULLABLE: bool;
    fn data_type(kind: Kind) -> DataType;
    fn to_array<'a>(values: impl Iterator<Item = &'a Self>, kind: Kind) -> ArrayRef
    where
        Self: 'a;
    /// The column's values, one per row. Nulls in a column whose Rust type has none
    /// (a file not written by csm) read as the type's default.
    fn from_array(array: &dyn Array, kind: Kind) -> Option<Vec<Self>>;
}

/// Nulls in a column whose Rust type has none (a file csm did not write) read as zero or
/// empty rather than failing the whole file.
fn nulls_as_default<T: Default>(values: Vec<Option<T>>) -> Vec<T> {
    values.into_iter().map(Option::unwrap_or_default).collect()
}

/// TIMESTAMP(MICROS, UTC)
fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn i64_values(array: &dyn Array, kind: Kind) -> Option<Vec<Option<i64>>> {
    if kind == Kind::Time {
        let a = array.as_any().downcast_ref::<TimestampMicrosecondArray>()?;
        Some(a.iter().collect())
    } else {
        let a = array.as_any().downcast_ref::<Int64Array>()?;
        Some(a.iter().collect())
    }
}

fn i64_array(values: impl Iterator<Item = Option<i64>>, kind: Kind) -> ArrayRef {
    if kind == Kind::Time {
        Arc::new(
            values
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        )
    } else {
        Arc::new(values.collect::<Int64Array>())
    }
}

fn i64_type(kind: Kind) -> DataType {
    if kind == Kind::Time {
        timestamp_type()
    } else {
        DataType::Int64
    }
}

impl Value for i64 {
    const NULLABLE: bool = false;
    fn data_type(kind: Kind) -> DataType {
        i64_type(kind)
    }
    fn to_array<'a>(values: impl Iterator<Item = &'a Self>, kind: Kind) -> ArrayRef {
        i64_array(values.map(|v| Some(*v)), kind)
    }
    fn from_array(array: &dyn Array, kind: Kind) -> Option<Vec<Self>> {
        i64_values(array, kind).map(nulls_as_default)
    }
}

impl Value for Option<i64> {
    const NULLABLE: bool = true;
    fn data_type(kind: Kind) -> DataType {
        i64_type(kind)
    }
    fn to_array<'a>(values: impl Iterator<Item = &'a Self>, kind: Kind) -> ArrayRef {
        i64_array(values.copied(), kind)
    }
    fn from_array(array: &dyn Array, kind: Kind) -> Option<Vec<Self>> {
        i64_values(array, kind)
    }
}

fn f64_values(array: &dyn Array) -> Option<Vec<Option<f64>>> {
    Some(
        array
            .as_any()
            .downcast_ref::<Float64Array>()?
            .iter()
            .collect(),
    )
}

impl Value for f64 {
    const NULLABLE: bool = false;
    fn data_type(_: Kind) -> DataType {
        DataType::Float64
    }
    fn to_array<'a>(values: impl Iterator<Item = &'a Self>, kind: Kind) -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(
            values.map(|v| kind.round(*v)),
        ))
    }
    fn from_array(array: &dyn Array, _: Kind) -> Option<Vec<Self>> {
        f64_values(array).map(nulls_as_default)
    }
}

impl Value for Option<f64> {
    const NULLABLE: bool = true;
    fn data_type(_: Kind) -> DataType {
        DataType::Float64
    }
    fn to_array<'a>(values: impl Iterator<Item = &'a Self>, kind: Kind) -> ArrayRef {
        Arc::new(
            values
                .map(|v| v.map(|v| kind.round(v)))
                .collect::<Float64Array>(),
        )
    }
    fn from_array(array: &dyn Array, _: Kind) -> Option<Vec<Self>> {
        f64_values(array)
    }
}

fn str_values(array: &dyn Array) -> Option<Vec<Option<&str>>> {
    Some(
        array
            .as_any()
            .downcast_ref::<StringArray>()?
            .iter()
            .collect(),
    )
}

/// A text column: how the field's value becomes a (nullable) string, and back.
macro_rules! text_value {
    ($ty:ty, nullable: $nullable:expr, write: $write:expr, read: $read:expr) => {
        impl Value for $ty {
            const NULLABLE: bool = $nullable;
            fn data_type(_: Kind) -> DataType {
                DataType::Utf8
            }
            fn to_array<'a>(values: impl Iterator<Item = &'a Self>, _: Kind) -> ArrayRef {
                Arc::new(values.map($write).collect::<StringArray>())
            }
            fn from_array(array: &dyn Array, _: Kind) -> Option<Vec<Self>> {
                Some(str_values(array)?.into_iter().map($read).collect())
            }
        }
    };
}

text_value!(String, nullable: false,
    write: |v| Some(v.as_str()),
    read: |v| v.unwrap_or_default().to_string());
text_value!(Option<String>, nullable: true,
    write: |v| v.as_deref(),
    read: |v| v.map(str::to_string));
// A source is stored as its name; a name this version does not know reads as
// `Source::Other`.
text_value!(Source, nullable: false,
    write: |v| Some(v.as_str()),
    read: Source::parse);

/// The item of a list of doubles (`rtts_ms`): never null.
fn list_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Float64, false))
}

/// A list of doubles (every reply's RTT of a ping measurement).
impl Value for Vec<f64> {
    const NULLABLE: bool = false;
    fn data_type(_: Kind) -> DataType {
        DataType::List(list_item())
    }
    fn to_array<'a>(values: impl Iterator<Item = &'a Self>, kind: Kind) -> ArrayRef {
        let mut lists = ListBuilder::new(Float64Builder::new()).with_field(list_item());
        for list in values {
            for &v in list {
                lists.values().append_value(kind.round(v));
            }
            lists.append(true);
        }
        Arc::new(lists.finish())
    }
    fn from_array(array: &dyn Array, _: Kind) -> Option<Vec<Self>> {
        let lists = array.as_any().downcast_ref::<ListArray>()?;
        (0..lists.len())
            .map(|i| {
                let items = lists.value(i);
                let doubles = items.as_any().downcast_ref::<Float64Array>()?;
                Some(doubles.iter().flatten().collect())
            })
            .collect()
    }
}

/// Reads one column of a batch by name. A nullable column the file lacks (written before
/// the column was added) reads as nulls; any other absence or type mismatch is an error
/// naming the column.
pub fn read_column<V: Value>(
    batch: &RecordBatch,
    name: &str,
    kind: Kind,
) -> Result<Vec<V>, ArrowError> {
    let Some(array) = batch.column_by_name(name) else {
        if V::NULLABLE {
            return Ok((0..batch.num_rows()).map(|_| V::default()).collect());
        }
        return Err(ArrowError::SchemaError(format!("column {name} missing")));
    };
    V::from_array(array.as_ref(), kind).ok_or_else(|| {
        ArrowError::SchemaError(format!(
            "column {name} is {}, not {}",
            array.data_type(),
            V::data_type(kind)
        ))
    })
}

/// [`read_column`] for a batch read with only the columns `wanted` (all when `None`): a
/// column left out reads as the type's default, one per row, without being looked for.
pub fn read_wanted_column<V: Value>(
    batch: &RecordBatch,
    name: &str,
    kind: Kind,
    wanted: Option<&[&str]>,
) -> Result<Vec<V>, ArrowError> {
    match wanted {
        Some(columns) if !columns.contains(&name) => {
            Ok((0..batch.num_rows()).map(|_| V::default()).collect())
        }
        _ => read_column(batch, name, kind),
    }
}

/// Significant bits kept of a stored rate or percentage (see [`quantize`]).
pub const RATE_SIGNIFICANT_BITS: i32 = 10;

/// Rates and percentages (`cpu_pct`, `*_per_s_max`) are derived values, stored rounded
/// to 10 significant bits, three significant digits (at most 0.1 % of the value off:
/// 84.37 % is stored as 84.375 %), and never finer than 1/1024. They are exact binary
/// fractions whose low mantissa bytes are zero, so they compress to a fraction. The exact
/// values stay in the integer columns (`cpu_ns`, bytes, `dur_ms`).
pub fn quantize(v: f64) -> f64 {
    if !v.is_finite() || v == 0.0 {
        return v;
    }
    // The binary exponent of |v| (subnormals count as tiny: the 1/1024 floor applies).
    let exponent = ((v.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    let step = (exponent - (RATE_SIGNIFICANT_BITS - 1)).max(-10);
    let scale = 2f64.powi(-step);
    (v * scale).round() / scale
}

/// RTTs are stored rounded to 1/1024 ms (0.98 µs): below what a ping measures (the send
/// time is taken in user space), and an exact binary fraction, so a double's low mantissa
/// bytes are zero and compress away.
pub fn round_rtt(ms: f64) -> f64 {
    (ms * 1024.0).round() / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_keeps_ten_significant_bits_and_never_finer_than_1_1024() {
        assert_eq!(quantize(84.37), 84.375);
        assert_eq!(quantize(0.0), 0.0);
        assert_eq!(quantize(-84.37), -84.375);
        assert_eq!(quantize(1e-9), 0.0);
        assert_eq!(
            quantize(0.5 + 1.0 / 4096.0),
            0.5,
            "1/1024 is the finest step"
        );
        let mut v = 1e-3;
        while v < 1e12 {
            let q = quantize(v);
            let step = (v.abs() / 512.0).max(1.0 / 1024.0);
            assert!((q - v).abs() <= step / 2.0 + f64::EPSILON, "{v} -> {q}");
            // The 42 low mantissa bits are zero: what makes the column compress.
            assert_eq!(q.to_bits() & ((1 << 42) - 1), 0, "{v} -> {q}");
            v *= 1.37;
        }
    }

    #[test]
    fn a_nullable_column_missing_from_an_older_file_reads_as_nulls() {
        let batch = RecordBatch::try_from_iter([(
            "ts",
            Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
        )])
        .unwrap();
        let added: Vec<Option<i64>> = read_column(&batch, "added_later", Kind::Id).unwrap();
        assert_eq!(added, [None, None]);
        let err = read_column::<i64>(&batch, "required", Kind::Id).unwrap_err();
        assert!(err.to_string().contains("column required missing"), "{err}");
        let err = read_column::<String>(&batch, "ts", Kind::Text).unwrap_err();
        assert!(
            err.to_string().contains("column ts is Int64, not Utf8"),
            "{err}"
        );
    }
}
