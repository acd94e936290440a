//! The pin folder as an unprivileged local user attacks it (issue 11, point 1).
//!
//! bpffs as the kernel mounts it by default is 1777: before csm's first start a user
//! can create `/sys/fs/bpf/csm` and plant, under a pin folder's name, a link to any
//! folder; csm used to "remove old pins" through it, deleting every file there as root.
//! Each test runs the daemon in a mount namespace of its own, on a bpffs of its own, so
//! that the host's pins (and other daemons) are not touched.
//!
//! Needs root; `cargo test --release -p csm-tests --test pin_folder`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use csm::sources::ebpf::pins::PinDir;
use csm::store::Event;
use csm_tests::{require_root, Daemon, DataDir, TestUser};

/// Name, mode and content of every file in a folder.
fn snapshot(dir: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let meta = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                (meta.mode(), fs::read(e.path()).unwrap()),
            )
        })
        .collect()
}

/// `unshare --mount` running `setup` in the new namespace, then exec'ing csm.
fn in_mount_namespace(setup: &str) -> Vec<String> {
    [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &format!("set -e; {setup}; exec \"$0\" \"$@\""),
    ]
    .map(String::from)
    .to_vec()
}

/// Starts the daemon; fails the test unless it logs `csm collecting` within 5 s.
fn start_within_5s(daemon: Daemon) -> Daemon {
    let mut daemon = daemon;
    let started = Instant::now();
    daemon.wait_for_log("csm collecting", Duration::from_secs(5));
    eprintln!("collecting after {:?}", started.elapsed());
    daemon
}

/// SIGTERM; fails the test unless the daemon exits cleanly within 2 s.
fn stop_within_2s(daemon: Daemon) -> Vec<String> {
    let asked = Instant::now();
    let log = daemon.stop();
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "SIGTERM took {took:?} to stop csm"
    );
    log
}

#[test]
fn a_link_planted_as_a_pin_folder_deletes_nothing() {
    require_root();
    let attacker = TestUser::create("pin");
    let victim = tempfile::tempdir().unwrap();
    for (name, text) in [("passwd", "root:x:0:0\n"), ("keys", "secret\n")] {
        fs::write(victim.path().join(name), text).unwrap();
        fs::set_permissions(victim.path().join(name), fs::Permissions::from_mode(0o600)).unwrap();
    }
    let before = snapshot(victim.path());
    let data = DataDir::new();
    let pins = PinDir::for_data_dir(Path::new("/sys/fs/bpf"), data.path()).name();
    let (key, _) = pins.split_once('-').unwrap();
    // Links under this build's name (adopted, then "unusable pins replaced") and under
    // another build's (removed as old pins): both used to delete through the link.
    let plant = format!(
        "mkdir /sys/fs/bpf/csm && ln -s {v} /sys/fs/bpf/csm/{pins} && ln -s {v} /sys/fs/bpf/csm/{key}-0badbeef",
        v = victim.path().display()
    );
    let setup = format!(
        "mount -t bpf bpf /sys/fs/bpf; setpriv --reuid={u} --regid={g} --clear-groups sh -c '{plant}'",
        u = attacker.uid,
        g = attacker.gid
    );
    let daemon = Daemon::builder()
        .backend("ebpf")
        .every_second()
        .data_dir(&data)
        .wrapper(in_mount_namespace(&setup))
        .spawn();
    let daemon = start_within_5s(daemon);
    std::thread::sleep(Duration::from_secs(2));
    let log = stop_within_2s(daemon);

    assert_eq!(snapshot(victim.path()), before, "a victim file changed");
    let warnings: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("/sys/fs/bpf/csm"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one line says why nothing is pinned: {log:#?}"
    );
    assert!(
        warnings[0].contains(&format!("uid {}", attacker.uid)) && warnings[0].contains("rm -r"),
        "the line names the owner and the fix: {}",
        warnings[0]
    );
    let not_pinned = data
        .events()
        .into_iter()
        .any(|(_, e)| matches!(e, Event::Pins(ref note) if note.contains("state not pinned")));
    assert!(not_pinned, "an event says the state is not pinned");
}

/// Where bpffs is missing, csm mounts it root-only (1700) and pins in a 0700 folder of
/// its own; its owner note is 0644 whatever the umask.
#[test]
fn csm_mounts_bpffs_root_only_and_pins_in_a_private_folder() {
    require_root();
    let data = DataDir::new();
    let pins = PinDir::for_data_dir(Path::new("/sys/fs/bpf"), data.path()).name();
    let daemon = Daemon::builder()
        .backend("ebpf")
        .args(["--host", "test", "--interval", "1s"])
        .data_dir(&data)
        .wrapper(in_mount_namespace("umount /sys/fs/bpf; umask 000"))
        .spawn();
    let daemon = start_within_5s(daemon);
    // The daemon's view of its own mount namespace.
    let root = format!("/proc/{}/root/sys/fs/bpf", daemon.pid());
    let mode = |path: &str| {
        let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        (meta.uid(), meta.mode() & 0o7777)
    };
    assert_eq!(mode(&root), (0, 0o1700), "bpffs root");
    assert_eq!(
        mode(&format!("{root}/csm")),
        (0, 0o700),
        "csm's bpffs folder"
    );
    assert_eq!(
        mode(&format!("{root}/csm/{pins}")),
        (0, 0o700),
        "the pin folder"
    );
    let owner = format!("/run/csm/{pins}.owner");
    assert_eq!(mode(&owner), (0, 0o644), "owner note under umask 000");
    assert_eq!(mode("/run/csm"), (0, 0o755), "owner notes' folder");
    stop_within_2s(daemon);
    assert!(
        !Path::new(&owner).exists(),
        "a clean stop forgets the owner"
    );
}

/// `csm check` names a pin folder another user made, and how to fix it.
#[test]
fn csm_check_names_a_pin_folder_another_user_made() {
    require_root();
    let attacker = TestUser::create("pck");
    let setup = format!(
        "mount -t bpf bpf /sys/fs/bpf; setpriv --reuid={} --regid={} --clear-groups mkdir /sys/fs/bpf/csm",
        attacker.uid, attacker.gid
    );
    let mut command = in_mount_namespace(&setup);
    let out = std::process::Command::new(command.remove(0))
        .args(command)
        .arg(csm_tests::csm_bin("csm"))
        .arg("check")
        .env("NO_COLOR", "1")
        .output()
        .expect("run csm check");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.lines().any(|l| l.contains("/sys/fs/bpf/csm")
            && l.contains(&format!("uid {}", attacker.uid))
            && l.contains("rm -r")),
        "csm check names the folder, its owner and the fix:\n{report}"
    );
}
