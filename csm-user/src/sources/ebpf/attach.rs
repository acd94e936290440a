//! Attaching the network programs (netdev tracepoints, cgroup_skb), and the one-line
//! verifier verdict every load error shows. The loader calls this; the map readers never do.

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
            .map_err(|err| load_failure(name, &err))?;
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
        program.load().map_err(|err| load_failure(name, &err))?;
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

/// Why `program` did not load, in one line: `load <program>: <the verifier's verdict>`.
/// The verifier's log runs to hundreds of lines of register states, which the `backend`
/// event and `csm check` would carry whole; the whole log goes to the daemon's log at
/// debug level instead.
pub fn load_failure(program: &str, err: &ProgramError) -> String {
    let text = format!("{err:#}");
    tracing::debug!("load {program}: {text}");
    format!("load {program}: {}", verifier_verdict(&text))
}

/// Longest verdict kept; a verifier line is rarely over 100 characters.
const VERDICT_MAX_CHARS: usize = 200;

/// The line of a load error that says why: aya writes `the BPF_PROG_LOAD syscall returned
/// <errno>. Verifier output: <log>`, and the verifier's log ends with its verdict
/// (`unknown func bpf_probe_read#4`, `R1 invalid mem access 'scalar'`) followed by its
/// statistics; before the verdict come instructions (`12: (85) call …`), source lines
/// (`; …`) and register states (`12: R1=ctx() …`). Without a log, the errno.
pub fn verifier_verdict(text: &str) -> String {
    let (head, log) = match text.split_once("Verifier output:") {
        Some((head, log)) => (head.trim().trim_end_matches('.'), log),
        None => (text.lines().next().unwrap_or("").trim(), ""),
    };
    let verdict = log
        .lines()
        .map(str::trim)
        .rev()
        .find(|line| is_verdict(line))
        .unwrap_or(head);
    match verdict.char_indices().nth(VERDICT_MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &verdict[..cut]),
        None => verdict.to_string(),
    }
}

/// Not a statistic, an instruction, a source line or a register state.
fn is_verdict(line: &str) -> bool {
    const BOOKKEEPING: [&str; 9] = [
        "processed ",
        "verification time",
        "stack depth",
        "max_states_per_insn",
        "from ",
        "last_idx",
        "regs=",
        "parent ",
        "func#",
    ];
    let numbered = line
        .split_once(':')
        .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let register_state = line.starts_with('R')
        && line[1..].starts_with(|c: char| c.is_ascii_digit())
        && line.contains('=');
    let noise = line.is_empty()
        || line.starts_with(';')
        || numbered
        || register_state
        || BOOKKEEPING.iter().any(|p| line.starts_with(p));
    !noise
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_error_is_cut_to_the_verifier_verdict() {
        // As 6.1 booted with lockdown=confidentiality refused net_uid_ingress (abridged).
        let lockdown = "the BPF_PROG_LOAD syscall returned Invalid argument (os error 22). \
            Verifier output: 0: R1=ctx(off=0,imm=0) R10=fp0\n\
            ; let skb = ctx.skb; @ net.rs:40\n\
            0: (bf) r6 = r1                       ; R1=ctx(off=0,imm=0) R6_w=ctx(off=0,imm=0)\n\
            1: (85) call bpf_probe_read#4\n\
            unknown func bpf_probe_read#4\n\
            processed 12 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 1\n\
            verification time 40 usec\nstack depth 16\n";
        assert_eq!(verifier_verdict(lockdown), "unknown func bpf_probe_read#4");
        let access = "the BPF_PROG_LOAD syscall returned Permission denied (os error 13). \
            Verifier output: 5: (79) r1 = *(u64 *)(r2 +0)\nR2 invalid mem access 'scalar'\n\
            processed 6 insns (limit 1000000)\n";
        assert_eq!(verifier_verdict(access), "R2 invalid mem access 'scalar'");
        // No log: the errno.
        assert_eq!(
            verifier_verdict("the BPF_PROG_LOAD syscall returned Operation not permitted (os error 1). Verifier output: "),
            "the BPF_PROG_LOAD syscall returned Operation not permitted (os error 1)"
        );
        assert_eq!(verifier_verdict("program not loaded"), "program not loaded");
        let long = format!("Verifier output: {}\n", "x".repeat(5000));
        assert_eq!(
            verifier_verdict(&long).chars().count(),
            VERDICT_MAX_CHARS + 1
        );
    }

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
