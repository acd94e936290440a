//! CPU per uid: a sample every interval, the model's deltas into `cpu` rows.

use crate::daemon::collector::{self, Collector, Kind};
use crate::daemon::ctx::Rows;
use crate::model::{cpu_intervals, CpuSample, Stamp};
use crate::sources::ebpf::CpuReader;
use crate::sources::procfs::cpu::ProcCpuSampler;
use crate::sources::users::UserNames;
use csm_store::{Counters, CpuRow, Event, Source};

pub struct CpuCollector {
    sampler: Box<dyn CpuSampler>,
    /// The `source` column of the rows.
    source: Source,
    names: UserNames,
}

impl CpuCollector {
    /// CPU time from the scheduler program's maps.
    pub fn ebpf(reader: CpuReader) -> Self {
        Self::with(Box::new(reader), Source::Ebpf)
    }

    /// CPU time from /proc (the fallback backend).
    pub fn proc(sampler: ProcCpuSampler) -> Self {
        Self::with(Box::new(sampler), Source::Proc)
    }

    fn with(sampler: Box<dyn CpuSampler>, source: Source) -> Self {
        let names = UserNames::default();
        CpuCollector {
            sampler,
            source,
            names,
        }
    }
}

/// Something that gives cumulative CPU ns per uid.
/// `Send`: the CPU collector runs on a thread of its own.
trait CpuSampler: Send {
    fn sample(&mut self) -> anyhow::Result<CpuSample>;
}

impl CpuSampler for CpuReader {
    fn sample(&mut self) -> anyhow::Result<CpuSample> {
        CpuReader::sample(self)
    }
}

impl CpuSampler for ProcCpuSampler {
    fn sample(&mut self) -> anyhow::Result<CpuSample> {
        ProcCpuSampler::sample(self)
    }
}

impl Collector for CpuCollector {
    type Sample = CpuSample;
    const NAME: &'static str = "cpu";
    const KIND: Kind<CpuSample> = Kind::Counter(Rows::CpuTotals);

    fn rows(&mut self, prev: &CpuSample, cur: &mut CpuSample) -> Vec<Rows> {
        vec![Rows::from(rows(prev, cur, self.source, &mut self.names))]
    }

    fn sample(&mut self) -> anyhow::Result<CpuSample> {
        self.sampler.sample()
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
        let event = collector::recovered(
            Counters::Cpu,
            "CPU accounting from the pinned counters",
            last_written.at,
            first.at,
            format!("cpu_ns={cpu_ns} uids={}", recovered.len()),
        );
        Some((vec![Rows::from(recovered)], event))
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
