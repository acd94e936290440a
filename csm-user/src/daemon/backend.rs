//! Backend selection: eBPF where it loads and attaches, /proc otherwise (`--backend`).

use anyhow::Result;
use tracing::warn;

use super::settings::{Backend, Settings};
use crate::model::{netdev, CpuSample, NetSample};
use crate::sources::ebpf::mem::MemIter;
use crate::sources::ebpf::pins::PinDir;
use crate::sources::ebpf::{self, CpuReader, Loaded, NetReader};
use crate::sources::host::HostPaths;
use crate::sources::procfs::cpu::{ChildTimes, ProcCpuSampler};
use crate::sources::procfs::platform;
use crate::sources::taskstats::ExitListener;
use crate::sources::SourceError;

use super::error::RunError;
use super::tasks::cpu::CpuCollector;

/// The running collectors; dropping them detaches the eBPF programs.
pub struct Collectors {
    pub cpu: CpuCollector,
    /// Traffic per interface and uid (eBPF only).
    pub net: Option<NetReader>,
    /// RSS and swap of every process from the eBPF task iterator (else /proc).
    pub mem: Option<MemIter>,
    /// Which backend runs and why, for the log and the `events` table.
    pub description: String,
    /// Keeps the eBPF programs attached while collecting.
    pub ebpf: Option<Loaded>,
    /// Where the eBPF state is pinned (removed at a clean stop).
    pub pins: Option<PinDir>,
    /// Identity of the cumulative counters; see `Loaded::instance`.
    pub instance: Option<String>,
    /// Pinned counters of a crashed run were adopted.
    pub adopted: bool,
    /// What happened to pinned state at start, for the `events` table.
    pub notes: Vec<String>,
    /// The last CPU sample the previous run wrote, when its counters were adopted: the
    /// first interval then covers the time the daemon was down.
    pub resume_cpu: Option<CpuSample>,
    /// The same for traffic: the last sample whose rows the previous run wrote.
    pub resume_net: Option<NetSample>,
    /// The same for `/proc/net/dev` (when eBPF does not count traffic), same boot only.
    pub resume_netdev: Option<netdev::NetSample>,
}

pub fn select(settings: &Settings) -> Result<Collectors, RunError> {
    let collectors = select_backend(settings);
    release_startup_memory();
    collectors
}

/// Loading parses the kernel's BTF (megabytes); give the freed heap back to the system so
/// that the daemon's resident size reflects what it keeps, not its start-up peak.
fn release_startup_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn select_backend(settings: &Settings) -> Result<Collectors, RunError> {
    match settings.backend {
        Backend::Ebpf => {
            start_ebpf(settings).map_err(|err| RunError::runtime(format!("--backend ebpf: {err}")))
        }
        Backend::Auto => match platform::ebpf_ruled_out(&settings.paths) {
            Some(why) => {
                warn!("not trying eBPF: {why}");
                start_proc(settings, &why)
            }
            None => auto(settings),
        },
        Backend::Proc => start_proc(settings, "--backend proc"),
    }
}

/// eBPF where it loads and attaches, else /proc.
fn auto(settings: &Settings) -> Result<Collectors, RunError> {
    match start_ebpf(settings) {
        Ok(collectors) => Ok(collectors),
        Err(SourceError::Unsupported { what, why }) => {
            warn!("{what} is not supported here ({why})");
            start_proc(settings, &format!("{what} unsupported: {why}"))
        }
        Err(err) => Err(RunError::runtime(format!("eBPF backend failed: {err:#}"))),
    }
}

fn start_ebpf(settings: &Settings) -> Result<Collectors, SourceError> {
    let mut loaded = ebpf::load_pinned(&settings.paths, &settings.data_dir)?;
    let cpu = CpuReader::new(&mut loaded, settings.paths.clone())?;
    let mut description = format!("ebpf ({})", loaded.sched.describe());
    if let Some(reason) = &loaded.fallback_reason {
        description.push_str(&format!("; tp_btf unavailable: {reason}"));
    }
    let net = start_net(&mut loaded, &mut description);
    let mem = start_mem(&mut loaded, &mut description);
    Ok(Collectors {
        cpu: CpuCollector::ebpf(cpu),
        net,
        mem,
        description,
        pins: loaded.pins.clone(),
        instance: loaded.instance.clone(),
        adopted: loaded.adopted,
        notes: std::mem::take(&mut loaded.notes),
        resume_cpu: None,
        resume_net: None,
        resume_netdev: None,
        ebpf: Some(loaded),
    })
}

/// The memory iterator, or why memory comes from /proc status files (in the `backend`
/// event either way).
fn start_mem(loaded: &mut Loaded, description: &mut String) -> Option<MemIter> {
    match std::mem::replace(&mut loaded.mem, Err("taken".into())) {
        Ok(iter) => {
            description.push_str("; mem rss/swap by task iterator");
            Some(iter)
        }
        Err(why) => {
            warn!("memory: no eBPF task iterator ({why}); RSS and swap from /proc");
            description.push_str(&format!("; mem from /proc (no task iterator: {why})"));
            None
        }
    }
}

fn start_net(loaded: &mut Loaded, description: &mut String) -> Option<NetReader> {
    for problem in &loaded.net.problems {
        warn!("network: {problem}");
        description.push_str(&format!("; {problem}"));
    }
    // The `backend` event says what is measured, so "no rows" reads as "no traffic".
    if loaded.net.ifaces {
        description.push_str("; net per interface (tp_btf netdev)");
    }
    if loaded.net.uids {
        description.push_str("; net per uid (cgroup_skb)");
    }
    if !loaded.net.ifaces && !loaded.net.uids {
        return None;
    }
    NetReader::new(loaded)
        .map_err(|err| warn!("network traffic is not collected: {err:#}"))
        .ok()
}

/// The kernel's exit records (taskstats), which give the /proc sampler the time of a
/// process between its last sample and its exit; on this machine's kernel only (a
/// `--proc-root` tree's pids are not the kernel's). Also `csm top --backend proc`'s.
pub(crate) fn exit_listener(paths: &HostPaths) -> Option<ExitListener> {
    if !paths.is_live() {
        return None;
    }
    let possible = paths.sys("devices/system/cpu/possible");
    let cpus = crate::sources::procfs::read_text(&possible)
        .map_err(|err| warn!("cpu: no exit records: read {}: {err}", possible.display()))
        .ok()?;
    ExitListener::open(cpus.trim())
        .map_err(|err| {
            warn!("cpu: no exit records (a process's time after its last sample goes to its parent's uid): {err}")
        })
        .ok()
}

fn start_proc(settings: &Settings, why: &str) -> Result<Collectors, RunError> {
    let mut cpu = ProcCpuSampler::new(settings.paths.clone(), ChildTimes::Recover);
    if let Some(listener) = exit_listener(&settings.paths) {
        cpu = cpu.with_exit_records(listener);
    }
    Ok(Collectors {
        cpu: CpuCollector::proc(cpu),
        net: None,
        mem: None,
        description: format!("proc ({why})"),
        ebpf: None,
        pins: None,
        instance: None,
        adopted: false,
        notes: Vec::new(),
        resume_cpu: None,
        resume_net: None,
        resume_netdev: None,
    })
}
