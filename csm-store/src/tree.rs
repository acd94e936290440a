//! One host's files of a time range: only the date partitions and hours that overlap it,
//! the 1-minute roll-up's hour where there is one for long ranges. Shared by the readers
//! of the tree (`csm-plot`, `csm report`), so that both pick the same files.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::layout::{self, MICROS_PER_HOUR};
use crate::Table;

/// Roll-ups are read for ranges longer than this; shorter ranges want every second.
pub const ROLLUP_ABOVE_US: i64 = 6 * MICROS_PER_HOUR;

/// One host's part of the data dir.
#[derive(Clone, Debug)]
pub struct DataTree {
    pub data_dir: PathBuf,
    pub host: String,
}

/// Every `host=` partition under any table of the data dir.
pub fn hosts_in(data_dir: &Path) -> Result<BTreeSet<String>, String> {
    let tables = fs::read_dir(data_dir)
        .map_err(|e| format!("cannot read --data-dir {}: {e}", data_dir.display()))?;
    let mut hosts = BTreeSet::new();
    for table in tables.flatten() {
        let Ok(entries) = fs::read_dir(table.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Some(host) = entry.file_name().to_string_lossy().strip_prefix("host=") {
                hosts.insert(host.to_string());
            }
        }
    }
    Ok(hosts)
}

/// `--host` if given; else the only host in the data dir; else this machine's name if it
/// has data; else a usage error naming the choices.
pub fn choose_host(data_dir: &Path, requested: Option<&str>) -> Result<String, String> {
    let hosts = hosts_in(data_dir)?;
    if let Some(host) = requested {
        return Ok(layout::sanitize_host(host));
    }
    if hosts.len() == 1 {
        return Ok(hosts.into_iter().next().unwrap_or_default());
    }
    let local = layout::sanitize_host(&layout::local_hostname());
    if hosts.is_empty() || hosts.contains(&local) {
        return Ok(local);
    }
    let names: Vec<_> = hosts.into_iter().collect();
    Err(format!(
        "{} holds several hosts ({}); pick one with --host",
        data_dir.display(),
        names.join(", ")
    ))
}

impl DataTree {
    fn table_dir(&self, table: Table) -> PathBuf {
        layout::table_host_dir(&self.data_dir, table, &self.host)
    }

    pub fn has_table(&self, table: Table) -> bool {
        self.table_dir(table).is_dir()
    }

    /// The files of each hour overlapping `[from_us, to_us]`, by hour since the epoch. The
    /// hour holding `to_us` itself counts: a counter row is stamped with the end of its
    /// interval, so the row ending exactly at `to_us` lives there.
    pub fn hour_files(
        &self,
        table: Table,
        from_us: i64,
        to_us: i64,
    ) -> BTreeMap<i64, Vec<PathBuf>> {
        let mut hours: BTreeMap<i64, Vec<PathBuf>> = BTreeMap::new();
        let first_hour = layout::hour_of(from_us);
        let last_hour = layout::hour_of(to_us);
        for date_dir in self.date_dirs(table, first_hour, last_hour) {
            let Ok(entries) = fs::read_dir(&date_dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(hour) = file_hour(&date_dir, &name) else {
                    continue;
                };
                if (first_hour..=last_hour).contains(&hour) {
                    hours.entry(hour).or_default().push(entry.path());
                }
            }
        }
        for files in hours.values_mut() {
            files.sort();
        }
        hours
    }

    /// `date=` folders whose day overlaps the hours, in order.
    fn date_dirs(&self, table: Table, first_hour: i64, last_hour: i64) -> Vec<PathBuf> {
        let dir = self.table_dir(table);
        let first_day = first_hour.div_euclid(24);
        let last_day = last_hour.div_euclid(24);
        (first_day..=last_day)
            .filter_map(|day| DateTime::<Utc>::from_timestamp(day * 86_400, 0))
            .map(|d| dir.join(format!("date={}", d.format("%Y-%m-%d"))))
            .filter(|d| d.is_dir())
            .collect()
    }

    /// Files of the range, taking the roll-up's hour where it exists (when `prefer_rollup`)
    /// and the raw table's otherwise, so that a month reads minutes while the current,
    /// not yet rolled-up hours still show.
    pub fn files_preferring(
        &self,
        raw: Table,
        rollup: Table,
        from_us: i64,
        to_us: i64,
        prefer_rollup: bool,
    ) -> Vec<(Table, PathBuf)> {
        let mut raw_hours = self.hour_files(raw, from_us, to_us);
        let mut chosen = Vec::new();
        if prefer_rollup {
            for (hour, files) in self.hour_files(rollup, from_us, to_us) {
                raw_hours.remove(&hour);
                chosen.extend(files.into_iter().map(|f| (rollup, f)));
            }
        }
        for files in raw_hours.into_values() {
            chosen.extend(files.into_iter().map(|f| (raw, f)));
        }
        chosen
    }
}

/// The hour of `HH.parquet` / `HH.N.parquet` in a `date=YYYY-MM-DD` folder; temporaries
/// (hidden, not ending in `.parquet`) and strangers give `None`.
fn file_hour(date_dir: &Path, name: &str) -> Option<i64> {
    if name.starts_with('.') || !name.ends_with(".parquet") {
        return None;
    }
    let hh: i64 = name.split('.').next()?.parse().ok()?;
    let date = date_dir.file_name()?.to_string_lossy();
    let day = chrono::NaiveDate::parse_from_str(date.strip_prefix("date=")?, "%Y-%m-%d").ok()?;
    let day_start = day
        .and_time(chrono::NaiveTime::MIN)
        .and_utc()
        .timestamp_micros();
    (0..24)
        .contains(&hh)
        .then(|| (day_start + hh * MICROS_PER_HOUR).div_euclid(MICROS_PER_HOUR))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"").unwrap();
    }

    #[test]
    fn rollup_hours_replace_raw_hours_and_raw_fills_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let tree = DataTree {
            data_dir: dir.path().to_path_buf(),
            host: "h".into(),
        };
        let day = dir.path().join("{t}/host=h/date=2026-11-25");
        let file = |table: &str, name: &str| {
            PathBuf::from(day.to_string_lossy().replace("{t}", table)).join(name)
        };
        for name in [
            "10.parquet",
            "11.parquet",
            "11.1.parquet",
            "12.parquet",
            ".12.parquet.tmp",
        ] {
            touch(&file("net", name));
        }
        touch(&file("net_1m", "10.parquet"));
        touch(&file("net_1m", "11.parquet"));
        let from = 1_795_564_800_000_000 + 10 * MICROS_PER_HOUR; // 2026-11-25T10:00Z
        let to = from + 3 * MICROS_PER_HOUR;
        let chosen = tree.files_preferring(Table::Net, Table::NetMinute, from, to, true);
        assert_eq!(
            chosen,
            vec![
                (Table::NetMinute, file("net_1m", "10.parquet")),
                (Table::NetMinute, file("net_1m", "11.parquet")),
                (Table::Net, file("net", "12.parquet")),
            ]
        );
        // Short ranges want every second: raw only, every part.
        let raw = tree.files_preferring(Table::Net, Table::NetMinute, from, to, false);
        assert_eq!(raw.len(), 4);
        assert!(raw.contains(&(Table::Net, file("net", "11.1.parquet"))));
    }

    #[test]
    fn file_hour_reads_parts_and_skips_temporaries() {
        let dir = Path::new("/d/net/host=h/date=2026-11-25");
        let day = 1_795_564_800_000_000 / MICROS_PER_HOUR; // 2026-11-25T00:00Z
        assert_eq!(file_hour(dir, "00.parquet"), Some(day));
        assert_eq!(file_hour(dir, "07.2.parquet"), Some(day + 7));
        assert_eq!(file_hour(dir, ".07.parquet.tmp"), None);
        assert_eq!(file_hour(dir, "24.parquet"), None);
        assert_eq!(file_hour(dir, "notes.txt"), None);
    }
}
