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
    /// The sampler's count of dropped exit records at the last interval written.
    exit_record_overflows: u64,
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
            exit_record_overflows: 0,
        }
    }
}

/// Something that gives cumulative CPU ns per uid.
/// `Send`: the CPU collector runs on a thread of its own.
trait CpuSampler: Send {
    fn sample(&mut self) -> anyhow::Result<CpuSample>;

    /// Times exit records were lost so far (the /proc backend's taskstats socket
    /// overflowed); the eBPF backend needs none.
    fn exit_record_overflows(&self) -> u64 {
        0
    }
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

    fn exit_record_overflows(&self) -> u64 {
        ProcCpuSampler::exit_record_overflows(self)
    }
}

impl Collector for CpuCollector {
    type Sample = CpuSample;
    const NAME: &'static str = "cpu";
    const KIND: Kind<CpuSample> = Kind::Counter(Rows::CpuTotals);

    fn rows(&mut self, prev: &CpuSample, cur: &mut CpuSample) -> Vec<Rows> {
        let mut out = vec![Rows::from(rows(prev, cur, self.source, &mut self.names))];
        out.extend(self.exit_records_lost().map(Rows::event));
        out
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

impl CpuCollector {
    /// The event for an interval in which the kernel dropped exit records: its rows may
    /// be short, and the table says so rather than only the log.
    fn exit_records_lost(&mut self) -> Option<Event> {
        let overflows = self.sampler.exit_record_overflows();
        let new = overflows.saturating_sub(self.exit_record_overflows);
        self.exit_record_overflows = overflows;
        (new > 0).then(|| Event::ExitRecordsLost {
            overflows: i64::try_from(new).unwrap_or(i64::MAX),
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use csm_store::EventRow;

    /// A sampler whose kernel dropped exit records `overflows` times so far.
    struct Dropping {
        overflows: u64,
    }

    impl CpuSampler for Dropping {
        fn sample(&mut self) -> anyhow::Result<CpuSample> {
            unreachable!("the test feeds samples itself")
        }

        fn exit_record_overflows(&self) -> u64 {
            self.overflows
        }
    }

    fn sample(second: u64, cpu_ns: u64) -> CpuSample {
        CpuSample {
            at: Stamp::monotonic(second * 1_000_000_000),
            per_uid: [(1000, cpu_ns)].into(),
        }
    }

    /// The `exit_records_lost` events among `rows`, as read back.
    fn lost_events(rows: &[Rows]) -> Vec<Event> {
        rows.iter()
            .filter_map(|rows| match rows {
                Rows::Table(table) => table.get::<EventRow>(),
                _ => None,
            })
            .flatten()
            .map(|row| Event::parse(&row.event, row.detail.as_deref()))
            .collect()
    }

    #[test]
    fn an_interval_in_which_exit_records_were_dropped_says_so_once() {
        let mut collector = CpuCollector::with(Box::new(Dropping { overflows: 0 }), Source::Proc);
        let set = |collector: &mut CpuCollector, overflows: u64| {
            collector.sampler = Box::new(Dropping { overflows });
        };
        let (s0, s1, s2, s3) = (sample(0, 0), sample(1, 10), sample(2, 20), sample(3, 30));

        let quiet = collector.rows(&s0, &mut s1.clone());
        assert_eq!(lost_events(&quiet), vec![]);

        set(&mut collector, 3);
        let dropped = collector.rows(&s1, &mut s2.clone());
        assert_eq!(
            lost_events(&dropped),
            vec![Event::ExitRecordsLost { overflows: 3 }]
        );

        let after = collector.rows(&s2, &mut s3.clone());
        assert_eq!(lost_events(&after), vec![], "no new overflow, no event");
    }
}
