//! Ping per target, SmokePing style: the spread of reply times as bands (10–90 % and
//! 25–75 % of the replies in each pixel column), the median as a line, partial loss
//! shaded lightly, and outages (measurements without a single reply) shaded strongly
//! over exactly the time they lasted.

use std::collections::BTreeMap;

use plotters::prelude::*;

use super::ChartResult;
use crate::bins::{gauge_spans, quantile};
use crate::canvas::{
    self, clipped_spikes, mark_spikes, spike_scale, spike_words, Context, LegendItem, Page, PALETTE,
};
use crate::data::PingSample;
use crate::rtt_histogram::RttHistogram;
// How durations are written is shared with `csm report`.
use csm_store::time::duration_words;

/// Outages are drawn in vermillion, partial loss in orange.
pub const OUTAGE_COLOUR: RGBColor = RGBColor(213, 94, 0);
pub const LOSS_COLOUR: RGBColor = RGBColor(230, 159, 0);
const OUTER_BAND: RGBColor = PALETTE[4];
const INNER_BAND: RGBColor = PALETTE[0];
const MEDIAN: RGBColor = RGBColor(0, 60, 100);
/// Outages listed by time in the notes; the rest are counted.
const NAMED_OUTAGES: usize = 4;

pub fn ping(ctx: &Context, targets: &BTreeMap<String, Vec<PingSample>>) -> ChartResult {
    targets
        .iter()
        .filter(|(_, samples)| !samples.is_empty())
        .map(|(target, samples)| {
            let name = format!("ping-{}.svg", super::file_part(target));
            Ok((name, ping_chart(ctx, target, samples)?))
        })
        .collect()
}

/// What one pixel column holds of a target's measurements.
#[derive(Default, Clone)]
struct Column {
    rtts: Vec<f64>,
    sent: i64,
    received: i64,
}

/// The reply-time percentiles of a column: p10, p25, p50, p75, p90.
type Spread = [f64; 5];

fn spread(column: &mut Column) -> Option<Spread> {
    let mut q = |p| quantile(&mut column.rtts, p);
    Some([q(0.1)?, q(0.25)?, q(0.5)?, q(0.75)?, q(0.9)?])
}

/// Each measurement holds until the next, unless the next is far (a gap). A column takes
/// the measurement that holds at its middle (so neighbouring measurements do not mix into
/// false spreads), or every measurement that starts in it when they are denser than columns.
fn columns(ctx: &Context, samples: &[PingSample]) -> Vec<Column> {
    let mut columns = vec![Column::default(); ctx.grid.columns];
    let times: Vec<i64> = samples.iter().map(|s| s.ts_us).collect();
    for (sample, (start, end)) in samples.iter().zip(gauge_spans(&times)) {
        let holding: Vec<usize> = ctx
            .grid
            .overlaps(start, end)
            .map(|(c, _)| c)
            .filter(|&c| (start..end).contains(&ctx.grid.mid_us(c)))
            .collect();
        let chosen = if holding.is_empty() {
            ctx.grid
                .overlaps(start, start + 1)
                .map(|(c, _)| c)
                .collect()
        } else {
            holding
        };
        for c in chosen {
            let column = &mut columns[c];
            column.rtts.extend_from_slice(&sample.rtts_ms);
            column.sent += sample.sent;
            column.received += sample.received;
        }
    }
    columns
}

/// `[start, end)` of each outage, by csm's one definition ([`csm_store::outages`], the
/// same as `analysis/queries/ping_outages.sql` and `csm_analysis.ping_outages`): from the
/// first measurement without a reply to the next answered one; an ongoing outage runs one
/// step past its last measurement.
pub fn outages(samples: &[PingSample]) -> Vec<(i64, i64)> {
    let measured = |s: &PingSample| csm_store::outages::measured(s.sent, s.error.as_deref());
    csm_store::outages::outages(samples.iter().map(|s| (s.ts_us, s.received, measured(s))))
        .into_iter()
        .map(|o| (o.start_us, o.until_us))
        .collect()
}

fn outage_note(ctx: &Context, periods: &[(i64, i64)]) -> String {
    if periods.is_empty() {
        return "No outages (every measurement got a reply).".into();
    }
    let mut words: Vec<String> = periods
        .iter()
        .take(NAMED_OUTAGES)
        .map(|&(start, end)| {
            // Seconds only where the outage does not start and end on whole minutes.
            let clock = if start % 60_000_000 == 0 && end % 60_000_000 == 0 {
                "%H:%M"
            } else {
                "%H:%M:%S"
            };
            format!(
                "{}–{} ({})",
                ctx.local(start).format(&format!("%m-%d {clock}")),
                ctx.local(end).format(clock),
                duration_words(end - start)
            )
        })
        .collect();
    if periods.len() > NAMED_OUTAGES {
        words.push(format!("and {} more", periods.len() - NAMED_OUTAGES));
    }
    format!(
        "Outages (no reply), {}: {}",
        ctx.zone_name(),
        words.join(", ")
    )
}

/// The first line of notes: how many measurements, echoes and losses; a target that was
/// never resolved or never answered says so in words rather than "0.0% lost".
fn measurement_note(samples: &[PingSample]) -> String {
    let (sent, received) = samples
        .iter()
        .fold((0, 0), |(s, r), m| (s + m.sent, r + m.received));
    let n = samples.len();
    if sent == 0 {
        let why = samples
            .iter()
            .rev()
            .find_map(|s| s.error.as_deref())
            .map(|e| format!(" (last error: {e})"))
            .unwrap_or_default();
        return format!(
            "No echo could be sent in {n} measurements: the target never resolved to an \
             address{why}."
        );
    }
    if received == 0 {
        return format!(
            "Never answered: none of the {sent} echoes sent in {n} measurements got a reply."
        );
    }
    let lost_pct = csm_store::stats::loss_pct(sent, received).unwrap_or(0.0);
    format!(
        "{n} measurements, {sent} echoes sent, {lost_pct:.1}% lost; bands: 10–90% and 25–75% of \
         replies per column."
    )
}

/// RTT tick labels with as many decimals as the tick step needs (0.05 ms steps get two),
/// in ms below 10 s and in seconds above. Returns the axis name and the formatter.
pub fn rtt_axis(limit_ms: f64) -> (String, impl Fn(&f64) -> String) {
    let (divisor, unit) = if limit_ms >= 10_000.0 {
        (1000.0, "s")
    } else {
        (1.0, "ms")
    };
    // plotters draws about 7 labels on round steps of 1, 2 or 5 × 10^k.
    let step = limit_ms / divisor / 7.0;
    let decimals = if step > 0.0 {
        (-step.log10().floor()).clamp(0.0, 4.0) as usize
    } else {
        0
    };
    let name = format!("round-trip time ({unit})");
    (name, move |v: &f64| format!("{:.*}", decimals, v / divisor))
}

fn ping_chart(
    ctx: &Context,
    target: &str,
    samples: &[PingSample],
) -> Result<String, Box<dyn std::error::Error>> {
    let mut columns = columns(ctx, samples);
    let spreads: Vec<Option<Spread>> = columns.iter_mut().map(spread).collect();
    let tops: Vec<Option<f64>> = spreads.iter().map(|s| s.map(|s| s[4])).collect();
    let scale = spike_scale(&tops.iter().flatten().copied().collect::<Vec<_>>());
    let spikes = clipped_spikes(&tops, scale.limit, 3);
    let periods = outages(samples);
    let mut notes = vec![measurement_note(samples), outage_note(ctx, &periods)];
    if let Some(words) = range_percentiles(samples) {
        notes.push(words);
    }
    if !spikes.is_empty() {
        let words: Vec<String> = spikes
            .iter()
            .map(|s| spike_words(ctx, s, &|v| format!("{v:.1} ms")))
            .collect();
        notes.push(format!(
            "▲ clipped RTT spikes (90th percentile): {}",
            words.join("; ")
        ));
    }
    let (axis_name, y_label) = rtt_axis(scale.limit);
    let legend = vec![
        LegendItem {
            colour: MEDIAN,
            label: "median RTT".into(),
        },
        LegendItem {
            colour: INNER_BAND,
            label: "25–75%".into(),
        },
        LegendItem {
            colour: OUTER_BAND,
            label: "10–90%".into(),
        },
        LegendItem {
            colour: LOSS_COLOUR,
            label: "echoes lost (bar height: share, scale at the right)".into(),
        },
        LegendItem {
            colour: OUTAGE_COLOUR,
            label: "outage: no reply".into(),
        },
    ];
    let page = Page::new(
        ctx.title(&format!("Ping {target}")),
        legend,
        notes,
        axis_name,
    );
    canvas::render(ctx, &page, 0.0..scale.limit, &y_label, |chart| {
        let (y0, y1) = canvas::y_bounds(chart);
        let column_s = ctx.grid.column_us() / 1e6;
        let losses = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.sent > c.received && c.received > 0);
        // Partial loss: a bar from the bottom as tall as the share lost, read on the loss
        // scale written at the right edge (the top of the plot is 100 % lost).
        let mut any_loss = false;
        chart.draw_series(losses.map(|(c, column)| {
            any_loss = true;
            let x = ctx.x_of_us(ctx.grid.start_us(c));
            let share =
                csm_store::stats::loss_pct(column.sent, column.received).unwrap_or(0.0) / 100.0;
            Rectangle::new(
                [(x, y0), (x + column_s, y0 + share * (y1 - y0))],
                LOSS_COLOUR.mix(0.55).filled(),
            )
        }))?;
        if any_loss {
            draw_loss_scale(chart, ctx)?;
        }
        chart.draw_series(periods.iter().map(|&(start, end)| {
            let (a, b) = (
                ctx.x_of_us(start).max(0.0),
                ctx.x_of_us(end).min(ctx.span_s()),
            );
            Rectangle::new([(a, y0), (b, y1)], OUTAGE_COLOUR.mix(0.35).filled())
        }))?;
        let band = |lo: usize, hi: usize| -> Vec<Option<(f64, f64)>> {
            spreads.iter().map(|s| s.map(|s| (s[lo], s[hi]))).collect()
        };
        canvas::draw_band(chart, ctx, &band(0, 4), OUTER_BAND.mix(0.35).filled())?;
        canvas::draw_band(chart, ctx, &band(1, 3), INNER_BAND.mix(0.45).filled())?;
        let median: Vec<Option<f64>> = spreads.iter().map(|s| s.map(|s| s[2])).collect();
        canvas::draw_line(chart, ctx, &median, MEDIAN.stroke_width(2))?;
        mark_spikes(chart, ctx, &spikes, true)
    })
}

/// The loss scale at the plot's right edge, inside it: 25 % to 100 % lost.
fn draw_loss_scale(chart: &mut canvas::Chart, ctx: &Context) -> canvas::DrawResult {
    let (y0, y1) = canvas::y_bounds(chart);
    let style = ("sans-serif", 12).into_font().color(&LOSS_COLOUR).pos(
        plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Right,
            plotters::style::text_anchor::VPos::Center,
        ),
    );
    chart.draw_series(LOSS_TICKS.iter().map(|&(share, label)| {
        let y = y0 + share * (y1 - y0);
        // The top label goes just under the edge, to stay inside the plot.
        let dy = if share >= 1.0 { 8 } else { 0 };
        EmptyElement::at((ctx.span_s(), y)) + Text::new(label, (-4, dy), style.clone())
    }))?;
    Ok(())
}

/// Shares lost marked on the loss scale, and their labels.
const LOSS_TICKS: [(f64, &str); 4] = [
    (0.25, "25% lost"),
    (0.5, "50% lost"),
    (0.75, "75% lost"),
    (1.0, "100% lost"),
];

/// Percentiles of every reply over the whole range (an HDR histogram: a month of 1 s
/// pings is millions of replies), for the notes.
fn range_percentiles(samples: &[PingSample]) -> Option<String> {
    let mut all = RttHistogram::default();
    for rtt in samples.iter().flat_map(|s| &s.rtts_ms) {
        all.record(*rtt);
    }
    let q = |q: f64| all.quantile_ms(q);
    Some(format!(
        "All {} replies: median {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms.",
        all.len(),
        q(0.5)?,
        q(0.9)?,
        q(0.99)?,
        all.max_ms()?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ts_s: i64, received: i64) -> PingSample {
        PingSample {
            ts_us: ts_s * 1_000_000,
            sent: 3,
            received,
            rtts_ms: vec![20.0; received as usize],
            error: None,
        }
    }

    #[test]
    fn an_outage_lasts_from_the_first_silent_measurement_to_the_next_reply() {
        let samples: Vec<PingSample> = (0..10)
            .map(|i| sample(i * 60, if (3..6).contains(&i) { 0 } else { 3 }))
            .collect();
        assert_eq!(outages(&samples), vec![(180_000_000, 360_000_000)]);
    }

    #[test]
    fn an_ongoing_outage_runs_one_step_past_its_last_measurement_as_in_sql() {
        // Steps of 60 s, then 30 s: the SQL query's ongoing outage ends at 90 + 30 s.
        let samples = vec![sample(0, 3), sample(60, 3), sample(90, 0)];
        assert_eq!(outages(&samples), vec![(90_000_000, 120_000_000)]);
    }

    #[test]
    fn rtt_labels_have_the_decimals_the_range_needs() {
        let label = |limit: f64, v: f64| rtt_axis(limit).1(&v);
        assert_eq!(label(0.35, 0.05), "0.05");
        assert_eq!(label(0.35, 0.25), "0.25");
        assert_eq!(label(3.0, 1.5), "1.5");
        assert_eq!(label(120.0, 20.0), "20");
        assert_eq!(rtt_axis(120.0).0, "round-trip time (ms)");
        assert_eq!(label(30_000.0, 5000.0), "5");
        assert_eq!(rtt_axis(30_000.0).0, "round-trip time (s)");
    }

    #[test]
    fn a_target_never_resolved_or_never_answering_is_said_in_words() {
        let unresolved = PingSample {
            ts_us: 0,
            sent: 0,
            received: 0,
            rtts_ms: vec![],
            error: Some("nohost.invalid: Name or service not known".into()),
        };
        assert_eq!(
            measurement_note(&[unresolved.clone(), unresolved]),
            "No echo could be sent in 2 measurements: the target never resolved to an address \
             (last error: nohost.invalid: Name or service not known)."
        );
        assert_eq!(
            measurement_note(&[sample(0, 0), sample(60, 0)]),
            "Never answered: none of the 6 echoes sent in 2 measurements got a reply."
        );
    }

    #[test]
    fn a_silent_last_measurement_lasts_one_interval() {
        let samples = vec![sample(0, 3), sample(60, 3), sample(120, 0)];
        assert_eq!(outages(&samples), vec![(120_000_000, 180_000_000)]);
    }
}
