//! The values the state files hold, apart from how they are written (`state.rs`, the
//! current JSON; `legacy.rs`, the text of earlier versions), so that both read into them.

use crate::metrics::registry::PinnedCounters;
use crate::model::netdev;
use crate::model::{CpuSample, NetSample};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    /// Identity of the counters the values come from (see `Loaded::instance`).
    pub instance: String,
    /// The last CPU sample whose rows were written.
    pub cpu: CpuSample,
    /// The last traffic sample whose rows were written (when traffic is counted by eBPF).
    pub net: Option<NetSample>,
    /// The Prometheus endpoint's CPU and traffic counters as of the same rows (when
    /// the endpoint is on), for the next run to continue them.
    pub metrics: Option<PinnedCounters>,
}

/// The /proc backend's counterpart: the last `/proc/net/dev` sample whose rows were
/// written, and the boot it belongs to (the counters count since boot). A clean stop
/// removes the file, as it removes the eBPF pins; a run that finds it after a crash in
/// the same boot writes the gap's traffic.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetdevState {
    pub boot_id: String,
    pub sample: netdev::NetSample,
}
