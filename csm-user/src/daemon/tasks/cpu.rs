//! CPU per uid: a sample every interval, the model's deltas into `cpu` rows.

use tracing::{info, warn};

use super::{every, Step};
use crate::daemon::backend::CpuSampler;
use crate::daemon::{Ctx, Rows};
use crate::model::{cpu, cpu_intervals, CpuSample};
use crate::sources::users::UserNames;
use crate::store::{Counters, CpuRow, Event, Recovered, Source};

pub async fn run(
    ctx: Ctx,
    mut sampler: Box<dyn CpuSampler>,
    source: Source,
    resume: Option<CpuSample>,
) {
    let mut names = UserNames::default();
    let mut prev = match sampler.sample() {
        Ok(sample) => sample,
        Err(err) => {
            warn!("first CPU sample failed; CPU is not collected: {err:#}");
            ctx.event(Event::CollectorError(format!("cpu: {err:#}")));
            return;
        }
    };
    if let Some(last_written) = resume {
        // The pinned counters kept counting while the daemon was down: one row per uid
        // covers the whole gap, from the last values the previous run wrote.
        let recovered = rows(&last_written, &prev, source, &mut names);
        let cpu_ns: i64 = recovered.iter().map(|r| r.cpu_ns).sum();
        let gap_ms = cpu::dur_ms(&last_written, &prev);
        info!("recovered {gap_ms} ms of CPU accounting from the pinned counters");
        ctx.event(Event::Recovered(Recovered::Gap {
            counters: Counters::Cpu,
            gap_ms,
            from_us: last_written.wall_us,
            extra: format!("cpu_ns={cpu_ns} uids={}", recovered.len()),
        }));
        ctx.send(Rows::Cpu(recovered));
    }
    ctx.send(Rows::CpuTotals(prev.clone()));
    every(
        ctx.settings.interval,
        ctx.shutdown.clone(),
        |_step: Step| match sampler.sample() {
            Ok(cur) => {
                ctx.send(Rows::Cpu(rows(&prev, &cur, source, &mut names)));
                ctx.send(Rows::CpuTotals(cur.clone()));
                prev = cur;
            }
            Err(err) => warn!("CPU sample failed, interval skipped: {err:#}"),
        },
    )
    .await;
}

/// `cpu` rows for the interval between two samples.
pub fn rows(
    prev: &CpuSample,
    cur: &CpuSample,
    source: Source,
    names: &mut UserNames,
) -> Vec<CpuRow> {
    let dur_ms = cpu::dur_ms(prev, cur);
    cpu_intervals(prev, cur)
        .into_iter()
        .map(|interval| CpuRow {
            ts_us: cur.wall_us,
            dur_ms,
            uid: interval.uid as i64,
            user: names.name(interval.uid),
            cpu_ns: interval.cpu_ns as i64,
            cpu_pct: interval.cpu_pct,
            source,
        })
        .collect()
}
