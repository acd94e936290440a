//! `csm run`: picks a backend, starts one task per collector, and writes what they send.
//!
//! Collectors (CPU, memory, network, beancounters: one [driver](collector::drive) runs
//! them all; ping on its own per-target schedule) send finished rows over a channel; the
//! `Writer` owns the store, flushes it every `flush_interval`, and at stop waits for
//! every collector's last sample before the final flush, so nothing collected is lost.

pub mod backend;
pub mod collector;
pub mod ctx;
mod error;
pub mod pending;
pub mod priority;
mod ready;
pub mod schedule;
pub mod settings;
pub mod state;
pub mod tasks;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, LocalSet};
use tokio::time::{sleep_until, Instant};
use tracing::{error, info, warn};

use crate::metrics::Metrics;
use crate::model::{netdev, CpuSample, NetSample};
use crate::sources::ebpf::pins::PinDir;
use backend::Collectors;
use csm_store::data_dir::HeldDir;
use csm_store::{Event, EventRow, Recovered, Store, StoreOptions, WriteError};
use settings::Settings;

pub use ctx::{now_us, Ctx, KeepAlive, RowSender, Rows};
pub use error::RunError;
use state::{NetdevState, State};

/// Runs until SIGINT/SIGTERM or `--duration`, then writes the last interval and flushes.
pub fn run(settings: Settings) -> Result<(), RunError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| RunError::runtime(format!("cannot start the async runtime: {err}")))?;
    LocalSet::new().block_on(&runtime, run_local(settings))
}

async fn run_local(settings: Settings) -> Result<(), RunError> {
    let named = settings.data_dir.clone();
    let held = hold_data_dir(&settings)?;
    // From here on every path into the data dir goes through the held descriptor; the
    // pin folder keeps the name made from the data dir's own path (`csm top` finds it so).
    let as_named = settings.clone();
    let settings = Arc::new(Settings {
        data_dir: held.path().to_path_buf(),
        ..settings
    });
    let mut store = open_data_dir(&settings, &named)?;
    let mut signals = Signals::install()?;
    let mut collectors = backend::select(&as_named)?;
    drop(as_named);
    let started = now_us();
    let (metrics, _endpoint) = start_metrics(&settings, &collectors, started)?;
    record_start(
        &mut store,
        &settings,
        &named,
        &mut collectors,
        metrics.as_deref(),
        started,
    );
    let places = pending::Places::new(held.path(), &named);
    let (merged, spill_events) = pending::merge(&mut store, &places);
    for event in spill_events {
        write_event(&mut store, metrics.as_deref(), started, event);
    }
    let boot_id = settings.paths.boot_id();
    plan_resume(
        &mut store,
        &settings,
        &mut collectors,
        boot_id.as_deref(),
        !merged.is_empty(),
        metrics.as_deref(),
        started,
    );
    apply_retention(&mut store, &settings, metrics.as_deref());
    store.catch_up_rollups(started);

    let (rows_tx, rows_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = Ctx {
        settings: settings.clone(),
        rows: rows_tx,
        shutdown: stop_rx,
    };
    let flusher = Flusher {
        instance: collectors.instance.clone(),
        boot_id,
        metrics,
        merged,
        ..Flusher::default()
    };
    let mut writer = Writer {
        sink: Some(Sink { store, flusher }),
        pending: Vec::new(),
        pins: collectors.pins.clone(),
        places,
        rows: rows_rx,
        alerts: crate::alerts::AlertEngine::new(settings.alerts.clone()),
        settings,
    };
    if fell_back(&writer.settings, &collectors.description) {
        writer.alert_rows(|alerts| alerts.fell_back(started));
    }
    let (handles, keep_alive) = tasks::spawn_all(collectors, &ctx);
    ready::notify_ready(&named);
    drop(ctx);

    let stop_reason = writer.run_until_stop(&mut signals, started).await;
    info!("stopping ({stop_reason}): collecting the last interval");
    let _ = stop_tx.send(true);
    finish_collectors(handles).await;
    drop(keep_alive);
    let finished = writer.finish(stop_reason);
    drop(held);
    finished
}

/// The data dir, created if missing and opened once: see [`HeldDir`].
fn hold_data_dir(settings: &Settings) -> Result<HeldDir, RunError> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = &settings.data_dir;
    // 0750 as documented, whatever the umask lets through (umask 000 would make it 0777,
    // which the store then rightly refuses as writable by others).
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .and_then(|()| HeldDir::open(dir))
        .map_err(|err| RunError::usage(format!("data dir {}: {err}", dir.display())))
}

/// Opens the store, which refuses a data dir other users could write in and takes the
/// data dir's lock before it touches anything (held as long as the store lives).
fn open_data_dir(settings: &Settings, named: &Path) -> Result<Store, RunError> {
    let mut options = StoreOptions::new(&settings.data_dir, &settings.host);
    options.allow_unsafe_data_dir = settings.allow_unsafe_data_dir;
    // The store sees the held descriptor's path (/proc/self/fd/N): its messages name the
    // data dir as the user gave it.
    let held = settings.data_dir.display().to_string();
    Store::open(options).map_err(|err| {
        let message = err.to_string().replace(&held, &named.display().to_string());
        RunError::usage(format!("data dir {}: {message}", named.display()))
    })
}

/// The stop signals, installed before anything starts so that none is missed.
struct Signals {
    sigint: Signal,
    sigterm: Signal,
}

impl Signals {
    fn install() -> Result<Self, RunError> {
        Ok(Signals {
            sigint: signal(SignalKind::interrupt()).map_err(signal_error)?,
            sigterm: signal(SignalKind::terminate()).map_err(signal_error)?,
        })
    }

    /// The name of the first stop signal that arrives.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.sigint.recv() => "SIGINT",
            _ = self.sigterm.recv() => "SIGTERM",
        }
    }
}

/// The log line and the start events: what runs, with which backend, on what machine,
/// and what happened to pinned state.
fn record_start(
    store: &mut Store,
    settings: &Settings,
    named: &Path,
    collectors: &mut Collectors,
    metrics: Option<&Metrics>,
    at: i64,
) {
    info!(
        data_dir = %named.display(),
        host = %settings.host,
        interval = ?settings.interval,
        backend = %collectors.description,
        "csm collecting"
    );
    let start = Event::Start(format!(
        "csm {} interval={:?} data_dir={}",
        env!("CARGO_PKG_VERSION"),
        settings.interval,
        named.display()
    ));
    write_event(store, metrics, at, start);
    let backend = Event::Backend(collectors.description.clone());
    write_event(store, metrics, at, backend);
    // What the machine is, so charts drawn elsewhere scale to it (100 % = one core).
    write_event(store, metrics, at, host_facts(&settings.paths));
    for note in std::mem::take(&mut collectors.notes) {
        write_event(store, metrics, at, Event::Pins(note));
    }
}

/// An event the daemon writes straight to the store (not through the collectors'
/// channel), counted in `csm_events_total` as well.
fn write_event(store: &mut Store, metrics: Option<&Metrics>, at: i64, event: Event) {
    if let Some(metrics) = metrics {
        metrics.event(event.name());
    }
    store.event(at, event);
}

/// Where the collectors resume after a crash: the last samples the previous run wrote,
/// when the counters they came from still count (adopted pins of the same instance, or
/// `/proc/net/dev` of the same boot), and the endpoint's CPU and traffic counters as
/// of those samples. Adopted pins without a matching state file are a gap that cannot
/// be attributed, and say so. After rows a failed stop spilled were taken in
/// (`spilled`), the state files are older than those rows: resuming from them would
/// charge the rows' span twice, so the collectors (and the endpoint's counters) start
/// afresh.
fn plan_resume(
    store: &mut Store,
    settings: &Settings,
    collectors: &mut Collectors,
    boot_id: Option<&str>,
    spilled: bool,
    metrics: Option<&Metrics>,
    at: i64,
) {
    if spilled {
        if collectors.adopted {
            write_event(
                store,
                metrics,
                at,
                Event::Recovered(Recovered::Unattributed),
            );
        }
        if let Err(err) = NetdevState::remove(&settings.data_dir) {
            warn!("cannot remove {}: {err}", state::NETDEV_STATE_FILE);
        }
        return;
    }
    if collectors.adopted {
        match (State::load(&settings.data_dir), &collectors.instance) {
            (Some(state), Some(instance)) if &state.instance == instance => {
                if let (Some(metrics), Some(counters)) = (metrics, state.metrics) {
                    metrics.restore(counters, state.net.is_some());
                }
                collectors.resume_cpu = Some(state.cpu);
                collectors.resume_net = state.net;
            }
            _ => write_event(
                store,
                metrics,
                at,
                Event::Recovered(Recovered::Unattributed),
            ),
        }
    }
    if collectors.net.is_none() {
        collectors.resume_netdev = netdev_to_resume(&settings.data_dir, boot_id);
    }
}

/// The store and what it has been told, moved as one to the blocking pool for a flush.
struct Sink {
    store: Store,
    flusher: Flusher,
}

impl Sink {
    fn push(&mut self, rows: Rows) {
        self.flusher.push(&mut self.store, rows);
    }

    /// On a blocking thread: a flush writes files (tens of ms for an hour's final zstd-19
    /// rewrite, longer on a slow disk), and on the daemon's single-threaded runtime it
    /// would hold up every collector meanwhile — a ping due then would start late.
    fn flush_in_background(mut self, data_dir: PathBuf) -> JoinHandle<Sink> {
        tokio::task::spawn_blocking(move || {
            self.flusher.flush(&mut self.store, &data_dir);
            self
        })
    }
}

/// The store's side of the run: takes the collectors' rows, flushes on schedule, applies
/// retention every hour, and writes everything at stop.
struct Writer {
    /// `None` while a flush runs on the blocking pool; rows wait in `pending` meanwhile.
    sink: Option<Sink>,
    pending: Vec<Rows>,
    rows: mpsc::UnboundedReceiver<Rows>,
    settings: Arc<Settings>,
    /// Where the eBPF state is pinned (removed after a clean stop, or once the rows a
    /// failed last flush left are spilled).
    pins: Option<PinDir>,
    /// Where such rows may be spilled.
    places: pending::Places,
    /// `[[alert]]` rules, evaluated on the rows as they come.
    alerts: Option<crate::alerts::AlertEngine>,
}

impl Writer {
    fn accept(&mut self, rows: Rows) {
        self.alert_rows(|alerts| alerts.observe(&rows, now_us()));
        self.keep(rows);
    }

    /// The `alert` events rows of what `evaluate` found changed, to the store.
    fn alert_rows(
        &mut self,
        evaluate: impl FnOnce(&mut crate::alerts::AlertEngine) -> Vec<EventRow>,
    ) {
        if let Some(alerts) = &mut self.alerts {
            let rows = evaluate(alerts);
            if !rows.is_empty() {
                self.keep(rows.into());
            }
        }
    }

    fn keep(&mut self, rows: Rows) {
        match &mut self.sink {
            Some(sink) => sink.push(rows),
            None => self.pending.push(rows),
        }
    }

    /// The sink back from a flush; the rows that came meanwhile go in after it, so the
    /// state file the flush saved still matches the rows it wrote.
    fn flushed(&mut self, mut sink: Sink) {
        for rows in self.pending.drain(..) {
            sink.push(rows);
        }
        let reported = std::mem::take(&mut sink.flusher.reported);
        self.sink = Some(sink);
        for (name, at) in reported {
            self.alert_rows(|alerts| alerts.event(name, at));
        }
    }

    /// Until a signal or `--duration`; returns why it stopped.
    async fn run_until_stop(&mut self, signals: &mut Signals, started: i64) -> &'static str {
        let settings = self.settings.clone();
        let deadline = settings.duration.map(|d| Instant::now() + d);
        let mut retention_hour = csm_store::layout::hour_of(started);
        // The first flush comes early, so that the start events and a recovered gap are
        // on disk within a second even if this run is killed soon.
        let mut next_flush = Instant::now() + settings.flush_interval.min(Duration::from_secs(1));
        let mut flushing: Option<JoinHandle<Sink>> = None;
        let reason = loop {
            tokio::select! {
                Some(rows) = self.rows.recv() => self.accept(rows),
                _ = sleep_until(next_flush), if flushing.is_none() => {
                    if let Some(sink) = self.sink.take() {
                        flushing = Some(sink.flush_in_background(settings.data_dir.clone()));
                    }
                    next_flush = Instant::now() + settings.flush_interval;
                }
                done = wait_flush(&mut flushing), if flushing.is_some() => {
                    flushing = None;
                    self.flushed(done);
                    let hour = csm_store::layout::hour_of(now_us());
                    if hour != retention_hour {
                        retention_hour = hour;
                        if let Some(sink) = &mut self.sink {
                            let metrics = sink.flusher.metrics.clone();
                            apply_retention(&mut sink.store, &settings, metrics.as_deref());
                        }
                    }
                }
                reason = signals.recv() => break reason,
                _ = wait_deadline(deadline) => break "duration reached",
            }
        };
        if flushing.is_some() {
            let done = wait_flush(&mut flushing).await;
            self.flushed(done);
        }
        reason
    }

    /// After the collectors' last samples: writes what they sent and the `stop` event,
    /// then removes the crash-recovery state (the pins and the netdev state file), which
    /// is only safe once everything is on disk, or spilled for the next start (see
    /// [`pending`]).
    fn finish(mut self, stop_reason: &str) -> Result<(), RunError> {
        let Some(mut sink) = self.sink.take() else {
            return Err(RunError::runtime("the store was lost in a flush"));
        };
        while let Ok(rows) = self.rows.try_recv() {
            sink.push(rows);
        }
        let data_dir = &self.settings.data_dir;
        let stop = Event::Stop(stop_reason.to_string());
        write_event(
            &mut sink.store,
            sink.flusher.metrics.as_deref(),
            now_us(),
            stop,
        );
        // The current hours' files stay as this flush leaves them: one row group each.
        sink.store.compact_at_next_flush();
        if !sink.flusher.flush(&mut sink.store, data_dir) {
            let first = sink.flusher.last_error.take().unwrap_or_default();
            return Err(self.spill_or_keep_pins(&sink.store, &first));
        }
        self.remove_recovery_state();
        Ok(())
    }

    /// After a failed final flush: the rows go to a spill and the pins go; if no place
    /// takes the rows, the pins stay (the next start adopts them and the state file says
    /// what was last written, so nothing counted is lost).
    fn spill_or_keep_pins(self, store: &Store, first: &str) -> RunError {
        let unwritten = store.unwritten_rows();
        match pending::spill(store, &self.places) {
            Ok((place, rows)) => {
                self.remove_recovery_state();
                RunError::runtime(format!(
                    "final flush failed ({first}): its {rows} rows are kept in {} for the next                      start, which writes them; eBPF pins removed",
                    place.display()
                ))
            }
            Err(why) => RunError::runtime(format!(
                "final flush failed ({unwritten} rows not written): {first}; no place could                  keep them ({why}): the eBPF pins stay so that the next start recovers the                  counters"
            )),
        }
    }

    /// The pins and the netdev state file: what a crash would recover from.
    fn remove_recovery_state(self) {
        let data_dir = &self.settings.data_dir;
        if let Err(err) = NetdevState::remove(data_dir) {
            warn!("cannot remove {}: {err}", state::NETDEV_STATE_FILE);
        }
        if let Some(pins) = self.pins {
            if let Err(err) = pins.remove() {
                warn!(
                    "cannot remove pinned eBPF state {}: {err}",
                    pins.path.display()
                );
            }
        }
    }
}

/// The Prometheus endpoint when `[metrics] listen` is set: its counters, and the server
/// (bound now, so a taken port stops the start; it stops when dropped).
fn start_metrics(
    settings: &Settings,
    collectors: &Collectors,
    started: i64,
) -> Result<(Option<Arc<Metrics>>, Option<crate::metrics::Endpoint>), RunError> {
    let Some(listen) = &settings.metrics else {
        return Ok((None, None));
    };
    let backend = collectors.description.split(' ').next().unwrap_or_default();
    let metrics = Arc::new(Metrics::new(backend, started));
    let endpoint = crate::metrics::start(listen, metrics.clone()).map_err(RunError::runtime)?;
    if listen.is_remote() {
        warn!("metrics endpoint: {}", listen.describe());
    }
    Ok((Some(metrics), Some(endpoint)))
}

/// `backend = "auto"` ended on /proc: eBPF could not run (the `fallback` alert).
fn fell_back(settings: &Settings, description: &str) -> bool {
    settings.backend == settings::Backend::Auto && description.starts_with("proc")
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

/// This machine's core count and kernel release, for the `host` event.
fn host_facts(paths: &crate::sources::host::HostPaths) -> Event {
    Event::Host {
        cores: crate::sources::host::online_cpus() as u32,
        kernel: paths.kernel_release().unwrap_or_default(),
    }
}

/// Deletes whole date partitions older than `retain` (at start and every hour).
fn apply_retention(store: &mut Store, settings: &Settings, metrics: Option<&Metrics>) {
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
        let event = Event::Retention(format!(
            "removed {} date partitions older than {retain:?}",
            removed.len()
        ));
        write_event(store, metrics, now, event);
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
        Rows::Table(rows) => store.extend_rows(rows),
    }
}

fn signal_error(err: std::io::Error) -> RunError {
    RunError::runtime(format!("cannot install signal handlers: {err}"))
}

/// The sink back from the flush in progress. A panic in the flush is a bug: it goes on
/// unwinding here rather than being turned into a quiet loss of the store.
async fn wait_flush(flushing: &mut Option<JoinHandle<Sink>>) -> Sink {
    let Some(handle) = flushing.as_mut() else {
        return std::future::pending().await;
    };
    match handle.await {
        Ok(sink) => sink,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    }
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
    /// The Prometheus endpoint's counters: flushes and the events written here.
    metrics: Option<Arc<Metrics>>,
    /// The events written here since the writer last looked, for the alert rules.
    reported: Vec<(&'static str, i64)>,
    /// Spills taken in at start, removed once a flush has written their rows.
    merged: Vec<pending::Merged>,
}

impl Flusher {
    fn push(&mut self, store: &mut Store, rows: Rows) {
        // Counted as they go into the store, not before: the counters the state file
        // saves are then those of the rows the same flush writes.
        if let Some(metrics) = &self.metrics {
            metrics.observe(&rows);
        }
        match rows {
            Rows::CpuTotals(sample) => self.last_cpu = Some(sample),
            Rows::NetTotals(sample) => self.last_net = Some(sample),
            Rows::NetdevTotals(sample) => self.last_netdev = Some(sample),
            rows => push(store, rows),
        }
    }

    /// True when everything held is on disk.
    ///
    /// The state file goes first, with the totals the rows being written end at: a crash
    /// between the two writes then loses at most these rows (the restart resumes after
    /// them). The other order left rows on disk newer than the state, and the restart
    /// charged their span a second time (+11.3 % of a burn across a kill -9 on 6.12).
    fn flush(&mut self, store: &mut Store, data_dir: &std::path::Path) -> bool {
        let now = now_us();
        self.save_state(data_dir);
        crash_between_state_and_rows();
        let errors = store.flush(now);
        if let Some(metrics) = &self.metrics {
            metrics.flushed(errors.is_empty(), now);
            for _ in 0..store.take_own_events() {
                metrics.event("rows_dropped");
            }
        }
        let Some(first) = errors.first() else {
            pending::remove_merged(&mut self.merged);
            if let Some(condition) = self.failing.take() {
                let down_ms = (now - self.failing_since_us) / 1000;
                info!("writing works again after {down_ms} ms ({condition})");
                self.count_event("write_ok");
                store.event(
                    now,
                    Event::WriteOk(format!(
                        "{condition} resolved after {down_ms} ms; held rows written"
                    )),
                );
                // The event itself goes out at the next flush.
            }
            return true;
        };
        let condition = write_condition(first);
        self.last_error = Some(first.to_string());
        if self.failing != Some(condition) {
            error!(
                "{first} ({condition}; {} rows kept in memory, retrying at every flush)",
                store.unwritten_rows()
            );
            self.count_event("write_error");
            store.event(now, Event::WriteError(format!("{condition}: {first}")));
            if self.failing.is_none() {
                self.failing_since_us = now;
            }
            self.failing = Some(condition);
        }
        false
    }

    fn count_event(&mut self, name: &'static str) {
        if let Some(metrics) = &self.metrics {
            metrics.event(name);
        }
        self.reported.push((name, now_us()));
    }

    fn save_state(&self, data_dir: &std::path::Path) {
        if let (Some(instance), Some(cpu)) = (&self.instance, &self.last_cpu) {
            let state = State {
                instance: instance.clone(),
                cpu: cpu.clone(),
                net: self.last_net.clone(),
                metrics: self.metrics.as_ref().map(|m| m.pinned_counters()),
            };
            if let Err(err) = state.save(data_dir) {
                self.state_not_saved(&state::path(data_dir).display().to_string(), &err);
            }
        }
        if let (Some(boot_id), Some(sample)) = (&self.boot_id, &self.last_netdev) {
            let state = NetdevState {
                boot_id: boot_id.clone(),
                sample: sample.clone(),
            };
            if let Err(err) = state.save(data_dir) {
                self.state_not_saved(state::NETDEV_STATE_FILE, &err);
            }
        }
    }

    /// While writes fail the state usually cannot be written either (the same file
    /// system), and the failure is already reported once: not again at every flush. The
    /// state then stays where it was, so a restart still charges the rows held in memory
    /// (but those of the first failed flush). Where the state can be written and the rows
    /// cannot, a crash loses the held rows: never charges them twice.
    fn state_not_saved(&self, file: &str, err: &std::io::Error) {
        if self.failing.is_some() {
            tracing::debug!("cannot save {file}: {err}");
        } else {
            warn!("cannot save {file}: {err}");
        }
    }
}

/// Test hook of the root test `a_crash_between_the_state_and_the_rows_charges_nothing_twice`
/// (tests/tests/crash.rs): with
/// `CSM_TEST_CRASH_AT_FLUSH=N` in its environment the daemon SIGKILLs itself at its Nth
/// flush, after the state file and before the rows, the moment a kill -9 once caught
/// the other order in. Read once; unset, it costs one atomic load per flush.
fn crash_between_state_and_rows() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    static FLUSHES: AtomicU64 = AtomicU64::new(0);
    let at = AT.get_or_init(|| {
        std::env::var("CSM_TEST_CRASH_AT_FLUSH")
            .ok()
            .and_then(|n| n.parse().ok())
    });
    if let Some(at) = *at {
        if FLUSHES.fetch_add(1, Ordering::Relaxed) + 1 == at {
            // SAFETY: raise has no preconditions; SIGKILL ends the process here.
            unsafe { libc::raise(libc::SIGKILL) };
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
