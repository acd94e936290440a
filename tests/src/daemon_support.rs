//! Helpers of the crash, disk-full and pin tests: a daemon child that is SIGKILLed on
//! drop (the tests kill it on purpose), a throw-away test user, a tmpfs mount and
//! pinned-state cleanup, all undone by `Drop` even when a test fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use arrow::array::{Array, StringArray, TimestampMicrosecondArray};
use csm::store::layout::is_temp_file;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// `target/release/csm` (or `$CSM_BIN`); the tests run the real binary.
pub fn csm_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("CSM_BIN") {
        return bin.into();
    }
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/csm");
    assert!(
        bin.exists(),
        "{} missing: cargo build --release -p csm-user first",
        bin.display()
    );
    bin
}

pub use crate::{now_us, schedstat_ns};

/// A running `csm run`; killed (SIGKILL) and reaped on drop if still running.
pub struct Daemon {
    pub child: Child,
}

impl Daemon {
    pub fn start(data_dir: &Path, extra: &[&str]) -> Daemon {
        let mut cmd = Command::new(csm_bin());
        cmd.args(["run", "--backend", "ebpf", "--host", "test", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("CSM_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        Daemon {
            child: cmd.spawn().expect("start csm"),
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn kill9(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGTERM and wait: the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        self.child.wait().expect("wait for csm")
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub use crate::TestUser;

/// A tmpfs of `size` mounted on a fresh folder; unmounted on drop.
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Result<Tmpfs> {
        let dir = tempfile::tempdir()?;
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0750"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()?;
        if !status.success() {
            bail!("mount tmpfs on {} failed", dir.path().display());
        }
        Ok(Tmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Removes the data dir's pinned eBPF state on drop (a failed test must not leave
/// programs attached).
pub struct PinGuard {
    pub data_dir: PathBuf,
}

impl PinGuard {
    /// The data dir's pin folders (any build).
    pub fn pin_dirs(&self) -> Vec<PathBuf> {
        let key = csm::sources::ebpf::pins::data_dir_key(&self.data_dir);
        fs::read_dir("/sys/fs/bpf/csm")
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{key}-")))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        for dir in self.pin_dirs() {
            let _ = csm::sources::ebpf::pins::remove_pin_dir(&dir);
        }
    }
}

/// Every `.parquet` file under `dir`, and any temporaries still there.
pub fn parquet_files(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut files, mut temps) = (Vec::new(), Vec::new());
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".parquet") {
                files.push(path);
            } else if is_temp_file(&name) {
                temps.push(path);
            }
        }
    }
    files.sort();
    (files, temps)
}

/// Reads a whole file; an error names the file.
pub fn read_fully(path: &Path) -> Result<usize> {
    let file = fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .with_context(|| format!("read footer of {}", path.display()))?;
    let mut rows = 0;
    for batch in reader {
        rows += batch
            .with_context(|| format!("read {}", path.display()))?
            .num_rows();
    }
    Ok(rows)
}

/// `(ts, event, detail)` of every events row under the data dir.
pub fn events(data_dir: &Path) -> Vec<(i64, String, String)> {
    let mut out = Vec::new();
    let (files, _) = parquet_files(&data_dir.join("events"));
    for path in files {
        let file = fs::File::open(&path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let ts = batch
                .column(0)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap();
            let ev = batch
                .column(1)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            let detail = batch
                .column(2)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            for i in 0..batch.num_rows() {
                let d = if detail.is_null(i) {
                    ""
                } else {
                    detail.value(i)
                };
                out.push((ts.value(i), ev.value(i).to_string(), d.to_string()));
            }
        }
    }
    out.sort();
    out
}

/// Every `cpu` row under the data dir.
pub fn cpu_rows(data_dir: &Path) -> Vec<csm::store::CpuRow> {
    let (files, _) = parquet_files(&data_dir.join("cpu"));
    let mut rows = Vec::new();
    for path in files {
        rows.extend(csm::store::read_rows::<csm::store::CpuRow>(&path).unwrap());
    }
    rows.sort_by_key(|r| r.ts_us);
    rows
}

/// Small xorshift: random kill moments without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn seeded() -> Rng {
        Rng(now_us() as u64 | 1)
    }
    pub fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}
