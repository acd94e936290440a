//! Loading and attaching: the one path both the daemon and the root tests use.

use std::fs;
use std::path::Path;

use anyhow::Context;
use aya::programs::{BtfTracePoint, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};
use csm_common::{names, NetOffsets, SwitchFormat, TaskOffsets};
use tracing::{debug, info};

use super::net::NetAttached;
use super::{btf, EBPF_OBJECT};
use crate::sources::host::HostPaths;
use crate::sources::SourceError;

/// Which scheduler program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedVariant {
    /// tp_btf: charges `se.sum_exec_runtime` deltas (the kernel's own accounting).
    BtfTracePoint,
    /// Classic tracepoint: charges wall time between switches (kernels without BTF).
    ClassicTracePoint,
}

impl SchedVariant {
    pub fn describe(self) -> &'static str {
        match self {
            SchedVariant::BtfTracePoint => "tp_btf sched_switch",
            SchedVariant::ClassicTracePoint => "tracepoint sched/sched_switch",
        }
    }
}

/// Loaded and attached programs; dropping it detaches them and frees the maps.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub sched: SchedVariant,
    /// Why tp_btf was not used, when the classic tracepoint runs instead.
    pub fallback_reason: Option<String>,
    /// Which network programs are attached.
    pub net: NetAttached,
}

const WHAT: &str = "eBPF";

/// Loads csm's eBPF object and attaches the scheduler program, tp_btf first and the
/// classic tracepoint second. `Unsupported` means this host cannot run eBPF at all.
pub fn load_and_attach(paths: &HostPaths) -> Result<Loaded, SourceError> {
    check_privileges()?;
    let btf_path = paths.vmlinux_btf();
    let offsets = match btf::task_offsets(&btf_path) {
        Ok(offsets) => Some(offsets),
        Err(err) => {
            debug!("no task_struct offsets: {err:#}");
            None
        }
    };
    let format = switch_format(paths).unwrap_or_default();
    let net_offsets = btf::net_offsets(&btf_path).map_err(|err| format!("{err:#}"));
    let mut ebpf = load_object(
        offsets.unwrap_or_default(),
        format,
        net_offsets.clone().unwrap_or_default(),
    )?;

    let btf_attempt = match offsets {
        Some(_) => attach_sched_btf(&mut ebpf, &btf_path),
        None => Err(format!("no usable BTF at {}", btf_path.display())),
    };
    let (sched, fallback_reason) = match btf_attempt {
        Ok(()) => (SchedVariant::BtfTracePoint, None),
        Err(why_not_btf) => {
            attach_sched_classic(&mut ebpf, paths).map_err(|why| {
                SourceError::unsupported(
                    WHAT,
                    format!("tp_btf: {why_not_btf}; classic tracepoint: {why}"),
                )
            })?;
            info!("tp_btf sched_switch unavailable ({why_not_btf}); using the classic tracepoint");
            (SchedVariant::ClassicTracePoint, Some(why_not_btf))
        }
    };
    let net = super::net::attach(&mut ebpf, paths, net_offsets.err());
    Ok(Loaded {
        ebpf,
        sched,
        fallback_reason,
        net,
    })
}

fn check_privileges() -> Result<(), SourceError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(SourceError::unsupported(
            WHAT,
            "loading eBPF needs root (CAP_BPF and CAP_PERFMON); run csm as root",
        ));
    }
    Ok(())
}

fn load_object(
    offsets: TaskOffsets,
    format: SwitchFormat,
    net: NetOffsets,
) -> Result<Ebpf, SourceError> {
    raise_memlock_limit();
    EbpfLoader::new()
        .override_global("TASK_OFFSETS", &offsets, true)
        .override_global("SWITCH_FORMAT", &format, true)
        .override_global("NET_OFFSETS", &net, true)
        .load(EBPF_OBJECT)
        .map_err(|err| {
            SourceError::unsupported(WHAT, format!("loading the eBPF object failed: {err}"))
        })
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid pointer to a local rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        debug!("cannot raise RLIMIT_MEMLOCK; fine on kernels that account BPF memory to cgroups");
    }
}

fn attach_sched_btf(ebpf: &mut Ebpf, btf_path: &Path) -> Result<(), String> {
    let btf = Btf::parse_file(btf_path, aya::Endianness::default())
        .map_err(|err| format!("cannot parse {}: {err}", btf_path.display()))?;
    let program: &mut BtfTracePoint = ebpf
        .program_mut(names::PROG_SCHED_SWITCH_BTF)
        .ok_or("program missing from the object")?
        .try_into()
        .map_err(|err| format!("{err}"))?;
    program.load("sched_switch", &btf).map_err(|err| {
        format!(
            "load {}: {}",
            names::PROG_SCHED_SWITCH_BTF,
            verifier_summary(&err)
        )
    })?;
    program
        .attach()
        .map_err(|err| format!("attach {}: {err}", names::PROG_SCHED_SWITCH_BTF))?;
    Ok(())
}

fn attach_sched_classic(ebpf: &mut Ebpf, paths: &HostPaths) -> Result<(), String> {
    if paths.is_live() {
        ensure_tracefs();
    }
    let program: &mut TracePoint = ebpf
        .program_mut(names::PROG_SCHED_SWITCH_TP)
        .ok_or("program missing from the object")?
        .try_into()
        .map_err(|err| format!("{err}"))?;
    program.load().map_err(|err| {
        format!(
            "load {}: {}",
            names::PROG_SCHED_SWITCH_TP,
            verifier_summary(&err)
        )
    })?;
    program
        .attach("sched", "sched_switch")
        .map_err(|err| format!("attach {}: {err}", names::PROG_SCHED_SWITCH_TP))?;
    Ok(())
}

/// Classic tracepoints attach through tracefs; mount it where it is missing (as root).
fn ensure_tracefs() {
    let target = Path::new("/sys/kernel/tracing");
    if target.join("events").exists() || !target.exists() {
        return;
    }
    let (source, fstype, dir) = (c"tracefs", c"tracefs", c"/sys/kernel/tracing");
    // SAFETY: NUL-terminated constant strings; no data argument.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            dir.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        info!("mounted tracefs at /sys/kernel/tracing");
    } else {
        debug!("cannot mount tracefs: {}", std::io::Error::last_os_error());
    }
}

/// The verifier's log is long; the last lines say why.
pub(super) fn verifier_summary(err: &aya::programs::ProgramError) -> String {
    let text = format!("{err:#}");
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines.len().saturating_sub(12);
    lines[tail..].join(" / ")
}

/// Field offsets of the classic `sched_switch` record, from tracefs (the defaults when
/// tracefs is not mounted: they have not changed since 2.6.32).
fn switch_format(paths: &HostPaths) -> anyhow::Result<SwitchFormat> {
    let candidates = [
        paths.sys("kernel/tracing/events/sched/sched_switch/format"),
        paths.sys("kernel/debug/tracing/events/sched/sched_switch/format"),
    ];
    let path = candidates
        .iter()
        .find(|p| p.exists())
        .context("sched_switch format not found in tracefs")?;
    let text = fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    parse_switch_format(&text).with_context(|| format!("parse {}", path.display()))
}

pub fn parse_switch_format(text: &str) -> anyhow::Result<SwitchFormat> {
    let offset = |field: &str| -> anyhow::Result<u32> {
        let line = text
            .lines()
            .find(|l| l.contains(&format!(" {field};")))
            .with_context(|| format!("no field {field}"))?;
        let value = line
            .split(';')
            .find_map(|part| part.trim().strip_prefix("offset:"))
            .with_context(|| format!("no offset for {field}"))?;
        Ok(value.trim().parse()?)
    };
    Ok(SwitchFormat {
        prev_pid: offset("prev_pid")?,
        next_pid: offset("next_pid")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_tracefs_format() {
        let text = "name: sched_switch\nID: 316\nformat:\n\
            \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
            \tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
            \tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;\n\
            \tfield:char next_comm[16];\toffset:40;\tsize:16;\tsigned:0;\n\
            \tfield:pid_t next_pid;\toffset:56;\tsize:4;\tsigned:1;\n";
        assert_eq!(
            parse_switch_format(text).unwrap(),
            SwitchFormat {
                prev_pid: 24,
                next_pid: 56
            }
        );
        assert!(parse_switch_format("garbage").is_err());
    }
}
