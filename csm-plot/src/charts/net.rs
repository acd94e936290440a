//! Traffic per interface: in and out (Munin style: out above the axis, in below), the
//! diff out − in with the asymmetric totals, the log-scale sum with the diff overlaid,
//! the diff on a signed log axis, errors and drops (the kernel's counters), and traffic
//! per user.
//!
//! Spikes: each side scales to a high percentile of its per-column maxima when a few
//! columns tower over the rest; those are drawn clipped, marked with a red triangle and
//! their true value is written above the plot. The light band is the min–max of the rows
//! in each pixel column, the line their mean: both the normal level and the spike show.

use plotters::prelude::*;

use super::{draw_stack, legend_for, stack_tops, ChartFile, ChartResult};
use crate::bins::Level;
use crate::canvas::{
    self, clipped_spikes, mark_spikes, signed, spike_scale, spike_words, Chart, Context,
    DrawResult, LegendItem, Page, Scale, CYAN, HEIGHT, IN_COLOUR, MAGENTA, MORE_IN, MORE_OUT,
    OUT_COLOUR,
};
use crate::data::{NetData, NetKey, Totals, UserNetData};
use crate::link_errors::{LinkTotals, NetErrorData};
use crate::units::{bytes, rate, AxisUnit};

/// Spikes named in the notes, per side.
const NAMED_SPIKES: usize = 4;

/// One interface's columns.
struct Iface {
    /// What the titles say: `eth0`, or `eth0 in network namespace blue`.
    name: String,
    /// What the file names carry: `eth0`, or `eth0.netns-blue`.
    file: String,
    rx: Vec<Option<Level>>,
    tx: Vec<Option<Level>>,
    diff: Vec<Option<Level>>,
    /// Means over the time with data, bytes/s.
    avg_rx: f64,
    avg_tx: f64,
    totals: Totals,
}

/// What the titles and the file names call the interface of `key`: `eth0`, or `eth0 in
/// network namespace blue` and `eth0.netns-blue`.
fn iface_names(
    key: &str,
    interfaces: &std::collections::BTreeMap<String, NetKey>,
) -> (String, String) {
    match interfaces.get(key) {
        Some(NetKey {
            iface,
            namespace: Some(ns),
        }) => (
            format!("{iface} in network namespace {ns}"),
            format!("{}.netns-{}", super::file_part(iface), super::file_part(ns)),
        ),
        _ => (key.to_string(), super::file_part(key)),
    }
}

/// What the titles and file names call the interfaces summed beyond the busiest.
fn others_names(others: usize) -> (String, String) {
    (
        format!(
            "the {others} other interfaces summed (beyond the {} busiest)",
            crate::data::MAX_INTERFACES_CHARTED
        ),
        // 16 characters: longer than any interface name (IFNAMSIZ), so no file clashes.
        "other-interfaces".to_string(),
    )
}

/// [`iface_names`], or [`others_names`] for the key of the interfaces summed.
fn chart_names(
    key: &str,
    interfaces: &std::collections::BTreeMap<String, NetKey>,
    others: usize,
) -> (String, String) {
    if key == crate::data::OTHER_INTERFACES {
        others_names(others)
    } else {
        iface_names(key, interfaces)
    }
}

fn interfaces(data: &NetData) -> Vec<Iface> {
    let coverage = data.rx.coverage();
    data.rx
        .keys()
        .map(|key| {
            let (name, file) = chart_names(key, &data.interfaces, data.others);
            Iface {
                name,
                file,
                rx: data.rx.levels(key, &coverage),
                tx: data.tx.levels(key, &coverage),
                diff: data.diff.levels(key, &coverage),
                avg_rx: data.rx.time_average(key, &coverage),
                avg_tx: data.tx.time_average(key, &coverage),
                totals: data.totals.get(key).copied().unwrap_or_default(),
            }
        })
        .collect()
}

pub fn traffic(ctx: &Context, data: &NetData) -> ChartResult {
    per_iface(ctx, data, "net", traffic_chart)
}

pub fn diff(ctx: &Context, data: &NetData) -> ChartResult {
    per_iface(ctx, data, "net-diff", diff_chart)
}

type IfaceChart = fn(&Context, &Iface) -> Result<String, Box<dyn std::error::Error>>;

/// `<prefix>-<iface>.svg` for each interface, drawn by `chart`.
fn per_iface(ctx: &Context, data: &NetData, prefix: &str, chart: IfaceChart) -> ChartResult {
    interfaces(data)
        .iter()
        .map(|iface| Ok((format!("{prefix}-{}.svg", iface.file), chart(ctx, iface)?)))
        .collect()
}

/// `net-log-<iface>.svg` (sum on a log axis, diff overlaid) and `net-symlog-<iface>.svg`
/// (the signed diff on a symmetric log axis).
pub fn log(ctx: &Context, data: &NetData) -> ChartResult {
    let mut files: Vec<ChartFile> = Vec::new();
    for iface in interfaces(data) {
        let part = &iface.file;
        files.push((format!("net-log-{part}.svg"), log_chart(ctx, &iface)?));
        files.push((format!("net-symlog-{part}.svg"), symlog_chart(ctx, &iface)?));
    }
    Ok(files)
}

/// `net-errors-<iface>.svg` for each interface with errors or drops in the range.
pub fn errors(ctx: &Context, data: &NetErrorData) -> ChartResult {
    let coverage = data.rx.coverage();
    let mut files = Vec::new();
    for key in data.rx.keys() {
        let totals = data.totals.get(key).copied().unwrap_or_default();
        if !totals.any() {
            continue;
        }
        let (name, file) = chart_names(key, &data.interfaces, data.others);
        let rx = data.rx.levels(key, &coverage);
        let tx = data.tx.levels(key, &coverage);
        let svg = errors_chart(ctx, &name, &rx, &tx, &totals)?;
        files.push((format!("net-errors-{file}.svg"), svg));
    }
    Ok(files)
}

/// Errors and drops per second, out above the axis and in below, as the traffic chart.
fn errors_chart(
    ctx: &Context,
    name: &str,
    rx: &[Option<Level>],
    tx: &[Option<Level>],
    totals: &LinkTotals,
) -> Result<String, Box<dyn std::error::Error>> {
    let top = |levels: &[Option<Level>]| column_max(levels).into_iter().fold(0.0, f64::max);
    // Some room above the highest column; a side with none still shows its axis.
    let (out_limit, in_limit) = (top(tx).max(1.0) * 1.1, top(rx).max(1.0) * 1.1);
    let legend = vec![
        LegendItem {
            colour: OUT_COLOUR,
            label: format!(
                "out (sent, above): {} errors, {} dropped",
                totals.tx_errors, totals.tx_dropped
            ),
        },
        LegendItem {
            colour: IN_COLOUR,
            label: format!(
                "in (received, below): {} errors, {} dropped",
                totals.rx_errors, totals.rx_dropped
            ),
        },
    ];
    let notes = vec![
        "Packets per second, errors and drops together, as the kernel counts them          (ip -s link, sar -n EDEV); the legend gives the range's totals."
            .to_string(),
    ];
    let page = Page::new(
        ctx.title(&format!("Errors and drops of {name}")),
        legend,
        notes,
        "in ↓  packets/s  ↑ out".to_string(),
    );
    let unit = AxisUnit {
        divisor: 1.0,
        name: "packets/s",
    };
    let y_label = move |v: &f64| unit.number(v.abs());
    canvas::render(ctx, &page, -in_limit..out_limit, &y_label, |chart| {
        draw_side(chart, ctx, tx, 1.0, OUT_COLOUR)?;
        draw_side(chart, ctx, rx, -1.0, IN_COLOUR)?;
        draw_zero_line(chart, ctx)
    })
}

fn column_max(levels: &[Option<Level>]) -> Vec<f64> {
    levels.iter().flatten().map(|l| l.max).collect()
}

fn traffic_chart(ctx: &Context, iface: &Iface) -> Result<String, Box<dyn std::error::Error>> {
    let out_scale = spike_scale(&column_max(&iface.tx));
    let in_scale = spike_scale(&column_max(&iface.rx));
    let unit = AxisUnit::bits_per_s(out_scale.limit.max(in_scale.limit));
    let maxima = |levels: &[Option<Level>]| -> Vec<Option<f64>> {
        levels.iter().map(|l| l.map(|l| l.max)).collect()
    };
    let out_spikes = clipped_spikes(&maxima(&iface.tx), out_scale.limit, NAMED_SPIKES);
    let in_spikes = clipped_spikes(&maxima(&iface.rx), in_scale.limit, NAMED_SPIKES);
    let peak =
        |levels: &[Option<Level>]| levels.iter().flatten().map(|l| l.max).fold(0.0, f64::max);
    let side = |colour: RGBColor, words: &str, total: f64, avg: f64, levels: &[Option<Level>]| {
        LegendItem {
            colour,
            label: format!(
                "{words}: total {}, avg {}, peak {}",
                bytes(total),
                rate(avg),
                rate(peak(levels))
            ),
        }
    };
    let legend = vec![
        side(
            OUT_COLOUR,
            "out (sent, above)",
            iface.totals.tx,
            iface.avg_tx,
            &iface.tx,
        ),
        side(
            IN_COLOUR,
            "in (received, below)",
            iface.totals.rx,
            iface.avg_rx,
            &iface.rx,
        ),
    ];
    let mut notes = vec![
        "Line: mean per pixel column; light band: lowest to highest row in the column.".to_string(),
    ];
    notes.extend(spike_note(ctx, "out", &out_spikes, &|v| rate(v)));
    notes.extend(spike_note(ctx, "in", &in_spikes, &|v| rate(v)));
    let page = Page::new(
        ctx.title(&format!("Traffic of {}", iface.name)),
        legend,
        notes,
        format!("in ↓  {}  ↑ out", unit.name),
    );
    let y_label = move |v: &f64| unit.number(v.abs());
    canvas::render(
        ctx,
        &page,
        -in_scale.limit..out_scale.limit,
        &y_label,
        |chart| {
            draw_side(chart, ctx, &iface.tx, 1.0, OUT_COLOUR)?;
            draw_side(chart, ctx, &iface.rx, -1.0, IN_COLOUR)?;
            draw_zero_line(chart, ctx)?;
            mark_spikes(chart, ctx, &out_spikes, true)?;
            mark_spikes(chart, ctx, &in_spikes, false)
        },
    )
}

/// "clipped out spikes (true value): 950.0 Mbit/s at 10:21, …"
fn spike_note(
    ctx: &Context,
    side: &str,
    spikes: &[canvas::Spike],
    format: &dyn Fn(f64) -> String,
) -> Option<String> {
    if spikes.is_empty() {
        return None;
    }
    let words: Vec<String> = spikes.iter().map(|s| spike_words(ctx, s, format)).collect();
    Some(format!(
        "▲ clipped {side} spikes, true peak: {}",
        words.join("; ")
    ))
}

/// One side of the traffic chart: band, then a filled mean area, then its edge.
fn draw_side(
    chart: &mut Chart,
    ctx: &Context,
    levels: &[Option<Level>],
    sign: f64,
    colour: RGBColor,
) -> DrawResult {
    let (means, bands) = signed(levels, sign);
    canvas::draw_band(chart, ctx, &bands, colour.mix(0.3).filled())?;
    let area: Vec<Option<(f64, f64)>> = means.iter().map(|m| m.map(|m| (0.0, m))).collect();
    canvas::draw_band(chart, ctx, &area, colour.mix(0.55).filled())?;
    canvas::draw_line(chart, ctx, &means, colour.stroke_width(1))
}

fn draw_zero_line(chart: &mut Chart, ctx: &Context) -> DrawResult {
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(0.0, 0.0), (ctx.span_s(), 0.0)],
        BLACK.stroke_width(2),
    )))?;
    Ok(())
}

fn diff_chart(ctx: &Context, iface: &Iface) -> Result<String, Box<dyn std::error::Error>> {
    let extremes: Vec<f64> = iface
        .diff
        .iter()
        .flatten()
        .map(|l| l.max.abs().max(l.min.abs()))
        .collect();
    let scale = spike_scale(&extremes);
    let unit = AxisUnit::bits_per_s(scale.limit);
    let highs: Vec<Option<f64>> = iface.diff.iter().map(|l| l.map(|l| l.max)).collect();
    let lows: Vec<Option<f64>> = iface.diff.iter().map(|l| l.map(|l| -l.min)).collect();
    let up_spikes = clipped_spikes(&highs, scale.limit, NAMED_SPIKES);
    let mut down_spikes = clipped_spikes(&lows, scale.limit, NAMED_SPIKES);
    down_spikes.iter_mut().for_each(|s| s.value = -s.value);
    let legend = vec![
        LegendItem {
            colour: MORE_OUT,
            label: "out − in > 0: more sent than received".into(),
        },
        LegendItem {
            colour: MORE_IN,
            label: "out − in < 0: more received than sent".into(),
        },
    ];
    let mut notes = vec![asymmetry_note(&iface.totals)];
    notes.extend(spike_note(
        ctx,
        "diff",
        &[up_spikes.clone(), down_spikes.clone()].concat(),
        &|v| rate(v),
    ));
    let page = Page::new(
        ctx.title(&format!("Asymmetric traffic (out − in) of {}", iface.name)),
        legend,
        notes,
        format!("out − in ({})", unit.name),
    );
    let y_label = move |v: &f64| unit.number(*v);
    canvas::render(ctx, &page, -scale.limit..scale.limit, &y_label, |chart| {
        draw_diff_areas(chart, ctx, &iface.diff)?;
        draw_zero_line(chart, ctx)?;
        mark_spikes(chart, ctx, &up_spikes, true)?;
        mark_spikes(chart, ctx, &down_spikes, false)
    })
}

/// The totals the original tool printed under its diff plot.
pub fn asymmetry_note(totals: &Totals) -> String {
    format!(
        "Total asymmetric bytes: out > in {}, in > out {} (of {} sent, {} received)",
        bytes(totals.more_out),
        bytes(totals.more_in),
        bytes(totals.tx),
        bytes(totals.rx)
    )
}

/// The diff's band of row extremes (lowest to highest row per column), light grey.
fn draw_row_extremes(chart: &mut Chart, ctx: &Context, band: &[Option<(f64, f64)>]) -> DrawResult {
    canvas::draw_band(chart, ctx, band, RGBColor(160, 160, 160).mix(0.25).filled())
}

/// Positive means in one colour, negative in the other; the band of row extremes behind.
fn draw_diff_areas(chart: &mut Chart, ctx: &Context, diff: &[Option<Level>]) -> DrawResult {
    let band: Vec<Option<(f64, f64)>> = diff.iter().map(|l| l.map(|l| (l.min, l.max))).collect();
    draw_row_extremes(chart, ctx, &band)?;
    let positive: Vec<Option<(f64, f64)>> = diff
        .iter()
        .map(|l| l.map(|l| (0.0, l.mean.max(0.0))))
        .collect();
    let negative: Vec<Option<(f64, f64)>> = diff
        .iter()
        .map(|l| l.map(|l| (l.mean.min(0.0), 0.0)))
        .collect();
    canvas::draw_band(chart, ctx, &positive, MORE_OUT.mix(0.85).filled())?;
    canvas::draw_band(chart, ctx, &negative, MORE_IN.mix(0.85).filled())
}

/// Decades of bits/s from `10^low` to `10^high` as axis ticks; `to_axis` maps bytes/s.
fn decade_ticks(
    low: f64,
    high: f64,
    sign: f64,
    to_axis: &dyn Fn(f64) -> f64,
) -> Vec<(f64, String)> {
    let mut ticks = Vec::new();
    let mut exponent = low.floor() as i32;
    while f64::from(exponent) <= high.ceil() {
        let bytes_per_s = 10f64.powi(exponent) / 8.0;
        let unit = AxisUnit::bits_per_s(bytes_per_s);
        let prefix = if sign < 0.0 { "−" } else { "" };
        ticks.push((
            to_axis(sign * bytes_per_s),
            format!("{prefix}{}", unit.with_unit(bytes_per_s)),
        ));
        exponent += 1;
    }
    ticks
}

fn log_chart(ctx: &Context, iface: &Iface) -> Result<String, Box<dyn std::error::Error>> {
    let sums: Vec<Option<(f64, f64)>> = iface
        .rx
        .iter()
        .zip(&iface.tx)
        .map(|(r, t)| {
            Some((
                r.as_ref()?.mean + t.as_ref()?.mean,
                r.as_ref()?.max + t.as_ref()?.max,
            ))
        })
        .collect();
    // The axis is log10 of bits/s, so that decades fall on round rates.
    let top_bits = sums
        .iter()
        .flatten()
        .map(|s| s.1 * 8.0)
        .fold(10.0, f64::max);
    // Six decades under the top: enough for the diff of a busy relay, not dominated by idle.
    let (high, low) = (
        top_bits.log10() + 0.15,
        (top_bits.log10() - 6.0).floor().max(0.0),
    );
    let log = move |bytes_per_s: f64| (bytes_per_s * 8.0).max(10f64.powf(low)).log10();
    let ticks = decade_ticks(low, high, 1.0, &log);
    let page = Page {
        title: ctx.title(&format!(
            "Traffic in + out of {}, log scale, diff overlaid",
            iface.name
        )),
        legend: vec![
            LegendItem {
                colour: RGBColor(90, 90, 90),
                label: "in + out".into(),
            },
            LegendItem {
                colour: MAGENTA,
                label: "out − in > 0 (more sent)".into(),
            },
            LegendItem {
                colour: CYAN,
                label: "out − in < 0 (more received)".into(),
            },
        ],
        notes: vec![
            "Log scale: each grid step is ×10, so a diff ten times smaller than the traffic \
             is drawn only one step lower; read sizes on the axis, or see net-diff."
                .into(),
            asymmetry_note(&iface.totals),
        ],
        y_desc: "bits/s (log)".into(),
        y_ticks: Some(ticks),
        height: HEIGHT,
    };
    canvas::render(ctx, &page, low..high, &|_| String::new(), |chart| {
        let sum_area: Vec<Option<(f64, f64)>> =
            sums.iter().map(|s| s.map(|s| (low, log(s.0)))).collect();
        canvas::draw_band(
            chart,
            ctx,
            &sum_area,
            RGBColor(90, 90, 90).mix(0.25).filled(),
        )?;
        let sum_line: Vec<Option<f64>> = sums.iter().map(|s| s.map(|s| log(s.0))).collect();
        canvas::draw_line(chart, ctx, &sum_line, RGBColor(90, 90, 90).stroke_width(1))?;
        let overlay = |sign: f64| -> Vec<Option<(f64, f64)>> {
            iface
                .diff
                .iter()
                .map(|l| {
                    l.filter(|l| l.mean * sign > 0.0)
                        .map(|l| (low, log(l.mean.abs())))
                })
                .collect()
        };
        canvas::draw_band(chart, ctx, &overlay(1.0), MAGENTA.mix(0.75).filled())?;
        canvas::draw_band(chart, ctx, &overlay(-1.0), CYAN.mix(0.75).filled())
    })
}

/// Signed log: `sign(v) · log10(1 + |v| / linear)`, linear near zero, logarithmic beyond,
/// so both directions of the diff and its size over decades read from one axis.
fn symlog(v: f64, linear: f64) -> f64 {
    v.signum() * (1.0 + v.abs() / linear).log10()
}

fn symlog_chart(ctx: &Context, iface: &Iface) -> Result<String, Box<dyn std::error::Error>> {
    let biggest = iface
        .diff
        .iter()
        .flatten()
        .map(|l| l.max.abs().max(l.min.abs()))
        .fold(0.0, f64::max);
    // Below 1/10⁵ of the largest diff (and 1 kbit/s), the axis is linear.
    let linear = 10f64.powf((biggest / 1e5).max(125.0).log10().floor());
    let to_axis = move |v: f64| symlog(v, linear);
    let limit = to_axis(biggest.max(linear * 10.0)) * 1.05;
    let (low, high) = (linear.log10() + 1.0, biggest.max(linear * 10.0).log10());
    let mut ticks = vec![(0.0, "0".to_string())];
    ticks.extend(decade_ticks(low, high, 1.0, &to_axis));
    ticks.extend(decade_ticks(low, high, -1.0, &to_axis));
    let page = Page {
        title: ctx.title(&format!("out − in of {} on a signed log axis", iface.name)),
        legend: vec![
            LegendItem {
                colour: MAGENTA,
                label: "more sent (above)".into(),
            },
            LegendItem {
                colour: CYAN,
                label: "more received (below)".into(),
            },
        ],
        notes: vec![
            format!(
                "Signed log axis: linear within ±{} of zero, then one step per decade.",
                rate(linear)
            ),
            asymmetry_note(&iface.totals),
        ],
        y_desc: "out − in, bits/s (signed log)".into(),
        y_ticks: Some(ticks),
        height: HEIGHT,
    };
    canvas::render(ctx, &page, -limit..limit, &|_| String::new(), |chart| {
        let part = |sign: f64| -> Vec<Option<(f64, f64)>> {
            iface
                .diff
                .iter()
                .map(|l| l.map(|l| (0.0, to_axis(if l.mean * sign > 0.0 { l.mean } else { 0.0 }))))
                .collect()
        };
        let band: Vec<Option<(f64, f64)>> = iface
            .diff
            .iter()
            .map(|l| l.map(|l| (to_axis(l.min), to_axis(l.max))))
            .collect();
        draw_row_extremes(chart, ctx, &band)?;
        canvas::draw_band(chart, ctx, &part(1.0), MAGENTA.mix(0.8).filled())?;
        canvas::draw_band(chart, ctx, &part(-1.0), CYAN.mix(0.8).filled())?;
        draw_zero_line(chart, ctx)
    })
}

/// Traffic per user: each user's sent bytes stacked above the axis, received below.
pub fn users(ctx: &Context, data: &UserNetData, users: &[String]) -> ChartResult {
    let coverage = data.rx.coverage();
    if !coverage.iter().any(|c| *c > 0.0) {
        return Ok(Vec::new());
    }
    // The run's one order of users: the same colour above and below, and as in cpu.svg.
    let out_layers = super::layers_in_order(&data.tx, &coverage, users);
    let in_layers = super::layers_in_order(&data.rx, &coverage, users);
    let out_top = column_tops(&out_layers);
    let in_top = column_tops(&in_layers);
    let (out_scale, in_scale) = (spike_scale(&out_top), spike_scale(&in_top));
    let out_spikes = clipped_spikes(&top_per_column(&out_layers), out_scale.limit, NAMED_SPIKES);
    let in_spikes = clipped_spikes(&top_per_column(&in_layers), in_scale.limit, NAMED_SPIKES);
    let unit = AxisUnit::bits_per_s(out_scale.limit.max(in_scale.limit));
    let legend = legend_for(&out_layers, |l| {
        let received = in_layers
            .iter()
            .find(|i| i.label == l.label)
            .map_or(0.0, |i| i.average);
        format!(
            "{} (avg out {}, in {})",
            l.label,
            rate(l.average),
            rate(received)
        )
    });
    let mut notes = vec![
        "Stacked means per pixel column: sent above the axis, received below.".to_string(),
        super::averages_note(&coverage),
    ];
    notes.extend(scale_note(&out_scale, &out_top, "out"));
    notes.extend(scale_note(&in_scale, &in_top, "in"));
    let page = Page::new(
        ctx.title("Traffic per user"),
        legend,
        notes,
        format!("in ↓  {}  ↑ out", unit.name),
    );
    let y_label = move |v: &f64| unit.number(v.abs());
    let svg = canvas::render(
        ctx,
        &page,
        -in_scale.limit..out_scale.limit,
        &y_label,
        |chart| {
            draw_stack(chart, ctx, &out_layers, 1.0)?;
            draw_stack(chart, ctx, &in_layers, -1.0)?;
            draw_zero_line(chart, ctx)?;
            mark_spikes(chart, ctx, &out_spikes, true)?;
            mark_spikes(chart, ctx, &in_spikes, false)
        },
    )?;
    Ok(vec![("net-users.svg".into(), svg)])
}

/// The top of the stack in each column (`None` in gaps).
fn top_per_column(layers: &[super::Layer]) -> Vec<Option<f64>> {
    stack_tops(layers).pop().unwrap_or_default()
}

fn column_tops(layers: &[super::Layer]) -> Vec<f64> {
    stack_tops(layers)
        .last()
        .map(|t| t.iter().flatten().copied().collect())
        .unwrap_or_default()
}

fn scale_note(scale: &Scale, tops: &[f64], side: &str) -> Option<String> {
    scale.clipped.then(|| {
        let peak = tops.iter().copied().fold(0.0, f64::max);
        format!(
            "{side} clipped at {}; highest column {}",
            rate(scale.limit),
            rate(peak)
        )
    })
}
