//! The store: rows of each table go to hourly, Hive-partitioned Parquet files
//! (`<data-dir>/<table>/host=<h>/date=<YYYY-MM-DD>/<HH>.parquet`).
//!
//! Every file whose name ends in `.parquet` is complete at every moment: the current hour
//! is rewritten whole into a temporary (a name not ending in `.parquet`), fsynced and
//! renamed over the old one at each flush. Finished hours also get 1-minute roll-ups
//! ([`rollup`]); whole old date partitions go when `retain` says so.

pub mod events;
pub mod layout;
pub mod rollup;
pub mod rows;
pub mod schema;
pub mod writer;

pub use events::{Counters, Event, Recovered, Source};
pub use rows::{CpuRow, EventRow, FromBatch, MemRow, NetRow, NetUidRow, PingRow, Row, UbcRow};
pub use schema::{Table, SCHEMA_VERSION};
pub use writer::{read_rows, Store, StoreOptions, TableWriter, WriteError};
