//! `csm run --backend proc` on fixture trees (tests/fixtures/<host>): the test advances
//! the fixture between samples and checks that the cpu, mem, net and ubc rows hold
//! exactly the fixture's numbers.
//!
//! Each fixture has `proc/` and `sys/` (the starting state) and `steps/<k>/`: files that
//! replace or add to the tree at step k, and an optional `remove` list (exited processes).
//! The daemon samples every 500 ms; steps are 1.25 s apart and applied 250 ms after a
//! sampling boundary, so every step lands in exactly one interval and every state is
//! sampled at least twice.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use csm_tests::records::{csm_binary, read_table, Cell, Record};

const TICK_NS: i64 = 10_000_000; // USER_HZ = 100
const KB: i64 = 1024;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A running `csm run` on a private copy of a fixture; killed if the test fails.
struct Run {
    tmp: tempfile::TempDir,
    root: PathBuf,
    src: PathBuf,
    data: PathBuf,
    child: Option<Child>,
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Run {
    fn start(name: &str) -> Run {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("host");
        let src = fixtures().join(name);
        copy_tree(&src.join("proc"), &root.join("proc"));
        copy_tree(&src.join("sys"), &root.join("sys"));
        let data = tmp.path().join("data");
        fs::write(tmp.path().join("csm.toml"), "[mem]\ninterval = \"500ms\"\n").unwrap();
        let mut run = Run {
            tmp,
            root,
            src,
            data,
            child: None,
        };
        run.spawn();
        run
    }

    /// Starts `csm run --backend proc` on the fixture copy (again, after a kill).
    fn spawn(&mut self) {
        let child = Command::new(csm_binary())
            .arg("run")
            .args([
                "--backend",
                "proc",
                "--interval",
                "500ms",
                "--flush-interval",
                "1s",
            ])
            .arg("--config")
            .arg(self.tmp.path().join("csm.toml"))
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--proc-root")
            .arg(self.root.join("proc"))
            .arg("--sys-root")
            .arg(self.root.join("sys"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start csm");
        self.child = Some(child);
    }

    /// Applies `steps/<k>` atomically file by file (new process directories whole).
    fn step(&self, k: usize) {
        let step = self.src.join(format!("steps/{k}"));
        if let Ok(list) = fs::read_to_string(step.join("remove")) {
            for rel in list.lines().filter(|l| !l.is_empty()) {
                let gone = self.root.join(format!("gone-{}", rel.replace('/', "-")));
                fs::rename(self.root.join(rel), &gone).unwrap();
                fs::remove_dir_all(gone).unwrap();
            }
        }
        for dir in ["proc", "sys"] {
            if step.join(dir).exists() {
                self.overlay(&step.join(dir), &self.root.join(dir));
            }
        }
    }

    fn overlay(&self, from: &Path, to: &Path) {
        for entry in fs::read_dir(from).unwrap().flatten() {
            let target = to.join(entry.file_name());
            let staged = self
                .root
                .join(format!("stage-{}", entry.file_name().to_string_lossy()));
            if entry.path().is_dir() {
                if target.exists() {
                    self.overlay(&entry.path(), &target);
                } else {
                    copy_tree(&entry.path(), &staged);
                    fs::rename(&staged, &target).unwrap();
                }
            } else {
                fs::copy(entry.path(), &staged).unwrap();
                fs::rename(&staged, &target).unwrap();
            }
        }
    }

    /// Runs `steps` steps, stops the daemon with SIGTERM, and returns its stderr.
    fn drive(mut self, steps: usize) -> (Run, String) {
        let mut last = SystemTime::now();
        for k in 1..=steps {
            sleep_to_mid_interval(last + Duration::from_millis(1000));
            self.step(k);
            last = SystemTime::now();
        }
        sleep_to_mid_interval(last + Duration::from_millis(1000));
        let child = self.child.take().unwrap();
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "csm failed: {:?}\n{stderr}",
            out.status
        );
        (self, stderr)
    }

    fn table(&self, name: &str) -> Vec<Record> {
        read_table(&self.data, name)
    }
}

/// Sleeps until 250 ms past the first 500 ms boundary at or after `after`.
fn sleep_to_mid_interval(after: SystemTime) {
    let at = after.duration_since(UNIX_EPOCH).unwrap().as_millis();
    let target = at.div_ceil(500) * 500 + 250;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    if target > now {
        std::thread::sleep(Duration::from_millis((target - now) as u64));
    }
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// cpu_ns of one uid's rows, in time order; every row has source `proc`.
fn cpu_ns(rows: &[Record], uid: i64) -> Vec<i64> {
    rows.iter()
        .filter(|r| r["uid"].int() == uid)
        .map(|r| {
            assert_eq!(r["source"].str(), "proc");
            r["cpu_ns"].int()
        })
        .collect()
}

/// (ifindex, rx_bytes, tx_bytes, rx_packets, tx_packets) of one interface's rows.
fn net(rows: &[Record], iface: &str) -> Vec<[i64; 5]> {
    rows.iter()
        .filter(|r| r["iface"].str() == iface)
        .map(|r| {
            assert_eq!(r["source"].str(), "proc");
            assert_eq!(r["netns"], Cell::Null);
            [
                "ifindex",
                "rx_bytes",
                "tx_bytes",
                "rx_packets",
                "tx_packets",
            ]
            .map(|c| r[c].int())
        })
        .collect()
}

/// Gauge rows grouped by sampling time, repeated identical states collapsed.
fn states<T: PartialEq + Ord>(rows: &[Record], f: impl Fn(&Record) -> T) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let ts = rows[i]["ts"].int();
        let mut group: Vec<T> = Vec::new();
        while i < rows.len() && rows[i]["ts"].int() == ts {
            group.push(f(&rows[i]));
            i += 1;
        }
        group.sort();
        if out.last() != Some(&group) {
            out.push(group);
        }
    }
    out
}

type Mem = (i64, i64, i64, Option<i64>, Option<i64>);

fn mem_states(rows: &[Record]) -> Vec<Vec<Mem>> {
    let opt = |c: &Cell| match c {
        Cell::Null => None,
        c => Some(c.int()),
    };
    states(rows, |r| {
        (
            r["uid"].int(),
            r["nproc"].int(),
            r["rss_bytes"].int(),
            opt(&r["pss_bytes"]),
            opt(&r["swap_bytes"]),
        )
    })
}

fn kb(v: i64) -> i64 {
    v * KB
}

#[test]
fn modern_host() {
    let (run, stderr) = Run::start("modern-host").drive(3);
    let cpu = run.table("cpu");
    // Step 1: pid 101 +200 ticks. Step 2: pid 101 exited (last seen 520 ticks); its parent
    // 100 gained 5 ticks itself and 620 in cutime: 520 known + 100 recovered (the unseen
    // tail and unseen children). Nothing at step 3.
    assert_eq!(
        cpu_ns(&cpu, 1000),
        vec![200 * TICK_NS, 105 * TICK_NS],
        "{cpu:#?}"
    );
    // Step 1 +30; step 2 a new process with 25; step 3 +10.
    assert_eq!(
        cpu_ns(&cpu, 1001),
        vec![30 * TICK_NS, 25 * TICK_NS, 10 * TICK_NS]
    );
    assert_eq!(cpu_ns(&cpu, 0), Vec::<i64>::new());

    let net_rows = run.table("net");
    assert_eq!(
        net(&net_rows, "lo"),
        vec![[1, 100, 100, 1, 1], [1, 50, 50, 1, 1]]
    );
    // Step 2: eth0's 64-bit tx counter went backwards: unknown, no row.
    assert_eq!(
        net(&net_rows, "eth0"),
        vec![[2, 1500, 700, 3, 2], [2, 10, 1000, 1, 2]]
    );

    let s0 = vec![
        (0, 1, kb(8000), Some(kb(3000)), Some(0)),
        (1000, 2, kb(6000), Some(kb(2700)), Some(kb(100))),
        (1001, 1, kb(50000), Some(kb(45000)), Some(kb(2048))),
    ];
    let mut s1 = s0.clone();
    s1[1] = (1000, 2, kb(6500), Some(kb(2900)), Some(kb(100)));
    let mut s2 = s1.clone();
    s2[1] = (1000, 1, kb(4000), Some(kb(1500)), Some(kb(100)));
    s2[2] = (1001, 2, kb(51000), Some(kb(45800)), Some(kb(2048)));
    assert_eq!(mem_states(&run.table("mem")), vec![s0, s1, s2]);

    // The broken process is named, with its line, and skipped; the rest survived.
    assert!(stderr.contains("999/stat:1: truncated"), "{stderr}");
    assert!(stderr.contains("999/status:2: Uid"), "{stderr}");
    let events = run.table("events");
    let backend = events
        .iter()
        .find(|e| e["event"].str() == "backend")
        .unwrap();
    assert_eq!(backend["detail"].str(), "proc (--backend proc)");
}

#[test]
fn xen_guest_with_old_net_dev_and_32_bit_counters() {
    let (run, _stderr) = Run::start("xen-guest").drive(2);
    let cpu = run.table("cpu");
    assert_eq!(cpu_ns(&cpu, 48), vec![40 * TICK_NS, 5 * TICK_NS]);
    let net_rows = run.table("net");
    // Step 1: rx wrapped at 2^32 (4294967000 -> 500).
    assert_eq!(
        net(&net_rows, "eth0"),
        vec![[2, 796, 2000, 10, 5], [2, 10000, 0, 8, 0]]
    );
    assert_eq!(net(&net_rows, "lo"), Vec::<[i64; 5]>::new());
    // 2.6.18: no smaps_rollup (pss null), no VmSwap (swap null).
    let s0 = vec![(0, 1, kb(640), None, None), (48, 2, kb(21000), None, None)];
    let s1 = vec![(0, 1, kb(640), None, None), (48, 2, kb(21500), None, None)];
    assert_eq!(mem_states(&run.table("mem")), vec![s0, s1]);
    assert!(run.table("ubc").is_empty());
}

#[test]
fn openvz_container_beancounters() {
    let (run, stderr) = Run::start("openvz-container").drive(2);
    assert_eq!(cpu_ns(&run.table("cpu"), 33), vec![25 * TICK_NS]);
    assert_eq!(
        net(&run.table("net"), "venet0"),
        vec![[3, 10000, 2000, 10, 5]]
    );
    let s0 = vec![
        (0, 1, kb(700), None, None),
        (33, 1, kb(30000), None, Some(kb(512))),
    ];
    let s1 = vec![
        (0, 1, kb(700), None, None),
        (33, 1, kb(31000), None, Some(kb(512))),
    ];
    assert_eq!(mem_states(&run.table("mem")), vec![s0, s1]);

    let ubc = states(&run.table("ubc"), |r| {
        (
            r["ctid"].int(),
            r["resource"].str().to_string(),
            ["held", "maxheld", "barrier", "hard_limit", "failcnt"].map(|c| r[c].int()),
        )
    });
    assert_eq!(ubc.len(), 3, "{ubc:#?}");
    assert_eq!(ubc[0].len(), 24);
    let find = |state: &Vec<(i64, String, [i64; 5])>, res: &str| {
        state
            .iter()
            .find(|(_, r, _)| r == res)
            .map(|(ctid, _, v)| (*ctid, *v))
    };
    assert_eq!(
        find(&ubc[0], "kmemsize"),
        Some((101, [7, 9, 200000, 220000, 0]))
    );
    assert_eq!(
        find(&ubc[0], "physpages"),
        Some((101, [35000, 50000, 0, i64::MAX, 0]))
    );
    assert_eq!(
        find(&ubc[1], "privvmpages"),
        Some((101, [150000, 160000, 200002, 220002, 3]))
    );
    assert_eq!(
        find(&ubc[1], "numproc"),
        Some((101, [40, 52, 200005, 220005, 0]))
    );
    // Step 2 garbles numflock: named with its line, the other 23 resources survive.
    assert_eq!(ubc[2].len(), 23);
    assert_eq!(find(&ubc[2], "numflock"), None);
    assert_eq!(
        find(&ubc[2], "privvmpages"),
        Some((101, [150000, 160000, 200002, 220002, 5]))
    );
    assert!(
        stderr.contains("user_beancounters:13: numflock"),
        "{stderr}"
    );

    let rises: Vec<String> = run
        .table("events")
        .iter()
        .filter(|e| e["event"].str() == "ubc_failcnt")
        .map(|e| e["detail"].str().to_string())
        .collect();
    assert_eq!(
        rises,
        vec![
            "ctid 101 privvmpages: failcnt 0 -> 3",
            "ctid 101 privvmpages: failcnt 3 -> 5"
        ]
    );
    assert!(
        stderr.contains("ctid 101 privvmpages: failcnt 0 -> 3"),
        "{stderr}"
    );
}

#[test]
fn auto_run_on_a_fixture_uses_proc_and_logs_why_once() {
    let root = fixtures().join("xen-guest");
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(csm_binary())
        .args([
            "run",
            "--backend",
            "auto",
            "--duration",
            "1s",
            "--interval",
            "500ms",
        ])
        .arg("--data-dir")
        .arg(tmp.path())
        .arg("--proc-root")
        .arg(root.join("proc"))
        .arg("--sys-root")
        .arg(root.join("sys"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("not trying eBPF").count(), 1, "{stderr}");
    let events = read_table(tmp.path(), "events");
    let backend = events
        .iter()
        .find(|e| e["event"].str() == "backend")
        .unwrap();
    assert_eq!(
        backend["detail"].str(),
        "proc (--proc-root/--sys-root point at a tree other than this host's)"
    );
    // The gauges are taken at start and at stop even in a one-second run.
    assert!(read_table(tmp.path(), "mem").len() >= 4);
}

#[test]
fn auto_backend_on_a_fixture_chooses_proc_without_trying_ebpf() {
    let root = fixtures().join("xen-guest");
    let out = Command::new(csm_binary())
        .arg("check")
        .arg("--proc-root")
        .arg(root.join("proc"))
        .arg("--sys-root")
        .arg(root.join("sys"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("xen") && text.contains("guest (domU)"),
        "{text}"
    );
    assert!(
        text.contains("2.6.18-419.el5xen (eBPF needs 4.7 or later)"),
        "{text}"
    );
    assert!(text.contains("not tried"), "{text}");
    assert!(text.contains("backend (auto): proc"), "{text}");
    let vz = fixtures().join("openvz-container/proc");
    let out = Command::new(csm_binary())
        .arg("check")
        .arg("--proc-root")
        .arg(vz)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ok  openvz   container"), "{text}");
    assert!(text.contains("ok  ubc"), "{text}");
}

/// `/proc/net/dev` as the fixture writes it: lo and eth0 with these counters
/// (rx bytes, rx packets, tx bytes, tx packets).
fn net_dev_text(lo: [u64; 4], eth0: [u64; 4]) -> String {
    let line = |name: &str, c: [u64; 4]| {
        format!(
            "{name:>6}: {} {} 0 0 0 0 0 0 {} {} 0 0 0 0 0 0\n",
            c[0], c[1], c[2], c[3]
        )
    };
    format!(
        "Inter-|   Receive                                                |  Transmit\n \
         face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n{}{}",
        line("lo", lo),
        line("eth0", eth0)
    )
}

fn wait_for(what: &str, done: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The /proc backend has no pinned counters, but /proc/net/dev counts since boot: after a
/// SIGKILL, the next run of the same boot writes the traffic of the gap, so the rows over
/// the whole window hold exactly the counters' growth. A clean stop leaves nothing to
/// recover.
#[test]
fn a_crash_gap_in_proc_net_dev_traffic_is_recovered() {
    let mut run = Run::start("modern-host");
    let boot_id = run.root.join("proc/sys/kernel/random/boot_id");
    fs::create_dir_all(boot_id.parent().unwrap()).unwrap();
    fs::write(&boot_id, "9b0c7e52-5d1e-4f7b-a3c1-2d4e6f8a0b1c\n").unwrap();
    // The fixture's starting counters: lo 1000 B / 10 pkts each way, eth0 10 GB / 8 M in
    // and 5 GB / 4 M out (wider than 32 bits).
    let start_lo = [1000, 10, 1000, 10];
    let start_eth0 = [10_000_000_000, 8_000_000, 5_000_000_000, 4_000_000];
    let net_dev = run.root.join("proc/net/dev");
    let write_net_dev = |lo: [u64; 4], eth0: [u64; 4]| {
        let staged = net_dev.with_extension("new");
        fs::write(&staged, net_dev_text(lo, eth0)).unwrap();
        fs::rename(&staged, &net_dev).unwrap();
    };
    // The boot id is read at start: restart on it before anything counts.
    let mut first = run.child.take().unwrap();
    first.kill().unwrap();
    first.wait().unwrap();
    run.spawn();
    let state = run.data.join(".csm-netdev-state");
    wait_for("a first flush", || state.exists());
    write_net_dev(
        [1500, 15, 1500, 15],
        [10_000_100_000, 8_000_100, 5_000_050_000, 4_000_050],
    );
    std::thread::sleep(Duration::from_millis(1500));

    let mut child = run.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // While csm is down: more traffic.
    let end_lo = [4000, 40, 4000, 40];
    let end_eth0 = [10_003_000_000, 8_003_000, 5_001_000_000, 4_001_000];
    write_net_dev(end_lo, end_eth0);
    run.spawn();
    wait_for("the recovered event", || {
        run.table("events").iter().any(|r| {
            r["event"].str() == "recovered" && r["detail"].str().starts_with("netdev gap_ms=")
        })
    });
    std::thread::sleep(Duration::from_millis(700));
    let (run, _) = run.drive(0);

    let total = |iface: &str| {
        net(&run.table("net"), iface)
            .iter()
            .fold([0i64; 4], |a, r| {
                [a[0] + r[1], a[1] + r[2], a[2] + r[3], a[3] + r[4]]
            })
    };
    // Rows hold (rx bytes, tx bytes, rx packets, tx packets).
    let growth = |start: [u64; 4], end: [u64; 4]| {
        [
            end[0] - start[0],
            end[2] - start[2],
            end[1] - start[1],
            end[3] - start[3],
        ]
        .map(|v| v as i64)
    };
    assert_eq!(
        total("eth0"),
        growth(start_eth0, end_eth0),
        "eth0 over the window"
    );
    assert_eq!(total("lo"), growth(start_lo, end_lo), "lo over the window");
    assert!(!state.exists(), "a clean stop leaves nothing to recover");
}
