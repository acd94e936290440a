//! `csm-plot`: SVG charts from the Parquet tree.
//!
//! Rooms, by concern:
//! - [`args`]: the command line and the time range;
//! - [`read`]: which files of a host and range to open, reading only the needed columns;
//! - [`data`]: rows of each table turned into per-pixel-column buckets and totals;
//! - [`bins`]: the downsampling itself (mean, min, max per column; gaps stay gaps);
//! - [`canvas`]: the page every chart shares (title, legend, time axis, spikes);
//! - [`charts`]: one module per family of charts;
//! - [`units`]: bytes and bits/s as people read them;
//! - [`index`]: `index.html`, every chart of the run on one page.
//!
//! Every chart whose data exists is drawn; absent tables are noted on stderr; an
//! unreadable file is named on stderr and makes the exit status 1, after the rest is drawn.

pub mod args;
pub mod bins;
pub mod canvas;
pub mod charts;
pub mod data;
pub mod index;
pub mod link_errors;
pub mod read;
pub mod rtt_histogram;
pub mod units;
/// The zones moved to csm-store (shared with `csm report`); the old path still works.
pub use csm_store::zone;

use std::ffi::OsString;
use std::fs;
use std::path::Path;

use args::{PlotArgs, PlotKind, Request};
use bins::Grid;
use canvas::{Context, PLOT_COLUMNS};
use charts::{ChartFile, ChartResult};
use csm_store::names::safe_text;
use read::{DataTree, Problems};

/// One line to stderr, with any name in it made safe to show (control characters
/// escaped: see `csm_store::names`).
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!("{}", safe_text(&format!($($arg)*)))
    };
}

pub const EXIT_OK: i32 = 0;
pub const EXIT_UNREADABLE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

/// Parses the arguments, draws, and returns the exit status.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> i32 {
    let parsed = match PlotArgs::parse_from_os(args) {
        Ok(parsed) => parsed,
        Err(err) => return report_clap_error(&err),
    };
    match parsed.resolve(chrono::Utc::now()) {
        Ok(request) => run(&request),
        Err(message) => {
            say!("csm-plot: {message}");
            EXIT_USAGE
        }
    }
}

/// `--help` and `--version` go to stdout with status 0; a usage error is one line.
fn report_clap_error(err: &clap::Error) -> i32 {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        print!("{err}");
        return EXIT_OK;
    }
    let rendered = err.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    say!("csm-plot: {first} (see csm-plot --help)");
    EXIT_USAGE
}

/// Draws the requested charts; returns the exit status.
pub fn run(request: &Request) -> i32 {
    if !request.data_dir.is_dir() {
        say!(
            "csm-plot: --data-dir {} is not a readable folder",
            request.data_dir.display()
        );
        return EXIT_USAGE;
    }
    let host = match read::choose_host(&request.data_dir, request.host.as_deref()) {
        Ok(host) => host,
        Err(message) => {
            say!("csm-plot: {message}");
            return EXIT_USAGE;
        }
    };
    if let Err(message) = prepare_out_dir(&request.out, request.allow_unsafe_out_dir) {
        say!("csm-plot: {message}");
        return EXIT_USAGE;
    }
    let tree = DataTree {
        data_dir: request.data_dir.clone(),
        host,
    };
    let request = &fitted_to_data(&tree, request);
    let (files, problems) = draw_all(&tree, request);
    let mut write_failed = false;
    for (name, svg) in &files {
        write_failed |= write_or_say(&request.out.join(name), svg);
    }
    // Last, so that a page opened while csm-plot runs never links a chart not yet written.
    if !files.is_empty() {
        let page = index::page(&safe_text(&tree.host), &files);
        write_failed |= write_or_say(&request.out.join(index::FILE), &page);
    }
    for note in &problems.notes {
        say!("csm-plot: {note}");
    }
    for message in &problems.unreadable {
        say!("csm-plot: {message}");
    }
    if files.is_empty() {
        say!(
            "csm-plot: no chart drawn: host {} has no data to chart in the range {} to {}",
            tree.host,
            canvas::utc(request.from_us).to_rfc3339(),
            canvas::utc(request.to_us).to_rfc3339()
        );
        return EXIT_UNREADABLE;
    }
    if problems.unreadable.is_empty() && !write_failed {
        EXIT_OK
    } else {
        EXIT_UNREADABLE
    }
}

/// A default start moved up to the minute of the first row when the data begin later,
/// so less data than the range fills the chart rather than a sliver at its right edge.
pub fn fitted_to_data(tree: &DataTree, request: &Request) -> Request {
    let mut fitted = request.clone();
    if request.fit_from {
        if let Some(first) = read::first_row_us(tree, request.from_us, request.to_us) {
            let minute = first.div_euclid(MINUTE_US) * MINUTE_US;
            fitted.from_us = minute.max(request.from_us);
        }
    }
    fitted
}

const MINUTE_US: i64 = 60_000_000;

/// Writes one output file and prints its path; says why not and returns true on failure.
fn write_or_say(path: &Path, text: &str) -> bool {
    match write_atomically(path, text) {
        Ok(()) => {
            println!("{}", path.display());
            false
        }
        Err(err) => {
            say!("csm-plot: cannot write {}: {err}", path.display());
            true
        }
    }
}

/// Creates `--out` (mode 0750, like the data's folders) if missing, and refuses one that
/// another user owns or may write to (see `csm_store::data_dir::check_folder`).
fn prepare_out_dir(out: &Path, allow_unsafe: bool) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !out.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(OUT_DIR_MODE)
            .create(out)
            .and_then(|()| fs::set_permissions(out, fs::Permissions::from_mode(OUT_DIR_MODE)))
            .map_err(|err| format!("cannot create --out {}: {err}", out.display()))?;
    }
    csm_store::data_dir::check_folder(out, allow_unsafe, "--allow-unsafe-out-dir")
        .map_err(|err| format!("--out {}: {err}", out.display()))
}

/// The folder charts go to when csm-plot creates it: owner and group, like the data.
const OUT_DIR_MODE: u32 = 0o750;

/// Charts show what each user does: readable by owner and group only, like the data.
const CHART_MODE: u32 = 0o640;

/// A viewer never sees half a chart: written whole beside, then renamed over.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    csm_store::atomic::write_file(path, CHART_MODE, xml_safe(text).as_bytes())
}

/// `text` with every character XML 1.0 does not allow (controls other than tab, newline
/// and carriage return) replaced by U+FFFD: a last guard, so that a chart always parses
/// even if a name reached it unescaped.
fn xml_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r');
    if text.chars().any(bad) {
        text.chars()
            .map(|c| if bad(c) { '\u{fffd}' } else { c })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

/// Online CPUs of this machine: what 100 % per core scales to when the data has no
/// `host` event.
fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(1)
}

/// Loads each table the requested charts need (in parallel: they are independent files)
/// and renders the charts.
pub fn draw_all(tree: &DataTree, request: &Request) -> (Vec<ChartFile>, Problems) {
    let grid = Grid::new(request.from_us, request.to_us, PLOT_COLUMNS);
    let wants = |kinds: &[PlotKind]| kinds.iter().any(|k| request.plots.contains(k));
    let mut problems = Problems::default();
    let mut results: Vec<(&str, Drawn)> = Vec::new();
    let mut per_user: (
        Option<bins::Binned>,
        Option<bins::Binned>,
        Option<data::UserNetData>,
    ) = (None, None, None);
    let facts = data::load_daemon_facts(tree, grid, &mut problems);
    let cores = facts.cores.map_or_else(
        || charts::usage::Cores::ThisMachine(online_cpus()),
        charts::usage::Cores::Recorded,
    );
    let ctx = &Context {
        host: safe_text(&tree.host).into_owned(),
        grid,
        down: facts.down,
        tz: request.tz.clone(),
    };
    std::thread::scope(|scope| {
        let mut jobs: Vec<(&str, std::thread::ScopedJoinHandle<'_, (Drawn, Problems)>)> =
            Vec::new();
        // The per-user tables are loaded here and drawn after the scope, together: one
        // order of users (so one colour per user) needs all three.
        let cpu_job = wants(&[PlotKind::Cpu])
            .then(|| scope.spawn(move || with_loader(|p| data::load_cpu(tree, grid, p))));
        let mem_job = wants(&[PlotKind::Mem])
            .then(|| scope.spawn(move || with_loader(|p| data::load_mem(tree, grid, p))));
        let users_job = wants(&[PlotKind::NetUsers])
            .then(|| scope.spawn(move || with_loader(|p| data::load_net_users(tree, grid, p))));
        if wants(&[PlotKind::Net, PlotKind::NetDiff, PlotKind::NetLog]) {
            let kinds = request.plots.clone();
            jobs.push((
                "net",
                scope.spawn(move || {
                    with_problems(|p| {
                        data::load_net(tree, grid, p).map(|net| net_charts(ctx, &net, &kinds))
                    })
                }),
            ));
        }
        if wants(&[PlotKind::NetErrors]) {
            jobs.push((
                "net errors",
                scope.spawn(move || {
                    with_problems(|p| {
                        link_errors::load_net_errors(tree, grid, p)
                            .map(|d| charts::net::errors(ctx, &d))
                    })
                }),
            ));
        }
        if wants(&[PlotKind::Ping]) {
            jobs.push((
                "ping",
                scope.spawn(move || {
                    with_problems(|p| {
                        data::load_ping(tree, grid, p).map(|d| charts::ping::ping(ctx, &d))
                    })
                }),
            ));
        }
        if wants(&[PlotKind::Ubc]) {
            jobs.push((
                "ubc",
                scope.spawn(move || {
                    with_problems(|p| {
                        data::load_ubc(tree, grid, p).map(|d| charts::ubc::ubc(ctx, &d))
                    })
                }),
            ));
        }
        per_user = (
            join_loader("cpu", cpu_job, &mut problems),
            join_loader("mem", mem_job, &mut problems),
            join_loader("net_uid", users_job, &mut problems),
        );
        for (name, job) in jobs {
            let (result, p) = job.join().unwrap_or_else(|_| {
                (
                    Err(format!("drawing the {name} charts failed")),
                    Problems::default(),
                )
            });
            problems.merge(p);
            results.push((name, result));
        }
    });
    let (cpu, mem, net_users) = &per_user;
    let order = charts::user_order(&[
        &cpu.iter().collect::<Vec<_>>(),
        &mem.iter().collect::<Vec<_>>(),
        &net_users
            .iter()
            .flat_map(|d| [&d.tx, &d.rx])
            .collect::<Vec<_>>(),
    ]);
    let mut user_charts: Vec<(&str, Drawn)> = Vec::new();
    if let Some(cpu) = cpu {
        user_charts.push(("cpu", drawn(charts::usage::cpu(ctx, cpu, cores, &order))));
    }
    if let Some(mem) = mem {
        user_charts.push(("mem", drawn(charts::usage::mem(ctx, mem, &order))));
    }
    if let Some(net_users) = net_users {
        user_charts.push(("net_uid", drawn(charts::net::users(ctx, net_users, &order))));
    }
    user_charts.append(&mut results);
    let mut files = Vec::new();
    for (name, result) in user_charts {
        match result {
            Ok(mut charts) => files.append(&mut charts),
            Err(err) => problems
                .unreadable
                .push(format!("cannot draw the {name} charts: {err}")),
        }
    }
    (files, problems)
}

/// A thread loading one table.
type LoaderJob<'scope, T> = std::thread::ScopedJoinHandle<'scope, (Option<T>, Problems)>;

/// Runs a loader with its own problems (threads cannot share them).
fn with_loader<T>(load: impl FnOnce(&mut Problems) -> Option<T>) -> (Option<T>, Problems) {
    let mut problems = Problems::default();
    let loaded = load(&mut problems);
    (loaded, problems)
}

/// The loaded table of a thread, if it was started and did not fail.
fn join_loader<T>(name: &str, job: Option<LoaderJob<'_, T>>, problems: &mut Problems) -> Option<T> {
    let (loaded, p) = job?.join().unwrap_or_else(|_| {
        let mut p = Problems::default();
        p.unreadable
            .push(format!("reading the {name} table failed"));
        (None, p)
    });
    problems.merge(p);
    loaded
}

/// A rendering's error as text, like the threads' results.
fn drawn(result: ChartResult) -> Drawn {
    result.map_err(|err| err.to_string())
}

/// Charts of one table, or why they could not be drawn.
type Drawn = Result<Vec<ChartFile>, String>;

/// Runs a loader+renderer; no data means no charts, not an error.
/// Errors become text here: plotters' errors cannot cross threads.
fn with_problems(work: impl FnOnce(&mut Problems) -> Option<ChartResult>) -> (Drawn, Problems) {
    let mut problems = Problems::default();
    let result = work(&mut problems)
        .unwrap_or_else(|| Ok(Vec::new()))
        .map_err(|err| err.to_string());
    (result, problems)
}

/// The three interface charts share one read of the net table.
fn net_charts(ctx: &Context, net: &data::NetData, kinds: &[PlotKind]) -> ChartResult {
    let mut files = Vec::new();
    if kinds.contains(&PlotKind::Net) {
        files.extend(charts::net::traffic(ctx, net)?);
    }
    if kinds.contains(&PlotKind::NetDiff) {
        files.extend(charts::net::diff(ctx, net)?);
    }
    if kinds.contains(&PlotKind::NetLog) {
        files.extend(charts::net::log(ctx, net)?);
    }
    Ok(files)
}
