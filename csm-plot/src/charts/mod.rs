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
/// becomes `2001_db8__1-<hash>`. When a character had to change, a short hash of the whole
/// subject follows, so that two subjects that sanitise alike (`eth:0`, `eth/0`) never
/// write the same file and one chart never silently replaces another.
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
    let clean = match clean.trim_start_matches('.') {
        "" => "_".to_string(),
        rest => rest.to_string(),
    };
    if clean == subject {
        clean
    } else {
        format!("{clean}-{}", csm_store::names::short_hash(subject))
    }
}

/// Keys drawn on their own in stacked charts; the rest are summed as "others".
const STACKED_KEYS: usize = PALETTE.len();

/// One layer of a stacked chart.
pub struct Layer {
    pub label: String,
    pub colour: RGBColor,
    pub levels: Vec<Option<Level>>,
    /// Mean over the time with data ([`Binned::time_average`]).
    pub average: f64,
}

/// Keys of all the tables, biggest total mean first (ties by name).
pub fn rank_keys(binneds: &[&Binned], coverage: &[f64]) -> Vec<String> {
    let mut totals: std::collections::BTreeMap<&String, f64> = Default::default();
    for binned in binneds {
        for key in binned.keys() {
            *totals.entry(key).or_default() += binned.time_average(key, coverage);
        }
    }
    let mut ranked: Vec<(&String, f64)> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    ranked.into_iter().map(|(k, _)| k.clone()).collect()
}

/// One order of users for every chart of a run, so a user keeps one colour and one place
/// in every legend: by CPU first, then users seen only in memory (by memory), then users
/// seen only in traffic (by traffic).
pub fn user_order(tables: &[&[&Binned]]) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for binneds in tables {
        let coverage = binneds.first().map(|b| b.coverage()).unwrap_or_default();
        for key in rank_keys(binneds, &coverage) {
            if !order.contains(&key) {
                order.push(key);
            }
        }
    }
    order
}

/// Layers of the keys of `binned`, in the run's `order`: the first [`STACKED_KEYS`] keys of
/// that order each keep their own palette colour (a user absent here leaves its colour
/// unused rather than passing it on); every other key goes into one grey "others" layer.
pub fn layers_in_order(binned: &Binned, coverage: &[f64], order: &[String]) -> Vec<Layer> {
    let present: std::collections::BTreeSet<&String> = binned.keys().collect();
    let mut layers: Vec<Layer> = order
        .iter()
        .take(STACKED_KEYS)
        .enumerate()
        .filter(|(_, key)| present.contains(key))
        .map(|(i, key)| Layer {
            label: key.clone(),
            colour: PALETTE[i],
            levels: binned.levels(key, coverage),
            average: binned.time_average(key, coverage),
        })
        .collect();
    let coloured: Vec<&String> = order.iter().take(STACKED_KEYS).collect();
    let rest: Vec<&String> = present
        .into_iter()
        .filter(|key| !coloured.contains(key))
        .collect();
    if !rest.is_empty() {
        layers.push(Layer {
            label: format!("{} others", rest.len()),
            colour: OTHERS,
            average: rest.iter().map(|k| binned.time_average(k, coverage)).sum(),
            levels: binned.summed_levels(&rest, coverage),
        });
    }
    layers
}

/// Says what the legend's averages are over: the time with data, which may be shorter
/// than the range drawn.
pub fn averages_note(coverage: &[f64]) -> String {
    let covered_s: f64 = coverage.iter().sum();
    format!(
        "Averages in the legend are over the {} with data.",
        csm_store::time::duration_words((covered_s * 1e6).round() as i64)
    )
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
        let v6 = file_part("2001:db8::1");
        assert!(v6.starts_with("2001_db8__1-") && v6.len() == 20, "{v6}");
        assert!(file_part("../etc/passwd").starts_with("_etc_passwd-"));
        assert!(file_part("veth@if3").starts_with("veth_if3-"));
        assert_ne!(
            file_part("eth:0"),
            file_part("eth/0"),
            "never the same file"
        );
    }

    fn binned(spans: &[(&str, f64)]) -> Binned {
        let mut b = Binned::new(crate::bins::Grid::new(0, 60_000_000, 10));
        for (key, value) in spans {
            b.add_span(key, 0, 60_000_000, *value, *value);
        }
        b
    }

    #[test]
    fn a_user_keeps_its_colour_and_place_in_every_chart() {
        // CPU ranks bob over alice; memory would rank alice first; carol has only memory.
        let cpu = binned(&[("alice", 10.0), ("bob", 90.0)]);
        let mem = binned(&[("alice", 9e9), ("bob", 1e6), ("carol", 5e9)]);
        let order = user_order(&[&[&cpu], &[&mem]]);
        assert_eq!(order, ["bob", "alice", "carol"]);
        let colours = |b: &Binned| -> Vec<(String, RGBColor)> {
            layers_in_order(b, &b.coverage(), &order)
                .into_iter()
                .map(|l| (l.label, l.colour))
                .collect()
        };
        assert_eq!(
            colours(&cpu),
            [
                ("bob".to_string(), PALETTE[0]),
                ("alice".into(), PALETTE[1])
            ]
        );
        assert_eq!(
            colours(&mem),
            [
                ("bob".to_string(), PALETTE[0]),
                ("alice".into(), PALETTE[1]),
                ("carol".into(), PALETTE[2])
            ]
        );
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
                average: 1.5,
            },
            Layer {
                label: "b".into(),
                colour: PALETTE[1],
                levels: vec![l(3.0), None, l(0.5)],
                average: 1.75,
            },
        ];
        let tops = stack_tops(&layers);
        assert_eq!(tops[1], vec![Some(4.0), None, Some(2.5)]);
    }
}
