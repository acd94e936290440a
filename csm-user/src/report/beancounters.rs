//! The beancounters section (OpenVZ): per container and resource whose `failcnt` grew in
//! the range, by how much, with the last sample's usage and limits.

use std::collections::BTreeMap;

use serde::Serialize;

use csm_store::UbcRow;

use super::render::{SectionOutput, TextContext};
use super::table::{CsvTable, TextTable};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Growth {
    pub ctid: i64,
    pub resource: String,
    /// How much failcnt grew over the range (a counter reset counts from zero).
    pub failcnt_growth: i64,
    /// The last sample's values.
    pub failcnt: i64,
    pub held: i64,
    pub maxheld: i64,
    pub barrier: i64,
    pub hard_limit: i64,
}

impl SectionOutput for Vec<Growth> {
    fn text(&self, _: &TextContext, out: &mut String) {
        out.push_str("\nBeancounters (failcnt grew)\n");
        if self.is_empty() {
            out.push_str("  none\n");
            return;
        }
        let mut table = TextTable::new(
            vec![
                "ctid",
                "resource",
                "failcnt +",
                "held",
                "maxheld",
                "barrier",
                "limit",
            ],
            2,
        );
        for g in self {
            table.push(vec![
                g.ctid.to_string(),
                g.resource.clone(),
                g.failcnt_growth.to_string(),
                g.held.to_string(),
                g.maxheld.to_string(),
                g.barrier.to_string(),
                g.hard_limit.to_string(),
            ]);
        }
        table.write(out);
    }

    fn csv(&self) -> Vec<CsvTable> {
        vec![CsvTable::of("beancounters", self)]
    }
}

/// The section from the range's `ubc` rows (in time order): only resources that failed.
pub fn growths(rows: &[UbcRow]) -> Vec<Growth> {
    let mut lines: BTreeMap<(i64, &str), (Growth, i64)> = BTreeMap::new();
    for row in rows {
        let (line, last_failcnt) = lines
            .entry((row.ctid, &row.resource))
            .or_insert_with(|| (growth_of(row, 0), row.failcnt));
        // failcnt only grows; a smaller value is a reset (container restarted).
        line.failcnt_growth += if row.failcnt >= *last_failcnt {
            row.failcnt - *last_failcnt
        } else {
            row.failcnt
        };
        *last_failcnt = row.failcnt;
        *line = growth_of(row, line.failcnt_growth);
    }
    lines
        .into_values()
        .map(|(line, _)| line)
        .filter(|line| line.failcnt_growth > 0)
        .collect()
}

fn growth_of(row: &UbcRow, failcnt_growth: i64) -> Growth {
    Growth {
        ctid: row.ctid,
        resource: row.resource.clone(),
        failcnt_growth,
        failcnt: row.failcnt,
        held: row.held,
        maxheld: row.maxheld,
        barrier: row.barrier,
        hard_limit: row.hard_limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ts_us: i64, resource: &str, failcnt: i64) -> UbcRow {
        UbcRow {
            ts_us,
            ctid: 101,
            resource: resource.into(),
            held: 10 * ts_us,
            maxheld: 20,
            barrier: 30,
            hard_limit: 40,
            failcnt,
        }
    }

    #[test]
    fn only_resources_whose_failcnt_grew_with_the_growth() {
        let rows = [
            row(1, "numproc", 5),
            row(1, "privvmpages", 7),
            row(2, "numproc", 9),
            row(2, "privvmpages", 7),
            row(3, "numproc", 2), // reset: +2
        ];
        let found = growths(&rows);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].resource.as_str(), found[0].failcnt_growth),
            ("numproc", 6)
        );
        assert_eq!((found[0].failcnt, found[0].held), (2, 30));
    }
}
