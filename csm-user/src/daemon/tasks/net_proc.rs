//! Interfaces from /proc/net/dev (`net` table, source `proc`, netns null), when eBPF does
//! not count them.

use super::mem::clamp;
use super::net::link_columns;
use crate::daemon::collector::{self, Collector, Kind};
use crate::daemon::ctx::Rows;
use crate::model::netdev::{net_intervals, NetInterval, NetSample};
use crate::model::Stamp;
use crate::sources::procfs::net::ProcNetSampler;
use csm_store::{Counters, Event, NetRow, Source};

/// Over a longer gap a 32-bit counter could wrap more than once unseen: an interface
/// whose counters may wrap is recovered only across a gap this short.
const MAX_GAP_32_BIT_NS: u64 = 60 * 1_000_000_000;

/// The sampler is the whole collector: it also knows which counters may wrap.
impl Collector for ProcNetSampler {
    type Sample = NetSample;
    const NAME: &'static str = "net";
    const KIND: Kind<NetSample> = Kind::Counter(Rows::NetdevTotals);

    fn rows(&mut self, prev: &NetSample, cur: &mut NetSample) -> Vec<Rows> {
        let intervals = net_intervals(prev, cur, |iface| self.may_wrap_32(iface));
        vec![Rows::from(rows(prev, cur, intervals))]
    }

    fn sample(&mut self) -> anyhow::Result<NetSample> {
        ProcNetSampler::sample(self)
    }

    /// `/proc/net/dev` counts since boot: the counters' growth since the last sample a
    /// crashed run of this boot wrote is the traffic of the gap, one row per interface.
    fn recover(
        &mut self,
        last_written: &NetSample,
        first: &NetSample,
    ) -> Option<(Vec<Rows>, Event)> {
        let gap_ns = Stamp::elapsed_ns(last_written.at, first.at);
        let long_gap = gap_ns > MAX_GAP_32_BIT_NS;
        let sampler = &*self;
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
        let mut extra = format!("bytes={bytes} ifaces={}", rows.len());
        if skipped > 0 {
            extra.push_str(&format!(
                " unknown={skipped} (counters that may wrap at 32 bits, gap over 60 s)"
            ));
        }
        let event = collector::recovered(
            Counters::Netdev,
            "/proc/net/dev traffic since the last run's last write",
            last_written.at,
            first.at,
            extra,
        );
        Some((vec![Rows::from(rows)], event))
    }
}

/// `net` rows of the interval from `prev` to `cur`.
fn rows(prev: &NetSample, cur: &NetSample, intervals: Vec<NetInterval>) -> Vec<NetRow> {
    let dur_ms = Stamp::dur_ms(prev.at, cur.at);
    intervals
        .into_iter()
        .map(|NetInterval { iface, delta: d }| NetRow {
            ts_us: cur.at.wall_us,
            dur_ms,
            iface,
            // 0 (no interface has it) where /sys/class/net does not say.
            ifindex: d.ifindex.map_or(0, i64::from),
            netns: None,
            rx_bytes: clamp(d.rx_bytes),
            tx_bytes: clamp(d.tx_bytes),
            rx_packets: clamp(d.rx_packets),
            tx_packets: clamp(d.tx_packets),
            source: Source::Proc,
            ..link_columns(d.link)
        })
        .collect()
}
