//! `csm top`: a live, full-screen view of who uses the machine now (per-user CPU %,
//! memory and traffic; per-interface rates; the ping targets' last result), read from the
//! running daemon's counters without changing them.
//!
//! Rooms: [`source`] finds the daemon and opens its counters read only (or samples /proc
//! itself); [`sample`] turns two readings into one [`sample::Snapshot`] of rates;
//! [`ping`] reads the newest ping rows through the store; [`render`] draws a snapshot
//! (pure, tested on ratatui's `TestBackend`); [`live`] owns the terminal and the loop.

mod error;
pub mod live;
pub mod ping;
pub mod render;
pub mod sample;
pub mod source;
pub mod text;

pub use error::TopError;
pub use source::TopBackend;

use std::time::Duration;

use csm_store::range::{SourceArgs, SourceDefaults};

use csm_store::time::parse_duration;

/// The shortest refresh: below it the view costs more than it shows.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MAX_INTERVAL: Duration = Duration::from_secs(3600);

#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "Keys: c CPU, m memory, r received, t sent, n name (sort by that column; again reverses), q quit.\n\
Reads the running daemon's pinned eBPF maps read only (as root); with --backend proc, or when the \
daemon runs with the /proc backend, samples /proc itself."
)]
pub struct TopArgs {
    /// `--data-dir --host`, shared with `csm report` and `csm-plot`.
    #[command(flatten)]
    pub source: SourceArgs<TopDefaults>,
    /// Refresh every DUR, e.g. 1s, 500ms.
    #[arg(long, value_name = "DUR", default_value = "1s", allow_hyphen_values = true, value_parser = parse_duration)]
    pub interval: Duration,
    /// Where the figures come from: the running daemon's counters, or /proc sampled here.
    #[arg(long, value_enum, default_value_t = TopBackend::Auto)]
    pub backend: TopBackend,
    /// Print one sample after one interval and exit (for scripts).
    #[arg(long)]
    pub once: bool,
    /// Output of --once.
    #[arg(long, value_enum, default_value_t = Format::Text, requires = "once")]
    pub format: Format,
    /// Column the tables are sorted by at start.
    #[arg(long, value_enum, default_value_t = sample::SortKey::Cpu)]
    pub sort: sample::SortKey,
}

/// `csm top`'s defaults: the package's data dir, the ping rows of this host.
#[derive(Clone, Debug)]
pub struct TopDefaults;

impl SourceDefaults for TopDefaults {
    const DATA_DIR: Option<&'static str> = Some("/var/lib/csm");
    const HOST_HELP: &'static str = "Host partition of the ping rows [default: this host's name]";
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// `csm top`.
pub fn run(args: TopArgs) -> Result<(), TopError> {
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&args.interval) {
        return Err(TopError::usage(format!(
            "--interval {}: must be between 100ms and 1h",
            humantime::format_duration(args.interval)
        )));
    }
    let data_dir = &args.source.data_dir;
    let counters = source::open(data_dir, args.backend)?;
    let host = args
        .source
        .host
        .clone()
        .unwrap_or_else(csm_store::layout::local_hostname);
    let mut sampler = sample::Sampler::new(counters, ping::PingReader::new(data_dir, &host));
    if args.once {
        return once(&mut sampler, &args);
    }
    live::run(&mut sampler, args.interval, args.sort)
}

/// One sample after one interval, on stdout.
fn once(sampler: &mut sample::Sampler, args: &TopArgs) -> Result<(), TopError> {
    let failed = |err: anyhow::Error| TopError::runtime(format!("{err:#}"));
    sampler.prime().map_err(failed)?;
    std::thread::sleep(args.interval);
    let mut snapshot = sampler.sample().map_err(failed)?;
    snapshot.sort(args.sort, false);
    let out = match args.format {
        Format::Json => serde_json::to_string_pretty(&snapshot)
            .map_err(|err| TopError::runtime(format!("JSON: {err}")))?,
        Format::Text => render::plain_text(&snapshot),
    };
    println!("{out}");
    Ok(())
}
