//! `csm run`: picks a backend, starts one task per collector, and writes what they send.
//!
//! Collectors (CPU, memory, network, ping, beancounters) each run on their own schedule
//! and send finished rows over a channel; this loop owns the store, flushes it every
//! `flush_interval`, and at stop tells every collector to take its last sample before the
//! final flush, so nothing collected is lost.

pub mod backend;
pub mod schedule;
pub mod tasks;

use std::rc::Rc;
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, LocalSet};
use tokio::time::{sleep_until, Instant};
use tracing::{error, info};

use crate::cli::Settings;
use crate::store::{
    CpuRow, EventRow, MemRow, NetRow, NetUidRow, PingRow, Store, StoreOptions, UbcRow,
};

/// Rows a collector hands to the store.
#[derive(Debug)]
pub enum Rows {
    Cpu(Vec<CpuRow>),
    Mem(Vec<MemRow>),
    Net(Vec<NetRow>),
    NetUid(Vec<NetUidRow>),
    Ping(Vec<PingRow>),
    Ubc(Vec<UbcRow>),
    Event(EventRow),
}

pub type RowSender = mpsc::UnboundedSender<Rows>;

/// What every collector task gets: the settings, where rows go, and the stop signal.
#[derive(Clone)]
pub struct Ctx {
    pub settings: Arc<Settings>,
    pub rows: RowSender,
    pub shutdown: watch::Receiver<bool>,
}

impl Ctx {
    pub fn send(&self, rows: Rows) {
        // The receiver lives until every collector has finished: a send cannot fail
        // before then.
        let _ = self.rows.send(rows);
    }

    pub fn event(&self, event: &str, detail: impl Into<Option<String>>) {
        self.send(Rows::Event(EventRow {
            ts_us: now_us(),
            event: event.to_string(),
            detail: detail.into(),
        }));
    }
}

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
    LocalSet::new().block_on(&runtime, run_local(settings))
}

async fn run_local(settings: Settings) -> Result<(), RunError> {
    let settings = Arc::new(settings);
    let mut store = Store::open(StoreOptions {
        data_dir: settings.data_dir.clone(),
        host: settings.host.clone(),
    })
    .map_err(|err| RunError::usage(format!("data dir {}: {err}", settings.data_dir.display())))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(signal_error)?;

    let collectors = backend::select(&settings)?;
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

    let (rows_tx, mut rows_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = Ctx {
        settings: settings.clone(),
        rows: rows_tx,
        shutdown: stop_rx,
    };
    let (handles, keep_alive) = tasks::spawn_all(collectors, &ctx);
    drop(ctx);

    let deadline = settings.duration.map(|d| Instant::now() + d);
    let mut flusher = Flusher::default();
    let mut next_flush = Instant::now() + settings.flush_interval;
    let stop_reason = loop {
        tokio::select! {
            Some(rows) = rows_rx.recv() => push(&mut store, rows),
            _ = sleep_until(next_flush) => {
                flusher.flush(&mut store);
                next_flush = Instant::now() + settings.flush_interval;
            }
            _ = sigint.recv() => break "SIGINT",
            _ = sigterm.recv() => break "SIGTERM",
            _ = wait_deadline(deadline) => break "duration reached",
        }
    };
    info!("stopping ({stop_reason}): collecting the last interval");
    let _ = stop_tx.send(true);
    finish_collectors(handles).await;
    drop(keep_alive);
    while let Ok(rows) = rows_rx.try_recv() {
        push(&mut store, rows);
    }
    store.event(now_us(), "stop", Some(stop_reason.to_string()));
    let errors = store.flush(now_us());
    if let Some(first) = errors.first() {
        return Err(RunError::runtime(format!("final flush failed: {first}")));
    }
    Ok(())
}

async fn finish_collectors(handles: Vec<JoinHandle<()>>) {
    for handle in handles {
        if let Err(err) = handle.await {
            error!("a collector ended abnormally: {err}");
        }
    }
}

fn push(store: &mut Store, rows: Rows) {
    match rows {
        Rows::Cpu(rows) => store.cpu.extend(rows),
        Rows::Mem(rows) => store.mem.extend(rows),
        Rows::Net(rows) => store.net.extend(rows),
        Rows::NetUid(rows) => store.net_uid.extend(rows),
        Rows::Ping(rows) => store.ping.extend(rows),
        Rows::Ubc(rows) => store.ubc.extend(rows),
        Rows::Event(row) => store.events.push(row),
    }
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

/// Flushes and reports write failures once per run of failures (and as an event); the
/// rows stay buffered and are retried at the next flush.
#[derive(Default)]
struct Flusher {
    failing: bool,
}

impl Flusher {
    fn flush(&mut self, store: &mut Store) {
        let errors = store.flush(now_us());
        match errors.first() {
            None if self.failing => {
                info!("writing works again");
                self.failing = false;
            }
            None => {}
            Some(first) => {
                if !self.failing {
                    error!("{first} (rows kept in memory; retrying every flush)");
                    self.failing = true;
                }
                store.event(now_us(), "write_error", Some(first.to_string()));
            }
        }
    }
}

/// Things that must outlive the collectors (attached eBPF programs).
pub type KeepAlive = Vec<Rc<dyn std::any::Any>>;
