//! OpenVZ beancounters (`ubc` table): a gauge sampled with memory (at start, every
//! `mem.interval`, at stop). A rising failcnt is logged and recorded as an event.

use tracing::warn;

use super::mem::clamp;
use crate::daemon::collector::{Collector, Kind};
use crate::daemon::ctx::{now_us, Rows};
use crate::model::ubc::{failcnt_rises, Beancounter};
use crate::sources::procfs::ubc::UbcSampler;
use csm_store::{Event, UbcRow};

/// The sampler is the whole collector: a beancounter row is the reading as it is.
impl Collector for UbcSampler {
    type Sample = Vec<Beancounter>;
    const NAME: &'static str = "ubc";
    const KIND: Kind<Vec<Beancounter>> = Kind::Gauge;

    /// The failcnt rises since `prev` (as events), then the rows of `cur`.
    fn rows(&mut self, prev: &Vec<Beancounter>, cur: &mut Vec<Beancounter>) -> Vec<Rows> {
        let mut out: Vec<Rows> = failcnt_rises(prev, cur)
            .into_iter()
            .map(|rise| {
                let detail = format!(
                    "ctid {} {}: failcnt {} -> {}",
                    rise.ctid, rise.resource, rise.from, rise.to
                );
                warn!("OpenVZ beancounter refused allocations: {detail}");
                Rows::event(Event::UbcFailcnt(detail))
            })
            .collect();
        let ts_us = now_us();
        let rows: Vec<UbcRow> = cur
            .iter()
            .map(|b| UbcRow {
                ts_us,
                ctid: clamp(b.ctid),
                resource: b.resource.clone(),
                held: b.held,
                maxheld: b.maxheld,
                barrier: b.barrier,
                hard_limit: b.limit,
                failcnt: b.failcnt,
            })
            .collect();
        out.push(Rows::from(rows));
        out
    }

    fn sample(&mut self) -> anyhow::Result<Vec<Beancounter>> {
        UbcSampler::sample(self)
    }
}
