//! The data dir of a test: a temporary folder that the daemon writes into, read back
//! through the store's own reader (`csm::store::read_rows`) as typed rows and events.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use csm::sources::ebpf::pins;
use csm::store::layout::is_temp_file;
use csm::store::{read_rows, Event, EventRow, FromBatch, Row, Table};

/// A data dir, removed on drop with the pinned eBPF state of any csm build that ran on it
/// (a failed test must not leave programs attached).
///
/// It sits in a folder of its own, so that a test can keep its other files
/// ([`DataDir::beside`]: a config, a fixture tree) next to it without putting them in it.
pub struct DataDir {
    path: PathBuf,
    /// The folder around `path`.
    parent: PathBuf,
    temp: Option<tempfile::TempDir>,
}

/// The `.parquet` files of a data dir and the temporaries beside them.
#[derive(Debug, Default)]
pub struct Files {
    pub parquet: Vec<PathBuf>,
    pub temporaries: Vec<PathBuf>,
}

impl Default for DataDir {
    fn default() -> Self {
        Self::new()
    }
}

impl DataDir {
    /// `<new temp dir>/data`, created empty.
    pub fn new() -> DataDir {
        let temp = tempfile::tempdir().expect("create a temp dir");
        let mut dir = DataDir::create_in(temp.path());
        dir.temp = Some(temp);
        dir
    }

    /// `<parent>/data`, created empty (on a file system of the test's own, a [`Tmpfs`]).
    pub fn create_in(parent: &Path) -> DataDir {
        let path = parent.join("data");
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        // Whatever the umask: the daemon refuses a data dir others may write to.
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o750))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        DataDir {
            // As the daemon names it: the pins are keyed by the canonical path.
            path: path.canonicalize().expect("canonical data dir"),
            parent: parent.to_path_buf(),
            temp: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path next to the data dir, not in it, for the test's other files.
    pub fn beside(&self, name: &str) -> PathBuf {
        self.parent.join(name)
    }

    /// Writes a config file next to the data dir; its path.
    pub fn config(&self, toml: &str) -> PathBuf {
        let path = self.beside("csm.toml");
        fs::write(&path, toml).expect("write the config");
        path
    }

    /// Whether the daemon has written any file of `table` yet.
    pub fn has(&self, table: Table) -> bool {
        !self.table_files(table).is_empty()
    }

    /// Every row of the table of `R`, over all its hourly files and host partitions, in
    /// time order (rows of one time stamp in the order of the files that hold them).
    pub fn rows<R: Row + FromBatch>(&self) -> Vec<R> {
        let mut rows = Vec::new();
        for path in self.table_files(R::TABLE) {
            rows.extend(
                read_rows::<R>(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())),
            );
        }
        rows.sort_by_key(Row::ts_us);
        rows
    }

    /// Every event, typed, with its time stamp, in time order.
    pub fn events(&self) -> Vec<(i64, Event)> {
        self.rows::<EventRow>()
            .iter()
            .map(|row| (row.ts_us, row.event()))
            .collect()
    }

    /// The `.parquet` files of one table.
    pub fn table_files(&self, table: Table) -> Vec<PathBuf> {
        files_under(&self.path.join(table.name())).parquet
    }

    /// Every `.parquet` file under the data dir, and any temporaries still there.
    pub fn files(&self) -> Files {
        files_under(&self.path)
    }

    /// Reads every `.parquet` file to its end through the store's reader (and its
    /// bounds), whatever its table: the rows read, or an error that names the file.
    pub fn read_every_file(&self) -> Result<usize> {
        let mut rows = 0;
        for path in self.files().parquet {
            let file = fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
            csm::store::for_each_batch(file, &path, None, &csm::store::BOUNDS, |batch| {
                rows += batch.num_rows();
                Ok(())
            })?;
        }
        Ok(rows)
    }

    /// The pin folders of this data dir, of any csm build.
    pub fn pin_dirs(&self) -> Vec<PathBuf> {
        let prefix = format!("{}-", pins::data_dir_key(&self.path));
        fs::read_dir("/sys/fs/bpf/csm")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect()
    }
}

impl AsRef<Path> for DataDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        for dir in self.pin_dirs() {
            let _ = pins::remove_pin_dir(&dir);
        }
        if self.temp.is_none() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

fn files_under(dir: &Path) -> Files {
    let mut files = Files::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".parquet") {
                files.parquet.push(path);
            } else if is_temp_file(&name) {
                files.temporaries.push(path);
            }
        }
    }
    files.parquet.sort();
    files
}

/// A tmpfs of `size` mounted on a fresh folder; unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
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
