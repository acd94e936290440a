//! The `csm-plot` command line: which data, which time range, which charts, where to.

use std::ffi::OsString;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Parser, ValueEnum};

use csm_store::range::{Defaults, RangeArgs, SourceDefaults};

// The time syntax and the zones are csm's, shared with `csm report`: csm-store has them.
pub use csm_store::time::{parse_time, parse_time_at};
pub use csm_store::zone::{parse_zone, Zone};

/// Charts drawn when no PLOT is named: all of them.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PlotKind {
    /// cpu.svg: CPU per user, stacked (100 = one core).
    Cpu,
    /// mem.svg: resident memory per user, stacked.
    Mem,
    /// net-<iface>.svg: out above the axis, in below.
    Net,
    /// net-diff-<iface>.svg: out minus in, with the asymmetric totals.
    NetDiff,
    /// net-log-<iface>.svg: in+out on a log axis with the diff overlaid; and
    /// net-symlog-<iface>.svg: the diff on a signed log axis.
    NetLog,
    /// net-errors-<iface>.svg: errors and drops per second, the kernel's counters (out
    /// above the axis, in below); only interfaces that had any.
    NetErrors,
    /// net-users.svg: traffic per user (net_uid).
    NetUsers,
    /// ping-<target>.svg: RTT spread, loss and outages per target.
    Ping,
    /// ubc-<ctid>.svg: OpenVZ beancounters, held vs barrier and limit.
    Ubc,
}

impl PlotKind {
    pub const ALL: [PlotKind; 9] = [
        PlotKind::Cpu,
        PlotKind::Mem,
        PlotKind::Net,
        PlotKind::NetDiff,
        PlotKind::NetLog,
        PlotKind::NetErrors,
        PlotKind::NetUsers,
        PlotKind::Ping,
        PlotKind::Ubc,
    ];
}

#[derive(Parser, Debug)]
#[command(
    name = "csm-plot",
    version,
    about = "SVG charts from csm's Parquet tree",
    after_help = "TIME is RFC 3339 (2026-11-25T08:00:00Z), a date (2026-11-25, UTC midnight), \
                  a negative duration from now (-24h, -90m) or `now`."
)]
pub struct PlotArgs {
    /// `--data-dir --host --from --to --tz`, shared with `csm report` (defaults:
    /// [`PlotDefaults`]).
    #[command(flatten)]
    pub range: RangeArgs<PlotDefaults>,
    /// Where the SVG files go (created 0750 if missing; charts are written 0640). Refused
    /// if another user owns it or may write in it, since that user could plant links where
    /// the charts go.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// Write into an --out folder another user owns or may write to.
    #[arg(long)]
    pub allow_unsafe_out_dir: bool,
    /// Charts to draw [default: all].
    #[arg(value_enum, value_name = "PLOT")]
    pub plots: Vec<PlotKind>,
}

/// `csm-plot`'s defaults: the data dir must be named; the last 24 hours; UTC.
#[derive(Clone, Debug)]
pub struct PlotDefaults;

impl SourceDefaults for PlotDefaults {
    const DATA_DIR: Option<&'static str> = None;
    const HOST_HELP: &'static str =
        "Host partition to plot [default: the only host in the data dir, else this host]";
}

impl Defaults for PlotDefaults {
    const FROM_HELP: &'static str = "Start of the range [default: 24 hours before --to, or the \
         first row when the data begin later, down to the minute]";
    const TZ: &'static str = "utc";
    const TZ_HELP: &'static str = concat!(
        "Time zone of the time axis and the times written on charts: ",
        csm_store::zone_syntax!()
    );
}

/// The resolved request: a half-open range `[from, to)` in microseconds.
#[derive(Clone, Debug)]
pub struct Request {
    pub data_dir: PathBuf,
    pub from_us: i64,
    pub to_us: i64,
    pub host: Option<String>,
    pub out: PathBuf,
    /// `--allow-unsafe-out-dir`.
    pub allow_unsafe_out_dir: bool,
    pub plots: Vec<PlotKind>,
    /// Zone of the time axis and of the times written on charts.
    pub tz: Zone,
    /// `--from` was not given: the start may move up to the first row when the data
    /// begin later (one minute of data is not drawn as a sliver at the right of a day).
    pub fit_from: bool,
}

impl PlotArgs {
    pub fn parse_from_os(args: impl IntoIterator<Item = OsString>) -> Result<Self, clap::Error> {
        PlotArgs::try_parse_from(args)
    }

    /// Applies the defaults against `now` and checks the range is not empty.
    pub fn resolve(self, now: DateTime<Utc>) -> Result<Request, String> {
        let RangeArgs {
            source,
            from: given_from,
            to,
            tz,
        } = self.range;
        let to = to.unwrap_or(now);
        let from = given_from.unwrap_or(to - chrono::Duration::hours(24));
        if from >= to {
            return Err(format!(
                "--from ({}) must be before --to ({})",
                from.to_rfc3339(),
                to.to_rfc3339()
            ));
        }
        let mut plots = if self.plots.is_empty() {
            PlotKind::ALL.to_vec()
        } else {
            self.plots
        };
        plots.sort();
        plots.dedup();
        Ok(Request {
            data_dir: source.data_dir,
            from_us: from.timestamp_micros(),
            to_us: to.timestamp_micros(),
            host: source.host,
            out: self.out,
            allow_unsafe_out_dir: self.allow_unsafe_out_dir,
            plots,
            tz,
            fit_from: given_from.is_none(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn defaults_are_the_last_day_and_every_chart() {
        let now = at("2026-11-25T12:00:00Z");
        let args =
            PlotArgs::parse_from_os(["csm-plot", "--data-dir", "/d"].map(OsString::from)).unwrap();
        let req = args.resolve(now).unwrap();
        assert_eq!(req.to_us - req.from_us, 24 * 3_600_000_000);
        assert_eq!(req.plots, PlotKind::ALL.to_vec());
        assert_eq!(req.out, PathBuf::from("."));
    }

    #[test]
    fn an_empty_range_is_refused() {
        let now = at("2026-11-25T12:00:00Z");
        let args = PlotArgs::parse_from_os(
            [
                "csm-plot",
                "--data-dir",
                "/d",
                "--from",
                "2026-11-26",
                "--to",
                "2026-11-25",
            ]
            .map(OsString::from),
        )
        .unwrap();
        assert!(args.resolve(now).unwrap_err().contains("--from"));
    }
}
