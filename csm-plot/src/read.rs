//! Reading the Parquet files of one host and time range (found by [`DataTree`], in
//! csm-store) through the store's typed reader: only the columns a chart needs.

use std::path::{Path, PathBuf};

use csm_store::{FromBatch, Row, Table};
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
    Table::written()
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
    let times = csm_store::read_times(path).ok()?;
    times
        .into_iter()
        .filter(|t| (from_us..to_us).contains(t))
        .min()
}

/// Reads the files of `R`'s table among `files` through the store's typed reader (only
/// `columns`; the row's other fields stay at their default), handing each row to `take`
/// as its batch is decoded; a file that fails to read is named in `problems` and the
/// rest of it skipped (a file refused by a bound of the store's reader is refused before
/// its first batch when its footer says so, else at the batch that goes past it).
pub fn read_typed<R: FromBatch + Row>(
    files: &[(Table, PathBuf)],
    columns: &[&str],
    mut take: impl FnMut(R),
    problems: &mut Problems,
) {
    for (_, path) in files.iter().filter(|(table, _)| *table == R::TABLE) {
        let read = csm_store::for_each_rows_at::<R>(path, Some(columns), |rows| {
            rows.into_iter().for_each(&mut take);
            Ok(())
        });
        if let Err(err) = read {
            // The store's errors begin with the file's path.
            problems.unreadable.push(format!("cannot read {err}"));
        }
    }
}

/// How one table is charted from its raw rows and from its roll-ups: the columns to read
/// of each, and how a row of each becomes what the chart takes.
pub struct Spans<'a, R, M, T> {
    pub raw: (&'a [&'a str], fn(R) -> T),
    pub minute: (&'a [&'a str], fn(M) -> T),
}

/// A counter table's raw rows and roll-up rows among `files`, each brought to one shape
/// `T` by its projection (`columns`, `project`) and handed to `take`: one consumer for
/// both kinds, so no loader writes its reading twice.
pub fn read_pair<R: FromBatch + Row, M: FromBatch + Row, T>(
    files: &[(Table, PathBuf)],
    spans: Spans<'_, R, M, T>,
    mut take: impl FnMut(T),
    problems: &mut Problems,
) {
    let Spans { raw, minute } = spans;
    read_typed(files, raw.0, |r: R| take((raw.1)(r)), problems);
    read_typed(files, minute.0, |r: M| take((minute.1)(r)), problems);
}

/// A user's label: the name (made safe to show), else `uid N`.
pub fn user_label(name: Option<&str>, uid: i64) -> String {
    match name {
        Some(name) => csm_store::names::safe_text(name).into_owned(),
        None => format!("uid {uid}"),
    }
}
