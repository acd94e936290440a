//! `csm run`: picks a backend, starts one task per collector, and writes what they send.
//!
//! Collectors (CPU, memory, network, ping, beancounters) each run on their own schedule
//! and send finished rows over a channel; this loop owns the store, flushes it every
//! `flush_interval`, and at stop tells every collector to take its last sample before the
//! final flush, so nothing collected is lost.

pub mod backend;
mod ready;
pub mod schedule;
pub mod state;
pub mod tasks;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, LocalSet};
use tokio::time::{sleep_until, Instant};
use tracing::{error, info, warn};

use crate::cli::Settings;
use crate::model::{netdev, CpuSample, NetSample};
use crate::store::{
    CpuRow, EventRow, MemRow, NetRow, NetUidRow, PingRow, Store, StoreOptions, UbcRow, WriteError,
};
use state::{NetdevState, State};

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
    /// The cumulative CPU sample the `Cpu` rows just sent end at (persisted with each
    /// flush, for recovery after a crash).
    CpuTotals(CpuSample),
    /// The cumulative traffic sample the `Net`/`NetUid` rows just sent end at (same use).
    NetTotals(NetSample),
    /// The `/proc/net/dev` sample the /proc backend's `Net` rows just sent end at.
    NetdevTotals(netdev::NetSample),
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
    let mut store =
        Store::open(StoreOptions::new(&settings.data_dir, &settings.host)).map_err(|err| {
            RunError::usage(format!("data dir {}: {err}", settings.data_dir.display()))
        })?;
    let _lock = lock_data_dir(&settings.data_dir)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(signal_error)?;

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
    // What the machine is, so charts drawn elsewhere scale to it (100 % = one core).
    store.event(started, "host", Some(host_facts(&settings.paths)));
    for note in std::mem::take(&mut collectors.notes) {
        store.event(started, "pins", Some(note));
    }
    if collectors.adopted {
        match (State::load(&settings.data_dir), &collectors.instance) {
            (Some(state), Some(instance)) if &state.instance == instance => {
                collectors.resume_cpu = Some(state.cpu);
                collectors.resume_net = state.net;
            }
            _ => store.event(
                started,
                "recovered",
                Some("pinned counters adopted, but no matching state file: time while down is not attributed".into()),
            ),
        }
    }
    let boot_id = settings.paths.boot_id();
    if collectors.net.is_none() {
        collectors.resume_netdev = netdev_to_resume(&settings.data_dir, boot_id.as_deref());
    }
    apply_retention(&mut store, &settings);
    store.catch_up_rollups(started);

    let (rows_tx, mut rows_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = Ctx {
        settings: settings.clone(),
        rows: rows_tx,
        shutdown: stop_rx,
    };
    let collectors_instance = collectors.instance.clone();
    let pins = collectors.pins.clone();
    let (handles, keep_alive) = tasks::spawn_all(collectors, &ctx);
    ready::notify_ready(&settings.data_dir);
    drop(ctx);

    let deadline = settings.duration.map(|d| Instant::now() + d);
    let mut flusher = Flusher {
        instance: collectors_instance,
        boot_id,
        ..Flusher::default()
    };
    let mut retention_hour = crate::store::layout::hour_of(started);
    // The first flush comes early, so that the start events and a recovered gap are on
    // disk within a second even if this run is killed soon.
    let mut next_flush = Instant::now() + settings.flush_interval.min(Duration::from_secs(1));
    let stop_reason = loop {
        tokio::select! {
            Some(rows) = rows_rx.recv() => flusher.push(&mut store, rows),
            _ = sleep_until(next_flush) => {
                flusher.flush(&mut store, &settings.data_dir);
                next_flush = Instant::now() + settings.flush_interval;
                let hour = crate::store::layout::hour_of(now_us());
                if hour != retention_hour {
                    retention_hour = hour;
                    apply_retention(&mut store, &settings);
                }
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
        flusher.push(&mut store, rows);
    }
    store.event(now_us(), "stop", Some(stop_reason.to_string()));
    if !flusher.flush(&mut store, &settings.data_dir) {
        // The pins stay: the next start adopts them and the state file still says what
        // was last written, so nothing counted is lost.
        let first = flusher.last_error.unwrap_or_default();
        return Err(RunError::runtime(format!(
            "final flush failed ({} rows not written): {first}",
            store.unwritten_rows()
        )));
    }
    if let Err(err) = NetdevState::remove(&settings.data_dir) {
        warn!("cannot remove {}: {err}", state::NETDEV_STATE_FILE);
    }
    if let Some(pins) = pins {
        if let Err(err) = pins.remove() {
            warn!(
                "cannot remove pinned eBPF state {}: {err}",
                pins.path.display()
            );
        }
    }
    Ok(())
}

/// The `/proc/net/dev` sample a crashed run last wrote, when it is from this boot (the
/// counters restart at a reboot, so an older sample says nothing about the gap).
fn netdev_to_resume(
    data_dir: &std::path::Path,
    boot_id: Option<&str>,
) -> Option<netdev::NetSample> {
    let state = match NetdevState::load(data_dir) {
        Ok(state) => state?,
        Err(err) => {
            warn!("{err}: the last run's gap in /proc/net/dev traffic cannot be recovered");
            return None;
        }
    };
    if Some(state.boot_id.as_str()) != boot_id {
        info!("the previous run ended before a reboot: its gap in /proc/net/dev traffic cannot be recovered");
        return None;
    }
    Some(state.sample)
}

/// One daemon per data dir: a second one would adopt the first one's pinned counters and
/// write the same files. The lock (`<data-dir>/.csm.lock`, flock) goes with the process.
fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File, RunError> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join(".csm.lock");
    let mut file = std::fs::OpenOptions::new()
        .mode(0o640)
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|err| RunError::usage(format!("data dir lock {}: {err}", path.display())))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        return Err(RunError::usage(format!(
            "data dir {} is in use by another csm (pid {})",
            data_dir.display(),
            holder.trim()
        )));
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    Ok(file)
}

/// `cores=N kernel=R` of this machine, for the `host` event.
fn host_facts(paths: &crate::sources::host::HostPaths) -> String {
    format!(
        "cores={} kernel={}",
        crate::sources::host::online_cpus(),
        paths.kernel_release().unwrap_or_default()
    )
}

/// Deletes whole date partitions older than `retain` (at start and every hour).
fn apply_retention(store: &mut Store, settings: &Settings) {
    let Some(retain) = settings.retain else {
        return;
    };
    let now = now_us();
    let removed = store.apply_retention(now, retain);
    if !removed.is_empty() {
        info!(
            "retention ({retain:?}) removed {} date partitions",
            removed.len()
        );
        store.event(
            now,
            "retention",
            Some(format!(
                "removed {} date partitions older than {retain:?}",
                removed.len()
            )),
        );
    }
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
        Rows::CpuTotals(_) | Rows::NetTotals(_) | Rows::NetdevTotals(_) => {}
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

/// Flushes, persists the last cumulative values written, and reports write failures
/// once per condition (disk full, read-only, data dir gone, …) in the log and the
/// `events` table; the rows stay in memory (bounded) and are retried at every flush.
#[derive(Default)]
struct Flusher {
    /// The failing condition, while writes fail.
    failing: Option<&'static str>,
    failing_since_us: i64,
    last_error: Option<String>,
    /// Identity of the counters (state is only persisted when there is one).
    instance: Option<String>,
    /// The CPU sample the rows pushed so far end at.
    last_cpu: Option<CpuSample>,
    /// The traffic sample the rows pushed so far end at.
    last_net: Option<NetSample>,
    /// This boot, and the `/proc/net/dev` sample the rows pushed so far end at.
    boot_id: Option<String>,
    last_netdev: Option<netdev::NetSample>,
}

impl Flusher {
    fn push(&mut self, store: &mut Store, rows: Rows) {
        match rows {
            Rows::CpuTotals(sample) => self.last_cpu = Some(sample),
            Rows::NetTotals(sample) => self.last_net = Some(sample),
            Rows::NetdevTotals(sample) => self.last_netdev = Some(sample),
            rows => push(store, rows),
        }
    }

    /// True when everything held is on disk.
    fn flush(&mut self, store: &mut Store, data_dir: &std::path::Path) -> bool {
        let now = now_us();
        let errors = store.flush(now);
        let Some(first) = errors.first() else {
            if let Some(condition) = self.failing.take() {
                let down_ms = (now - self.failing_since_us) / 1000;
                info!("writing works again after {down_ms} ms ({condition})");
                store.event(
                    now,
                    "write_ok",
                    Some(format!(
                        "{condition} resolved after {down_ms} ms; held rows written"
                    )),
                );
                // The event itself goes out at the next flush.
            }
            self.save_state(data_dir);
            return true;
        };
        let condition = write_condition(first);
        self.last_error = Some(first.to_string());
        if self.failing != Some(condition) {
            error!(
                "{first} ({condition}; {} rows kept in memory, retrying at every flush)",
                store.unwritten_rows()
            );
            store.event(now, "write_error", Some(format!("{condition}: {first}")));
            if self.failing.is_none() {
                self.failing_since_us = now;
            }
            self.failing = Some(condition);
        }
        false
    }

    fn save_state(&self, data_dir: &std::path::Path) {
        if let (Some(instance), Some(cpu)) = (&self.instance, &self.last_cpu) {
            let state = State {
                instance: instance.clone(),
                cpu: cpu.clone(),
                net: self.last_net.clone(),
            };
            if let Err(err) = state.save(data_dir) {
                warn!("cannot save {}: {err}", state::path(data_dir).display());
            }
        }
        if let (Some(boot_id), Some(sample)) = (&self.boot_id, &self.last_netdev) {
            let state = NetdevState {
                boot_id: boot_id.clone(),
                sample: sample.clone(),
            };
            if let Err(err) = state.save(data_dir) {
                warn!("cannot save {}: {err}", state::NETDEV_STATE_FILE);
            }
        }
    }
}

/// The condition a write error stands for, to log each condition once.
fn write_condition(err: &WriteError) -> &'static str {
    // The Parquet writer reports some I/O errors as text: find "(os error N)" there.
    let code = err.source.raw_os_error().or_else(|| {
        let text = err.source.to_string();
        let at = text.rfind("os error ")? + "os error ".len();
        let digits: String = text[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    });
    match code {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => "disk full",
        Some(libc::EROFS) => "read-only file system",
        Some(libc::ENOENT) => "data dir missing",
        Some(libc::EACCES) | Some(libc::EPERM) => "permission denied",
        Some(libc::EIO) => "I/O error",
        _ => "write failed",
    }
}

/// Things that must outlive the collectors (attached eBPF programs).
pub type KeepAlive = Vec<Rc<dyn std::any::Any>>;
