//! csm's store: the tables, declared once, and their hourly, Hive-partitioned Parquet
//! files (`<data-dir>/<table>/host=<h>/date=<YYYY-MM-DD>/<HH>.parquet`).
//!
//! Rooms, by concern:
//! - [`tables`]: every table's row, one line per column: the file to read first;
//! - [`table`] and [`column`]: the [`table!`] macro and what a column kind means (Arrow
//!   type, encoding, rounding), from which schema, writer batch and reader follow;
//! - [`events`]: the typed [`Event`] and [`Source`];
//! - [`layout`]: where each row goes; [`atomic`]: replacing a file whole; [`beneath`]: paths
//!   below the data dir opened from its descriptor, never through a link; [`data_dir`]:
//!   refusing a data dir others can write, and the lock taken before anything is touched;
//! - [`writer`]: one table's hourly buffers and files, the current hour's growing by one
//!   row group per flush (`growing`); [`store`]: every table's writer in
//!   one registry, flushes, roll-ups, retention; [`rollup`]: the 1-minute roll-ups;
//! - [`reader`]: reading rows back; [`tree`]: which files of a host and range to read;
//! - [`range`]: the flags of every command that reads history (`--data-dir --host --from
//!   --to --tz`), declared once with per-command defaults;
//! - [`time`]: durations and times as users write them; [`zone`]: the time zone a reader
//!   shows times in; [`outages`]: the one definition of a ping outage; [`stats`]: the one
//!   percentile and ping loss definitions; [`names`]: names other users choose, made safe
//!   to show (text and CSV); [`netns`]: the one label of a network namespace; [`units`]:
//!   human units (bytes, rates, durations) for every reader's text.
//!
//! Every file whose name ends in `.parquet` is complete at every moment: the current hour
//! is written whole into a temporary (a name not ending in `.parquet`), fsynced and renamed
//! over the old one at each flush (only the flush's new rows are encoded; the bytes before
//! them are kept in memory). No aya, no tokio: the daemon, `csm-plot` and
//! the tests all read and write through this crate.

pub mod atomic;
pub mod beneath;
#[doc(hidden)]
pub mod bombs;
pub mod column;
pub mod data_dir;
mod declare;
pub mod events;
mod growing;
pub mod layout;
pub mod names;
pub mod netns;
pub mod outages;
pub mod range;
pub mod reader;
pub mod rollup;
pub mod sim;
pub mod spill;
pub mod stats;
pub mod store;
pub mod table;
pub mod tables;
pub mod time;
pub mod tree;
pub mod units;
pub mod writer;
pub mod zone;

pub use column::{quantize, round_rtt};
pub use events::{AlertEvent, Counters, Event, Recovered, Source};
pub use reader::{
    for_each_batch, for_each_rows, for_each_rows_at, for_each_rows_held, read_columns, read_rows,
    read_rows_at_most, read_rows_from, read_rows_held, read_table, read_times, table_files, Bounds,
    Held, BOUNDS, MAX_ROWS_PER_FILE,
};
pub use store::{Store, TableRows};
pub use table::{FromBatch, Row, Writing, SCHEMA_VERSION};
pub use tables::*;
pub use writer::{StoreOptions, TableWriter, WriteError};
