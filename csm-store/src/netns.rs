//! The one label of a network namespace, as `csm report`, `csm top` and the charts show
//! it: `host` for the host's own; else the name a tool gave it (a file under `/run/netns`
//! or Docker's folder that is a bind mount of it); else the process that owns it, as
//! `<comm>-<pid>` of its lowest pid (a container's init); else `inode-<n>`. Rows carry
//! only the namespace's inode, so only the machine that collected them can name them.
//!
//! Each folder and /proc are listed once per [`NetnsLabels`], however many namespaces
//! are labelled: a user with thousands of namespaces costs one scan, not one per name.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::names::safe_text;

/// The label of the host's own network namespace (and of rows from /proc, which carry no
/// namespace: the host's).
pub const HOST_LABEL: &str = "host";

/// Inodes that are the host's namespace wherever the data came from: `init_net`'s fixed
/// inode on kernels that number the initial namespaces (0xEFFFFFF9, Linux 6.x), and
/// 0xF0000000, the first dynamic nsfs inode, which csm's older data and its fixtures give
/// the host (at boot the first dynamic inode goes to an initial namespace, never to a
/// namespace a user creates later).
pub const HOST_NETNS_INODES: [i64; 2] = [0xEFFF_FFF9, 0xF000_0000];

/// Folders where tools name network namespaces (ip netns, Docker).
pub const NETNS_NAME_DIRS: [&str; 2] = ["/run/netns", "/run/docker/netns"];

/// Most bytes of a `comm` file read (the kernel writes at most 16).
const MAX_COMM_BYTES: u64 = 4096;

/// Labels looked up once per inode, the folders and /proc each listed once.
pub struct NetnsLabels {
    dirs: Vec<PathBuf>,
    proc: PathBuf,
    /// The host's inode on this machine (`<proc>/1/ns/net`), besides [`HOST_NETNS_INODES`].
    host: Option<i64>,
    /// Inode → name under `dirs`, listed at the first lookup.
    named: Option<BTreeMap<i64, String>>,
    /// Inode → `<comm>-<pid>` of its lowest pid, /proc listed at the first lookup that
    /// `named` could not answer.
    owners: Option<BTreeMap<i64, String>>,
    cache: BTreeMap<i64, String>,
}

impl NetnsLabels {
    /// This machine's namespaces: [`NETNS_NAME_DIRS`] and `/proc`.
    pub fn local() -> NetnsLabels {
        let dirs = NETNS_NAME_DIRS.iter().map(PathBuf::from).collect();
        NetnsLabels::with_roots(dirs, PathBuf::from("/proc"))
    }

    /// Namespaces named by the files under `dirs` and the processes under `proc` (tests).
    pub fn with_roots(dirs: Vec<PathBuf>, proc: PathBuf) -> NetnsLabels {
        let host = ns_link_inode(&proc.join("1/ns/net"));
        NetnsLabels {
            dirs,
            proc,
            host,
            named: None,
            owners: None,
            cache: BTreeMap::new(),
        }
    }

    /// Lets namespaces created since be named (a live view calls it once per refresh):
    /// the folders and /proc are listed again at the next lookup that needs them, and the
    /// inodes that could not be named are looked up again. At most one listing of each per
    /// refresh, however many namespaces appear.
    pub fn refresh(&mut self) {
        self.named = None;
        self.owners = None;
        self.cache
            .retain(|inode, label| *label != format!("inode-{inode}"));
    }

    /// Whether `inode` is the host's namespace (`None`: a row from /proc, the host's).
    pub fn is_host(&self, inode: Option<i64>) -> bool {
        inode.is_none_or(|n| HOST_NETNS_INODES.contains(&n) || self.host == Some(n))
    }

    /// The label of the namespace `inode`, safe to show (see [`safe_text`]).
    pub fn label(&mut self, inode: Option<i64>) -> String {
        match inode {
            Some(inode) if !self.is_host(Some(inode)) => self.other(inode),
            _ => HOST_LABEL.to_string(),
        }
    }

    /// The label of a namespace other than the host's; `None` for the host's (whose
    /// interfaces keep their plain names in the charts).
    pub fn label_unless_host(&mut self, inode: Option<i64>) -> Option<String> {
        (!self.is_host(inode)).then(|| self.label(inode))
    }

    fn other(&mut self, inode: i64) -> String {
        if let Some(label) = self.cache.get(&inode) {
            return label.clone();
        }
        let label = safe_text(&self.lookup(inode)).into_owned();
        self.cache.insert(inode, label.clone());
        label
    }

    fn lookup(&mut self, inode: i64) -> String {
        let dirs = &self.dirs;
        let named = self.named.get_or_insert_with(|| names_in(dirs));
        if let Some(name) = named.get(&inode) {
            return name.clone();
        }
        let proc = &self.proc;
        let owners = self.owners.get_or_insert_with(|| owners_in(proc));
        owners
            .get(&inode)
            .cloned()
            .unwrap_or_else(|| format!("inode-{inode}"))
    }
}

/// The inode of the namespace a `net:[<inode>]` link names.
fn ns_link_inode(link: &Path) -> Option<i64> {
    let text = std::fs::read_link(link).ok()?;
    let text = text.to_str()?;
    text.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// Inode → file name of every file under `dirs` (the first folder naming it wins).
fn names_in(dirs: &[PathBuf]) -> BTreeMap<i64, String> {
    let mut named = BTreeMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(meta) = std::fs::metadata(entry.path()) {
                named
                    .entry(meta.ino() as i64)
                    .or_insert_with(|| entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    named
}

/// Inode → `<comm>-<pid>` of the lowest pid in that namespace, one pass over `proc`.
fn owners_in(proc: &Path) -> BTreeMap<i64, String> {
    let Ok(entries) = std::fs::read_dir(proc) else {
        return BTreeMap::new();
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    let mut owners = BTreeMap::new();
    for pid in pids {
        let dir = proc.join(pid.to_string());
        let Some(inode) = ns_link_inode(&dir.join("ns/net")) else {
            continue;
        };
        owners.entry(inode).or_insert_with(|| {
            let comm =
                crate::beneath::read_text(&dir.join("comm"), MAX_COMM_BYTES).unwrap_or_default();
            format!("{}-{pid}", comm.trim())
                .trim_start_matches('-')
                .to_string()
        });
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_host_else_their_file_else_their_process_else_their_inode() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blue"), b"").unwrap();
        let inode = std::fs::metadata(dir.path().join("blue")).unwrap().ino() as i64;
        // A fake /proc: pids 70 and 42 in another namespace (42 is its init), 1 in the
        // host's, whose inode is this machine's own (not one of the fixed ones).
        let proc = tempfile::tempdir().unwrap();
        let (host, other) = (inode + 500_000, inode + 1_000_000);
        for (pid, ns, comm) in [(1, host, "init"), (70, other, "sh"), (42, other, "ng\x1bx")] {
            let pid_dir = proc.path().join(pid.to_string());
            std::fs::create_dir_all(pid_dir.join("ns")).unwrap();
            std::os::unix::fs::symlink(format!("net:[{ns}]"), pid_dir.join("ns/net")).unwrap();
            std::fs::write(pid_dir.join("comm"), format!("{comm}\n")).unwrap();
        }
        let mut labels =
            NetnsLabels::with_roots(vec![dir.path().to_owned()], proc.path().to_owned());
        assert_eq!(labels.label(Some(inode)), "blue");
        assert_eq!(labels.label(Some(other)), "ng\\u{1b}x-42");
        assert_eq!(
            labels.label(Some(other + 1)),
            format!("inode-{}", other + 1)
        );
        for host in [None, Some(host), Some(0xEFFF_FFF9), Some(0xF000_0000)] {
            assert_eq!(labels.label(host), "host");
            assert_eq!(labels.label_unless_host(host), None);
        }
        assert_eq!(labels.label_unless_host(Some(inode)), Some("blue".into()));
    }
}
