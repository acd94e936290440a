//! A local user against the root daemon and `csm-plot` (issue 11, docs/security.md): one
//! test per attack, written as the attack. A throw-away [`TestUser`] plants the link, the
//! FIFO, the bomb or the control characters where csm works; each test asserts that no
//! file outside changed, that `csm run` started (or refused with its one line) within 5 s
//! and stopped on SIGTERM within 2 s.
//!
//! Run as root: `cargo test --release -p csm-tests --test attacks -- --test-threads=1`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use csm::store::{CpuRow, NetRow, PingRow, Source, Store, StoreOptions, Table};
use csm_tests::{csm_bin, python, require_root, run_csm, wait_until, Daemon, DataDir, TestUser};

const START_WITHIN: Duration = Duration::from_secs(5);
const STOP_WITHIN: Duration = Duration::from_secs(2);

/// Every entry below `dir` (not following links): kind, size, mode, owner and contents.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap().flatten() {
            let meta = fs::symlink_metadata(entry.path()).unwrap();
            let contents = if meta.is_file() {
                format!("{:?}", fs::read(entry.path()).unwrap())
            } else {
                String::new()
            };
            out.insert(
                entry.path(),
                format!("{:o} {} {} {contents}", meta.mode(), meta.uid(), meta.len()),
            );
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    out
}

/// A folder outside the data dir that a root daemon must never write into, with a file
/// an attacker would like root to overwrite.
struct Victim {
    dir: tempfile::TempDir,
    before: BTreeMap<PathBuf, String>,
}

impl Victim {
    fn new() -> Victim {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("precious"), b"root's file\n").unwrap();
        fs::set_permissions(
            dir.path().join("precious"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let before = snapshot(dir.path());
        Victim { dir, before }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("precious")
    }

    fn assert_untouched(&self) {
        assert_eq!(snapshot(self.path()), self.before, "a file outside changed");
    }
}

/// A data dir the test user owns (as `/tmp/d` is when a user created it first): csm
/// refuses it unless told `--allow-unsafe-data-dir`, which these attacks pass.
fn data_dir_of(user: &TestUser) -> DataDir {
    let data = DataDir::new();
    std::os::unix::fs::chown(data.path(), Some(user.uid), Some(user.gid)).unwrap();
    data
}

/// Runs `script` as the user; fails the test if it fails.
fn as_user(user: &TestUser, script: &str) {
    let out = user.shell(script).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `csm run --backend proc` on `data`, 200 ms samples, flushed every second.
fn proc_daemon(data: &DataDir) -> csm_tests::DaemonBuilder {
    daemon_200ms(data).backend("proc")
}

/// `csm run` (its default backend) on `data`, 200 ms samples, flushed every second.
fn daemon_200ms(data: &DataDir) -> csm_tests::DaemonBuilder {
    Daemon::builder()
        .args([
            "--host",
            "test",
            "--interval",
            "200ms",
            "--flush-interval",
            "1s",
        ])
        .data_dir(data)
}

/// Waits for `csm collecting` at most [`START_WITHIN`]; how long it took.
fn started(daemon: &mut Daemon) -> Duration {
    let t = Instant::now();
    daemon.wait_for_log("csm collecting", START_WITHIN);
    t.elapsed()
}

/// SIGTERM; checks the daemon exits cleanly within [`STOP_WITHIN`]; its log.
fn stopped(daemon: Daemon) -> Vec<String> {
    let (status, log) = stopped_with_status(daemon);
    assert!(
        status.success(),
        "csm exited with {status}:\n{}",
        log.join("\n")
    );
    log
}

/// SIGTERM; checks the daemon exits within [`STOP_WITHIN`]; its exit status and log.
fn stopped_with_status(mut daemon: Daemon) -> (std::process::ExitStatus, Vec<String>) {
    let t = Instant::now();
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(daemon.pid() as i32, libc::SIGTERM) };
    wait_until("csm stops on SIGTERM", STOP_WITHIN, || !daemon.alive());
    let took = t.elapsed();
    assert!(took <= STOP_WITHIN, "stopping took {took:?}");
    daemon.wait_status()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A refusal: non-zero exit, one line on stderr holding every needle, no panic.
fn assert_one_line_refusal(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert!(!out.status.success(), "not refused; stderr:\n{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line:\n{err}");
    for needle in needles {
        assert!(err.contains(needle), "stderr lacks {needle:?}:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

/// `csm <args>`, timed; fails if it takes more than [`START_WITHIN`].
fn run_csm_timed(args: &[&std::ffi::OsStr]) -> Output {
    let t = Instant::now();
    let out = run_csm(args);
    assert!(t.elapsed() <= START_WITHIN, "took {:?}", t.elapsed());
    out
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

/// Rows written through the store's own writer into `dir` (root-owned data), for the
/// csm-plot attacks.
fn write_rows(dir: &Path, f: impl FnOnce(&mut Store)) {
    let mut opts = StoreOptions::new(dir, "test");
    opts.allow_unsafe_data_dir = true;
    let mut store = Store::open(opts).unwrap();
    f(&mut store);
    assert!(store.flush(now_us()).is_empty());
}

fn now_us() -> i64 {
    csm_tests::now_us()
}

fn cpu_row(ts_us: i64, uid: i64, user: &str) -> CpuRow {
    CpuRow {
        ts_us,
        dur_ms: 1000,
        uid,
        user: Some(user.into()),
        cpu_ns: 500_000_000,
        cpu_pct: 50.0,
        source: Source::Proc,
    }
}

fn net_row(ts_us: i64, iface: &str, ifindex: i64) -> NetRow {
    NetRow {
        ts_us,
        dur_ms: 1000,
        iface: iface.into(),
        ifindex,
        netns: None,
        rx_bytes: 1000,
        tx_bytes: 2000,
        rx_packets: 1,
        tx_packets: 2,
        source: Source::Proc,
        ..NetRow::default()
    }
}

/// Point 2: links planted as a table folder (`mem`, `events/host=test`) and as the state
/// file's temporary make root create, truncate or chmod nothing outside the data dir;
/// the daemon says which folder it refuses and writes the other tables.
#[test]
fn a_link_planted_as_a_table_folder_makes_root_write_nothing_outside() {
    require_root();
    let user = TestUser::create("lnk");
    let victim = Victim::new();
    let data = data_dir_of(&user);
    let d = data.path().display();
    let v = victim.path().display();
    as_user(
        &user,
        &format!(
            "ln -s {v} {d}/mem && mkdir -p {d}/events && ln -s {v} {d}/events/host=test && \
             ln -s {v}/precious {d}/.csm-state.tmp && ln -s {v}/precious {d}/.csm-netdev-state.tmp"
        ),
    );
    let config = data.config("[mem]\ninterval = \"200ms\"\n");
    let mut daemon = proc_daemon(&data)
        .arg("--allow-unsafe-data-dir")
        .arg("--config")
        .arg(&config)
        .spawn();
    started(&mut daemon);
    std::thread::sleep(Duration::from_millis(2500));
    let (status, log) = stopped_with_status(daemon);
    let log = log.join("\n");
    victim.assert_untouched();
    // The rows of the refused folders could not be written: said, and exit status 1.
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("csm: final flush failed"), "{log}");
    assert!(
        log.contains("/mem is a link or not a folder"),
        "the refused folder is named:\n{log}"
    );
    // The events (start, stop) have a nested link for a folder: kept as it was.
    let nested = fs::symlink_metadata(data.path().join("events/host=test")).unwrap();
    assert!(nested.file_type().is_symlink());
    assert!(
        !data.rows::<CpuRow>().is_empty(),
        "the other tables are written"
    );
}

/// Issue 21, point 6: a user who owns the data dir's parent renames the data dir while
/// the daemon runs and plants a link to a folder of root's under its name. Nothing in
/// the link's target changes, and rows keep landing in the folder the daemon opened (now
/// under its new name) until the stop.
#[test]
fn a_data_dir_swapped_for_a_link_mid_run_keeps_every_write_in_the_folder_opened() {
    require_root();
    let user = TestUser::create("swp");
    let victim = Victim::new();
    let data = DataDir::new();
    let parent = data.path().parent().unwrap().to_path_buf();
    std::os::unix::fs::chown(&parent, Some(user.uid), Some(user.gid)).unwrap();
    let mut daemon = daemon_200ms(&data).spawn();
    started(&mut daemon);
    std::thread::sleep(Duration::from_millis(1500));
    let moved = parent.join("moved");
    as_user(
        &user,
        &format!(
            "mv {d} {m} && ln -s {v} {d}",
            d = data.path().display(),
            m = moved.display(),
            v = victim.path().display()
        ),
    );
    let swapped_at = now_us();
    std::thread::sleep(Duration::from_millis(2500));
    let log = stopped(daemon).join("\n");
    victim.assert_untouched();

    // The folder back under its name, for the reader.
    fs::remove_file(data.path()).unwrap();
    fs::rename(&moved, data.path()).unwrap();
    let late_cpu = data
        .rows::<CpuRow>()
        .iter()
        .filter(|r| r.ts_us > swapped_at + 1_000_000)
        .count();
    assert!(late_cpu > 0, "no cpu rows after the swap:\n{log}");
    let events = data.events();
    assert!(
        matches!(events.last(), Some((_, csm::store::Event::Stop(_)))),
        "the stop event lands in the folder opened: {events:?}"
    );
    assert!(
        data.pin_dirs().is_empty(),
        "the pins are removed at the stop"
    );
}

/// Point 2 (the lock): a link planted as `.csm.lock` is refused in one line, before
/// anything is written; its target keeps its contents and mode.
#[test]
fn a_link_planted_as_the_lock_is_refused_in_one_line() {
    require_root();
    let user = TestUser::create("lck");
    let victim = Victim::new();
    let data = data_dir_of(&user);
    as_user(
        &user,
        &format!(
            "ln -s {} {}/.csm.lock",
            victim.file().display(),
            data.path().display()
        ),
    );
    let out = run_csm_timed(&[
        os("run"),
        os("--backend"),
        os("proc"),
        os("--allow-unsafe-data-dir"),
        os("--data-dir"),
        data.path().as_os_str(),
    ]);
    assert_one_line_refusal(&out, &[".csm.lock"]);
    victim.assert_untouched();
}

/// Point 3: `csm-plot --out` into a folder another user owns is refused in one line; with
/// `--allow-unsafe-out-dir` the user's planted temporaries are not followed; a new out
/// folder is 0750 and its charts 0640 whatever the umask.
#[test]
fn csm_plot_out_folder_of_another_user_is_refused_and_its_links_are_not_followed() {
    require_root();
    let user = TestUser::create("out");
    let victim = Victim::new();
    let data = DataDir::new();
    let hour = now_us() / 3_600_000_000 * 3_600_000_000;
    write_rows(data.path(), |s| {
        s.extend((1..60).map(|i| cpu_row(hour - i * 60_000_000, 0, "root")))
    });
    let out_dir = data.beside("charts");
    fs::create_dir(&out_dir).unwrap();
    std::os::unix::fs::chown(&out_dir, Some(user.uid), Some(user.gid)).unwrap();
    let (o, v) = (out_dir.display(), victim.file());
    let v = v.display();
    as_user(
        &user,
        &format!(
            "ln -s {v} {o}/.cpu.svg.tmp && ln -s {v} {o}/.index.html.tmp && ln -s {v} {o}/cpu.svg"
        ),
    );
    let plot = |out: &Path, extra: &[&str]| {
        let t = Instant::now();
        let output = Command::new(csm_bin("csm-plot"))
            .arg("--data-dir")
            .arg(data.path())
            .arg("--out")
            .arg(out)
            .args(["--host", "test", "--from", "-3h", "cpu"])
            .args(extra)
            .output()
            .unwrap();
        assert!(t.elapsed() <= START_WITHIN);
        output
    };
    let refused = plot(&out_dir, &[]);
    assert_one_line_refusal(
        &refused,
        &["--out", "owned by uid", "--allow-unsafe-out-dir"],
    );
    assert_eq!(refused.status.code(), Some(2));
    victim.assert_untouched();

    let allowed = plot(&out_dir, &["--allow-unsafe-out-dir"]);
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    victim.assert_untouched();
    let chart = out_dir.join("cpu.svg");
    assert!(
        fs::symlink_metadata(&chart).unwrap().is_file(),
        "the link was replaced"
    );
    assert_eq!(fs::metadata(&chart).unwrap().mode() & 0o777, 0o640);

    // A new folder under umask 000: 0750, charts 0640.
    let fresh = data.beside("fresh/charts");
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000; exec {} --data-dir {} --out {} --host test --from -3h cpu",
            csm_bin("csm-plot").display(),
            data.path().display(),
            fresh.display()
        ))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(fs::metadata(&fresh).unwrap().mode() & 0o777, 0o750);
    for entry in fs::read_dir(&fresh).unwrap().flatten() {
        assert_eq!(
            entry.metadata().unwrap().mode() & 0o777,
            0o640,
            "{:?}",
            entry.path()
        );
    }
}

/// Point 5: a FIFO as `.csm-netdev-state`, a FIFO as `net/dev` and `/dev/zero` as a
/// process's `status` under `--proc-root` neither hang the start nor fill memory; the
/// daemon names each file and answers SIGTERM; SIGTERM during start-up stops it too.
#[test]
fn a_fifo_or_dev_zero_planted_where_csm_reads_neither_hangs_nor_fills_memory() {
    require_root();
    let user = TestUser::create("fifo");
    let data = data_dir_of(&user);
    let root = data.beside("host");
    copy_tree(&fixtures().join("modern-host/proc"), &root.join("proc"));
    copy_tree(&fixtures().join("modern-host/sys"), &root.join("sys"));
    run(
        "chown",
        &[
            "-R",
            &format!("{}:{}", user.uid, user.gid),
            root.to_str().unwrap(),
        ],
    );
    let (d, p) = (data.path().display(), root.join("proc"));
    let p = p.display();
    as_user(
        &user,
        &format!(
            "mkfifo {d}/.csm-netdev-state && rm {p}/net/dev && mkfifo {p}/net/dev && \
             rm {p}/100/status && ln -s /dev/zero {p}/100/status"
        ),
    );
    let mut daemon = proc_daemon(&data)
        .arg("--allow-unsafe-data-dir")
        .arg("--proc-root")
        .arg(root.join("proc"))
        .arg("--sys-root")
        .arg(root.join("sys"))
        .spawn();
    started(&mut daemon);
    std::thread::sleep(Duration::from_secs(2));
    let peak_kb = peak_rss_kb(daemon.pid());
    let log = stopped(daemon).join("\n");
    assert!(
        log.contains(".csm-netdev-state: not a regular file (a FIFO)"),
        "{log}"
    );
    assert!(
        log.contains("net/dev: not a regular file (a FIFO)"),
        "{log}"
    );
    assert!(
        log.contains("100/status: not a regular file (a character device)"),
        "{log}"
    );
    assert!(peak_kb < 200_000, "peak RSS {peak_kb} kB");

    // SIGTERM at start-up, before the daemon could have installed anything, and while
    // the eBPF backend (auto, on this host) loads its programs.
    for (backend, delay_ms) in [
        ("proc", 0),
        ("proc", 30),
        ("proc", 150),
        ("auto", 50),
        ("auto", 300),
    ] {
        let data = DataDir::new();
        let mut daemon = Daemon::builder().backend(backend).data_dir(&data).spawn();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let t = Instant::now();
        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(daemon.pid() as i32, libc::SIGTERM) };
        wait_until("csm stops on SIGTERM during start-up", STOP_WITHIN, || {
            !daemon.alive()
        });
        assert!(t.elapsed() <= STOP_WITHIN);
    }
}

/// Point 6: an 800 KB Parquet file claiming 30 million rows, planted as an hour of `cpu`,
/// is refused by name before it is decompressed: the daemon's catch-up of roll-ups and
/// csm-plot stay within a small memory.
#[test]
fn a_parquet_bomb_costs_neither_memory_nor_start_up_time() {
    require_root();
    let user = TestUser::create("bomb");
    let data = data_dir_of(&user);
    let hour = now_us() / 3_600_000_000 - 2;
    let bomb = data.beside("bomb.parquet");
    let size = write_bomb(&bomb, hour * 3_600_000_000, 30);
    assert!(size < 2 << 20, "the bomb is small: {size} bytes");
    let (dir, hh) = csm::store::layout::hour_location(
        &csm::store::layout::table_host_dir(data.path(), Table::Cpu, "test"),
        hour,
    );
    as_user(
        &user,
        &format!(
            "mkdir -p {0} && cp {1} {0}/{hh}.parquet",
            dir.display(),
            bomb.display()
        ),
    );
    let mut daemon = proc_daemon(&data).arg("--allow-unsafe-data-dir").spawn();
    started(&mut daemon);
    daemon.wait_for_log("claims 30000000 rows", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    let daemon_peak_kb = peak_rss_kb(daemon.pid());
    let log = stopped(daemon).join("\n");
    assert!(
        log.contains(&format!("{hh}.parquet: claims 30000000 rows")),
        "{log}"
    );
    assert!(
        daemon_peak_kb < 150_000,
        "csm run peak RSS {daemon_peak_kb} kB"
    );

    // Measured from a small parent: a child forked from this test (which built the
    // bomb) would count the test's own peak in its ru_maxrss.
    let measured = python(
        "import resource, subprocess, sys\n\
         p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n\
         sys.stderr.write(p.stderr.decode())\n\
         print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
         print(p.stderr.decode().replace('\\n', ' '))",
        &[
            csm_bin("csm-plot").to_str().unwrap(),
            "--data-dir",
            data.path().to_str().unwrap(),
            "--out",
            data.beside("charts").to_str().unwrap(),
            "--host",
            "test",
            "--from",
            "-4h",
            "cpu",
        ],
        "",
    );
    let (peak, plot_err) = measured.split_once('\n').unwrap();
    let plot_peak_kb: u64 = peak.trim().parse().unwrap();
    eprintln!(
        "bomb of {size} bytes: csm run peak {daemon_peak_kb} kB, csm-plot peak {plot_peak_kb} kB"
    );
    assert!(plot_err.contains("claims 30000000 rows"), "{plot_err}");
    assert!(
        plot_peak_kb < 200_000,
        "csm-plot peak RSS {plot_peak_kb} kB"
    );
}

/// Point 7: names with control characters (a user's name, interfaces a user named in its
/// own namespace, a ping target, a host folder the user planted) give SVGs that parse
/// as XML, file names that never collide, and no raw control character on stderr.
#[test]
fn control_characters_in_names_break_no_chart_and_reach_no_terminal() {
    require_root();
    let user = TestUser::create("ctl");
    let data = data_dir_of(&user);
    let hour = now_us() / 3_600_000_000 * 3_600_000_000;
    let ifaces = ["e\x1b[31m1", "veth@x", "veth#x", "evil\u{202e}gnp"];
    write_rows(data.path(), |s| {
        for i in 1..60 {
            let ts = hour - i * 60_000_000;
            s.push(cpu_row(ts, 1001, "bob\x07\x1b]0;owned\x07"));
            for (n, iface) in ifaces.iter().enumerate() {
                s.push(net_row(ts, iface, n as i64 + 2));
            }
            s.push(PingRow {
                ts_us: ts,
                target: "t\x01\x1b[2J".into(),
                addr: Some("192.0.2.1".into()),
                sent: 3,
                received: 3,
                rtt_min_ms: Some(1.0),
                rtt_avg_ms: Some(1.0),
                rtt_max_ms: Some(1.0),
                rtt_mdev_ms: Some(0.0),
                rtts_ms: vec![1.0, 1.0, 1.0],
                error: None,
            });
        }
    });
    // The user owns one table folder (as in a shared data dir) and plants a host.
    let cpu = data.path().join(Table::Cpu.name());
    std::os::unix::fs::chown(&cpu, Some(user.uid), None).unwrap();
    as_user(
        &user,
        &format!(
            "mkdir '{}/host=x'\"$(printf '\\033[2J\\033]0;pwned\\007')\"",
            cpu.display()
        ),
    );
    let out_dir = data.beside("charts");
    let plot = |extra: &[&str]| {
        Command::new(csm_bin("csm-plot"))
            .arg("--data-dir")
            .arg(data.path())
            .arg("--out")
            .arg(&out_dir)
            .args(["--from", "-3h"])
            .args(extra)
            .output()
            .unwrap()
    };
    let several = plot(&[]);
    let err = stderr(&several);
    assert!(err.contains("holds several hosts"), "{err}");
    assert!(
        err.contains("\\u{1b}[2J"),
        "the planted host is shown escaped: {err}"
    );
    let drawn = plot(&["--host", "test"]);
    assert!(drawn.status.success(), "{}", stderr(&drawn));
    for output in [&several, &drawn] {
        let all = [&output.stdout[..], &output.stderr[..]].concat();
        assert!(
            !all.iter().any(|&b| b < 0x20 && b != b'\n'),
            "a raw control character on the terminal: {:?}",
            String::from_utf8_lossy(&all)
        );
    }
    // The daemon's one-line errors name what they refuse escaped too (here a config path
    // whose name holds a screen-clearing sequence and a carriage return).
    let planted = data.beside("csm\x1b[2J\rpwned.toml");
    fs::write(&planted, "interval = \"often\"\n").unwrap();
    let refused = run_csm([os("run"), os("--config"), planted.as_os_str()]);
    let err = stderr(&refused);
    assert_one_line_refusal(&refused, &["\\u{1b}[2J\\u{d}pwned.toml"]);
    assert!(
        !err.trim_end().bytes().any(|b| b < 0x20),
        "raw control bytes: {err:?}"
    );
    let svgs: Vec<PathBuf> = fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "svg"))
        .collect();
    let paths: Vec<&str> = svgs.iter().map(|p| p.to_str().unwrap()).collect();
    let parsed = python(
        "import sys, xml.etree.ElementTree as ET\n\
         for p in sys.argv[1:]:\n    ET.parse(p)\nprint(len(sys.argv) - 1)",
        &paths,
        "",
    );
    assert_eq!(parsed.trim(), svgs.len().to_string());
    // Each interface its own charts: the two that sanitise alike do not share a file.
    let names: Vec<String> = svgs
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let diff_charts = names.iter().filter(|n| n.starts_with("net-diff-")).count();
    assert_eq!(
        diff_charts,
        ifaces.len(),
        "one chart per interface: {names:?}"
    );
}

/// `--flush-interval` of [`proc_daemon`].
const FLUSH_US: i64 = 1_000_000;

/// Point 8: hundreds of refused starts while a daemon runs remove none of its
/// temporaries: it logs no write error and its rows have no gap.
#[test]
fn refused_second_daemons_touch_nothing_of_the_running_one() {
    require_root();
    let data = DataDir::new();
    let mut daemon = proc_daemon(&data).spawn();
    started(&mut daemon);
    let begin = now_us();
    let t = Instant::now();
    let mut refused = 0;
    while t.elapsed() < Duration::from_secs(8) {
        let out = run_csm([
            os("run"),
            os("--backend"),
            os("proc"),
            os("--host"),
            os("test"),
            os("--data-dir"),
            data.path().as_os_str(),
        ]);
        assert_one_line_refusal(&out, &["in use by another csm"]);
        refused += 1;
    }
    std::thread::sleep(Duration::from_millis(1500));
    let end = now_us();
    let log = stopped(daemon).join("\n");
    assert!(refused >= 50, "only {refused} refused starts");
    assert!(!log.contains("cannot write"), "{log}");
    // No flush was lost: a deleted temporary loses the rows of a whole flush (1 s here),
    // so no stretch of at least that long lacks rows. Shorter stretches can: the /proc
    // backend counts CPU in 10 ms ticks, and an interval in which no uid got one has no
    // row (a 400 ms stretch was seen on a quiet machine). A late sample under load is a
    // longer interval, not a gap.
    let mut intervals: Vec<(i64, i64)> = data
        .rows::<CpuRow>()
        .iter()
        .map(|r| (r.ts_us - r.dur_ms * 1000, r.ts_us))
        .filter(|&(_, stop)| stop > begin && stop < end)
        .collect();
    intervals.sort_unstable();
    intervals.dedup();
    let holes: Vec<(i64, i64)> = intervals
        .windows(2)
        .filter(|w| w[1].0 - w[0].1 >= FLUSH_US)
        .map(|w| (w[0].1, w[1].0))
        .collect();
    assert!(
        holes.is_empty(),
        "holes after {refused} refused starts: {holes:?}"
    );
    let covered_us: i64 = intervals.iter().map(|(s, e)| e - s).sum();
    assert!(
        covered_us >= (end - begin) * 8 / 10,
        "{covered_us} µs of {} covered",
        end - begin
    );
}

/// Point 9: 10,000 ping targets are refused in one line; a negative duration flag is named;
/// under umask 000 every file and folder csm creates has its own mode.
#[test]
fn too_many_ping_targets_and_umask_000_get_limits_and_modes() {
    require_root();
    let data = DataDir::new();
    let targets: Vec<String> = (0..10_000)
        .map(|i| format!("\"127.0.{}.{}\"", i / 250, i % 250 + 1))
        .collect();
    let config = data.config(&format!("[ping]\ntargets = [{}]\n", targets.join(", ")));
    let out = run_csm_timed(&[
        os("run"),
        os("--config"),
        config.as_os_str(),
        os("--data-dir"),
        data.path().as_os_str(),
    ]);
    assert_one_line_refusal(&out, &["10000 ping targets", "at most"]);
    let out = run_csm_timed(&[os("run"), os("--interval"), os("-3s")]);
    assert_one_line_refusal(&out, &["--interval", "-3s"]);

    let fresh = data.beside("umask0");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000; exec {} run --backend proc --host test --interval 200ms \
             --flush-interval 1s --duration 3s --data-dir {}",
            csm_bin("csm").display(),
            fresh.display()
        ))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", stderr(&status));
    let entries = snapshot(&fresh);
    assert!(entries.len() > 5, "{entries:?}");
    for path in entries.keys() {
        let mode = fs::symlink_metadata(path).unwrap().mode() & 0o777;
        let want = if path.is_dir() { 0o750 } else { 0o640 };
        assert_eq!(mode, want, "{}", path.display());
    }
    assert_eq!(fs::metadata(&fresh).unwrap().mode() & 0o777, 0o750);
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
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

fn run(program: &str, args: &[&str]) {
    csm_tests::run(program, args);
}

/// Peak resident memory of a running process (VmHWM), in kB.
fn peak_rss_kb(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in status")
}

/// A valid `cpu` Parquet file of `millions` million identical rows at `ts_us`: one
/// million-row batch written again and again, which dictionary and RLE encoding and
/// zstd shrink to a few hundred kilobytes. Its size in bytes.
fn write_bomb(path: &Path, ts_us: i64, millions: usize) -> u64 {
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::WriterProperties;
    let rows: Vec<CpuRow> = (0..1_000_000)
        .map(|_| cpu_row(ts_us + 1_000_000, 0, "root"))
        .collect();
    let batch = <CpuRow as csm::store::Row>::to_batch(&rows).unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(19).unwrap()))
        .set_dictionary_enabled(true)
        .set_max_row_group_row_count(Some(usize::MAX))
        .build();
    let file = fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    for _ in 0..millions {
        writer.write(&batch).unwrap();
    }
    writer.close().unwrap();
    fs::metadata(path).unwrap().len()
}
