//! Pinned eBPF state per data dir: pins of another (incompatible) csm build are replaced
//! at start, a crashed run's pins show as stale in `csm check` and are adopted by the
//! next run (which records the recovered gap), and a clean stop removes them.
//!
//! Needs root; `cargo test --release -p csm-tests --test pins`.

use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use csm_tests::daemon_support::*;

#[test]
fn pins_are_replaced_adopted_listed_and_removed() {
    csm_tests::require_root();
    let data = tempfile::tempdir().unwrap();
    let pins = PinGuard {
        data_dir: data.path().canonicalize().unwrap(),
    };
    // An empty pin folder of this data dir from "another build".
    let key = csm::sources::ebpf::pins::data_dir_key(&pins.data_dir);
    let foreign = std::path::Path::new("/sys/fs/bpf/csm").join(format!("{key}-0badbeef"));
    std::fs::create_dir_all(&foreign).unwrap();

    let daemon = Daemon::start(data.path(), &["--interval", "1s", "--flush-interval", "1s"]);
    sleep(Duration::from_secs(3));
    assert!(!foreign.exists(), "pins of another build are replaced");
    assert_eq!(pins.pin_dirs().len(), 1, "this run pinned its state");
    daemon.kill9();

    let check = Command::new(csm_bin()).arg("check").output().unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    let data_dir = pins.data_dir.display().to_string();
    assert!(
        report
            .lines()
            .any(|l| l.contains("STALE") && l.contains(&data_dir)),
        "csm check lists the stale pins:\n{report}"
    );

    sleep(Duration::from_secs(2));
    let daemon = Daemon::start(data.path(), &["--interval", "1s", "--flush-interval", "1s"]);
    sleep(Duration::from_secs(3));
    assert!(daemon.stop().success());
    assert!(pins.pin_dirs().is_empty(), "a clean stop removes the pins");

    let events = events(data.path());
    let has = |event: &str, text: &str| {
        events
            .iter()
            .any(|(_, e, d)| e == event && d.contains(text))
    };
    assert!(has("pins", "another csm build"), "{events:?}");
    assert!(has("pins", "adopted pinned state"), "{events:?}");
    let gap: i64 = events
        .iter()
        .find_map(|(_, e, d)| {
            (e == "recovered")
                .then(|| {
                    d.strip_prefix("gap_ms=")?
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                })
                .flatten()
        })
        .expect("a recovered event with the gap");
    assert!((1_500..10_000).contains(&gap), "gap {gap} ms");
}
