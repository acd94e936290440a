//! What every table is: a [`Row`] written and read back ([`FromBatch`]), listed in
//! [`Table`]. The declarations are in `tables.rs`, made by the macros of `declare.rs`.
//! Changes are additive only (new tables, new nullable columns) and bump
//! [`SCHEMA_VERSION`].

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::column::Column;
pub use crate::tables::Table;
use crate::time::hour_of;

/// `csm.schema_version` in every file's key-value metadata.
pub const SCHEMA_VERSION: &str = "3";

/// How the daemon writes a table (see [`catalog!`](crate::catalog)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writing {
    /// Raw rows as it collects, rolled up into a minute table when an hour ends.
    RolledUp,
    /// Raw rows as it collects, no roll-up.
    Plain,
    /// A 1-minute roll-up of another table's finished hours.
    Rollup,
}

impl Table {
    /// The tables the daemon writes as it collects.
    pub fn written() -> impl Iterator<Item = Table> {
        Table::EVERY
            .iter()
            .copied()
            .filter(|t| t.writing() != Writing::Rollup)
    }

    /// Roll-up tables: one row per key per minute, `ts` = the end of the minute.
    pub fn rollups() -> impl Iterator<Item = Table> {
        Table::EVERY.iter().copied().filter(|t| t.is_rollup())
    }

    /// The table whose folder is `name`.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::EVERY.iter().copied().find(|t| t.name() == name)
    }

    pub fn is_rollup(self) -> bool {
        self.writing() == Writing::Rollup
    }

    pub fn schema(self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns().iter().map(Column::field).collect::<Vec<_>>(),
        ))
    }
}

/// A row of one table. Implemented by [`crate::table!`]; nothing else needs to.
pub trait Row: Clone + Send + 'static {
    const TABLE: Table;
    /// The columns in file order: name, kind, Arrow type, nullability.
    fn columns() -> Vec<Column>;
    /// The row's `ts`, in microseconds since the epoch (UTC); it picks the hourly file.
    fn ts_us(&self) -> i64;
    /// The hour (since the epoch) whose file holds the row. A roll-up row's `ts` is the
    /// end of its minute: its hour is the one of `ts - 1 µs`.
    fn hour(&self) -> i64 {
        if Self::TABLE.is_rollup() {
            hour_of(self.ts_us() - 1)
        } else {
            hour_of(self.ts_us())
        }
    }
    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ArrowError>;
}

/// Rows read back from a file. Columns are found by name: columns a reader does not
/// know are ignored, and a nullable column an older file lacks reads as nulls.
pub trait FromBatch: Sized {
    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, ArrowError> {
        Self::from_projected_batch(batch, None)
    }
    /// Rows of a batch read with only the columns `wanted` (all when `None`): the fields
    /// of the other columns are left at their default, unread, so that a reader can skip
    /// columns it does not need without a row type of its own.
    fn from_projected_batch(
        batch: &RecordBatch,
        wanted: Option<&[&str]>,
    ) -> Result<Vec<Self>, ArrowError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, TimeUnit};

    /// Each column as `name:type` (`?` when nullable).
    fn spelled(table: Table) -> String {
        let fields = table.schema().fields().clone();
        let spell = |f: &arrow::datatypes::FieldRef| {
            let ty = match f.data_type() {
                DataType::Int64 => "i64".to_string(),
                DataType::Float64 => "f64".to_string(),
                DataType::Utf8 => "str".to_string(),
                DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) => format!("ts[{tz}]"),
                DataType::List(item) => format!("list<{}>", item.data_type()),
                other => format!("{other}"),
            };
            let null = if f.is_nullable() { "?" } else { "" };
            format!("{}:{ty}{null}", f.name())
        };
        fields.iter().map(spell).collect::<Vec<_>>().join(" ")
    }

    /// The schemas of DESIGN.md, spelled out once more on purpose: a change to a
    /// declaration that alters the files must fail here.
    #[test]
    fn schemas_are_the_documented_contract() {
        // One line a table: its name, then each column as `name:type`, `?` if nullable.
        let contract = "\
cpu ts:ts[UTC] dur_ms:i64 uid:i64 user:str? cpu_ns:i64 cpu_pct:f64 source:str\n\
mem ts:ts[UTC] uid:i64 user:str? nproc:i64 rss_bytes:i64 pss_bytes:i64? swap_bytes:i64?\n\
net ts:ts[UTC] dur_ms:i64 iface:str ifindex:i64 netns:i64? rx_bytes:i64 tx_bytes:i64 rx_packets:i64 tx_packets:i64 source:str rx_errors:i64? tx_errors:i64? rx_dropped:i64? tx_dropped:i64?\n\
net_uid ts:ts[UTC] dur_ms:i64 uid:i64 user:str? rx_bytes:i64 tx_bytes:i64\n\
ping ts:ts[UTC] target:str addr:str? sent:i64 received:i64 rtt_min_ms:f64? rtt_avg_ms:f64? rtt_max_ms:f64? rtt_mdev_ms:f64? rtts_ms:list<Float64> error:str?\n\
ubc ts:ts[UTC] ctid:i64 resource:str held:i64 maxheld:i64 barrier:i64 hard_limit:i64 failcnt:i64\n\
events ts:ts[UTC] event:str detail:str?\n\
cpu_1m ts:ts[UTC] dur_ms:i64 uid:i64 user:str? cpu_ns:i64 cpu_pct:f64 cpu_pct_max:f64 source:str\n\
net_1m ts:ts[UTC] dur_ms:i64 iface:str ifindex:i64 netns:i64? rx_bytes:i64 tx_bytes:i64 rx_packets:i64 tx_packets:i64 rx_bytes_per_s_max:f64 tx_bytes_per_s_max:f64 source:str rx_errors:i64? tx_errors:i64? rx_dropped:i64? tx_dropped:i64?\n\
net_uid_1m ts:ts[UTC] dur_ms:i64 uid:i64 user:str? rx_bytes:i64 tx_bytes:i64\n\
mem_1m ts:ts[UTC] uid:i64 user:str? samples:i64 nproc_max:i64 rss_bytes_mean:i64 rss_bytes_max:i64 pss_bytes_mean:i64? swap_bytes_mean:i64?\n\
ping_1m ts:ts[UTC] target:str measurements:i64 sent:i64 received:i64 loss_pct:f64? rtt_min_ms:f64? rtt_avg_ms:f64? rtt_p50_ms:f64? rtt_p90_ms:f64? rtt_p99_ms:f64? rtt_max_ms:f64?";
        let lines: Vec<&str> = contract.lines().collect();
        assert_eq!(lines.len(), Table::EVERY.len());
        for line in lines {
            let (name, columns) = line.split_once(' ').unwrap();
            let table = Table::from_name(name).unwrap();
            assert_eq!(spelled(table), columns, "{name}");
        }
    }

    #[test]
    fn table_names_read_back() {
        for &table in Table::EVERY {
            assert_eq!(Table::from_name(table.name()), Some(table));
        }
        assert_eq!(Table::from_name("nope"), None);
    }
}
