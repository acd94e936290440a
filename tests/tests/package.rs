//! The Debian package and the service's least privilege, as root.
//!
//! - The daemon under exactly the capability bounding set of packaging/csm.service
//!   (setpriv, as systemd would set it) writes every table: cpu, mem (PSS of another
//!   user's process), net, net_uid, ping, events. Without CAP_BPF it falls back to /proc
//!   and says why in its `backend` event.
//! - The package that `cargo xtask deb` built installs with dpkg, its binaries, man pages,
//!   completions, config and unit are what they should be, `/usr/bin/csm run` started the
//!   way the unit starts it collects, and removing and purging keep the data.
//!
//! PID 1 is not systemd on the development machines: the installed unit runs under a
//! real systemd booted in a container (systemd-nspawn over this machine's own /usr), so
//! that its namespaces, read-only paths and system call filter are exercised too.
//!
//! Everything a test creates (the package, users, data) is removed by Drop guards.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use arrow::array::{Array, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

// Only these two helpers of the harness, which is being reworked: the rest is here.
use csm_tests::{require_root, TestUser};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `target/release/<name>`, which `cargo xtask test` builds (and packages) first.
fn binary(name: &str) -> PathBuf {
    let path = workspace().join("target/release").join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test`",
        path.display()
    );
    path
}

/// Every `*.parquet` under `dir`.
fn collect_parquet(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_parquet(&path, out);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
}

/// Every row of a table under a data dir, read with the arrow Parquet reader.
fn read_table(data_dir: &Path, table: &str) -> RecordBatch {
    let mut files = Vec::new();
    collect_parquet(&data_dir.join(table), &mut files);
    assert!(
        !files.is_empty(),
        "no Parquet files for table {table} in {}",
        data_dir.display()
    );
    let batches: Vec<RecordBatch> = files
        .iter()
        .flat_map(|path| {
            let file = std::fs::File::open(path)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
                .build()
                .unwrap()
                .map(|b| b.expect("a readable row group"))
        })
        .collect();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("same schema")
}

/// Waits until the events table holds `event` with a detail starting with `detail`.
fn wait_for_event(data_dir: &Path, event: &str, detail: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let mut files = Vec::new();
        collect_parquet(&data_dir.join("events"), &mut files);
        if !files.is_empty() {
            let events = read_table(data_dir, "events");
            let found = strings(&events, "event")
                .into_iter()
                .zip(strings(&events, "detail"))
                .any(|(e, d)| {
                    e.as_deref() == Some(event) && d.is_some_and(|d| d.starts_with(detail))
                });
            if found {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no `{event} {detail}…` event within {timeout:?}");
}

fn i64s(batch: &RecordBatch, name: &str) -> Vec<i64> {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap_or_else(|| panic!("column {name} is not Int64"))
        .values()
        .to_vec()
}

fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let col = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"));
    let a = col
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap_or_else(|| panic!("column {name} is not Utf8"));
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
        .collect()
}

/// SIGTERM, then SIGKILL after 10 s: a clean stop removes the pinned eBPF state.
fn stop_gracefully(child: &mut Child) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `Key=value` lines of a unit file (the last one wins, as for systemd's single-valued
/// settings).
fn unit_setting(unit: &str, key: &str) -> String {
    unit.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit sets no {key}"))
        .to_string()
}

/// The unit's CapabilityBoundingSet as setpriv's `--bounding-set` argument
/// (`-all,+bpf,+perfmon,…`), minus the capabilities in `drop`.
fn bounding_set(unit: &str, drop: &[&str]) -> (String, BTreeSet<String>) {
    let caps: BTreeSet<String> = unit_setting(unit, "CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| {
            c.strip_prefix("CAP_")
                .unwrap_or_else(|| panic!("{c} is not a capability name"))
                .to_lowercase()
        })
        .filter(|c| !drop.contains(&c.as_str()))
        .collect();
    let arg = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    (arg, caps)
}

/// The scheduling policy (field 41 of stat(5)) of each thread of `pid`.
fn thread_policies(pid: u32) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let after_name = &stat[stat.rfind(')')? + 2..];
            after_name.split_whitespace().nth(41 - 3)?.parse().ok()
        })
        .collect()
}

/// The kernel's capability numbers, for checking /proc/<pid>/status of the daemon.
fn cap_number(name: &str) -> u32 {
    match name {
        "net_admin" => 12,
        "net_raw" => 13,
        "sys_ptrace" => 19,
        "sys_admin" => 21,
        "sys_nice" => 23,
        "perfmon" => 38,
        "bpf" => 39,
        other => panic!("no number for capability {other} in this test"),
    }
}

/// A command run as root under the unit's privileges: only `bounding` in the bounding set
/// (root's permitted and effective sets follow it at exec), no inheritable or ambient
/// capabilities, no new privileges.
fn under_caps(bounding: &str, program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--bounding-set={bounding}"))
        .args([
            "--inh-caps=-all",
            "--ambient-caps=-all",
            "--no-new-privs",
            "--",
        ])
        .arg(program);
    cmd
}

/// A `csm run` under test: stopped with SIGTERM (then SIGKILL) when dropped.
struct Running {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("NO_COLOR", "1")
            .env_remove("NOTIFY_SOCKET")
            .spawn()
            .expect("start csm run under setpriv");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut running = Running {
            child: Some(child),
            lines,
            log: Vec::new(),
        };
        running.wait_for("csm collecting", Duration::from_secs(60));
        running
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn wait_for(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.log.push(line);
                    if found {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("csm never logged {needle:?}; log:\n{}", self.log.join("\n"));
    }

    /// SIGTERM; the daemon must exit 0 (a clean stop writes the last interval).
    fn stop(mut self) -> Vec<String> {
        let mut child = self.child.take().expect("running");
        // SAFETY: signalling our own child (setpriv exec'd csm in place).
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().expect("wait for csm");
        self.log.extend(self.lines.try_iter());
        assert!(
            status.success(),
            "csm exited with {status}; log:\n{}",
            self.log.join("\n")
        );
        std::mem::take(&mut self.log)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_gracefully(&mut child);
        }
    }
}

/// The capability sets of a running process, from /proc/<pid>/status.
fn caps_of(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    u64::from_str_radix(hex.trim(), 16).expect("hex capability set")
}

/// Loopback TCP traffic from this (root) process: `bytes` each way.
fn loopback_traffic(bytes: usize) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; bytes];
        conn.read_exact(&mut buf).expect("read");
        conn.write_all(&buf).expect("echo");
    });
    let mut client = TcpStream::connect(addr).expect("connect");
    client.write_all(&vec![7u8; bytes]).expect("send");
    let mut back = vec![0u8; bytes];
    client.read_exact(&mut back).expect("read echo");
    server.join().unwrap();
}

fn events(data_dir: &Path) -> Vec<(String, String)> {
    let batch = read_table(data_dir, "events");
    strings(&batch, "event")
        .into_iter()
        .zip(strings(&batch, "detail"))
        .map(|(e, d)| (e.unwrap_or_default(), d.unwrap_or_default()))
        .collect()
}

fn source_unit() -> String {
    let path = workspace().join("packaging/csm.service");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn the_units_capabilities_are_enough_for_every_table() {
    require_root();
    let unit = source_unit();
    let (bounding, caps) = bounding_set(&unit, &[]);
    let data = tempfile::tempdir().unwrap();
    // Another user's process: its PSS is only readable with CAP_SYS_PTRACE.
    let user = TestUser::create("pk");
    let mut sleeper = user
        .shell("exec sleep 60")
        .spawn()
        .expect("start sleep as test user");

    // Ping measurements keep to their interval's boundaries: every 2 s here, so that a
    // few seconds hold some (the default is once a minute).
    let config = data.path().join("csm.toml");
    std::fs::write(
        &config,
        "[ping]\ninterval = \"2s\"\ntargets = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    let mut cmd = under_caps(&bounding, &binary("csm"));
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(data.path())
        .args(["--interval", "1s", "--flush-interval", "1s"]);
    let daemon = Running::start(cmd);

    // The daemon holds exactly the unit's capabilities, no more.
    let expected: u64 = caps.iter().map(|c| 1u64 << cap_number(c)).sum();
    assert_eq!(caps_of(daemon.pid(), "CapBnd"), expected, "bounding set");
    assert_eq!(caps_of(daemon.pid(), "CapEff"), expected, "effective set");

    // Traffic before the network collector's first sample is its baseline, not counted.
    wait_for_event(data.path(), "net_maps", "start", Duration::from_secs(20));
    // CAP_SYS_NICE is enough for the time-keeping threads' real-time priority.
    let policies = thread_policies(daemon.pid());
    assert!(
        policies.iter().filter(|&&p| p == libc::SCHED_RR).count() >= 2,
        "net and ping threads at SCHED_RR: {policies:?}"
    );
    loopback_traffic(4 << 20);
    // Memory is sampled at start and every 10 s (and at stop).
    std::thread::sleep(Duration::from_secs(5));
    let log = daemon.stop();
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    let events = events(data.path());
    let backend = events
        .iter()
        .find(|(e, _)| e == "backend")
        .map(|(_, d)| d.clone())
        .expect("a backend event");
    assert!(
        backend.starts_with("ebpf")
            && backend.contains("net per interface")
            && backend.contains("net per uid")
            && backend.contains("mem rss/swap by task iterator"),
        "under the unit's capabilities every eBPF collector attaches; backend: {backend}\nlog:\n{}",
        log.join("\n")
    );
    for table in ["cpu", "mem", "net", "net_uid", "ping"] {
        assert!(
            read_table(data.path(), table).num_rows() > 0,
            "{table} has rows"
        );
    }
    let cpu = read_table(data.path(), "cpu");
    assert!(strings(&cpu, "source")
        .iter()
        .all(|s| s.as_deref() == Some("ebpf")));

    // The loopback traffic (4 MiB each way) is seen on lo and for uid 0. (How csm
    // counts lo exactly against the kernel's counters is the net tests' business; here
    // it is whether the programs attached under these capabilities.)
    let net = read_table(data.path(), "net");
    let lo_tx: i64 = strings(&net, "iface")
        .iter()
        .zip(i64s(&net, "tx_bytes"))
        .filter(|(i, _)| i.as_deref() == Some("lo"))
        .map(|(_, b)| b)
        .sum();
    assert!(lo_tx >= 4 << 20, "lo tx {lo_tx} bytes");
    let net_uid = read_table(data.path(), "net_uid");
    let root_tx: i64 = i64s(&net_uid, "uid")
        .iter()
        .zip(i64s(&net_uid, "tx_bytes"))
        .filter(|(u, _)| **u == 0)
        .map(|(_, b)| b)
        .sum();
    assert!(root_tx >= 4 << 20, "uid 0 tx {root_tx} bytes");

    // PSS of the test user's process was read (ptrace-checked).
    let mem = read_table(data.path(), "mem");
    let pss = mem.column_by_name("pss_bytes").expect("pss_bytes column");
    let uids = i64s(&mem, "uid");
    let user_pss: Vec<Option<i64>> = (0..mem.num_rows())
        .filter(|&i| uids[i] == user.uid as i64)
        .map(|i| {
            let a = pss.as_any().downcast_ref::<Int64Array>().unwrap();
            (!a.is_null(i)).then(|| a.value(i))
        })
        .collect();
    assert!(!user_pss.is_empty(), "no mem row for the test user");
    // The first sample walks PSS (later ones only every mem.pss_interval, 5 min).
    assert!(
        user_pss[0].is_some_and(|p| p > 0) && user_pss.iter().flatten().all(|&p| p > 0),
        "PSS of another user's process needs CAP_SYS_PTRACE: {user_pss:?}"
    );

    // The ping to loopback went out on the raw socket (CAP_NET_RAW) and came back.
    let ping = read_table(data.path(), "ping");
    let sent = i64s(&ping, "sent");
    let received = i64s(&ping, "received");
    assert!(
        sent.iter().all(|&s| s > 0) && received == sent,
        "ping sent {sent:?} received {received:?}; log:\n{}",
        log.join("\n")
    );
}

#[test]
fn without_cap_bpf_it_falls_back_to_proc_and_says_why() {
    require_root();
    let unit = source_unit();
    let (bounding, _) = bounding_set(&unit, &["bpf"]);
    let data = tempfile::tempdir().unwrap();
    let mut cmd = under_caps(&bounding, &binary("csm"));
    cmd.arg("run").arg("--data-dir").arg(data.path()).args([
        "--interval",
        "1s",
        "--flush-interval",
        "1s",
    ]);
    let daemon = Running::start(cmd);
    assert_eq!(
        caps_of(daemon.pid(), "CapEff") & (1 << cap_number("bpf")),
        0
    );
    std::thread::sleep(Duration::from_secs(3));
    daemon.stop();

    let backend = events(data.path())
        .into_iter()
        .find(|(e, _)| e == "backend")
        .map(|(_, d)| d)
        .expect("a backend event");
    assert!(backend.starts_with("proc ("), "backend: {backend}");
    assert!(
        backend.contains("lacks CAP_BPF"),
        "the backend event says why eBPF is out: {backend}"
    );
    let cpu = read_table(data.path(), "cpu");
    assert!(cpu.num_rows() > 0);
    assert!(strings(&cpu, "source")
        .iter()
        .all(|s| s.as_deref() == Some("proc")));
    assert!(read_table(data.path(), "mem").num_rows() > 0);
}

// ----- the package ---------------------------------------------------------------------

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "csm"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("installed"))
        .unwrap_or(false)
}

/// Purges the package (whatever state the test left it in) and removes /var/lib/csm if
/// the test created it.
struct PackageGuard {
    created_data_dir: bool,
}

impl Drop for PackageGuard {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "csm"]).output();
        if self.created_data_dir {
            let _ = std::fs::remove_dir_all("/var/lib/csm");
        }
    }
}

fn deb_path() -> PathBuf {
    let path = workspace().join(format!(
        "target/debian/csm_{}_amd64.deb",
        env!("CARGO_PKG_VERSION")
    ));
    assert!(
        path.exists(),
        "{} is missing: `cargo xtask test` builds it first (or run `cargo xtask deb`)",
        path.display()
    );
    path
}

/// Whether an ELF file has DWARF debug info (a `.debug_info` section).
fn has_debug_info(path: &Path) -> bool {
    let out = run(Command::new("readelf").args(["-S", "-W"]).arg(path));
    String::from_utf8_lossy(&out.stdout).contains(".debug_info")
}

#[test]
fn the_package_installs_runs_and_leaves_the_data_when_removed() {
    require_root();
    let deb = deb_path();
    assert!(
        !installed(),
        "csm is already installed on this machine: this test installs and purges it, so it \
         will not run over an install of yours (dpkg --purge csm first)"
    );
    let data_dir = Path::new("/var/lib/csm");
    let guard = PackageGuard {
        created_data_dir: !data_dir.exists(),
    };

    let out = run(Command::new("dpkg").arg("-i").arg(&deb));
    assert!(installed(), "dpkg -i: {}", text(&out));

    // The binaries: stripped (the debug info is in the -dbgsym .ddeb beside the .deb),
    // together under 45 MB (24.1 + 15.5 MB this round: the typed reader, the metrics
    // endpoint and the alerts took them from 25.8 MB), the same build as target/release.
    let mut total = 0;
    for bin in ["/usr/bin/csm", "/usr/bin/csm-plot"] {
        let meta = std::fs::metadata(bin).unwrap_or_else(|e| panic!("{bin}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o777, 0o755, "{bin} mode");
        assert!(
            !has_debug_info(Path::new(bin)),
            "{bin} still has debug info"
        );
        total += meta.len();
    }
    assert!(total < 45_000_000, "installed binaries take {total} bytes");
    let dbgsym = deb.with_file_name(format!(
        "csm-dbgsym_{}_amd64.ddeb",
        env!("CARGO_PKG_VERSION")
    ));
    let listing = text(&run(Command::new("dpkg-deb").arg("-c").arg(&dbgsym)));
    assert!(
        listing.contains("/usr/lib/debug/.build-id/"),
        "the dbgsym package holds the debug files:\n{listing}"
    );

    // --version names the version and a commit of this repository (the one the package
    // was built from; HEAD may have moved since `cargo xtask deb`).
    let version = text(&run(Command::new("/usr/bin/csm").arg("--version")));
    let expected_prefix = format!("csm {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(
        version.starts_with(&expected_prefix),
        "--version: {version}"
    );
    let commit = version[expected_prefix.len()..]
        .trim()
        .trim_end_matches(')');
    if commit != "unknown" {
        assert!(
            commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit()),
            "--version names the commit: {version}"
        );
        let known = Command::new("git")
            .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
            .current_dir(workspace())
            .status()
            .expect("run git");
        assert!(
            known.success(),
            "{commit} is not a commit of this repository"
        );
    }

    // Man pages, read the way man reads them.
    for (page, must) in [
        ("csm.1.gz", &["CSM_LOG", "/etc/csm.toml", "csm\\-run"][..]),
        ("csm-run.1.gz", &["--config", "--data-dir", "--backend"][..]),
        ("csm-check.1.gz", &["--proc-root"][..]),
        (
            "csm-top.1.gz",
            &["--once", "--interval", "Keys:", "reverses"][..],
        ),
        ("csm-report.1.gz", &["--from", "--tz", "--format"][..]),
        ("csm-plot.1.gz", &["--data-dir", "--from"][..]),
    ] {
        let path = format!("/usr/share/man/man1/{page}");
        let out = run(Command::new("man")
            .args(["-l", "-P", "cat", &path])
            .env("MANWIDTH", "100")
            .env("LC_ALL", "C.UTF-8"));
        let shown = String::from_utf8_lossy(&out.stdout).replace('\u{2010}', "-");
        for word in must {
            let word = word.replace("\\-", "-");
            assert!(shown.contains(&word), "{page} lacks {word}:\n{shown}");
        }
    }

    // Completions that bash loads, and the other shells' files.
    run(Command::new("bash").args([
        "-c",
        "source /usr/share/bash-completion/completions/csm && complete -p csm \
         && source /usr/share/bash-completion/completions/csm-plot && complete -p csm-plot",
    ]));
    for file in [
        "/usr/share/zsh/vendor-completions/_csm",
        "/usr/share/zsh/vendor-completions/_csm-plot",
        "/usr/share/fish/vendor_completions.d/csm.fish",
        "/usr/share/fish/vendor_completions.d/csm-plot.fish",
    ] {
        assert!(Path::new(file).is_file(), "{file} missing");
    }

    // /etc/csm.toml: a conffile, every setting commented out (no ping target is pinged
    // by a fresh install), and csm accepts it.
    let conffiles = text(&run(Command::new("dpkg-query").args([
        "-W",
        "-f=${Conffiles}",
        "csm",
    ])));
    assert!(
        conffiles.contains("/etc/csm.toml"),
        "conffiles: {conffiles}"
    );
    let config = std::fs::read_to_string("/etc/csm.toml").expect("read /etc/csm.toml");
    assert!(config
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')));
    assert!(config.contains("# data_dir = \"/var/lib/csm\""));

    // The data dir, 0750 root:root.
    let meta = std::fs::metadata(data_dir).expect("postinst creates /var/lib/csm");
    assert!(meta.is_dir());
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    if guard.created_data_dir {
        assert_eq!(meta.permissions().mode() & 0o7777, 0o750);
    }

    // The unit as installed.
    let unit_path = Path::new("/usr/lib/systemd/system/csm.service");
    let unit = std::fs::read_to_string(unit_path).expect("the unit is installed");
    assert_eq!(
        unit,
        source_unit(),
        "the package ships packaging/csm.service"
    );
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit_path)
        .output()
        .expect("run systemd-analyze verify");
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}",
        text(&verify)
    );
    assert!(
        !text(&verify).contains("csm"),
        "systemd-analyze verify complains about csm: {}",
        text(&verify)
    );

    // Start it the way the unit does: its ExecStart, its capability set. Into the real
    // /var/lib/csm when the test created it (it is removed at the end), else into a
    // temporary dir (someone's data is there: not ours to write into).
    let exec_start = unit_setting(&unit, "ExecStart");
    let mut words = exec_start.split_whitespace();
    let program = PathBuf::from(words.next().expect("a program"));
    assert_eq!(program, Path::new("/usr/bin/csm"));
    let (bounding, _) = bounding_set(&unit, &[]);
    let scratch = tempfile::tempdir().unwrap();
    let run_dir = if guard.created_data_dir {
        data_dir
    } else {
        scratch.path()
    };
    let mut cmd = under_caps(&bounding, &program);
    cmd.args(words);
    if !guard.created_data_dir {
        cmd.arg("--data-dir").arg(run_dir);
    }
    // Short rows and flushes, so that a few seconds give rows (the config has no key
    // for these that a fresh install sets).
    cmd.args(["--interval", "1s", "--flush-interval", "1s"]);
    let daemon = Running::start(cmd);
    std::thread::sleep(Duration::from_secs(3));
    daemon.stop();
    let cpu = read_table(run_dir, "cpu");
    assert!(cpu.num_rows() > 0);
    let kinds: BTreeSet<String> = events(run_dir).into_iter().map(|(e, _)| e).collect();
    for kind in ["start", "backend", "stop"] {
        assert!(kinds.contains(kind), "events: {kinds:?}");
    }
    // The installed unit under a real systemd, with its namespaces and system call filter.
    service_under_systemd();

    let parquet_files = || {
        let mut files = Vec::new();
        collect_parquet(data_dir, &mut files);
        files.len()
    };
    let files_before = parquet_files();

    // Remove: binaries and unit gone; config and data kept.
    let out = run(Command::new("dpkg").args(["-r", "csm"]));
    assert!(!Path::new("/usr/bin/csm").exists());
    assert!(!unit_path.exists());
    assert!(
        Path::new("/etc/csm.toml").exists(),
        "remove keeps the conffile"
    );
    assert!(data_dir.is_dir(), "remove keeps /var/lib/csm");
    assert_eq!(
        parquet_files(),
        files_before,
        "remove keeps every data file"
    );
    assert!(
        text(&out).contains("stays in /var/lib/csm"),
        "remove says where the data is: {}",
        text(&out)
    );

    // Purge: config gone; the data stays, and purge says so.
    let out = run(Command::new("dpkg").args(["--purge", "csm"]));
    assert!(!installed());
    assert!(
        !Path::new("/etc/csm.toml").exists(),
        "purge removes the conffile"
    );
    assert!(data_dir.is_dir(), "purge keeps /var/lib/csm");
    assert_eq!(parquet_files(), files_before, "purge keeps every data file");
    assert!(
        text(&out).contains("purge leaves the collected data: /var/lib/csm"),
        "purge says what it leaves: {}",
        text(&out)
    );
    assert!(text(&out).contains("rm -r /var/lib/csm"));
}

/// A systemd-nspawn container, halted (SIGTERM: systemd stops csm.service cleanly, then
/// the container) when dropped.
struct Container(Option<Child>);

impl Container {
    fn halt(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.0.take()?;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Boots systemd in a container over the host's /usr (where the package is installed;
/// /etc and /var are fresh tmpfs) with `systemd.wants=csm.service`, as a machine whose
/// admin ran `systemctl enable --now csm` would. The container keeps all capabilities and
/// allows bpf and perf_event_open, so what confines csm is the unit, as on a host.
fn service_under_systemd() {
    let data = tempfile::tempdir().unwrap();
    let journal = tempfile::tempdir().unwrap();
    let etc = tempfile::tempdir().unwrap();
    let config = etc.path().join("csm.toml");
    std::fs::write(
        &config,
        "[ping]\ninterval = \"2s\"\ntargets = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    let child = Command::new("systemd-nspawn")
        .args([
            "--directory=/",
            "--volatile=yes",
            "--register=no",
            "--keep-unit",
            "--capability=all",
            "--system-call-filter=bpf perf_event_open",
            "--console=pipe",
            "--quiet",
            "--bind=/sys/fs/bpf",
        ])
        .arg(format!("--bind-ro={}:/etc/csm.toml", config.display()))
        .arg(format!("--bind={}:/var/lib/csm", data.path().display()))
        .arg(format!(
            "--bind={}:/var/log/journal",
            journal.path().display()
        ))
        .args(["--boot", "--", "systemd.wants=csm.service"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start systemd-nspawn (cargo xtask test installs systemd-container)");
    let mut container = Container(Some(child));
    // Rows within seconds of the start (flushes every 10 s at the first hour's start:
    // the first flush comes within a second), then a few measurements more.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut files = Vec::new();
    while Instant::now() < deadline && files.is_empty() {
        std::thread::sleep(Duration::from_millis(500));
        files.clear();
        collect_parquet(&data.path().join("ping"), &mut files);
    }
    assert!(!files.is_empty(), "csm.service wrote no ping rows in 90 s");
    std::thread::sleep(Duration::from_secs(3));
    container.halt();

    let log = text(&run(Command::new("journalctl")
        .arg("--directory")
        .arg(journal.path())
        .args(["--no-pager", "--unit=csm.service", "--output=cat"])));
    // Type=notify: systemd calls it started only after READY=1.
    for line in [
        "Started csm.service",
        "csm collecting",
        "stopping (SIGTERM)",
        "csm.service: Deactivated successfully",
    ] {
        assert!(log.contains(line), "the journal lacks {line:?}:\n{log}");
    }
    assert!(!log.contains("Read-only file system"), "journal:\n{log}");
    let events = events(data.path());
    let backend = events
        .iter()
        .find(|(e, _)| e == "backend")
        .map(|(_, d)| d.as_str())
        .unwrap_or_default();
    assert!(
        backend.starts_with("ebpf") && backend.contains("net per uid"),
        "backend under the unit: {backend}\n{log}"
    );
    assert!(
        !events
            .iter()
            .any(|(e, d)| e == "pins" && d.contains("not pinned")),
        "the unit lets csm pin its state in /sys/fs/bpf: {events:?}"
    );
    for table in ["cpu", "mem", "net", "ping"] {
        assert!(
            read_table(data.path(), table).num_rows() > 0,
            "{table} under systemd"
        );
    }
    let ping = read_table(data.path(), "ping");
    assert_eq!(
        i64s(&ping, "received"),
        i64s(&ping, "sent"),
        "raw ICMP under the unit"
    );
}
