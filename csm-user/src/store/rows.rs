//! One Rust struct per table row, and its conversion into an Arrow `RecordBatch`.
//! Timestamps are microseconds since the Unix epoch, UTC.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Float64Builder, Int64Array, ListArray, ListBuilder, StringArray,
    TimestampMicrosecondArray,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::events::{Event, Source};
use super::layout::hour_of;
use super::schema::Table;

/// A row of one table.
pub trait Row: Clone + Send + 'static {
    const TABLE: Table;
    /// The row's `ts`, in microseconds since the epoch (UTC); it picks the hourly file.
    fn ts_us(&self) -> i64;
    /// The hour (since the epoch) whose file holds the row.
    fn hour(&self) -> i64 {
        hour_of(self.ts_us())
    }
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
    pub source: Source,
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
    pub source: Source,
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

impl EventRow {
    pub fn new(ts_us: i64, event: &Event) -> EventRow {
        EventRow {
            ts_us,
            event: event.name().to_string(),
            detail: event.detail(),
        }
    }

    /// The typed event this row holds.
    pub fn event(&self) -> Event {
        Event::parse(&self.event, self.detail.as_deref())
    }
}

pub(crate) fn ts_col<R>(rows: &[R], f: impl Fn(&R) -> i64) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(f)).with_timezone("UTC"))
}

pub(crate) fn i64_col<R>(rows: &[R], f: impl Fn(&R) -> i64) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
}

pub(crate) fn opt_i64_col<R>(rows: &[R], f: impl Fn(&R) -> Option<i64>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<Int64Array>())
}

/// Significant bits kept of a stored rate or percentage (see [`quantize`]).
pub const RATE_SIGNIFICANT_BITS: i32 = 10;

/// Rates and percentages (`cpu_pct`, `*_per_s_max`) are derived values, stored rounded
/// to 10 significant bits, three significant digits (at most 0.1 % of the value off:
/// 84.37 % is stored as 84.375 %), and never finer than 1/1024. They are exact binary fractions whose low mantissa bytes are zero,
/// so they compress to a fraction. The exact values stay in the integer columns
/// (`cpu_ns`, bytes, `dur_ms`).
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

pub(crate) fn rate_col<R>(rows: &[R], f: impl Fn(&R) -> f64) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(
        rows.iter().map(|r| quantize(f(r))),
    ))
}

/// RTTs are stored rounded to 1/1024 ms (0.98 µs): below what a ping measures (the send
/// time is taken in user space), and an exact binary fraction, so a double's low mantissa
/// bytes are zero and compress away.
pub fn round_rtt(ms: f64) -> f64 {
    (ms * 1024.0).round() / 1024.0
}

pub(crate) fn opt_rtt_col<R>(rows: &[R], f: impl Fn(&R) -> Option<f64>) -> ArrayRef {
    Arc::new(
        rows.iter()
            .map(|r| f(r).map(round_rtt))
            .collect::<Float64Array>(),
    )
}

pub(crate) fn opt_rate_col<R>(rows: &[R], f: impl Fn(&R) -> Option<f64>) -> ArrayRef {
    Arc::new(
        rows.iter()
            .map(|r| f(r).map(quantize))
            .collect::<Float64Array>(),
    )
}

pub(crate) fn str_col<'a, R: 'a>(rows: &'a [R], f: impl Fn(&'a R) -> &'a str) -> ArrayRef {
    Arc::new(rows.iter().map(|r| Some(f(r))).collect::<StringArray>())
}

pub(crate) fn opt_str_col<'a, R: 'a>(
    rows: &'a [R],
    f: impl Fn(&'a R) -> Option<&'a str>,
) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<StringArray>())
}

pub(crate) fn batch(table: Table, columns: Vec<ArrayRef>) -> Result<RecordBatch, ArrowError> {
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
                rate_col(rows, |r| r.cpu_pct),
                str_col(rows, |r| r.source.as_str()),
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
                str_col(rows, |r| r.source.as_str()),
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
            for &rtt in &row.rtts_ms {
                rtts.values().append_value(round_rtt(rtt));
            }
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
                opt_rtt_col(rows, |r| r.rtt_min_ms),
                opt_rtt_col(rows, |r| r.rtt_avg_ms),
                opt_rtt_col(rows, |r| r.rtt_max_ms),
                opt_rtt_col(rows, |r| r.rtt_mdev_ms),
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

/// Rows read back from a file (roll-ups are computed from what is on disk).
pub trait FromBatch: Sized {
    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, ArrowError>;
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, ArrowError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| ArrowError::SchemaError(format!("column {name} missing or of another type")))
}

fn ints(batch: &RecordBatch, name: &str) -> Result<Vec<i64>, ArrowError> {
    Ok(column::<Int64Array>(batch, name)?.values().to_vec())
}

fn opt_ints(batch: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>, ArrowError> {
    Ok(column::<Int64Array>(batch, name)?.iter().collect())
}

fn floats(batch: &RecordBatch, name: &str) -> Result<Vec<f64>, ArrowError> {
    Ok(column::<Float64Array>(batch, name)?.values().to_vec())
}

fn opt_floats(batch: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>, ArrowError> {
    Ok(column::<Float64Array>(batch, name)?.iter().collect())
}

fn texts(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>, ArrowError> {
    Ok(column::<StringArray>(batch, name)?
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

fn stamps(batch: &RecordBatch) -> Result<Vec<i64>, ArrowError> {
    Ok(column::<TimestampMicrosecondArray>(batch, "ts")?
        .values()
        .to_vec())
}

impl FromBatch for CpuRow {
    fn from_batch(b: &RecordBatch) -> Result<Vec<Self>, ArrowError> {
        let (ts, dur, uid, user) = (
            stamps(b)?,
            ints(b, "dur_ms")?,
            ints(b, "uid")?,
            texts(b, "user")?,
        );
        let (ns, pct, src) = (
            ints(b, "cpu_ns")?,
            floats(b, "cpu_pct")?,
            texts(b, "source")?,
        );
        Ok((0..b.num_rows())
            .map(|i| CpuRow {
                ts_us: ts[i],
                dur_ms: dur[i],
                uid: uid[i],
                user: user[i].clone(),
                cpu_ns: ns[i],
                cpu_pct: pct[i],
                source: Source::parse(src[i].as_deref()),
            })
            .collect())
    }
}

impl FromBatch for NetRow {
    fn from_batch(b: &RecordBatch) -> Result<Vec<Self>, ArrowError> {
        let (ts, dur, iface, ifindex) = (
            stamps(b)?,
            ints(b, "dur_ms")?,
            texts(b, "iface")?,
            ints(b, "ifindex")?,
        );
        let (netns, rxb, txb) = (
            opt_ints(b, "netns")?,
            ints(b, "rx_bytes")?,
            ints(b, "tx_bytes")?,
        );
        let (rxp, txp, src) = (
            ints(b, "rx_packets")?,
            ints(b, "tx_packets")?,
            texts(b, "source")?,
        );
        Ok((0..b.num_rows())
            .map(|i| NetRow {
                ts_us: ts[i],
                dur_ms: dur[i],
                iface: iface[i].clone().unwrap_or_default(),
                ifindex: ifindex[i],
                netns: netns[i],
                rx_bytes: rxb[i],
                tx_bytes: txb[i],
                rx_packets: rxp[i],
                tx_packets: txp[i],
                source: Source::parse(src[i].as_deref()),
            })
            .collect())
    }
}

impl FromBatch for NetUidRow {
    fn from_batch(b: &RecordBatch) -> Result<Vec<Self>, ArrowError> {
        let (ts, dur, uid, user) = (
            stamps(b)?,
            ints(b, "dur_ms")?,
            ints(b, "uid")?,
            texts(b, "user")?,
        );
        let (rx, tx) = (ints(b, "rx_bytes")?, ints(b, "tx_bytes")?);
        Ok((0..b.num_rows())
            .map(|i| NetUidRow {
                ts_us: ts[i],
                dur_ms: dur[i],
                uid: uid[i],
                user: user[i].clone(),
                rx_bytes: rx[i],
                tx_bytes: tx[i],
            })
            .collect())
    }
}

impl FromBatch for MemRow {
    fn from_batch(b: &RecordBatch) -> Result<Vec<Self>, ArrowError> {
        let (ts, uid, user, nproc) = (
            stamps(b)?,
            ints(b, "uid")?,
            texts(b, "user")?,
            ints(b, "nproc")?,
        );
        let (rss, pss, swap) = (
            ints(b, "rss_bytes")?,
            opt_ints(b, "pss_bytes")?,
            opt_ints(b, "swap_bytes")?,
        );
        Ok((0..b.num_rows())
            .map(|i| MemRow {
                ts_us: ts[i],
                uid: uid[i],
                user: user[i].clone(),
                nproc: nproc[i],
                rss_bytes: rss[i],
                pss_bytes: pss[i],
                swap_bytes: swap[i],
            })
            .collect())
    }
}

impl FromBatch for PingRow {
    fn from_batch(b: &RecordBatch) -> Result<Vec<Self>, ArrowError> {
        let (ts, target, addr) = (stamps(b)?, texts(b, "target")?, texts(b, "addr")?);
        let (sent, received, error) = (ints(b, "sent")?, ints(b, "received")?, texts(b, "error")?);
        let (min, avg, max, mdev) = (
            opt_floats(b, "rtt_min_ms")?,
            opt_floats(b, "rtt_avg_ms")?,
            opt_floats(b, "rtt_max_ms")?,
            opt_floats(b, "rtt_mdev_ms")?,
        );
        let rtts = column::<ListArray>(b, "rtts_ms")?;
        let mut rows = Vec::with_capacity(b.num_rows());
        for i in 0..b.num_rows() {
            let list = rtts.value(i);
            let values = list
                .as_any()
                .downcast_ref::<Float64Array>()
                .ok_or_else(|| ArrowError::SchemaError("rtts_ms items are not doubles".into()))?;
            rows.push(PingRow {
                ts_us: ts[i],
                target: target[i].clone().unwrap_or_default(),
                addr: addr[i].clone(),
                sent: sent[i],
                received: received[i],
                rtt_min_ms: min[i],
                rtt_avg_ms: avg[i],
                rtt_max_ms: max[i],
                rtt_mdev_ms: mdev[i],
                rtts_ms: values.iter().flatten().collect(),
                error: error[i].clone(),
            });
        }
        Ok(rows)
    }
}

impl FromBatch for UbcRow {
    fn from_batch(b: &RecordBatch) -> Result<Vec<Self>, ArrowError> {
        let (ts, ctid, resource, held) = (
            stamps(b)?,
            ints(b, "ctid")?,
            texts(b, "resource")?,
            ints(b, "held")?,
        );
        let (maxheld, barrier, limit, failcnt) = (
            ints(b, "maxheld")?,
            ints(b, "barrier")?,
            ints(b, "hard_limit")?,
            ints(b, "failcnt")?,
        );
        Ok((0..b.num_rows())
            .map(|i| UbcRow {
                ts_us: ts[i],
                ctid: ctid[i],
                resource: resource[i].clone().unwrap_or_default(),
                held: held[i],
                maxheld: maxheld[i],
                barrier: barrier[i],
                hard_limit: limit[i],
                failcnt: failcnt[i],
            })
            .collect())
    }
}

impl FromBatch for EventRow {
    fn from_batch(b: &RecordBatch) -> Result<Vec<Self>, ArrowError> {
        let (ts, event, detail) = (stamps(b)?, texts(b, "event")?, texts(b, "detail")?);
        Ok((0..b.num_rows())
            .map(|i| EventRow {
                ts_us: ts[i],
                event: event[i].clone().unwrap_or_default(),
                detail: detail[i].clone(),
            })
            .collect())
    }
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
}
