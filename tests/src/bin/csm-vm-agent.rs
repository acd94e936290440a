//! The end-to-end checks of csm inside a virtual machine (`cargo xtask vm`, `cargo xtask
//! test --kernels`): the VM's /init runs this as root once the file systems are mounted,
//! then powers off. It drives the real daemon (`/bin/csm`) with known work and compares
//! csm's Parquet, read back with the store's reader, against the kernel's own figures, as
//! the host's root tests do. The outcome goes to the serial console as a block the host
//! parses:
//!
//! ```text
//! CSMVM-BEGIN
//! CSMVM result <check> ok|FAIL <detail>
//! CSMVM metric <name> <value>
//! CSMVM info <text>
//! CSMVM-END ok|FAIL
//! ```
//!
//! Modes: `checks` (everything, every feature from the source `auto` picks), `fallback`
//! (a kernel booted with `lockdown=confidentiality`: `auto` falls back per feature and
//! says why), `proc` (the CPU workload under `--backend proc`: the fallback's own
//! accuracy on this kernel; also runs on the host),
//! `bench N` (the daemon's cost beside N sleeping processes), `run CMD...` (one command,
//! its output between the markers). /init sets `CSM_TEST_BIN_DIR=/bin`, where the harness finds
//! `csm`. Test users are plain uids (the initramfs's
//! /etc/passwd names them); no useradd in the VM.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use csm::store::{CpuRow, Event, MemRow, NetRow, NetUidRow, PingRow, Source, Table};
use csm_tests::net::{net_total, net_uid_totals, tcp_exchange_with, Traffic};
use csm_tests::{wait_cpu_ns, Daemon, DataDir, Ipv6, Link, Netns, OnDrop};

/// Test users (in the initramfs's /etc/passwd as csmvm<uid>).
const BURN_UID: u32 = 2001;
const FORK_UID: u32 = 2002;
const LO_UID: u32 = 2003;
const MEM_UID: u32 = 2004;
const VETH_UID: u32 = 2005;
const RESTART_UID: u32 = 2006;

const SHORT_PROCESSES: u32 = 2000;
const BURN: Duration = Duration::from_secs(10);
const TRANSFER_BYTES: usize = 20_000_000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("CSMVM-BEGIN");
    let ok = match args.first().map(String::as_str) {
        Some("checks") => checks(),
        Some("fallback") => fallback(),
        Some("proc") => proc_accuracy(),
        Some("bench") => bench(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1000)),
        Some("run") => run_command(&args[1..]),
        _ => {
            println!("CSMVM info usage: csm-vm-agent checks|fallback|proc|bench N|run CMD...");
            false
        }
    };
    println!("CSMVM-END {}", if ok { "ok" } else { "FAIL" });
}

/// Runs one named check, catching its panic: every check reports, one failure does not
/// hide the others.
fn check(name: &str, all_ok: &mut bool, f: impl FnOnce() -> String) {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(detail) => println!("CSMVM result {name} ok {detail}"),
        Err(panic) => {
            *all_ok = false;
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            println!(
                "CSMVM result {name} FAIL {}",
                text.replace('\n', " | ")
                    .chars()
                    .take(2000)
                    .collect::<String>()
            );
        }
    }
}

fn metric(name: &str, value: impl std::fmt::Display) {
    println!("CSMVM metric {name} {value}");
}

fn info(text: &str) {
    for line in text.lines() {
        println!("CSMVM info {line}");
    }
}

/// `csm check`'s lines (each feature, its source and why) as info lines; its exit status.
fn csm_check() -> bool {
    let out = Command::new("/bin/csm")
        .arg("check")
        .env("NO_COLOR", "1")
        .output()
        .expect("run csm check");
    info(&String::from_utf8_lossy(&out.stdout));
    info(&String::from_utf8_lossy(&out.stderr));
    out.status.success()
}

/// Percent error of `got` against `want`.
fn error_pct(got: i64, want: i64) -> f64 {
    (got - want) as f64 / want.max(1) as f64 * 100.0
}

fn assert_within_pct(what: &str, got: i64, want: i64, pct: f64) -> f64 {
    let err = error_pct(got, want);
    assert!(
        err.abs() <= pct,
        "{what}: csm {got}, kernel {want} ({err:+.3} %, limit ±{pct} %)"
    );
    err
}

/// `sh -c script` as `uid` (its own gid; std drops the supplementary groups).
fn as_user(uid: u32, script: &str) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script]).uid(uid).gid(uid);
    cmd
}

fn cpu_of(rows: &[CpuRow], uid: u32) -> i64 {
    rows.iter()
        .filter(|r| r.uid == uid as i64)
        .map(|r| r.cpu_ns)
        .sum()
}

fn daemon_builder(data: &DataDir, backend: &str) -> csm_tests::DaemonBuilder {
    let config = data.config(
        "[mem]\ninterval = \"1s\"\npss_interval = \"5s\"\n[ping]\ntargets = [\"127.0.0.1\"]\ninterval = \"2s\"\n",
    );
    Daemon::builder()
        .backend(backend)
        .data_dir(data)
        .arg("--config")
        .arg(config)
        .args(["--host", "vm", "--interval", "1s", "--flush-interval", "1s"])
        .on_drop(OnDrop::Kill)
}

/// Starts the daemon; its load time (start until it logs `csm collecting`) as a metric.
fn start_daemon(data: &DataDir, backend: &str) -> Daemon {
    let started = Instant::now();
    let mut daemon = daemon_builder(data, backend).spawn();
    daemon.wait_for_log("csm collecting", Duration::from_secs(120));
    metric("load_time_ms", started.elapsed().as_millis());
    daemon
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    kb_field(&status, "VmHWM:").unwrap_or(0)
}

fn kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Everything, from the sources `--backend auto` picks on this kernel.
fn checks() -> bool {
    let mut ok = true;
    check("csm-check", &mut ok, || {
        assert!(csm_check(), "csm check failed");
        "exit 0".into()
    });
    let data = DataDir::new();
    let daemon = match catch_unwind(AssertUnwindSafe(|| start_daemon(&data, "auto"))) {
        Ok(daemon) => daemon,
        Err(_) => {
            println!("CSMVM result daemon-start FAIL the daemon did not start");
            return false;
        }
    };
    info(&daemon.log_text());
    let holders = match catch_unwind(|| MemHolders::spawn(MEM_UID)) {
        Ok(h) => Some(h),
        Err(_) => {
            ok = false;
            println!("CSMVM result mem-holders FAIL csm-mem-hold did not start");
            None
        }
    };
    let mut cpu_truth = None;
    check("cpu-workload", &mut ok, || {
        cpu_truth = Some(cpu_workload());
        "burn and short processes ran".into()
    });
    let mut lo = None;
    check("lo-transfer", &mut ok, || {
        lo = Some(lo_transfer());
        "done".into()
    });
    let mut veth = None;
    check("veth-transfer", &mut ok, || {
        veth = Some(veth_transfer());
        "done".into()
    });
    let mem_truth = holders.as_ref().map(MemHolders::truth);
    // Let the intervals holding the end of the work close, and a few memory samples pass.
    std::thread::sleep(Duration::from_secs(4));
    let mem_until = now_us();

    // A kill -9 in the middle of a burn, then a restart: the pinned maps keep counting.
    let mut restart_truth = None;
    let mut restarted = None;
    check("kill9-restart", &mut ok, || {
        let burn = as_user(RESTART_UID, "while :; do :; done")
            .spawn()
            .expect("start the burn");
        std::thread::sleep(Duration::from_secs(2));
        info(&daemon.kill().join("\n"));
        std::thread::sleep(Duration::from_secs(2));
        let mut again = start_daemon(&data, "auto");
        std::thread::sleep(Duration::from_secs(2));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(burn.id() as i32, libc::SIGKILL) };
        restart_truth = Some(wait_cpu_ns(burn).1);
        std::thread::sleep(Duration::from_millis(2500));
        metric("peak_rss_kib", peak_rss_kib(again.pid()));
        info(&again.log_text());
        assert!(again.alive(), "the restarted daemon died");
        restarted = Some(again);
        "restarted over the pins".into()
    });
    if let Some(d) = restarted {
        d.stop();
    }
    drop(holders);

    let cpu = data.rows::<CpuRow>();
    let mut cpu_check = |name: &str, what: &str, uid: u32, truth_ns: u64, key: &str| {
        check(name, &mut ok, || {
            let err = assert_within_pct(what, cpu_of(&cpu, uid), truth_ns as i64, 2.0);
            metric(key, format!("{err:+.3}"));
            format!("{err:+.3} % of {:.3} s", truth_ns as f64 / 1e9)
        });
    };
    if let Some((burn_ns, forks_ns)) = cpu_truth {
        cpu_check("cpu-burn", "burn", BURN_UID, burn_ns, "cpu_burn_err_pct");
        cpu_check(
            "cpu-short-processes",
            "2,000 short processes",
            FORK_UID,
            forks_ns,
            "cpu_forks_err_pct",
        );
    }
    if let Some(truth) = restart_truth {
        cpu_check(
            "cpu-across-kill9",
            "burn across kill -9",
            RESTART_UID,
            truth,
            "cpu_restart_err_pct",
        );
    }
    metric("cpu_source", source_names(cpu.iter().map(|r| r.source)));
    let net = data.rows::<NetRow>();
    let net_uid = data.rows::<NetUidRow>();
    metric("net_source", source_names(net.iter().map(|r| r.source)));
    for (name, transfer) in [("lo", lo), ("veth", veth)] {
        let Some(t) = transfer else { continue };
        check(&format!("{name}-interface-bytes"), &mut ok, || {
            let got = net_total(&net, t.netns, t.ifindex);
            assert_eq!(
                (got.rx_bytes, got.tx_bytes),
                (t.iface.rx_bytes, t.iface.tx_bytes),
                "{name}: csm's rows {got:?}, /proc/net/dev {:?}",
                t.iface
            );
            metric(&format!("{name}_iface_err_bytes"), 0);
            format!("rx {} tx {} exact", got.rx_bytes, got.tx_bytes)
        });
        check(&format!("{name}-uid-bytes"), &mut ok, || {
            let totals = net_uid_totals(&net_uid);
            let (rx, tx) = totals
                .get(&(t.uid as i64))
                .copied()
                .unwrap_or_else(|| panic!("no net_uid rows for uid {}: {totals:?}", t.uid));
            assert!(
                tx >= TRANSFER_BYTES as i64,
                "tx {tx} below the payload {TRANSFER_BYTES}"
            );
            let rx_err = assert_within_pct("uid rx", rx, t.ip_bytes_rx, 1.0);
            let tx_err = assert_within_pct("uid tx", tx, t.ip_bytes_tx, 1.0);
            metric(&format!("{name}_uid_err_pct"), format!("{tx_err:+.3}"));
            format!("rx {rx_err:+.3} % tx {tx_err:+.3} %")
        });
    }
    if let Some(truth) = mem_truth {
        check("mem-rss", &mut ok, || mem_check(&data, truth, mem_until));
    }
    check("ping", &mut ok, || {
        let rows = data.rows::<PingRow>();
        let replied = rows
            .iter()
            .filter(|r| r.received > 0 && r.rtt_avg_ms.is_some_and(|v| v > 0.0))
            .count();
        assert!(
            replied >= 3 && rows.iter().all(|r| r.received == r.sent),
            "ping rows of 127.0.0.1: {rows:?}"
        );
        format!("{replied} of {} measurements replied", rows.len())
    });
    check("backend-event", &mut ok, || {
        let events = backend_events(&data);
        assert!(!events.is_empty(), "no backend event");
        for e in &events {
            metric("backend_event", e);
        }
        // Memory's source is in the event (the rows do not say).
        let iterator = events
            .iter()
            .any(|e| e.contains("mem rss/swap by task iterator"));
        metric("mem_source", if iterator { "ebpf-iter" } else { "proc" });
        events.join(" / ")
    });
    // Every kernel of the matrix can run every program: a fallback here is a regression.
    check("every-feature-on-ebpf", &mut ok, || {
        let events = backend_events(&data);
        for event in &events {
            for feature in [
                "ebpf (tp_btf sched_switch)",
                "net per interface (tp_btf netdev)",
                "net per uid (cgroup_skb)",
                "mem rss/swap by task iterator",
            ] {
                assert!(
                    event.contains(feature),
                    "{feature:?} missing from {event:?}"
                );
            }
        }
        "cpu, net, net per uid and memory from eBPF".into()
    });
    check("files-readable", &mut ok, || {
        let n = data.read_every_file().expect("read every file");
        format!("{n} files")
    });
    ok
}

/// A burner (one process, no forks) and 2,000 short processes at once, as two users;
/// the kernel's wait4 figures (ns) of each.
fn cpu_workload() -> (u64, u64) {
    let burn = as_user(BURN_UID, "while :; do :; done")
        .spawn()
        .expect("start the burn");
    let forks = as_user(
        FORK_UID,
        &format!("i=0; while [ $i -lt {SHORT_PROCESSES} ]; do /bin/true; i=$((i+1)); done"),
    )
    .spawn()
    .expect("start the short processes");
    let started = Instant::now();
    let (status, forks_ns) = wait_cpu_ns(forks);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the short processes failed: {status}"
    );
    metric(
        "short_processes_s",
        format!("{:.2}", started.elapsed().as_secs_f64()),
    );
    if let Some(left) = BURN.checked_sub(started.elapsed()) {
        std::thread::sleep(left);
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(burn.id() as i32, libc::SIGKILL) };
    let (_, burn_ns) = wait_cpu_ns(burn);
    (burn_ns, forks_ns)
}

/// A TCP transfer and what the kernel counted of it.
struct Transfer {
    uid: u32,
    netns: i64,
    ifindex: i64,
    /// The interface's counters (/proc/net/dev) after the transfer.
    iface: Traffic,
    /// IP-layer bytes of the uid's sockets, each way, as the interface counted them.
    ip_bytes_rx: i64,
    ip_bytes_tx: i64,
}

/// Sockets created by a thread whose fsuid is `uid` belong to that uid.
fn as_fsuid<T>(uid: u32, f: impl FnOnce() -> T) -> T {
    // SAFETY: setfsuid changes only this thread's file system uid (the raw system call).
    unsafe { libc::syscall(libc::SYS_setfsuid, uid) };
    let out = f();
    // SAFETY: as above, back to root.
    unsafe { libc::syscall(libc::SYS_setfsuid, 0) };
    out
}

/// `TRANSFER_BYTES` up and a quarter of that down over one connection; the accepted
/// socket is the user's too (a socket takes the fsuid of the thread that accepts it).
fn exchange(listener: TcpListener, client: TcpStream, uid: u32) {
    tcp_exchange_with(
        listener,
        client,
        TRANSFER_BYTES,
        TRANSFER_BYTES / 4,
        move |l| as_fsuid(uid, || l.accept().expect("accept").0),
    );
}

/// Both ends of a transfer over a fresh namespace's `lo` belong to one user: every byte
/// on that `lo` is the user's, each way.
fn lo_transfer() -> Transfer {
    // Kept until the daemon stopped: its inode must not be reused.
    let ns = Box::leak(Box::new(Netns::new("lo", Ipv6::Off)));
    let (listener, client) = ns.within(|| {
        as_fsuid(LO_UID, || {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
            (listener, client)
        })
    });
    exchange(listener, client, LO_UID);
    std::thread::sleep(Duration::from_millis(500));
    let iface = ns.traffic("lo");
    Transfer {
        uid: LO_UID,
        netns: ns.inode(),
        ifindex: ns.ifindex("lo"),
        iface,
        // On lo every packet leaves one socket and reaches the other: both the user's.
        ip_bytes_rx: iface.rx_bytes,
        ip_bytes_tx: iface.tx_bytes,
    }
}

/// A transfer over a veth pair between two namespaces, both sockets the user's: the
/// client end's counters are the ground truth (IPv6 off: no other packets but ARP).
fn veth_transfer() -> Transfer {
    let link = Box::leak(Box::new(Link::new("v", Ipv6::Off)));
    link.address("10.201.0.1/24", "10.201.0.2/24");
    let listener = link.server.within(|| {
        as_fsuid(VETH_UID, || {
            TcpListener::bind("10.201.0.2:5001").expect("bind in the server namespace")
        })
    });
    let client = link.client.within(|| {
        as_fsuid(VETH_UID, || {
            TcpStream::connect("10.201.0.2:5001").expect("connect over the veth pair")
        })
    });
    exchange(listener, client, VETH_UID);
    std::thread::sleep(Duration::from_millis(500));
    // Both ends down before the snapshot: the neighbour layer re-checks the peer's address
    // a few seconds after the exchange (one ARP request and reply, 42 bytes each way),
    // and one that came after /proc/net/dev was read but before csm's last interval made
    // the 6.1 VM's check fail by exactly one packet. A link that is down sends nothing.
    link.client.ip(&["link", "set", &link.client_if, "down"]);
    link.set_server_link(false);
    std::thread::sleep(Duration::from_millis(300));
    let iface = link.client.traffic(&link.client_if);
    Transfer {
        uid: VETH_UID,
        netns: link.client.inode(),
        ifindex: link.client.ifindex(&link.client_if),
        iface,
        // The user's sockets sent what the client end sent and the server end sent
        // (= what the client end received), and received the same.
        ip_bytes_rx: iface.rx_bytes + iface.tx_bytes,
        ip_bytes_tx: iface.tx_bytes + iface.rx_bytes,
    }
}

/// csm-mem-hold as a test user, stopped once ready so that its memory holds still.
struct MemHolders {
    parent: Child,
    pids: Vec<u32>,
}

impl MemHolders {
    fn spawn(uid: u32) -> MemHolders {
        let mut parent = Command::new("/bin/csm-mem-hold")
            .args(["16", "2"])
            .uid(uid)
            .gid(uid)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start csm-mem-hold");
        let stdout = parent.stdout.take().expect("piped");
        let pids: Vec<u32> = BufReader::new(stdout)
            .lines()
            .take(3)
            .map(|l| {
                let l = l.expect("read csm-mem-hold");
                l.strip_prefix("ready ")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("csm-mem-hold said {l:?}"))
            })
            .collect();
        for &pid in &pids {
            // SAFETY: our own helpers.
            unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        }
        std::thread::sleep(Duration::from_millis(300));
        MemHolders { parent, pids }
    }

    /// Sum of VmRSS and VmSwap (bytes) over the holders: what /proc/<pid>/status says.
    fn truth(&self) -> (i64, i64) {
        let mut sum = (0, 0);
        for pid in &self.pids {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
            sum.0 += kb_field(&status, "VmRSS:").expect("VmRSS") as i64 * 1024;
            sum.1 += kb_field(&status, "VmSwap:").expect("VmSwap") as i64 * 1024;
        }
        sum
    }
}

impl Drop for MemHolders {
    fn drop(&mut self) {
        for &pid in &self.pids {
            // SAFETY: our own helpers (SIGKILL ends stopped ones too).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = self.parent.wait();
    }
}

/// The memory rows of the holders' user while they were stopped equal /proc's figures.
fn mem_check(data: &DataDir, truth: (i64, i64), until_us: i64) -> String {
    let rows: Vec<MemRow> = data
        .rows::<MemRow>()
        .into_iter()
        .filter(|r| r.uid == MEM_UID as i64 && r.ts_us <= until_us)
        .collect();
    // The last rows: the holders were stopped well before them.
    let last: Vec<&MemRow> = rows.iter().rev().take(3).collect();
    assert!(last.len() == 3, "mem rows of uid {MEM_UID}: {rows:?}");
    let worst = last
        .iter()
        .map(|r| r.rss_bytes - truth.0)
        .max_by_key(|d| d.abs())
        .unwrap_or(0);
    metric("mem_rss_err_bytes", worst);
    for row in &last {
        assert_eq!(
            (row.nproc, row.rss_bytes),
            (3, truth.0),
            "nproc, RSS of {row:?} vs /proc/<pid>/status VmRSS {}",
            truth.0
        );
        if let Some(swap) = row.swap_bytes {
            assert_eq!(swap, truth.1, "swap of {row:?}");
        }
    }
    format!("rss {} bytes exact in the last 3 rows", truth.0)
}

fn now_us() -> i64 {
    csm_tests::now_us()
}

/// A kernel where eBPF is restricted (booted with `lockdown=confidentiality`, which
/// refuses kernel-memory reads from BPF): `auto` keeps what still loads, falls back per
/// feature, says which source each feature has and why in `csm check` and in its
/// `backend` event, and still measures.
fn fallback() -> bool {
    let mut ok = true;
    check("csm-check", &mut ok, || {
        csm_check();
        "listed".into()
    });
    let data = DataDir::new();
    let daemon = start_daemon(&data, "auto");
    let mut burn_ns = 0;
    check("cpu-workload", &mut ok, || {
        // `csm collecting` comes before the CPU collector's first sample, and what runs
        // before that sample is not counted (by design: it is no interval's). The burn
        // used to start on that line: on a loaded host the first sample came up to
        // 0.7 s later, and that much of the 5 s burn was missing (-14.7 %, which looked
        // like a lockdown effect). A CPU file on disk means a sample and an interval.
        csm_tests::wait_until(
            "the daemon's first CPU rows",
            Duration::from_secs(60),
            || data.has(Table::Cpu),
        );
        info(&format!("burn starts at {} us", now_us()));
        let burn = as_user(BURN_UID, "while :; do :; done")
            .spawn()
            .expect("start the burn");
        std::thread::sleep(Duration::from_secs(5));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(burn.id() as i32, libc::SIGKILL) };
        burn_ns = wait_cpu_ns(burn).1;
        info(&format!("burn ended at {} us: {burn_ns} ns", now_us()));
        std::thread::sleep(Duration::from_millis(2500));
        "burned".into()
    });
    info(&daemon.stop().join("\n"));
    let events: Vec<String> = data
        .events()
        .into_iter()
        .filter_map(|(_, e)| match e {
            Event::Backend(t) => Some(t),
            _ => None,
        })
        .collect();
    let event = events.first().cloned().unwrap_or_default();
    metric("backend_event", &event);
    let iterator = event.contains("mem rss/swap by task iterator");
    metric("mem_source", if iterator { "ebpf-iter" } else { "proc" });
    check("backend-event-says-why", &mut ok, || {
        assert!(!event.is_empty(), "no backend event");
        // Every feature on /proc names its reason: `… from /proc (…)` or `proc (…)`.
        for part in event.split("; ") {
            if part.contains("proc") {
                assert!(part.contains('('), "no reason in {part:?} of {event:?}");
            }
        }
        event.clone()
    });
    check("cpu", &mut ok, || {
        let cpu = data.rows::<CpuRow>();
        for row in cpu.iter().filter(|r| r.uid == BURN_UID as i64) {
            info(&format!(
                "burn row ts {} dur {} ms cpu {} ns {:?}",
                row.ts_us, row.dur_ms, row.cpu_ns, row.source
            ));
        }
        let proc_rows = cpu.iter().all(|r| r.source == Source::Proc);
        let ebpf_rows = cpu.iter().all(|r| r.source == Source::Ebpf);
        metric("cpu_source", if proc_rows { "proc" } else { "ebpf" });
        assert!(proc_rows || ebpf_rows, "rows of both sources");
        assert_eq!(
            proc_rows,
            event.starts_with("proc"),
            "the rows' source does not match the event {event:?}"
        );
        // The /proc bound of the README (the blind spot between the last sample and
        // the exit: up to one interval of a killed burn).
        let bound = if proc_rows { 20.0 } else { 2.0 };
        let err = error_pct(cpu_of(&cpu, BURN_UID), burn_ns as i64);
        metric("cpu_burn_err_pct", format!("{err:+.3}"));
        assert!(
            err.abs() <= bound,
            "the burn is {err:+.2} % off (bound {bound} %)"
        );
        format!("{err:+.3} %")
    });
    ok
}

/// The /proc fallback's CPU accuracy (`--backend proc`): the burn and the 2,000 short
/// processes of `checks`, against wait4. Both workloads are reaped by this root process,
/// so the time between a process's last sample and its exit (up to an interval) is
/// charged to its own uid only through the kernel's exit records (taskstats).
fn proc_accuracy() -> bool {
    let mut ok = true;
    let data = DataDir::new();
    let daemon = start_daemon(&data, "proc");
    // What runs before the first CPU sample is no interval's (see `fallback`).
    csm_tests::wait_until(
        "the daemon's first CPU rows",
        Duration::from_secs(60),
        || data.has(Table::Cpu),
    );
    info(&daemon.log_text());
    let mut truth = None;
    check("cpu-workload", &mut ok, || {
        truth = Some(cpu_workload());
        "burn and short processes ran".into()
    });
    std::thread::sleep(Duration::from_millis(2500));
    info(&daemon.stop().join("\n"));
    let cpu = data.rows::<CpuRow>();
    let Some((burn_ns, forks_ns)) = truth else {
        return false;
    };
    for (name, uid, want, key) in [
        ("proc-cpu-burn", BURN_UID, burn_ns, "proc_burn_err_pct"),
        (
            "proc-cpu-short-processes",
            FORK_UID,
            forks_ns,
            "proc_forks_err_pct",
        ),
    ] {
        check(name, &mut ok, || {
            let err = assert_within_pct(name, cpu_of(&cpu, uid), want as i64, 2.0);
            metric(key, format!("{err:+.3}"));
            format!("{err:+.3} % of {:.3} s", want as f64 / 1e9)
        });
    }
    ok
}

/// The daemon's own CPU use beside `n` sleeping processes, at the defaults, for 60 s.
fn bench(n: usize) -> bool {
    let mut sleepers = Vec::new();
    for _ in 0..n {
        // SAFETY: the child only pauses until killed.
        match unsafe { libc::fork() } {
            0 => loop {
                // SAFETY: pause has no preconditions.
                unsafe { libc::pause() };
            },
            -1 => {
                println!(
                    "CSMVM result bench FAIL fork: {}",
                    std::io::Error::last_os_error()
                );
                return false;
            }
            pid => sleepers.push(pid),
        }
    }
    let data = DataDir::new();
    let daemon = Daemon::builder()
        .backend("auto")
        .data_dir(&data)
        .args(["--host", "vm"])
        .start();
    let pid = daemon.pid();
    let window = Duration::from_secs(60);
    std::thread::sleep(Duration::from_secs(5));
    let before = cpu_ticks(pid);
    let started = Instant::now();
    std::thread::sleep(window);
    let used = cpu_ticks(pid) - before;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let share = used as f64 / hz / started.elapsed().as_secs_f64() * 100.0;
    metric("bench_processes", n);
    metric("bench_core_pct", format!("{share:.3}"));
    daemon.stop();
    for pid in sleepers {
        // SAFETY: our own children.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
    println!("CSMVM result bench ok {share:.3} % of a core beside {n} processes");
    true
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat; `after` starts at field 3.
    let get = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

fn run_command(cmd: &[String]) -> bool {
    let Some((program, args)) = cmd.split_first() else {
        println!("CSMVM info run: no command");
        return false;
    };
    match Command::new(program)
        .args(args)
        .env("NO_COLOR", "1")
        .status()
    {
        Ok(status) => status.success(),
        Err(err) => {
            println!("CSMVM info cannot run {program}: {err}");
            false
        }
    }
}

/// The distinct sources of a table's rows as the `source` column writes them (`ebpf`,
/// `ebpf+proc` when both).
fn source_names(sources: impl Iterator<Item = Source>) -> String {
    let names: std::collections::BTreeSet<&str> = sources.map(Source::as_str).collect();
    names.into_iter().collect::<Vec<_>>().join("+")
}

/// The details of the daemon's `backend` events: which source each feature uses, and why.
fn backend_events(data: &DataDir) -> Vec<String> {
    data.events()
        .into_iter()
        .filter_map(|(_, e)| match e {
            Event::Backend(text) => Some(text),
            _ => None,
        })
        .collect()
}
