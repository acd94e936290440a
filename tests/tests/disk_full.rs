//! The data dir's file system fills up (a small tmpfs): the daemon keeps collecting in
//! memory, logs the condition once, no visible file is ever corrupt, and once space
//! returns everything collected meanwhile is written: a test user who burns CPU through
//! it all has a row in every interval, and their sum is what the kernel charged.
//!
//! Needs root (eBPF, mount); `cargo test --release -p csm-tests --test disk_full`.

use std::fs::File;
use std::io::Write;
use std::thread::sleep;
use std::time::Duration;

use csm::store::{CpuRow, Event};
use csm_tests::{now_us, Daemon, DataDir, Tmpfs};

#[test]
fn full_disk_keeps_collecting_and_writes_everything_later() {
    csm_tests::require_root();
    let fs = Tmpfs::mount("4m").expect("mount a tmpfs");
    let data = DataDir::create_in(fs.path());
    let burner = csm_tests::TestUser::create("f");
    let mut daemon = Daemon::killable(&data)
        .args(["--interval", "1s", "--flush-interval", "1s"])
        .spawn();
    sleep(Duration::from_millis(1500));
    // A busy loop, one process (no forks): its wait4 CPU time is the ground truth.
    let burn = burner
        .shell("while :; do :; done")
        .spawn()
        .expect("start the burn");
    sleep(Duration::from_millis(1500));

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
    data.read_every_file()
        .expect("no visible file is corrupt while the disk is full");

    std::fs::remove_file(&filler).unwrap();
    let freed_at = now_us();
    sleep(Duration::from_secs(3));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(burn.id() as i32, libc::SIGKILL) };
    let (_, burn_ns) = csm_tests::wait_cpu_ns(burn);
    // Let the interval holding the end of the burn close.
    sleep(Duration::from_millis(1500));
    // A clean stop after the disk came back (exit status 0).
    daemon.stop();

    data.read_every_file().unwrap();
    let temps = data.files().temporaries;
    assert!(temps.is_empty(), "temporaries left: {temps:?}");

    // No hole: the burner has a row in every interval from its first to its last,
    // including those collected while the disk was full, and together they hold all the
    // CPU time the kernel charged it.
    let rows: Vec<_> = data
        .rows::<CpuRow>()
        .into_iter()
        .filter(|r| r.uid == burner.uid as i64)
        .collect();
    let stamps: Vec<i64> = rows.iter().map(|r| r.ts_us).collect();
    let worst_gap = stamps.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(
        worst_gap <= 1_600_000,
        "a hole of {worst_gap} µs in the burner's cpu rows: {stamps:?}"
    );
    let burn_csm: i64 = rows.iter().map(|r| r.cpu_ns).sum();
    let off = (burn_csm - burn_ns as i64).abs() as f64 / burn_ns as f64;
    assert!(
        off < 0.02,
        "burner: csm {burn_csm} ns vs kernel {burn_ns} ns ({:.2} % off)",
        off * 100.0
    );
    let during = stamps
        .iter()
        .filter(|&&t| t > full_at + 1_000_000 && t < freed_at)
        .count();
    assert!(
        during >= 4,
        "rows collected while full were written later ({during})"
    );

    let events: Vec<Event> = data.events().into_iter().map(|(_, e)| e).collect();
    let errors: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            Event::WriteError(condition) => Some(condition),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 1, "one write_error per condition: {errors:?}");
    assert!(errors[0].starts_with("disk full"), "{errors:?}");
    assert!(events.iter().any(|e| matches!(e, Event::WriteOk(_))));
    eprintln!(
        "disk full for {:.1} s: {} rows written afterwards, worst gap {:.2} s, burner csm {:.4} s vs kernel {:.4} s",
        (freed_at - full_at) as f64 / 1e6,
        during,
        worst_gap as f64 / 1e6,
        burn_csm as f64 / 1e9,
        burn_ns as f64 / 1e9
    );
}
