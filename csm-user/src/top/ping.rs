//! The ping targets' newest results, from the daemon's `ping` table (ping results live in
//! no map). Only the newest hour's file(s) are read, and only again when they changed;
//! links under the data dir are never followed (the store's reader opens files with
//! O_NOFOLLOW, and the folders are checked here).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use csm_store::layout::{sanitize_host, table_host_dir};
use csm_store::{read_rows, PingRow, Table};
use serde::Serialize;

/// One target's newest measurement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PingLine {
    pub target: String,
    pub addr: Option<String>,
    /// When the measurement started (µs since the epoch).
    pub ts_us: i64,
    /// Mean RTT of its replies; `None` when none came back.
    pub rtt_ms: Option<f64>,
    pub loss_pct: Option<f64>,
    pub error: Option<String>,
}

impl PingLine {
    fn of(row: &PingRow) -> PingLine {
        PingLine {
            target: row.target.clone(),
            addr: row.addr.clone(),
            ts_us: row.ts_us,
            rtt_ms: row.rtt_avg_ms,
            loss_pct: csm_store::stats::loss_pct(row.sent, row.received),
            error: row.error.clone(),
        }
    }
}

pub struct PingReader {
    host_dir: PathBuf,
    /// The files last read, with their modification time and size.
    read: Vec<(PathBuf, SystemTime, u64)>,
    lines: Vec<PingLine>,
}

impl PingReader {
    pub fn new(data_dir: &Path, host: &str) -> Self {
        PingReader {
            host_dir: table_host_dir(data_dir, Table::Ping, &sanitize_host(host)),
            read: Vec::new(),
            lines: Vec::new(),
        }
    }

    /// Each target's newest row, in target order; empty when there is no ping table.
    pub fn latest(&mut self) -> Vec<PingLine> {
        let files = newest_hour_files(&self.host_dir);
        if files != self.read {
            self.lines = newest_per_target(&files);
            self.read = files;
        }
        self.lines.clone()
    }
}

/// The parts of the newest hour of the newest date, with their stamps.
fn newest_hour_files(host_dir: &Path) -> Vec<(PathBuf, SystemTime, u64)> {
    let Some(date_dir) = newest_entry(host_dir, |name, meta| {
        meta.is_dir() && name.starts_with("date=")
    }) else {
        return Vec::new();
    };
    let is_part = |name: &str, meta: &fs::Metadata| {
        meta.is_file() && !name.starts_with('.') && name.ends_with(".parquet")
    };
    let Some(newest) = newest_entry(&date_dir, is_part) else {
        return Vec::new();
    };
    let hour: String = newest
        .file_name()
        .map(|n| n.to_string_lossy().chars().take(2).collect())
        .unwrap_or_default();
    csm_store::layout::hour_parts(&date_dir, &hour)
        .into_iter()
        .filter_map(|path| {
            let meta = fs::symlink_metadata(&path).ok()?;
            let name = path.file_name()?.to_string_lossy().into_owned();
            let modified = meta.modified().ok()?;
            is_part(&name, &meta).then_some((path, modified, meta.len()))
        })
        .collect()
}

/// The entry of `dir` with the greatest name among those `wanted` (by its own, not a
/// followed link's, metadata); `None` when `dir` is a link or missing.
fn newest_entry(dir: &Path, wanted: impl Fn(&str, &fs::Metadata) -> bool) -> Option<PathBuf> {
    if !fs::symlink_metadata(dir).ok()?.is_dir() {
        return None;
    }
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = fs::symlink_metadata(entry.path()).ok()?;
            wanted(&name, &meta).then_some((name, entry.path()))
        })
        .max()
        .map(|(_, path)| path)
}

fn newest_per_target(files: &[(PathBuf, SystemTime, u64)]) -> Vec<PingLine> {
    let mut newest: BTreeMap<String, PingRow> = BTreeMap::new();
    for (path, _, _) in files {
        let Ok(rows) = read_rows::<PingRow>(path) else {
            continue; // being replaced, or not csm's: the next refresh reads it again
        };
        for row in rows {
            match newest.get(&row.target) {
                Some(kept) if kept.ts_us >= row.ts_us => {}
                _ => {
                    newest.insert(row.target.clone(), row);
                }
            }
        }
    }
    newest.values().map(PingLine::of).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use csm_store::layout::hour_location;

    fn row(target: &str, ts_us: i64, sent: i64, received: i64) -> PingRow {
        PingRow {
            ts_us,
            target: target.into(),
            addr: Some("192.0.2.1".into()),
            sent,
            received,
            rtt_min_ms: None,
            rtt_avg_ms: (received > 0).then_some(1.5),
            rtt_max_ms: None,
            rtt_mdev_ms: None,
            rtts_ms: vec![1.5; received as usize],
            error: None,
        }
    }

    /// Writes rows through the daemon's own writer, into `data`'s host `h`.
    fn write(data: &Path, rows: Vec<PingRow>) {
        let opts = csm_store::StoreOptions::new(data, "h");
        let mut writer = csm_store::TableWriter::<PingRow>::new(&opts);
        writer.extend(rows);
        assert!(writer.flush(0).is_empty());
    }

    #[test]
    fn the_newest_row_of_each_target_in_the_newest_hour() {
        let data = tempfile::tempdir().unwrap();
        let t = 490_000 * 3_600_000_000;
        write(
            data.path(),
            vec![
                row("a", t - 10, 10, 10),
                row("a", t + 1, 10, 10),
                row("a", t + 2, 10, 5),
                row("b", t + 1, 4, 0),
            ],
        );
        let mut reader = PingReader::new(data.path(), "h");
        let lines = reader.latest();
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0].target.as_str(), lines[0].ts_us), ("a", t + 2));
        assert_eq!(lines[0].loss_pct, Some(50.0));
        assert_eq!((lines[1].rtt_ms, lines[1].loss_pct), (None, Some(100.0)));
    }

    #[test]
    fn a_planted_link_is_not_followed_and_no_table_is_no_targets() {
        let data = tempfile::tempdir().unwrap();
        assert!(PingReader::new(data.path(), "h").latest().is_empty());
        let elsewhere = tempfile::tempdir().unwrap();
        write(elsewhere.path(), vec![row("secret", 1, 1, 1)]);
        let (dir, _) = hour_location(&table_host_dir(elsewhere.path(), Table::Ping, "h"), 0);
        let host_dir = table_host_dir(data.path(), Table::Ping, "h");
        fs::create_dir_all(&host_dir).unwrap();
        std::os::unix::fs::symlink(&dir, host_dir.join(dir.file_name().unwrap())).unwrap();
        assert!(PingReader::new(data.path(), "h").latest().is_empty());
    }
}
