//! Helpers shared by the end-to-end tests.
//!
//! The ping tests build their own network namespaces (names start with `csmping`), run
//! the real `csm` binary inside one of them, and read its Parquet output back. No packet
//! they cause leaves the machine: the client namespace has no default route, and its
//! resolver points at its own loopback.

pub mod netns;
pub mod ping;

use std::path::PathBuf;

/// The release `csm` binary the tests run (build it with
/// `cargo build --release -p csm-user`).
pub fn csm_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/csm");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release -p csm-user` first",
        bin.display()
    );
    bin
}

/// Root tests need root (namespaces, raw sockets, eBPF); elsewhere they say so and pass.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: this test needs root");
    }
    root
}
