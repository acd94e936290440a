//! Cost of the Prometheus endpoint at one scrape per 15 s with 20 users and 4 interfaces,
//! as a share of one core, two ways:
//!
//! 1. in process, exactly: the registry fed one interval's rows (20 users' `cpu` and
//!    `net_uid` rows, 4 interfaces' `net` rows; 20 `mem` rows every 10th interval) on this
//!    thread (its own CPU clock), and the real server answering scrapes over loopback on
//!    its own thread (that thread's schedstat): observe cost × 1/s + scrape cost / 15 s;
//! 2. side by side in the same run: two real eBPF daemons (`csm run`, 1 s interval) on
//!    this host, one with `[metrics]` scraped every 15 s and one without, while 20 uids
//!    wake up 5 times a second and ping runs across 2 veth pairs (4 interfaces) in two
//!    namespaces; each daemon's CPU from wait4 (every thread, µs) when it ends.
//!
//! As root, after `cargo build --release -p csm-user --bins`:
//! `cargo run --release -p csm-user --example bench_metrics [-- --seconds 300]`
//! (`cargo xtask bench metrics` does both).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use csm::daemon::Rows;
use csm::metrics::{Format, Listen, Metrics};
use csm::store::{CpuRow, MemRow, NetRow, NetUidRow, Source};

const USERS: i64 = 20;
const INTERFACES: i64 = 4;
const SCRAPE_EVERY_S: f64 = 15.0;
const BENCH_PORT: u16 = 19848;
const DAEMON_PORT: u16 = 19849;
/// The uids of the side-by-side run's sleepers (no user needs to exist).
const FIRST_UID: u32 = 62001;

mod common;

fn main() {
    let seconds = common::seconds_arg(300);
    in_process();
    side_by_side(seconds);
}

fn in_process() {
    let metrics = Arc::new(Metrics::new("ebpf", 0));
    let intervals = 3000;
    let t0 = thread_cpu_ns();
    for i in 0..intervals {
        for rows in interval_rows(i) {
            metrics.observe(&rows);
        }
    }
    let observe_ns = (thread_cpu_ns() - t0) as f64 / intervals as f64;
    let listen = Listen::parse(&format!("127.0.0.1:{BENCH_PORT}"), None).unwrap();
    let endpoint = csm::metrics::start(&listen, metrics.clone()).expect("start the endpoint");
    let scrapes = 500;
    let (mut bytes, s0) = (0, server_thread_ns());
    for _ in 0..scrapes {
        bytes = scrape(BENCH_PORT);
    }
    let scrape_ns = (server_thread_ns() - s0) as f64 / scrapes as f64;
    drop(endpoint);
    let encode_t = Instant::now();
    for _ in 0..scrapes {
        std::hint::black_box(metrics.encode(Format::OpenMetrics));
    }
    let encode_ns = encode_t.elapsed().as_nanos() as f64 / scrapes as f64;
    let per_second_ns = observe_ns + scrape_ns / SCRAPE_EVERY_S;
    println!("in process: {USERS} users, {INTERFACES} interfaces, 1 s interval, a scrape every {SCRAPE_EVERY_S} s");
    println!(
        "  rows of one interval into the registry  {:>9.1} µs",
        observe_ns / 1e3
    );
    println!(
        "  one scrape, server thread ({bytes} bytes)  {:>9.1} µs (encoding alone {:.1} µs)",
        scrape_ns / 1e3,
        encode_ns / 1e3
    );
    println!(
        "  endpoint in all                          {:>9.4} % of one core",
        per_second_ns / 1e9 * 100.0
    );
}

/// One row per simulated user (uids 1000.., named `user<n>`).
fn per_user<R>(row: impl Fn(i64, Option<String>) -> R) -> Vec<R> {
    (0..USERS)
        .map(|u| row(1000 + u, Some(format!("user{u}"))))
        .collect()
}

/// One interval's rows: what the collectors send each second (memory every 10th).
fn interval_rows(i: i64) -> Vec<Rows> {
    let ts_us = 1_700_000_000_000_000 + i * 1_000_000;
    let cpu = per_user(|uid, user| CpuRow {
        ts_us,
        dur_ms: 1000,
        uid,
        user,
        cpu_ns: 12_345_678,
        cpu_pct: 1.2,
        source: Source::Ebpf,
    });
    let net_uid = per_user(|uid, user| NetUidRow {
        rx_bytes: 1500,
        tx_bytes: 900,
        ts_us,
        dur_ms: 1000,
        uid,
        user,
    });
    let net: Vec<NetRow> = (0..INTERFACES)
        .map(|n| NetRow {
            ts_us,
            dur_ms: 1000,
            iface: format!("eth{n}"),
            ifindex: n + 2,
            netns: Some(4026531840),
            rx_bytes: 150_000,
            tx_bytes: 90_000,
            rx_packets: 100,
            tx_packets: 60,
            source: Source::Ebpf,
            ..Default::default()
        })
        .collect();
    let mut rows = vec![Rows::from(cpu), Rows::from(net_uid), Rows::from(net)];
    if i % 10 == 0 {
        let mem = per_user(|uid, user| MemRow {
            ts_us,
            uid,
            user,
            nproc: 5,
            rss_bytes: 100 << 20,
            pss_bytes: None,
            swap_bytes: Some(0),
        });
        rows.push(Rows::from(mem));
    }
    rows
}

/// A GET of /metrics as Prometheus asks for it; the bytes of the answer.
fn scrape(port: u16) -> usize {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "scrape failed");
    answer.len()
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Run time of this process's `csm-metrics` thread (schedstat, ns).
fn server_thread_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "csm-metrics")
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn side_by_side(seconds: u64) {
    let csm = common::built_csm();
    let load = Load::start();
    let with = tempfile::tempdir().expect("temp dir");
    let without = tempfile::tempdir().expect("temp dir");
    let config = with.path().join("csm.toml");
    std::fs::write(
        &config,
        format!("[metrics]\nlisten = \"127.0.0.1:{DAEMON_PORT}\"\n"),
    )
    .unwrap();
    let daemon = |data: &Path, config: Option<&Path>| -> Child {
        let mut cmd = Command::new(&csm);
        cmd.args(["run", "--backend", "ebpf", "--interval", "1s", "--duration"])
            .arg(format!("{seconds}s"))
            .arg("--data-dir")
            .arg(data.join("data"));
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
        cmd.stderr(Stdio::null()).spawn().expect("start csm run")
    };
    let scraped = daemon(with.path(), Some(&config));
    let plain = daemon(without.path(), None);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let mut scrapes = 0;
    let (mut users, mut ifaces) = (0, 0);
    while started.elapsed() + Duration::from_secs(16) < Duration::from_secs(seconds) {
        let (u, i) = count_series(DAEMON_PORT);
        (users, ifaces) = (users.max(u), ifaces.max(i));
        scrapes += 1;
        std::thread::sleep(Duration::from_secs_f64(SCRAPE_EVERY_S));
    }
    let with_us = wait_cpu_us(scraped);
    let without_us = wait_cpu_us(plain);
    drop(load);
    let pct = |us: u64| us as f64 / 1e6 / seconds as f64 * 100.0;
    println!(
        "side by side, {seconds} s, {scrapes} scrapes (up to {users} users and {ifaces} interfaces in them):"
    );
    println!(
        "  daemon with the endpoint     {:>8.4} % of one core",
        pct(with_us)
    );
    println!(
        "  daemon without it            {:>8.4} % of one core",
        pct(without_us)
    );
    println!(
        "  difference                   {:>+8.4} % of one core",
        pct(with_us) - pct(without_us)
    );
}

/// The users and interfaces a scrape of the daemon has series of.
fn count_series(port: u16) -> (usize, usize) {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, 0);
    };
    let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let count = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
    (
        count("csm_user_cpu_seconds_total{"),
        count("csm_interface_receive_bytes_total{"),
    )
}

fn wait_cpu_us(child: Child) -> u64 {
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child with valid out-pointers.
    let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(rc, child.id() as i32, "wait4");
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

/// 20 uids waking up 5 times a second, and ping across two veth pairs in two namespaces
/// (4 interfaces with traffic); all stopped and removed on drop.
struct Load {
    children: Vec<Child>,
}

const NETNS: [&str; 2] = ["csmbenchma", "csmbenchmb"];

impl Load {
    fn start() -> Load {
        Load::remove_netns();
        for ns in NETNS {
            run("ip", &["netns", "add", ns]);
        }
        let mut children = Vec::new();
        for pair in 0..2 {
            let (a, b) = (format!("bma{pair}"), format!("bmb{pair}"));
            run(
                "ip",
                &[
                    "-n", NETNS[0], "link", "add", &a, "type", "veth", "peer", "name", &b, "netns",
                    NETNS[1],
                ],
            );
            run(
                "ip",
                &[
                    "-n",
                    NETNS[0],
                    "addr",
                    "add",
                    &format!("10.239.{pair}.1/24"),
                    "dev",
                    &a,
                ],
            );
            run(
                "ip",
                &[
                    "-n",
                    NETNS[1],
                    "addr",
                    "add",
                    &format!("10.239.{pair}.2/24"),
                    "dev",
                    &b,
                ],
            );
            run("ip", &["-n", NETNS[0], "link", "set", &a, "up"]);
            run("ip", &["-n", NETNS[1], "link", "set", &b, "up"]);
            children.push(
                Command::new("ip")
                    .args(["netns", "exec", NETNS[0], "ping", "-q", "-i", "0.2"])
                    .arg(format!("10.239.{pair}.2"))
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("ping"),
            );
        }
        for uid in FIRST_UID..FIRST_UID + USERS as u32 {
            children.push(
                Command::new("setpriv")
                    .arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .args(["--clear-groups", "sh", "-c", "while :; do sleep 0.2; done"])
                    .spawn()
                    .expect("setpriv"),
            );
        }
        Load { children }
    }

    fn remove_netns() {
        for ns in NETNS {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The sleepers' `sleep` children end within 0.2 s by themselves.
        Load::remove_netns();
    }
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().expect(program);
    assert!(status.success(), "{program} {args:?} failed");
}
