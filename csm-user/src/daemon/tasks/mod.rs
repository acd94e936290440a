//! One task per collector. Each samples on its own wall-clock aligned schedule, sends
//! rows, and takes a last sample when told to stop.

pub mod cpu;
pub mod mem;
pub mod net;
pub mod net_proc;
pub mod ping;
pub mod ubc;

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{spawn_local, JoinHandle};
use tokio::time::sleep;

use super::backend::Collectors;
use super::schedule::until_next_boundary;
use super::{Ctx, KeepAlive};
use crate::model::netdev;
use crate::sources::procfs::ubc::UbcSampler;

/// Starts every collector the backend provides.
pub fn spawn_all(collectors: Collectors, ctx: &Ctx) -> (Vec<JoinHandle<()>>, KeepAlive) {
    let mut handles = Vec::new();
    let mut keep_alive: KeepAlive = Vec::new();
    let Collectors {
        cpu,
        cpu_source,
        net,
        ebpf,
        resume_cpu,
        resume_net,
        resume_netdev,
        ..
    } = collectors;
    handles.push(spawn_local(cpu::run(
        ctx.clone(),
        cpu,
        cpu_source,
        resume_cpu,
    )));
    // /proc/net/dev only when no eBPF network collector runs.
    let net_from_proc = net.is_none();
    if let Some(net) = net {
        handles.push(spawn_local(net::run(ctx.clone(), net, resume_net)));
    }
    handles.extend(spawn_proc_collectors(ctx, net_from_proc, resume_netdev));
    handles.extend(ping::spawn(ctx));
    if let Some(loaded) = ebpf {
        keep_alive.push(std::rc::Rc::new(loaded));
    }
    (handles, keep_alive)
}

/// The /proc collectors (issue 4): memory for every backend, beancounters where the host
/// has them, and /proc/net/dev when eBPF does not count traffic (resuming from the sample
/// a crashed run last wrote, if any).
fn spawn_proc_collectors(
    ctx: &Ctx,
    net_from_proc: bool,
    resume_netdev: Option<netdev::NetSample>,
) -> Vec<JoinHandle<()>> {
    let mut handles = vec![spawn_local(mem::run(ctx.clone()))];
    if let Some(sampler) = UbcSampler::new(ctx.settings.paths.clone()) {
        handles.push(spawn_local(ubc::run(ctx.clone(), sampler)));
    }
    if net_from_proc {
        handles.push(spawn_local(net_proc::run(ctx.clone(), resume_netdev)));
    }
    handles
}

/// What a periodic step is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A scheduled tick.
    Tick,
    /// The last sample before the daemon stops.
    Final,
}

/// Calls `step` on every tick aligned to multiples of `interval`, and once more with
/// [`Step::Final`] when the daemon stops.
pub async fn every(
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut step: impl FnMut(Step),
) {
    loop {
        tokio::select! {
            _ = sleep(until_next_boundary(interval)) => step(Step::Tick),
            _ = shutdown.changed() => {
                step(Step::Final);
                return;
            }
        }
    }
}
