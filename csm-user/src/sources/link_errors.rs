//! The kernel's own error and drop counters of every interface of some network
//! namespaces, keyed like the eBPF maps: (namespace inode, ifindex).
//!
//! Not counted by eBPF: drops and errors happen in drivers (veth keeps its drops in
//! per-CPU stats that `dev_get_stats` sums), in the core and in places no netdev
//! tracepoint sees, and counting `kfree_skb` reasons would count other events than the
//! counters `ip -s link` and `sar -n EDEV` show. Reading those counters is exact and costs
//! one read of the namespace's `net/dev` per interval:
//! - the daemon's own namespace: `<proc-root>/net/dev`, each ifindex from
//!   `<sys-root>/class/net/<iface>/ifindex` (so `--proc-root`/`--sys-root` fixtures work);
//! - another namespace: a throw-away thread enters it through the file
//!   [`IfaceNames::known_ns_file`] found when it named them, reads `/proc/thread-self/net/dev`
//!   (the namespace of the reading thread) and asks `if_nametoindex` for each name. The
//!   open namespace file pins the namespace: what is read is that namespace's, even if
//!   the process the file belongs to exits meanwhile.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};

use crate::model::net::IfaceKey;
use crate::model::LinkErrors;
use crate::sources::host::HostPaths;
use crate::sources::netns::{self, IfaceNames};
use crate::sources::procfs::netdev::parse_net_dev;
use crate::sources::procfs::{read_text, WarnOnce};

pub struct LinkErrorsReader {
    paths: HostPaths,
    warnings: WarnOnce,
}

impl LinkErrorsReader {
    pub fn new(paths: HostPaths) -> Self {
        LinkErrorsReader {
            paths,
            warnings: WarnOnce::default(),
        }
    }

    /// The counters of every interface of the daemon's namespace and of `namespaces`
    /// (those csm could enter; the others have none).
    pub fn read(
        &mut self,
        names: &mut IfaceNames,
        namespaces: impl IntoIterator<Item = u32>,
    ) -> BTreeMap<IfaceKey, LinkErrors> {
        let mut out = BTreeMap::new();
        let host = names.host_netns();
        if let Some(host) = host {
            for (ifindex, errors) in self.host() {
                out.insert((host, ifindex), errors);
            }
        }
        let mut foreign: Vec<u32> = namespaces
            .into_iter()
            .filter(|n| Some(*n) != host)
            .collect();
        foreign.sort_unstable();
        foreign.dedup();
        for netns in foreign {
            let Some(ns_file) = names.known_ns_file(netns) else {
                continue;
            };
            for (ifindex, errors) in read_inside(ns_file, netns).unwrap_or_default() {
                out.insert((netns, ifindex), errors);
            }
        }
        out
    }

    fn host(&mut self) -> Vec<(u32, LinkErrors)> {
        let path = self.paths.proc("net/dev");
        let text = match read_text(&path) {
            Ok(text) => text,
            Err(err) => {
                self.warnings.warn(format!("{}: {err}", path.display()));
                return Vec::new();
            }
        };
        let parsed = parse_net_dev(&text);
        self.warnings.lines(&path, &parsed.warnings);
        let ifindex_of = |name: &str| {
            let path = self.paths.sys(format!("class/net/{name}/ifindex"));
            read_text(&path).ok()?.trim().parse().ok()
        };
        by_ifindex(parsed.value, ifindex_of)
    }
}

/// `(ifindex, counters)` of the interfaces whose ifindex is known; names are the
/// kernel's (never `/`, `.` or `..`: `dev_valid_name`), checked anyway since they become
/// a path under `--sys-root`.
fn by_ifindex(
    ifaces: Vec<crate::sources::procfs::netdev::IfaceCounters>,
    ifindex_of: impl Fn(&str) -> Option<u32>,
) -> Vec<(u32, LinkErrors)> {
    ifaces
        .into_iter()
        .filter(|i| !i.name.contains('/') && i.name != "." && i.name != "..")
        .filter_map(|i| Some((ifindex_of(&i.name)?, i.link?)))
        .collect()
}

/// Runs a throw-away thread inside the namespace `ns_file` refers to.
fn read_inside(ns_file: PathBuf, netns: u32) -> Option<Vec<(u32, LinkErrors)>> {
    std::thread::spawn(move || {
        netns::enter(&ns_file, netns)?;
        let text = read_text(Path::new("/proc/thread-self/net/dev")).ok()?;
        Some(by_ifindex(parse_net_dev(&text).value, index_of_name))
    })
    .join()
    .ok()
    .flatten()
}

/// The ifindex of `name` in the calling thread's namespace.
fn index_of_name(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // SAFETY: a NUL-terminated name; if_nametoindex only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_counters_keyed_by_the_sys_root_ifindex() {
        let dir = tempfile::tempdir().unwrap();
        let (proc, sys) = (dir.path().join("proc"), dir.path().join("sys"));
        std::fs::create_dir_all(proc.join("net")).unwrap();
        std::fs::write(
            proc.join("net/dev"),
            "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n  \
             eth0: 100 1 2 3 0 0 0 0 200 2 4 5 0 0 0 0\n  \
             gone: 100 1 9 9 0 0 0 0 200 2 9 9 0 0 0 0\n",
        )
        .unwrap();
        // The daemon's namespace, as /proc/self/ns/net names it.
        std::fs::create_dir_all(proc.join("self/ns")).unwrap();
        std::os::unix::fs::symlink("net:[4026531999]", proc.join("self/ns/net")).unwrap();
        std::fs::create_dir_all(sys.join("class/net/eth0")).unwrap();
        std::fs::write(sys.join("class/net/eth0/ifindex"), "7\n").unwrap();
        let paths = HostPaths {
            proc_root: proc,
            sys_root: sys,
        };
        let mut names = IfaceNames::new(paths.clone());
        let host = names.host_netns();
        assert_eq!(host, Some(4026531999));
        let host = 4026531999;
        let got = LinkErrorsReader::new(paths).read(&mut names, [host]);
        let expected = LinkErrors {
            rx_errors: 2,
            tx_errors: 4,
            rx_dropped: 3,
            tx_dropped: 5,
        };
        assert_eq!(got, BTreeMap::from([((host, 7), expected)]));
    }
}
