//! The collectors, each on a thread of its own: CPU, traffic (eBPF or /proc/net/dev),
//! memory and beancounters through the common [driver](super::collector::drive), ping on
//! its own per-target schedule.

pub mod cpu;
pub mod mem;
pub mod net;
pub mod net_proc;
pub mod ping;
pub mod ubc;

use std::future::Future;

use tokio::task::{spawn_local, JoinHandle};

use super::backend::Collectors;
use super::collector::drive;
use super::ctx::{Ctx, KeepAlive};
use super::priority::{Level, TimeKeeping};
use crate::sources::ebpf::mem::MemIter;
use crate::sources::procfs::mem::ProcMemSampler;
use crate::sources::procfs::net::ProcNetSampler;
use crate::sources::procfs::ubc::UbcSampler;
use csm_store::Event;

/// Starts every collector the backend provides, each on a thread of its own with its own
/// timers: a slow source (a memory walk, naming namespaces under churn, a flush on the
/// writer's thread) then holds back its own table only, never another table's ticks nor
/// a ping measurement. Under namespace churn, with all of them on one thread, ping
/// measurements started 22 s late and CPU intervals stretched to 7.9 s.
pub fn spawn_all(collectors: Collectors, ctx: &Ctx) -> (Vec<JoinHandle<()>>, KeepAlive) {
    let settings = ctx.settings.clone();
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
    let interval = settings.interval;
    // CPU keeps the daemon's priority: the eBPF reader wakes a thread on each busy CPU to
    // make it switch right before a read (`sources/ebpf/nudge.rs`). Raised, intervals came
    // out over the machine's capacity (202.2 % of 2 cores at SCHED_RR, up to 315 % at nice
    // -10); most of that was the scheduler program's charge after a switch it did not see
    // (`unrecorded_slice` in csm-ebpf's sched.rs, fixed), but at SCHED_RR one run in 8
    // under load still reached 206.8 % after the fix (docs/security.md).
    let mut handles = vec![on_own_thread(ctx, "cpu", None, move |ctx| {
        drive(ctx, cpu, interval, resume_cpu)
    })];
    // /proc/net/dev only when no eBPF network collector runs.
    let paths = settings.paths.clone();
    handles.push(match net {
        Some(reader) => on_own_thread(ctx, "net", Some(Level::Ticks), move |ctx| {
            let net = net::NetCollector::new(reader, paths);
            drive(ctx, net, interval, resume_net)
        }),
        None => on_own_thread(ctx, "net", Some(Level::Ticks), move |ctx| {
            drive(ctx, ProcNetSampler::new(paths), interval, resume_netdev)
        }),
    });
    handles.push(on_own_thread(ctx, "mem", Some(Level::Walks), move |ctx| {
        drive_gauges(ctx, mem)
    }));
    if !settings.ping_targets.is_empty() {
        handles.push(on_own_thread(
            ctx,
            "ping",
            Some(Level::Ticks),
            ping::run_all,
        ));
    }
    let mut keep_alive: KeepAlive = Vec::new();
    if let Some(loaded) = ebpf {
        keep_alive.push(std::rc::Rc::new(loaded));
    }
    (handles, keep_alive)
}

/// Runs the future `start` makes on a thread of its own (from the blocking pool, held for
/// the whole run), with a single-threaded runtime of its own: its timers fire on time
/// whatever the other threads are doing, and at a priority above users' processes
/// ([`TimeKeeping`] at `level`, if any). An error starting it is one `collector_error`.
fn on_own_thread<F, Fut>(
    ctx: &Ctx,
    what: &'static str,
    level: Option<Level>,
    start: F,
) -> JoinHandle<()>
where
    F: FnOnce(Ctx) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let ctx = ctx.clone();
    tokio::task::spawn_blocking(move || {
        let _priority = level.map(TimeKeeping::raise);
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                let why = format!("{what}: cannot start its thread: {err}");
                tracing::warn!("{why}");
                ctx.event(Event::CollectorError(why));
                return;
            }
        };
        let local = tokio::task::LocalSet::new();
        runtime.block_on(local.run_until(start(ctx)));
    })
}

/// Memory for every backend, and beancounters where the host has them, on one thread: a
/// memory sample at the PSS cadence (`mem.pss_interval`, and the first one) walks every
/// process's `smaps_rollup`, which under load took seconds with 1,000 processes.
async fn drive_gauges(ctx: Ctx, iter: Option<MemIter>) {
    let settings = ctx.settings.clone();
    let proc = ProcMemSampler::new(settings.paths.clone());
    let mem = match iter {
        Some(iter) => mem::MemCollector::with_iterator(proc, iter, settings.pss_interval),
        None => mem::MemCollector::new(proc, settings.pss_interval),
    };
    let mem = spawn_local(drive(ctx.clone(), mem, settings.mem_interval, None));
    if let Some(sampler) = UbcSampler::new(settings.paths.clone()) {
        drive(ctx, sampler, settings.mem_interval, None).await;
    }
    let _ = mem.await;
}
