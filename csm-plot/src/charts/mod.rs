//! One module per family of charts. Each function takes loaded data and returns
//! `(file name, SVG text)` pairs; writing files is the caller's job.

pub mod net;
pub mod ping;
pub mod ubc;
pub mod usage;

use std::error::Error;

use plotters::style::RGBColor;

use super::bins::{Binned, Level};
use super::canvas::{self, Chart, Context, DrawResult, LegendItem, OTHERS, PALETTE};

/// A finished chart: its file name and SVG text.
pub type ChartFile = (String, String);
pub type ChartResult = Result<Vec<ChartFile>, Box<dyn Error>>;

/// File names keep to `[A-Za-z0-9._-]`: an interface or a ping target like `2001:db8::1`
/// becomes `2001_db8__1`.
pub fn file_part(subject: &str) -> String {
    let clean: String = subject
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match clean.trim_start_matches('.') {
        "" => "_".to_string(),
        rest => rest.to_string(),
    }
}

/// Keys drawn on their own in stacked charts; the rest are summed as "others".
const STACKED_KEYS: usize = PALETTE.len();

/// One layer of a stacked chart.
pub struct Layer {
    pub label: String,
    pub colour: RGBColor,
    pub levels: Vec<Option<Level>>,
}

/// The biggest keys (by their mean over the range) each get a colour; the others share
/// one grey layer, so 20 users stay readable.
pub fn stack_layers(binned: &Binned, coverage: &[f64]) -> Vec<Layer> {
    layers_in_order(binned, coverage, &rank_keys(&[binned], coverage))
}

/// Keys of all the tables, biggest total mean first (ties by name).
pub fn rank_keys(binneds: &[&Binned], coverage: &[f64]) -> Vec<String> {
    let mut totals: std::collections::BTreeMap<&String, f64> = Default::default();
    for binned in binneds {
        for key in binned.keys() {
            let sum: f64 = binned
                .levels(key, coverage)
                .iter()
                .flatten()
                .map(|l| l.mean)
                .sum();
            *totals.entry(key).or_default() += sum;
        }
    }
    let mut ranked: Vec<(&String, f64)> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    ranked.into_iter().map(|(k, _)| k.clone()).collect()
}

/// Layers for the first keys of `order` in palette colours, then one "others" layer.
pub fn layers_in_order(binned: &Binned, coverage: &[f64], order: &[String]) -> Vec<Layer> {
    let mut layers: Vec<Layer> = order
        .iter()
        .take(STACKED_KEYS)
        .enumerate()
        .map(|(i, key)| Layer {
            label: key.clone(),
            colour: PALETTE[i],
            levels: binned.levels(key, coverage),
        })
        .collect();
    let rest: Vec<&String> = order.iter().skip(STACKED_KEYS).collect();
    if !rest.is_empty() {
        layers.push(Layer {
            label: format!("{} others", rest.len()),
            colour: OTHERS,
            levels: binned.summed_levels(&rest, coverage),
        });
    }
    layers
}

/// Column tops of a stack: `tops[i][c]` is the sum of the means of layers `0..=i`.
pub fn stack_tops(layers: &[Layer]) -> Vec<Vec<Option<f64>>> {
    let mut tops: Vec<Vec<Option<f64>>> = Vec::with_capacity(layers.len());
    for layer in layers {
        let below = tops.last();
        let top = layer
            .levels
            .iter()
            .enumerate()
            .map(|(c, level)| {
                let base = below.map_or(Some(0.0), |b| b[c]);
                Some(base? + level.as_ref()?.mean)
            })
            .collect();
        tops.push(top);
    }
    tops
}

/// Draws stacked layers upwards (`sign` 1) or downwards (`sign` -1).
pub fn draw_stack(chart: &mut Chart, ctx: &Context, layers: &[Layer], sign: f64) -> DrawResult {
    let tops = stack_tops(layers);
    for (i, layer) in layers.iter().enumerate() {
        let bounds: Vec<Option<(f64, f64)>> = (0..ctx.grid.columns)
            .map(|c| {
                let low = if i == 0 { Some(0.0) } else { tops[i - 1][c] };
                Some((sign * low?, sign * tops[i][c]?))
            })
            .collect();
        canvas::draw_band(
            chart,
            ctx,
            &bounds,
            plotters::style::Color::filled(&layer.colour),
        )?;
    }
    Ok(())
}

/// Mean over the covered columns of a layer.
pub fn average(levels: &[Option<Level>]) -> f64 {
    let (sum, n) = levels
        .iter()
        .flatten()
        .fold((0.0, 0usize), |(s, n), l| (s + l.mean, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

pub fn legend_for(layers: &[Layer], describe: impl Fn(&Layer) -> String) -> Vec<LegendItem> {
    layers
        .iter()
        .map(|layer| LegendItem {
            colour: layer.colour,
            label: describe(layer),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_keep_to_safe_characters() {
        assert_eq!(file_part("eth0"), "eth0");
        assert_eq!(file_part("2001:db8::1"), "2001_db8__1");
        assert_eq!(file_part("../etc/passwd"), "_etc_passwd");
        assert_eq!(file_part("veth@if3"), "veth_if3");
    }

    #[test]
    fn stacks_add_up_and_keep_gaps() {
        let l = |m: f64| {
            Some(Level {
                mean: m,
                min: m,
                max: m,
            })
        };
        let layers = vec![
            Layer {
                label: "a".into(),
                colour: PALETTE[0],
                levels: vec![l(1.0), None, l(2.0)],
            },
            Layer {
                label: "b".into(),
                colour: PALETTE[1],
                levels: vec![l(3.0), None, l(0.5)],
            },
        ];
        let tops = stack_tops(&layers);
        assert_eq!(tops[1], vec![Some(4.0), None, Some(2.5)]);
    }
}
