//! Who uses the machine: CPU per user (100 = one core) and resident memory per user,
//! both stacked, so the top edge is the whole machine.

use super::{averages_note, draw_stack, layers_in_order, legend_for, stack_tops, ChartResult};
use crate::bins::Binned;
use crate::canvas::{self, Context, Page, HEIGHT};
use crate::units::{binary_ticks, bytes, AxisUnit};

/// How many cores the CPU axis is drawn for, and where that number came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cores {
    /// The data's own machine, from the daemon's `host` event.
    Recorded(usize),
    /// The data do not say (older versions): the machine drawing the chart.
    ThisMachine(usize),
}

impl Cores {
    pub fn count(self) -> usize {
        let (Cores::Recorded(n) | Cores::ThisMachine(n)) = self;
        n
    }
}

pub fn cpu(ctx: &Context, binned: &Binned, cores: Cores, users: &[String]) -> ChartResult {
    let coverage = binned.coverage();
    let layers = layers_in_order(binned, &coverage, users);
    let highest = highest_top(&stack_tops(&layers));
    // The axis reaches all cores busy, or higher if the data says the machine has more.
    let limit = (cores.count() as f64 * 100.0).max(highest * 1.05);
    let page = Page::new(
        ctx.title("CPU per user"),
        legend_for(&layers, |l| format!("{} (avg {:.1}%)", l.label, l.average)),
        vec![cores_note(cores, limit), averages_note(&coverage)],
        "CPU (%, 100 = one core)".into(),
    );
    let svg = canvas::render(ctx, &page, 0.0..limit, &|v| format!("{v:.0}"), |chart| {
        draw_stack(chart, ctx, &layers, 1.0)
    })?;
    Ok(vec![("cpu.svg".into(), svg)])
}

pub fn mem(ctx: &Context, binned: &Binned, users: &[String]) -> ChartResult {
    let coverage = binned.coverage();
    let layers = layers_in_order(binned, &coverage, users);
    let highest = highest_top(&stack_tops(&layers));
    let limit = if highest > 0.0 { highest * 1.08 } else { 1.0 };
    // One unit for the axis name and the ticks: the axis end's.
    let unit = AxisUnit::binary_bytes(limit);
    let page = Page {
        title: ctx.title("Resident memory per user"),
        legend: legend_for(&layers, |l| {
            format!("{} (avg {})", l.label, bytes(l.average))
        }),
        notes: vec![
            format!("Stacked RSS; highest total {}.", bytes(highest)),
            averages_note(&coverage),
        ],
        y_desc: format!("resident memory ({})", unit.name),
        y_ticks: Some(binary_ticks(limit, 7)),
        height: HEIGHT,
    };
    let svg = canvas::render(ctx, &page, 0.0..limit, &|v| unit.number(*v), |chart| {
        draw_stack(chart, ctx, &layers, 1.0)
    })?;
    Ok(vec![("mem.svg".into(), svg)])
}

/// Says where the axis ends and why: all cores busy, or higher when the data exceed
/// that (a core count of the machine drawing the chart, for data that do not record it).
fn cores_note(cores: Cores, limit: f64) -> String {
    let n = cores.count();
    let whose = match cores {
        Cores::Recorded(_) => "the host's",
        Cores::ThisMachine(_) => "this machine's (the data do not record theirs)",
    };
    let all_busy = n as f64 * 100.0;
    if limit > all_busy {
        format!(
            "Stacked means per pixel column; 100% = one core. The data exceed {whose} \
             {n} cores ({all_busy:.0}%): the axis ends at {limit:.0}%."
        )
    } else {
        format!(
            "Stacked means per pixel column; 100% = one core; the axis ends at {whose} {n} \
             cores busy."
        )
    }
}

/// The highest column of the top layer of a stack.
pub fn highest_top(tops: &[Vec<Option<f64>>]) -> f64 {
    tops.last()
        .map(|top| top.iter().flatten().copied().fold(0.0, f64::max))
        .unwrap_or(0.0)
}
