//! Rows a stop's last flush could not write, kept for the next start: one Parquet file
//! per table (`<table>.parquet`, every hour's unwritten rows) in a folder the daemon
//! picks and opens itself (see `csm-user/src/daemon/pending.rs`). Written whole through
//! a temporary; read back only as regular files opened relative to that folder, never
//! through a link, never blocking on a FIFO, within [`MAX_SPILL_FILE_BYTES`] and the
//! reader's decoding bounds.

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use parquet::arrow::ArrowWriter;

use crate::table::{FromBatch, Row, Table};
use crate::{atomic, beneath, reader, writer};

/// The most a spilled table's file may weigh: a table's memory bound (1 M rows) of the
/// widest rows csm writes, compressed, is far below it; anything larger is not csm's.
pub const MAX_SPILL_FILE_BYTES: u64 = 512 << 20;

/// The spill file of `table`.
pub fn file_name(table: Table) -> String {
    format!("{}.parquet", table.name())
}

/// Writes `rows` as `table`'s spill file in `dir` (owner-only, whole or not at all).
pub(crate) fn write<R: Row>(dir: &OwnedFd, rows: &[R], host: &str) -> io::Result<()> {
    let name = file_name(R::TABLE);
    let temp = format!(".{name}.tmp");
    let batch = R::to_batch(rows).map_err(io::Error::other)?;
    let props = writer::writer_properties(R::TABLE, host);
    atomic::replace_file_at(dir, &name, &temp, 0o600, |file| {
        let mut out = ArrowWriter::try_new_with_options(
            file,
            batch.schema(),
            crate::growing::writer_options(&props),
        )
        .map_err(io::Error::other)?;
        out.write(&batch).map_err(io::Error::other)?;
        let file = out.into_inner().map_err(io::Error::other)?;
        Ok((file, ()))
    })
}

/// The rows of `R`'s spill file in `dir`, `None` when there is none; at most `max_rows`.
/// A link, a FIFO, a device, a folder or an oversized file under its name is refused with
/// an error naming it (nothing is followed or read).
pub(crate) fn read<R: Row + FromBatch>(
    dir: &OwnedFd,
    dir_path: &Path,
    max_rows: i64,
) -> io::Result<Option<Vec<R>>> {
    let name = file_name(R::TABLE);
    let path = dir_path.join(&name);
    let named = |err: io::Error| io::Error::new(err.kind(), format!("{}: {err}", path.display()));
    let file = match beneath::open_regular_at(dir, OsStr::new(&name)) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) if err.raw_os_error() == Some(libc::ELOOP) => {
            return Err(named(io::Error::other(
                "a symbolic link: not followed".to_string(),
            )))
        }
        Err(err) => return Err(named(err)),
    };
    let size = file.metadata().map_err(named)?.len();
    if size > MAX_SPILL_FILE_BYTES {
        return Err(named(io::Error::other(format!(
            "{size} bytes, more than a spill ever holds ({MAX_SPILL_FILE_BYTES})"
        ))));
    }
    reader::read_rows_from(file, &path, max_rows).map(Some)
}
