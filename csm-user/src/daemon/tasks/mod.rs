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
use crate::sources::ebpf::mem::MemIter;
use crate::sources::procfs::mem::ProcMemSampler;
use crate::sources::procfs::net::ProcNetSampler;
use crate::sources::procfs::ubc::UbcSampler;
use csm_store::Event;

/// Starts every collector the backend provides.
pub fn spawn_all(collectors: Collectors, ctx: &Ctx) -> (Vec<JoinHandle<()>>, KeepAlive) {
    let settings = &ctx.settings;
    let Collectors {
        cpu,
        net,
        mem,
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
    handles.push(spawn_gauges(ctx, mem));
    handles.extend(ping::spawn(ctx));
    let mut keep_alive: KeepAlive = Vec::new();
    if let Some(loaded) = ebpf {
        keep_alive.push(std::rc::Rc::new(loaded));
    }
    (handles, keep_alive)
}

/// Memory for every backend, and beancounters where the host has them, on a thread of
/// their own: a memory sample walks every process's `smaps_rollup`, which under load
/// took seconds with 1,000 processes, and on the collectors' thread it held the 1 s
/// CPU and traffic samples back by 3-6 s every 10 s (and the ping schedule with them).
fn spawn_gauges(ctx: &Ctx, iter: Option<MemIter>) -> JoinHandle<()> {
    let ctx = ctx.clone();
    tokio::task::spawn_blocking(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                let why = format!("mem: cannot start its thread: {err}");
                tracing::warn!("{why}");
                ctx.event(Event::CollectorError(why));
                return;
            }
        };
        let gauges = tokio::task::LocalSet::new();
        runtime.block_on(gauges.run_until(drive_gauges(ctx, iter)));
    })
}

async fn drive_gauges(ctx: Ctx, iter: Option<MemIter>) {
    let settings = ctx.settings.clone();
    let proc = ProcMemSampler::new(settings.paths.clone());
    let mem = match iter {
        Some(iter) => mem::MemCollector::with_iterator(proc, iter, settings.pss_interval),
        None => mem::MemCollector::new(proc),
    };
    let mem = spawn_local(drive(ctx.clone(), mem, settings.mem_interval, None));
    if let Some(sampler) = UbcSampler::new(settings.paths.clone()) {
        drive(ctx, sampler, settings.mem_interval, None).await;
    }
    let _ = mem.await;
}
