//! The `csm-plot` command line: which data, which time range, which charts, where to.

use std::ffi::OsString;
use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, ValueEnum};

use csm_store::time::parse_duration;

use crate::zone::Zone;

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
    /// net-users.svg: traffic per user (net_uid).
    NetUsers,
    /// ping-<target>.svg: RTT spread, loss and outages per target.
    Ping,
    /// ubc-<ctid>.svg: OpenVZ beancounters, held vs barrier and limit.
    Ubc,
}

impl PlotKind {
    pub const ALL: [PlotKind; 8] = [
        PlotKind::Cpu,
        PlotKind::Mem,
        PlotKind::Net,
        PlotKind::NetDiff,
        PlotKind::NetLog,
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
    /// The data dir `csm run` writes to.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Start of the range [default: 24 hours before --to, or the first row when the data
    /// begin later, down to the minute].
    #[arg(long, value_name = "TIME", value_parser = parse_time, allow_hyphen_values = true)]
    pub from: Option<DateTime<Utc>>,
    /// End of the range [default: now].
    #[arg(long, value_name = "TIME", value_parser = parse_time, allow_hyphen_values = true)]
    pub to: Option<DateTime<Utc>>,
    /// Host partition to plot [default: the only host in the data dir, else this host].
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Time zone of the time axis and the times written on charts: `utc`, `local` (this
    /// machine's zone), a tz database name such as `Europe/Berlin` (daylight saving time
    /// followed) or a fixed offset such as `+02:00`.
    #[arg(long, value_name = "ZONE", default_value = "utc", value_parser = parse_zone, allow_hyphen_values = true)]
    pub tz: Zone,
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
        let to = self.to.unwrap_or(now);
        let from = self.from.unwrap_or(to - chrono::Duration::hours(24));
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
            data_dir: self.data_dir,
            from_us: from.timestamp_micros(),
            to_us: to.timestamp_micros(),
            host: self.host,
            out: self.out,
            allow_unsafe_out_dir: self.allow_unsafe_out_dir,
            plots,
            tz: self.tz,
            fit_from: self.from.is_none(),
        })
    }
}

/// RFC 3339, a date (UTC midnight), `now`, or a negative duration from now.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    parse_time_at(text, Utc::now())
}

pub fn parse_time_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if text == "now" {
        return Ok(now);
    }
    if let Some(ago) = text.strip_prefix('-') {
        let ago = parse_duration(ago)?;
        let ago =
            chrono::Duration::from_std(ago).map_err(|_| format!("{text:?} is too long ago"))?;
        return Ok(now - ago);
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err(format!(
        "invalid time {text:?}; use RFC 3339 (2026-11-25T08:00:00Z), a date (2026-11-25), \
         a negative duration (-24h) or now"
    ))
}

/// `utc`, `local`, a tz database name (`Europe/Berlin`), or an offset: `+02:00`, `-0530`,
/// `+2`.
pub fn parse_zone(text: &str) -> Result<Zone, String> {
    let bad = || {
        format!(
            "invalid time zone {text:?}; use utc, local, a name like Europe/Berlin or an offset \
             like +02:00"
        )
    };
    match text.trim() {
        "utc" | "UTC" | "Z" => return Ok(Zone::utc()),
        "local" => return Ok(Zone::system()),
        name if name.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) => {
            return Zone::named(name).map_err(|err| format!("{err}; {}", bad()));
        }
        _ => {}
    }
    let (sign, rest) = match text.trim().split_at_checked(1).ok_or_else(bad)? {
        ("+", rest) => (1, rest),
        ("-", rest) => (-1, rest),
        _ => return Err(bad()),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    let (hours, minutes) = match digits.len() {
        1 | 2 => (digits.parse::<i32>().map_err(|_| bad())?, 0),
        4 => (
            digits[..2].parse::<i32>().map_err(|_| bad())?,
            digits[2..].parse::<i32>().map_err(|_| bad())?,
        ),
        _ => return Err(bad()),
    };
    if hours > 23 || minutes > 59 {
        return Err(bad());
    }
    Zone::fixed(sign * (hours * 3600 + minutes * 60)).ok_or_else(bad)
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
    fn times_read_in_every_documented_form() {
        let now = at("2026-11-25T12:00:00Z");
        assert_eq!(parse_time_at("-24h", now), Ok(at("2026-11-24T12:00:00Z")));
        assert_eq!(parse_time_at("-90m", now), Ok(at("2026-11-25T10:30:00Z")));
        assert_eq!(
            parse_time_at("2026-11-20", now),
            Ok(at("2026-11-20T00:00:00Z"))
        );
        assert_eq!(
            parse_time_at("2026-11-20T08:30:00+01:00", now),
            Ok(at("2026-11-20T07:30:00Z"))
        );
        assert_eq!(parse_time_at("now", now), Ok(now));
        assert!(parse_time_at("yesterday", now)
            .unwrap_err()
            .contains("\"yesterday\""));
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
    fn zones_read_as_names_or_offsets() {
        let offset = |text: &str| parse_zone(text).map(|z| z.offset_at(0));
        let east = |s| chrono::FixedOffset::east_opt(s).unwrap();
        assert_eq!(offset("utc"), Ok(east(0)));
        assert_eq!(offset("+02:00"), Ok(east(7200)));
        assert_eq!(offset("-0530"), Ok(east(-19800)));
        assert_eq!(offset("+2"), Ok(east(7200)));
        assert!(parse_zone("Mars/Olympus")
            .unwrap_err()
            .contains("Mars/Olympus"));
        assert!(parse_zone("+25:00").is_err());
        // A named zone: Berlin is +01:00 in January and +02:00 in July.
        let berlin = parse_zone("Europe/Berlin").unwrap();
        assert_eq!(berlin.offset_at(1_767_225_600_000_000), east(3600));
        assert_eq!(berlin.offset_at(1_782_864_000_000_000), east(7200));
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
