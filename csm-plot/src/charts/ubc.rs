//! OpenVZ beancounters per container: each resource's `held` as a share of its barrier
//! (resources differ in units, so shares are what compare), a line at the barrier, and a
//! mark where `failcnt` rose: an allocation the kernel refused.

use std::collections::BTreeMap;

use plotters::prelude::*;

use super::ChartResult;
use crate::bins::{gauge_spans, Binned};
use crate::canvas::{self, Context, LegendItem, Page, PALETTE, SPIKE_MARK};
use crate::data::UbcSample;

/// A barrier at or above this is "unlimited" (LONG_MAX in the file).
const UNLIMITED: f64 = 9.2e18;

pub fn ubc(
    ctx: &Context,
    containers: &BTreeMap<i64, BTreeMap<String, Vec<UbcSample>>>,
) -> ChartResult {
    containers
        .iter()
        .map(|(ctid, resources)| Ok((format!("ubc-{ctid}.svg"), ubc_chart(ctx, *ctid, resources)?)))
        .collect()
}

/// A refused allocation: when, which resource, how many more failures.
struct Failure {
    ts_us: i64,
    resource: usize,
    count: i64,
}

fn failures(samples: &[UbcSample], resource: usize) -> Vec<Failure> {
    samples
        .windows(2)
        .filter(|w| w[1].failcnt > w[0].failcnt)
        .map(|w| Failure {
            ts_us: w[1].ts_us,
            resource,
            count: w[1].failcnt - w[0].failcnt,
        })
        .collect()
}

fn ubc_chart(
    ctx: &Context,
    ctid: i64,
    resources: &BTreeMap<String, Vec<UbcSample>>,
) -> Result<String, Box<dyn std::error::Error>> {
    // Resources with a real barrier, fullest first; at most as many as there are colours.
    let mut ranked: Vec<(&String, &Vec<UbcSample>, f64)> = resources
        .iter()
        .filter(|(_, s)| s.iter().any(|s| s.barrier > 0.0 && s.barrier < UNLIMITED))
        .map(|(name, s)| {
            let fullest = s.iter().map(share).fold(0.0, f64::max);
            (name, s, fullest)
        })
        .collect();
    ranked.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(b.0)));
    ranked.truncate(PALETTE.len());
    let mut binned = Binned::new(ctx.grid);
    let mut all_failures = Vec::new();
    for (i, (name, samples, _)) in ranked.iter().enumerate() {
        let times: Vec<i64> = samples.iter().map(|s| s.ts_us).collect();
        for (sample, (start, end)) in samples.iter().zip(gauge_spans(&times)) {
            binned.add_span(name, start, end, share(sample), share(sample));
        }
        all_failures.extend(failures(samples, i));
    }
    let coverage = binned.coverage();
    let top = ranked.iter().map(|r| r.2).fold(100.0, f64::max) * 1.1;
    let legend = ranked
        .iter()
        .enumerate()
        .map(|(i, (name, samples, fullest))| {
            let limit = samples
                .last()
                .map_or(0.0, |s| 100.0 * s.limit / s.barrier.max(1.0));
            let limit = if limit > 1e6 {
                "no limit".to_string()
            } else {
                format!("limit {limit:.0}%")
            };
            LegendItem {
                colour: PALETTE[i],
                label: format!("{name} (max {fullest:.0}%, {limit})"),
            }
        })
        .collect();
    let failed: i64 = all_failures.iter().map(|f| f.count).sum();
    let mut notes = vec![format!(
        "held as % of barrier; black line at 100% = barrier; ▼ = failcnt rose ({failed} refused allocations)."
    )];
    if let Some(first) = all_failures.first() {
        notes.push(format!(
            "first failure: {} at {} {}",
            ranked[first.resource].0,
            ctx.local(first.ts_us).format("%m-%d %H:%M"),
            ctx.zone_name()
        ));
    }
    let page = Page::new(
        ctx.title(&format!("Beancounters of container {ctid}")),
        legend,
        notes,
        "held (% of barrier)".into(),
    );
    canvas::render(ctx, &page, 0.0..top, &|v| format!("{v:.0}"), |chart| {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 100.0), (ctx.span_s(), 100.0)],
            BLACK.stroke_width(1),
        )))?;
        for (i, (name, _, _)) in ranked.iter().enumerate() {
            let levels = binned.levels(name, &coverage);
            let band: Vec<Option<(f64, f64)>> =
                levels.iter().map(|l| l.map(|l| (l.min, l.max))).collect();
            canvas::draw_band(chart, ctx, &band, PALETTE[i].mix(0.25).filled())?;
            let means: Vec<Option<f64>> = levels.iter().map(|l| l.map(|l| l.mean)).collect();
            canvas::draw_line(chart, ctx, &means, PALETTE[i].stroke_width(2))?;
        }
        chart.draw_series(all_failures.iter().map(|f| {
            EmptyElement::at((ctx.x_of_us(f.ts_us), top))
                + Polygon::new(vec![(-6, 0), (6, 0), (0, 10)], PALETTE[f.resource].filled())
                + PathElement::new(vec![(-6, 0), (6, 0), (0, 10), (-6, 0)], SPIKE_MARK)
        }))?;
        Ok(())
    })
}

/// held as a percentage of the barrier.
fn share(sample: &UbcSample) -> f64 {
    if sample.barrier > 0.0 && sample.barrier < UNLIMITED {
        100.0 * sample.held / sample.barrier
    } else {
        0.0
    }
}
