//! Traffic as the kernel counts it (the ground truth) and as csm's rows sum it up, and
//! known TCP exchanges to count.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use csm::store::{NetRow, NetUidRow};

/// Bytes and packets of an interface, either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub rx_bytes: i64,
    pub rx_packets: i64,
    pub tx_bytes: i64,
    pub tx_packets: i64,
}

impl Traffic {
    /// What one `net` row counts.
    pub fn of(row: &NetRow) -> Traffic {
        Traffic {
            rx_bytes: row.rx_bytes,
            rx_packets: row.rx_packets,
            tx_bytes: row.tx_bytes,
            tx_packets: row.tx_packets,
        }
    }
}

impl std::ops::Add for Traffic {
    type Output = Traffic;
    fn add(self, o: Traffic) -> Traffic {
        Traffic {
            rx_bytes: self.rx_bytes + o.rx_bytes,
            rx_packets: self.rx_packets + o.rx_packets,
            tx_bytes: self.tx_bytes + o.tx_bytes,
            tx_packets: self.tx_packets + o.tx_packets,
        }
    }
}

impl std::ops::Sub for Traffic {
    type Output = Traffic;
    fn sub(self, o: Traffic) -> Traffic {
        Traffic {
            rx_bytes: self.rx_bytes - o.rx_bytes,
            rx_packets: self.rx_packets - o.rx_packets,
            tx_bytes: self.tx_bytes - o.tx_bytes,
            tx_packets: self.tx_packets - o.tx_packets,
        }
    }
}

/// The 16 counters of `iface` in the calling thread's namespace
/// (`/proc/thread-self/net/dev`).
fn net_dev_here(iface: &str) -> Vec<i64> {
    let text = std::fs::read_to_string("/proc/thread-self/net/dev").expect("read /proc/net/dev");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{iface}:")))
        .unwrap_or_else(|| panic!("{iface} not in /proc/net/dev"));
    line.split_once(':')
        .unwrap()
        .1
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect()
}

/// Counters of `iface` in the calling thread's namespace (`/proc/thread-self/net/dev`).
pub fn traffic_here(iface: &str) -> Traffic {
    let f = net_dev_here(iface);
    Traffic {
        rx_bytes: f[0],
        rx_packets: f[1],
        tx_bytes: f[8],
        tx_packets: f[9],
    }
}

/// The kernel's error and drop counters of an interface (`errs` and `drop` of
/// /proc/net/dev, both ways): rx_errors, tx_errors, rx_dropped, tx_dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkErrors(pub [i64; 4]);

impl std::ops::Sub for LinkErrors {
    type Output = LinkErrors;
    fn sub(self, o: LinkErrors) -> LinkErrors {
        LinkErrors(std::array::from_fn(|i| self.0[i] - o.0[i]))
    }
}

/// Errors and drops of `iface` in the calling thread's namespace.
pub fn link_errors_here(iface: &str) -> LinkErrors {
    let f = net_dev_here(iface);
    LinkErrors([f[2], f[10], f[3], f[11]])
}

/// Errors and drops summed over `rows`; panics on a row where they are null (unknown).
pub fn link_errors_total<'a>(rows: impl IntoIterator<Item = &'a NetRow>) -> LinkErrors {
    rows.into_iter().fold(LinkErrors::default(), |sum, r| {
        let known = |v: Option<i64>, what: &str| {
            v.unwrap_or_else(|| panic!("{what} null in a row of {}: {r:?}", r.iface))
        };
        let row = [
            known(r.rx_errors, "rx_errors"),
            known(r.tx_errors, "tx_errors"),
            known(r.rx_dropped, "rx_dropped"),
            known(r.tx_dropped, "tx_dropped"),
        ];
        LinkErrors(std::array::from_fn(|i| sum.0[i] + row[i]))
    })
}

/// Sum of the `net` rows of one (netns, ifindex).
pub fn net_total(rows: &[NetRow], netns: i64, ifindex: i64) -> Traffic {
    rows.iter()
        .filter(|r| r.netns == Some(netns) && r.ifindex == ifindex)
        .fold(Traffic::default(), |sum, r| sum + Traffic::of(r))
}

/// (rx_bytes, tx_bytes) summed per uid over `net_uid` rows.
pub fn net_uid_totals(rows: &[NetUidRow]) -> BTreeMap<i64, (i64, i64)> {
    let mut out: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for row in rows {
        let e = out.entry(row.uid).or_default();
        e.0 += row.rx_bytes;
        e.1 += row.tx_bytes;
    }
    out
}

/// A TCP exchange: the client sends `up` bytes, the server answers `down` bytes.
pub fn tcp_exchange(listener: TcpListener, client: TcpStream, up: usize, down: usize) {
    tcp_exchange_with(listener, client, up, down, |l| {
        l.accept().expect("accept").0
    });
}

/// [`tcp_exchange`] with the server's connection from `accept` (the kernel matrix's
/// agent accepts under a test user's fsuid, so that the socket is that user's).
pub fn tcp_exchange_with(
    listener: TcpListener,
    client: TcpStream,
    up: usize,
    down: usize,
    accept: impl FnOnce(TcpListener) -> TcpStream + Send + 'static,
) {
    let server = std::thread::spawn(move || {
        let mut conn = accept(listener);
        let mut got = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        while got < up {
            let n = conn.read(&mut buf).expect("server read");
            assert!(n > 0, "client closed early");
            got += n;
        }
        write_n(&mut conn, down);
    });
    let mut client = client;
    write_n(&mut client, up);
    let mut sink = Vec::new();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    client.read_to_end(&mut sink).expect("client read");
    assert_eq!(sink.len(), down);
    server.join().expect("server thread");
}

fn write_n(stream: &mut TcpStream, mut n: usize) {
    let chunk = vec![0xa5u8; 64 * 1024];
    while n > 0 {
        let k = n.min(chunk.len());
        stream.write_all(&chunk[..k]).expect("write");
        n -= k;
    }
}

/// Asserts `got` is within `pct` percent of `want`.
pub fn assert_close(what: &str, got: i64, want: i64, pct: f64) {
    let err = (got - want).abs() as f64 / (want.max(1)) as f64 * 100.0;
    assert!(
        err <= pct,
        "{what}: csm says {got}, expected {want} ({err:.3} % off, limit {pct} %)"
    );
}
