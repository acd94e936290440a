//! One task per collector. Each samples on its own wall-clock aligned schedule, sends
//! rows, and takes a last sample when told to stop.

pub mod cpu;
pub mod ping;

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{spawn_local, JoinHandle};
use tokio::time::sleep;

use super::backend::Collectors;
use super::schedule::until_next_boundary;
use super::{Ctx, KeepAlive};

/// Starts every collector the backend provides.
pub fn spawn_all(collectors: Collectors, ctx: &Ctx) -> (Vec<JoinHandle<()>>, KeepAlive) {
    let mut handles = Vec::new();
    let mut keep_alive: KeepAlive = Vec::new();
    let Collectors {
        cpu,
        cpu_source,
        ebpf,
        ..
    } = collectors;
    handles.push(spawn_local(cpu::run(ctx.clone(), cpu, cpu_source)));
    handles.extend(ping::spawn(ctx));
    if let Some(loaded) = ebpf {
        keep_alive.push(std::rc::Rc::new(loaded));
    }
    (handles, keep_alive)
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
