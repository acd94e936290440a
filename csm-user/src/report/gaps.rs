//! The gaps section: periods without data because the daemon was not running, read from
//! the `events` table: from a `stop` (or, after a crash or kill, the end of the last
//! interval written, which the next start's `recovered` event names; else the last event
//! of the previous run) to the next `start`; and from a last `stop` to the end of the
//! range.

use serde::Serialize;

#[cfg(test)]
use csm_store::EventRow;

use super::spans::EventMark;

use super::render::{SectionOutput, TextContext};
use super::span::Span;
use super::table::{CsvTable, TextTable};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gap {
    /// Open (no end) while the daemon is still not running at the end of the range.
    #[serde(flatten)]
    pub span: Span,
    /// `stopped` (a clean stop), `crashed` (no stop written: a crash, a kill, a power
    /// loss) or `not running` (stopped and not started again in the range).
    pub cause: String,
}

impl SectionOutput for Vec<Gap> {
    fn text(&self, ctx: &TextContext, out: &mut String) {
        out.push_str("\nGaps (the daemon not running)\n");
        if self.is_empty() {
            out.push_str("  none\n");
            return;
        }
        let mut table = TextTable::new(vec!["from", "to", "duration", "cause"], 2);
        for g in self {
            let [from, to, lasted] = g.span.cells(ctx, "(still)");
            table.push(vec![from, to, lasted, g.cause.clone()]);
        }
        table.write(out);
    }

    fn csv(&self) -> Vec<CsvTable> {
        vec![CsvTable::of("gaps", self)]
    }
}

/// The gaps section folded as the events (in time order, of the range and the week
/// before it) are read: what it holds is the gaps found in the range and the last start,
/// whatever the number of events.
pub struct GapsFold {
    from_us: i64,
    to_us: i64,
    found: Vec<Gap>,
    /// The previous run: when it stopped cleanly, else its last event.
    stopped_at: Option<i64>,
    last_event: Option<i64>,
    /// The last start, until the next one (or the end) tells where its gap began.
    start: Option<Started>,
}

/// A start, with what was known of the previous run when it came.
struct Started {
    ts_us: i64,
    stopped_at: Option<i64>,
    last_event: Option<i64>,
    /// The `from=` of the first `recovered` event after it.
    recovered_from: Option<i64>,
}

/// What a gap kept takes, charged to the command's budget.
const GAP_BYTES: u64 = 2 * std::mem::size_of::<Gap>() as u64 + 128;

impl GapsFold {
    pub fn new(from_us: i64, to_us: i64) -> GapsFold {
        GapsFold {
            from_us,
            to_us,
            found: Vec::new(),
            stopped_at: None,
            last_event: None,
            start: None,
        }
    }

    /// Folds the next event; returns the bytes the fold grew by.
    pub fn add(&mut self, ts_us: i64, mark: &EventMark) -> u64 {
        let mut grown = 0;
        match mark {
            EventMark::Start => {
                grown = self.close_start();
                self.start = Some(Started {
                    ts_us,
                    stopped_at: self.stopped_at,
                    last_event: self.last_event,
                    recovered_from: None,
                });
                self.stopped_at = None;
            }
            EventMark::Stop => self.stopped_at = Some(ts_us),
            EventMark::RecoveredGap { from_us } => {
                if let Some(start) = &mut self.start {
                    start.recovered_from.get_or_insert(*from_us);
                }
            }
            _ => {}
        }
        self.last_event = Some(ts_us);
        grown
    }

    /// The section, once every event was folded.
    pub fn finish(mut self) -> Vec<Gap> {
        self.close_start();
        if let Some(stop) = self.stopped_at.filter(|&s| s < self.to_us) {
            self.keep(gap(stop, None, self.to_us, "not running"));
        }
        self.found
    }

    /// The gap the last start ended, if any; returns the bytes kept.
    fn close_start(&mut self) -> u64 {
        let Some(started) = self.start.take() else {
            return 0;
        };
        let (start, cause) = match (started.recovered_from, started.stopped_at) {
            (Some(from), Some(_)) => (Some(from), "stopped"),
            (Some(from), None) => (Some(from), "crashed"),
            (None, Some(stop)) => (Some(stop), "stopped"),
            (None, None) => (started.last_event, "crashed"),
        };
        match start.filter(|&s| s < started.ts_us) {
            Some(start) => self.keep(gap(start, Some(started.ts_us), self.to_us, cause)),
            None => 0,
        }
    }

    /// Keeps `found` if it overlaps the range; returns the bytes kept.
    fn keep(&mut self, found: Gap) -> u64 {
        let end = found.span.end_us.unwrap_or(self.to_us);
        if end > self.from_us && found.span.start_us < self.to_us {
            self.found.push(found);
            return GAP_BYTES;
        }
        0
    }
}

/// The section from the events (in time order) of the range and the week before it.
#[cfg(test)]
pub fn gaps(events: &[EventRow], from_us: i64, to_us: i64) -> Vec<Gap> {
    let mut fold = GapsFold::new(from_us, to_us);
    for row in events {
        fold.add(row.ts_us, &EventMark::of(row.event()));
    }
    fold.finish()
}

fn gap(start_us: i64, end_us: Option<i64>, to_us: i64, cause: &str) -> Gap {
    Gap {
        span: Span::new(start_us, end_us, end_us.unwrap_or(to_us)),
        cause: cause.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use csm_store::{Counters, Event, Recovered};

    const S: i64 = 1_000_000;

    fn at(ts_s: i64, event: Event) -> EventRow {
        EventRow::new(ts_s * S, &event)
    }

    #[test]
    fn a_clean_stop_a_crash_and_a_final_stop() {
        let events = [
            at(0, Event::Start("csm".into())),
            at(100, Event::Stop("SIGTERM".into())),
            at(160, Event::Start("csm".into())),
            at(200, Event::Backend("ebpf".into())),
            // Killed at about 250 s: no stop; the next start recovers from 248 s.
            at(300, Event::Start("csm".into())),
            at(
                300,
                Event::Recovered(Recovered::Gap {
                    counters: Counters::Cpu,
                    gap_ms: 52_000,
                    from_us: 248 * S,
                    extra: String::new(),
                }),
            ),
            at(400, Event::Stop("SIGTERM".into())),
        ];
        let found: Vec<_> = gaps(&events, 0, 500 * S)
            .into_iter()
            .map(|g| {
                (
                    g.span.start_us / S,
                    g.span.end_us.map(|e| e / S),
                    g.span.duration_s,
                    g.cause,
                )
            })
            .collect();
        assert_eq!(
            found,
            vec![
                (100, Some(160), 60.0, "stopped".to_string()),
                (248, Some(300), 52.0, "crashed".to_string()),
                (400, None, 100.0, "not running".to_string()),
            ]
        );
        // A range after the first gap leaves it out.
        assert_eq!(gaps(&events, 170 * S, 500 * S).len(), 2);
    }

    #[test]
    fn a_crash_without_recovery_starts_at_the_last_event() {
        let events = [
            at(0, Event::Start("csm".into())),
            at(50, Event::Backend("proc".into())),
            at(90, Event::Start("csm".into())),
        ];
        let found = gaps(&events, 0, 100 * S);
        assert_eq!(
            (found[0].span.start_us, found[0].span.end_us),
            (50 * S, Some(90 * S))
        );
        assert_eq!(found[0].cause, "crashed");
    }
}
