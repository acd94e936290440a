//! The Prometheus endpoint end to end, as root: the real `csm` binary in a test
//! namespace, a real Prometheus (Debian's) scraping it every second, known CPU and
//! traffic, and Prometheus's `increase()`/`rate()` held against the Parquet rows and
//! the kernel's own counters.

use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use csm::store::{AlertEvent, CpuRow, Event, NetRow, PingRow};
use csm_tests::net::tcp_exchange;
use csm_tests::prometheus::{
    http_get, metrics_config, promtool_check, samples_of, scalar_of, Prometheus, CSM_PORT,
};
use csm_tests::{require_root, wait_cpu_ns, Daemon, DataDir, Ipv6, Link, Netns, TestUser};

/// Bytes each way through the veth: large beside anything else on it (a few ARP
/// packets), small enough for a quick test.
const UP: usize = 24 << 20;
const DOWN: usize = 8 << 20;

fn tcp_in(server_ns: &Netns, client_ns: &Netns, addr: &'static str, up: usize, down: usize) {
    let listener = server_ns.within(move || TcpListener::bind(addr).expect("bind"));
    let client = client_ns.within(move || TcpStream::connect(addr).expect("connect"));
    tcp_exchange(listener, client, up, down);
}

/// What Prometheus says of one counter series over all its samples.
struct Seen {
    /// Time (Unix seconds) and value of its first and last samples.
    first: (f64, f64),
    last: (f64, f64),
    /// `increase()` and `rate()` × range over exactly the span of its samples.
    increase: f64,
    rate_times_range: f64,
}

/// `increase(series[range])` and `rate()` evaluated at the series' last sample over a
/// range that starts exactly at its first (Prometheus 2 takes both ends in): no
/// extrapolation at either end, so they are the counter's growth between the two
/// samples as Prometheus computes it.
fn seen(prometheus: &Prometheus, series: &str) -> Seen {
    let samples = samples_of(&prometheus.query(&format!("{series}[10m]"), None));
    assert!(samples.len() >= 5, "{series}: few samples: {samples:?}");
    let (first, last) = (samples[0], samples[samples.len() - 1]);
    let range_ms = ((last.0 - first.0) * 1000.0).round() as i64;
    let at = Some(last.0);
    let query = |function: &str| {
        scalar_of(&prometheus.query(&format!("{function}({series}[{range_ms}ms])"), at))
            .unwrap_or_else(|| panic!("no {function}() of {series}"))
    };
    let seen = Seen {
        first,
        last,
        increase: query("increase"),
        rate_times_range: query("rate") * range_ms as f64 / 1000.0,
    };
    println!(
        "{series}: {} samples, first {first:?}, last {last:?}, increase {:.4}, rate x range {:.4}",
        samples.len(),
        seen.increase,
        seen.rate_times_range
    );
    seen
}

/// Sum of `value` over the rows whose interval ended between two samples.
fn rows_between<R>(
    rows: &[R],
    seen: &Seen,
    ts_us: impl Fn(&R) -> i64,
    value: impl Fn(&R) -> i64,
) -> f64 {
    let (from, to) = ((seen.first.0 * 1e6) as i64, (seen.last.0 * 1e6) as i64);
    rows.iter()
        .filter(|r| ts_us(r) > from && ts_us(r) <= to)
        .map(value)
        .sum::<i64>() as f64
}

/// The eBPF daemon in `ns`, every second, its endpoint on the namespace's loopback.
fn with_endpoint(ns: &Netns, data: &DataDir) -> Daemon {
    daemon_with(
        ns,
        data,
        &metrics_config(),
        &["--backend", "ebpf", "--duration", "300s"],
    )
}

/// The daemon in `ns` with the config `toml`, every second, and `args`.
fn daemon_with(ns: &Netns, data: &DataDir, toml: &str, args: &[&str]) -> Daemon {
    let config = data.config(toml);
    Daemon::builder()
        .netns(ns)
        .data_dir(data)
        .arg("--config")
        .arg(&config)
        .args(["--interval", "1s"])
        .args(args)
        .start()
}

fn assert_within_pct(what: &str, got: f64, want: f64, pct: f64) {
    let off = (got - want).abs() / want.abs().max(1e-9) * 100.0;
    println!("{what}: {got:.4} vs {want:.4} ({off:.3} % off)");
    assert!(
        off <= pct,
        "{what}: {got:.4} vs {want:.4} ({off:.2} % off, limit {pct} %)"
    );
}

/// A user's burn and a known number of bytes through a veth, scraped by Prometheus every
/// second: `increase()` and `rate()` of the CPU and interface counters match the Parquet
/// rows of the same span and the kernel (wait4's CPU time, /proc/net/dev) within 2 %;
/// the exposition passes `promtool check metrics` with no warning, and OpenMetrics ends
/// in `# EOF`.
#[test]
fn prometheus_increase_matches_rows_and_the_kernel() {
    require_root();
    let link = Link::new("pm", Ipv6::Off);
    link.address("10.232.0.1/24", "10.232.0.2/24");
    let (a, b, va) = (&link.client, &link.server, &link.client_if);
    let user = TestUser::create("pm");
    let data = DataDir::new();
    let daemon = with_endpoint(a, &data);
    let prometheus = Prometheus::start(a);
    // A little CPU and traffic first, so that both series exist (with small values)
    // before the workload: the workload then lies wholly between their first and last
    // samples.
    let _ = user.shell("true").status();
    tcp_in(b, a, "10.232.0.2:5000", 1000, 1000);
    thread::sleep(Duration::from_secs(4));

    let veth_before = a.traffic(va);
    let burn = user.shell("while :; do :; done").spawn().expect("burn");
    tcp_in(b, a, "10.232.0.2:5001", UP, DOWN);
    thread::sleep(Duration::from_secs(4));
    // SAFETY: our own child.
    unsafe { libc::kill(burn.id() as i32, libc::SIGKILL) };
    let (_, burn_ns) = wait_cpu_ns(burn);
    let veth_after = a.traffic(va);
    // The intervals holding the end of the work close, and Prometheus scrapes them.
    thread::sleep(Duration::from_secs(4));

    let exposition = a.within(|| http_get(CSM_PORT, "/metrics", None).expect("GET /metrics"));
    assert_eq!(exposition.0, 200);
    let (ok, says) = promtool_check(&exposition.1);
    assert!(ok && says.is_empty(), "promtool check metrics: {says}");
    let openmetrics = a.within(|| {
        http_get(
            CSM_PORT,
            "/metrics",
            Some("application/openmetrics-text; version=1.0.0"),
        )
        .expect("GET /metrics (OpenMetrics)")
    });
    assert!(openmetrics.1.ends_with("# EOF\n"), "{}", openmetrics.1);

    let netns = a.inode();
    let ifindex = a.ifindex(va);
    let iface = format!("interface=\"{va}\",netns=\"{netns}\"");
    let uid = format!("uid=\"{}\"", user.uid);
    let rx = seen(
        &prometheus,
        &format!("csm_interface_receive_bytes_total{{{iface}}}"),
    );
    let tx = seen(
        &prometheus,
        &format!("csm_interface_transmit_bytes_total{{{iface}}}"),
    );
    let cpu = seen(&prometheus, &format!("csm_user_cpu_seconds_total{{{uid}}}"));
    drop(prometheus);
    // Every event counted as it went to the store: the exposition has the events rows
    // written before it was taken (the collectors' stop events come after).
    thread::sleep(Duration::from_millis(1500));
    let taken_us = csm_tests::now_us();
    let counted = a
        .within(|| http_get(CSM_PORT, "/metrics", None).expect("GET /metrics"))
        .1;
    daemon.stop();
    check_events_total(&counted, &data, taken_us);

    let net: Vec<NetRow> = data
        .rows::<NetRow>()
        .into_iter()
        .filter(|r| r.netns == Some(netns) && r.ifindex == ifindex)
        .collect();
    let cpu_rows: Vec<CpuRow> = data
        .rows::<CpuRow>()
        .into_iter()
        .filter(|r| r.uid == user.uid as i64)
        .collect();
    let kernel_rx = (veth_after.rx_bytes - veth_before.rx_bytes) as f64;
    let kernel_tx = (veth_after.tx_bytes - veth_before.tx_bytes) as f64;
    let rows_rx = rows_between(&net, &rx, |r| r.ts_us, |r| r.rx_bytes);
    let rows_tx = rows_between(&net, &tx, |r| r.ts_us, |r| r.tx_bytes);
    let rows_cpu_s = rows_between(&cpu_rows, &cpu, |r| r.ts_us, |r| r.cpu_ns) / 1e9;
    println!(
        "kernel rx {kernel_rx} tx {kernel_tx}; burn (wait4) {} s",
        burn_ns as f64 / 1e9
    );
    // The last sample is every row written: nothing after the work.
    let all_rx: i64 = net.iter().map(|r| r.rx_bytes).sum();
    let all_cpu: i64 = cpu_rows.iter().map(|r| r.cpu_ns).sum();
    assert_within_pct(
        "last rx sample vs every row",
        rx.last.1,
        all_rx as f64,
        0.01,
    );
    assert_within_pct(
        "last cpu sample vs every row",
        cpu.last.1,
        all_cpu as f64 / 1e9,
        0.01,
    );
    for (what, seen, rows, kernel) in [
        ("rx bytes", &rx, rows_rx, kernel_rx),
        ("tx bytes", &tx, rows_tx, kernel_tx),
        ("cpu seconds", &cpu, rows_cpu_s, burn_ns as f64 / 1e9),
    ] {
        assert_within_pct(
            &format!("increase() of {what} vs rows"),
            seen.increase,
            rows,
            2.0,
        );
        assert_within_pct(
            &format!("rate() of {what} vs rows"),
            seen.rate_times_range,
            rows,
            2.0,
        );
        assert_within_pct(
            &format!("increase() of {what} vs the kernel"),
            seen.increase,
            kernel,
            2.0,
        );
    }
}

/// Slowloris, 10,000 connections at once and a 1 MB header against the endpoint while
/// csm collects: the endpoint still answers afterwards, and the collection is untouched
/// (every interval's `cpu` row is there, 1 s apart).
#[test]
fn a_hostile_client_changes_neither_intervals_nor_rows() {
    require_root();
    let ns = Netns::new("ph", Ipv6::Off);
    let user = TestUser::create("ph");
    let data = DataDir::new();
    let daemon = with_endpoint(&ns, &data);
    let burn = user.shell("while :; do :; done").spawn().expect("burn");
    thread::sleep(Duration::from_secs(2));
    let attack_started = csm_tests::now_us();
    let attack = Instant::now();
    ns.within(hostile_clients);
    let attack_secs = attack.elapsed().as_secs_f64();
    let attack_ended = csm_tests::now_us();
    let (status, body) =
        ns.within(|| http_get(CSM_PORT, "/metrics", None).expect("GET after the attack"));
    assert_eq!(status, 200);
    assert!(body.contains("csm_user_cpu_seconds_total"), "{body}");
    thread::sleep(Duration::from_secs(2));
    // SAFETY: our own child.
    unsafe { libc::kill(burn.id() as i32, libc::SIGKILL) };
    let _ = wait_cpu_ns(burn);
    thread::sleep(Duration::from_millis(1500));
    daemon.stop();

    // The burn's rows: one per interval, every interval during the attack present and
    // about one second long (the collectors were never held up).
    let mut rows: Vec<CpuRow> = data
        .rows::<CpuRow>()
        .into_iter()
        .filter(|r| r.uid == user.uid as i64)
        .collect();
    rows.sort_by_key(|r| r.ts_us);
    let during: Vec<&CpuRow> = rows
        .iter()
        .filter(|r| r.ts_us > attack_started && r.ts_us <= attack_ended + 1_000_000)
        .collect();
    println!(
        "attack took {attack_secs:.1} s; burn rows during it: {:?}",
        during
            .iter()
            .map(|r| (r.ts_us, r.dur_ms, r.cpu_pct))
            .collect::<Vec<_>>()
    );
    assert!(
        during.len() as f64 >= attack_secs.floor(),
        "rows missing during the attack"
    );
    // Ticks are aligned to the wall clock; on a machine busy with other work a sample
    // may be late by a few hundred ms, never by a whole interval.
    for pair in rows.windows(2) {
        let gap_ms = (pair[1].ts_us - pair[0].ts_us) / 1000;
        assert!(
            (700..=1300).contains(&gap_ms),
            "rows {gap_ms} ms apart: {pair:?}"
        );
    }
    for row in &during {
        assert!(
            (700..=1300).contains(&row.dur_ms),
            "an interval of {} ms",
            row.dur_ms
        );
    }
}

/// In the namespace: 200 slowloris connections that send a byte a second, 10,000
/// connections opened at once and held, and one 1 MB header.
fn hostile_clients() {
    raise_fd_limit(12_000);
    let addr = ("127.0.0.1", CSM_PORT);
    let slow: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    let mut flood = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        match TcpStream::connect(addr) {
            Ok(stream) => flood.push(stream),
            Err(_) => break,
        }
    }
    println!("{} slow and {} flood connections", slow.len(), flood.len());
    assert!(
        flood.len() >= 9_000,
        "only {} connections opened",
        flood.len()
    );
    let header = format!(
        "GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    if let Ok(mut big) = TcpStream::connect(addr) {
        use std::io::{Read, Write};
        let _ = big.write_all(header.as_bytes());
        let mut answer = Vec::new();
        let _ = big.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = big.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
            "a 1 MB header got: {}",
            &answer[..answer.len().min(200)]
        );
    }
    for second in 0..6 {
        use std::io::Write;
        for mut stream in &slow {
            let _ = stream.write_all(&[b"GET /metrics HTTP/1.1\r\n"[second % 23]]);
        }
        thread::sleep(Duration::from_secs(1));
    }
    drop(flood);
    drop(slow);
}

fn raise_fd_limit(want: u64) {
    let limit = libc::rlimit {
        rlim_cur: want,
        rlim_max: want,
    };
    // SAFETY: a plain struct; as root the hard limit may be raised.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(rc, 0, "raise the descriptor limit to {want}");
}

/// A real outage: the ping target on the far side of a veth is cut off for 8 s. The
/// `outage` rule fires once and resolves once, its command runs twice with the alert in
/// its environment, and the `alert` events and `csm report alerts` give the outage the
/// start and end the ping rows give it.
#[test]
fn an_outage_fires_and_resolves_once_with_its_command() {
    require_root();
    let link = Link::new("pa", Ipv6::Off);
    link.address("10.233.0.1/24", "10.233.0.2/24");
    let data = DataDir::new();
    let pager = Pager::new();
    let config = data.config(&format!(
        "[ping]\ninterval = \"1s\"\ncount = 1\ntargets = [\"10.233.0.2\"]\n\n\
         [[alert]]\nname = \"far side down\"\nkind = \"outage\"\ntarget = \"10.233.0.2\"\n\
         for = \"3s\"\n{}",
        pager.run_toml()
    ));
    let daemon = Daemon::builder()
        .netns(&link.client)
        .data_dir(&data)
        .arg("--config")
        .arg(&config)
        .args(["--interval", "1s", "--duration", "300s"])
        .start();
    thread::sleep(Duration::from_secs(4));
    link.set_server_link(false);
    thread::sleep(Duration::from_secs(8));
    link.set_server_link(true);
    thread::sleep(Duration::from_secs(5));
    let log = daemon.stop();
    let log = log.join("\n");

    // The ping rows' outage, by the one definition.
    let mut pings: Vec<PingRow> = data.rows::<PingRow>();
    pings.sort_by_key(|r| r.ts_us);
    let found = csm::store::outages::of_rows(pings.iter());
    assert_eq!(found.len(), 1, "outages in the ping rows: {found:?}");
    let outage = found[0];
    let end_us = outage.end_us.expect("the outage ended");

    // Exactly one firing and one resolution, with the outage's start and end; the
    // command ran twice, `csm report alerts` lists it.
    println!("outage {outage:?}");
    let (fired, resolved) =
        fired_and_resolved_once(&data, &pager, "far side down", ("CSM_TARGET", "10.233.0.2"));
    assert_eq!(fired.1.since_us, outage.start_us);
    assert_eq!(resolved.1.since_us, outage.start_us);
    assert_eq!(resolved.0, end_us);
    assert!(fired.1.value >= 3.0, "fired at {} s down", fired.1.value);
    assert!(
        log.contains("alert far side down (10.233.0.2) firing"),
        "{log}"
    );
    assert!(
        log.contains("alert far side down (10.233.0.2) resolved"),
        "{log}"
    );

    let duration_s = (end_us - outage.start_us) as f64 / 1e6;
    assert!(
        (7.0..=11.0).contains(&duration_s),
        "an outage of {duration_s} s"
    );
}

/// The eBPF daemon of the restart test in `ns`: killable (SIGKILL on drop), every
/// second, flushing every second, its endpoint on the namespace's loopback. Entered
/// with `nsenter --net` rather than `ip netns exec`, which mounts a sysfs of its own
/// (without /sys/fs/bpf, so the pins would die with the process).
fn killable_with_endpoint(ns: &Netns, data: &DataDir, config: &std::path::Path) -> Daemon {
    let net = format!("--net={}", ns.path().display());
    Daemon::killable(data)
        .wrapper(["nsenter", net.as_str()])
        .arg("--config")
        .arg(config)
        .args(["--interval", "1s", "--flush-interval", "1s"])
        .start()
}

/// A PromQL instant query's single value (at `time`, or now).
fn value_of(prometheus: &Prometheus, promql: &str, time: Option<f64>) -> f64 {
    scalar_of(&prometheus.query(promql, time)).unwrap_or_else(|| panic!("no value of {promql}"))
}

/// Counters across restarts, against a real Prometheus. A user burns CPU while csm is
/// killed (-9) and started again over its pins: Prometheus sees no reset (`resets()` of
/// every CPU and traffic series is 0) and `increase()` over the whole span equals the
/// burn's CPU time (wait4) within 2 %, the part burnt while csm was down included. Then
/// csm is killed again and its pins removed: the restart is a clean reset (from 0, at
/// the new start), as Prometheus expects where the pins cannot survive.
#[test]
fn counters_continue_over_surviving_pins_and_reset_without_them() {
    require_root();
    let ns = Netns::new("pr", Ipv6::Off);
    let user = TestUser::create("pr");
    let data = DataDir::new();
    let config = data.config(&metrics_config());
    let daemon = killable_with_endpoint(&ns, &data, &config);
    let prometheus = Prometheus::start(&ns);
    // The user's series exists (small) before the burn.
    let _ = user.shell("true").status();
    thread::sleep(Duration::from_secs(3));

    let burn = user.shell("while :; do :; done").spawn().expect("burn");
    thread::sleep(Duration::from_secs(3));
    daemon.kill();
    assert!(!data.pin_dirs().is_empty(), "kill -9 leaves the pins");
    // Burnt while csm is down: the pins count it, the restart recovers it.
    thread::sleep(Duration::from_secs(2));
    let daemon = killable_with_endpoint(&ns, &data, &config);
    thread::sleep(Duration::from_secs(3));
    // SAFETY: our own child.
    unsafe { libc::kill(burn.id() as i32, libc::SIGKILL) };
    let (_, burn_ns) = wait_cpu_ns(burn);
    thread::sleep(Duration::from_secs(4));

    let uid = format!("uid=\"{}\"", user.uid);
    let cpu = seen(&prometheus, &format!("csm_user_cpu_seconds_total{{{uid}}}"));
    // Every series of every family the pins back (resets() drops the name, so one
    // family at a time).
    let (mut series, mut resets) = (0.0, 0.0);
    for family in [
        "csm_user_cpu_seconds_total",
        "csm_user_network_receive_bytes_total",
        "csm_user_network_transmit_bytes_total",
        "csm_interface_receive_bytes_total",
        "csm_interface_transmit_bytes_total",
        "csm_interface_receive_packets_total",
        "csm_interface_transmit_packets_total",
    ] {
        let count = format!("count(last_over_time({family}[10m]))");
        series += scalar_of(&prometheus.query(&count, None)).unwrap_or(0.0);
        let sum = format!("sum(resets({family}[10m]))");
        resets += scalar_of(&prometheus.query(&sum, None)).unwrap_or(0.0);
    }
    println!("{series} CPU and traffic series, {resets} resets; burn {burn_ns} ns");
    assert!(series >= 3.0, "{series} series");
    assert_eq!(resets, 0.0, "a counter went backwards over the restart");
    assert_within_pct(
        "increase() over the restart vs the burn (wait4)",
        cpu.increase,
        burn_ns as f64 / 1e9,
        2.0,
    );
    let recovered = data
        .events()
        .into_iter()
        .filter(|(_, e)| matches!(e, Event::Recovered(_)))
        .count();
    assert!(
        recovered >= 1,
        "the restart recovered what the pins counted"
    );

    // Pins gone: a clean reset at the new start.
    let before = cpu.last.1;
    daemon.kill();
    for dir in data.pin_dirs() {
        std::fs::remove_dir_all(&dir).expect("remove the pins");
    }
    let restarted_s = csm_tests::now_us() as f64 / 1e6;
    let daemon = killable_with_endpoint(&ns, &data, &config);
    let burn = user.shell("while :; do :; done").spawn().expect("burn");
    thread::sleep(Duration::from_secs(1));
    // SAFETY: our own child.
    unsafe { libc::kill(burn.id() as i32, libc::SIGKILL) };
    let _ = wait_cpu_ns(burn);
    thread::sleep(Duration::from_secs(4));
    let now_cpu = value_of(
        &prometheus,
        &format!("csm_user_cpu_seconds_total{{{uid}}}"),
        None,
    );
    let cpu_resets = value_of(
        &prometheus,
        &format!("resets(csm_user_cpu_seconds_total{{{uid}}}[10m])"),
        None,
    );
    let reset_at = value_of(&prometheus, "csm_counters_reset_timestamp_seconds", None);
    println!("without pins: {now_cpu} s (was {before} s), {cpu_resets} resets, reset at {reset_at} (restart {restarted_s})");
    assert!(
        now_cpu < before,
        "counted from 0 again: {now_cpu} vs {before}"
    );
    assert_eq!(cpu_resets, 1.0);
    assert!(reset_at >= restarted_s, "the reset time is the new start");
    drop(prometheus);
    drop(daemon);
}

/// Sums `csm_events_total{event=…}` of an exposition by event, and checks them against
/// the events rows of before `taken_us`, when it was taken.
fn check_events_total(exposition: &str, data: &DataDir, taken_us: i64) {
    let mut counted = std::collections::BTreeMap::<String, f64>::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("csm_events_total{event=\"") {
            let (event, value) = rest.split_once("\"} ").expect("an events sample");
            counted.insert(event.to_string(), value.parse().expect("a number"));
        }
    }
    let mut rows = std::collections::BTreeMap::<String, f64>::new();
    for (ts, event) in data.events() {
        if ts < taken_us {
            *rows.entry(event.name().to_string()).or_default() += 1.0;
        }
    }
    println!("csm_events_total {counted:?}\nevents rows {rows:?}");
    for kind in ["start", "backend", "host"] {
        assert!(rows.contains_key(kind), "no {kind} row: {rows:?}");
    }
    assert_eq!(counted, rows, "csm_events_total against the events rows");
}

/// A `run` command for alert rules that writes its environment to
/// `<dir>/<CSM_STATE>.<pid>`, and what it wrote.
struct Pager {
    dir: tempfile::TempDir,
}

impl Pager {
    fn new() -> Pager {
        let dir = tempfile::tempdir().expect("temp dir for the command's output");
        let script = dir.path().join("page.sh");
        std::fs::write(&script, "#!/bin/sh\nenv | sort > \"$1/$CSM_STATE.$$\"\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        Pager { dir }
    }

    /// The `run` and `timeout` lines of a rule.
    fn run_toml(&self) -> String {
        let dir = self.dir.path();
        format!(
            "run = [\"{}\", \"{}\"]\ntimeout = \"5s\"\n",
            dir.join("page.sh").display(),
            dir.display()
        )
    }

    /// Each run's file name and environment, by name (`firing.*` before `resolved.*`).
    fn runs(&self) -> Vec<(String, String)> {
        let mut runs: Vec<(String, String)> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|path| !path.ends_with("page.sh"))
            .map(|path| {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&path).unwrap())
            })
            .collect();
        runs.sort();
        runs
    }
}

/// The `alert` events rows of a data dir, in time order.
fn alert_events(data: &DataDir) -> Vec<(i64, AlertEvent)> {
    let mut alerts: Vec<(i64, AlertEvent)> = data
        .events()
        .into_iter()
        .filter_map(|(ts, e)| match e {
            Event::Alert(a) => Some((ts, a)),
            _ => None,
        })
        .collect();
    alerts.sort_by_key(|(ts, _)| *ts);
    alerts
}

/// Exactly one firing and one resolution of the rule `name` about `subject` (an
/// environment key and value; an empty value: the daemon's own trouble, which has
/// none); the command ran twice with them in its environment; `csm report alerts` lists
/// the one alert from the firing's start to the resolution. The two events.
fn fired_and_resolved_once(
    data: &DataDir,
    pager: &Pager,
    name: &str,
    (key, subject): (&str, &str),
) -> ((i64, AlertEvent), (i64, AlertEvent)) {
    let alerts = alert_events(data);
    println!("alert events {alerts:?}");
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let (fired, resolved) = (alerts[0].clone(), alerts[1].clone());
    assert!(fired.1.firing && !resolved.1.firing, "{alerts:?}");
    for (_, event) in [&fired, &resolved] {
        assert_eq!(
            (event.name.as_str(), event.subject.as_str()),
            (name, subject)
        );
    }
    assert_eq!(resolved.1.since_us, fired.1.since_us);

    let runs = pager.runs();
    assert_eq!(runs.len(), 2, "command runs: {runs:?}");
    for ((run, env), (state, event)) in runs
        .iter()
        .zip([("firing", &fired), ("resolved", &resolved)])
    {
        assert!(run.starts_with(&format!("{state}.")), "{runs:?}");
        let mut want = vec![
            format!("CSM_ALERT={name}"),
            format!("CSM_STATE={state}"),
            format!("CSM_SINCE_US={}", event.1.since_us),
            format!("CSM_VALUE={}", event.1.value),
        ];
        if !subject.is_empty() {
            want.push(format!("{key}={subject}"));
        }
        for want in want {
            assert!(env.lines().any(|l| l == want), "{run} lacks {want}:\n{env}");
        }
        assert!(env.lines().any(|l| l.starts_with("CSM_SINCE=")), "{env}");
    }

    let from = csm::report::rfc3339(fired.1.since_us - 60_000_000);
    let report = csm_tests::run_csm([
        "report".as_ref(),
        "--data-dir".as_ref(),
        data.path().as_os_str(),
        "--from".as_ref(),
        from.as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
        "alerts".as_ref(),
    ] as [&std::ffi::OsStr; 8]);
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let listed = json["alerts"].as_array().expect("alerts section");
    assert_eq!(listed.len(), 1, "{json}");
    assert_eq!(
        listed[0]["start_ts"],
        csm::report::rfc3339(fired.1.since_us)
    );
    assert_eq!(listed[0]["end_ts"], csm::report::rfc3339(resolved.0));
    let duration_s = (resolved.0 - fired.1.since_us) as f64 / 1e6;
    assert_eq!(listed[0]["duration_s"].as_f64(), Some(duration_s));
    (fired, resolved)
}

/// The daemon with `[[alert]]` rules (and whatever else `toml` says), every second.
fn with_rules(ns: &Netns, data: &DataDir, toml: &str) -> Daemon {
    daemon_with(
        ns,
        data,
        toml,
        &["--flush-interval", "1s", "--duration", "120s"],
    )
}

/// A user's burn of 5 s against `cpu` above 5 % of a core for 2 s (low: on a machine
/// busy with builds a burn may get a third of a core): one firing (its value the `cpu`
/// row's share of the interval it fired at) and one resolution after the burn.
#[test]
fn a_users_cpu_fires_and_resolves_once() {
    require_root();
    let ns = Netns::new("pc", Ipv6::Off);
    let user = TestUser::create("pc");
    let data = DataDir::new();
    let pager = Pager::new();
    let daemon = with_rules(
        &ns,
        &data,
        &format!(
            "[[alert]]\nname = \"busy\"\nkind = \"cpu\"\nuser = \"{}\"\nabove = 5\nfor = \"2s\"\n{}",
            user.name,
            pager.run_toml()
        ),
    );
    thread::sleep(Duration::from_secs(2));
    let burn = user.shell("while :; do :; done").spawn().expect("burn");
    thread::sleep(Duration::from_secs(5));
    // SAFETY: our own child.
    unsafe { libc::kill(burn.id() as i32, libc::SIGKILL) };
    let _ = wait_cpu_ns(burn);
    thread::sleep(Duration::from_secs(3));
    daemon.stop();

    let (fired, resolved) =
        fired_and_resolved_once(&data, &pager, "busy", ("CSM_USER", &user.name));
    let rows: Vec<CpuRow> = data
        .rows::<CpuRow>()
        .into_iter()
        .filter(|r| r.uid == user.uid as i64)
        .collect();
    let at_firing = rows
        .iter()
        .find(|r| r.ts_us == fired.0)
        .expect("the row it fired at");
    // The row keeps the share rounded to 10 significant bits (`csm::store::quantize`:
    // 100.15 % is stored as 100.125 %, at most 0.1 % off), the alert the exact value.
    assert!(
        (at_firing.cpu_pct - fired.1.value).abs() <= fired.1.value.abs() / 1024.0,
        "{at_firing:?} vs the alert's {}",
        fired.1.value
    );
    assert!(fired.1.value > 5.0);
    let held_s = (fired.0 - fired.1.since_us) as f64 / 1e6;
    assert!((2.0..4.0).contains(&held_s), "fired after {held_s} s above");
    // Resolved at the first interval below the share.
    let first_below = rows
        .iter()
        .filter(|r| r.ts_us > fired.0 && r.cpu_pct <= 5.0)
        .map(|r| r.ts_us)
        .min();
    assert!(first_below.is_none_or(|ts| ts >= resolved.0), "{rows:?}");
}

/// 10 MiB/s sent through a veth for 4 s against `rate` tx above 2 MB/s for 2 s: one
/// firing, whose value is the `net` row's rate of that interval, and one resolution; the
/// rows hold the bytes the kernel counted.
#[test]
fn an_interfaces_rate_fires_and_resolves_once() {
    require_root();
    let link = Link::new("pt", Ipv6::Off);
    link.address("10.234.0.1/24", "10.234.0.2/24");
    let (a, b, va) = (&link.client, &link.server, link.client_if.clone());
    let data = DataDir::new();
    let pager = Pager::new();
    let daemon = with_rules(
        a,
        &data,
        &format!(
            "[[alert]]\nname = \"fast\"\nkind = \"rate\"\ninterface = \"{va}\"\ndirection = \"tx\"\nabove = 2000000\nfor = \"2s\"\n{}",
            pager.run_toml()
        ),
    );
    thread::sleep(Duration::from_secs(2));
    let before = a.traffic(&va);
    let sent = paced_send(
        b,
        a,
        "10.234.0.2:5002",
        40,
        1 << 20,
        Duration::from_millis(100),
    );
    let after = a.traffic(&va);
    thread::sleep(Duration::from_secs(3));
    daemon.stop();

    let (fired, _) = fired_and_resolved_once(&data, &pager, "fast", ("CSM_INTERFACE", &va));
    let netns = a.inode();
    let rows: Vec<NetRow> = data
        .rows::<NetRow>()
        .into_iter()
        .filter(|r| r.netns == Some(netns) && r.iface == va)
        .collect();
    let row = rows
        .iter()
        .find(|r| r.ts_us == fired.0)
        .expect("the row it fired at");
    let rate = row.tx_bytes as f64 * 1000.0 / row.dur_ms as f64;
    assert_within_pct("fired value vs the row's rate", fired.1.value, rate, 0.001);
    assert!(fired.1.value > 2e6);
    let kernel_tx = (after.tx_bytes - before.tx_bytes) as f64;
    let rows_tx: i64 = rows.iter().map(|r| r.tx_bytes).sum();
    println!("sent {sent} bytes; kernel tx {kernel_tx}; rows tx {rows_tx}");
    assert!(kernel_tx >= sent as f64);
    assert!(rows_tx as f64 >= kernel_tx);
    assert_within_pct("rows tx vs the kernel", rows_tx as f64, kernel_tx, 2.0);
}

/// Sends `chunks` of `chunk` bytes from `client_ns` to a reader in `server_ns`, one
/// every `every`: a known, steady rate. The bytes sent.
fn paced_send(
    server_ns: &Netns,
    client_ns: &Netns,
    addr: &'static str,
    chunks: usize,
    chunk: usize,
    every: Duration,
) -> usize {
    use std::io::{Read, Write};
    let listener = server_ns.within(move || TcpListener::bind(addr).expect("bind"));
    let reader = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut sink = Vec::new();
        stream.read_to_end(&mut sink).expect("read");
        sink.len()
    });
    let mut client = client_ns.within(move || TcpStream::connect(addr).expect("connect"));
    let data = vec![7u8; chunk];
    let start = Instant::now();
    for i in 0..chunks {
        client.write_all(&data).expect("send");
        let next = start + every * (i as u32 + 1);
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    drop(client);
    let received = reader.join().expect("reader");
    assert_eq!(received, chunks * chunk);
    received
}

/// The ping target unreachable for 3 s (its side of the veth down) against `loss` above
/// 30 % over 5 s: one firing and one resolution, each with the loss the ping rows of
/// the window before it give.
#[test]
fn loss_over_a_window_fires_and_resolves_once() {
    require_root();
    let link = Link::new("pl", Ipv6::Off);
    link.address("10.235.0.1/24", "10.235.0.2/24");
    let data = DataDir::new();
    let pager = Pager::new();
    let daemon = with_rules(
        &link.client,
        &data,
        &format!(
            "[ping]\ninterval = \"1s\"\ncount = 1\ntargets = [\"10.235.0.2\"]\n\n\
             [[alert]]\nname = \"lossy\"\nkind = \"loss\"\ntarget = \"10.235.0.2\"\n\
             window = \"5s\"\nabove = 30\n{}",
            pager.run_toml()
        ),
    );
    thread::sleep(Duration::from_secs(4));
    link.set_server_link(false);
    thread::sleep(Duration::from_secs(3));
    link.set_server_link(true);
    thread::sleep(Duration::from_secs(8));
    daemon.stop();

    let (fired, resolved) =
        fired_and_resolved_once(&data, &pager, "lossy", ("CSM_TARGET", "10.235.0.2"));
    let pings: Vec<PingRow> = data.rows::<PingRow>();
    let loss_at = |ts: i64| {
        let (sent, received) = pings
            .iter()
            .filter(|r| r.ts_us > ts - 5_000_000 && r.ts_us <= ts)
            .fold((0, 0), |(s, r), p| (s + p.sent, r + p.received.min(p.sent)));
        (sent - received) as f64 * 100.0 / sent as f64
    };
    println!(
        "loss at firing {} at resolution {}",
        loss_at(fired.0),
        loss_at(resolved.0)
    );
    assert_within_pct(
        "loss at firing vs the ping rows",
        fired.1.value,
        loss_at(fired.0),
        0.001,
    );
    assert!(fired.1.value > 30.0);
    assert!(loss_at(resolved.0) <= 30.0);
    assert!(pings.iter().any(|p| p.received == 0), "no ping was lost");
}

/// The data dir's file system full for 4 s against `daemon` `write_error`: one firing
/// at the `write_error` event and one resolution at the `write_ok` after it.
#[test]
fn a_write_error_fires_and_resolves_once() {
    require_root();
    let ns = Netns::new("pw", Ipv6::Off);
    let fs = csm_tests::Tmpfs::mount("4m").expect("mount a tmpfs");
    let data = DataDir::create_in(fs.path());
    let pager = Pager::new();
    let daemon = with_rules(
        &ns,
        &data,
        &format!(
            "[[alert]]\nname = \"cannot write\"\nkind = \"daemon\"\ntrouble = \"write_error\"\n{}",
            pager.run_toml()
        ),
    );
    thread::sleep(Duration::from_secs(2));
    let filler = fs.path().join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
    }
    thread::sleep(Duration::from_secs(4));
    std::fs::remove_file(&filler).unwrap();
    thread::sleep(Duration::from_secs(3));
    daemon.stop();

    let (fired, resolved) = fired_and_resolved_once(&data, &pager, "cannot write", ("", ""));
    let events = data.events();
    let at = |name: &str| {
        events
            .iter()
            .filter(|(_, e)| e.name() == name)
            .map(|(ts, _)| *ts)
            .collect::<Vec<_>>()
    };
    println!(
        "write_error at {:?}, write_ok at {:?}",
        at("write_error"),
        at("write_ok")
    );
    // One episode: the rule's times are the events' (taken a few µs apart).
    let (errors, oks) = (at("write_error"), at("write_ok"));
    assert_eq!((errors.len(), oks.len()), (1, 1));
    assert!((fired.1.since_us - errors[0]).abs() < 1_000_000);
    assert!((resolved.0 - oks[0]).abs() < 1_000_000);
}
