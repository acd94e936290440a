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
mod request;
pub mod span;
mod spans;
pub mod table;
pub mod users;
mod whole;

pub use request::{rfc3339, Period, Request, Section};
pub use whole::Report;

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::ValueEnum;

use csm_store::range::{Defaults, RangeArgs, SourceDefaults};
use csm_store::zone::Zone;

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
        gaps: wants(Section::Gaps).then(|| events.gaps.finish()),
        alerts: wants(Section::Alerts).then(|| events.alerts.finish()),
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
