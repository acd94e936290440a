//! Network test fixtures.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Skips nothing: these tests need root and say so.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "network tests need root (namespaces, eBPF): run them with sudo -E"
    );
}

/// A short unique name: `<prefix><pid><suffix>` (interface names have 15 bytes at most).
pub fn unique(prefix: &str, suffix: &str) -> String {
    format!("{prefix}{}{suffix}", std::process::id() % 100_000)
}

/// Runs a command and fails the test with its stderr if it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {program}: {err} (is it installed?)"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip netns add`, deleted on drop (with every interface inside).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        run("ip", &["netns", "add", name]);
        let ns = Netns {
            name: name.to_string(),
        };
        // Quiet interfaces: no IPv6 router solicitations or DAD traffic of their own.
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn exec(&self, cmd: &[&str]) -> String {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(cmd);
        run("ip", &args)
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// The namespace's inode: what csm writes in the `netns` column.
    pub fn inode(&self) -> i64 {
        fs::metadata(self.path()).expect("netns file").ino() as i64
    }

    /// Runs `f` on a thread inside this namespace; sockets it creates stay in there.
    pub fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path();
        std::thread::spawn(move || {
            let file = fs::File::open(&path).expect("open netns");
            // SAFETY: valid fd; only this thread changes namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {}", path.display());
            f()
        })
        .join()
        .expect("thread in netns panicked")
    }

    /// The kernel's counters of `iface` in this namespace (`/proc/net/dev`).
    pub fn counters(&self, iface: &str) -> Counters {
        let iface = iface.to_string();
        self.within(move || counters_here(&iface))
    }

    pub fn ifindex(&self, iface: &str) -> i64 {
        let iface = iface.to_string();
        self.within(move || {
            let name = std::ffi::CString::new(iface).unwrap();
            // SAFETY: NUL-terminated name.
            unsafe { libc::if_nametoindex(name.as_ptr()) as i64 }
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Interface counters as the kernel reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_bytes: i64,
    pub rx_packets: i64,
    pub tx_bytes: i64,
    pub tx_packets: i64,
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    fn sub(self, o: Counters) -> Counters {
        Counters {
            rx_bytes: self.rx_bytes - o.rx_bytes,
            rx_packets: self.rx_packets - o.rx_packets,
            tx_bytes: self.tx_bytes - o.tx_bytes,
            tx_packets: self.tx_packets - o.tx_packets,
        }
    }
}

/// Counters of `iface` in the calling thread's namespace (`/proc/thread-self/net/dev`).
pub fn counters_here(iface: &str) -> Counters {
    let text = fs::read_to_string("/proc/thread-self/net/dev").expect("read /proc/net/dev");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{iface}:")))
        .unwrap_or_else(|| panic!("{iface} not in /proc/net/dev"));
    let f: Vec<i64> = line
        .split_once(':')
        .unwrap()
        .1
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    Counters {
        rx_bytes: f[0],
        rx_packets: f[1],
        tx_bytes: f[8],
        tx_packets: f[9],
    }
}

/// A TCP exchange: the client sends `up` bytes, the server answers `down` bytes.
pub fn tcp_exchange(listener: TcpListener, client: TcpStream, up: usize, down: usize) {
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
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

/// `target/release/csm`, which the tests run as the real daemon.
pub fn csm_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/csm");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --release -p csm-user` first",
        path.display()
    );
    path
}

/// The real daemon, run with `--interval 1s`; killed on drop if a test fails.
pub struct Daemon {
    child: Child,
    data_dir: Option<tempfile::TempDir>,
    log: PathBuf,
}

/// A stopped daemon's data, removed on drop.
pub struct DataDir(tempfile::TempDir);

impl std::ops::Deref for DataDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl Daemon {
    /// Starts `csm run`, inside `netns` if given, and waits until it collects.
    pub fn start(netns: Option<&Netns>, extra: &[&str]) -> Daemon {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let log = data_dir.path().join("csm.log");
        let csm = csm_binary();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name]).arg(&csm);
                c
            }
            None => Command::new(&csm),
        };
        cmd.arg("run")
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["--interval", "1s", "--duration", "300s"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap());
        let child = cmd.spawn().expect("start csm");
        let daemon = Daemon {
            child,
            data_dir: Some(data_dir),
            log,
        };
        daemon.wait_for_log("csm collecting", Duration::from_secs(20));
        // The first sample is taken right after; give it a moment.
        std::thread::sleep(Duration::from_millis(500));
        daemon
    }

    fn wait_for_log(&self, needle: &str, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.log_text().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("csm did not log {needle:?}: {}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, wait for a clean exit; the data stays until the result is dropped.
    pub fn stop(mut self) -> DataDir {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait for csm");
        assert!(status.success(), "csm exited {status}: {}", self.log_text());
        DataDir(self.data_dir.take().expect("data dir"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        crate::stop_gracefully(&mut self.child);
    }
}

/// Every record batch of a table under `data_dir`.
pub fn read_table(data_dir: &Path, table: &str) -> Vec<RecordBatch> {
    let mut files = Vec::new();
    collect_parquet(&data_dir.join(table), &mut files);
    files
        .iter()
        .flat_map(|path| {
            let file = fs::File::open(path).unwrap();
            ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
                .build()
                .unwrap()
                .map(|b| b.unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn collect_parquet(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_parquet(&path, out);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
}

/// A `net` row as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct NetRead {
    pub ts_us: i64,
    pub iface: String,
    pub ifindex: i64,
    pub netns: Option<i64>,
    pub c: Counters,
}

pub fn net_rows(data_dir: &Path) -> Vec<NetRead> {
    let mut rows = Vec::new();
    for b in read_table(data_dir, "net") {
        let int = |name: &str| {
            b.column_by_name(name)
                .unwrap()
                .as_primitive::<Int64Type>()
                .clone()
        };
        let ts = b
            .column_by_name("ts")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>()
            .clone();
        let iface = b
            .column_by_name("iface")
            .unwrap()
            .as_string::<i32>()
            .clone();
        let (ifindex, netns) = (int("ifindex"), int("netns"));
        let (rxb, txb, rxp, txp) = (
            int("rx_bytes"),
            int("tx_bytes"),
            int("rx_packets"),
            int("tx_packets"),
        );
        for i in 0..b.num_rows() {
            rows.push(NetRead {
                ts_us: ts.value(i),
                iface: iface.value(i).to_string(),
                ifindex: ifindex.value(i),
                netns: (!netns.is_null(i)).then(|| netns.value(i)),
                c: Counters {
                    rx_bytes: rxb.value(i),
                    rx_packets: rxp.value(i),
                    tx_bytes: txb.value(i),
                    tx_packets: txp.value(i),
                },
            });
        }
    }
    rows.sort_by_key(|r| r.ts_us);
    rows
}

/// Sum of the `net` rows of one (netns, ifindex).
pub fn net_total(rows: &[NetRead], netns: i64, ifindex: i64) -> Counters {
    rows.iter()
        .filter(|r| r.netns == Some(netns) && r.ifindex == ifindex)
        .fold(Counters::default(), |a, r| Counters {
            rx_bytes: a.rx_bytes + r.c.rx_bytes,
            rx_packets: a.rx_packets + r.c.rx_packets,
            tx_bytes: a.tx_bytes + r.c.tx_bytes,
            tx_packets: a.tx_packets + r.c.tx_packets,
        })
}

/// (rx_bytes, tx_bytes) summed per uid over all `net_uid` rows.
pub fn net_uid_totals(data_dir: &Path) -> BTreeMap<i64, (i64, i64)> {
    let mut out: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for b in read_table(data_dir, "net_uid") {
        let int = |name: &str| {
            b.column_by_name(name)
                .unwrap()
                .as_primitive::<Int64Type>()
                .clone()
        };
        let (uid, rx, tx) = (int("uid"), int("rx_bytes"), int("tx_bytes"));
        for i in 0..b.num_rows() {
            let e = out.entry(uid.value(i)).or_default();
            e.0 += rx.value(i);
            e.1 += tx.value(i);
        }
    }
    out
}

/// `detail` of every `events` row named `event`, in time order.
pub fn events(data_dir: &Path, event: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in read_table(data_dir, "events") {
        let ts = b
            .column_by_name("ts")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>()
            .clone();
        let name = b
            .column_by_name("event")
            .unwrap()
            .as_string::<i32>()
            .clone();
        let detail = b
            .column_by_name("detail")
            .unwrap()
            .as_string::<i32>()
            .clone();
        for i in 0..b.num_rows() {
            if name.value(i) == event {
                out.push((ts.value(i), detail.value(i).to_string()));
            }
        }
    }
    out.sort();
    out.into_iter().map(|(_, d)| d).collect()
}

pub use crate::TestUser;

/// Asserts `got` is within `pct` percent of `want`.
pub fn assert_close(what: &str, got: i64, want: i64, pct: f64) {
    let err = (got - want).abs() as f64 / (want.max(1)) as f64 * 100.0;
    assert!(
        err <= pct,
        "{what}: csm says {got}, expected {want} ({err:.3} % off, limit {pct} %)"
    );
}
