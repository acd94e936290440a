//! Network accounting end to end, as root: the real `csm` binary, real namespaces and
//! veth pairs, kernel counters (`/proc/net/dev`) as ground truth, Parquet read back.
//!
//! Every test traffics only on loopback or inside namespaces it creates.

use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use csm_tests::net::*;

/// Loopback has index 1 in every namespace.
const LO: i64 = 1;

fn tcp_in(server_ns: &Netns, client_ns: &Netns, addr: &'static str, up: usize, down: usize) {
    let listener = server_ns.within(move || TcpListener::bind(addr).expect("bind"));
    let client = client_ns.within(move || TcpStream::connect(addr).expect("connect"));
    tcp_exchange(listener, client, up, down);
}

fn assert_matches(what: &str, csm: Counters, kernel: Counters) {
    eprintln!("{what}: csm {csm:?}\n{what}: kernel {kernel:?}");
    assert_eq!(csm.rx_packets, kernel.rx_packets, "{what} rx_packets");
    assert_eq!(csm.tx_packets, kernel.tx_packets, "{what} tx_packets");
    assert_close(
        &format!("{what} rx_bytes"),
        csm.rx_bytes,
        kernel.rx_bytes,
        0.5,
    );
    assert_close(
        &format!("{what} tx_bytes"),
        csm.tx_bytes,
        kernel.tx_bytes,
        0.5,
    );
}

/// Two new namespaces joined by a veth pair, up, with `<net>.1/24` on the first one's end
/// and `<net>.2/24` on the second's: (first, second, first's end, second's end).
fn veth_pair(tag: &str, net: &str, no_ipv6: bool) -> (Netns, Netns, String, String) {
    let a = Netns::new(&unique(&format!("{tag}ns"), "a"));
    let b = Netns::new(&unique(&format!("{tag}ns"), "b"));
    if no_ipv6 {
        for ns in [&a, &b] {
            ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        }
    }
    let (va, vb) = (unique(tag, "a"), unique(tag, "b"));
    run(
        "ip",
        &[
            "-n", &a.name, "link", "add", &va, "type", "veth", "peer", "name", &vb, "netns",
            &b.name,
        ],
    );
    a.exec(&["ip", "addr", "add", &format!("{net}.1/24"), "dev", &va]);
    b.exec(&["ip", "addr", "add", &format!("{net}.2/24"), "dev", &vb]);
    a.exec(&["ip", "link", "set", &va, "up"]);
    b.exec(&["ip", "link", "set", &vb, "up"]);
    (a, b, va, vb)
}

/// Two namespaces joined by a veth pair. csm runs inside the first (its "host"), so
/// that its `lo` and veth see only this test's traffic and the kernel counters are exact
/// ground truth; the second namespace's `lo` carries more traffic that must stay apart.
#[test]
fn veth_and_lo_match_kernel_counters() {
    require_root();
    let (a, b, va, _) = veth_pair("csmv", "10.231.0", false);

    let daemon = Daemon::start(Some(&a), &[]);
    let (veth0, lo_a0, lo_b0) = (a.counters(&va), a.counters("lo"), b.counters("lo"));

    tcp_in(&b, &a, "10.231.0.2:5201", 3_000_000, 1_000_000);
    a.exec(&[
        "ping",
        "-q",
        "-c",
        "10",
        "-i",
        "0.05",
        "-s",
        "1200",
        "10.231.0.2",
    ]);
    b.exec(&["ping", "-q", "-c", "5", "-i", "0.05", "10.231.0.1"]);
    tcp_in(&a, &a, "127.0.0.1:5202", 2_000_000, 500_000);
    a.exec(&["ping", "-q", "-c", "5", "-i", "0.05", "127.0.0.1"]);
    tcp_in(&b, &b, "127.0.0.1:5203", 5_000_000, 5_000_000);
    b.exec(&["ping", "-q", "-c", "5", "-i", "0.05", "127.0.0.1"]);
    thread::sleep(Duration::from_millis(300));
    let (veth1, lo_a1, lo_b1) = (a.counters(&va), a.counters("lo"), b.counters("lo"));
    let data = daemon.stop();

    let rows = net_rows(&data);
    let (ns_a, ns_b) = (a.inode(), b.inode());
    let veth_index = a.ifindex(&va);
    assert_matches("veth", net_total(&rows, ns_a, veth_index), veth1 - veth0);
    assert_matches(
        "lo of csm's namespace",
        net_total(&rows, ns_a, LO),
        lo_a1 - lo_a0,
    );
    assert_matches(
        "lo of the other namespace",
        net_total(&rows, ns_b, LO),
        lo_b1 - lo_b0,
    );
    for row in rows
        .iter()
        .filter(|r| r.netns == Some(ns_a) && r.ifindex == veth_index)
    {
        assert_eq!(row.iface, va, "veth rows carry its name");
    }
    for row in rows
        .iter()
        .filter(|r| r.netns == Some(ns_b) && r.ifindex == LO)
    {
        assert_eq!(
            row.iface, "lo",
            "the other namespace's lo is named through /run/netns"
        );
    }
}

/// Reads until EOF in large chunks: a slow reader shrinks the window and the sender's
/// segments, and more segments mean more header bytes per payload byte.
fn drain(mut conn: TcpStream) {
    use std::io::Read;
    let mut buf = vec![0u8; 1 << 20];
    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
}

/// Runs the sender as `user` inside `ns` (nsenter sets the uid after entering).
fn send_as(user: &TestUser, ns: &Netns, addr: &str, bytes: usize) -> std::process::Child {
    Command::new("nsenter")
        .arg(format!("--net={}", ns.path().display()))
        .args(["-S", &user.uid.to_string(), "-G", "65534", "--"])
        .arg(env!("CARGO_BIN_EXE_csm-net-send"))
        .args([addr, &bytes.to_string()])
        .spawn()
        .expect("start nsenter csm-net-send (util-linux)")
}

/// Two test users send known amounts over TCP on loopback; `net_uid` charges each its
/// own. Each user talks to a root-owned server on the `lo` of a namespace of its own,
/// so that namespace's `lo` counters are exact ground truth for the IP-layer bytes of
/// that user's connection (loopback counts each packet once, at the IP layer): every
/// packet there is either sent or received by the user's socket.
#[test]
fn per_user_bytes_on_loopback() {
    require_root();
    let users = [TestUser::create("nua"), TestUser::create("nub")];
    let nets = [
        Netns::new(&unique("csmnet", "u")),
        Netns::new(&unique("csmnet", "v")),
    ];
    let sent = [8_000_000usize, 24_000_000];
    let daemon = Daemon::start(None, &[]);
    assert!(
        !daemon.log_text().contains("per-uid traffic:"),
        "per-uid programs did not attach: {}",
        daemon.log_text()
    );

    let before: Vec<Counters> = nets.iter().map(|ns| ns.counters("lo")).collect();
    let mut work = Vec::new();
    for ((user, ns), bytes) in users.iter().zip(&nets).zip(sent) {
        let listener = ns.within(|| TcpListener::bind("127.0.0.1:5401").expect("bind"));
        let server = thread::spawn(move || drain(listener.accept().expect("accept").0));
        work.push((send_as(user, ns, "127.0.0.1:5401", bytes), server));
    }
    for (mut child, server) in work {
        assert!(child.wait().unwrap().success(), "csm-net-send failed");
        server.join().unwrap();
    }
    thread::sleep(Duration::from_millis(300));
    let lo: Vec<Counters> = nets
        .iter()
        .zip(before)
        .map(|(ns, b)| ns.counters("lo") - b)
        .collect();
    let data = daemon.stop();

    let totals = net_uid_totals(&data);
    for ((user, bytes), lo) in users.iter().zip(sent).zip(lo) {
        let (rx, tx) = totals
            .get(&(user.uid as i64))
            .copied()
            .unwrap_or_else(|| panic!("no net_uid rows for {}: {totals:?}", user.name));
        eprintln!(
            "{}: sent {bytes} payload bytes; net_uid rx {rx} tx {tx}; IP bytes on lo {}",
            user.name, lo.rx_bytes
        );
        assert_close(&format!("{} rx + tx", user.name), rx + tx, lo.rx_bytes, 1.0);
        assert!(
            tx >= bytes as i64,
            "{}: tx {tx} below the payload",
            user.name
        );
        assert!(rx < tx / 20, "{}: rx is only ACKs, got {rx}", user.name);
    }
}

/// Steady loopback traffic in a namespace, until dropped.
struct Steady {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Steady {
    fn start(ns: &Netns) -> Steady {
        let stop = Arc::new(AtomicBool::new(false));
        let listener = ns.within(|| TcpListener::bind("127.0.0.1:5301").expect("bind"));
        let client = ns.within(|| TcpStream::connect("127.0.0.1:5301").expect("connect"));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            thread::spawn(move || {
                let _ = std::io::copy(&mut conn, &mut std::io::sink());
            });
            let mut client = client;
            let chunk = vec![1u8; 20_000];
            while !flag.load(Ordering::Relaxed) {
                use std::io::Write;
                let _ = client.write_all(&chunk);
                thread::sleep(Duration::from_millis(50));
            }
        });
        Steady {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Steady {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn ifaces_in(event: &str) -> usize {
    event
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ifaces="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no ifaces= in {event:?}"))
}

/// 50 veth pairs come and go while traffic flows: every interval is written, every pair
/// is counted, and the kernel map is back to its baseline size afterwards.
#[test]
fn veth_churn_keeps_maps_bounded() {
    require_root();
    let a = Netns::new(&unique("csmnet", "c"));
    let b = Netns::new(&unique("csmnet", "d"));
    let daemon = Daemon::start(None, &[]);
    let started = Instant::now();
    let steady = Steady::start(&a);
    for i in 0..50 {
        let (va, vb) = (format!("cv{i}"), format!("cp{i}"));
        run(
            "ip",
            &[
                "-n", &a.name, "link", "add", &va, "type", "veth", "peer", "name", &vb, "netns",
                &b.name,
            ],
        );
        a.exec(&["ip", "addr", "add", &format!("10.232.{i}.1/30"), "dev", &va]);
        b.exec(&["ip", "addr", "add", &format!("10.232.{i}.2/30"), "dev", &vb]);
        a.exec(&["ip", "link", "set", &va, "up"]);
        b.exec(&["ip", "link", "set", &vb, "up"]);
        a.exec(&[
            "ping",
            "-q",
            "-c",
            "2",
            "-i",
            "0.05",
            "-W",
            "1",
            &format!("10.232.{i}.2"),
        ]);
        run("ip", &["-n", &a.name, "link", "del", &va]);
    }
    // Two more intervals: the last pairs' counts are drained, then their entries deleted.
    thread::sleep(Duration::from_millis(2500));
    drop(steady);
    let ran = started.elapsed();
    let data = daemon.stop();

    let rows = net_rows(&data);
    let (ns_a, ns_b) = (a.inode(), b.inode());
    let churned = |ns| {
        let mut ifindexes: Vec<i64> = rows
            .iter()
            .filter(|r| r.netns == Some(ns) && r.ifindex != LO)
            .map(|r| r.ifindex)
            .collect();
        ifindexes.sort();
        ifindexes.dedup();
        ifindexes.len()
    };
    assert_eq!(churned(ns_a), 50, "every veth in {} has rows", a.name);
    assert_eq!(churned(ns_b), 50, "every veth in {} has rows", b.name);

    // No lost interval: the steady stream shows up in every 1 s interval.
    let ts: Vec<i64> = rows
        .iter()
        .filter(|r| r.netns == Some(ns_a) && r.ifindex == LO)
        .map(|r| r.ts_us)
        .collect();
    assert!(
        ts.len() as u64 + 2 >= ran.as_secs(),
        "{} intervals with steady traffic in {ran:?}",
        ts.len()
    );
    for pair in ts.windows(2) {
        assert!(
            pair[1] - pair[0] <= 1_600_000,
            "gap between intervals: {pair:?}"
        );
    }

    // Entries of the 100 deleted interfaces are gone from the map; what may remain
    // beyond the start: the two namespaces' lo and whatever other processes on this
    // machine created meanwhile.
    let sizes = events(&data, "net_maps");
    assert_eq!(sizes.len(), 2, "start and stop map sizes: {sizes:?}");
    let (start, stop) = (ifaces_in(&sizes[0]), ifaces_in(&sizes[1]));
    eprintln!(
        "churn: {} intervals in {ran:?}; map sizes {sizes:?}",
        ts.len()
    );
    assert!(
        stop <= start + 6,
        "map entries: {start} at start, {stop} at stop"
    );
}

/// A renamed interface keeps its counts under its ifindex and shows the new name from
/// the next interval on.
#[test]
fn renamed_interface_keeps_its_ifindex() {
    require_root();
    let a = Netns::new(&unique("csmnet", "r"));
    let b = Netns::new(&unique("csmnet", "s"));
    let (va, vb, renamed) = ("csmold", "csmpeer", "csmnew");
    run(
        "ip",
        &[
            "-n", &a.name, "link", "add", va, "type", "veth", "peer", "name", vb, "netns", &b.name,
        ],
    );
    a.exec(&["ip", "addr", "add", "10.233.0.1/24", "dev", va]);
    b.exec(&["ip", "addr", "add", "10.233.0.2/24", "dev", vb]);
    a.exec(&["ip", "link", "set", va, "up"]);
    b.exec(&["ip", "link", "set", vb, "up"]);
    let index = a.ifindex(va);
    let daemon = Daemon::start(None, &[]);
    a.exec(&["ping", "-q", "-c", "3", "-i", "0.2", "10.233.0.2"]);
    thread::sleep(Duration::from_millis(1200));
    a.exec(&["ip", "link", "set", va, "name", renamed]);
    thread::sleep(Duration::from_millis(1200));
    a.exec(&["ping", "-q", "-c", "3", "-i", "0.2", "10.233.0.2"]);
    thread::sleep(Duration::from_millis(1200));
    let data = daemon.stop();

    let rows = net_rows(&data);
    let names: Vec<&str> = rows
        .iter()
        .filter(|r| r.netns == Some(a.inode()) && r.ifindex == index)
        .map(|r| r.iface.as_str())
        .collect();
    assert!(
        names.first() == Some(&va),
        "first rows named {va}: {names:?}"
    );
    assert!(
        names.last() == Some(&renamed),
        "last rows named {renamed}: {names:?}"
    );
}

/// The host's own `lo`, through the daemon's load path in this process. Other processes
/// on this machine may use `lo` too, so the kernel counters and csm's map are read back
/// to back around the traffic, and a round disturbed by a stranger's packet in between
/// is tried again.
#[test]
fn host_lo_matches_kernel_counters() {
    use csm::sources::ebpf::{load_and_attach, NetReader};
    use csm::sources::host::HostPaths;

    require_root();
    let mut loaded = load_and_attach(&HostPaths::default()).expect("load and attach");
    assert!(
        loaded.net.ifaces,
        "netdev programs: {:?}",
        loaded.net.problems
    );
    let reader = NetReader::new(&mut loaded).expect("net maps");
    let host_ns = csm::sources::netns::IfaceNames::new(HostPaths::default())
        .host_netns()
        .expect("own netns");
    let lo_now = |reader: &NetReader| {
        let kernel = counters_here("lo");
        let sample = reader.sample().expect("sample");
        let c = sample
            .ifaces
            .get(&(host_ns, 1))
            .copied()
            .unwrap_or_default();
        let csm = Counters {
            rx_bytes: c.rx_bytes as i64,
            rx_packets: c.rx_packets as i64,
            tx_bytes: c.tx_bytes as i64,
            tx_packets: c.tx_packets as i64,
        };
        (kernel, csm)
    };
    let mut last = None;
    for _ in 0..5 {
        let (k0, c0) = lo_now(&reader);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        tcp_exchange(listener, client, 2_000_000, 300_000);
        run("ping", &["-q", "-c", "3", "-i", "0.05", "127.0.0.1"]);
        let (k1, c1) = lo_now(&reader);
        let (kernel, csm) = (k1 - k0, c1 - c0);
        if kernel == csm {
            eprintln!("host lo: csm and kernel agree: {csm:?}");
            return;
        }
        last = Some((csm, kernel));
    }
    let (csm, kernel) = last.unwrap();
    assert_matches("host lo", csm, kernel);
}

/// Waits until the daemon's first flush (the `events` table exists): its first sample,
/// the base its rows count from, is taken before that.
fn wait_first_flush(data: &std::path::Path) {
    let start = Instant::now();
    while !data.join("events").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "csm wrote nothing"
        );
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(200));
}

/// The daemon is SIGKILLed mid-run and traffic flows while it is down: the next run
/// adopts the pinned counters and writes that traffic (one row per interface and uid
/// for the gap), so the rows for a veth over the whole window still equal the kernel's
/// counters exactly, and the user who sent only while csm was down is charged.
#[test]
fn traffic_while_down_is_recovered() {
    use csm_tests::daemon_support::{Daemon as KillableDaemon, PinGuard};
    require_root();
    // No IPv6 on the pair: no router solicitations or MLD reports at odd moments, so
    // the only traffic is this test's (and the ARP it causes).
    let (a, b, va, _) = veth_pair("csmr", "10.233.0", true);
    let user = TestUser::create("nr");
    let data = tempfile::tempdir().unwrap();
    let _pins = PinGuard {
        data_dir: data.path().canonicalize().unwrap(),
    };
    let args = ["--interval", "1s", "--flush-interval", "1s"];
    let before = a.counters(&va);

    let daemon = KillableDaemon::start(data.path(), &args);
    wait_first_flush(data.path());
    tcp_in(&b, &a, "10.233.0.2:5301", 1_000_000, 200_000);
    thread::sleep(Duration::from_millis(1500));
    daemon.kill9();

    // Down: the user sends 4 MB, root pings.
    let listener = b.within(|| TcpListener::bind("10.233.0.2:5302").expect("bind"));
    let server = thread::spawn(move || drain(listener.accept().expect("accept").0));
    let mut sender = send_as(&user, &a, "10.233.0.2:5302", 4_000_000);
    assert!(sender.wait().unwrap().success(), "csm-net-send failed");
    server.join().unwrap();
    a.exec(&["ping", "-q", "-c", "5", "-i", "0.05", "10.233.0.2"]);
    let down = a.counters(&va) - before;

    let daemon = KillableDaemon::start(data.path(), &args);
    let start = Instant::now();
    while !events(data.path(), "recovered")
        .iter()
        .any(|d| d.starts_with("net gap_ms="))
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no recovered event for traffic after the restart"
        );
        thread::sleep(Duration::from_millis(100));
    }
    tcp_in(&b, &a, "10.233.0.2:5303", 500_000, 100_000);
    thread::sleep(Duration::from_millis(1500));
    let status = daemon.stop();
    assert!(status.success(), "clean stop: {status}");
    let kernel = a.counters(&va) - before;

    let rows = net_rows(data.path());
    let csm = net_total(&rows, a.inode(), a.ifindex(&va));
    eprintln!("veth over the window: csm {csm:?}, kernel {kernel:?} ({down:?} of it while down)");
    assert_eq!(csm, kernel, "veth rows over the window, crash included");

    let (rx, tx) = net_uid_totals(data.path())
        .get(&(user.uid as i64))
        .copied()
        .unwrap_or_else(|| panic!("no net_uid rows for {}: traffic while down lost", user.name));
    eprintln!("user who sent 4000000 bytes while csm was down: rx {rx} tx {tx}");
    assert!(
        (4_000_000..4_300_000).contains(&tx),
        "{}: tx {tx} for 4 MB of payload",
        user.name
    );
}
