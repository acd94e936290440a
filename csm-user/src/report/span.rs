//! When something the report lists (an alert, a gap, an outage) was: the same fields and
//! the same text cells in every section.

use serde::Serialize;

use csm_store::units::duration;

use super::render::TextContext;
use super::request::rfc3339;

/// Flattened into a section's row (`#[serde(flatten)]`): JSON and CSV see `start_ts`,
/// `end_ts` and `duration_s` as the row's own columns.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Span {
    #[serde(skip)]
    pub start_us: i64,
    #[serde(skip)]
    pub end_us: Option<i64>,
    pub start_ts: String,
    /// Null while it still goes on at the end of the range.
    pub end_ts: Option<String>,
    /// Up to `until_us` (see [`Span::new`]).
    pub duration_s: f64,
}

impl Span {
    /// From `start_us` to `end_us` (`None`: it still goes on), its duration counted up to
    /// `until_us`: the end, or how far it is known to go on.
    pub fn new(start_us: i64, end_us: Option<i64>, until_us: i64) -> Span {
        Span {
            start_us,
            end_us,
            start_ts: rfc3339(start_us),
            end_ts: end_us.map(rfc3339),
            duration_s: (until_us - start_us) as f64 / 1e6,
        }
    }

    /// The text table's start, end (`open` while it goes on) and duration cells.
    pub fn cells(&self, ctx: &TextContext, open: &str) -> [String; 3] {
        [
            ctx.time(self.start_us),
            self.end_us.map_or_else(|| open.into(), |t| ctx.time(t)),
            duration((self.duration_s * 1e6).round() as i64),
        ]
    }
}
