//! Interfaces from /proc/net/dev (`net` table, source `proc`, netns null), when eBPF does
//! not count them.

use tracing::warn;

use super::mem::clamp;
use super::{every, Step};
use crate::daemon::{Ctx, Rows};
use crate::model::netdev::net_intervals;
use crate::sources::procfs::net::ProcNetSampler;
use crate::store::NetRow;

pub async fn run(ctx: Ctx) {
    let mut sampler = ProcNetSampler::new(ctx.settings.paths.clone());
    let mut prev = match sampler.sample() {
        Ok(sample) => sample,
        Err(err) => {
            warn!("first /proc/net/dev sample failed; traffic is not collected: {err:#}");
            ctx.event("collector_error", Some(format!("net: {err:#}")));
            return;
        }
    };
    every(
        ctx.settings.interval,
        ctx.shutdown.clone(),
        |_step: Step| {
            match sampler.sample() {
                Ok(cur) => {
                    let dur_ms = (cur.mono_ns.saturating_sub(prev.mono_ns) / 1_000_000) as i64;
                    let rows = net_intervals(&prev, &cur, |iface| sampler.may_wrap_32(iface))
                        .into_iter()
                        .map(|i| NetRow {
                            ts_us: cur.wall_us,
                            dur_ms,
                            iface: i.iface,
                            // 0 (no interface has it) where /sys/class/net does not say.
                            ifindex: i.ifindex.map_or(0, i64::from),
                            netns: None,
                            rx_bytes: clamp(i.rx_bytes),
                            tx_bytes: clamp(i.tx_bytes),
                            rx_packets: clamp(i.rx_packets),
                            tx_packets: clamp(i.tx_packets),
                            source: "proc",
                        })
                        .collect();
                    ctx.send(Rows::Net(rows));
                    prev = cur;
                }
                Err(err) => warn!("/proc/net/dev sample failed, interval skipped: {err:#}"),
            }
        },
    )
    .await;
}
