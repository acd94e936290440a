//! Issue 21 as attacks: what an unprivileged user creates in bulk inside its own user +
//! network namespaces (`unshare -Urn`, no privilege needed) must not blind, stall or
//! falsify root's daemon. Each test runs the attack as a throw-away user while root's
//! daemon collects, creates root's own veth pair DURING the attack, and checks:
//!
//! - root's veth has exact `net` rows (packets and bytes against /proc/net/dev of its
//!   namespace);
//! - intervals stay within 10 % of 1 s (`ts` and `dur_ms` of the `cpu` and `net` rows);
//! - the daemon stays under 64 MB peak RSS (VmHWM) and 5 % of a core (its own
//!   /proc/<pid>/stat times over the attack);
//! - the budget's events (`net_folded`, `net_dev_overflow`) name the user.
//!
//! Sized for CI (each under about a minute); `CSM_FLOODS_FULL=1` (what `cargo xtask bench
//! security` sets) runs the issue's full counts. Run as root:
//! `cargo test --release -p csm-tests --test floods -- --test-threads=1 --nocapture`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use csm::store::{CpuRow, Event, NetRow};
use std::net::{TcpListener, TcpStream};

use csm_tests::net::{net_total, tcp_exchange, Traffic};
use csm_tests::{require_root, Daemon, DataDir, Ipv6, Link, TestUser};

/// The acceptance bounds of issue 21.
const MAX_HWM_KIB: u64 = 64 * 1024;
const MAX_CORE_PCT: f64 = 5.0;
const INTERVAL_MS: i64 = 1000;
const INTERVAL_SLACK_MS: i64 = 100;

fn full() -> bool {
    std::env::var_os("CSM_FLOODS_FULL").is_some()
}

/// Sets up, in the attacker's own `unshare -Urn`, the namespaces or interfaces of one
/// attack, rests 2 s, prints `ready` with the kernel's counters summed over every
/// interface it made (`rx_bytes rx_packets tx_bytes tx_packets`), keeps them busy until
/// its stdin closes, then prints the same sums (`total …`) and the inodes of its
/// namespaces (`ns <inode>…`).
const ATTACKER: &str = r#"
import ctypes, fcntl, os, select, socket, struct, subprocess, sys, time
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
mode, count = sys.argv[1], int(sys.argv[2])

def check(rc, what):
    if rc != 0:
        raise OSError(ctypes.get_errno(), what)

def lo_up():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ifr = struct.pack('16sH14x', b'lo', 0)
    flags = struct.unpack('16sH14x', fcntl.ioctl(s, 0x8913, ifr))[1]
    fcntl.ioctl(s, 0x8914, struct.pack('16sH14x', b'lo', flags | 1))
    return s

def poke(s):
    s.sendto(b'x', ('127.0.0.1', 9))

def stdin_closed(timeout):
    return bool(select.select([sys.stdin], [], [], timeout)[0])

def counters_here(names):
    total = [0, 0, 0, 0]
    for line in open('/proc/thread-self/net/dev').read().splitlines()[2:]:
        name, rest = line.split(':', 1)
        if name.strip() in names:
            f = [int(x) for x in rest.split()]
            for i, v in enumerate((f[0], f[1], f[8], f[9])):
                total[i] += v
    return total

def totals(ns_fds, names):
    total = [0, 0, 0, 0]
    for fd in ns_fds:
        check(libc.setns(fd, CLONE_NEWNET), 'setns')
        for i, v in enumerate(counters_here(names)):
            total[i] += v
    return total

def ready(ns_fds, names):
    # Quiet for 2 s first: rows that end after this moment hold only what follows.
    time.sleep(2)
    print('ready', *totals(ns_fds, names), flush=True)

def report(ns_fds, names):
    print('total', *totals(ns_fds, names), flush=True)
    print('ns', *[os.fstat(fd).st_ino for fd in ns_fds], flush=True)

if mode == 'namespaces':
    # Attack 1: `count` namespaces kept alive, each lo carrying a packet every round.
    socks, fds = [], []
    for i in range(count):
        check(libc.unshare(CLONE_NEWNET), 'unshare')
        s = lo_up(); poke(s); socks.append(s)
        fds.append(os.open('/proc/thread-self/ns/net', os.O_RDONLY))
    ready(fds, {'lo'})
    while not stdin_closed(0.3):
        for s in socks:
            poke(s)
    time.sleep(0.3)
    report(fds, {'lo'})
elif mode == 'veths':
    # Attack 2: `count` veth pairs in one namespace, flooded through AF_PACKET. No
    # IPv6: its own packets at odd moments would come after the report.
    for conf in ('all', 'default'):
        open('/proc/sys/net/ipv6/conf/%s/disable_ipv6' % conf, 'w').write('1')
    batch = ''.join('link add fv%da type veth peer name fv%db\n' % (i, i) for i in range(count))
    subprocess.run(['ip', '-batch', '-'], input=batch.encode(), check=True)
    ups = ''.join('link set fv%da up\nlink set fv%db up\n' % (i, i) for i in range(count))
    subprocess.run(['ip', '-batch', '-'], input=ups.encode(), check=True)
    socks = []
    for i in range(count):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind(('fv%da' % i, 0))
        socks.append(s)
    frame = b'\xff' * 6 + b'\x02' + b'\x00' * 5 + b'\x88\xb5' + b'\x00' * 46
    names = {'fv%d%s' % (i, e) for i in range(count) for e in 'ab'} | {'lo'}
    fds = [os.open('/proc/thread-self/ns/net', os.O_RDONLY)]
    ready(fds, names)
    while not stdin_closed(0):
        for s in socks:
            try:
                s.send(frame)
            except OSError:
                pass
    time.sleep(0.3)
    report(fds, names)
elif mode == 'churn':
    # Attack 3: `count` sleeping processes, and namespaces created and destroyed in a
    # loop, each with one packet on its lo.
    sleepers = [subprocess.Popen(['sleep', '600']) for _ in range(count)]
    print('ready 0 0 0 0', flush=True)
    made = 0
    while not stdin_closed(0):
        check(libc.unshare(CLONE_NEWNET), 'unshare')
        s = lo_up(); poke(s); s.close()
        made += 1
    for p in sleepers:
        p.kill()
    print('total 0 0 0 0', flush=True)
    print('ns', flush=True)
    print('made', made, file=sys.stderr, flush=True)
"#;

/// The attacker's process group, killed on drop (even when the test fails).
struct Attack {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// The kernel's counters at `ready`, and when the test read that line.
    baseline: Traffic,
    ready_us: i64,
}

/// What the attacker reported at its end.
struct Report {
    /// Its traffic from `ready` on, as the kernel counts it.
    kernel: Traffic,
    namespaces: BTreeSet<i64>,
    ready_us: i64,
}

/// `rx_bytes rx_packets tx_bytes tx_packets` after `prefix`.
fn traffic_after(line: &str, prefix: &str) -> Traffic {
    let f: Vec<i64> = line
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("not {prefix}…: {line}"))
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    Traffic {
        rx_bytes: f[0],
        rx_packets: f[1],
        tx_bytes: f[2],
        tx_packets: f[3],
    }
}

impl Attack {
    fn start(user: &TestUser, mode: &str, count: usize) -> Attack {
        let mut child = user
            .shell("exec unshare -Urn python3 -c \"$0\" \"$@\"")
            .args([ATTACKER, mode, &count.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start the attacker");
        let lines = read_lines(child.stdout.take().expect("piped stdout"));
        let started = Instant::now();
        let ready = lines
            .recv_timeout(Duration::from_secs(240))
            .expect("the attacker did not start");
        let baseline = traffic_after(&ready, "ready ");
        eprintln!("{mode} {count}: ready in {:?}", started.elapsed());
        Attack {
            child,
            lines,
            baseline,
            ready_us: csm_tests::now_us(),
        }
    }

    fn line(&mut self, timeout: Duration) -> String {
        self.lines
            .recv_timeout(timeout)
            .unwrap_or_else(|_| panic!("no line from the attacker in {timeout:?}"))
    }

    /// Stops the traffic and reads the kernel's counters of everything it made.
    fn finish(mut self) -> Report {
        drop(self.child.stdin.take());
        let total = traffic_after(&self.line(Duration::from_secs(120)), "total ");
        let ns = self.line(Duration::from_secs(60));
        let namespaces = ns
            .strip_prefix("ns")
            .unwrap_or_else(|| panic!("not a namespace list: {ns}"))
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        Report {
            kernel: total - self.baseline,
            namespaces,
            ready_us: self.ready_us,
        }
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        // SAFETY: kill has no memory preconditions; the group is the attacker's own.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn read_lines(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (send, recv) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    recv
}

/// User + system ticks of a process (`/proc/<pid>/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in status")
}

/// The daemon's share of one core between two moments.
struct CpuMeter {
    pid: u32,
    ticks: u64,
    at: Instant,
}

impl CpuMeter {
    fn start(pid: u32) -> CpuMeter {
        CpuMeter {
            pid,
            ticks: cpu_ticks(pid),
            at: Instant::now(),
        }
    }

    fn pct(&self) -> f64 {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let used = (cpu_ticks(self.pid) - self.ticks) as f64 / hz;
        100.0 * used / self.at.elapsed().as_secs_f64()
    }
}

/// `csm run` every second into `data` (in the host's namespace).
fn collect(data: &DataDir) -> Daemon {
    let daemon = Daemon::builder()
        .data_dir(data)
        .args(["--interval", "1s", "--duration", "900s"])
        .start();
    thread::sleep(Duration::from_millis(500));
    daemon
}

/// Root's veth pair, made during the attack, carries known traffic; its kernel
/// counters before it (read them after: the connection's last packets come later).
fn roots_veth_during_attack(tag: &str, net: &str) -> (Link, Traffic) {
    let link = Link::new(tag, Ipv6::Off);
    link.address(&format!("{net}.1/24"), &format!("{net}.2/24"));
    let before = link.client.traffic(&link.client_if);
    let addr = format!("{net}.2:5301");
    let server_addr = addr.clone();
    let listener = link
        .server
        .within(move || TcpListener::bind(server_addr).expect("bind"));
    let client = link
        .client
        .within(move || TcpStream::connect(addr).expect("connect"));
    tcp_exchange(listener, client, 300_000, 100_000);
    (link, before)
}

/// Every acceptance check of one attack, all measured and printed before any fails (the
/// figures of a run on main are the "before" of the report).
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, ok: bool, failure: impl FnOnce() -> String) {
        if !ok {
            self.0.push(failure());
        }
    }

    fn assert_all(self) {
        assert!(self.0.is_empty(), "failed:\n{}", self.0.join("\n"));
    }
}

fn check_roots_veth(checks: &mut Checks, rows: &[NetRow], link: &Link, kernel: Traffic) {
    let csm = net_total(
        rows,
        link.client.inode(),
        link.client.ifindex(&link.client_if),
    );
    eprintln!("root's veth: csm {csm:?}\nroot's veth: kernel {kernel:?}");
    checks.check(kernel.tx_packets >= 20, || {
        format!("the ping did not go through: {kernel:?}")
    });
    checks.check(csm == kernel, || {
        format!("root's veth made during the attack: csm {csm:?}, kernel {kernel:?}")
    });
}

/// Every interval's `ts` step and `dur_ms` within 10 % of 1 s (but the first, which
/// starts at the daemon's first sample, and the last, cut by the stop).
fn check_intervals(checks: &mut Checks, data: &DataDir, net: &[NetRow]) {
    let cpu: Vec<(i64, i64)> = data
        .rows::<CpuRow>()
        .iter()
        .map(|r| (r.ts_us, r.dur_ms))
        .collect();
    let net: Vec<(i64, i64)> = net.iter().map(|r| (r.ts_us, r.dur_ms)).collect();
    let mut stamps = BTreeSet::new();
    let mut durs = Vec::new();
    for table in [&cpu, &net] {
        let own: BTreeSet<i64> = table.iter().map(|(ts, _)| *ts).collect();
        let (first, last) = (own.first().copied(), own.last().copied());
        durs.extend(
            table
                .iter()
                .filter(|(ts, _)| Some(*ts) != first && Some(*ts) != last)
                .map(|(_, dur)| *dur),
        );
        stamps.extend(own);
    }
    let stamps: Vec<i64> = stamps.into_iter().collect();
    let worst_step = stamps
        .windows(2)
        .map(|w| (w[1] - w[0]) / 1000)
        .max()
        .unwrap_or(0);
    let min_dur = durs.iter().copied().min().unwrap_or(0);
    let max_dur = durs.iter().copied().max().unwrap_or(0);
    eprintln!(
        "intervals: {} stamps, longest step {worst_step} ms, dur_ms {min_dur}..={max_dur}",
        stamps.len()
    );
    let bounds = INTERVAL_MS - INTERVAL_SLACK_MS..=INTERVAL_MS + INTERVAL_SLACK_MS;
    checks.check(stamps.len() >= 5, || {
        format!("too few intervals: {}", stamps.len())
    });
    checks.check(worst_step <= *bounds.end(), || {
        format!("an interval stretched to {worst_step} ms")
    });
    checks.check(
        bounds.contains(&min_dur) && bounds.contains(&max_dur),
        || format!("dur_ms {min_dur}..={max_dur}"),
    );
}

/// The daemon's share of a core over the attack and its peak RSS so far.
fn check_cost(checks: &mut Checks, what: &str, pid: u32, meter: &CpuMeter) {
    let (pct, hwm) = (meter.pct(), vm_hwm_kib(pid));
    eprintln!("{what}: daemon {pct:.2} % of a core, VmHWM {hwm} KiB");
    checks.check(hwm < MAX_HWM_KIB, || {
        format!("{what}: daemon peak RSS {hwm} KiB")
    });
    checks.check(pct < MAX_CORE_PCT, || {
        format!("{what}: daemon used {pct:.2} % of a core")
    });
}

/// Sum of the rows of the attacker that end after it said `ready` (the inode of a
/// namespace is reused once it is gone: before the attacker made them, others may have
/// had them): its namespaces' interfaces and its folded and overflow rows.
fn attackers_rows(rows: &[NetRow], report: &Report, uid: u32) -> Traffic {
    let mine = |r: &&NetRow| {
        r.ts_us > report.ready_us
            && (r.netns.is_some_and(|ns| report.namespaces.contains(&ns))
                || r.iface == format!("(other uid={uid})")
                || r.iface == format!("(overflow uid={uid})"))
    };
    let sum = |rows: &mut dyn Iterator<Item = &NetRow>| {
        rows.fold(Traffic::default(), |sum, r| sum + Traffic::of(r))
    };
    for label in ["(other uid=", "(overflow uid="] {
        let part = sum(&mut rows.iter().filter(|r| r.iface.starts_with(label)));
        eprintln!("attacker's rows {label}…): {part:?}");
    }
    sum(&mut rows.iter().filter(mine))
}

/// The budget's events naming `uid`: (`net_folded`, `net_dev_overflow`).
fn events_for(data: &DataDir, uid: u32) -> (usize, usize) {
    let events = data.events();
    let count = |pick: fn(&Event) -> Option<i64>| {
        events
            .iter()
            .filter(|(_, e)| pick(e) == Some(uid as i64))
            .count()
    };
    let folded = count(|e| match e {
        Event::NetFolded { uid, .. } => Some(*uid),
        _ => None,
    });
    let overflow = count(|e| match e {
        Event::NetDevOverflow { uid, .. } => Some(*uid),
        _ => None,
    });
    eprintln!("events for uid {uid}: net_folded {folded}, net_dev_overflow {overflow}");
    (folded, overflow)
}

/// The most `net` rows written for one interval.
fn rows_per_interval(rows: &[NetRow]) -> usize {
    let mut counts = std::collections::BTreeMap::<i64, usize>::new();
    for row in rows {
        *counts.entry(row.ts_us).or_default() += 1;
    }
    let most = counts.values().copied().max().unwrap_or(0);
    eprintln!("at most {most} net rows in one interval");
    most
}

/// The attacker's own rows add up to its kernel counters, and one interval's rows stay
/// few.
fn check_attackers_rows(checks: &mut Checks, rows: &[NetRow], report: &Report, uid: u32) {
    let csm = attackers_rows(rows, report, uid);
    eprintln!(
        "attacker: csm {csm:?}\nattacker: kernel {:?}",
        report.kernel
    );
    checks.check(csm == report.kernel, || {
        format!(
            "the attacker's traffic: csm {csm:?}, kernel {:?}",
            report.kernel
        )
    });
    let most = rows_per_interval(rows);
    checks.check(most <= 128, || format!("{most} net rows in one interval"));
}

/// One attack from start to the daemon's stop, and the checks every attack shares.
fn run_attack(
    tag: &str,
    net: &str,
    mode: &str,
    count: usize,
    settle: Duration,
) -> (TestUser, DataDir, Report, Vec<NetRow>, Checks) {
    let user = TestUser::create(tag);
    let data = DataDir::new();
    let mut checks = Checks::default();
    let mut daemon = collect(&data);
    let pid = daemon.pid();
    let attack = Attack::start(&user, mode, count);
    let meter = CpuMeter::start(pid);
    thread::sleep(Duration::from_secs(3));
    let (link, before) = roots_veth_during_attack(tag, net);
    thread::sleep(settle);
    check_cost(&mut checks, mode, pid, &meter);
    let report = attack.finish();
    thread::sleep(Duration::from_millis(2500));
    let kernel = link.client.traffic(&link.client_if) - before;
    checks.check(daemon.alive(), || "the daemon died".into());
    daemon.stop();
    let rows = data.rows::<NetRow>();
    check_roots_veth(&mut checks, &rows, &link, kernel);
    check_intervals(&mut checks, &data, &rows);
    (user, data, report, rows, checks)
}

fn settle() -> Duration {
    Duration::from_secs(if full() { 30 } else { 6 })
}

/// Attack 1: more namespaces than the interface map holds, each `lo` busy. Root's veth
/// keeps its exact rows (root's namespaces have their own map), the user's traffic is
/// all there (its overflow counted per owner), and the overflow is told every interval.
#[test]
fn a_users_namespaces_cannot_exhaust_roots_interface_map() {
    require_root();
    let namespaces = 8_300; // more than MAX_IFACES (8,192), in CI as in the issue
    let (user, data, report, rows, mut checks) =
        run_attack("fm", "10.241.0", "namespaces", namespaces, settle());
    let (_, overflow) = events_for(&data, user.uid);
    checks.check(overflow > 0, || {
        "no net_dev_overflow event for the user".into()
    });
    checks.check(report.namespaces.len() == namespaces, || {
        format!("{} namespaces reported", report.namespaces.len())
    });
    check_attackers_rows(&mut checks, &rows, &report, user.uid);
    checks.assert_all();
}

/// Attack 2: hundreds of veth pairs in a user's namespace, flooded with raw frames. The
/// rows of one interval stay bounded (the busiest per owner, the rest in one
/// `(other uid=N)` row), every byte is in them, and root's veth keeps its exact rows.
#[test]
fn a_users_veth_flood_costs_that_user_rows_not_root() {
    require_root();
    let pairs = if full() { 4_096 } else { 256 };
    let (user, data, report, rows, mut checks) =
        run_attack("fv", "10.242.0", "veths", pairs, settle());
    let (folded, _) = events_for(&data, user.uid);
    checks.check(folded > 0, || "no net_folded event for the user".into());
    check_attackers_rows(&mut checks, &rows, &report, user.uid);
    checks.assert_all();
}

/// Attack 3: thousands of sleeping processes and namespaces created and destroyed in a
/// loop. Naming them costs no walk of /proc: the daemon's CPU and intervals stay in
/// bounds and root's veth keeps its exact rows.
#[test]
fn namespace_churn_beside_many_processes_does_not_stall_the_daemon() {
    require_root();
    let sleepers = if full() { 5_000 } else { 1_000 };
    let (user, data, _, rows, mut checks) =
        run_attack("fc", "10.243.0", "churn", sleepers, settle());
    let (folded, _) = events_for(&data, user.uid);
    checks.check(folded > 0, || {
        "the churn's namespaces were not folded".into()
    });
    rows_per_interval(&rows);
    checks.assert_all();
}
