//! The alerts section: every `[[alert]]` rule that fired in the range, from the `alert`
//! rows of the `events` table: from when its condition started (`since`, which for an
//! outage is the start of its first unanswered measurement, as the ping section counts
//! it) to its `resolved` row (for an outage: the start of the first measurement answered
//! again), or still firing at the end of the range.

use std::collections::BTreeMap;

use serde::Serialize;

use csm_store::AlertEvent;
#[cfg(test)]
use csm_store::EventRow;

use super::spans::EventMark;

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

/// The alerts section folded as the events (in time order, of the range and the week
/// before it) are read: what it holds is the alerts found in the range and those still
/// firing, whatever the number of events.
pub struct AlertsFold {
    from_us: i64,
    to_us: i64,
    open: BTreeMap<(String, String), Alert>,
    found: Vec<Alert>,
}

impl AlertsFold {
    pub fn new(from_us: i64, to_us: i64) -> AlertsFold {
        AlertsFold {
            from_us,
            to_us,
            open: BTreeMap::new(),
            found: Vec::new(),
        }
    }

    /// Folds the next event; returns the bytes the fold grew by.
    pub fn add(&mut self, ts_us: i64, mark: &EventMark) -> u64 {
        let EventMark::Alert(event) = mark else {
            return 0;
        };
        let key = (event.name.clone(), event.subject.clone());
        let held = alert_bytes(event);
        if event.firing {
            let alert = Alert {
                name: event.name.clone(),
                subject: event.subject.clone(),
                span: Span::new(event.since_us, None, event.since_us),
                value: event.value,
            };
            return match self.open.insert(key, alert) {
                Some(_) => 0,
                None => held,
            };
        }
        let Some(mut alert) = self.open.remove(&key) else {
            return 0;
        };
        alert.span = Span::new(alert.span.start_us, Some(ts_us), ts_us);
        // Leaves the open ones: what it held moves to `found`, or is dropped.
        if self.overlaps(&alert) {
            self.found.push(alert);
        }
        0
    }

    /// The section, once every event was folded.
    pub fn finish(mut self) -> Vec<Alert> {
        let to_us = self.to_us;
        for mut alert in std::mem::take(&mut self.open).into_values() {
            alert.span = Span::new(alert.span.start_us, None, to_us);
            if self.overlaps(&alert) {
                self.found.push(alert);
            }
        }
        self.found.sort_by_key(|a| a.span.start_us);
        self.found
    }

    fn overlaps(&self, alert: &Alert) -> bool {
        alert.span.end_us.unwrap_or(self.to_us) > self.from_us && alert.span.start_us < self.to_us
    }
}

/// What an alert kept takes (open in the map, then found), charged to the command's
/// budget.
fn alert_bytes(event: &AlertEvent) -> u64 {
    (3 * std::mem::size_of::<Alert>() + 4 * (event.name.len() + event.subject.len()) + 128) as u64
}

/// The section from the events (in time order) of the range and the week before it.
#[cfg(test)]
pub fn alerts(events: &[EventRow], from_us: i64, to_us: i64) -> Vec<Alert> {
    let mut fold = AlertsFold::new(from_us, to_us);
    for row in events {
        fold.add(row.ts_us, &EventMark::of(row.event()));
    }
    fold.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use csm_store::Event;

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
