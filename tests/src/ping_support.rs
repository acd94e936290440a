//! The daemon child and binary helpers of the ping tests.

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

/// A running `csm run`, stopped (SIGTERM, then waited for) on drop if still running.
pub struct Daemon {
    pub child: std::process::Child,
    pub stderr: PathBuf,
}

impl Daemon {
    /// Starts `csm run --data-dir <data_dir> <args>` inside `ns`, stderr to a file
    /// beside the data dir.
    pub fn start(ns: &crate::netns::Netns, data_dir: &std::path::Path, args: &[&str]) -> Daemon {
        let stderr = data_dir.with_extension("stderr.log");
        let child = ns
            .command(csm_bin().to_str().unwrap())
            .args(["run", "--data-dir", data_dir.to_str().unwrap()])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start csm");
        Daemon { child, stderr }
    }

    /// Waits for the daemon to end by itself (`--duration`) and checks it succeeded.
    pub fn wait_success(&mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "csm exited with {status}: {}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: signalling our own child by its pid.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let _ = self.child.wait();
        }
    }
}

/// Microseconds since the epoch, like the tables' `ts`.
pub use crate::now_us;
