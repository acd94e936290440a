//! Pinned eBPF state (bpffs), one folder per data dir, so that accounting survives a
//! crash: the programs stay attached and keep counting into the pinned maps while the
//! daemon is down, and the next start with the same data dir adopts them.
//!
//! Layout: `/sys/fs/bpf/csm/<data-dir hash>-<build stamp>/{map_<NAME>,link_<program>}`.
//! The build stamp is a hash of the embedded eBPF object: pins left by a build whose
//! programs or maps differ are detached and removed, never adopted. A clean stop removes
//! the folder. Who owns a folder (data dir, pid) is noted in `/run/csm/<folder>.owner`,
//! which `csm check` reads to list stale pins (bpffs holds only BPF objects).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tracing::{debug, info};

use super::EBPF_OBJECT;

pub const BPFFS: &str = "/sys/fs/bpf";
pub const OWNERS: &str = "/run/csm";

/// FNV-1a, 64 bits: stable across builds and platforms (std's hasher is not).
pub fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Identifies the eBPF object this binary carries.
pub fn build_stamp() -> String {
    format!("{:08x}", fnv64(EBPF_OBJECT) as u32)
}

/// Hash of the canonical data dir: two daemons (or a test beside a real daemon) with
/// different data dirs never share counters.
pub fn data_dir_key(data_dir: &Path) -> String {
    let canonical = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf());
    format!("{:016x}", fnv64(canonical.as_os_str().as_encoded_bytes()))
}

/// The pin folder of one data dir for this build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinDir {
    pub path: PathBuf,
}

impl PinDir {
    pub fn for_data_dir(root: &Path, data_dir: &Path) -> PinDir {
        PinDir {
            path: root
                .join("csm")
                .join(format!("{}-{}", data_dir_key(data_dir), build_stamp())),
        }
    }

    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.path.join(format!("map_{name}"))
    }

    pub fn link(&self, program: &str) -> PathBuf {
        self.path.join(format!("link_{program}"))
    }

    /// Pins of the same data dir left by another build: to be removed, not adopted.
    pub fn incompatible_siblings(&self) -> Vec<PathBuf> {
        let name = self.name();
        let Some((key, _)) = name.split_once('-') else {
            return Vec::new();
        };
        let Some(parent) = self.path.parent() else {
            return Vec::new();
        };
        let Ok(entries) = fs::read_dir(parent) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = p.file_name().map(|n| n.to_string_lossy().into_owned());
                n.is_some_and(|n| n.starts_with(&format!("{key}-")) && n != name)
            })
            .collect()
    }

    /// Notes who owns the pins (for `csm check`); best effort.
    pub fn write_owner(&self, data_dir: &Path) {
        let text = format!(
            "pid {}\ndata_dir {}\n",
            std::process::id(),
            data_dir.canonicalize().unwrap_or(data_dir.into()).display()
        );
        let owner = owner_file(&self.name());
        let _ = fs::create_dir_all(OWNERS);
        if let Err(err) = fs::write(&owner, text) {
            debug!("cannot write {}: {err}", owner.display());
        }
    }

    /// Removes the pins (a clean stop). Programs stay attached until this process closes
    /// its descriptors, so nothing is lost between the final read and the exit.
    pub fn remove(&self) -> io::Result<()> {
        remove_pin_dir(&self.path)
    }
}

fn owner_file(pin_dir_name: &str) -> PathBuf {
    Path::new(OWNERS).join(format!("{pin_dir_name}.owner"))
}

/// Unlinks every pin in a folder (a pinned link that goes away detaches its program once
/// no process holds it) and the folder itself, and forgets its owner note.
pub fn remove_pin_dir(dir: &Path) -> io::Result<()> {
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries.flatten() {
                fs::remove_file(entry.path())?;
            }
            fs::remove_dir(dir)?;
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    if let Some(name) = dir.file_name() {
        let _ = fs::remove_file(owner_file(&name.to_string_lossy()));
    }
    Ok(())
}

/// Mounts bpffs at /sys/fs/bpf where it is missing (as root). True when usable.
pub fn ensure_bpffs() -> bool {
    if is_bpffs(Path::new(BPFFS)) {
        return true;
    }
    let _ = fs::create_dir_all(BPFFS);
    match crate::sources::mounts::mount_pseudo_fs(c"bpf", c"/sys/fs/bpf") {
        Ok(()) => {
            info!("mounted bpffs at {BPFFS}");
            true
        }
        Err(err) => {
            debug!("cannot mount bpffs: {err}");
            false
        }
    }
}

/// BPF_FS_MAGIC
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

pub fn is_bpffs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid C string and a zeroed statfs buffer.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

/// One pin folder as `csm check` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct PinReport {
    pub dir: PathBuf,
    pub data_dir: Option<String>,
    pub pid: Option<u32>,
    /// No live process owns it: a crashed daemon left it (the next start with the same
    /// data dir adopts it), or it belongs to another build.
    pub stale: bool,
    pub compatible: bool,
}

/// Every csm pin folder under `root` (normally /sys/fs/bpf).
pub fn list_pins(root: &Path) -> Vec<PinReport> {
    let Ok(entries) = fs::read_dir(root.join("csm")) else {
        return Vec::new();
    };
    let stamp = build_stamp();
    let mut out: Vec<PinReport> = entries
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let owner = fs::read_to_string(owner_file(&name)).unwrap_or_default();
            let field = |k: &str| {
                owner
                    .lines()
                    .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
            };
            let pid: Option<u32> = field("pid ").and_then(|p| p.parse().ok());
            let alive = pid.is_some_and(process_alive);
            PinReport {
                dir: e.path(),
                data_dir: field("data_dir "),
                pid,
                stale: !alive,
                compatible: name.ends_with(&format!("-{stamp}")),
            }
        })
        .collect();
    out.sort_by(|a, b| a.dir.cmp(&b.dir));
    out
}

/// A live (not zombie) process; pids are reused, so it must also be a csm.
fn process_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": the state follows the last ')'.
    let Some((comm, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let state = rest.trim_start().chars().next();
    state != Some('Z') && comm.ends_with("(csm")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_dirs_differ_per_data_dir_and_name_the_build() {
        let root = Path::new("/sys/fs/bpf");
        let a = PinDir::for_data_dir(root, Path::new("/nonexistent/a"));
        let b = PinDir::for_data_dir(root, Path::new("/nonexistent/b"));
        assert_ne!(a, b);
        assert!(a.name().ends_with(&format!("-{}", build_stamp())));
        assert_eq!(a.map("CPU_NS"), a.path.join("map_CPU_NS"));
    }

    #[test]
    fn siblings_of_other_builds_are_found() {
        let root = tempfile::tempdir().unwrap();
        let pins = PinDir::for_data_dir(root.path(), Path::new("/nonexistent/x"));
        let key = data_dir_key(Path::new("/nonexistent/x"));
        fs::create_dir_all(&pins.path).unwrap();
        fs::create_dir_all(root.path().join("csm").join(format!("{key}-0badbeef"))).unwrap();
        fs::create_dir_all(root.path().join("csm").join("ffffffffffffffff-0badbeef")).unwrap();
        let siblings = pins.incompatible_siblings();
        assert_eq!(siblings.len(), 1);
        assert!(siblings[0].ends_with(format!("{key}-0badbeef")));
    }
}
