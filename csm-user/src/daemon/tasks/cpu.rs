//! CPU per uid: a sample every interval, the model's deltas into `cpu` rows.

use tracing::info;

use crate::daemon::backend::CpuSampler;
use crate::daemon::collector::{Collector, Kind};
use crate::daemon::Rows;
use crate::model::{cpu_intervals, CpuSample, Stamp};
use crate::sources::users::UserNames;
use crate::store::{Counters, CpuRow, Event, Recovered, Source};

pub struct CpuCollector {
    sampler: Box<dyn CpuSampler>,
    /// The `source` column of the rows.
    source: Source,
    names: UserNames,
}

impl CpuCollector {
    pub fn new(sampler: Box<dyn CpuSampler>, source: Source) -> Self {
        CpuCollector {
            sampler,
            source,
            names: UserNames::default(),
        }
    }
}

impl Collector for CpuCollector {
    type Sample = CpuSample;
    const KIND: Kind = Kind::Counter;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn sample(&mut self) -> anyhow::Result<CpuSample> {
        self.sampler.sample()
    }

    fn rows(&mut self, prev: &CpuSample, cur: &mut CpuSample) -> Vec<Rows> {
        vec![Rows::Cpu(rows(prev, cur, self.source, &mut self.names))]
    }

    fn checkpoint(&self, sample: &CpuSample) -> Option<Rows> {
        Some(Rows::CpuTotals(sample.clone()))
    }

    /// The pinned counters kept counting while the daemon was down: one row per uid
    /// covers the whole gap, from the last values the previous run wrote.
    fn recover(
        &mut self,
        last_written: &CpuSample,
        first: &CpuSample,
    ) -> Option<(Vec<Rows>, Event)> {
        let recovered = rows(last_written, first, self.source, &mut self.names);
        let cpu_ns: i64 = recovered.iter().map(|r| r.cpu_ns).sum();
        let gap_ms = Stamp::dur_ms(last_written.at, first.at);
        info!("recovered {gap_ms} ms of CPU accounting from the pinned counters");
        let event = Event::Recovered(Recovered::Gap {
            counters: Counters::Cpu,
            gap_ms,
            from_us: last_written.at.wall_us,
            extra: format!("cpu_ns={cpu_ns} uids={}", recovered.len()),
        });
        Some((vec![Rows::Cpu(recovered)], event))
    }
}

/// `cpu` rows for the interval between two samples.
fn rows(prev: &CpuSample, cur: &CpuSample, source: Source, names: &mut UserNames) -> Vec<CpuRow> {
    let dur_ms = Stamp::dur_ms(prev.at, cur.at);
    cpu_intervals(prev, cur)
        .into_iter()
        .map(|interval| CpuRow {
            ts_us: cur.at.wall_us,
            dur_ms,
            uid: interval.uid as i64,
            user: names.name(interval.uid),
            cpu_ns: interval.cpu_ns as i64,
            cpu_pct: interval.cpu_pct,
            source,
        })
        .collect()
}
