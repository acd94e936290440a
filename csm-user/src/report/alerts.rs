//! The alerts section: every `[[alert]]` rule that fired in the range, from the `alert`
//! rows of the `events` table: from when its condition started (`since`, which for an
//! outage is the start of its first unanswered measurement, as the ping section counts
//! it) to its `resolved` row (for an outage: the start of the first measurement answered
//! again), or still firing at the end of the range.

use std::collections::BTreeMap;

use serde::Serialize;

use csm_store::{Event, EventRow};

use super::render::{SectionOutput, TextContext};
use super::span::Span;
use super::table::{CsvTable, TextTable};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    pub name: String,
    /// The target, user or interface (empty for the daemon's own trouble).
    pub subject: String,
    /// Open (no end) while it still fires at the end of the range.
    #[serde(flatten)]
    pub span: Span,
    /// The value it fired with (seconds down, loss %, CPU %, bytes/s, 1).
    pub value: f64,
}

impl SectionOutput for Vec<Alert> {
    fn text(&self, ctx: &TextContext, out: &mut String) {
        out.push_str("\nAlerts ([[alert]] rules that fired)\n");
        if self.is_empty() {
            out.push_str("  none\n");
            return;
        }
        let mut table = TextTable::new(
            vec!["alert", "subject", "from", "to", "duration", "value"],
            2,
        );
        for a in self {
            let [from, to, lasted] = a.span.cells(ctx, "(still)");
            table.push(vec![
                a.name.clone(),
                a.subject.clone(),
                from,
                to,
                lasted,
                format!("{}", a.value),
            ]);
        }
        table.write(out);
    }

    fn csv(&self) -> Vec<CsvTable> {
        vec![CsvTable::of("alerts", self)]
    }
}

/// The section from the events (in time order) of the range and the week before it.
pub fn alerts(events: &[EventRow], from_us: i64, to_us: i64) -> Vec<Alert> {
    let mut open: BTreeMap<(String, String), Alert> = BTreeMap::new();
    let mut found = Vec::new();
    for row in events {
        let Event::Alert(event) = row.event() else {
            continue;
        };
        let key = (event.name.clone(), event.subject.clone());
        if event.firing {
            open.insert(
                key,
                Alert {
                    name: event.name,
                    subject: event.subject,
                    span: Span::new(event.since_us, None, event.since_us),
                    value: event.value,
                },
            );
        } else if let Some(mut alert) = open.remove(&key) {
            alert.span = Span::new(alert.span.start_us, Some(row.ts_us), row.ts_us);
            found.push(alert);
        }
    }
    found.extend(open.into_values());
    for alert in &mut found {
        let Span {
            start_us, end_us, ..
        } = alert.span;
        alert.span = Span::new(start_us, end_us, end_us.unwrap_or(to_us));
    }
    found.retain(|a| a.span.end_us.unwrap_or(to_us) > from_us && a.span.start_us < to_us);
    found.sort_by_key(|a| a.span.start_us);
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use csm_store::AlertEvent;

    const S: i64 = 1_000_000;

    fn alert(at_s: i64, firing: bool, since_s: i64) -> EventRow {
        EventRow::new(
            at_s * S,
            &Event::Alert(AlertEvent {
                name: "down".into(),
                firing,
                subject: "10.0.0.1".into(),
                value: 3.0,
                since_us: since_s * S,
            }),
        )
    }

    #[test]
    fn firing_and_resolved_pair_up_and_an_open_one_runs_to_the_end() {
        let events = [
            alert(105, true, 102),
            alert(110, false, 102),
            alert(200, true, 195),
        ];
        let found = alerts(&events, 0, 300 * S);
        assert_eq!(found.len(), 2);
        assert_eq!(
            (found[0].span.start_us, found[0].span.end_us),
            (102 * S, Some(110 * S))
        );
        assert_eq!(found[0].span.duration_s, 8.0);
        assert_eq!(found[1].span.end_us, None);
        assert_eq!(found[1].span.duration_s, 105.0);
        assert!(alerts(&events, 120 * S, 150 * S).is_empty());
    }
}
