//! Per-uid traffic as an unprivileged local user attacks it (issue 11, point 4): from
//! inside a user + network namespace of its own (where `bpf_get_socket_uid` said 0,
//! passing a user's traffic off as root's), and by filling the uid map (after which a
//! new uid's traffic used to get no rows at all).
//!
//! Needs root; `cargo test --release -p csm-tests --test net_uid -- --test-threads=1`.

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::time::Duration;

use csm::store::{Event, NetUidRow};
use csm_common::MAX_UIDS;
use csm_tests::net::{assert_close, net_uid_totals};
use csm_tests::{require_root, wait_until, Daemon, DataDir, TestUser};

fn collect(data: &DataDir) -> Daemon {
    let daemon = Daemon::builder()
        .backend("ebpf")
        .every_second()
        .data_dir(data)
        .start();
    assert!(
        !daemon.log_text().contains("per-uid traffic:"),
        "per-uid programs did not attach: {}",
        daemon.log_text()
    );
    // Traffic before the first sample is the baseline, not counted: wait for it (the
    // net collector's start event follows its first sample).
    wait_until(
        "the net collector's first sample",
        Duration::from_secs(10),
        || {
            data.events()
                .iter()
                .any(|(_, e)| matches!(e, Event::NetMaps(s) if s.starts_with("start")))
        },
    );
    daemon
}

/// In its own `unshare -Urn` the user is root of a fresh namespace: a TCP transfer over
/// that namespace's loopback, both ends the user's, then the namespace's `lo` byte count
/// (every packet there is the user's: the ground truth of its IP-layer bytes).
const IN_NAMESPACE: &str = r#"
import socket, threading, sys
n = int(sys.argv[1])
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
def drain():
    conn, _ = srv.accept()
    while conn.recv(1 << 20):
        pass
    conn.close()
t = threading.Thread(target=drain); t.start()
c = socket.create_connection(srv.getsockname())
chunk = b"\x5a" * 65536
left = n
while left:
    k = min(left, len(chunk)); c.sendall(chunk[:k]); left -= k
c.shutdown(socket.SHUT_WR); c.recv(1); c.close(); t.join()
for line in open("/proc/net/dev"):
    if line.strip().startswith("lo:"):
        print(line.split(":")[1].split()[0])
"#;

#[test]
fn traffic_in_a_user_namespace_is_charged_to_its_owner() {
    require_root();
    let user = TestUser::create("uns");
    let data = DataDir::new();
    let daemon = collect(&data);
    let bytes = 20_000_000usize;
    let out = user
        .shell(&format!(
            "exec unshare -Urn sh -c 'ip link set lo up && exec python3 -c \"$0\" {bytes}' '{IN_NAMESPACE}'"
        ))
        .output()
        .expect("run unshare -Urn as the test user");
    assert!(
        out.status.success(),
        "the transfer in the user namespace failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lo_bytes: i64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("lo byte count");
    std::thread::sleep(Duration::from_millis(2500));
    daemon.stop();

    let totals = net_uid_totals(&data.rows::<NetUidRow>());
    let (rx, tx) = totals
        .get(&(user.uid as i64))
        .copied()
        .unwrap_or_else(|| panic!("no net_uid rows for uid {}: {totals:?}", user.uid));
    eprintln!("sent {bytes} payload bytes; lo counted {lo_bytes}; net_uid rx {rx} tx {tx}");
    assert!(tx >= bytes as i64, "tx {tx} below the payload {bytes}");
    assert_close("tx of the namespace's owner", tx, lo_bytes, 1.0);
    assert_close("rx of the namespace's owner", rx, lo_bytes, 1.0);
}

/// Root makes sockets owned by more uids than the map holds (a socket belongs to the
/// fsuid that created it: no process per uid needed), each sends one datagram. Every
/// byte shows up, under its uid or in the overflow row, and an event says so.
#[test]
fn a_full_uid_map_loses_no_byte() {
    require_root();
    const FIRST_UID: u32 = 3_000_000_000; // far above any real account
    let count = MAX_UIDS + 1_000;
    let payload = 100usize;
    let per_packet = (payload + 8 + 20) as i64; // UDP and IPv4 headers
    let data = DataDir::new();
    let daemon = collect(&data);

    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = receiver.local_addr().unwrap();
    // fsuid is per thread: a thread of its own, so nothing else runs under those uids.
    std::thread::spawn(move || {
        let datagram = vec![0u8; payload];
        for uid in FIRST_UID..FIRST_UID + count {
            // SAFETY: setfsuid changes only this thread's file system uid.
            unsafe { libc::setfsuid(uid) };
            let socket = UdpSocket::bind("127.0.0.1:0");
            // SAFETY: as above, back to root.
            unsafe { libc::setfsuid(0) };
            let sent = socket.unwrap().send_to(&datagram, to).unwrap();
            assert_eq!(sent, payload);
        }
    })
    .join()
    .expect("the sending thread");
    std::thread::sleep(Duration::from_millis(3000));
    daemon.stop();

    let rows = data.rows::<NetUidRow>();
    let ours = FIRST_UID as i64..(FIRST_UID + count) as i64;
    let totals = net_uid_totals(&rows);
    let charged: i64 = totals
        .iter()
        .filter(|(uid, _)| ours.contains(uid))
        .map(|(_, (_, tx))| tx)
        .sum();
    let with_rows: BTreeSet<i64> = rows
        .iter()
        .map(|r| r.uid)
        .filter(|u| ours.contains(u))
        .collect();
    let overflow = rows.iter().filter(|r| r.uid == -1).collect::<Vec<_>>();
    assert!(
        overflow
            .iter()
            .all(|r| r.user.as_deref() == Some("(overflow)")),
        "the overflow row is named: {overflow:?}"
    );
    let overflow_tx: i64 = overflow.iter().map(|r| r.tx_bytes).sum();
    let sent = count as i64 * per_packet;
    eprintln!(
        "{count} uids sent {sent} bytes: {} uids with rows ({charged} bytes), overflow {overflow_tx}",
        with_rows.len()
    );
    assert!(with_rows.len() < count as usize, "the map did fill");
    assert!(overflow_tx > 0, "the overflow row carries what did not fit");
    assert_eq!(
        charged + overflow_tx,
        sent,
        "every byte sent is charged once"
    );
    let overflow_events = data
        .events()
        .into_iter()
        .filter(|(_, e)| matches!(e, Event::NetUidOverflow { .. }))
        .count();
    assert_eq!(overflow_events, 1, "one event for the map filling up");
}
