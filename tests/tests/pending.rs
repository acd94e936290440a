//! A stop whose last flush fails (the data dir's file system is full) spills the rows it
//! could not write and removes its eBPF pins: no csm pin is left, the programs it loaded
//! are gone from the kernel, and the next start (with the space back) writes every row,
//! exact against a test user's CPU burn. A spill planted under the fallback's name (a
//! link), or holding a FIFO or an oversized file, is refused with one line, not followed
//! and not read.
//!
//! Needs root (eBPF, mount, useradd); `cargo test --release -p csm-tests --test pending`.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use csm::daemon::pending::{Places, IN_DATA_DIR};
use csm::store::{CpuRow, Event, Source, StoreOptions, TableWriter};
use csm_tests::{now_us, Daemon, DataDir, TestUser, Tmpfs};

/// Removes the fallback spill of a data dir, whatever the test left there.
struct Fallback(PathBuf);

impl Fallback {
    fn of(data: &DataDir) -> Fallback {
        Fallback(Places::new(data.path(), data.path()).fallback())
    }
}

impl Drop for Fallback {
    fn drop(&mut self) {
        if fs::symlink_metadata(&self.0).is_ok_and(|m| m.is_dir()) {
            let _ = fs::remove_dir_all(&self.0);
        } else {
            let _ = fs::remove_file(&self.0);
        }
        let mut staging = self.0.clone().into_os_string();
        staging.push(".new");
        let _ = fs::remove_dir_all(staging);
    }
}

/// The ids of the eBPF programs a process holds (from its descriptors' fdinfo).
fn prog_ids(pid: u32) -> Vec<u32> {
    let mut ids: Vec<u32> = fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .flat_map(|info| {
            info.lines()
                .filter_map(|l| l.strip_prefix("prog_id:"))
                .filter_map(|v| v.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Whether the kernel still has program `id` (BPF_PROG_GET_FD_BY_ID).
fn prog_exists(id: u32) -> bool {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    let attr: [u32; 4] = [id, 0, 0, 0];
    // SAFETY: bpf(2) reads `size_of_val(&attr)` bytes of a valid local.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_GET_FD_BY_ID,
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd >= 0 {
        // SAFETY: a descriptor the kernel just gave us.
        unsafe { libc::close(fd as i32) };
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT)
}

fn fill(fs_root: &Path) -> PathBuf {
    let filler = fs_root.join("filler");
    let mut file = File::create(&filler).unwrap();
    let chunk = vec![0u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    filler
}

#[test]
fn a_failed_final_flush_spills_the_rows_and_removes_the_pins() {
    csm_tests::require_root();
    let fs_mount = Tmpfs::mount("4m").expect("mount a tmpfs");
    let data = DataDir::create_in(fs_mount.path());
    let fallback = Fallback::of(&data);
    let burner = TestUser::create("spill");
    let daemon = Daemon::killable(&data)
        .args(["--interval", "1s", "--flush-interval", "1s"])
        .spawn();
    sleep(Duration::from_millis(1500));
    let programs = prog_ids(daemon.pid());
    assert!(!programs.is_empty(), "the daemon holds its eBPF programs");
    assert_eq!(data.pin_dirs().len(), 1, "the daemon pins its state");
    let burn = burner
        .shell("while :; do :; done")
        .spawn()
        .expect("start the burn");
    sleep(Duration::from_millis(1500));
    let filler = fill(fs_mount.path());
    let full_at = now_us();
    sleep(Duration::from_secs(3));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(burn.id() as i32, libc::SIGKILL) };
    let (_, burn_ns) = csm_tests::wait_cpu_ns(burn);
    sleep(Duration::from_millis(1500));

    // The stop's last flush fails: the rows go to the fallback, the pins go.
    let pid = daemon.pid();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let (status, log) = daemon.wait_status();
    let log = log.join("\n");
    assert!(
        !status.success(),
        "a failed final flush is a failure:\n{log}"
    );
    let kept = format!("kept in {}", fallback.0.display());
    assert!(
        log.contains(&kept),
        "the log says where the rows are:\n{log}"
    );
    assert!(
        data.pin_dirs().is_empty(),
        "pins left after the spill: {:?}",
        data.pin_dirs()
    );
    // The kernel frees a program after an RCU grace period (tracing programs: a tasks
    // trace one), not at the last close.
    let alive = || -> Vec<u32> {
        programs
            .iter()
            .copied()
            .filter(|&id| prog_exists(id))
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !alive().is_empty() && std::time::Instant::now() < deadline {
        sleep(Duration::from_millis(100));
    }
    assert!(
        alive().is_empty(),
        "programs {:?} of {programs:?} still loaded",
        alive()
    );
    assert!(
        fallback.0.join("cpu.parquet").is_file(),
        "the cpu rows are spilled"
    );
    let spilled_mode = fs::metadata(&fallback.0).unwrap().permissions().mode() & 0o777;
    assert_eq!(spilled_mode, 0o700);

    // Space back: the next start writes the spilled rows and removes the spill.
    fs::remove_file(&filler).unwrap();
    let mut daemon = Daemon::killable(&data)
        .args(["--interval", "1s", "--flush-interval", "1s"])
        .spawn();
    daemon.wait_for_log("taken in from", Duration::from_secs(10));
    sleep(Duration::from_millis(2500));
    daemon.stop();
    assert!(!fallback.0.exists(), "the spill is removed once written");
    assert!(data.pin_dirs().is_empty());
    data.read_every_file().unwrap();

    let rows: Vec<CpuRow> = (data.rows::<CpuRow>().into_iter())
        .filter(|r| r.uid == burner.uid as i64)
        .collect();
    let charged: i64 = rows.iter().map(|r| r.cpu_ns).sum();
    let off = (charged - burn_ns as i64).abs() as f64 / burn_ns as f64;
    let while_full = rows
        .iter()
        .filter(|r| r.ts_us > full_at + 1_000_000)
        .count();
    eprintln!(
        "burner: csm {:.4} s vs kernel {:.4} s ({:.2} % off), {while_full} rows from while full",
        charged as f64 / 1e9,
        burn_ns as f64 / 1e9,
        off * 100.0
    );
    assert!(
        off < 0.02,
        "burner: csm {charged} ns vs kernel {burn_ns} ns"
    );
    assert!(while_full >= 3, "rows collected while full: {while_full}");
    let events: Vec<Event> = data.events().into_iter().map(|(_, e)| e).collect();
    assert!(
        (events.iter()).any(|e| matches!(e, Event::Pins(t) if t.contains("taken in from"))),
        "{events:?}"
    );
    assert!(events.iter().any(|e| matches!(e, Event::Stop(_))));
}

/// A real cpu file of one row for `uid`, as csm writes them.
fn cpu_file(dir: &Path, uid: i64) -> PathBuf {
    let mut writer = TableWriter::<CpuRow>::new(&StoreOptions::new(dir, "test"));
    writer.push(CpuRow {
        ts_us: now_us(),
        dur_ms: 1000,
        uid,
        user: None,
        cpu_ns: 123_456_789,
        cpu_pct: 12.3,
        source: Source::Ebpf,
    });
    assert!(writer.flush(now_us()).is_empty());
    csm::store::table_files(dir, csm::store::Table::Cpu)
        .unwrap()
        .pop()
        .unwrap()
}

#[test]
fn a_planted_spill_is_refused_and_not_followed() {
    csm_tests::require_root();
    const PLANTED_UID: i64 = 4_242_424;
    let data = DataDir::new();
    let fallback = Fallback::of(&data);
    let user = TestUser::create("plant");
    // The user's folder, with a spill that would add a row if csm read it.
    let theirs = tempfile::tempdir().unwrap();
    fs::copy(
        cpu_file(theirs.path(), PLANTED_UID),
        theirs.path().join("cpu.parquet"),
    )
    .unwrap();
    for path in [
        theirs.path().to_path_buf(),
        theirs.path().join("cpu.parquet"),
    ] {
        std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid)).unwrap();
    }
    csm::sources::ebpf::pins::open_pending_root(true).unwrap();
    symlink(theirs.path(), &fallback.0).unwrap();
    // In the data dir: a FIFO and an oversized file under spill names.
    let in_data = data.path().join(IN_DATA_DIR);
    fs::create_dir(&in_data).unwrap();
    fs::set_permissions(&in_data, fs::Permissions::from_mode(0o700)).unwrap();
    let fifo = std::ffi::CString::new(
        in_data
            .join("cpu.parquet")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);

    let run = |what: &str| {
        let mut daemon = Daemon::killable(&data).args(["--interval", "1s"]).spawn();
        daemon.wait_for_log("rows kept there are not taken in", Duration::from_secs(10));
        sleep(Duration::from_millis(1500));
        let log = daemon.stop().join("\n");
        let refusals: Vec<&str> = log.lines().filter(|l| l.contains("not taken in")).collect();
        assert_eq!(
            refusals.len(),
            2,
            "{what}: one line per planted spill:\n{log}"
        );
        refusals.join("\n")
    };
    let refusals = run("FIFO");
    assert!(refusals.contains("not followed"), "{refusals}");
    assert!(refusals.contains("not a regular file"), "{refusals}");

    // An oversized file in place of the FIFO.
    fs::remove_file(in_data.join("cpu.parquet")).unwrap();
    File::create(in_data.join("cpu.parquet"))
        .unwrap()
        .set_len(600 << 20)
        .unwrap();
    let refusals = run("oversized");
    assert!(
        refusals.contains("more than a spill ever holds"),
        "{refusals}"
    );

    // Nothing was followed, read or removed.
    assert!(fs::symlink_metadata(&fallback.0).unwrap().is_symlink());
    assert!(theirs.path().join("cpu.parquet").is_file());
    assert!(in_data.join("cpu.parquet").is_file());
    let planted = (data.rows::<CpuRow>().into_iter())
        .filter(|r| r.uid == PLANTED_UID)
        .count();
    assert_eq!(planted, 0, "rows of a planted spill were taken in");
    let events = data.events();
    let refused = (events.iter())
        .filter(|(_, e)| matches!(e, Event::Pins(t) if t.contains("not taken in")))
        .count();
    assert_eq!(refused, 4, "one events row per refusal and start");
}
