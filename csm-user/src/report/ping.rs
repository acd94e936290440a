//! The ping section: per target, measurements, loss, RTT median/p90/p99/max over every
//! reply (nearest rank, as `ping_1m`: csm-store's `stats`), and each outage by csm's one
//! definition (csm-store's `outages`, as the chart and `ping_outages.sql`).

use std::collections::BTreeMap;

use serde::Serialize;

use csm_store::stats::quantile_sorted;
use csm_store::PingRow;

use csm_store::units::{pct, rtt};

use super::render::{SectionOutput, TextContext};
use super::span::Span;
use super::table::{value, CsvTable, TextTable};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Target {
    pub target: String,
    pub measurements: i64,
    pub sent: i64,
    pub received: i64,
    /// Null when nothing was sent (the name never resolved).
    pub loss_pct: Option<f64>,
    pub rtt_p50_ms: Option<f64>,
    pub rtt_p90_ms: Option<f64>,
    pub rtt_p99_ms: Option<f64>,
    pub rtt_max_ms: Option<f64>,
    pub outages: Vec<Outage>,
}

/// Columns as `analysis/queries/ping_outages.sql` names them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outage {
    /// Open (no end) while the outage goes on; its duration up to its last measurement.
    #[serde(flatten)]
    pub span: Span,
    pub measurements: usize,
    pub first_error: Option<String>,
    pub ongoing: bool,
}

impl SectionOutput for Vec<Target> {
    fn text(&self, ctx: &TextContext, out: &mut String) {
        out.push_str("\nPing (RTT percentiles over every reply, nearest rank)\n");
        let mut table = TextTable::new(
            vec![
                "target",
                "measurements",
                "loss",
                "median",
                "p90",
                "p99",
                "max",
                "outages",
            ],
            1,
        );
        let opt_rtt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), rtt);
        for t in self {
            table.push(vec![
                t.target.clone(),
                t.measurements.to_string(),
                t.loss_pct.map_or_else(|| "nothing sent".into(), pct),
                opt_rtt(t.rtt_p50_ms),
                opt_rtt(t.rtt_p90_ms),
                opt_rtt(t.rtt_p99_ms),
                opt_rtt(t.rtt_max_ms),
                t.outages.len().to_string(),
            ]);
        }
        table.write(out);
        let mut outages = TextTable::new(vec!["outage of", "start", "end", "duration", "error"], 3);
        for t in self {
            for o in &t.outages {
                let [start, end, lasted] = o.span.cells(ctx, "ongoing");
                outages.push(vec![
                    t.target.clone(),
                    start,
                    end,
                    lasted,
                    o.first_error.clone().unwrap_or_default(),
                ]);
            }
        }
        if !outages.is_empty() {
            out.push('\n');
            outages.write(out);
        }
    }

    /// The targets (with their outages counted), then every outage with its target.
    fn csv(&self) -> Vec<CsvTable> {
        let targets = self
            .iter()
            .map(|t| {
                let mut row = value(t);
                row["outages"] = t.outages.len().into();
                row
            })
            .collect();
        let outages = self
            .iter()
            .flat_map(|t| {
                t.outages.iter().map(|o| {
                    let mut row = serde_json::json!({ "target": t.target });
                    if let (Some(row), serde_json::Value::Object(o)) =
                        (row.as_object_mut(), value(o))
                    {
                        row.extend(o);
                    }
                    row
                })
            })
            .collect();
        vec![
            CsvTable {
                name: "ping",
                rows: targets,
            },
            CsvTable {
                name: "outages",
                rows: outages,
            },
        ]
    }
}

/// One measurement as the report keeps it: what the outages need (its error only for
/// the first of an outage's), not the whole row.
struct Measurement {
    ts_us: i64,
    received: i64,
    measured: bool,
    error: Option<Box<str>>,
}

/// One target's measurements folded: sums, every reply's RTT (for exact nearest-rank
/// percentiles) and the measurements the outages are found in.
#[derive(Default)]
struct TargetFold {
    sent: i64,
    received: i64,
    rtts: Vec<f64>,
    measurements: Vec<Measurement>,
}

/// The ping section folded as the rows are read: about 64 bytes a measurement, charged twice (a kept
/// `ping` row is about 400), so a month of measurements fits the command's budget.
#[derive(Default)]
pub struct PingFold {
    targets: BTreeMap<String, TargetFold>,
}

/// What a target's entry holds besides its name, charged when it is first seen.
const TARGET_BYTES: u64 = 128;

impl PingFold {
    /// Folds one row; returns the bytes it added to what the fold holds.
    pub fn add(&mut self, row: PingRow) -> u64 {
        // Doubled: the vectors grow by doubling.
        let mut grown = 2 * (std::mem::size_of::<Measurement>() + 8 * row.rtts_ms.len()) as u64;
        let target = match self.targets.get_mut(&row.target) {
            Some(target) => target,
            None => {
                grown += TARGET_BYTES + row.target.len() as u64;
                self.targets.entry(row.target).or_default()
            }
        };
        let measured = csm_store::outages::measured(row.sent, row.error.as_deref());
        let error = row.error.map(String::into_boxed_str);
        grown += error.as_ref().map_or(0, |e| e.len() as u64);
        target.sent += row.sent;
        target.received += row.received;
        target.rtts.extend(row.rtts_ms);
        target.measurements.push(Measurement {
            ts_us: row.ts_us,
            received: row.received,
            measured,
            error,
        });
        grown
    }

    /// Adds a fold of rows read after this one's; returns the bytes this one grew by.
    pub fn merge(&mut self, later: PingFold) -> u64 {
        let mut grown = 0;
        for (name, later) in later.targets {
            let target = match self.targets.get_mut(&name) {
                Some(target) => target,
                None => {
                    grown += TARGET_BYTES + name.len() as u64;
                    self.targets.entry(name).or_default()
                }
            };
            target.sent += later.sent;
            target.received += later.received;
            target.rtts.extend(later.rtts);
            target.measurements.extend(later.measurements);
        }
        grown
    }

    /// Whether no row was folded.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

/// The section from the folded rows.
pub fn targets(fold: PingFold) -> Vec<Target> {
    fold.targets
        .into_iter()
        .map(|(target, fold)| target_line(target, fold))
        .collect()
}

fn target_line(target: String, mut fold: TargetFold) -> Target {
    // In time order; measurements of the same time stay in the order they were read.
    fold.measurements.sort_by_key(|m| m.ts_us);
    fold.rtts.sort_unstable_by(f64::total_cmp);
    let measurements = &fold.measurements;
    let outages = csm_store::outages::outages(
        measurements
            .iter()
            .map(|m| (m.ts_us, m.received, m.measured)),
    )
    .into_iter()
    .map(|o| Outage {
        span: Span::new(o.start_us, o.end_us, o.until_us),
        measurements: o.measurements,
        first_error: measurements[o.first].error.as_deref().map(str::to_string),
        ongoing: o.ongoing(),
    })
    .collect();
    let (sent, received, rtts) = (fold.sent, fold.received, &fold.rtts);
    Target {
        target,
        measurements: measurements.len() as i64,
        sent,
        received,
        loss_pct: csm_store::stats::loss_pct(sent, received),
        rtt_p50_ms: quantile_sorted(rtts, 0.5),
        rtt_p90_ms: quantile_sorted(rtts, 0.9),
        rtt_p99_ms: quantile_sorted(rtts, 0.99),
        rtt_max_ms: rtts.last().copied(),
        outages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn row(ts_s: i64, target: &str, rtts: &[f64], error: Option<&str>) -> PingRow {
        PingRow {
            ts_us: ts_s * S,
            target: target.into(),
            addr: None,
            sent: if error.is_some() { 0 } else { 3 },
            received: rtts.len() as i64,
            rtt_min_ms: None,
            rtt_avg_ms: None,
            rtt_max_ms: None,
            rtt_mdev_ms: None,
            rtts_ms: rtts.to_vec(),
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn loss_nearest_rank_percentiles_and_outages() {
        // Ten replies 1..=10 ms in four measurements, then two silent ones (ongoing).
        let rows = vec![
            row(0, "gw", &[1.0, 2.0, 3.0], None),
            row(10, "gw", &[4.0, 5.0, 6.0], None),
            row(20, "gw", &[7.0, 8.0, 9.0], None),
            row(30, "gw", &[10.0], None),
            row(40, "gw", &[], None),
            row(50, "gw", &[], None),
            row(0, "nohost", &[], Some("no such name")),
        ];
        let mut fold = PingFold::default();
        for row in rows {
            fold.add(row);
        }
        let lines = targets(fold);
        let gw = &lines[0];
        assert_eq!((gw.measurements, gw.sent, gw.received), (6, 18, 10));
        assert!((gw.loss_pct.unwrap() - 800.0 / 18.0).abs() < 1e-9);
        // ⌈10·0.5⌉ = 5th, ⌈10·0.9⌉ = 9th, ⌈10·0.99⌉ = 10th.
        assert_eq!(gw.rtt_p50_ms, Some(5.0));
        assert_eq!(gw.rtt_p90_ms, Some(9.0));
        assert_eq!(gw.rtt_p99_ms, Some(10.0));
        assert_eq!(gw.rtt_max_ms, Some(10.0));
        let [outage] = &gw.outages[..] else {
            panic!("{:?}", gw.outages)
        };
        assert_eq!(outage.span.start_ts, "1970-01-01T00:00:40.000000Z");
        assert_eq!(
            (outage.span.end_ts.clone(), outage.span.duration_s),
            (None, 20.0)
        );
        assert!(outage.ongoing);
        let nohost = &lines[1];
        assert_eq!((nohost.loss_pct, nohost.rtt_p50_ms), (None, None));
        assert_eq!(
            nohost.outages[0].first_error.as_deref(),
            Some("no such name")
        );
    }
}
