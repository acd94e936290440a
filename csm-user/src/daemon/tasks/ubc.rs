//! OpenVZ beancounters (`ubc` table): a gauge sampled with memory (at start, every
//! `mem.interval`, at stop). A rising failcnt is logged and recorded as an event.

use tracing::warn;

use super::mem::clamp;
use super::{every, Step};
use crate::daemon::{now_us, Ctx, Rows};
use crate::model::ubc::failcnt_rises;
use crate::sources::procfs::beancounters::Beancounter;
use crate::sources::procfs::ubc::UbcSampler;
use crate::store::{Event, UbcRow};

pub async fn run(ctx: Ctx, mut sampler: UbcSampler) {
    let mut prev: Option<Vec<Beancounter>> = None;
    let mut take = |_step: Step| match sampler.sample() {
        Ok(cur) => {
            if let Some(prev) = &prev {
                report_rises(&ctx, prev, &cur);
            }
            let ts_us = now_us();
            let rows = cur
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
            ctx.send(Rows::Ubc(rows));
            prev = Some(cur);
        }
        Err(err) => warn!("beancounters sample failed: {err:#}"),
    };
    take(Step::Tick);
    every(ctx.settings.mem_interval, ctx.shutdown.clone(), take).await;
}

fn report_rises(ctx: &Ctx, prev: &[Beancounter], cur: &[Beancounter]) {
    for rise in failcnt_rises(prev, cur) {
        let detail = format!(
            "ctid {} {}: failcnt {} -> {}",
            rise.ctid, rise.resource, rise.from, rise.to
        );
        warn!("OpenVZ beancounter refused allocations: {detail}");
        ctx.event(Event::UbcFailcnt(detail));
    }
}
