//! Interface names for (network namespace inode, ifindex) pairs.
//!
//! The daemon's own namespace is read from `<sys-root>/class/net` (so `--sys-root`
//! fixtures work). Another namespace has no /sys of ours: a short-lived thread enters it
//! (`setns`, which only moves that thread) through a file that refers to it — a
//! `/run/netns/<name>` bind mount (`ip netns`) or `/proc/<pid>/ns/net` of a process
//! inside it — and asks the kernel for the names by ifindex (`if_indextoname`). When no
//! such file exists (the namespace is gone, or only a socket keeps it alive) the name is
//! unknown and rows say `ifindex-<N>`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::CStr;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::model::net::IfaceKey;
use crate::sources::host::HostPaths;

/// What is known about an interface now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfaceName {
    Named(String),
    /// Its namespace was found and has no interface with this ifindex any more.
    Gone,
    /// Its namespace could not be entered (or is gone).
    Unknown,
}

impl IfaceName {
    /// The `iface` column: the name, or `ifindex-<N>` when it cannot be resolved.
    pub fn label(&self, ifindex: u32) -> String {
        match self {
            IfaceName::Named(name) => name.clone(),
            _ => format!("ifindex-{ifindex}"),
        }
    }
}

pub struct IfaceNames {
    paths: HostPaths,
    host_netns: Option<u32>,
    /// Namespace inode → a file that refers to it, found by the last scan.
    ns_files: HashMap<u32, PathBuf>,
    /// Namespaces the last scan did not find, and when it ran: a namespace nothing
    /// refers to must not cost a walk of /proc every interval.
    not_found: HashSet<u32>,
    last_scan: Option<Instant>,
}

/// How often a namespace that could not be found is looked for again.
const RESCAN: Duration = Duration::from_secs(30);

impl IfaceNames {
    pub fn new(paths: HostPaths) -> Self {
        let host_netns = ns_inode_of_link(&paths.proc("self/ns/net"));
        IfaceNames {
            paths,
            host_netns,
            ns_files: HashMap::new(),
            not_found: HashSet::new(),
            last_scan: None,
        }
    }

    /// Inode of the daemon's own network namespace.
    pub fn host_netns(&self) -> Option<u32> {
        self.host_netns
    }

    /// Names of `keys` now.
    pub fn resolve(&mut self, keys: &[IfaceKey]) -> BTreeMap<IfaceKey, IfaceName> {
        let mut by_ns: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for &(netns, ifindex) in keys {
            by_ns.entry(netns).or_default().push(ifindex);
        }
        let mut out = BTreeMap::new();
        for (netns, ifindexes) in by_ns {
            let names = if Some(netns) == self.host_netns {
                self.host_names(&ifindexes)
            } else {
                self.foreign_names(netns, &ifindexes)
            };
            for (ifindex, name) in ifindexes.into_iter().zip(names) {
                out.insert((netns, ifindex), name);
            }
        }
        out
    }

    fn host_names(&self, ifindexes: &[u32]) -> Vec<IfaceName> {
        let dir = self.paths.sys("class/net");
        let Ok(entries) = fs::read_dir(&dir) else {
            return vec![IfaceName::Unknown; ifindexes.len()];
        };
        let mut by_index = HashMap::new();
        for entry in entries.flatten() {
            let index = crate::sources::procfs::read_text(&entry.path().join("ifindex"))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            if let Some(index) = index {
                by_index.insert(index, entry.file_name().to_string_lossy().into_owned());
            }
        }
        ifindexes
            .iter()
            .map(|i| match by_index.get(i) {
                Some(name) => IfaceName::Named(name.clone()),
                None => IfaceName::Gone,
            })
            .collect()
    }

    /// A file that refers to namespace `netns` (not the daemon's own), found again by a
    /// scan when the one known no longer does; `None` when nothing refers to it.
    pub fn ns_file(&mut self, netns: u32) -> Option<PathBuf> {
        let still_valid = self
            .ns_files
            .get(&netns)
            .is_some_and(|path| ns_inode_of_file(path) == Some(netns));
        if !still_valid && self.worth_scanning(netns) {
            self.ns_files = scan_ns_files(&self.paths);
            self.last_scan = Some(Instant::now());
            self.not_found.insert(netns);
            let found = &self.ns_files;
            self.not_found.retain(|inode| !found.contains_key(inode));
        }
        self.ns_files.get(&netns).cloned()
    }

    fn foreign_names(&mut self, netns: u32, ifindexes: &[u32]) -> Vec<IfaceName> {
        let Some(path) = self.ns_file(netns) else {
            return vec![IfaceName::Unknown; ifindexes.len()];
        };
        let ifindexes = ifindexes.to_vec();
        let count = ifindexes.len();
        std::thread::spawn(move || names_inside(&path, &ifindexes))
            .join()
            .ok()
            .flatten()
            .unwrap_or_else(|| vec![IfaceName::Unknown; count])
    }

    /// A namespace not seen before is looked for at once; one already missed by the last
    /// scan only when that scan is old.
    fn worth_scanning(&self, netns: u32) -> bool {
        !self.not_found.contains(&netns) || self.last_scan.is_none_or(|at| at.elapsed() >= RESCAN)
    }
}

/// Runs on a throw-away thread: enters the namespace and asks for the names there.
fn names_inside(ns_file: &Path, ifindexes: &[u32]) -> Option<Vec<IfaceName>> {
    enter(ns_file)?;
    Some(ifindexes.iter().map(|&i| name_of_index(i)).collect())
}

/// Moves the calling thread (only it: call it on a throw-away thread) into the network
/// namespace `ns_file` refers to; `None` when it cannot.
pub fn enter(ns_file: &Path) -> Option<()> {
    let file = fs::File::open(ns_file).ok()?;
    // SAFETY: a valid fd; setns only changes this thread's namespace.
    (unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } == 0).then_some(())
}

fn name_of_index(ifindex: u32) -> IfaceName {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf holds IF_NAMESIZE bytes as if_indextoname requires.
    let ptr = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if ptr.is_null() {
        return match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ENXIO) | Some(libc::ENODEV) => IfaceName::Gone,
            _ => IfaceName::Unknown,
        };
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    IfaceName::Named(name.to_string_lossy().into_owned())
}

/// Files referring to network namespaces: `ip netns` bind mounts first, then processes.
fn scan_ns_files(paths: &HostPaths) -> HashMap<u32, PathBuf> {
    let mut found = HashMap::new();
    for dir in ["/run/netns", "/var/run/netns"] {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            if let Some(inode) = ns_inode_of_file(&entry.path()) {
                found.entry(inode).or_insert(entry.path());
            }
        }
    }
    for entry in fs::read_dir(&paths.proc_root)
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let link = entry.path().join("ns/net");
        if let Some(inode) = ns_inode_of_link(&link) {
            found.entry(inode).or_insert(link);
        }
    }
    found
}

/// Inode of a namespace file (a bind mount or /proc/<pid>/ns/net, followed).
fn ns_inode_of_file(path: &Path) -> Option<u32> {
    fs::metadata(path).ok().map(|m| m.ino() as u32)
}

/// Inode from the `net:[4026531840]` link text, without opening the namespace.
fn ns_inode_of_link(path: &Path) -> Option<u32> {
    let target = fs::read_link(path).ok()?;
    parse_ns_link(&target.to_string_lossy())
}

pub fn parse_ns_link(text: &str) -> Option<u32> {
    text.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespace_links() {
        assert_eq!(parse_ns_link("net:[4026531840]"), Some(4026531840));
        assert_eq!(parse_ns_link("mnt:[4026531840]"), None);
        assert_eq!(IfaceName::Unknown.label(7), "ifindex-7");
    }

    #[test]
    fn host_names_come_from_the_sys_root() {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path();
        for (name, index) in [("lo", 1), ("eth0", 2)] {
            let d = sys.join("class/net").join(name);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("ifindex"), format!("{index}\n")).unwrap();
        }
        let mut names = IfaceNames::new(HostPaths {
            proc_root: PathBuf::from("/proc"),
            sys_root: sys.to_path_buf(),
        });
        let host = names.host_netns().expect("own namespace");
        let got = names.resolve(&[(host, 2), (host, 9)]);
        assert_eq!(got[&(host, 2)], IfaceName::Named("eth0".into()));
        assert_eq!(got[&(host, 9)], IfaceName::Gone);
    }
}
