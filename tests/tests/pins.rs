//! Pinned eBPF state per data dir: pins of another (incompatible) csm build are replaced
//! at start, a crashed run's pins show as stale in `csm check` and are adopted by the
//! next run (which records the recovered gap), and a clean stop removes them.
//!
//! Needs root; `cargo test --release -p csm-tests --test pins`.

use std::thread::sleep;
use std::time::Duration;

use csm::store::{Counters, Event, Recovered};
use csm_tests::{run_csm, Daemon, DataDir};

#[test]
fn pins_are_replaced_adopted_listed_and_removed() {
    csm_tests::require_root();
    let data = DataDir::new();
    // An empty pin folder of this data dir from "another build".
    let key = csm::sources::ebpf::pins::data_dir_key(data.path());
    let foreign = std::path::Path::new("/sys/fs/bpf/csm").join(format!("{key}-0badbeef"));
    std::fs::create_dir_all(&foreign).unwrap();
    let csm = || {
        Daemon::killable(&data)
            .args(["--interval", "1s", "--flush-interval", "1s"])
            .spawn()
    };

    let daemon = csm();
    sleep(Duration::from_secs(3));
    assert!(!foreign.exists(), "pins of another build are replaced");
    assert_eq!(data.pin_dirs().len(), 1, "this run pinned its state");
    daemon.kill();

    let check = run_csm(["check"]);
    let report = String::from_utf8_lossy(&check.stdout);
    let data_dir = data.path().display().to_string();
    assert!(
        report
            .lines()
            .any(|l| l.contains("STALE") && l.contains(&data_dir)),
        "csm check lists the stale pins:\n{report}"
    );

    sleep(Duration::from_secs(2));
    let daemon = csm();
    sleep(Duration::from_secs(3));
    // A clean stop (exit status 0).
    daemon.stop();
    assert!(data.pin_dirs().is_empty(), "a clean stop removes the pins");

    let events: Vec<Event> = data.events().into_iter().map(|(_, e)| e).collect();
    let pins_note = |text: &str| {
        events
            .iter()
            .any(|e| matches!(e, Event::Pins(note) if note.contains(text)))
    };
    assert!(pins_note("another csm build"), "{events:?}");
    assert!(pins_note("adopted pinned state"), "{events:?}");
    let gap: i64 = events
        .iter()
        .find_map(|e| match e {
            Event::Recovered(Recovered::Gap {
                counters: Counters::Cpu,
                gap_ms,
                ..
            }) => Some(*gap_ms),
            _ => None,
        })
        .expect("a recovered event with the gap");
    assert!((1_500..10_000).contains(&gap), "gap {gap} ms");
}
