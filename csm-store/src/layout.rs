//! Where each row goes: `<data-dir>/<table>/host=<host>/date=<YYYY-MM-DD>/<HH>.parquet`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::table::Table;

pub use crate::time::{hour_of, MICROS_PER_HOUR};

/// Suffix of a temporary being written; it must not end in `.parquet`, or readers
/// globbing `**/*.parquet` (which matches hidden files too) would open it half-written.
pub const TEMP_SUFFIX: &str = ".parquet.tmp";

/// Host names become a partition value: keep them to characters every engine and file
/// system takes as they are.
pub fn sanitize_host(host: &str) -> String {
    let clean: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "unknown".to_string()
    } else {
        clean
    }
}

/// This machine's host name (the `host` partition's default, before [`sanitize_host`]).
pub fn local_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// `<data-dir>/<table>/host=<host>`
pub fn table_host_dir(data_dir: &Path, table: Table, host: &str) -> PathBuf {
    data_dir.join(table.name()).join(format!("host={host}"))
}

/// `(date folder, "HH")` of an hour.
pub fn hour_location(table_host_dir: &Path, hour: i64) -> (PathBuf, String) {
    let start = DateTime::<Utc>::from_timestamp(hour * 3600, 0).unwrap_or_default();
    let dir = table_host_dir.join(format!("date={}", start.format("%Y-%m-%d")));
    (dir, start.format("%H").to_string())
}

/// The first free part name of an hour: `HH.parquet`, then `HH.1.parquet`, `HH.2.parquet`…
/// A restart inside an hour writes a new part beside the earlier run's file.
///
/// Only a name the folder is known not to hold is free: when the folder cannot be looked
/// at now (an I/O error, a file where the folder should be), an earlier run's
/// `HH.parquet` may be there, and the part would replace it once the folder is back. The
/// part is then numbered by the clock's seconds, a number no earlier part of the hour
/// has taken (parts count up from 1, one per restart).
pub fn free_part_path(dir: &Path, hh: &str) -> PathBuf {
    let candidates = std::iter::once(dir.join(format!("{hh}.parquet")))
        .chain((1..).map(|n| dir.join(format!("{hh}.{n}.parquet"))));
    for path in candidates {
        match path.symlink_metadata() {
            Ok(_) => continue,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return path,
            Err(_) => break,
        }
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(u32::MAX as u64, |d| d.as_secs());
    dir.join(format!("{hh}.{secs}.parquet"))
}

/// Every visible part of one hour: `HH.parquet`, `HH.1.parquet`, … (in name order).
pub fn hour_parts(dir: &Path, hh: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    hour_part_names(entries.flatten().map(|e| e.file_name()), hh)
        .into_iter()
        .map(|name| dir.join(name))
        .collect()
}

/// The names among `names` that are parts of the hour `hh`, in part order.
pub fn hour_part_names(
    names: impl IntoIterator<Item = std::ffi::OsString>,
    hh: &str,
) -> Vec<std::ffi::OsString> {
    let mut parts: Vec<(u32, std::ffi::OsString)> = names
        .into_iter()
        .filter_map(|os| {
            let name = os.to_str()?;
            let rest = name.strip_prefix(hh)?.strip_suffix(".parquet")?;
            let n = match rest {
                "" => 0,
                _ => rest.strip_prefix('.')?.parse().ok()?,
            };
            Some((n, os))
        })
        .collect();
    parts.sort();
    parts.into_iter().map(|(_, name)| name).collect()
}

/// End (next midnight, µs since the epoch) of a `date=YYYY-MM-DD` partition folder.
pub fn date_partition_end_us(name: &str) -> Option<i64> {
    let date = name.strip_prefix("date=")?;
    let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let next = day.succ_opt()?.and_hms_opt(0, 0, 0)?;
    Some(next.and_utc().timestamp_micros())
}

/// The temporary a part is written to before the rename: hidden, not ending in `.parquet`.
pub fn temp_path(part: &Path) -> PathBuf {
    let name = part
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".parquet").unwrap_or(&name);
    part.with_file_name(format!(".{stem}{TEMP_SUFFIX}"))
}

pub fn is_temp_file(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}

/// The machine a benchmark ran on (CPU model, cores, kernel), named beside every absolute
/// figure; the benchmarks of every crate print it.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_string();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cores} cores, Linux {}", kernel.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_location_is_utc_partitioned() {
        // 2026-11-25T23:59:59Z
        let ts = 1_795_651_199_000_000;
        let (dir, hh) = hour_location(Path::new("/d/cpu/host=h"), hour_of(ts));
        assert_eq!(dir, Path::new("/d/cpu/host=h/date=2026-11-25"));
        assert_eq!(hh, "23");
        let (dir, hh) = hour_location(Path::new("/d"), hour_of(ts + 1_000_000));
        assert_eq!(dir, Path::new("/d/date=2026-11-26"));
        assert_eq!(hh, "00");
    }

    #[test]
    fn temporaries_never_end_in_parquet() {
        let tmp = temp_path(Path::new("/d/07.parquet"));
        assert_eq!(tmp, Path::new("/d/.07.parquet.tmp"));
        assert!(!tmp.to_string_lossy().ends_with(".parquet"));
        assert!(is_temp_file(".07.2.parquet.tmp"));
        assert!(!is_temp_file("07.parquet"));
    }

    #[test]
    fn free_part_path_skips_existing_parts() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            free_part_path(dir.path(), "05"),
            dir.path().join("05.parquet")
        );
        std::fs::write(dir.path().join("05.parquet"), b"x").unwrap();
        std::fs::write(dir.path().join("05.1.parquet"), b"x").unwrap();
        assert_eq!(
            free_part_path(dir.path(), "05"),
            dir.path().join("05.2.parquet")
        );
    }

    #[test]
    fn a_folder_that_cannot_be_looked_at_gets_a_part_no_run_has_taken() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the date folder should be: every lookup fails with ENOTDIR.
        let not_a_dir = dir.path().join("date=2026-11-29");
        std::fs::write(&not_a_dir, b"x").unwrap();
        let part = free_part_path(&not_a_dir, "05");
        let name = part.file_name().unwrap().to_str().unwrap().to_owned();
        assert_ne!(name, "05.parquet", "would replace an earlier run's file");
        let number: u64 = name
            .strip_prefix("05.")
            .and_then(|rest| rest.strip_suffix(".parquet"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{name} is not a numbered part"));
        assert!(number > 1_700_000_000, "{name}: numbered by the clock");
        assert_eq!(
            hour_part_names([std::ffi::OsString::from(&name)], "05"),
            [std::ffi::OsString::from(&name)],
            "readers list it as a part of the hour"
        );
    }

    #[test]
    fn a_link_counts_as_a_taken_name() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("05.parquet")).unwrap();
        assert_eq!(
            free_part_path(dir.path(), "05"),
            dir.path().join("05.1.parquet")
        );
    }

    #[test]
    fn hour_parts_lists_only_that_hours_parts_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "05.parquet",
            "05.2.parquet",
            "05.10.parquet",
            "15.parquet",
            ".05.1.parquet.tmp",
            "05.x.parquet",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let names: Vec<_> = hour_parts(dir.path(), "05")
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["05.parquet", "05.2.parquet", "05.10.parquet"]);
    }

    #[test]
    fn date_partitions_end_at_next_midnight() {
        assert_eq!(
            date_partition_end_us("date=1970-01-01"),
            Some(86_400_000_000)
        );
        assert_eq!(date_partition_end_us("date=bad"), None);
        assert_eq!(date_partition_end_us("05.parquet"), None);
    }

    #[test]
    fn host_names_are_sanitized() {
        assert_eq!(sanitize_host("web-1.example.org"), "web-1.example.org");
        assert_eq!(sanitize_host("a/b=c"), "a_b_c");
        assert_eq!(sanitize_host(""), "unknown");
    }
}
