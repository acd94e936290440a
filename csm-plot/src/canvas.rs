//! What every chart shares: the page layout (title, legend and notes above the plot, so
//! they never cover data), the Okabe–Ito colours, the UTC time axis, gaps, clipped spikes.

use std::error::Error;
use std::ops::Range;

use chrono::{DateTime, FixedOffset, Utc};

use crate::zone::Zone;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::bins::{quantile, Grid, Level};

/// Page width, and so the number of pixel columns data is binned into.
pub const WIDTH: u32 = 1000;
/// Left room for the y tick labels and the axis name.
pub const Y_LABEL_AREA: u32 = 86;
pub const RIGHT_MARGIN: u32 = 20;
/// Room under the plot for the time labels and the axis name.
pub const X_LABEL_AREA: u32 = 44;
/// The plot area is filled with this colour (nearly white), which tests use to find it.
pub const PLOT_BACKGROUND: RGBColor = RGBColor(0xFC, 0xFC, 0xFC);

/// Columns of the plot area: one bucket per pixel.
pub const PLOT_COLUMNS: usize = (WIDTH - Y_LABEL_AREA - RIGHT_MARGIN - 10) as usize;

/// Okabe–Ito: told apart by readers with any common colour-vision deficiency.
pub const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(230, 159, 0),   // orange
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(240, 228, 66),  // yellow
];
pub const OTHERS: RGBColor = RGBColor(150, 150, 150);
pub const OUT_COLOUR: RGBColor = PALETTE[0];
pub const IN_COLOUR: RGBColor = PALETTE[2];
pub const MORE_OUT: RGBColor = RGBColor(213, 94, 0);
pub const MORE_IN: RGBColor = RGBColor(86, 180, 233);
/// The original tool's overlay colours: magenta for extra output, cyan for extra input.
pub const MAGENTA: RGBColor = RGBColor(204, 0, 204);
pub const CYAN: RGBColor = RGBColor(0, 170, 200);
pub const GAP_SHADE: RGBColor = RGBColor(215, 215, 215);
pub const SPIKE_MARK: RGBColor = RGBColor(200, 0, 0);

const FONT: &str = "sans-serif";
const TITLE_SIZE: u32 = 18;
const TEXT_SIZE: u32 = 13;
const LINE_HEIGHT: i32 = 18;

pub type DrawResult = Result<(), Box<dyn Error>>;
pub type Chart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The host and range every chart is titled with, and when csm was not running.
#[derive(Clone, Debug)]
pub struct Context {
    pub host: String,
    pub grid: Grid,
    /// `[start, end)` in microseconds when the daemon was stopped (from `events`).
    pub down: Vec<(i64, i64)>,
    /// Time zone of the axis and of times written on the chart.
    pub tz: Zone,
}

impl Context {
    pub fn span_s(&self) -> f64 {
        (self.grid.to_us - self.grid.from_us) as f64 / 1e6
    }

    /// Seconds since the start of the range, the chart's x coordinate.
    pub fn x_of_us(&self, ts_us: i64) -> f64 {
        (ts_us - self.grid.from_us) as f64 / 1e6
    }

    pub fn x_of_column(&self, c: usize) -> f64 {
        self.x_of_us(self.grid.mid_us(c))
    }

    pub fn range_text(&self) -> String {
        format!(
            "{} to {} {}",
            self.local(self.grid.from_us).format("%Y-%m-%d %H:%M"),
            self.local(self.grid.to_us).format("%Y-%m-%d %H:%M"),
            self.zone_name()
        )
    }

    /// A time in the chart's zone.
    pub fn local(&self, ts_us: i64) -> DateTime<FixedOffset> {
        self.tz.local(ts_us)
    }

    /// `UTC`, `UTC+02:00` or `Europe/Berlin`.
    pub fn zone_name(&self) -> String {
        self.tz.name().to_string()
    }

    pub fn title(&self, what: &str) -> String {
        format!("{what} on {}, {}", self.host, self.range_text())
    }
}

pub fn utc(ts_us: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(ts_us).unwrap_or_default()
}

/// A coloured entry of the legend.
#[derive(Clone, Debug)]
pub struct LegendItem {
    pub colour: RGBColor,
    pub label: String,
}

/// The page of one chart: what goes above the plot, the y axis, and the page height.
pub struct Page {
    pub title: String,
    pub legend: Vec<LegendItem>,
    /// Lines of text under the legend: totals, clipped spikes, outages.
    pub notes: Vec<String>,
    pub y_desc: String,
    /// Hand-placed y ticks (value, label) for transformed axes (log, signed log); `None`
    /// lets plotters choose round values.
    pub y_ticks: Option<Vec<(f64, String)>>,
    pub height: u32,
}

/// Default page height of a one-plot chart.
pub const HEIGHT: u32 = 460;

impl Page {
    /// A one-plot page of the default height whose y ticks plotters chooses.
    pub fn new(title: String, legend: Vec<LegendItem>, notes: Vec<String>, y_desc: String) -> Page {
        Page {
            title,
            legend,
            notes,
            y_desc,
            y_ticks: None,
            height: HEIGHT,
        }
    }

    /// Pixels above the plot, which grow with the legend and the notes.
    fn header_height(&self) -> u32 {
        let legend_rows = legend_rows(&self.legend).len() as i32;
        (10 + LINE_HEIGHT + 8 + (legend_rows + self.notes.len() as i32) * LINE_HEIGHT + 8) as u32
    }
}

/// Legend items split into rows that fit the page width (text width is estimated).
fn legend_rows(items: &[LegendItem]) -> Vec<Vec<(i32, &LegendItem)>> {
    let mut rows: Vec<Vec<(i32, &LegendItem)>> = Vec::new();
    let mut x = 0;
    let max_x = (WIDTH - 20) as i32;
    for item in items {
        let width = 18 + text_width(&item.label, TEXT_SIZE) + 18;
        if rows.is_empty() || x + width > max_x {
            rows.push(Vec::new());
            x = Y_LABEL_AREA as i32 - 20;
        }
        if let Some(row) = rows.last_mut() {
            row.push((x, item));
        }
        x += width;
    }
    rows
}

/// Generous estimate of rendered text width; browsers' sans-serif averages ~0.55 em.
pub fn text_width(text: &str, size: u32) -> i32 {
    (text.chars().count() as f64 * size as f64 * 0.6).ceil() as i32
}

fn text_style(size: u32, colour: &RGBColor) -> TextStyle<'static> {
    (FONT, size).into_font().color(colour)
}

/// Renders one chart to an SVG string: header, axes, time ticks, gap shading, then `body`.
pub fn render(
    ctx: &Context,
    page: &Page,
    y_range: Range<f64>,
    y_label: &dyn Fn(&f64) -> String,
    body: impl FnOnce(&mut Chart) -> DrawResult,
) -> Result<String, Box<dyn Error>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, page.height)).into_drawing_area();
        root.fill(&WHITE)?;
        draw_header(&root, page)?;
        let mut chart = ChartBuilder::on(&root)
            .margin_top(page.header_height())
            .margin_right(RIGHT_MARGIN)
            .margin_left(10)
            .x_label_area_size(X_LABEL_AREA)
            .y_label_area_size(Y_LABEL_AREA - 10)
            .build_cartesian_2d(0.0..ctx.span_s(), y_range)?;
        chart.plotting_area().fill(&PLOT_BACKGROUND)?;
        let y_labels = if page.y_ticks.is_some() { 0 } else { 7 };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_labels(y_labels)
            .y_desc(page.y_desc.as_str())
            .y_label_formatter(y_label)
            .label_style(text_style(TEXT_SIZE - 1, &BLACK))
            .axis_desc_style(text_style(TEXT_SIZE, &BLACK))
            // Only the labelled grid lines: the finer ones made the plot look hatched.
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()?;
        draw_time_axis(&root, &mut chart, ctx)?;
        if let Some(ticks) = &page.y_ticks {
            draw_y_ticks(&root, &mut chart, ticks)?;
        }
        shade_down_periods(&mut chart, ctx)?;
        body(&mut chart)?;
        root.present()?;
    }
    Ok(with_tooltips(&svg, &page.legend))
}

/// `#RRGGBB` as plotters writes colours in SVG attributes.
fn hex(colour: &RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", colour.0, colour.1, colour.2)
}

/// Gives every shape drawn in a legend colour a `<title>` with that legend entry, which
/// browsers show as a tooltip when the pointer rests on the series (plotters has no
/// tooltips of its own).
pub fn with_tooltips(svg: &str, legend: &[LegendItem]) -> String {
    let mut labels: Vec<(String, String)> = Vec::new();
    for item in legend {
        let colour = hex(&item.colour);
        match labels.iter_mut().find(|(c, _)| *c == colour) {
            Some((_, label)) => {
                label.push_str("; ");
                label.push_str(&item.label);
            }
            None => labels.push((colour, item.label.clone())),
        }
    }
    let mut out = String::with_capacity(svg.len() + 1024);
    let mut rest = svg;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('>') else {
            break;
        };
        let element = &rest[start..=start + len];
        rest = &rest[start + len + 1..];
        let label = shape_name(element).and_then(|name| {
            labels
                .iter()
                .find(|(colour, _)| {
                    element.contains(&format!("fill=\"{colour}\""))
                        || element.contains(&format!("stroke=\"{colour}\""))
                })
                .map(|(_, label)| (name, label))
        });
        match label {
            Some((name, label)) => {
                out.push_str(element.trim_end_matches("/>").trim_end());
                out.push_str(&format!("><title>{}</title></{name}>", escape_xml(label)));
            }
            None => out.push_str(element),
        }
    }
    out.push_str(rest);
    out
}

/// The tag of a self-closing shape element (`polygon`, `polyline`, `rect`, `path`).
fn shape_name(element: &str) -> Option<&'static str> {
    if !element.ends_with("/>") {
        return None;
    }
    ["polygon", "polyline", "rect", "path"]
        .into_iter()
        .find(|name| element.starts_with(&format!("<{name} ")))
}

fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn draw_header(root: &DrawingArea<SVGBackend, plotters::coord::Shift>, page: &Page) -> DrawResult {
    let left = Y_LABEL_AREA as i32 - 20;
    root.draw(&Text::new(
        page.title.clone(),
        (left, 10),
        text_style(TITLE_SIZE, &BLACK),
    ))?;
    let mut y = 10 + LINE_HEIGHT + 10;
    for row in legend_rows(&page.legend) {
        for (x, item) in row {
            root.draw(&Rectangle::new(
                [(x, y), (x + 12, y + 12)],
                item.colour.filled(),
            ))?;
            root.draw(&Text::new(
                item.label.clone(),
                (x + 18, y),
                text_style(TEXT_SIZE, &BLACK),
            ))?;
        }
        y += LINE_HEIGHT;
    }
    for note in &page.notes {
        root.draw(&Text::new(
            note.clone(),
            (left, y),
            text_style(TEXT_SIZE, &BLACK),
        ))?;
        y += LINE_HEIGHT;
    }
    Ok(())
}

/// Ticks placed by the chart (log axes): a light line across and a label at the left.
fn draw_y_ticks(
    root: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    chart: &mut Chart,
    ticks: &[(f64, String)],
) -> DrawResult {
    let (x_px, _) = chart.plotting_area().get_pixel_range();
    let (y0, y1) = y_bounds(chart);
    let style = text_style(TEXT_SIZE - 1, &BLACK).pos(plotters::style::text_anchor::Pos::new(
        plotters::style::text_anchor::HPos::Right,
        plotters::style::text_anchor::VPos::Center,
    ));
    for (value, label) in ticks.iter().filter(|(v, _)| (y0..=y1).contains(v)) {
        let (_, py) = chart.backend_coord(&(0.0, *value));
        root.draw(&PathElement::new(
            vec![(x_px.start, py), (x_px.end, py)],
            RGBColor(225, 225, 225),
        ))?;
        root.draw(&PathElement::new(
            vec![(x_px.start - 5, py), (x_px.start, py)],
            BLACK,
        ))?;
        root.draw(&Text::new(
            label.clone(),
            (x_px.start - 7, py),
            style.clone(),
        ))?;
    }
    Ok(())
}

/// Tick steps a time axis may use, in seconds, smallest first.
const TIME_STEPS: [i64; 24] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
    172_800, 345_600, 604_800, 1_209_600, 2_592_000, 5_184_000,
];

/// The smallest step that keeps labels apart (they are ~90 px wide at most).
fn time_step_s(span_s: f64, plot_px: f64) -> i64 {
    let max_ticks = (plot_px / 100.0).max(2.0);
    TIME_STEPS
        .into_iter()
        .find(|&step| span_s / step as f64 <= max_ticks)
        .unwrap_or(TIME_STEPS[TIME_STEPS.len() - 1])
}

/// Ticks on round times of the chart's zone; the date is shown at midnight, or on every
/// tick when a tick is a day or more.
fn draw_time_axis(
    root: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    chart: &mut Chart,
    ctx: &Context,
) -> DrawResult {
    let (x_px, y_px) = chart.plotting_area().get_pixel_range();
    let step = time_step_s(ctx.span_s(), (x_px.end - x_px.start) as f64);
    let style = text_style(TEXT_SIZE - 1, &BLACK).pos(plotters::style::text_anchor::Pos::new(
        plotters::style::text_anchor::HPos::Center,
        plotters::style::text_anchor::VPos::Top,
    ));
    for (tick, local_s) in time_ticks(&ctx.tz, ctx.grid.from_us, ctx.grid.to_us, step) {
        let x = ctx.x_of_us(tick * 1_000_000);
        let (px, _) = chart.backend_coord(&(x, 0.0));
        let time = ctx.local(tick * 1_000_000);
        let label = if step >= 86_400 {
            time.format("%m-%d").to_string()
        } else if local_s % 86_400 == 0 {
            time.format("%m-%d %H:%M").to_string()
        } else if step < 60 {
            time.format("%H:%M:%S").to_string()
        } else {
            time.format("%H:%M").to_string()
        };
        root.draw(&PathElement::new(
            vec![(px, y_px.start), (px, y_px.end)],
            RGBColor(225, 225, 225),
        ))?;
        root.draw(&PathElement::new(
            vec![(px, y_px.end), (px, y_px.end + 5)],
            BLACK,
        ))?;
        root.draw(&Text::new(label, (px, y_px.end + 7), style.clone()))?;
    }
    let centre = (x_px.start + x_px.end) / 2;
    root.draw(&Text::new(
        format!("time ({})", ctx.zone_name()),
        (centre, y_px.end + 25),
        style,
    ))?;
    Ok(())
}

/// Ticks `(UTC seconds, local seconds)` on round local times of the zone: multiples of
/// `step` on the zone's clock (midnight there, not in UTC), each placed at the instant that
/// clock shows it, so ticks stay on round local times across a daylight saving change.
/// A local time that does not exist (skipped in spring) gets no tick; one that happens
/// twice (autumn) gets one per instant.
pub fn time_ticks(zone: &Zone, from_us: i64, to_us: i64, step: i64) -> Vec<(i64, i64)> {
    let from_s = from_us.div_euclid(1_000_000);
    let to_s = to_us.div_euclid(1_000_000);
    let offset_s = |utc_s: i64| i64::from(zone.offset_at(utc_s * 1_000_000).local_minus_utc());
    // Local clock range to scan: widened by a day so every offset is covered.
    let first_local = (from_s + offset_s(from_s) - 86_400).div_euclid(step) * step;
    let last_local = to_s + offset_s(to_s) + 86_400;
    let mut ticks: Vec<(i64, i64)> = Vec::new();
    let mut local = first_local;
    while local <= last_local {
        // Either offset on each side of a change may be the one in force at this time.
        for guess in [offset_s(local - 86_400 / 2), offset_s(local + 86_400 / 2)] {
            let utc_s = local - guess;
            if offset_s(utc_s) == guess
                && (from_s..=to_s).contains(&utc_s)
                && !ticks.contains(&(utc_s, local))
            {
                ticks.push((utc_s, local));
            }
        }
        local += step;
    }
    ticks.sort();
    ticks
}

/// Periods the daemon was not running, shaded grey across the plot.
fn shade_down_periods(chart: &mut Chart, ctx: &Context) -> DrawResult {
    let (y0, y1) = y_bounds(chart);
    for &(start, end) in &ctx.down {
        let (a, b) = (
            ctx.x_of_us(start).max(0.0),
            ctx.x_of_us(end).min(ctx.span_s()),
        );
        if b > a {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(a, y0), (b, y1)],
                GAP_SHADE.mix(0.6).filled(),
            )))?;
        }
    }
    Ok(())
}

/// The y range of the chart's coordinates.
pub fn y_bounds(chart: &Chart) -> (f64, f64) {
    let range = chart.y_range();
    (range.start, range.end)
}

/// Runs of consecutive columns that have a value: each becomes its own path or polygon,
/// so gaps stay gaps.
pub fn runs<T: Copy>(values: &[Option<T>]) -> Vec<Vec<(usize, T)>> {
    let mut out: Vec<Vec<(usize, T)>> = Vec::new();
    let mut open = false;
    for (c, v) in values.iter().enumerate() {
        match v {
            Some(v) => {
                if !open {
                    out.push(Vec::new());
                    open = true;
                }
                if let Some(run) = out.last_mut() {
                    run.push((c, *v));
                }
            }
            None => open = false,
        }
    }
    out
}

/// A filled band between `low` and `high` per column, clamped to the plot.
pub fn draw_band(
    chart: &mut Chart,
    ctx: &Context,
    bounds: &[Option<(f64, f64)>],
    style: ShapeStyle,
) -> DrawResult {
    let (y0, y1) = y_bounds(chart);
    for run in runs(bounds) {
        let mut points: Vec<(f64, f64)> = run
            .iter()
            .map(|&(c, (_, high))| (ctx.x_of_column(c), high.clamp(y0, y1)))
            .collect();
        points.extend(
            run.iter()
                .rev()
                .map(|&(c, (low, _))| (ctx.x_of_column(c), low.clamp(y0, y1))),
        );
        if run.len() == 1 {
            // A lone column: widen it to a visible sliver.
            let (c, (low, high)) = run[0];
            let half = ctx.grid.column_us() / 2e6;
            let x = ctx.x_of_column(c);
            points = vec![
                (x - half, high.clamp(y0, y1)),
                (x + half, high.clamp(y0, y1)),
                (x + half, low.clamp(y0, y1)),
                (x - half, low.clamp(y0, y1)),
            ];
        }
        chart.draw_series(std::iter::once(Polygon::new(points, style)))?;
    }
    Ok(())
}

/// A line through each run of column values, clamped to the plot.
pub fn draw_line(
    chart: &mut Chart,
    ctx: &Context,
    values: &[Option<f64>],
    style: ShapeStyle,
) -> DrawResult {
    let (y0, y1) = y_bounds(chart);
    for run in runs(values) {
        let points: Vec<(f64, f64)> = run
            .iter()
            .map(|&(c, v)| (ctx.x_of_column(c), v.clamp(y0, y1)))
            .collect();
        chart.draw_series(std::iter::once(PathElement::new(points, style)))?;
    }
    Ok(())
}

/// Where the y axis should end: the largest value, unless a few columns (spikes) are far
/// above the rest; then a high percentile, so the normal level stays readable, and the
/// spikes are drawn clipped and marked with their true value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    pub limit: f64,
    pub clipped: bool,
}

/// Share of columns allowed above the limit before it is raised to show them whole.
const SPIKE_QUANTILE: f64 = 0.97;
/// How far above the percentile the true maximum must be to clip.
const SPIKE_FACTOR: f64 = 2.0;

pub fn spike_scale(column_maxima: &[f64]) -> Scale {
    let mut values: Vec<f64> = column_maxima
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let max = values.iter().copied().fold(0.0, f64::max);
    let high = quantile(&mut values, SPIKE_QUANTILE).unwrap_or(0.0);
    if high > 0.0 && max > SPIKE_FACTOR * high {
        Scale {
            limit: high * 1.3,
            clipped: true,
        }
    } else {
        Scale {
            limit: if max > 0.0 { max * 1.08 } else { 1.0 },
            clipped: false,
        }
    }
}

/// A clipped spike: its column and true value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spike {
    pub column: usize,
    pub value: f64,
}

/// The highest column of each run of columns above `limit`, highest first, at most `max`.
pub fn clipped_spikes(values: &[Option<f64>], limit: f64, max: usize) -> Vec<Spike> {
    let above: Vec<Option<f64>> = values.iter().map(|v| v.filter(|v| *v > limit)).collect();
    let mut spikes: Vec<Spike> = runs(&above)
        .into_iter()
        .filter_map(|run| {
            run.into_iter()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(column, value)| Spike { column, value })
        })
        .collect();
    spikes.sort_by(|a, b| b.value.total_cmp(&a.value));
    spikes.truncate(max);
    spikes
}

/// Marks clipped spikes with a triangle at the plot edge (top if `up`, else bottom).
pub fn mark_spikes(chart: &mut Chart, ctx: &Context, spikes: &[Spike], up: bool) -> DrawResult {
    let (y0, y1) = y_bounds(chart);
    let (edge, dy) = if up { (y1, 10) } else { (y0, -10) };
    chart.draw_series(spikes.iter().map(|spike| {
        EmptyElement::at((ctx.x_of_column(spike.column), edge))
            + Polygon::new(vec![(-6, dy), (6, dy), (0, 0)], SPIKE_MARK.filled())
    }))?;
    Ok(())
}

/// `"950.0 Mbit/s at 10:21"`, the words for a spike in the notes.
pub fn spike_words(ctx: &Context, spike: &Spike, format_value: &dyn Fn(f64) -> String) -> String {
    // The start of the column: the spike happened in it, at the earliest then.
    let time = ctx.local(ctx.grid.start_us(spike.column));
    let when = if ctx.span_s() > 86_400.0 {
        time.format("%m-%d %H:%M")
    } else {
        time.format("%H:%M")
    };
    format!("{} at {when}", format_value(spike.value))
}

/// Low and high of a band in one column; `None` in a gap.
pub type Band = Option<(f64, f64)>;

/// The band and mean of a series, in the sign given (`-1.0` draws below the axis).
pub fn signed(levels: &[Option<Level>], sign: f64) -> (Vec<Option<f64>>, Vec<Band>) {
    let means = levels.iter().map(|l| l.map(|l| sign * l.mean)).collect();
    let bands = levels
        .iter()
        .map(|l| l.map(|l| (sign * l.min, sign * l.max)))
        .collect();
    (means, bands)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spike_is_clipped_and_a_plateau_is_not() {
        let mut maxima = vec![10.0; 900];
        maxima[400] = 10_000.0;
        let scale = spike_scale(&maxima);
        assert!(scale.clipped);
        assert_eq!(scale.limit, 13.0);
        let plateau: Vec<f64> = (0..900)
            .map(|i| if i < 450 { 10.0 } else { 30.0 })
            .collect();
        let scale = spike_scale(&plateau);
        assert!(!scale.clipped);
        assert!((scale.limit - 32.4).abs() < 1e-9);
    }

    #[test]
    fn each_run_above_the_limit_is_one_spike() {
        let values = [
            Some(1.0),
            Some(50.0),
            Some(70.0),
            None,
            Some(2.0),
            Some(60.0),
        ];
        let spikes = clipped_spikes(&values, 10.0, 5);
        assert_eq!(
            spikes,
            vec![
                Spike {
                    column: 2,
                    value: 70.0
                },
                Spike {
                    column: 5,
                    value: 60.0
                }
            ]
        );
    }

    #[test]
    fn time_steps_keep_labels_apart() {
        assert_eq!(time_step_s(86_400.0, 880.0), 10_800);
        assert_eq!(time_step_s(3600.0, 880.0), 600);
        assert_eq!(time_step_s(30.0 * 86_400.0, 880.0), 345_600);
        // A 75 s range gets 10 s ticks (it had two ticks at 60 s steps), 8 s gets 1 s.
        assert_eq!(time_step_s(75.0, 880.0), 10);
        assert_eq!(time_step_s(8.0, 880.0), 1);
    }

    #[test]
    fn hourly_ticks_stay_on_round_berlin_hours_across_the_spring_change() {
        // 2026-03-29 00:00–05:00 UTC: Berlin's clock goes 01:00, 03:00 (02:00 is skipped).
        let berlin = Zone::named("Europe/Berlin").unwrap();
        let from_us = 1_774_742_400_000_000;
        let ticks = time_ticks(&berlin, from_us, from_us + 5 * 3_600_000_000, 3600);
        let labels: Vec<String> = ticks
            .iter()
            .map(|(utc_s, _)| berlin.local(utc_s * 1_000_000).format("%H:%M").to_string())
            .collect();
        assert_eq!(
            labels,
            ["01:00", "03:00", "04:00", "05:00", "06:00", "07:00"]
        );
    }

    #[test]
    fn shapes_in_a_legend_colour_get_its_label_as_tooltip() {
        let legend = [LegendItem {
            colour: PALETTE[0],
            label: "alice (avg 41.7%) <1>".into(),
        }];
        let svg = r##"<svg><polygon points="1,2 3,4" fill="#0072B2"/><rect x="0" fill="#FCFCFC"/></svg>"##;
        assert_eq!(
            with_tooltips(svg, &legend),
            r##"<svg><polygon points="1,2 3,4" fill="#0072B2"><title>alice (avg 41.7%) &lt;1&gt;</title></polygon><rect x="0" fill="#FCFCFC"/></svg>"##
        );
    }

    #[test]
    fn runs_split_at_gaps() {
        let runs = runs(&[Some(1), None, Some(2), Some(3)]);
        assert_eq!(runs, vec![vec![(0, 1)], vec![(2, 2), (3, 3)]]);
    }
}
