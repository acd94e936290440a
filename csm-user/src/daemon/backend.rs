//! Backend selection: eBPF where it loads and attaches, /proc otherwise (`--backend`).

use anyhow::Result;
use tracing::warn;

use crate::cli::config::Settings;
use crate::cli::Backend;
use crate::model::CpuSample;
use crate::sources::ebpf::{self, CpuReader, Loaded, NetReader};
use crate::sources::SourceError;

use super::RunError;

/// Something that gives cumulative CPU ns per uid.
pub trait CpuSampler {
    fn sample(&mut self) -> Result<CpuSample>;
}

impl CpuSampler for CpuReader {
    fn sample(&mut self) -> Result<CpuSample> {
        CpuReader::sample(self)
    }
}

/// The running collectors; dropping them detaches the eBPF programs.
pub struct Collectors {
    pub cpu: Box<dyn CpuSampler>,
    /// The `source` column value of cpu rows.
    pub cpu_source: &'static str,
    /// Traffic per interface and uid (eBPF only).
    pub net: Option<NetReader>,
    /// Which backend runs and why, for the log and the `events` table.
    pub description: String,
    /// Keeps the eBPF programs attached while collecting.
    pub ebpf: Option<Loaded>,
}

pub fn select(settings: &Settings) -> Result<Collectors, RunError> {
    match settings.backend {
        Backend::Ebpf => {
            start_ebpf(settings).map_err(|err| RunError::runtime(format!("--backend ebpf: {err}")))
        }
        Backend::Auto => match start_ebpf(settings) {
            Ok(collectors) => Ok(collectors),
            Err(SourceError::Unsupported { what, why }) => {
                warn!("{what} is not supported here ({why})");
                start_proc(settings, &format!("{what} unsupported: {why}"))
            }
            Err(err) => Err(RunError::runtime(format!("eBPF backend failed: {err:#}"))),
        },
        Backend::Proc => start_proc(settings, "--backend proc"),
    }
}

fn start_ebpf(settings: &Settings) -> Result<Collectors, SourceError> {
    let mut loaded = ebpf::load_and_attach(&settings.paths)?;
    let cpu = CpuReader::new(&mut loaded, settings.paths.clone())?;
    let mut description = format!("ebpf ({})", loaded.sched.describe());
    if let Some(reason) = &loaded.fallback_reason {
        description.push_str(&format!("; tp_btf unavailable: {reason}"));
    }
    let net = start_net(&mut loaded, &mut description);
    Ok(Collectors {
        cpu: Box::new(cpu),
        cpu_source: "ebpf",
        net,
        description,
        ebpf: Some(loaded),
    })
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

fn start_proc(_settings: &Settings, why: &str) -> Result<Collectors, RunError> {
    Err(RunError::runtime(format!(
        "nothing can be collected: {why}, and the /proc backend is not available in this build"
    )))
}
