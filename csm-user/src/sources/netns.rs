//! Interface names for (network namespace inode, ifindex) pairs.
//!
//! The daemon's own namespace is read from `<sys-root>/class/net` (so `--sys-root`
//! fixtures work). Another namespace has no /sys of ours: a short-lived thread enters it
//! (`setns`, which only moves that thread) through a file that refers to it — a
//! `/run/netns/<name>` bind mount (`ip netns`) or `/proc/<pid>/ns/net` of the process
//! the eBPF side saw in it (`NET_NS_PID`), checked to still be that namespace — and asks
//! the kernel for the names by ifindex (`if_indextoname`). /proc is never walked: users
//! can create namespaces by the thousand, and one walk per namespace stalled the daemon
//! (issue 21). An interface is named once; at most [`NAMESPACES_PER_RESOLVE`]
//! namespaces are looked for per interval. When no file is found (the namespace is gone,
//! only a socket keeps it alive, or its turn has not come) rows say `ifindex-<N>`.

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
    /// Names found in other namespaces: an interface is named once, not every interval
    /// (a namespace the daemon enters costs a thread and a `setns`).
    known: HashMap<IfaceKey, IfaceName>,
    /// Namespace inode → a file that refers to it.
    ns_files: HashMap<u32, PathBuf>,
    /// Namespaces no file was found for, and when they were looked for.
    not_found: HashMap<u32, Instant>,
}

/// How often a namespace that could not be found is looked for again.
const RESCAN: Duration = Duration::from_secs(30);

/// Namespaces looked for and entered per call of [`IfaceNames::resolve_with`] (once per
/// interval): however many namespaces users create, naming costs at most this many
/// look-ups an interval; the others are named in later intervals and meanwhile labelled
/// `ifindex-<N>`.
pub const NAMESPACES_PER_RESOLVE: usize = 8;

impl IfaceNames {
    pub fn new(paths: HostPaths) -> Self {
        let host_netns = ns_inode_of_link(&paths.proc("self/ns/net"));
        IfaceNames {
            paths,
            host_netns,
            known: HashMap::new(),
            ns_files: HashMap::new(),
            not_found: HashMap::new(),
        }
    }

    /// Inode of the daemon's own network namespace.
    pub fn host_netns(&self) -> Option<u32> {
        self.host_netns
    }

    /// Names of `keys` now, every namespace taken as root's.
    pub fn resolve(&mut self, keys: &[IfaceKey]) -> BTreeMap<IfaceKey, IfaceName> {
        self.resolve_with(keys, &|_| false, &|_| None)
    }

    /// Names of `keys` now. A namespace is found through an `ip netns` file or through
    /// `/proc/<pid>/ns/net` of the process `pid_of` names for it (the eBPF side notes
    /// one). Root's namespaces (bounded by what root creates) are asked every call, as
    /// their interfaces may be renamed, and looked for in /proc when nothing else
    /// refers to them; namespaces users own (`user_owned`) are never looked for in /proc,
    /// their interfaces are named once, and at most [`NAMESPACES_PER_RESOLVE`] of them
    /// are looked for per call.
    pub fn resolve_with(
        &mut self,
        keys: &[IfaceKey],
        user_owned: &dyn Fn(u32) -> bool,
        pid_of: &dyn Fn(u32) -> Option<u32>,
    ) -> BTreeMap<IfaceKey, IfaceName> {
        let mut by_ns: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for &(netns, ifindex) in keys {
            by_ns.entry(netns).or_default().push(ifindex);
        }
        let mut budget = NAMESPACES_PER_RESOLVE;
        let mut run_netns = None;
        let mut out = BTreeMap::new();
        for (netns, ifindexes) in by_ns {
            let names = if Some(netns) == self.host_netns {
                self.host_names(&ifindexes)
            } else if user_owned(netns) {
                let run_netns = run_netns.get_or_insert_with(run_netns_files);
                self.user_names(netns, &ifindexes, &mut budget, run_netns, pid_of(netns))
            } else {
                let run_netns = run_netns.get_or_insert_with(run_netns_files);
                self.root_names(netns, &ifindexes, run_netns, pid_of(netns))
            };
            out.extend(ifindexes.into_iter().map(|i| (netns, i)).zip(names));
        }
        out
    }

    /// Drops what is known of interfaces whose map entries were deleted, and of
    /// namespaces other than `live` (those some entry still has): the memory kept is
    /// bounded by the maps.
    pub fn forget(&mut self, keys: &[IfaceKey], live: &HashSet<u32>) {
        for key in keys {
            self.known.remove(key);
        }
        self.ns_files.retain(|netns, _| live.contains(netns));
        self.not_found.retain(|netns, _| live.contains(netns));
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

    /// Names in a namespace a user owns: asked once per interface, within `budget`.
    fn user_names(
        &mut self,
        netns: u32,
        ifindexes: &[u32],
        budget: &mut usize,
        run_netns: &HashMap<u32, PathBuf>,
        pid: Option<u32>,
    ) -> Vec<IfaceName> {
        let missing: Vec<u32> = ifindexes
            .iter()
            .copied()
            .filter(|i| !self.known.contains_key(&(netns, *i)))
            .collect();
        if !missing.is_empty() && *budget > 0 && self.worth_looking(netns) {
            *budget -= 1;
            let found = self.ns_file(netns, run_netns, pid);
            if let Some(names) = self.ask_inside(netns, found, &missing) {
                for (ifindex, name) in missing.into_iter().zip(names) {
                    if name != IfaceName::Unknown {
                        self.known.insert((netns, ifindex), name);
                    }
                }
            }
        }
        ifindexes
            .iter()
            .map(|i| {
                let name = self.known.get(&(netns, *i)).cloned();
                name.unwrap_or(IfaceName::Unknown)
            })
            .collect()
    }

    /// Names in another namespace of root's, asked now (root's namespaces are few).
    fn root_names(
        &mut self,
        netns: u32,
        ifindexes: &[u32],
        run_netns: &HashMap<u32, PathBuf>,
        pid: Option<u32>,
    ) -> Vec<IfaceName> {
        let mut found = self.ns_file(netns, run_netns, pid);
        if found.is_none() && self.worth_looking(netns) {
            found = proc_ns_files(&self.paths).remove(&netns);
        }
        if let Some(path) = &found {
            self.ns_files.insert(netns, path.clone());
        }
        self.ask_inside(netns, found, ifindexes)
            .unwrap_or_else(|| vec![IfaceName::Unknown; ifindexes.len()])
    }

    /// Enters the namespace through `found` on a throw-away thread and asks for the
    /// names of `ifindexes`; `None` when it could not be found or entered.
    fn ask_inside(
        &mut self,
        netns: u32,
        found: Option<PathBuf>,
        ifindexes: &[u32],
    ) -> Option<Vec<IfaceName>> {
        let Some(path) = found else {
            self.not_found.insert(netns, Instant::now());
            return None;
        };
        self.not_found.remove(&netns);
        let wanted = ifindexes.to_vec();
        std::thread::spawn(move || names_inside(&path, netns, &wanted))
            .join()
            .ok()
            .flatten()
    }

    /// The file found to refer to `netns` when its interfaces were last named (no lookup
    /// here: naming is where the cost of finding namespaces is bounded).
    pub fn known_ns_file(&self, netns: u32) -> Option<PathBuf> {
        self.ns_files.get(&netns).cloned()
    }

    /// A file referring to `netns` now: the one found before if it still does, an
    /// `ip netns` file, or the namespace file of `pid`.
    fn ns_file(
        &mut self,
        netns: u32,
        run_netns: &HashMap<u32, PathBuf>,
        pid: Option<u32>,
    ) -> Option<PathBuf> {
        let candidates = [
            self.ns_files.get(&netns).cloned(),
            run_netns.get(&netns).cloned(),
            pid.map(|pid| self.paths.proc(format!("{pid}/ns/net"))),
        ];
        let found = candidates
            .into_iter()
            .flatten()
            .find(|path| ns_inode_of_file(path) == Some(netns))?;
        self.ns_files.insert(netns, found.clone());
        Some(found)
    }

    /// A namespace not seen before is looked for at once; one missed before only after
    /// [`RESCAN`].
    fn worth_looking(&self, netns: u32) -> bool {
        self.not_found
            .get(&netns)
            .is_none_or(|at| at.elapsed() >= RESCAN)
    }
}

/// Runs on a throw-away thread: enters the namespace and asks for the names there.
fn names_inside(ns_file: &Path, netns: u32, ifindexes: &[u32]) -> Option<Vec<IfaceName>> {
    enter(ns_file, netns)?;
    Some(ifindexes.iter().map(|&i| name_of_index(i)).collect())
}

/// Moves the calling thread (only it: call it on a throw-away thread) into the network
/// namespace `ns_file` refers to, which must still be namespace `netns` (a process's pid
/// may have been reused); `None` when it cannot.
pub fn enter(ns_file: &Path, netns: u32) -> Option<()> {
    let file = fs::File::open(ns_file).ok()?;
    if file.metadata().ok()?.ino() as u32 != netns {
        return None;
    }
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

/// Network namespaces of processes, by inode: a walk of /proc, for root's namespaces
/// only (at most once per [`RESCAN`] for one that is not found).
fn proc_ns_files(paths: &HostPaths) -> HashMap<u32, PathBuf> {
    let mut found = HashMap::new();
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

/// `ip netns` bind mounts by namespace inode (only root can make them: a bounded read).
fn run_netns_files() -> HashMap<u32, PathBuf> {
    let mut found = HashMap::new();
    for dir in ["/run/netns", "/var/run/netns"] {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            if let Some(inode) = ns_inode_of_file(&entry.path()) {
                found.entry(inode).or_insert(entry.path());
            }
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
