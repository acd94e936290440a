//! Network accounting end to end, as root: the real `csm` binary, real namespaces and
//! veth pairs, kernel counters (`/proc/net/dev`) as ground truth, Parquet read back.
//!
//! Every test traffics only on loopback or inside namespaces it creates.

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use csm::store::{Counters, Event, NetRow, NetUidRow, Recovered, Table};
use csm_tests::net::{
    assert_close, link_errors_total, net_total, net_uid_totals, tcp_exchange, traffic_here,
    LinkErrors, Traffic,
};
use csm_tests::{
    require_root, run, veth, wait_until, Daemon, DataDir, Ipv6, Link, Netns, TestUser,
};

/// Loopback has index 1 in every namespace.
const LO: i64 = 1;

fn tcp_in(server_ns: &Netns, client_ns: &Netns, addr: &'static str, up: usize, down: usize) {
    let listener = server_ns.within(move || TcpListener::bind(addr).expect("bind"));
    let client = client_ns.within(move || TcpStream::connect(addr).expect("connect"));
    tcp_exchange(listener, client, up, down);
}

fn assert_matches(what: &str, csm: Traffic, kernel: Traffic) {
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

/// Two new namespaces without IPv6 joined by a veth pair, up, with `<net>.1/24` on the
/// client's end and `<net>.2/24` on the server's.
fn veth_pair(tag: &str, net: &str) -> Link {
    let link = Link::new(tag, Ipv6::Off);
    link.address(&format!("{net}.1/24"), &format!("{net}.2/24"));
    link
}

/// `csm run` every second into `data`, inside `ns` if given, once its first sample is
/// taken.
fn collect<'a>(data: &DataDir, ns: impl Into<Option<&'a Netns>>) -> Daemon {
    let daemon = Daemon::builder()
        .netns(ns)
        .data_dir(data)
        .args(["--interval", "1s", "--duration", "300s"])
        .start();
    // The first sample is taken right after it says it collects; give it a moment.
    thread::sleep(Duration::from_millis(500));
    daemon
}

/// Two namespaces joined by a veth pair. csm runs inside the first (its "host"), so
/// that its `lo` and veth see only this test's traffic and the kernel counters are exact
/// ground truth; the second namespace's `lo` carries more traffic that must stay apart.
#[test]
fn veth_and_lo_match_kernel_counters() {
    require_root();
    let link = veth_pair("v", "10.231.0");
    let (a, b, va) = (&link.client, &link.server, &link.client_if);

    let data = DataDir::new();
    let daemon = collect(&data, a);
    let (veth0, lo_a0, lo_b0) = (a.traffic(va), a.traffic("lo"), b.traffic("lo"));

    tcp_in(b, a, "10.231.0.2:5201", 3_000_000, 1_000_000);
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
    tcp_in(a, a, "127.0.0.1:5202", 2_000_000, 500_000);
    a.exec(&["ping", "-q", "-c", "5", "-i", "0.05", "127.0.0.1"]);
    tcp_in(b, b, "127.0.0.1:5203", 5_000_000, 5_000_000);
    b.exec(&["ping", "-q", "-c", "5", "-i", "0.05", "127.0.0.1"]);
    thread::sleep(Duration::from_millis(300));
    let (veth1, lo_a1, lo_b1) = (a.traffic(va), a.traffic("lo"), b.traffic("lo"));
    daemon.stop();

    let rows = data.rows::<NetRow>();
    let (ns_a, ns_b) = (a.inode(), b.inode());
    let veth_index = a.ifindex(va);
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
        assert_eq!(&row.iface, va, "veth rows carry its name");
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

/// Sends `count` UDP datagrams of `len` bytes from `ns` to `addr`.
fn udp_from(ns: &Netns, addr: &'static str, count: usize, len: usize) {
    ns.within(move || {
        let socket = UdpSocket::bind("0.0.0.0:0").expect("bind");
        for _ in 0..count {
            // A datagram the device drops is no error to the sender (or ENOBUFS): the
            // kernel's counters say what happened to it.
            let _ = socket.send_to(&vec![0xa5; len], addr);
        }
    });
}

/// Drops the kernel itself counts, made on purpose: datagrams larger than the peer's MTU
/// are dropped by veth (the sender's `tx_dropped` and the peer's `rx_dropped`), and
/// datagrams sent while the peer is down are dropped for lack of carrier (the sender's
/// `tx_dropped`). The server's address has a permanent neighbour entry: a datagram
/// waiting for ARP would be dropped by the neighbour layer, which no device counts.
/// A first exchange lets csm see both ends before the drops: an interface's first
/// interval has unknown (null) errors and drops, its counters holding everything since
/// it was created. Returns when the drops began (wall clock, µs) and the kernel's
/// increase on the client's and the server's end.
fn make_drops(link: &Link, server_addr: &'static str) -> (i64, LinkErrors, LinkErrors) {
    let (a, b) = (&link.client, &link.server);
    let (va, vb) = (&link.client_if, &link.server_if);
    let mac = "02:00:00:00:0b:02";
    b.ip(&["link", "set", vb, "address", mac]);
    let ip = server_addr.split(':').next().unwrap();
    a.ip(&[
        "neigh",
        "replace",
        ip,
        "lladdr",
        mac,
        "dev",
        va,
        "nud",
        "permanent",
    ]);
    udp_from(a, server_addr, 3, 100);
    thread::sleep(Duration::from_millis(2500));
    let since_us = now_us();
    let (va0, vb0) = (a.link_errors(va), b.link_errors(vb));
    b.ip(&["link", "set", vb, "mtu", "1000"]);
    udp_from(a, server_addr, 7, 1400);
    // At least one interval with drops and nothing else.
    thread::sleep(Duration::from_millis(1500));
    link.set_server_link(false);
    udp_from(a, server_addr, 5, 100);
    thread::sleep(Duration::from_millis(1500));
    let (va1, vb1) = (a.link_errors(va), b.link_errors(vb));
    // rx_errors, tx_errors, rx_dropped, tx_dropped.
    assert_eq!(
        va1 - va0,
        LinkErrors([0, 0, 0, 12]),
        "the client's end dropped 7 + 5"
    );
    assert_eq!(
        vb1 - vb0,
        LinkErrors([0, 0, 7, 0]),
        "the server's end dropped 7"
    );
    (since_us, va1 - va0, vb1 - vb0)
}

fn now_us() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.unwrap().as_micros() as i64
}

/// `net`'s error and drop columns, summed, equal the kernel's increase exactly, on the
/// end in csm's own namespace (read from /proc/net/dev) and on the peer in another
/// namespace (read inside it); traffic still matches on the end that dropped.
#[test]
fn drops_and_errors_match_kernel_counters() {
    require_root();
    let link = veth_pair("e", "10.232.0");
    let (a, b, va, vb) = (&link.client, &link.server, &link.client_if, &link.server_if);
    let data = DataDir::new();
    let daemon = collect(&data, a);
    let traffic0 = a.traffic(va);
    let (since_us, client, server) = make_drops(&link, "10.232.0.2:9");
    let traffic1 = a.traffic(va);
    daemon.stop();

    let rows = data.rows::<NetRow>();
    let of = |ns: &Netns, iface: &str| {
        let (netns, ifindex) = (ns.inode(), ns.ifindex(iface));
        let rows: Vec<NetRow> = rows
            .iter()
            .filter(|r| r.netns == Some(netns) && r.ifindex == ifindex && r.ts_us > since_us)
            .cloned()
            .collect();
        rows
    };
    let (client_rows, server_rows) = (of(a, va), of(b, vb));
    assert_eq!(link_errors_total(&client_rows), client, "client's end");
    assert_eq!(link_errors_total(&server_rows), server, "server's end");
    assert!(
        server_rows
            .iter()
            .all(|r| r.rx_packets == 0 && &r.iface == vb),
        "the server's end received nothing, and is named: {server_rows:?}"
    );
    let (ns_a, index_a) = (a.inode(), a.ifindex(va));
    assert_matches("veth", net_total(&rows, ns_a, index_a), traffic1 - traffic0);
}

/// The same with `--backend proc`: the columns come from /proc/net/dev of csm's
/// namespace (the client's end only).
#[test]
fn drops_and_errors_match_kernel_counters_with_proc() {
    require_root();
    let link = veth_pair("f", "10.233.0");
    let (a, va) = (&link.client, &link.client_if);
    let data = DataDir::new();
    let daemon = Daemon::builder()
        .netns(a)
        .data_dir(&data)
        .backend("proc")
        .args(["--interval", "1s", "--duration", "300s"])
        .start();
    thread::sleep(Duration::from_millis(500));
    let (since_us, client, _) = make_drops(&link, "10.233.0.2:9");
    daemon.stop();

    let rows: Vec<NetRow> = data
        .rows::<NetRow>()
        .into_iter()
        .filter(|r| &r.iface == va && r.ts_us > since_us)
        .collect();
    assert_eq!(link_errors_total(&rows), client);
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
    let nets = [Netns::new("nu", Ipv6::Off), Netns::new("nv", Ipv6::Off)];
    let sent = [8_000_000usize, 24_000_000];
    let data = DataDir::new();
    let daemon = collect(&data, None);
    assert!(
        !daemon.log_text().contains("per-uid traffic:"),
        "per-uid programs did not attach: {}",
        daemon.log_text()
    );

    let before: Vec<Traffic> = nets.iter().map(|ns| ns.traffic("lo")).collect();
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
    let lo: Vec<Traffic> = nets
        .iter()
        .zip(before)
        .map(|(ns, b)| ns.traffic("lo") - b)
        .collect();
    daemon.stop();

    let totals = net_uid_totals(&data.rows::<NetUidRow>());
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
    // The net_maps detail is text for people (`start ifaces=N …`).
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
    let a = Netns::new("churnc", Ipv6::Off);
    let b = Netns::new("churnd", Ipv6::Off);
    let data = DataDir::new();
    let daemon = collect(&data, None);
    let started = Instant::now();
    let steady = Steady::start(&a);
    for i in 0..50 {
        let (va, vb) = (format!("cv{i}"), format!("cp{i}"));
        veth(&a, &va, &b, &vb);
        a.ip(&["addr", "add", &format!("10.232.{i}.1/30"), "dev", &va]);
        b.ip(&["addr", "add", &format!("10.232.{i}.2/30"), "dev", &vb]);
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
        a.ip(&["link", "del", &va]);
    }
    // Two more intervals: the last pairs' counts are drained, then their entries deleted.
    thread::sleep(Duration::from_millis(2500));
    drop(steady);
    let ran = started.elapsed();
    daemon.stop();

    let rows = data.rows::<NetRow>();
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
    let sizes: Vec<String> = data
        .events()
        .into_iter()
        .filter_map(|(_, e)| match e {
            Event::NetMaps(sizes) => Some(sizes),
            _ => None,
        })
        .collect();
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
    let link = veth_pair("r", "10.233.0");
    let (a, va, renamed) = (&link.client, link.client_if.as_str(), "csmnew");
    let index = a.ifindex(va);
    let data = DataDir::new();
    let daemon = collect(&data, None);
    a.exec(&["ping", "-q", "-c", "3", "-i", "0.2", "10.233.0.2"]);
    thread::sleep(Duration::from_millis(1200));
    a.ip(&["link", "set", va, "name", renamed]);
    thread::sleep(Duration::from_millis(1200));
    a.exec(&["ping", "-q", "-c", "3", "-i", "0.2", "10.233.0.2"]);
    thread::sleep(Duration::from_millis(1200));
    daemon.stop();

    let rows = data.rows::<NetRow>();
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
        let kernel = traffic_here("lo");
        let sample = reader.sample().expect("sample");
        let c = sample
            .ifaces
            .get(&(host_ns, 1))
            .copied()
            .unwrap_or_default();
        let csm = Traffic {
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

/// The daemon is SIGKILLed mid-run and traffic flows while it is down: the next run
/// adopts the pinned counters and writes that traffic (one row per interface and uid
/// for the gap), so the rows for a veth over the whole window still equal the kernel's
/// counters exactly, and the user who sent only while csm was down is charged.
#[test]
fn traffic_while_down_is_recovered() {
    require_root();
    // No IPv6 on the pair: no router solicitations or MLD reports at odd moments, so
    // the only traffic is this test's (and the ARP it causes).
    let link = veth_pair("d", "10.233.0");
    let (a, b, va) = (&link.client, &link.server, &link.client_if);
    let user = TestUser::create("nr");
    let data = DataDir::new();
    let csm = || {
        Daemon::killable(&data)
            .args(["--interval", "1s", "--flush-interval", "1s"])
            .spawn()
    };
    let before = a.traffic(va);

    let daemon = csm();
    // Its first flush (the `events` table exists): its first sample, the base its rows
    // count from, is taken before that.
    wait_until("a first flush", Duration::from_secs(30), || {
        data.has(Table::Events)
    });
    thread::sleep(Duration::from_millis(200));
    tcp_in(b, a, "10.233.0.2:5301", 1_000_000, 200_000);
    thread::sleep(Duration::from_millis(1500));
    daemon.kill();

    // Down: the user sends 4 MB, root pings.
    let listener = b.within(|| TcpListener::bind("10.233.0.2:5302").expect("bind"));
    let server = thread::spawn(move || drain(listener.accept().expect("accept").0));
    let mut sender = send_as(&user, a, "10.233.0.2:5302", 4_000_000);
    assert!(sender.wait().unwrap().success(), "csm-net-send failed");
    server.join().unwrap();
    a.exec(&["ping", "-q", "-c", "5", "-i", "0.05", "10.233.0.2"]);
    let down = a.traffic(va) - before;

    let daemon = csm();
    let net_recovered = |(_, event): &(i64, Event)| {
        matches!(
            event,
            Event::Recovered(Recovered::Gap {
                counters: Counters::Net,
                ..
            })
        )
    };
    wait_until(
        "a recovered event for traffic after the restart",
        Duration::from_secs(30),
        || data.events().iter().any(net_recovered),
    );
    tcp_in(b, a, "10.233.0.2:5303", 500_000, 100_000);
    thread::sleep(Duration::from_millis(1500));
    // A clean stop (exit status 0).
    daemon.stop();
    let kernel = a.traffic(va) - before;

    let rows = data.rows::<NetRow>();
    let csm = net_total(&rows, a.inode(), a.ifindex(va));
    eprintln!("veth over the window: csm {csm:?}, kernel {kernel:?} ({down:?} of it while down)");
    assert_eq!(csm, kernel, "veth rows over the window, crash included");

    let (rx, tx) = net_uid_totals(&data.rows::<NetUidRow>())
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
