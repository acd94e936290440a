//! Parquet files crafted against readers, for the tests and the security bench: each a
//! few hundred kilobytes on disk, each decoding to far more than csm ever writes, placed
//! where csm's own files go. Not used by csm itself.
//!
//! - [`row_bomb`]: a `net` file whose one row group decodes to millions of rows while
//!   its footer claims a thousand;
//! - [`dictionary_bomb`]: an `events` file whose `detail` column is a dictionary of a few
//!   long strings referenced by every row (each row expands to the whole string);
//! - [`honest_net`]: a file of distinct `net` rows, as a flood makes the daemon write:
//!   many of them together bound what a command may hold; [`honest_net_in_order`]: the
//!   same in time order;
//! - [`event_flood`]: an hour of `events` rows a flood makes the daemon write.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, DictionaryArray, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int32Type, Schema};
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{
    FileMetaData, ParquetMetaData, ParquetMetaDataBuilder, ParquetMetaDataReader,
    ParquetMetaDataWriter,
};
use parquet::file::properties::WriterProperties;

use crate::events::Source;
use crate::table::{Row, Table};
use crate::tables::NetRow;
use crate::writer::writer_properties;

/// Where part `part` of `table`'s hour `hour` of host `host` goes under `data_dir`
/// (`HH.parquet`, then `HH.1.parquet`…), its folder created: where a planted file hurts.
pub fn hour_part(
    data_dir: &Path,
    table: Table,
    host: &str,
    hour: i64,
    part: usize,
) -> std::path::PathBuf {
    let dir = crate::layout::table_host_dir(data_dir, table, host);
    let (dir, hh) = crate::layout::hour_location(&dir, hour);
    let _ = std::fs::create_dir_all(&dir);
    match part {
        0 => dir.join(format!("{hh}.parquet")),
        n => dir.join(format!("{hh}.{n}.parquet")),
    }
}

/// Rows encoded at a time while writing a bomb.
const CHUNK: usize = 1 << 16;

/// `rows` identical `net` rows of the hour starting at `hour_us` in one row group (the
/// file stays kilobytes), then a footer claiming `claimed` rows for the row group and the
/// file (when `group_lies`; else the file alone claims them and the row group tells the
/// truth).
pub fn row_bomb(
    path: &Path,
    hour_us: i64,
    rows: usize,
    claimed: i64,
    group_lies: bool,
) -> io::Result<()> {
    let row = NetRow {
        ts_us: hour_us + 1_000_000,
        dur_ms: 1000,
        iface: "eth0".into(),
        ifindex: 2,
        netns: None,
        rx_bytes: 1,
        tx_bytes: 1,
        rx_packets: 1,
        tx_packets: 1,
        source: Source::Ebpf,
        ..Default::default()
    };
    let chunk = NetRow::to_batch(&vec![row; CHUNK]).map_err(io::Error::other)?;
    let props = writer_properties(Table::Net, "bomb")
        .into_builder()
        .set_max_row_group_row_count(Some(rows.max(1)))
        .build();
    let mut bytes = write_batches(Table::Net.schema(), props, false, rows, |n| {
        Ok(chunk.slice(0, n))
    })?;
    bytes = with_claimed_rows(&bytes, claimed, group_lies)?;
    File::create(path)?.write_all(&bytes)
}

/// `rows` `events` rows whose `detail` is one of four `len`-byte strings, dictionary
/// encoded: the file holds each string once, a reader that expands the dictionary holds
/// `rows × len` bytes. The Arrow schema is left out of the file, as a writer other than
/// csm's would, so that readers see a plain text column.
pub fn dictionary_bomb(path: &Path, hour_us: i64, rows: usize, len: usize) -> io::Result<()> {
    let schema = Table::Events.schema();
    let details: Vec<String> = (0..4u8)
        .map(|i| char::from(b'a' + i).to_string().repeat(len))
        .collect();
    let values: ArrayRef = Arc::new(StringArray::from(details));
    let dict_schema = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "detail" | "event" => Field::new(
                    f.name(),
                    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                    f.is_nullable(),
                ),
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    ));
    let event_values: ArrayRef = Arc::new(StringArray::from(vec!["bomb"]));
    let props = writer_properties(Table::Events, "bomb")
        .into_builder()
        .set_dictionary_page_size_limit(64 << 20)
        .build();
    let bytes = write_batches(dict_schema.clone(), props, true, rows, |n| {
        let ts = arrow::array::TimestampMicrosecondArray::from(vec![hour_us + 1; n])
            .with_timezone("UTC");
        let keys = Int32Array::from_iter_values((0..n).map(|i| (i % 4) as i32));
        let detail = DictionaryArray::<Int32Type>::try_new(keys, values.clone())
            .map_err(io::Error::other)?;
        let event = DictionaryArray::<Int32Type>::try_new(
            Int32Array::from(vec![0; n]),
            event_values.clone(),
        )
        .map_err(io::Error::other)?;
        RecordBatch::try_new(
            dict_schema.clone(),
            vec![Arc::new(ts), Arc::new(event), Arc::new(detail)],
        )
        .map_err(io::Error::other)
    })?;
    File::create(path)?.write_all(&bytes)
}

/// `rows` distinct `net` rows of the hour starting at `hour_us` over `interfaces`
/// interfaces: row `i` (of the file) is interface `f<i % interfaces>` with `i` bytes in and
/// `2i` out, written as csm writes a part. Their times go round the hour every 3,590 rows:
/// the rows are not in time order.
pub fn honest_net(path: &Path, hour_us: i64, rows: usize, interfaces: usize) -> io::Result<()> {
    net_rows(path, rows, interfaces, |i| {
        hour_us + 1_000_000 + (i as i64 % 3_590) * 1_000_000
    })
}

/// [`honest_net`] in time order, as the daemon writes a part: the rows end 999 ms into
/// each second from `from_us` to `from_us` + `seconds` s, evenly spread (so they lie
/// within that span).
pub fn honest_net_in_order(
    path: &Path,
    from_us: i64,
    seconds: usize,
    rows: usize,
    interfaces: usize,
) -> io::Result<()> {
    net_rows(path, rows, interfaces, |i| {
        from_us + (i * seconds / rows.max(1)) as i64 * 1_000_000 + 999_000
    })
}

fn net_rows(
    path: &Path,
    rows: usize,
    interfaces: usize,
    ts_us: impl Fn(usize) -> i64,
) -> io::Result<()> {
    let props = writer_properties(Table::Net, "bomb");
    let mut written = 0;
    let bytes = write_batches(Table::Net.schema(), props, false, rows, |n| {
        let first = written;
        written += n;
        let rows: Vec<NetRow> = (first..first + n)
            .map(|i| NetRow {
                ts_us: ts_us(i),
                dur_ms: 1000,
                iface: format!("f{}", i % interfaces),
                ifindex: (i % interfaces) as i64 + 10,
                netns: Some(4_026_532_000),
                rx_bytes: i as i64,
                tx_bytes: 2 * i as i64,
                rx_packets: 1,
                tx_packets: 1,
                source: Source::Ebpf,
                ..Default::default()
            })
            .collect();
        NetRow::to_batch(&rows).map_err(io::Error::other)
    })?;
    File::create(path)?.write_all(&bytes)
}

/// An hour of a flood's `events` starting at `hour_us`, `rows` rows in time order, as
/// the daemon writes them: a `start` at second 0, an alert `flood` about `uid=1000`
/// firing at second 10 (since second 9) and resolved at second 20, a `stop` at second
/// 3,599, and between them `net_folded` rows (one per row left, spread over the hour).
pub fn event_flood(path: &Path, hour_us: i64, rows: usize) -> io::Result<()> {
    use crate::events::{AlertEvent, Event};
    use crate::tables::EventRow;
    let second = |s: i64| hour_us + s * 1_000_000;
    let alert = |firing| {
        Event::Alert(AlertEvent {
            name: "flood".into(),
            firing,
            subject: "uid=1000".into(),
            value: 1.0,
            since_us: second(9),
        })
    };
    let marks = [
        (0, Event::Start("csm flood".into())),
        (1, alert(true)),
        (2, alert(false)),
        (rows.saturating_sub(1), Event::Stop("SIGTERM".into())),
    ];
    let at_second = [0, 10, 20, 3_599];
    // Fast to write (the daemon's final level takes minutes over a million rows).
    let props = writer_properties(Table::Events, "bomb")
        .into_builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).map_err(io::Error::other)?,
        ))
        .build();
    let mut written = 0;
    let bytes = write_batches(Table::Events.schema(), props, false, rows, |n| {
        let first = written;
        written += n;
        let rows: Vec<EventRow> = (first..first + n)
            .map(|i| match marks.iter().position(|(at, _)| *at == i) {
                Some(mark) => EventRow::new(second(at_second[mark]), &marks[mark].1),
                // Rows 3.. between seconds 20 and 3,599, in order.
                None => EventRow::new(
                    second(20) + (i as i64) * (3_579 * 1_000_000 / rows as i64),
                    &Event::NetFolded {
                        uid: 1000 + (i % 7) as i64,
                        ifaces: 4096,
                        bytes: i as i64,
                    },
                ),
            })
            .collect();
        EventRow::to_batch(&rows).map_err(io::Error::other)
    })?;
    File::create(path)?.write_all(&bytes)
}

/// `rows` written as csm writes a part of their table.
pub fn honest<R: Row>(path: &Path, rows: &[R]) -> io::Result<()> {
    let props = writer_properties(R::TABLE, "bomb");
    let mut at = 0;
    let bytes = write_batches(R::TABLE.schema(), props, false, rows.len(), |n| {
        at += n;
        R::to_batch(&rows[at - n..at]).map_err(io::Error::other)
    })?;
    File::create(path)?.write_all(&bytes)
}

/// A Parquet file of `rows` rows made by `chunk(n)` a chunk at a time.
fn write_batches(
    schema: arrow::datatypes::SchemaRef,
    props: WriterProperties,
    skip_arrow_metadata: bool,
    rows: usize,
    mut chunk: impl FnMut(usize) -> io::Result<RecordBatch>,
) -> io::Result<Vec<u8>> {
    let options = ArrowWriterOptions::new()
        .with_properties(props)
        .with_skip_arrow_metadata(skip_arrow_metadata);
    let mut writer =
        ArrowWriter::try_new_with_options(Vec::new(), schema, options).map_err(io::Error::other)?;
    let mut left = rows;
    while left > 0 {
        let n = left.min(CHUNK);
        writer.write(&chunk(n)?).map_err(io::Error::other)?;
        left -= n;
    }
    writer.into_inner().map_err(io::Error::other)
}

/// The file `bytes` with a footer claiming `claimed` rows for the file and, when
/// `group_lies`, for each row group.
fn with_claimed_rows(bytes: &[u8], claimed: i64, group_lies: bool) -> io::Result<Vec<u8>> {
    let bytes_buf = bytes::Bytes::copy_from_slice(bytes);
    let metadata: ParquetMetaData = ParquetMetaDataReader::new()
        .parse_and_finish(&bytes_buf)
        .map_err(io::Error::other)?;
    let footer_len = footer_length(bytes)?;
    let old = metadata.file_metadata();
    let file_metadata = FileMetaData::new(
        old.version(),
        claimed,
        old.created_by().map(str::to_string),
        old.key_value_metadata().cloned(),
        old.schema_descr_ptr(),
        None,
    );
    let groups = metadata
        .row_groups()
        .iter()
        .map(|group| {
            let rows = if group_lies {
                claimed
            } else {
                group.num_rows()
            };
            group.clone().into_builder().set_num_rows(rows).build()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(io::Error::other)?;
    let metadata = ParquetMetaDataBuilder::new(file_metadata)
        .set_row_groups(groups)
        .build();
    let mut out = bytes[..bytes.len() - footer_len].to_vec();
    ParquetMetaDataWriter::new(&mut out, &metadata)
        .finish()
        .map_err(io::Error::other)?;
    Ok(out)
}

/// Bytes of the footer: metadata, its length (4 bytes) and the magic (4 bytes).
fn footer_length(bytes: &[u8]) -> io::Result<usize> {
    let mut tail = [0u8; 8];
    (&bytes[bytes.len().saturating_sub(8)..]).read_exact(&mut tail)?;
    let len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as usize;
    Ok(len + 8)
}
