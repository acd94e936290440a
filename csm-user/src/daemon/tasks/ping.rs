//! Ping: one task per target, each on its own wall-clock aligned schedule, one `ping` row
//! per scheduled measurement.
//!
//! A target's measurements never overlap: the next one is scheduled only after the last
//! has ended, and each ends before the next is due ([`crate::sources::ping::deadline`]).

use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::{spawn_local, JoinHandle};
use tokio::time::{sleep_until, Instant};
use tracing::{info, warn};

use crate::daemon::ctx::{now_us, Ctx, Rows};
use crate::model::ping::{rtt_stats, Measurement};
use crate::sources::ping::{deadline, measure, Icmp, PingTarget, Prober, Resolver};
use csm_store::{Event, PingRow};

/// One task per configured target, on the caller's (ping's own) thread; they share the
/// ICMP sockets. Returns when every target has written its last measurement.
pub async fn run_all(ctx: Ctx) {
    let icmp = Rc::new(Icmp::default());
    let targets: Vec<JoinHandle<()>> = ctx
        .settings
        .ping_targets
        .iter()
        .enumerate()
        .map(|(index, target)| spawn_local(run(ctx.clone(), target.clone(), index, icmp.clone())))
        .collect();
    drop(ctx);
    for target in targets {
        let _ = target.await;
    }
}

/// Measures `target` at every multiple of its interval until the daemon stops; a
/// measurement in flight at the stop is written with what it has.
pub async fn run(ctx: Ctx, target: PingTarget, index: usize, icmp: Rc<Icmp>) {
    let prober = Prober::new(index, target.count, target.interval);
    let mut shutdown = ctx.shutdown.clone();
    let mut health = Health::default();
    let mut resolver = Resolver::new(&target.host);
    let mut last_slot = None;
    loop {
        let (slot, wait) = next_slot(wall_now(), target.interval, last_slot);
        last_slot = Some(slot);
        let due = Instant::now() + wait;
        tokio::select! {
            _ = sleep_until(due) => {}
            _ = shutdown.changed() => return,
        }
        if let Some(note) = health.lateness(&target, Instant::now() - due) {
            ctx.event(Event::CollectorError(note));
        }
        let ts_us = now_us();
        let stop_by = deadline(
            Instant::now(),
            due + target.interval,
            prober.count,
            prober.gap,
        );
        let m = measure(&icmp, prober, &mut resolver, stop_by, &mut shutdown).await;
        health.report(&target.host, &m);
        ctx.send(Rows::from(vec![ping_row(ts_us, &target.host, m)]));
        if *shutdown.borrow() {
            return;
        }
    }
}

/// The `ping` row of one measurement that started at `ts_us`.
pub fn ping_row(ts_us: i64, target: &str, m: Measurement) -> PingRow {
    let stats = rtt_stats(&m.rtts_ms);
    PingRow {
        ts_us,
        target: target.to_string(),
        addr: m.addr,
        sent: i64::from(m.sent),
        // A duplicate can never be counted twice (replies are matched once), so this
        // bound only guards against a logic error upstream.
        received: m.rtts_ms.len().min(m.sent as usize) as i64,
        rtt_min_ms: stats.map(|s| s.min_ms),
        rtt_avg_ms: stats.map(|s| s.avg_ms),
        rtt_max_ms: stats.map(|s| s.max_ms),
        rtt_mdev_ms: stats.map(|s| s.mdev_ms),
        rtts_ms: m.rtts_ms,
        error: m.error,
    }
}

fn wall_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The next slot (multiple of `interval` since the epoch) after `now`, and the wait for
/// it. Never the same slot twice, even when a timer woke a hair before the wall clock
/// reached its slot and the measurement then failed at once; but after the clock was set
/// back, the slots follow it rather than waiting for the old time to come again.
pub fn next_slot(now: Duration, interval: Duration, last: Option<u128>) -> (u128, Duration) {
    let step = interval.as_nanos().max(1);
    let mut slot = now.as_nanos() / step + 1;
    if last == Some(slot) {
        slot += 1;
    }
    let wait = slot * step - now.as_nanos();
    (
        slot,
        Duration::from_nanos(wait.min(u64::MAX as u128) as u64),
    )
}

/// Logs a target's errors when they start or change, and when it answers again, rather
/// than at every measurement.
#[derive(Default)]
struct Health {
    error: Option<String>,
    /// The last measurement started late.
    late: bool,
}

/// A measurement that starts this much after its slot (or a tenth of its interval, if
/// more) is late: the daemon is overloaded, and its echoes may be counted as lost.
const LATE_START: Duration = Duration::from_millis(100);

impl Health {
    /// A warning (logged, and returned for an `events` row) when measurements of `target`
    /// start starting late; `None` while they stay late or are on time.
    fn lateness(&mut self, target: &PingTarget, late_by: Duration) -> Option<String> {
        let late = late_by > LATE_START.max(target.interval / 10);
        let first = late && !self.late;
        if !late && self.late {
            info!(
                "ping target {}: measurements start on time again",
                target.host
            );
        }
        self.late = late;
        first.then(|| {
            let note = format!(
                "ping target {}: measurement started {} ms late (the ping loop is overloaded; \
                 its replies may be counted as lost)",
                target.host,
                late_by.as_millis()
            );
            warn!("{note}");
            note
        })
    }

    fn report(&mut self, host: &str, m: &Measurement) {
        if m.error == self.error {
            return;
        }
        match &m.error {
            Some(error) => warn!("ping target {host}: {error}"),
            None => info!("ping target {host}: measuring again"),
        }
        self.error = m.error.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn row_of_a_lossy_measurement() {
        let row = ping_row(
            7,
            "gw",
            Measurement {
                addr: Some("10.0.0.1".into()),
                sent: 3,
                rtts_ms: vec![2.0, 4.0],
                error: None,
            },
        );
        assert_eq!((row.sent, row.received), (3, 2));
        assert_eq!(row.rtt_avg_ms, Some(3.0));
        assert_eq!(row.rtt_mdev_ms, Some(1.0));
        assert_eq!(row.rtts_ms, vec![2.0, 4.0]);
    }

    #[test]
    fn row_of_an_unresolvable_name() {
        let unresolved = Measurement {
            error: Some("name does not resolve".into()),
            ..Default::default()
        };
        let row = ping_row(7, "nope.invalid", unresolved);
        assert_eq!((row.sent, row.received), (0, 0));
        assert_eq!(row.addr, None);
        assert_eq!(row.rtt_min_ms, None);
        assert!(row.rtts_ms.is_empty());
        assert!(row.error.is_some());
    }

    #[test]
    fn a_late_start_is_said_once_until_on_time_again() {
        let target = PingTarget {
            host: "gw".into(),
            interval: S,
            count: 3,
        };
        let mut health = Health::default();
        assert_eq!(health.lateness(&target, Duration::from_millis(5)), None);
        let note = health
            .lateness(&target, Duration::from_millis(250))
            .unwrap();
        assert!(
            note.starts_with("ping target gw: measurement started 250 ms late"),
            "{note}"
        );
        assert_eq!(health.lateness(&target, Duration::from_millis(300)), None);
        assert_eq!(health.lateness(&target, Duration::ZERO), None);
        assert!(health.lateness(&target, Duration::from_secs(1)).is_some());
    }

    #[test]
    fn slots_are_multiples_of_the_interval() {
        let (slot, wait) = next_slot(Duration::from_millis(10_250), S, None);
        assert_eq!((slot, wait), (11, Duration::from_millis(750)));
        let (slot, wait) = next_slot(Duration::from_secs(125), Duration::from_secs(60), None);
        assert_eq!((slot, wait), (3, Duration::from_secs(55)));
    }

    #[test]
    fn a_slot_is_never_measured_twice() {
        // Woke 1 µs before slot 11 by the wall clock, and the measurement failed at once.
        let now = Duration::from_secs(11) - Duration::from_micros(1);
        let (slot, wait) = next_slot(now, S, Some(11));
        assert_eq!(slot, 12);
        assert_eq!(wait, S + Duration::from_micros(1));
    }

    #[test]
    fn a_clock_set_back_is_followed() {
        // The last slot was at 3600 s; the clock went back to 100.5 s.
        let (slot, wait) = next_slot(Duration::from_millis(100_500), S, Some(3600));
        assert_eq!((slot, wait), (101, Duration::from_millis(500)));
    }

    #[test]
    fn an_overrun_skips_to_the_next_free_slot() {
        let (slot, _) = next_slot(Duration::from_millis(13_100), S, Some(12));
        assert_eq!(slot, 14);
    }
}
