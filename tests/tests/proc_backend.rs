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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use csm::store::{Counters, CpuRow, Event, MemRow, NetRow, Recovered, Row, Source, UbcRow};
use csm_tests::{run_csm, wait_until, Daemon, DataDir, OnDrop};

const TICK_NS: i64 = 10_000_000; // USER_HZ = 100
const KB: i64 = 1024;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A running `csm run` on a private copy of a fixture (next to its data dir); killed if
/// the test fails.
struct Run {
    root: PathBuf,
    src: PathBuf,
    config: PathBuf,
    daemon: Option<Daemon>,
    data: DataDir,
}

impl Run {
    fn start(name: &str) -> Run {
        let data = DataDir::new();
        let root = data.beside("host");
        let src = fixtures().join(name);
        copy_tree(&src.join("proc"), &root.join("proc"));
        copy_tree(&src.join("sys"), &root.join("sys"));
        // PSS at every other sample (the 1 s slots of the clock): the cadence, with each
        // step's state lasting two samples, so that every state has one with PSS.
        let config = data.config("[mem]\ninterval = \"500ms\"\npss_interval = \"1s\"\n");
        let mut run = Run {
            root,
            src,
            config,
            daemon: None,
            data,
        };
        run.spawn();
        run
    }

    /// Starts `csm run --backend proc` on the fixture copy (again, after a kill).
    fn spawn(&mut self) {
        let daemon = Daemon::builder()
            .backend("proc")
            .args(["--interval", "500ms", "--flush-interval", "1s"])
            .arg("--config")
            .arg(&self.config)
            .data_dir(&self.data)
            .arg("--proc-root")
            .arg(self.root.join("proc"))
            .arg("--sys-root")
            .arg(self.root.join("sys"))
            .on_drop(OnDrop::Kill)
            .spawn();
        self.daemon = Some(daemon);
    }

    /// SIGKILL, as a crash would.
    fn kill(&mut self) {
        self.daemon.take().expect("running").kill();
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
        // SIGTERM, and a clean exit (status 0).
        let stderr = self.daemon.take().expect("running").stop().join("\n");
        (self, stderr)
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
fn cpu_ns(rows: &[CpuRow], uid: i64) -> Vec<i64> {
    rows.iter()
        .filter(|r| r.uid == uid)
        .map(|r| {
            assert_eq!(r.source, Source::Proc);
            r.cpu_ns
        })
        .collect()
}

/// (ifindex, rx_bytes, tx_bytes, rx_packets, tx_packets) of one interface's rows.
fn net(rows: &[NetRow], iface: &str) -> Vec<[i64; 5]> {
    rows.iter()
        .filter(|r| r.iface == iface)
        .map(|r| {
            assert_eq!(r.source, Source::Proc);
            assert_eq!(r.netns, None);
            [
                r.ifindex,
                r.rx_bytes,
                r.tx_bytes,
                r.rx_packets,
                r.tx_packets,
            ]
        })
        .collect()
}

/// Gauge rows grouped by sampling time, repeated identical states collapsed.
fn states<R: Row, T: PartialEq + Ord>(rows: &[R], f: impl Fn(&R) -> T) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    for sample in rows.chunk_by(|a, b| a.ts_us() == b.ts_us()) {
        let mut group: Vec<T> = sample.iter().map(&f).collect();
        group.sort();
        if out.last() != Some(&group) {
            out.push(group);
        }
    }
    out
}

type Mem = (i64, i64, i64, Option<i64>, Option<i64>);

fn mem_states(rows: &[MemRow]) -> Vec<Vec<Mem>> {
    states(rows, |r| {
        (r.uid, r.nproc, r.rss_bytes, r.pss_bytes, r.swap_bytes)
    })
}

/// The detail of every event of one kind, in time order.
fn details<T>(data: &DataDir, f: impl Fn(Event) -> Option<T>) -> Vec<T> {
    data.events()
        .into_iter()
        .filter_map(|(_, e)| f(e))
        .collect()
}

fn backend(data: &DataDir) -> String {
    details(data, |e| match e {
        Event::Backend(why) => Some(why),
        _ => None,
    })
    .into_iter()
    .next()
    .expect("a backend event")
}

fn kb(v: i64) -> i64 {
    v * KB
}

#[test]
fn modern_host() {
    let (run, stderr) = Run::start("modern-host").drive(3);
    let cpu = run.data.rows::<CpuRow>();
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

    let net_rows = run.data.rows::<NetRow>();
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
    // PSS is walked at the samples of each new 1 s slot only (the cadence of
    // `mem.pss_interval`): those rows carry the smaps_rollup figures, the others null.
    let mem: Vec<MemRow> = run.data.rows();
    let (walked, between): (Vec<MemRow>, Vec<MemRow>) =
        mem.into_iter().partition(|r| r.pss_bytes.is_some());
    assert_eq!(
        mem_states(&walked),
        vec![s0.clone(), s1.clone(), s2.clone()]
    );
    let without_pss = |state: Vec<Mem>| -> Vec<Mem> {
        state
            .into_iter()
            .map(|(u, n, r, _, s)| (u, n, r, None, s))
            .collect()
    };
    assert!(!between.is_empty(), "every sample walked PSS");
    assert!(
        mem_states(&between).into_iter().all(|state| [&s0, &s1, &s2]
            .into_iter()
            .any(|s| without_pss(s.clone()) == state)),
        "{between:#?}"
    );

    // The broken process is named, with its line, and skipped; the rest survived.
    assert!(stderr.contains("999/stat:1: truncated"), "{stderr}");
    assert!(stderr.contains("999/status:2: Uid"), "{stderr}");
    assert_eq!(backend(&run.data), "proc (--backend proc)");
}

#[test]
fn xen_guest_with_old_net_dev_and_32_bit_counters() {
    let (run, _stderr) = Run::start("xen-guest").drive(2);
    let cpu = run.data.rows::<CpuRow>();
    assert_eq!(cpu_ns(&cpu, 48), vec![40 * TICK_NS, 5 * TICK_NS]);
    let net_rows = run.data.rows::<NetRow>();
    // Step 1: rx wrapped at 2^32 (4294967000 -> 500).
    assert_eq!(
        net(&net_rows, "eth0"),
        vec![[2, 796, 2000, 10, 5], [2, 10000, 0, 8, 0]]
    );
    assert_eq!(net(&net_rows, "lo"), Vec::<[i64; 5]>::new());
    // 2.6.18: no smaps_rollup (pss null), no VmSwap (swap null).
    let s0 = vec![(0, 1, kb(640), None, None), (48, 2, kb(21000), None, None)];
    let s1 = vec![(0, 1, kb(640), None, None), (48, 2, kb(21500), None, None)];
    assert_eq!(mem_states(&run.data.rows()), vec![s0, s1]);
    assert!(run.data.rows::<UbcRow>().is_empty());
}

#[test]
fn openvz_container_beancounters() {
    let (run, stderr) = Run::start("openvz-container").drive(2);
    assert_eq!(cpu_ns(&run.data.rows(), 33), vec![25 * TICK_NS]);
    assert_eq!(
        net(&run.data.rows(), "venet0"),
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
    assert_eq!(mem_states(&run.data.rows()), vec![s0, s1]);

    let ubc = states(&run.data.rows::<UbcRow>(), |r| {
        (
            r.ctid,
            r.resource.clone(),
            [r.held, r.maxheld, r.barrier, r.hard_limit, r.failcnt],
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

    let rises = details(&run.data, |e| match e {
        Event::UbcFailcnt(rise) => Some(rise),
        _ => None,
    });
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
    let data = DataDir::new();
    let stderr = Daemon::builder()
        .backend("auto")
        .args(["--duration", "1s", "--interval", "500ms"])
        .data_dir(&data)
        .arg("--proc-root")
        .arg(root.join("proc"))
        .arg("--sys-root")
        .arg(root.join("sys"))
        .spawn()
        .wait()
        .join("\n");
    assert_eq!(stderr.matches("not trying eBPF").count(), 1, "{stderr}");
    assert_eq!(
        backend(&data),
        "proc (--proc-root/--sys-root point at a tree other than this host's)"
    );
    // The gauges are taken at start and at stop even in a one-second run.
    assert!(data.rows::<MemRow>().len() >= 4);
}

#[test]
fn auto_backend_on_a_fixture_chooses_proc_without_trying_ebpf() {
    let root = fixtures().join("xen-guest");
    let out = run_csm([
        "check".as_ref(),
        "--proc-root".as_ref(),
        root.join("proc").as_os_str(),
        "--sys-root".as_ref(),
        root.join("sys").as_os_str(),
    ]);
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
    let out = run_csm(["check".as_ref(), "--proc-root".as_ref(), vz.as_os_str()]);
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
    run.kill();
    run.spawn();
    let state = run.data.path().join(".csm-netdev-state");
    wait_until("a first flush", Duration::from_secs(20), || state.exists());
    let (mid_lo, mid_eth0) = (
        [1500, 15, 1500, 15],
        [10_000_100_000, 8_000_100, 5_000_050_000, 4_000_050],
    );
    write_net_dev(mid_lo, mid_eth0);
    std::thread::sleep(Duration::from_millis(1500));

    run.kill();
    // While csm is down: more traffic.
    let end_lo = [4000, 40, 4000, 40];
    let end_eth0 = [10_003_000_000, 8_003_000, 5_001_000_000, 4_001_000];
    write_net_dev(end_lo, end_eth0);
    run.spawn();
    let recovered = || {
        details(&run.data, |e| match e {
            Event::Recovered(
                gap @ Recovered::Gap {
                    counters: Counters::Netdev,
                    ..
                },
            ) => Some(gap),
            _ => None,
        })
        .pop()
    };
    wait_until("the recovered event", Duration::from_secs(20), || {
        recovered().is_some()
    });
    let recovered = recovered().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let (run, _) = run.drive(0);

    let total = |iface: &str| {
        net(&run.data.rows(), iface).iter().fold([0i64; 4], |a, r| {
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

    // The event says what it wrote for the gap: at least what flowed while csm was down
    // (from its last write, at the middle counters or before them).
    let bytes = |from: [u64; 4], to: [u64; 4]| (to[0] - from[0] + to[2] - from[2]) as i64;
    let down = bytes(mid_lo, end_lo) + bytes(mid_eth0, end_eth0);
    let window = bytes(start_lo, end_lo) + bytes(start_eth0, end_eth0);
    let written = recovered
        .value("bytes")
        .expect("bytes= in the recovered event");
    assert!(
        (down..=window).contains(&written),
        "recovered {written} bytes; {down} flowed while down, {window} in the window"
    );
}
