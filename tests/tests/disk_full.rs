//! The data dir's file system fills up (a small tmpfs): the daemon keeps collecting in
//! memory, logs the condition once, no visible file is ever corrupt, and once space
//! returns everything collected meanwhile is written: the rows have no hole.
//!
//! Needs root (eBPF, mount); `cargo test --release -p csm-tests --test disk_full`.

use std::fs::File;
use std::io::Write;
use std::thread::sleep;
use std::time::Duration;

use csm_tests::daemon_support::*;

#[test]
fn full_disk_keeps_collecting_and_writes_everything_later() {
    csm_tests::require_root();
    let fs = Tmpfs::mount("4m").expect("mount a tmpfs");
    let data = fs.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let _pins = PinGuard {
        data_dir: data.canonicalize().unwrap(),
    };
    let mut daemon = Daemon::start(&data, &["--interval", "1s", "--flush-interval", "1s"]);
    sleep(Duration::from_secs(3));

    // Fill the file system to the last byte.
    let filler = fs.path().join("filler");
    let mut file = File::create(&filler).unwrap();
    let chunk = vec![0u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    drop(file);
    let full_at = now_us();
    sleep(Duration::from_secs(6));
    assert!(daemon.alive(), "the daemon must survive a full disk");
    for path in parquet_files(&data).0 {
        read_fully(&path).expect("no visible file is corrupt while the disk is full");
    }

    std::fs::remove_file(&filler).unwrap();
    let freed_at = now_us();
    sleep(Duration::from_secs(3));
    let status = daemon.stop();
    assert!(
        status.success(),
        "clean stop after the disk came back: {status}"
    );

    let (files, temps) = parquet_files(&data);
    for path in &files {
        read_fully(path).unwrap();
    }
    assert!(temps.is_empty(), "temporaries left: {temps:?}");

    // No hole: every interval from the first row to the last has rows (the daemon's own
    // sampling charges root every interval), including those collected while full.
    let rows = cpu_rows(&data);
    let mut stamps: Vec<i64> = rows.iter().map(|r| r.ts_us).collect();
    stamps.dedup();
    let worst_gap = stamps.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(
        worst_gap <= 1_600_000,
        "a hole of {worst_gap} µs in the cpu rows"
    );
    let during = stamps
        .iter()
        .filter(|&&t| t > full_at + 1_000_000 && t < freed_at)
        .count();
    assert!(
        during >= 4,
        "rows collected while full were written later ({during})"
    );

    let events = events(&data);
    let errors: Vec<_> = events
        .iter()
        .filter(|(_, e, _)| e == "write_error")
        .collect();
    assert_eq!(errors.len(), 1, "one write_error per condition: {errors:?}");
    assert!(errors[0].2.starts_with("disk full"), "{errors:?}");
    assert!(events.iter().any(|(_, e, _)| e == "write_ok"));
    eprintln!(
        "disk full for {:.1} s: {} rows written afterwards, worst gap {:.2} s",
        (freed_at - full_at) as f64 / 1e6,
        during,
        worst_gap as f64 / 1e6
    );
}
