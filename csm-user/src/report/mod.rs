//! `csm report`: what happened in a time range, as vnStat and SmokePing tell it, from the
//! Parquet tree: users (CPU, memory, traffic), interfaces, ping targets, OpenVZ
//! beancounters and the gaps in the data.
//!
//! Rooms: [`read`] finds and reads the rows of the range (through csm-store; roll-ups for
//! ranges over 6 h); each section is one module ([`users`], [`interfaces`], [`ping`],
//! [`beancounters`], [`gaps`]) that computes its numbers from rows, purely, and draws its
//! text and CSV ([`render::SectionOutput`]) through the one table renderer ([`table`]);
//! [`render`] puts the sections one after the other as text, JSON or CSV. To add a
//! section, follow `docs/ARCHITECTURE.md`.

pub mod alerts;
pub mod beancounters;
pub mod gaps;
pub mod interfaces;
pub mod ping;
pub mod read;
pub mod render;
pub mod span;
pub mod table;
pub mod users;

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use serde::Serialize;

use csm_store::range::{Defaults, RangeArgs, SourceDefaults};
use csm_store::zone::Zone;

/// The sections, in the order they are printed.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// CPU-seconds, mean/peak CPU % and memory, and socket bytes per user.
    Users,
    /// Bytes, packets and peak rates per interface (network namespaces apart).
    Interfaces,
    /// Loss, RTT percentiles and outages per ping target.
    Ping,
    /// OpenVZ beancounters whose failcnt grew.
    Beancounters,
    /// Periods without data (the daemon was down).
    Gaps,
    /// `[[alert]]` rules that fired: start, end and duration.
    Alerts,
}

impl Section {
    pub const ALL: [Section; 6] = [
        Section::Users,
        Section::Interfaces,
        Section::Ping,
        Section::Beancounters,
        Section::Gaps,
        Section::Alerts,
    ];
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Hour,
    Day,
    Month,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned tables with human units.
    Text,
    /// One JSON document, exact numbers in base units (ns, bytes, µs-exact times).
    Json,
    /// One CSV table per section (first column: the section), blank line between.
    Csv,
}

#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "TIME is RFC 3339 (2026-11-25T08:00:00Z), a date (2026-11-25, UTC \
                        midnight), a negative duration from now (-24h, -1w) or `now`, as \
                        csm-plot takes it. Exit status: 0 report printed; 1 no data in the \
                        range or unreadable data dir; 2 bad flags."
)]
pub struct ReportArgs {
    /// `--data-dir --host --from --to --tz`, shared with `csm-plot` (defaults: [`ReportDefaults`]).
    #[command(flatten)]
    pub range: RangeArgs<ReportDefaults>,
    /// Interfaces: one row per hour, day or month (in --tz), as `vnstat -d`/`-m`.
    #[arg(long, value_enum, value_name = "PERIOD")]
    pub by: Option<Period>,
    /// Users: how many to list by CPU; the others are summed on one line.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Sections to print [default: all].
    #[arg(value_enum, value_name = "SECTION")]
    pub sections: Vec<Section>,
}

/// `csm report`'s defaults: the data dir of the package, today (from midnight in --tz),
/// in this machine's zone.
#[derive(Clone, Debug)]
pub struct ReportDefaults;

impl SourceDefaults for ReportDefaults {
    const DATA_DIR: Option<&'static str> = Some("/var/lib/csm");
    const HOST_HELP: &'static str =
        "Host partition to report on [default: the only host in the data dir, else this host]";
}

impl Defaults for ReportDefaults {
    const FROM_HELP: &'static str = "Start of the range [default: today's midnight in --tz]";
    const TZ: &'static str = "local";
    const TZ_HELP: &'static str = concat!(
        "Time zone of the times shown, of \"today\" and of --by: ",
        csm_store::zone_syntax!()
    );
}

/// The resolved request: a half-open range `[from_us, to_us)` (rows by their `ts`).
#[derive(Clone, Debug)]
pub struct Request {
    pub data_dir: PathBuf,
    pub host: Option<String>,
    pub from_us: i64,
    pub to_us: i64,
    pub by: Option<Period>,
    pub top: usize,
    pub tz: Zone,
    pub sections: Vec<Section>,
}

impl ReportArgs {
    /// Applies the defaults against `now`; the error names the culprit.
    pub fn resolve(self, now: DateTime<Utc>) -> Result<Request, String> {
        let RangeArgs {
            source,
            from,
            to,
            tz,
        } = self.range;
        let to = to.unwrap_or(now);
        let from = match from {
            Some(from) => from.timestamp_micros(),
            None => midnight_before(&tz, to.timestamp_micros()),
        };
        let to_us = to.timestamp_micros();
        if from >= to_us {
            return Err(format!(
                "--from ({}) must be before --to ({})",
                rfc3339(from),
                rfc3339(to_us)
            ));
        }
        let mut sections = if self.sections.is_empty() {
            Section::ALL.to_vec()
        } else {
            self.sections
        };
        sections.sort();
        sections.dedup();
        Ok(Request {
            data_dir: source.data_dir,
            host: source.host,
            from_us: from,
            to_us,
            by: self.by,
            top: self.top,
            tz,
            sections,
        })
    }
}

/// The last midnight in `zone` at or before `ts_us` (the start of "today"), daylight
/// saving time followed: the offset in force at midnight, not now's.
pub fn midnight_before(zone: &Zone, ts_us: i64) -> i64 {
    let local_midnight = zone
        .local(ts_us)
        .date_naive()
        .and_time(chrono::NaiveTime::MIN)
        .and_utc()
        .timestamp_micros();
    let offset_us = |at: i64| zone.offset_at(at).local_minus_utc() as i64 * 1_000_000;
    let guess = local_midnight - offset_us(ts_us);
    local_midnight - offset_us(guess)
}

/// An instant as JSON and CSV write it: RFC 3339 in UTC, to the microsecond.
pub fn rfc3339(ts_us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(ts_us)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// The whole report: the range and each section asked for.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub host: String,
    pub from: String,
    pub to: String,
    #[serde(skip)]
    pub from_us: i64,
    #[serde(skip)]
    pub to_us: i64,
    pub time_zone: String,
    /// The 1-minute roll-ups were read (range over 6 h) where they exist.
    pub rollups: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<users::Users>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<interfaces::Interface>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ping: Option<Vec<ping::Target>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beancounters: Option<Vec<beancounters::Growth>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gaps: Option<Vec<gaps::Gap>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Vec<alerts::Alert>>,
}

impl Report {
    /// The sections present, in the order they are printed.
    pub fn sections(&self) -> Vec<&dyn render::SectionOutput> {
        let sections: [Option<&dyn render::SectionOutput>; 6] = [
            self.users.as_ref().map(|s| s as _),
            self.interfaces.as_ref().map(|s| s as _),
            self.ping.as_ref().map(|s| s as _),
            self.beancounters.as_ref().map(|s| s as _),
            self.gaps.as_ref().map(|s| s as _),
            self.alerts.as_ref().map(|s| s as _),
        ];
        sections.into_iter().flatten().collect()
    }
}

/// Why no report was printed: the message and the exit status.
pub struct Failure {
    pub message: String,
    pub code: u8,
}

/// Reads the rows of the range and computes every section asked for.
pub fn build(request: &Request) -> Result<Report, Failure> {
    let fail = |message: String| Failure { message, code: 1 };
    let host =
        csm_store::tree::choose_host(&request.data_dir, request.host.as_deref()).map_err(fail)?;
    let tree = csm_store::tree::DataTree {
        data_dir: request.data_dir.clone(),
        host: host.clone(),
    };
    let rows = read::Rows::read(&tree, request, &mut |warning| eprintln!("csm: {warning}"))
        .map_err(fail)?;
    if rows.is_empty() {
        return Err(fail(format!(
            "no data for host {host} from {} to {} in {}",
            rfc3339(request.from_us),
            rfc3339(request.to_us),
            request.data_dir.display()
        )));
    }
    let wants = |s: Section| request.sections.contains(&s);
    let read::Rows {
        users,
        interfaces,
        ping,
        ubc,
        events,
        rollups,
        ..
    } = rows;
    Ok(Report {
        host,
        from: rfc3339(request.from_us),
        to: rfc3339(request.to_us),
        from_us: request.from_us,
        to_us: request.to_us,
        time_zone: request.tz.name().to_string(),
        rollups,
        users: wants(Section::Users).then(|| users::users(users, request.top)),
        interfaces: interfaces.map(|fold| {
            let mut labels = csm_store::netns::NetnsLabels::local();
            fold.finish(&mut labels)
        }),
        ping: wants(Section::Ping).then(|| ping::targets(ping)),
        beancounters: wants(Section::Beancounters).then(|| beancounters::growths(&ubc)),
        gaps: wants(Section::Gaps).then(|| gaps::gaps(&events, request.from_us, request.to_us)),
        alerts: wants(Section::Alerts)
            .then(|| alerts::alerts(&events, request.from_us, request.to_us)),
    })
}

/// `csm report`: prints the report; exit 1 with one line when there is no data.
pub fn main(args: ReportArgs) -> ExitCode {
    let (by, format) = (args.by, args.format);
    let request = match args.resolve(Utc::now()) {
        Ok(r) => r,
        Err(message) => return failed(&message, 2),
    };
    let report = match build(&request) {
        Ok(r) => r,
        Err(failure) => return failed(&failure.message, failure.code),
    };
    let text = match format {
        Format::Text => render::text(&report, &request.tz, by),
        Format::Json => render::json(&report),
        Format::Csv => render::csv(&report),
    };
    match text {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(message) => failed(&message, 1),
    }
}

fn failed(message: &str, code: u8) -> ExitCode {
    eprintln!("csm report: {message}");
    ExitCode::from(code)
}
