//! Interfaces from /proc/net/dev (`net` table, source `proc`, netns null), when eBPF does
//! not count them.

use tracing::{info, warn};

use super::mem::clamp;
use super::{every, Step};
use crate::daemon::{Ctx, Rows};
use crate::model::netdev::{net_intervals, NetInterval, NetSample};
use crate::sources::procfs::net::ProcNetSampler;
use crate::store::{Counters, Event, NetRow, Recovered, Source};

/// Over a longer gap a 32-bit counter could wrap more than once unseen: an interface
/// whose counters may wrap is recovered only across a gap this short.
const MAX_GAP_32_BIT_NS: u64 = 60 * 1_000_000_000;

/// `resume`: the last sample a crashed run of this boot wrote; the gap since becomes one
/// row per interface.
pub async fn run(ctx: Ctx, resume: Option<NetSample>) {
    let mut sampler = ProcNetSampler::new(ctx.settings.paths.clone());
    let mut prev = match sampler.sample() {
        Ok(sample) => sample,
        Err(err) => {
            warn!("first /proc/net/dev sample failed; traffic is not collected: {err:#}");
            ctx.event(Event::CollectorError(format!("net: {err:#}")));
            return;
        }
    };
    if let Some(last_written) = resume {
        recover(&ctx, &sampler, &last_written, &prev);
    }
    ctx.send(Rows::NetdevTotals(prev.clone()));
    every(
        ctx.settings.interval,
        ctx.shutdown.clone(),
        |_step: Step| match sampler.sample() {
            Ok(cur) => {
                let intervals = net_intervals(&prev, &cur, |iface| sampler.may_wrap_32(iface));
                ctx.send(Rows::Net(rows(&prev, &cur, intervals)));
                ctx.send(Rows::NetdevTotals(cur.clone()));
                prev = cur;
            }
            Err(err) => warn!("/proc/net/dev sample failed, interval skipped: {err:#}"),
        },
    )
    .await;
}

/// Rows for the time a crashed run was down, from the counters' growth since the last
/// sample it wrote.
fn recover(ctx: &Ctx, sampler: &ProcNetSampler, last_written: &NetSample, first: &NetSample) {
    let gap_ns = first.mono_ns.saturating_sub(last_written.mono_ns);
    let long_gap = gap_ns > MAX_GAP_32_BIT_NS;
    let mut skipped = 0;
    let intervals: Vec<NetInterval> =
        net_intervals(last_written, first, |iface| sampler.may_wrap_32(iface))
            .into_iter()
            .filter(|i| {
                let trusted = !(long_gap && sampler.may_wrap_32(&i.iface));
                skipped += usize::from(!trusted);
                trusted
            })
            .collect();
    let rows = rows(last_written, first, intervals);
    let bytes: i64 = rows.iter().map(|r| r.rx_bytes + r.tx_bytes).sum();
    let gap_ms = gap_ns / 1_000_000;
    info!("recovered {gap_ms} ms of /proc/net/dev traffic since the last run's last write");
    let mut extra = format!("bytes={bytes} ifaces={}", rows.len());
    if skipped > 0 {
        extra.push_str(&format!(
            " unknown={skipped} (counters that may wrap at 32 bits, gap over 60 s)"
        ));
    }
    ctx.event(Event::Recovered(Recovered::Gap {
        counters: Counters::Netdev,
        gap_ms: gap_ms as i64,
        from_us: last_written.wall_us,
        extra,
    }));
    ctx.send(Rows::Net(rows));
}

/// `net` rows of the interval from `prev` to `cur`.
fn rows(prev: &NetSample, cur: &NetSample, intervals: Vec<NetInterval>) -> Vec<NetRow> {
    let dur_ms = (cur.mono_ns.saturating_sub(prev.mono_ns) / 1_000_000) as i64;
    intervals
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
            source: Source::Proc,
        })
        .collect()
}
