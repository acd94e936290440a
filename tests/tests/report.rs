//! `csm report` against ground truth, as root: the real daemon collects while one test
//! user burns a core for 10 s, another runs 1,000 short processes and a third sends 50 MB
//! over a veth, and a pinged veth peer goes away for 20 s. The report's JSON gives each
//! user's CPU-seconds within 1 % of the kernel's figure (wait4), the bytes within 1 % of
//! what was sent, totals equal to a DuckDB query over the same files, and the outage with
//! its duration within 1 s.

use std::net::TcpListener;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use csm_tests::{
    now_us, python, require_root, run, run_csm, wait_cpu_ns, Daemon, DataDir, Ipv6, Netns, TestUser,
};
use serde_json::Value;

const SENT: usize = 50_000_000;

fn within(what: &str, got: f64, want: f64, pct: f64) {
    let off = (got - want).abs() / want * 100.0;
    eprintln!("{what}: report {got} vs truth {want} ({off:.3} % off)");
    assert!(
        off <= pct,
        "{what}: report {got} vs truth {want}: {off:.3} % off, over {pct} %"
    );
}

/// Reads until EOF in large chunks.
fn drain(mut conn: std::net::TcpStream) {
    use std::io::Read;
    let mut buf = vec![0u8; 1 << 20];
    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
}

/// The sums the report's totals must equal, by DuckDB over the same files and range.
fn duckdb_totals(data: &DataDir, from: &str, to: &str) -> Value {
    let script = r#"
import sys, json, duckdb
d, lo, hi = sys.argv[1], sys.argv[2], sys.argv[3]
def q(sql):
    return duckdb.sql(sql.replace("<d>", d).replace("<range>",
        f"ts >= TIMESTAMPTZ '{lo}' AND ts < TIMESTAMPTZ '{hi}'")).fetchall()
cpu = q("SELECT uid, sum(cpu_ns)::BIGINT FROM read_parquet('<d>/cpu/**/*.parquet') WHERE <range> GROUP BY uid")
uid = q("SELECT uid, sum(rx_bytes)::BIGINT, sum(tx_bytes)::BIGINT FROM read_parquet('<d>/net_uid/**/*.parquet') WHERE <range> GROUP BY uid")
net = q("SELECT netns, iface, sum(rx_bytes)::BIGINT, sum(tx_bytes)::BIGINT, sum(rx_packets)::BIGINT, sum(tx_packets)::BIGINT FROM read_parquet('<d>/net/**/*.parquet') WHERE <range> GROUP BY ALL")
print(json.dumps({
    "cpu": {str(u): n for u, n in cpu},
    "net_uid": {str(u): [r, t] for u, r, t in uid},
    "net": {f"{ns}/{i}": [r, t, rp, tp] for ns, i, r, t, rp, tp in net},
}))
"#;
    let out = python(script, &[data.path().to_str().unwrap(), from, to], "");
    serde_json::from_str(&out).expect("the DuckDB script prints JSON")
}

#[test]
fn report_matches_the_kernel_the_bytes_sent_duckdb_and_the_outage() {
    require_root();
    let burner = TestUser::create("rb");
    let forker = TestUser::create("rf");
    let sender = TestUser::create("rs");
    // The daemon runs in this (the host's) namespace, where the per-uid programs see the
    // root cgroup; a veth pair leads from here to a peer namespace (deleting the namespace
    // deletes the pair).
    let peer = Netns::new("rp", Ipv6::Off);
    let (here_if, peer_if) = (format!("csmr{}", std::process::id() % 100_000), "csmrp");
    run(
        "ip",
        &[
            "link", "add", &here_if, "type", "veth", "peer", "name", peer_if, "netns", &peer.name,
        ],
    );
    run("ip", &["addr", "add", "198.18.7.1/30", "dev", &here_if]);
    peer.ip(&["addr", "add", "198.18.7.2/30", "dev", peer_if]);
    // A large MTU: 50 MB in few packets, so headers stay far below 1 % of the payload.
    run("ip", &["link", "set", &here_if, "mtu", "65000", "up"]);
    peer.ip(&["link", "set", peer_if, "mtu", "65000", "up"]);
    let data = DataDir::new();
    let config = "[ping]\ninterval = \"1s\"\ncount = 3\ntargets = [\"198.18.7.2\"]\n";
    let from_us = now_us() - 1_000_000;
    let daemon = Daemon::builder()
        .data_dir(&data)
        .arg("--config")
        .arg(data.config(config))
        .args(["--interval", "1s"])
        .backend("ebpf")
        .start();
    thread::sleep(Duration::from_millis(1500));

    // The three users at once.
    let burn = burner
        .shell("while :; do :; done")
        .spawn()
        .expect("start the burn");
    let burn_pid = burn.id();
    let burn_started = Instant::now();
    let forks = forker
        .shell("for i in $(seq 1000); do /bin/true; done")
        .spawn()
        .expect("start the short processes");
    let listener = peer.within(|| TcpListener::bind("198.18.7.2:5501").expect("bind"));
    let server = thread::spawn(move || drain(listener.accept().expect("accept").0));
    let tx_before = csm_tests::net::traffic_here(&here_if);
    let mut send = Command::new("setpriv")
        .args([
            &format!("--reuid={}", sender.uid),
            "--regid=65534",
            "--clear-groups",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_csm-net-send"))
        .args(["198.18.7.2:5501", &SENT.to_string()])
        .spawn()
        .expect("start setpriv csm-net-send (util-linux)");
    let (forks_status, forks_ns) = wait_cpu_ns(forks);
    assert!(libc::WIFEXITED(forks_status) && libc::WEXITSTATUS(forks_status) == 0);
    assert!(send.wait().unwrap().success(), "csm-net-send failed");
    server.join().unwrap();
    let veth = csm_tests::net::traffic_here(&here_if) - tx_before;
    thread::sleep(Duration::from_secs(10).saturating_sub(burn_started.elapsed()));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(burn_pid as i32, libc::SIGKILL) };
    let (_, burn_ns) = wait_cpu_ns(burn);

    // The peer goes away for 20 s.
    thread::sleep(Duration::from_secs(2));
    let down_at = now_us();
    peer.ip(&["link", "set", peer_if, "down"]);
    thread::sleep(Duration::from_secs(20));
    let up_at = now_us();
    peer.ip(&["link", "set", peer_if, "up"]);
    thread::sleep(Duration::from_secs(4));
    daemon.stop();
    let to_us = now_us();

    let (from, to) = (csm::report::rfc3339(from_us), csm::report::rfc3339(to_us));
    let out = run_csm([
        "report",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--from",
        &from,
        "--to",
        &to,
        "--tz",
        "utc",
        "--top",
        "100",
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "csm report: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let user = |u: &TestUser| -> &Value {
        report["users"]["top"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["uid"] == u.uid)
            .unwrap_or_else(|| panic!("{} not in the report: {report:#}", u.name))
    };
    let int = |v: &Value| v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"));

    // CPU-seconds against wait4.
    within(
        "burner CPU ns",
        int(&user(&burner)["cpu_ns"]) as f64,
        burn_ns as f64,
        1.0,
    );
    within(
        "1,000 processes CPU ns",
        int(&user(&forker)["cpu_ns"]) as f64,
        forks_ns as f64,
        1.0,
    );
    assert_eq!(user(&burner)["user"], burner.name.as_str());

    // Bytes against what was sent: the sender's sockets and the veth.
    let sender_tx = int(&user(&sender)["tx_bytes"]);
    within(
        "sender's socket bytes out",
        sender_tx as f64,
        SENT as f64,
        1.0,
    );
    let ifaces = report["interfaces"].as_array().unwrap();
    let veth_line = ifaces
        .iter()
        .find(|l| l["iface"] == here_if.as_str())
        .unwrap_or_else(|| panic!("no line for the veth: {ifaces:?}"));
    within(
        "veth bytes out",
        int(&veth_line["tx_bytes"]) as f64,
        SENT as f64,
        1.0,
    );
    assert!(
        int(&veth_line["tx_bytes"]) >= veth.tx_bytes,
        "{veth_line} vs kernel {veth:?}"
    );

    // The totals equal DuckDB's over the same files and range, exactly.
    let duck = duckdb_totals(&data, &from, &to);
    let duck_cpu: i64 = duck["cpu"].as_object().unwrap().values().map(int).sum();
    assert_eq!(int(&report["users"]["total"]["cpu_ns"]), duck_cpu);
    let (duck_rx, duck_tx) = duck["net_uid"]
        .as_object()
        .unwrap()
        .values()
        .fold((0, 0), |(r, t), v| (r + int(&v[0]), t + int(&v[1])));
    assert_eq!(int(&report["users"]["total"]["rx_bytes"]), duck_rx);
    assert_eq!(int(&report["users"]["total"]["tx_bytes"]), duck_tx);
    for u in [&burner, &forker, &sender] {
        let cpu = duck["cpu"].get(u.uid.to_string()).map_or(0, int);
        assert_eq!(int(&user(u)["cpu_ns"]), cpu, "{}", u.name);
    }
    assert_eq!(
        int(&user(&sender)["tx_bytes"]),
        int(&duck["net_uid"][sender.uid.to_string()][1])
    );
    for line in ifaces {
        let key = format!("{}/{}", line["netns"], line["iface"].as_str().unwrap());
        let want = &duck["net"][&key];
        let got: Vec<i64> = ["rx_bytes", "tx_bytes", "rx_packets", "tx_packets"]
            .iter()
            .map(|k| int(&line[*k]))
            .collect();
        let want: Vec<i64> = (0..4).map(|i| int(&want[i])).collect();
        assert_eq!(got, want, "{key}");
    }

    // The outage, as long as the peer was away to the edges of the measurements.
    let target = &report["ping"][0];
    assert_eq!(target["target"], "198.18.7.2");
    let outages = target["outages"].as_array().unwrap();
    assert_eq!(outages.len(), 1, "{outages:?}");
    let down_s = (up_at - down_at) as f64 / 1e6;
    let duration = outages[0]["duration_s"].as_f64().unwrap();
    eprintln!("outage: {} (link down {down_s:.3} s)", outages[0]);
    // An outage runs from the first measurement whose echoes were all lost to the first
    // one with a reply. With measurements every 1 s of 3 echoes 1/6 s apart, the first
    // lost one starts within 1 s after the link went down, and the first answered one
    // within [up - 1/3 s, up + 2/3 s): the outage is between 1 1/3 s shorter and 2/3 s
    // longer than the time the link was down (it was once 1.04 s shorter).
    let edges = 1.0 + 2.0 / 6.0;
    assert!(
        (down_s - edges - 0.05..=down_s + 1.0).contains(&duration),
        "outage of {duration} s, link down {down_s} s"
    );
    assert_eq!(outages[0]["ongoing"], false);
}
