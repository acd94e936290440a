//! What the benchmarks that drive the real `csm` binary share (`mod common;`).

use std::path::PathBuf;

/// `--seconds N` from the command line, else `default`.
pub fn seconds_arg(default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The release `csm` of this workspace, which must be built already.
pub fn built_csm() -> PathBuf {
    let csm = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/csm");
    assert!(
        csm.exists(),
        "build it first: cargo build --release -p csm-user --bins"
    );
    csm
}
