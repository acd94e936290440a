//! One Rust struct per table row, and its conversion into an Arrow `RecordBatch`.
//! Timestamps are microseconds since the Unix epoch, UTC.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Float64Builder, Int64Array, ListBuilder, StringArray,
    TimestampMicrosecondArray,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::schema::Table;

/// A row of one table.
pub trait Row: Clone + Send + 'static {
    const TABLE: Table;
    /// The row's `ts`, in microseconds since the epoch (UTC); it picks the hourly file.
    fn ts_us(&self) -> i64;
    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ArrowError>;
}

#[derive(Clone, Debug, PartialEq)]
pub struct CpuRow {
    pub ts_us: i64,
    pub dur_ms: i64,
    pub uid: i64,
    pub user: Option<String>,
    pub cpu_ns: i64,
    pub cpu_pct: f64,
    pub source: &'static str,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MemRow {
    pub ts_us: i64,
    pub uid: i64,
    pub user: Option<String>,
    pub nproc: i64,
    pub rss_bytes: i64,
    pub pss_bytes: Option<i64>,
    pub swap_bytes: Option<i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NetRow {
    pub ts_us: i64,
    pub dur_ms: i64,
    pub iface: String,
    pub ifindex: i64,
    pub netns: Option<i64>,
    pub rx_bytes: i64,
    pub tx_bytes: i64,
    pub rx_packets: i64,
    pub tx_packets: i64,
    pub source: &'static str,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NetUidRow {
    pub ts_us: i64,
    pub dur_ms: i64,
    pub uid: i64,
    pub user: Option<String>,
    pub rx_bytes: i64,
    pub tx_bytes: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PingRow {
    /// When the measurement started.
    pub ts_us: i64,
    pub target: String,
    pub addr: Option<String>,
    pub sent: i64,
    pub received: i64,
    pub rtt_min_ms: Option<f64>,
    pub rtt_avg_ms: Option<f64>,
    pub rtt_max_ms: Option<f64>,
    pub rtt_mdev_ms: Option<f64>,
    pub rtts_ms: Vec<f64>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UbcRow {
    pub ts_us: i64,
    pub ctid: i64,
    pub resource: String,
    pub held: i64,
    pub maxheld: i64,
    pub barrier: i64,
    pub hard_limit: i64,
    pub failcnt: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EventRow {
    pub ts_us: i64,
    pub event: String,
    pub detail: Option<String>,
}

fn ts_col<R>(rows: &[R], f: impl Fn(&R) -> i64) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(f)).with_timezone("UTC"))
}

fn i64_col<R>(rows: &[R], f: impl Fn(&R) -> i64) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
}

fn opt_i64_col<R>(rows: &[R], f: impl Fn(&R) -> Option<i64>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<Int64Array>())
}

fn f64_col<R>(rows: &[R], f: impl Fn(&R) -> f64) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(rows.iter().map(f)))
}

fn opt_f64_col<R>(rows: &[R], f: impl Fn(&R) -> Option<f64>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<Float64Array>())
}

fn str_col<'a, R: 'a>(rows: &'a [R], f: impl Fn(&'a R) -> &'a str) -> ArrayRef {
    Arc::new(rows.iter().map(|r| Some(f(r))).collect::<StringArray>())
}

fn opt_str_col<'a, R: 'a>(rows: &'a [R], f: impl Fn(&'a R) -> Option<&'a str>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<StringArray>())
}

fn batch(table: Table, columns: Vec<ArrayRef>) -> Result<RecordBatch, ArrowError> {
    RecordBatch::try_new(table.schema(), columns)
}

impl Row for CpuRow {
    const TABLE: Table = Table::Cpu;
    fn ts_us(&self) -> i64 {
        self.ts_us
    }
    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ArrowError> {
        batch(
            Self::TABLE,
            vec![
                ts_col(rows, |r| r.ts_us),
                i64_col(rows, |r| r.dur_ms),
                i64_col(rows, |r| r.uid),
                opt_str_col(rows, |r| r.user.as_deref()),
                i64_col(rows, |r| r.cpu_ns),
                f64_col(rows, |r| r.cpu_pct),
                str_col(rows, |r| r.source),
            ],
        )
    }
}

impl Row for MemRow {
    const TABLE: Table = Table::Mem;
    fn ts_us(&self) -> i64 {
        self.ts_us
    }
    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ArrowError> {
        batch(
            Self::TABLE,
            vec![
                ts_col(rows, |r| r.ts_us),
                i64_col(rows, |r| r.uid),
                opt_str_col(rows, |r| r.user.as_deref()),
                i64_col(rows, |r| r.nproc),
                i64_col(rows, |r| r.rss_bytes),
                opt_i64_col(rows, |r| r.pss_bytes),
                opt_i64_col(rows, |r| r.swap_bytes),
            ],
        )
    }
}

impl Row for NetRow {
    const TABLE: Table = Table::Net;
    fn ts_us(&self) -> i64 {
        self.ts_us
    }
    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ArrowError> {
        batch(
            Self::TABLE,
            vec![
                ts_col(rows, |r| r.ts_us),
                i64_col(rows, |r| r.dur_ms),
                str_col(rows, |r| &r.iface),
                i64_col(rows, |r| r.ifindex),
                opt_i64_col(rows, |r| r.netns),
                i64_col(rows, |r| r.rx_bytes),
                i64_col(rows, |r| r.tx_bytes),
                i64_col(rows, |r| r.rx_packets),
                i64_col(rows, |r| r.tx_packets),
                str_col(rows, |r| r.source),
            ],
        )
    }
}

impl Row for NetUidRow {
    const TABLE: Table = Table::NetUid;
    fn ts_us(&self) -> i64 {
        self.ts_us
    }
    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ArrowError> {
        batch(
            Self::TABLE,
            vec![
                ts_col(rows, |r| r.ts_us),
                i64_col(rows, |r| r.dur_ms),
                i64_col(rows, |r| r.uid),
                opt_str_col(rows, |r| r.user.as_deref()),
                i64_col(rows, |r| r.rx_bytes),
                i64_col(rows, |r| r.tx_bytes),
            ],
        )
    }
}

impl Row for PingRow {
    const TABLE: Table = Table::Ping;
    fn ts_us(&self) -> i64 {
        self.ts_us
    }
    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ArrowError> {
        let item = Arc::new(arrow::datatypes::Field::new(
            "item",
            arrow::datatypes::DataType::Float64,
            false,
        ));
        let mut rtts = ListBuilder::new(Float64Builder::new()).with_field(item);
        for row in rows {
            rtts.values().append_slice(&row.rtts_ms);
            rtts.append(true);
        }
        batch(
            Self::TABLE,
            vec![
                ts_col(rows, |r| r.ts_us),
                str_col(rows, |r| &r.target),
                opt_str_col(rows, |r| r.addr.as_deref()),
                i64_col(rows, |r| r.sent),
                i64_col(rows, |r| r.received),
                opt_f64_col(rows, |r| r.rtt_min_ms),
                opt_f64_col(rows, |r| r.rtt_avg_ms),
                opt_f64_col(rows, |r| r.rtt_max_ms),
                opt_f64_col(rows, |r| r.rtt_mdev_ms),
                Arc::new(rtts.finish()),
                opt_str_col(rows, |r| r.error.as_deref()),
            ],
        )
    }
}

impl Row for UbcRow {
    const TABLE: Table = Table::Ubc;
    fn ts_us(&self) -> i64 {
        self.ts_us
    }
    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ArrowError> {
        batch(
            Self::TABLE,
            vec![
                ts_col(rows, |r| r.ts_us),
                i64_col(rows, |r| r.ctid),
                str_col(rows, |r| &r.resource),
                i64_col(rows, |r| r.held),
                i64_col(rows, |r| r.maxheld),
                i64_col(rows, |r| r.barrier),
                i64_col(rows, |r| r.hard_limit),
                i64_col(rows, |r| r.failcnt),
            ],
        )
    }
}

impl Row for EventRow {
    const TABLE: Table = Table::Events;
    fn ts_us(&self) -> i64 {
        self.ts_us
    }
    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ArrowError> {
        batch(
            Self::TABLE,
            vec![
                ts_col(rows, |r| r.ts_us),
                str_col(rows, |r| &r.event),
                opt_str_col(rows, |r| r.detail.as_deref()),
            ],
        )
    }
}
