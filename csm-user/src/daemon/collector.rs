//! One driver for every periodic collector (CPU, traffic, memory, beancounters): the
//! first sample, the resume after a crash, the ticks aligned to the wall clock, and the
//! final sample at stop. A collector only says how to sample and what rows two samples
//! make; the driver does the rest the same way for all of them.
//!
//! Ping is not driven here: it measures each target on that target's own schedule, a
//! measurement takes time and is written with the time it started, and at stop the one
//! in flight is cut short rather than a new one taken (see `tasks::ping`).

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::sleep;
use tracing::{info, warn};

use super::ctx::{Ctx, Rows};
use super::schedule::until_next_boundary;
use crate::model::Stamp;
use csm_store::{Counters, Event, Recovered};

/// What a collector's samples are.
pub enum Kind<S> {
    /// Cumulative counters: rows come from two samples, so without a first sample to
    /// count from the collector cannot run. They keep counting through a crash: the
    /// function makes the checkpoint the state file persists once the rows up to a
    /// sample are written, for the next run to resume from.
    Counter(fn(S) -> Rows),
    /// A gauge: each sample is rows of its own (at start, every interval and at stop);
    /// a failed sample is only a missing row.
    Gauge,
}

/// A source of rows on a fixed interval.
pub trait Collector {
    /// What one reading gives (for counters: cumulative values and when they were read).
    type Sample: Clone;
    /// The collector's name in the log and in `collector_error` events.
    const NAME: &'static str;
    const KIND: Kind<Self::Sample>;

    fn sample(&mut self) -> anyhow::Result<Self::Sample>;

    /// Rows of the interval from `prev` to `cur`; for a gauge, the rows of `cur` (`prev`,
    /// the last good sample or at first `cur` itself, only serves comparisons). A
    /// collector that deletes entries at the source drops them from `cur` too, so that
    /// they read as new when they come back.
    fn rows(&mut self, prev: &Self::Sample, cur: &mut Self::Sample) -> Vec<Rows>;

    /// Rows for the time a crashed run was down, from the last sample it wrote to this
    /// run's first, and the `recovered` event that says so.
    fn recover(
        &mut self,
        _last_written: &Self::Sample,
        _first: &Self::Sample,
    ) -> Option<(Vec<Rows>, Event)> {
        None
    }

    /// An event after the first sample.
    fn started(&mut self) -> Option<Event> {
        None
    }

    /// An event after the final sample.
    fn stopped(&mut self) -> Option<Event> {
        None
    }
}

/// Runs `collector` every `interval` until the daemon stops. `resume`: the last sample a
/// crashed run wrote, when the counters it came from are still counting.
pub async fn drive<C: Collector>(
    ctx: Ctx,
    mut collector: C,
    interval: Duration,
    resume: Option<C::Sample>,
) {
    let mut last = match collector.sample() {
        Ok(first) => Some(begin(&ctx, &mut collector, first, resume)),
        Err(err) if matches!(C::KIND, Kind::Counter(_)) => {
            let name = C::NAME;
            warn!("first {name} sample failed; {name} is not collected: {err:#}");
            ctx.event(Event::CollectorError(format!("{name}: {err:#}")));
            return;
        }
        Err(err) => {
            warn!("{} sample failed: {err:#}", C::NAME);
            None
        }
    };
    every(interval, ctx.shutdown.clone(), |step| {
        tick(&ctx, &mut collector, &mut last);
        if step == Step::Final {
            if let Some(event) = collector.stopped() {
                ctx.event(event);
            }
        }
    })
    .await;
}

/// After the first sample: the start event, the crash gap, a gauge's first rows, and the
/// checkpoint the next rows start from.
fn begin<C: Collector>(
    ctx: &Ctx,
    collector: &mut C,
    mut first: C::Sample,
    resume: Option<C::Sample>,
) -> C::Sample {
    if let Some(event) = collector.started() {
        ctx.event(event);
    }
    if let Some(last_written) = resume {
        if let Some((rows, event)) = collector.recover(&last_written, &first) {
            ctx.event(event);
            rows.into_iter().for_each(|rows| ctx.send(rows));
        }
    }
    match C::KIND {
        Kind::Counter(checkpoint) => ctx.send(checkpoint(first.clone())),
        Kind::Gauge => {
            let itself = first.clone();
            send_interval(ctx, collector, &itself, &mut first);
        }
    }
    first
}

fn tick<C: Collector>(ctx: &Ctx, collector: &mut C, last: &mut Option<C::Sample>) {
    let mut cur = match collector.sample() {
        Ok(sample) => sample,
        Err(err) => {
            warn!("{} sample failed, skipped: {err:#}", C::NAME);
            return;
        }
    };
    let prev = last.take().unwrap_or_else(|| cur.clone());
    send_interval(ctx, collector, &prev, &mut cur);
    *last = Some(cur);
}

fn send_interval<C: Collector>(
    ctx: &Ctx,
    collector: &mut C,
    prev: &C::Sample,
    cur: &mut C::Sample,
) {
    for rows in collector.rows(prev, cur) {
        ctx.send(rows);
    }
    if let Kind::Counter(checkpoint) = C::KIND {
        ctx.send(checkpoint(cur.clone()));
    }
}

/// The `recovered` event of the crash gap from `last_written` to `first`, logged as
/// "recovered N ms of `what`".
pub fn recovered(
    counters: Counters,
    what: &str,
    last_written: Stamp,
    first: Stamp,
    extra: String,
) -> Event {
    let gap_ms = Stamp::dur_ms(last_written, first);
    info!("recovered {gap_ms} ms of {what}");
    Event::Recovered(Recovered::Gap {
        counters,
        gap_ms,
        from_us: last_written.wall_us,
        extra,
    })
}

/// What a periodic step is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A scheduled tick.
    Tick,
    /// The last sample before the daemon stops.
    Final,
}

/// Calls `step` on every tick aligned to multiples of `interval`, and once more with
/// [`Step::Final`] when the daemon stops.
pub async fn every(
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut step: impl FnMut(Step),
) {
    loop {
        tokio::select! {
            _ = sleep(until_next_boundary(interval)) => step(Step::Tick),
            _ = shutdown.changed() => {
                step(Step::Final);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Arc;

    use tokio::sync::mpsc;

    use super::*;
    use crate::daemon::settings::{Backend, Settings};
    use crate::sources::host::HostPaths;
    use csm_store::{CpuRow, EventRow, UbcRow};

    /// A counter whose readings are scripted: `Err` where a reading fails.
    struct Script {
        readings: VecDeque<Result<u64, &'static str>>,
    }

    impl Script {
        fn new(readings: &[Result<u64, &'static str>]) -> Self {
            Script {
                readings: readings.iter().copied().collect(),
            }
        }
    }

    fn next(script: &mut Script) -> anyhow::Result<u64> {
        let reading = script.readings.pop_front().expect("no reading left");
        reading.map_err(|why| anyhow::anyhow!(why))
    }

    /// Rows as `Cpu` rows whose `cpu_ns` is the delta, checkpoints as `ubc` rows whose
    /// `held` is the reading: what the driver sends is easy to read back.
    fn delta_rows(prev: u64, cur: u64) -> Vec<Rows> {
        let row = csm_store::CpuRow {
            ts_us: 0,
            dur_ms: 0,
            uid: 0,
            user: None,
            cpu_ns: (cur - prev) as i64,
            cpu_pct: 0.0,
            source: csm_store::Source::Proc,
        };
        vec![Rows::from(vec![row])]
    }

    fn checkpoint(reading: u64) -> Rows {
        Rows::from(vec![UbcRow {
            ts_us: 0,
            ctid: 0,
            resource: "checkpoint".into(),
            held: reading as i64,
            maxheld: 0,
            barrier: 0,
            hard_limit: 0,
            failcnt: 0,
        }])
    }

    struct Counter(Script);

    impl Collector for Counter {
        type Sample = u64;
        const NAME: &'static str = "counter";
        const KIND: Kind<u64> = Kind::Counter(checkpoint);

        fn rows(&mut self, prev: &u64, cur: &mut u64) -> Vec<Rows> {
            delta_rows(*prev, *cur)
        }

        fn sample(&mut self) -> anyhow::Result<u64> {
            next(&mut self.0)
        }

        fn recover(&mut self, last_written: &u64, first: &u64) -> Option<(Vec<Rows>, Event)> {
            Some((
                delta_rows(*last_written, *first),
                Event::Stop("recovered".into()),
            ))
        }
    }

    struct Gauge(Script);

    impl Collector for Gauge {
        type Sample = u64;
        const NAME: &'static str = "gauge";
        const KIND: Kind<u64> = Kind::Gauge;

        fn rows(&mut self, _prev: &u64, cur: &mut u64) -> Vec<Rows> {
            delta_rows(0, *cur)
        }

        fn sample(&mut self) -> anyhow::Result<u64> {
            next(&mut self.0)
        }
    }

    /// What one run of `collector` sends, from start to a stop before the first tick.
    fn run<C: Collector + 'static>(collector: C, resume: Option<C::Sample>) -> Vec<String> {
        let settings = Settings {
            allow_unsafe_data_dir: false,
            data_dir: "/nonexistent".into(),
            interval: Duration::from_secs(3600),
            flush_interval: Duration::from_secs(10),
            retain: None,
            mem_interval: Duration::from_secs(3600),
            pss_interval: Duration::from_secs(3600),
            backend: Backend::Proc,
            duration: None,
            host: "h".into(),
            paths: HostPaths::default(),
            ping_targets: Vec::new(),
            metrics: None,
            alerts: Vec::new(),
        };
        let (rows_tx, mut rows_rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = watch::channel(false);
        let ctx = Ctx {
            settings: Arc::new(settings),
            rows: rows_tx,
            shutdown: stop_rx,
        };
        crate::test_support::block_on_local(async move {
            let task =
                tokio::task::spawn_local(drive(ctx, collector, Duration::from_secs(3600), resume));
            tokio::task::yield_now().await;
            let _ = stop_tx.send(true);
            task.await.unwrap();
        });
        let mut sent = Vec::new();
        while let Ok(rows) = rows_rx.try_recv() {
            sent.push(describe(&rows));
        }
        sent
    }

    /// What the tests compare: the rows' key figure, or the event.
    fn describe(rows: &Rows) -> String {
        let Rows::Table(rows) = rows else {
            return format!("{rows:?}");
        };
        if let Some(cpu) = rows.get::<CpuRow>() {
            return format!("rows {}", cpu[0].cpu_ns);
        }
        if let Some(ubc) = rows.get::<UbcRow>() {
            return format!("checkpoint {}", ubc[0].held);
        }
        let event = rows.get::<EventRow>().expect("cpu, ubc or events rows")[0].event();
        format!("{} {}", event.name(), event.detail().unwrap_or_default())
    }

    #[test]
    fn a_counter_resumes_then_counts_from_its_first_sample_to_the_final_one() {
        let sent = run(Counter(Script::new(&[Ok(10), Ok(15)])), Some(4));
        assert_eq!(
            sent,
            [
                "stop recovered",
                "rows 6",
                "checkpoint 10",
                "rows 5",
                "checkpoint 15"
            ]
        );
    }

    #[test]
    fn a_counter_without_a_first_sample_says_so_and_stops() {
        let sent = run(Counter(Script::new(&[Err("no map")])), None);
        assert_eq!(sent, ["collector_error counter: no map"]);
    }

    #[test]
    fn a_gauge_writes_every_sample_and_outlives_a_failed_one() {
        assert_eq!(
            run(Gauge(Script::new(&[Ok(3), Ok(4)])), None),
            ["rows 3", "rows 4"]
        );
        assert_eq!(
            run(Gauge(Script::new(&[Err("busy"), Ok(4)])), None),
            ["rows 4"]
        );
    }
}
