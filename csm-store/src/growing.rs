//! The current hour's file as it grows: its row groups kept encoded in memory, a flush
//! encoding only its own new rows as one more row group, and the file on disk replaced
//! whole (row groups, then a footer for them) so that it is a complete Parquet file at
//! every moment.
//!
//! One row group per flush would leave 360 small row groups in an hour's file: each costs
//! footer metadata for every column and compresses poorly (measured in bench_store: 6
//! times the bytes of the compacted file at the hour's end, and a footer whose encoding
//! grows through the hour). So row groups are merged like a binary counter: whenever the
//! last row group holds at least as many rows as the one before it, the two are encoded
//! again as one. An hour then has at most about log2(flushes) + 1 row groups (9 for 360
//! flushes), and each row is encoded about log2(flushes) times over the hour instead of
//! once per remaining flush.
//!
//! Row groups of fewer than [`LARGE_GROUP_ROWS`] rows (a few flushes' worth) are compressed
//! with Snappy, larger ones with zstd (see `writer::small_group_properties`): nearly all
//! the bytes are in the large ones.
//!
//! Each row group is encoded by an [`ArrowWriter`] of its own into memory; its bytes and
//! metadata are spliced into the file with the offsets moved to where they land, and the
//! footer is written with [`ParquetMetaDataWriter`]: the file is byte for byte the one an
//! `ArrowWriter` would write with a `flush` after each row group (tested below).

use std::io::{self, Write};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::{
    FileMetaData, ParquetMetaDataBuilder, ParquetMetaDataWriter, RowGroupMetaData,
};
use parquet::file::properties::WriterProperties;

use crate::table::Row;

/// Row groups of at least this many rows are compressed with zstd, smaller ones with
/// Snappy: at 1 s, 20 users' `cpu` rows of 16 flushes, 4 interfaces' `net` rows of 26.
pub(crate) const LARGE_GROUP_ROWS: usize = 1024;

/// Every Parquet file starts (and ends) with it.
const MAGIC: &[u8; 4] = b"PAR1";

/// An hour's file being built in memory. Its row groups hold the hour buffer's first
/// [`rows`](Self::rows) rows, in buffer order range by range (each range sorted by time in
/// its row group).
pub(crate) struct GrowingFile {
    schema: SchemaRef,
    /// For row groups of fewer than [`LARGE_GROUP_ROWS`] rows, and for the others.
    small: Arc<WriterProperties>,
    large: Arc<WriterProperties>,
    groups: Vec<EncodedGroup>,
}

/// One row group as encoded in a file of its own: its bytes after that file's magic, and
/// its metadata with offsets counted in that file.
struct EncodedGroup {
    rows: usize,
    bytes: Vec<u8>,
    metadata: RowGroupMetaData,
}

impl GrowingFile {
    /// `small` and `large` differ in compression only: the footer takes the rest
    /// (key-value metadata, `created_by`, version) from `large`.
    pub(crate) fn new(
        schema: SchemaRef,
        small: &Arc<WriterProperties>,
        large: &Arc<WriterProperties>,
    ) -> Self {
        GrowingFile {
            schema,
            small: small.clone(),
            large: large.clone(),
            groups: Vec::new(),
        }
    }

    /// Rows encoded so far: the first `rows()` of the hour's buffer.
    pub(crate) fn rows(&self) -> usize {
        self.groups.iter().map(|g| g.rows).sum()
    }

    /// Row groups in the file so far.
    #[cfg(test)]
    pub(crate) fn row_groups(&self) -> usize {
        self.groups.len()
    }

    /// Encoded bytes held in memory.
    pub(crate) fn bytes(&self) -> usize {
        self.groups.iter().map(|g| g.bytes.capacity()).sum()
    }

    /// Encodes `rows[self.rows()..]` as one more row group, then merges the last row
    /// groups while the last holds at least as many rows as the one before it.
    ///
    /// Rows at or past `in_place_from` are sorted by time in `rows` itself; rows before it
    /// (the ones on disk: whoever holds the buffer counts them by position) keep their
    /// places, and a row group of theirs that is not in time order is encoded from a
    /// sorted copy.
    pub(crate) fn append<R: Row>(
        &mut self,
        rows: &mut [R],
        in_place_from: usize,
    ) -> io::Result<()> {
        let start = self.rows();
        if start >= rows.len() {
            return Ok(());
        }
        rows[start.max(in_place_from)..].sort_by_key(|r| r.ts_us());
        self.groups.push(self.encode(&rows[start..])?);
        while let [.., before, last] = &self.groups[..] {
            if before.rows > last.rows {
                break;
            }
            let merged = before.rows + last.rows;
            let from = self.rows() - merged;
            let group = self.encode(&rows[from..from + merged])?;
            self.groups.truncate(self.groups.len() - 2);
            self.groups.push(group);
        }
        Ok(())
    }

    /// One row group of `rows`, sorted by time (from a copy if they are not in order).
    fn encode<R: Row>(&self, rows: &[R]) -> io::Result<EncodedGroup> {
        if !rows.is_sorted_by_key(|r| r.ts_us()) {
            let mut sorted = rows.to_vec();
            sorted.sort_by_key(|r| r.ts_us());
            return self.encode(&sorted);
        }
        let batch = R::to_batch(rows).map_err(io::Error::other)?;
        let props = if rows.len() < LARGE_GROUP_ROWS {
            &self.small
        } else {
            &self.large
        };
        let mut writer = ArrowWriter::try_new_with_options(
            Vec::new(),
            self.schema.clone(),
            writer_options(props),
        )
        .map_err(io::Error::other)?;
        writer.write(&batch).map_err(io::Error::other)?;
        // Closes the row group; `sync` moves the writer's buffered bytes into the Vec.
        writer.flush().map_err(io::Error::other)?;
        writer.sync()?;
        let metadata = writer
            .flushed_row_groups()
            .first()
            .cloned()
            .ok_or_else(|| io::Error::other("the writer closed no row group"))?;
        // The footer is never written: the file is assembled in `write_file`.
        let mut bytes = std::mem::take(writer.inner_mut());
        bytes.drain(..MAGIC.len());
        bytes.shrink_to_fit();
        Ok(EncodedGroup {
            rows: rows.len(),
            bytes,
            metadata,
        })
    }

    /// Writes the complete file so far (magic, row groups, footer) to `out`.
    pub(crate) fn write_file(&self, out: &mut impl Write) -> io::Result<()> {
        let mut placed = Vec::with_capacity(self.groups.len());
        let mut offset = MAGIC.len() as i64;
        for (ordinal, group) in self.groups.iter().enumerate() {
            placed.push(moved(&group.metadata, offset, ordinal)?);
            offset += group.bytes.len() as i64;
        }
        let footer = self.footer(placed)?;
        out.write_all(MAGIC)?;
        for group in &self.groups {
            out.write_all(&group.bytes)?;
        }
        out.write_all(&footer)
    }

    /// Footer metadata, its length and the closing magic, as `ArrowWriter::close` would
    /// write them after `row_groups`.
    fn footer(&self, row_groups: Vec<RowGroupMetaData>) -> io::Result<Vec<u8>> {
        let schema = row_groups
            .first()
            .map(RowGroupMetaData::schema_descr_ptr)
            .ok_or_else(|| io::Error::other("no row group encoded yet"))?;
        let props = &self.large;
        let file_metadata = FileMetaData::new(
            props.writer_version().as_num(),
            row_groups.iter().map(RowGroupMetaData::num_rows).sum(),
            Some(props.created_by().to_string()),
            props.key_value_metadata().cloned(),
            schema,
            None,
        );
        let metadata = ParquetMetaDataBuilder::new(file_metadata)
            .set_row_groups(row_groups)
            .build();
        let mut footer = Vec::new();
        ParquetMetaDataWriter::new(&mut footer, &metadata)
            .with_write_path_in_schema(props.write_path_in_schema())
            .with_preserve_page_index_locations(false)
            .finish()
            .map_err(io::Error::other)?;
        Ok(footer)
    }
}

/// `group`'s metadata (encoded in a file of its own, right after the magic) for the same
/// bytes placed at `offset` of another file, as its row group number `ordinal`.
fn moved(group: &RowGroupMetaData, offset: i64, ordinal: usize) -> io::Result<RowGroupMetaData> {
    let shift = offset - MAGIC.len() as i64;
    let columns = group
        .columns()
        .iter()
        .map(|column| {
            column
                .clone()
                .into_builder()
                .set_data_page_offset(column.data_page_offset() + shift)
                .set_dictionary_page_offset(column.dictionary_page_offset().map(|o| o + shift))
                .set_index_page_offset(column.index_page_offset().map(|o| o + shift))
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(io::Error::other)?;
    group
        .clone()
        .into_builder()
        .set_column_metadata(columns)
        .set_ordinal(i32::try_from(ordinal).map_err(io::Error::other)?)
        .set_file_offset(group.file_offset().unwrap_or(MAGIC.len() as i64) + shift)
        .build()
        .map_err(io::Error::other)
}

/// The embedded Arrow schema (`ARROW:schema`, 0.6–1 KB a file, a tenth of a small
/// hourly file) is left out: every column type of these tables maps back from its
/// Parquet type unchanged (`timestamp(isAdjustedToUTC)` reads as `Timestamp(µs, "UTC")`;
/// tested in `store.rs`).
pub(crate) fn writer_options(props: &WriterProperties) -> ArrowWriterOptions {
    ArrowWriterOptions::new()
        .with_properties(props.clone())
        .with_skip_arrow_metadata(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Source;
    use crate::tables::{CpuRow, PingRow};
    use crate::writer::{flush_properties, small_group_properties};
    use crate::Table;

    fn cpu_rows(from: i64, n: i64) -> Vec<CpuRow> {
        (from..from + n)
            .map(|i| CpuRow {
                ts_us: i * 1_000_000,
                dur_ms: 1000,
                uid: 1000 + i % 3,
                user: (i % 2 == 0).then(|| format!("user{i}")),
                cpu_ns: i * 7,
                cpu_pct: i as f64 / 3.0,
                source: Source::Ebpf,
            })
            .collect()
    }

    /// The file an `ArrowWriter` writes with the rows of each of `growing`'s row groups
    /// (sorted by time) and a `flush` after each: the reference.
    fn closed<R: Row>(growing: &GrowingFile, rows: &[R]) -> Vec<u8> {
        let mut writer = ArrowWriter::try_new_with_options(
            Vec::new(),
            R::TABLE.schema(),
            writer_options(&growing.large),
        )
        .unwrap();
        let mut from = 0;
        for group in &growing.groups {
            let mut range = rows[from..from + group.rows].to_vec();
            range.sort_by_key(|r| r.ts_us());
            writer.write(&R::to_batch(&range).unwrap()).unwrap();
            writer.flush().unwrap();
            from += group.rows;
        }
        writer.into_inner().unwrap()
    }

    fn file(growing: &GrowingFile) -> Vec<u8> {
        let mut file = Vec::new();
        growing.write_file(&mut file).unwrap();
        file
    }

    #[test]
    fn each_file_so_far_is_byte_for_byte_what_the_writer_would_close() {
        let props = Arc::new(flush_properties(Table::Cpu, "h"));
        let mut growing = GrowingFile::new(Table::Cpu.schema(), &props, &props);
        let mut rows = Vec::new();
        // 10, then 1 (two row groups), then 25 (merged with both: one), then 3 and 3.
        let mut groups_seen = Vec::new();
        for (from, n) in [(0, 10), (10, 1), (11, 25), (36, 3), (39, 3)] {
            rows.extend(cpu_rows(from, n));
            let written = growing.rows();
            growing.append(&mut rows, written).unwrap();
            groups_seen.push(growing.row_groups());
            assert_eq!(
                file(&growing),
                closed(&growing, &rows),
                "after {} rows",
                rows.len()
            );
        }
        assert_eq!(groups_seen, [1, 2, 1, 2, 2]);
        assert_eq!(growing.rows(), 42);
    }

    #[test]
    fn rows_on_disk_keep_their_places_and_late_rows_are_sorted_in() {
        let props = Arc::new(flush_properties(Table::Cpu, "h"));
        let mut growing = GrowingFile::new(Table::Cpu.schema(), &props, &props);
        let mut rows = cpu_rows(10, 5);
        growing.append(&mut rows, 0).unwrap();
        // A late row, older than everything written: merged into one row group with the
        // first five, from a sorted copy, as the first five are on disk.
        let late = cpu_rows(0, 5);
        rows.extend(late.iter().cloned());
        growing.append(&mut rows, 5).unwrap();
        assert_eq!(growing.row_groups(), 1);
        assert_eq!(rows[..5], cpu_rows(10, 5)[..], "on disk: not moved");
        assert_eq!(file(&growing), closed(&growing, &rows));
        let back: Vec<CpuRow> = crate::reader::read_rows_from(
            {
                let mut f = tempfile::tempfile().unwrap();
                f.write_all(&file(&growing)).unwrap();
                f
            },
            std::path::Path::new("mem"),
            100,
        )
        .unwrap();
        let ts: Vec<i64> = back.iter().map(|r| r.ts_us).collect();
        let expected: Vec<i64> = (0..5).chain(10..15).map(|s| s * 1_000_000).collect();
        assert_eq!(ts, expected, "every row once, in time order");
    }

    #[test]
    fn an_hour_of_flushes_leaves_few_row_groups_large_ones_in_zstd() {
        let large = Arc::new(flush_properties(Table::Cpu, "h"));
        let small = Arc::new(small_group_properties(Table::Cpu, "h"));
        let mut growing = GrowingFile::new(Table::Cpu.schema(), &small, &large);
        let mut rows = Vec::new();
        let mut most = 0;
        for flush in 0..359 {
            rows.extend(cpu_rows(flush * 10, 10));
            let written = growing.rows();
            growing.append(&mut rows, written).unwrap();
            most = most.max(growing.row_groups());
        }
        assert_eq!(growing.rows(), 3590);
        assert!(most <= 9, "{most} row groups");
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&self::file(&growing)).unwrap();
        let reader =
            parquet::file::reader::SerializedFileReader::new(file.try_clone().unwrap()).unwrap();
        let groups = parquet::file::reader::FileReader::metadata(&reader).row_groups();
        // 359 = 256 + 64 + 32 + 4 + 2 + 1 flushes.
        let sizes: Vec<i64> = groups.iter().map(|g| g.num_rows()).collect();
        assert_eq!(sizes, [2560, 640, 320, 40, 20, 10]);
        let codecs: Vec<_> = groups.iter().map(|g| g.column(0).compression()).collect();
        use parquet::basic::Compression::{SNAPPY, ZSTD};
        assert!(matches!(
            codecs[..],
            [ZSTD(_), SNAPPY, SNAPPY, SNAPPY, SNAPPY, SNAPPY]
        ));
        let back: Vec<CpuRow> =
            crate::reader::read_rows_from(file, std::path::Path::new("mem"), 10_000).unwrap();
        let ts: Vec<i64> = back.iter().map(|r| r.ts_us).collect();
        let expected: Vec<i64> = (0..3590).map(|s| s * 1_000_000).collect();
        assert_eq!(ts, expected, "every row once");
    }

    #[test]
    fn list_columns_grow_too() {
        let props = Arc::new(flush_properties(Table::Ping, "h"));
        let row = |ts_us: i64, rtts_ms: Vec<f64>| PingRow {
            ts_us,
            target: "192.0.2.1".into(),
            addr: None,
            sent: 3,
            received: rtts_ms.len() as i64,
            rtt_min_ms: rtts_ms.first().copied(),
            rtt_avg_ms: None,
            rtt_max_ms: None,
            rtt_mdev_ms: None,
            error: rtts_ms.is_empty().then(|| "timeout".into()),
            rtts_ms,
        };
        let mut growing = GrowingFile::new(Table::Ping.schema(), &props, &props);
        let mut rows = vec![row(1, vec![1.5, 2.0]), row(2, vec![]), row(3, vec![])];
        growing.append(&mut rows, 0).unwrap();
        rows.push(row(4, vec![3.25]));
        growing.append(&mut rows, 3).unwrap();
        assert_eq!(growing.row_groups(), 2);
        assert_eq!(file(&growing), closed(&growing, &rows));
    }
}
