//! `csm run`: picks a backend, samples every interval, turns samples into rows through the
//! model and hands them to the store; flushes regularly and at stop.

pub mod backend;
pub mod schedule;

use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::time::{sleep, sleep_until, Instant};
use tracing::{error, info, warn};

use crate::cli::Settings;
use crate::model::{cpu, cpu_intervals, CpuSample};
use crate::sources::users::UserNames;
use crate::store::{CpuRow, Store, StoreOptions};
use backend::Collectors;

/// A failure of `csm run`, with the exit status it maps to.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RunError {
    /// 1: runtime failure; 2: usage or config error.
    pub exit_code: u8,
    pub message: String,
}

impl RunError {
    pub fn usage(message: impl Into<String>) -> Self {
        RunError {
            exit_code: 2,
            message: message.into(),
        }
    }
    pub fn runtime(message: impl Into<String>) -> Self {
        RunError {
            exit_code: 1,
            message: message.into(),
        }
    }
}

pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Runs until SIGINT/SIGTERM or `--duration`, then writes the last interval and flushes.
pub fn run(settings: Settings) -> Result<(), RunError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| RunError::runtime(format!("cannot start the async runtime: {err}")))?;
    runtime.block_on(run_async(settings))
}

async fn run_async(settings: Settings) -> Result<(), RunError> {
    let mut store = Store::open(StoreOptions {
        data_dir: settings.data_dir.clone(),
        host: settings.host.clone(),
    })
    .map_err(|err| RunError::usage(format!("data dir {}: {err}", settings.data_dir.display())))?;
    let mut collectors = backend::select(&settings)?;
    info!(
        data_dir = %settings.data_dir.display(),
        host = %settings.host,
        interval = ?settings.interval,
        backend = %collectors.description,
        "csm collecting"
    );
    let started = now_us();
    store.event(
        started,
        "start",
        Some(format!(
            "csm {} interval={:?} data_dir={}",
            env!("CARGO_PKG_VERSION"),
            settings.interval,
            settings.data_dir.display()
        )),
    );
    store.event(started, "backend", Some(collectors.description.clone()));

    let mut loop_state = Collecting {
        names: UserNames::default(),
        prev_cpu: collectors
            .cpu
            .sample()
            .map_err(|err| RunError::runtime(format!("first CPU sample failed: {err:#}")))?,
        reported_write_errors: false,
    };

    let mut sigint = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(signal_error)?;
    let deadline = settings.duration.map(|d| Instant::now() + d);
    let mut next_flush = Instant::now() + settings.flush_interval;
    let stop_reason = loop {
        let tick = schedule::until_next_boundary(settings.interval);
        tokio::select! {
            _ = sleep(tick) => {
                loop_state.collect_cpu(&mut collectors, &mut store);
                if Instant::now() >= next_flush {
                    loop_state.flush(&mut store);
                    next_flush = Instant::now() + settings.flush_interval;
                }
            }
            _ = sigint.recv() => break "SIGINT",
            _ = sigterm.recv() => break "SIGTERM",
            _ = wait_deadline(deadline) => break "duration reached",
        }
    };
    info!("stopping ({stop_reason}): writing the last interval");
    loop_state.collect_cpu(&mut collectors, &mut store);
    store.event(now_us(), "stop", Some(stop_reason.to_string()));
    let errors = store.flush(now_us());
    if let Some(first) = errors.first() {
        return Err(RunError::runtime(format!("final flush failed: {first}")));
    }
    Ok(())
}

fn signal_error(err: std::io::Error) -> RunError {
    RunError::runtime(format!("cannot install signal handlers: {err}"))
}

async fn wait_deadline(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// State carried from one interval to the next.
struct Collecting {
    names: UserNames,
    prev_cpu: CpuSample,
    reported_write_errors: bool,
}

impl Collecting {
    fn collect_cpu(&mut self, collectors: &mut Collectors, store: &mut Store) {
        let cur = match collectors.cpu.sample() {
            Ok(sample) => sample,
            Err(err) => {
                warn!("CPU sample failed, interval skipped: {err:#}");
                return;
            }
        };
        let dur_ms = cpu::dur_ms(&self.prev_cpu, &cur);
        let source = collectors.cpu_source;
        let rows = cpu_intervals(&self.prev_cpu, &cur)
            .into_iter()
            .map(|interval| CpuRow {
                ts_us: cur.wall_us,
                dur_ms,
                uid: interval.uid as i64,
                user: self.names.name(interval.uid),
                cpu_ns: interval.cpu_ns as i64,
                cpu_pct: interval.cpu_pct,
                source,
            });
        store.cpu.extend(rows.collect::<Vec<_>>());
        self.prev_cpu = cur;
    }

    /// Writes what is buffered; a failure is logged once per run of failures and recorded
    /// as an event, and the rows stay buffered for the next try.
    fn flush(&mut self, store: &mut Store) {
        let errors = store.flush(now_us());
        match errors.first() {
            None => {
                if self.reported_write_errors {
                    info!("writing works again");
                    self.reported_write_errors = false;
                }
            }
            Some(first) => {
                if !self.reported_write_errors {
                    error!("{first} (rows kept in memory; retrying every flush)");
                    self.reported_write_errors = true;
                }
                store.event(now_us(), "write_error", Some(first.to_string()));
            }
        }
    }
}

/// Interval a benchmark or test may want to wait for the daemon to settle.
pub const SETTLE: Duration = Duration::from_millis(200);
