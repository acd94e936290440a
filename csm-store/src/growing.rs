//! The current hour's file as it grows: its bytes so far kept in memory, one new row group
//! encoded per flush, and a footer for the row groups so far written after them. A flush
//! then costs the encoding of its own rows (plus copying bytes already encoded), not a
//! re-encoding of the whole hour; the file on disk is still replaced whole and is a
//! complete Parquet file at every moment.
//!
//! The footer is the one [`ArrowWriter::close`] would write at that point (same schema,
//! row groups, key-value metadata, `created_by`, version; no page index, as the properties
//! disable it): built with [`ParquetMetaDataWriter`] from the writer's flushed row groups,
//! without finishing the writer. Tested byte for byte below.

use std::io::{self, Write};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::{FileMetaData, ParquetMetaDataBuilder, ParquetMetaDataWriter};
use parquet::file::properties::WriterProperties;

use crate::table::Row;
use crate::writer::writer_options;

/// An hour's file being built in memory, one row group per [`append`](Self::append).
pub(crate) struct GrowingFile {
    writer: ArrowWriter<Vec<u8>>,
    props: Arc<WriterProperties>,
    /// Rows encoded so far (the first `rows` of the hour's buffer, in that order).
    rows: usize,
}

impl GrowingFile {
    pub(crate) fn new(schema: SchemaRef, props: &Arc<WriterProperties>) -> io::Result<Self> {
        let writer = ArrowWriter::try_new_with_options(Vec::new(), schema, writer_options(props))
            .map_err(io::Error::other)?;
        Ok(GrowingFile {
            writer,
            props: props.clone(),
            rows: 0,
        })
    }

    /// Rows encoded so far.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes held: the file so far (its allocation) and the writer's row-group metadata
    /// are what this costs in memory.
    pub(crate) fn bytes(&self) -> usize {
        self.writer.inner().len()
    }

    /// Encodes `rows` as one new row group after the ones so far.
    pub(crate) fn append<R: Row>(&mut self, rows: &[R]) -> io::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let batch = R::to_batch(rows).map_err(io::Error::other)?;
        self.writer.write(&batch).map_err(io::Error::other)?;
        // Closes the row group; `sync` moves the writer's buffered bytes into the Vec.
        self.writer.flush().map_err(io::Error::other)?;
        self.writer.sync()?;
        self.rows += rows.len();
        Ok(())
    }

    /// Writes the complete file so far (the row groups, then their footer) to `out`.
    pub(crate) fn write_file(&self, out: &mut impl Write) -> io::Result<()> {
        let footer = self.footer()?;
        out.write_all(self.writer.inner())?;
        out.write_all(&footer)
    }

    /// Footer metadata, its length and the closing magic, as the writer's `close` would
    /// write them after the row groups so far.
    fn footer(&self) -> io::Result<Vec<u8>> {
        let row_groups = self.writer.flushed_row_groups().to_vec();
        let schema = row_groups
            .first()
            .map(|group| group.schema_descr_ptr())
            .ok_or_else(|| io::Error::other("no row group encoded yet"))?;
        let props = &self.props;
        let file_metadata = FileMetaData::new(
            props.writer_version().as_num(),
            row_groups.iter().map(|group| group.num_rows()).sum(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Source;
    use crate::tables::{CpuRow, PingRow};
    use crate::writer::{flush_properties, writer_options};
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

    /// The same row groups through `ArrowWriter::close`: the reference file.
    fn closed<R: Row>(groups: &[&[R]], props: &WriterProperties) -> Vec<u8> {
        let mut writer =
            ArrowWriter::try_new_with_options(Vec::new(), R::TABLE.schema(), writer_options(props))
                .unwrap();
        for rows in groups {
            writer.write(&R::to_batch(rows).unwrap()).unwrap();
            writer.flush().unwrap();
        }
        writer.into_inner().unwrap()
    }

    #[test]
    fn each_file_so_far_is_byte_for_byte_what_the_writer_would_close() {
        let props = Arc::new(flush_properties(Table::Cpu, "h"));
        let groups = [cpu_rows(0, 10), cpu_rows(10, 1), cpu_rows(11, 25)];
        let mut growing = GrowingFile::new(Table::Cpu.schema(), &props).unwrap();
        for n in 1..=groups.len() {
            growing.append(&groups[n - 1]).unwrap();
            let mut file = Vec::new();
            growing.write_file(&mut file).unwrap();
            let reference: Vec<&[CpuRow]> = groups[..n].iter().map(Vec::as_slice).collect();
            assert_eq!(file, closed(&reference, &props), "after {n} row groups");
        }
        assert_eq!(growing.rows(), 36);
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
        let a = vec![row(1, vec![1.5, 2.0]), row(2, vec![])];
        let b = vec![row(3, vec![3.25])];
        let mut growing = GrowingFile::new(Table::Ping.schema(), &props).unwrap();
        growing.append(&a).unwrap();
        growing.append(&b).unwrap();
        let mut file = Vec::new();
        growing.write_file(&mut file).unwrap();
        assert_eq!(file, closed(&[&a[..], &b[..]], &props));
    }
}
