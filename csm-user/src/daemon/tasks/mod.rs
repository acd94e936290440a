//! The collectors, one task each: CPU, traffic (eBPF or /proc/net/dev), memory and
//! beancounters through the common [driver](super::collector::drive), ping on its own
//! per-target schedule.

pub mod cpu;
pub mod mem;
pub mod net;
pub mod net_proc;
pub mod ping;
pub mod ubc;

use tokio::task::{spawn_local, JoinHandle};

use super::backend::Collectors;
use super::collector::drive;
use super::{Ctx, KeepAlive};
use crate::sources::procfs::mem::ProcMemSampler;
use crate::sources::procfs::net::ProcNetSampler;
use crate::sources::procfs::ubc::UbcSampler;

/// Starts every collector the backend provides.
pub fn spawn_all(collectors: Collectors, ctx: &Ctx) -> (Vec<JoinHandle<()>>, KeepAlive) {
    let settings = &ctx.settings;
    let Collectors {
        cpu,
        net,
        ebpf,
        resume_cpu,
        resume_net,
        resume_netdev,
        ..
    } = collectors;
    let mut handles = vec![spawn_local(drive(
        ctx.clone(),
        cpu,
        settings.interval,
        resume_cpu,
    ))];
    // /proc/net/dev only when no eBPF network collector runs.
    handles.push(match net {
        Some(reader) => {
            let net = net::NetCollector::new(reader, settings.paths.clone());
            spawn_local(drive(ctx.clone(), net, settings.interval, resume_net))
        }
        None => {
            let net = ProcNetSampler::new(settings.paths.clone());
            spawn_local(drive(ctx.clone(), net, settings.interval, resume_netdev))
        }
    });
    handles.extend(spawn_gauges(ctx));
    handles.extend(ping::spawn(ctx));
    let mut keep_alive: KeepAlive = Vec::new();
    if let Some(loaded) = ebpf {
        keep_alive.push(std::rc::Rc::new(loaded));
    }
    (handles, keep_alive)
}

/// Memory for every backend, and beancounters where the host has them.
fn spawn_gauges(ctx: &Ctx) -> Vec<JoinHandle<()>> {
    let settings = &ctx.settings;
    let mem = mem::MemCollector::new(ProcMemSampler::new(settings.paths.clone()));
    let mut handles = vec![spawn_local(drive(
        ctx.clone(),
        mem,
        settings.mem_interval,
        None,
    ))];
    if let Some(sampler) = UbcSampler::new(settings.paths.clone()) {
        handles.push(spawn_local(drive(
            ctx.clone(),
            sampler,
            settings.mem_interval,
            None,
        )));
    }
    handles
}
