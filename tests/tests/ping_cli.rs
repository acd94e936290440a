//! A malformed ping target stops `csm run` before it starts, with one line naming the
//! target and exit status 2 (usage or config error). Needs no root: nothing is loaded.

use csm_tests::{run_csm, DataDir};

fn run_with_target(target: &str) -> (Option<i32>, String) {
    let data = DataDir::new();
    let out = run_csm([
        "run",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--ping",
        "127.0.0.1",
        "--ping",
        target,
        "--duration",
        "1s",
    ]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_malformed_target_is_named_in_one_line() {
    for target in ["http://example.org/", "example.org:80", "two words", ""] {
        let (code, stderr) = run_with_target(target);
        assert_eq!(code, Some(2), "{target:?}: {stderr}");
        let lines: Vec<_> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{target:?}: {stderr}");
        let want = format!("csm: ping target `{target}`: ");
        assert!(lines[0].starts_with(&want), "{target:?}: {stderr}");
    }
}

#[test]
fn a_bad_count_in_the_config_is_named() {
    let data = DataDir::new();
    let config = data.config("[[ping.target]]\nhost = \"gw.lan\"\ncount = 0\n");
    let out = run_csm([
        "run",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("csm: ping target `gw.lan`: count"),
        "{stderr}"
    );
}
