//! The one definition of a ping outage, shared by the ping chart (`csm-plot`) and `csm
//! report`; `analysis/queries/ping_outages.sql` and `csm_analysis.ping_outages` implement
//! the same (the tests hold them equal):
//!
//! an outage is a run of consecutive measurements of one target that got no reply
//! (`received = 0`). It starts at the first of them and ends where the first measurement
//! that got a reply again starts; while no later measurement answered it is *ongoing*
//! and lasts up to its last measurement plus one step (the spacing before that
//! measurement; none when the target has one measurement only). A daemon stop inside an
//! outage is not seen: it then ends at the first answered measurement after the restart.
//!
//! A measurement the daemon could not send on time (`sent = 0` and an error starting
//! with [`NOT_MEASURED`]: the daemon was stalled, not the target) says nothing about the
//! target: it is left out, as if the daemon had not run then. It neither starts, extends
//! nor ends an outage, and it counts no loss (nothing was sent).

/// How the `error` of a measurement the daemon could not send on time starts.
pub const NOT_MEASURED: &str = "not measured";

/// Whether a measurement says anything about its target: false for one the daemon could
/// not send on time (see the module's definition).
pub fn measured(sent: i64, error: Option<&str>) -> bool {
    sent != 0 || !error.is_some_and(|e| e.starts_with(NOT_MEASURED))
}

/// The outages among one target's `ping` rows, in time order: [`outages`] over what
/// the rows say, so every reader of rows gives the same answer.
pub fn of_rows<'a>(rows: impl IntoIterator<Item = &'a crate::PingRow>) -> Vec<Outage> {
    outages(
        rows.into_iter()
            .map(|r| (r.ts_us, r.received, measured(r.sent, r.error.as_deref()))),
    )
}

/// One outage of one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outage {
    /// Start of the first measurement without a reply.
    pub start_us: i64,
    /// Start of the first measurement answered again; `None` while the outage goes on.
    pub end_us: Option<i64>,
    /// `end_us`, or for an ongoing outage its last measurement plus one step: what its
    /// duration runs to.
    pub until_us: i64,
    /// How many measurements got no reply.
    pub measurements: usize,
    /// Index of the first of them in the measurements given (for its error text).
    pub first: usize,
}

impl Outage {
    pub fn duration_us(&self) -> i64 {
        self.until_us - self.start_us
    }

    pub fn ongoing(&self) -> bool {
        self.end_us.is_none()
    }
}

/// The outages among one target's measurements, given as `(start time, replies,`
/// [`measured`]`)` in time order; [`Outage::first`] indexes what was given, unmeasured
/// ones included.
pub fn outages(measurements: impl IntoIterator<Item = (i64, i64, bool)>) -> Vec<Outage> {
    let mut found = Vec::new();
    let mut open: Option<Outage> = None;
    let mut previous_ts: Option<i64> = None;
    let mut last_step = 0;
    let measured = measurements
        .into_iter()
        .enumerate()
        .filter(|(_, (_, _, measured))| *measured);
    for (index, (ts_us, received, _)) in measured {
        let step = previous_ts.map_or(0, |p| ts_us - p);
        previous_ts = Some(ts_us);
        if received == 0 {
            let outage = open.get_or_insert(Outage {
                start_us: ts_us,
                end_us: None,
                until_us: ts_us,
                measurements: 0,
                first: index,
            });
            outage.measurements += 1;
            outage.until_us = ts_us;
            last_step = step;
        } else if let Some(mut outage) = open.take() {
            outage.end_us = Some(ts_us);
            outage.until_us = ts_us;
            found.push(outage);
        }
    }
    if let Some(mut outage) = open {
        outage.until_us += last_step;
        found.push(outage);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn every_10s(answered: &[bool]) -> Vec<(i64, i64, bool)> {
        answered
            .iter()
            .enumerate()
            .map(|(i, &up)| (i as i64 * 10 * S, if up { 3 } else { 0 }, true))
            .collect()
    }

    #[test]
    fn an_outage_ends_where_the_first_answered_measurement_starts() {
        let found = outages(every_10s(&[true, false, false, true, false, true]));
        assert_eq!(
            found,
            vec![
                Outage {
                    start_us: 10 * S,
                    end_us: Some(30 * S),
                    until_us: 30 * S,
                    measurements: 2,
                    first: 1
                },
                Outage {
                    start_us: 40 * S,
                    end_us: Some(50 * S),
                    until_us: 50 * S,
                    measurements: 1,
                    first: 4
                },
            ]
        );
        assert_eq!(found[0].duration_us(), 20 * S);
    }

    #[test]
    fn an_ongoing_outage_lasts_one_step_past_its_last_measurement() {
        // Steps of 60 s, then 30 s: the ongoing outage runs to 90 + 30 s, as in SQL.
        let found = outages([(0, 3, true), (60 * S, 3, true), (90 * S, 0, true)]);
        assert_eq!(found.len(), 1);
        assert!(found[0].ongoing());
        assert_eq!((found[0].start_us, found[0].until_us), (90 * S, 120 * S));
    }

    #[test]
    fn a_single_silent_measurement_alone_lasts_nothing() {
        // SQL: coalesce(last_step, INTERVAL 0 SECOND).
        let found = outages([(5 * S, 0, true)]);
        assert_eq!(found[0].duration_us(), 0);
        assert!(outages(Vec::new()).is_empty());
    }

    #[test]
    fn a_gap_inside_an_outage_does_not_split_it() {
        // The daemon was down from 20 s to 200 s: one outage, as the SQL query counts it.
        let found = outages([
            (0, 3, true),
            (10 * S, 0, true),
            (20 * S, 0, true),
            (200 * S, 0, true),
            (210 * S, 3, true),
        ]);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].start_us, found[0].end_us),
            (10 * S, Some(210 * S))
        );
        assert_eq!(found[0].measurements, 3);
    }

    #[test]
    fn a_measurement_not_sent_on_time_is_left_out() {
        // A stalled daemon at 10-30 s: no outage, and the loss at 40 s starts at 40 s
        // (not at the unmeasured 30 s before it).
        let late = measured(0, Some("not measured: started 22000 ms late"));
        assert!(!late);
        assert!(measured(0, Some("name does not resolve")));
        assert!(measured(3, None));
        let found = outages([
            (0, 3, true),
            (10 * S, 0, late),
            (20 * S, 0, late),
            (30 * S, 0, late),
            (40 * S, 0, true),
            (50 * S, 3, true),
        ]);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].start_us, found[0].end_us), (40 * S, Some(50 * S)));
        assert_eq!((found[0].measurements, found[0].first), (1, 4));
        assert!(outages([(0, 3, true), (10 * S, 0, late), (20 * S, 3, true)]).is_empty());
    }
}
