//! The gaps section: periods without data because the daemon was not running, read from
//! the `events` table: from a `stop` (or, after a crash or kill, the end of the last
//! interval written, which the next start's `recovered` event names; else the last event
//! of the previous run) to the next `start`; and from a last `stop` to the end of the
//! range.

use serde::Serialize;

use csm_store::{Event, EventRow, Recovered};

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

/// The section from the events (in time order) of the range and the week before it.
pub fn gaps(events: &[EventRow], from_us: i64, to_us: i64) -> Vec<Gap> {
    let mut found = Vec::new();
    // The previous run: when it stopped cleanly, else its last event.
    let mut stopped_at: Option<i64> = None;
    let mut last_event: Option<i64> = None;
    for (index, row) in events.iter().enumerate() {
        match row.event() {
            Event::Start(_) => {
                let recovered_from = recovered_from(&events[index + 1..]);
                let (start, cause) = match (recovered_from, stopped_at) {
                    (Some(from), Some(_)) => (Some(from), "stopped"),
                    (Some(from), None) => (Some(from), "crashed"),
                    (None, Some(stop)) => (Some(stop), "stopped"),
                    (None, None) => (last_event, "crashed"),
                };
                if let Some(start) = start.filter(|&s| s < row.ts_us) {
                    found.push(gap(start, Some(row.ts_us), to_us, cause));
                }
                stopped_at = None;
            }
            Event::Stop(_) => stopped_at = Some(row.ts_us),
            _ => {}
        }
        last_event = Some(row.ts_us);
    }
    if let Some(stop) = stopped_at.filter(|&s| s < to_us) {
        found.push(gap(stop, None, to_us, "not running"));
    }
    found.retain(|g| g.span.end_us.unwrap_or(to_us) > from_us && g.span.start_us < to_us);
    found
}

/// Where the gap a start recovered began: the `from=` of the first `recovered` event
/// after the start and before the next one.
fn recovered_from(after_start: &[EventRow]) -> Option<i64> {
    after_start
        .iter()
        .map(EventRow::event)
        .take_while(|e| !matches!(e, Event::Start(_)))
        .find_map(|e| match e {
            Event::Recovered(Recovered::Gap { from_us, .. }) => Some(from_us),
            _ => None,
        })
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
    use csm_store::Counters;

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
