//! Attaching the network programs (netdev tracepoints, cgroup_skb), and the verifier
//! summary every attach error shows. The loader calls this; the map readers never do.

use std::fs;
use std::path::PathBuf;

use aya::programs::cgroup_skb::CgroupSkbAttachType;
use aya::programs::links::FdLink;
use aya::programs::{BtfTracePoint, CgroupAttachMode, CgroupSkb, Program, ProgramError};
use aya::{Btf, Ebpf};
use csm_common::names;

use crate::sources::host::HostPaths;

/// Which network programs run; what is missing says why.
#[derive(Clone, Debug, Default)]
pub struct NetAttached {
    /// Per-interface counters (tp_btf `net_dev_xmit` and `netif_receive_skb`).
    pub ifaces: bool,
    /// Per-uid counters (cgroup_skb on the cgroup2 root).
    pub uids: bool,
    pub problems: Vec<String>,
}

/// Attaches the network programs. Failing here never stops CPU accounting: what could
/// not attach is reported in [`NetAttached::problems`].
/// `netdev_btf` holds the tp_btf attach points, or says why the netdev programs cannot
/// run (no field offsets, no BTF).
pub fn attach_net(
    ebpf: &mut Ebpf,
    paths: &HostPaths,
    netdev_btf: Result<&Btf, String>,
) -> (NetAttached, Vec<(&'static str, FdLink)>) {
    let mut net = NetAttached::default();
    let mut links = Vec::new();
    let ifaces = netdev_btf.and_then(|btf| attach_netdev(ebpf, btf));
    match ifaces {
        Ok(held) => {
            net.ifaces = true;
            links.extend(held);
        }
        Err(why) => net.problems.push(format!("per-interface traffic: {why}")),
    }
    match attach_cgroup_skb(ebpf, paths) {
        Ok(held) => {
            net.uids = true;
            links.extend(held);
        }
        Err(why) => net.problems.push(format!("per-uid traffic: {why}")),
    }
    (net, links)
}

/// Links come back as fd links so that the loader can pin them with the maps.
type Links = Vec<(&'static str, FdLink)>;

fn attach_netdev(ebpf: &mut Ebpf, btf: &Btf) -> Result<Links, String> {
    let mut links = Vec::new();
    for (name, tracepoint) in [
        (names::PROG_NET_XMIT_BTF, "net_dev_xmit"),
        (names::PROG_NET_RECV_BTF, "netif_receive_skb"),
    ] {
        let program: &mut BtfTracePoint = program(ebpf, name)?;
        program
            .load(tracepoint, btf)
            .map_err(|err| format!("load {name}: {}", verifier_summary(&err)))?;
        let id = program
            .attach()
            .map_err(|err| format!("attach {name}: {err}"))?;
        let link = program
            .take_link(id)
            .map_err(|err| format!("take link of {name}: {err}"))?;
        links.push((name, FdLink::from(link)));
    }
    Ok(links)
}

fn attach_cgroup_skb(ebpf: &mut Ebpf, paths: &HostPaths) -> Result<Links, String> {
    let root = cgroup2_root(paths)?;
    let cgroup = fs::File::open(&root).map_err(|err| format!("open {}: {err}", root.display()))?;
    let mut links = Vec::new();
    for (name, direction) in [
        (names::PROG_NET_UID_INGRESS, CgroupSkbAttachType::Ingress),
        (names::PROG_NET_UID_EGRESS, CgroupSkbAttachType::Egress),
    ] {
        let program: &mut CgroupSkb = program(ebpf, name)?;
        program
            .load()
            .map_err(|err| format!("load {name}: {}", verifier_summary(&err)))?;
        // A bpf_link (kernel >= 5.7) always coexists with other programs on the cgroup
        // (systemd's, a second csm); link_create takes no flags, hence `Single`.
        let id = program
            .attach(&cgroup, direction, CgroupAttachMode::Single)
            .map_err(|err| {
                format!(
                    "attach {name} to {}: {:#}",
                    root.display(),
                    anyhow::Error::from(err)
                )
            })?;
        let link = program
            .take_link(id)
            .map_err(|err| format!("take link of {name}: {err}"))?;
        let link = FdLink::try_from(link)
            .map_err(|err| format!("{name} is attached without a bpf_link: {err}"))?;
        links.push((name, link));
    }
    Ok(links)
}

/// A program of the object, as the type its hook needs.
fn program<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P, String>
where
    &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| format!("program {name} missing from the object"))?
        .try_into()
        .map_err(|err| format!("{name}: {err}"))
}

/// The cgroup2 mount (the unified hierarchy): `/sys/fs/cgroup` on most hosts,
/// `/sys/fs/cgroup/unified` on hybrid ones. Attached at the root, the programs see every
/// socket of every process.
fn cgroup2_root(paths: &HostPaths) -> Result<PathBuf, String> {
    let mounts_path = paths.proc("mounts");
    let mounts = crate::sources::procfs::read_text(&mounts_path)
        .map_err(|err| format!("read {}: {err}", mounts_path.display()))?;
    parse_cgroup2_mount(&mounts)
        .ok_or_else(|| format!("no cgroup2 mount in {}", mounts_path.display()))
}

pub fn parse_cgroup2_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_source, target, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(unescape_mount(target)))
    })
}

/// /proc/mounts writes spaces and tabs in paths as octal escapes.
fn unescape_mount(path: &str) -> String {
    path.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\134", "\\")
}

/// The verifier's log is long; the last lines say why.
pub fn verifier_summary(err: &aya::programs::ProgramError) -> String {
    let text = format!("{err:#}");
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines.len().saturating_sub(12);
    lines[tail..].join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount() {
        let mounts = "cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n\
            cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";
        assert_eq!(
            parse_cgroup2_mount(mounts),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(parse_cgroup2_mount("proc /proc proc rw 0 0\n"), None);
    }
}
