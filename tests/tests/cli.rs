//! Bad input gets one clear line naming the culprit and a non-zero exit, never a panic.

use std::process::Output;

use csm_tests::run_csm;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_clean_failure(out: &Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "exit status; stderr:\n{err}");
    for needle in needles {
        assert!(err.contains(needle), "stderr lacks {needle:?}:\n{err}");
    }
    assert!(!err.contains("panicked"), "a panic:\n{err}");
    assert!(!err.contains("RUST_BACKTRACE"), "a backtrace hint:\n{err}");
}

#[test]
fn unknown_flag_is_a_usage_error() {
    assert_clean_failure(&run_csm(["run", "--no-such-flag"]), 2, &["--no-such-flag"]);
}

#[test]
fn bad_duration_flag_names_the_value() {
    assert_clean_failure(
        &run_csm(["run", "--interval", "soon"]),
        2,
        &["soon", "--interval"],
    );
}

#[test]
fn malformed_config_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("csm.toml");
    std::fs::write(
        &path,
        "data_dir = \"/tmp/x\"\n\n[mem]\ninterval = \"often\"\n",
    )
    .unwrap();
    let out = run_csm(["run", "--config", path.to_str().unwrap()]);
    assert_clean_failure(
        &out,
        2,
        &[path.to_str().unwrap(), "line 4", "mem.interval", "often"],
    );
    assert_eq!(
        stderr(&out).trim().lines().count(),
        1,
        "one line:\n{}",
        stderr(&out)
    );

    std::fs::write(&path, "interval = \"1s\"\nintreval = \"2s\"\n").unwrap();
    let out = run_csm(["run", "--config", path.to_str().unwrap()]);
    assert_clean_failure(&out, 2, &[path.to_str().unwrap(), "line 2", "intreval"]);

    std::fs::write(&path, "interval = [1\n").unwrap();
    let out = run_csm(["run", "--config", path.to_str().unwrap()]);
    assert_clean_failure(&out, 2, &[path.to_str().unwrap(), "line 1"]);
}

#[test]
fn missing_config_file_is_named() {
    assert_clean_failure(
        &run_csm(["run", "--config", "/nonexistent/csm.toml"]),
        2,
        &["/nonexistent/csm.toml"],
    );
}

#[test]
fn intervals_csm_cannot_keep_are_refused_naming_the_key() {
    assert_clean_failure(
        &run_csm(["run", "--interval", "1ns"]),
        2,
        &["interval 1ns: below the 10ms csm samples at"],
    );
    assert_clean_failure(
        &run_csm(["run", "--flush-interval", "500000y"]),
        2,
        &["flush_interval", "over 1h"],
    );
    // Issue 21 point 7: 2^64-1 s overflowed nothing visible and was accepted.
    let out = run_csm(["run", "--interval", "18446744073709551615s"]);
    assert_clean_failure(
        &out,
        2,
        &["interval 18446744073709551615s: over 1h, the longest row csm writes"],
    );
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    for (flag, needle) in [
        ("--retain", "retain 18446744073709551615s: over 36500d"),
        ("--duration", "duration 18446744073709551615s: over 3650d"),
    ] {
        assert_clean_failure(
            &run_csm(["run", flag, "18446744073709551615s"]),
            2,
            &[needle],
        );
    }
    // A negative duration is a bad value of its flag, not an unknown argument.
    assert_clean_failure(
        &run_csm(["run", "--interval", "-3s"]),
        2,
        &["--interval", "invalid duration \"-3s\""],
    );
}

#[test]
fn a_huge_bad_config_line_is_quoted_short() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("csm.toml");
    let huge = format!("interval = \"{}\"\n", "9".repeat(50 << 20));
    std::fs::write(&path, huge).unwrap();
    let out = run_csm(["run", "--config", path.to_str().unwrap()]);
    assert_clean_failure(&out, 2, &["line 1", "interval"]);
    assert!(
        out.stderr.len() < 1000,
        "{} bytes of stderr",
        out.stderr.len()
    );
}

#[test]
fn a_data_dir_another_user_may_write_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shared");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(65534), None).unwrap();
    let out = run_csm([
        "run",
        "--data-dir",
        data.to_str().unwrap(),
        "--duration",
        "1s",
    ]);
    assert_clean_failure(&out, 2, &["owned by uid 65534", "--allow-unsafe-data-dir"]);
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    assert_eq!(
        std::fs::read_dir(&data).unwrap().count(),
        0,
        "nothing was created in the refused data dir"
    );
}

#[test]
fn unwritable_data_dir_is_named() {
    // A regular file where the data dir should be: not writable even for root.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let data_dir = file.join("data");
    let out = run_csm([
        "run",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--duration",
        "1s",
    ]);
    assert_clean_failure(&out, 2, &[data_dir.to_str().unwrap()]);
    assert_eq!(
        stderr(&out).trim().lines().count(),
        1,
        "one line:\n{}",
        stderr(&out)
    );

    // A read-only mount would be the other case; /proc is one everywhere.
    let out = run_csm(["run", "--data-dir", "/proc/csm-data", "--duration", "1s"]);
    assert_clean_failure(&out, 2, &["/proc/csm-data"]);
}

#[test]
fn ebpf_backend_on_a_host_without_it_fails_in_one_line() {
    // A sys root without BTF or tracefs stands for a host where eBPF cannot run.
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = run_csm([
        "run",
        "--backend",
        "ebpf",
        "--sys-root",
        root.path().to_str().unwrap(),
        "--data-dir",
        data.path().to_str().unwrap(),
        "--duration",
        "1s",
    ]);
    assert_clean_failure(&out, 1, &["--backend ebpf", "BTF"]);
    let lines: Vec<_> = stderr(&out)
        .lines()
        .filter(|l| l.starts_with("csm:"))
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
}

#[test]
fn check_reports_the_backend_and_why() {
    let out = run_csm(["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("backend (auto): ebpf"), "{text}");
    assert!(text.contains("tp_btf sched_switch"), "{text}");

    let root = tempfile::tempdir().unwrap();
    let out = run_csm(["check", "--sys-root", root.path().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("backend (auto): proc"), "{text}");
    assert!(text.contains("no  btf"), "{text}");
}
