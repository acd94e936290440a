//! Memory per uid (`mem` table), for every backend: a gauge sampled at start, every
//! `mem.interval`, and at stop.

use tracing::warn;

use super::{every, Step};
use crate::daemon::{now_us, Ctx, Rows};
use crate::model::mem::mem_per_uid;
use crate::sources::procfs::mem::ProcMemSampler;
use crate::sources::users::UserNames;
use crate::store::MemRow;

pub async fn run(ctx: Ctx) {
    let mut sampler = ProcMemSampler::new(ctx.settings.paths.clone());
    let mut names = UserNames::default();
    let mut take = |_step: Step| match sampler.sample() {
        Ok(processes) => {
            let ts_us = now_us();
            let rows = mem_per_uid(&processes)
                .into_iter()
                .map(|(uid, m)| MemRow {
                    ts_us,
                    uid: uid.into(),
                    user: names.name(uid),
                    nproc: clamp(m.nproc),
                    rss_bytes: clamp(m.rss),
                    pss_bytes: m.pss.map(clamp),
                    swap_bytes: m.swap.map(clamp),
                })
                .collect();
            ctx.send(Rows::Mem(rows));
        }
        Err(err) => warn!("memory sample failed: {err:#}"),
    };
    take(Step::Tick);
    every(ctx.settings.mem_interval, ctx.shutdown.clone(), take).await;
}

/// INT64 columns: values beyond i64::MAX (never seen in practice) saturate.
pub fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
