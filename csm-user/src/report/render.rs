//! The report written out: text (aligned tables, human units, times in the report's
//! zone), JSON (one document, exact numbers in base units) or CSV (one table per section,
//! the section's name in the first column, a blank line between sections).
//!
//! No section is drawn here: each section module implements [`SectionOutput`] and draws
//! itself through the one table renderer ([`super::table`]); this file only puts the
//! sections [`Report::sections`] lists one after the other.

use csm_store::names::safe_text;
use csm_store::zone::Zone;

use super::request::Period;
use super::table::{self, CsvTable};
use super::whole::Report;

/// What a section's text needs besides its own rows.
pub struct TextContext<'a> {
    pub zone: &'a Zone,
    pub by: Option<Period>,
}

impl TextContext<'_> {
    /// An instant in the report's zone: `2026-11-25 10:00:00`.
    pub fn time(&self, ts_us: i64) -> String {
        self.zone
            .local(ts_us)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    }
}

/// A section's output: its text and its CSV tables (its JSON is its serde form, a field
/// of [`Report`]).
pub trait SectionOutput {
    /// A blank line, the section's title, its table(s): appended to `out`.
    fn text(&self, ctx: &TextContext, out: &mut String);
    /// Its CSV tables, in order (empty ones are left out).
    fn csv(&self) -> Vec<CsvTable>;
}

/// One JSON document.
pub fn json(report: &Report) -> Result<String, String> {
    serde_json::to_string_pretty(report)
        .map(|mut text| {
            text.push('\n');
            text
        })
        .map_err(|err| format!("cannot write JSON: {err}"))
}

/// Each section as its own CSV table with a header; a row per user, interface, target,
/// outage, resource or gap, numbers in base units.
pub fn csv(report: &Report) -> Result<String, String> {
    table::csv(sections(report).into_iter().flat_map(|s| s.csv()))
}

/// Aligned tables with human units; times in `zone`.
pub fn text(report: &Report, zone: &Zone, by: Option<Period>) -> Result<String, String> {
    let ctx = TextContext { zone, by };
    let mut out = format!(
        "csm report for {}: {} to {} ({}){}\n",
        safe_text(&report.host),
        ctx.time(report.from_us),
        ctx.time(report.to_us),
        zone.name(),
        if report.rollups {
            "; from the 1-minute roll-ups"
        } else {
            ""
        }
    );
    for section in sections(report) {
        section.text(&ctx, &mut out);
    }
    Ok(out)
}
/// The sections of `report` present, in the order they are printed.
fn sections(report: &Report) -> Vec<&dyn SectionOutput> {
    let sections: [Option<&dyn SectionOutput>; 6] = [
        report.users.as_ref().map(|s| s as _),
        report.interfaces.as_ref().map(|s| s as _),
        report.ping.as_ref().map(|s| s as _),
        report.beancounters.as_ref().map(|s| s as _),
        report.gaps.as_ref().map(|s| s as _),
        report.alerts.as_ref().map(|s| s as _),
    ];
    sections.into_iter().flatten().collect()
}
