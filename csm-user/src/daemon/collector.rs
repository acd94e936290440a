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

use super::schedule::until_next_boundary;
use super::{Ctx, Rows};
use crate::model::Stamp;
use crate::store::{Counters, Event, Recovered};

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
