//! Where /proc and /sys are. `--proc-root` and `--sys-root` point every read at a fixture
//! tree instead, for tests.

use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPaths {
    pub proc_root: PathBuf,
    pub sys_root: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
        }
    }
}

impl HostPaths {
    /// `<proc-root>/<rel>`
    pub fn proc(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.proc_root.join(rel)
    }

    /// `<sys-root>/<rel>`
    pub fn sys(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.sys_root.join(rel)
    }

    /// The kernel's BTF, which tp_btf programs and our field offsets need.
    pub fn vmlinux_btf(&self) -> PathBuf {
        self.sys("kernel/btf/vmlinux")
    }

    /// `/proc/sys/kernel/osrelease`, e.g. `2.6.18-xen`.
    pub fn kernel_release(&self) -> Option<String> {
        let text = crate::sources::procfs::read_text(&self.proc("sys/kernel/osrelease")).ok()?;
        Some(text.trim().to_string())
    }

    /// This boot's identity (`/proc/sys/kernel/random/boot_id`), to tell whether counters
    /// that count since boot still belong to the same boot.
    pub fn boot_id(&self) -> Option<String> {
        let text =
            crate::sources::procfs::read_text(&self.proc("sys/kernel/random/boot_id")).ok()?;
        let id = text.trim();
        (!id.is_empty() && !id.contains(char::is_whitespace)).then(|| id.to_string())
    }

    /// True when reads go to the real /proc and /sys (not a fixture tree).
    pub fn is_live(&self) -> bool {
        self == &HostPaths::default()
    }
}

/// Online CPUs of this machine (not this process's affinity or quota: CPU rows count
/// every process on it, and 100 % is one core).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(1)
}
