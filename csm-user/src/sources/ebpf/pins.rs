//! Pinned eBPF state (bpffs), one folder per data dir, so that accounting survives a
//! crash: the programs stay attached and keep counting into the pinned maps while the
//! daemon is down, and the next start with the same data dir adopts them.
//!
//! Layout: `/sys/fs/bpf/csm/<data-dir hash>-<build stamp>/{map_<NAME>,link_<program>}`.
//! The build stamp is a hash of the embedded eBPF object: pins left by a build whose
//! programs or maps differ are detached and removed, never adopted. A clean stop removes
//! the folder. Who owns a folder (data dir, pid) is noted in `/run/csm/<folder>.owner`,
//! which `csm check` reads to list stale pins (bpffs holds only BPF objects).

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;
use tracing::{debug, info};

use super::object::EBPF_OBJECT;

pub const BPFFS: &str = "/sys/fs/bpf";
pub const OWNERS: &str = "/run/csm";

/// csm's folder in bpffs, holding the pin folders: only root may see or change it.
const PIN_FOLDER_MODE: u32 = 0o700;
/// `/run/csm`, holding the owner notes `csm check` reads (they name a data dir and a pid).
const OWNERS_MODE: u32 = 0o755;
const OWNER_FILE_MODE: u32 = 0o644;
/// `/run/csm/pending`: rows of other users' traffic and CPU, for root only.
const PENDING_MODE: u32 = 0o700;
/// An owner note is two short lines; anything longer is not csm's.
const OWNER_FILE_MAX: u64 = 4096;

/// Opening a folder: never through a symbolic link, never a FIFO or device.
const FOLDER: OFlags = OFlags::DIRECTORY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC)
    .union(OFlags::RDONLY);

/// FNV-1a, 64 bits: stable across builds and platforms (std's hasher is not).
pub fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Identifies the eBPF object this binary carries.
pub fn build_stamp() -> String {
    format!("{:08x}", fnv64(EBPF_OBJECT) as u32)
}

/// Hash of the canonical data dir: two daemons (or a test beside a real daemon) with
/// different data dirs never share counters.
pub fn data_dir_key(data_dir: &Path) -> String {
    let canonical = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf());
    format!("{:016x}", fnv64(canonical.as_os_str().as_encoded_bytes()))
}

/// The pin folder of one data dir for this build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinDir {
    pub path: PathBuf,
}

impl PinDir {
    pub fn for_data_dir(root: &Path, data_dir: &Path) -> PinDir {
        PinDir {
            path: root
                .join("csm")
                .join(format!("{}-{}", data_dir_key(data_dir), build_stamp())),
        }
    }

    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.path.join(format!("map_{name}"))
    }

    pub fn link(&self, program: &str) -> PathBuf {
        self.path.join(format!("link_{program}"))
    }

    /// True when the pin folder exists as a folder (a link there is not one).
    pub fn exists(&self) -> bool {
        fs::symlink_metadata(&self.path).is_ok_and(|m| m.is_dir())
    }

    /// Creates the pin folder, root-owned 0700, inside csm's checked bpffs folder.
    pub fn create(&self) -> io::Result<()> {
        let csm = open_csm_folder(self.csm_folder(), Create::Yes)?;
        open_root_folder(
            &csm,
            self.csm_folder(),
            &self.name(),
            PIN_FOLDER_MODE,
            Create::Yes,
        )
        .map(drop)
    }

    /// `<bpffs>/csm`.
    fn csm_folder(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new(BPFFS))
    }

    /// Pins of the same data dir left by another build: to be removed, not adopted.
    /// Only entries named as csm names its folders are considered.
    pub fn incompatible_siblings(&self) -> Vec<PathBuf> {
        let name = self.name();
        let Some((key, _)) = name.split_once('-') else {
            return Vec::new();
        };
        let prefix = format!("{key}-");
        pin_folder_names(self.csm_folder())
            .into_iter()
            .filter(|n| n.starts_with(&prefix) && *n != name)
            .map(|n| self.csm_folder().join(n))
            .collect()
    }

    /// Notes who owns the pins (for `csm check`); best effort.
    pub fn write_owner(&self, data_dir: &Path) {
        let text = format!(
            "pid {}\ndata_dir {}\n",
            std::process::id(),
            data_dir.canonicalize().unwrap_or(data_dir.into()).display()
        );
        let file = owner_file_name(&self.name());
        if let Err(err) = write_owner_file(&file, text.as_bytes()) {
            debug!(
                "cannot write {}: {err}",
                Path::new(OWNERS).join(&file).display()
            );
        }
    }

    /// Removes the pins (a clean stop). Programs stay attached until this process closes
    /// its descriptors, so nothing is lost between the final read and the exit.
    pub fn remove(&self) -> io::Result<()> {
        remove_pin_dir(&self.path)
    }
}

/// Whether to create a missing folder or report it missing.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Create {
    Yes,
    No,
}

/// `<bpffs>/csm` (`csm_folder`), opened and checked (created when asked).
fn open_csm_folder(csm_folder: &Path, create: Create) -> io::Result<OwnedFd> {
    let (Some(bpffs), Some(name)) = (csm_folder.parent(), csm_folder.file_name()) else {
        return Err(io::Error::other(format!(
            "{} cannot be csm's pin folder",
            csm_folder.display()
        )));
    };
    let root =
        rfs::open(bpffs, FOLDER, Mode::empty()).map_err(|err| io_error(err, "open", bpffs))?;
    open_root_folder(
        &root,
        bpffs,
        &name.to_string_lossy(),
        PIN_FOLDER_MODE,
        create,
    )
}

/// Checks that csm's folder in bpffs is safe to pin in, creating it root-owned 0700 if
/// missing. An error says which path is wrong, why, and what to do.
pub fn prepare_pin_root(bpffs: &Path) -> io::Result<()> {
    open_csm_folder(&bpffs.join("csm"), Create::Yes).map(drop)
}

/// Opens folder `name` inside `parent` (at `parent_path`) without following a link,
/// creating it with `mode` when asked. It must belong to root (or this process's user,
/// for tests) and be writable by no one else: anything else may have been planted by another
/// user to make csm act on files it does not own, and is refused, never repaired. A
/// folder that is only too readable (an older csm made `csm` 0755) gets `mode`.
fn open_root_folder(
    parent: impl AsFd,
    parent_path: &Path,
    name: &str,
    mode: u32,
    create: Create,
) -> io::Result<OwnedFd> {
    let path = parent_path.join(name);
    if create == Create::Yes {
        match rfs::mkdirat(&parent, name, Mode::from_raw_mode(mode)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(err) => return Err(io_error(err, "create", &path)),
        }
    }
    let fd = rfs::openat(&parent, name, FOLDER, Mode::empty()).map_err(|err| match err {
        Errno::LOOP | Errno::NOTDIR => io::Error::other(format!(
            "{} is not a folder (a symbolic link or a file): csm does not follow it; remove it",
            path.display()
        )),
        err => io_error(err, "open", &path),
    })?;
    let stat = rfs::fstat(&fd).map_err(|err| io_error(err, "stat", &path))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let perms = stat.st_mode & 0o7777;
    if stat.st_uid != 0 && stat.st_uid != me {
        return Err(io::Error::other(format!(
            "{} belongs to uid {}, not to root: another user may have created it to \
             redirect csm; remove it (`rm -r {}`) and csm creates its own",
            path.display(),
            stat.st_uid,
            path.display()
        )));
    }
    if perms & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "{} is writable by other users (mode {perms:o}); remove it (`rm -r {}`) and csm \
             creates its own ({mode:o})",
            path.display(),
            path.display()
        )));
    }
    if perms != mode {
        rfs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|err| io_error(err, "chmod", &path))?;
    }
    Ok(fd)
}

fn io_error(err: Errno, what: &str, path: &Path) -> io::Error {
    let err = io::Error::from(err);
    io::Error::new(
        err.kind(),
        format!("cannot {what} {}: {err}", path.display()),
    )
}

/// `<16 hex digits>-<8 hex digits>`: the names csm gives pin folders (data dir key,
/// build stamp). Nothing else in csm's bpffs folder is ever removed.
pub fn is_pin_folder_name(name: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    name.split_once('-')
        .is_some_and(|(key, stamp)| hex(key, 16) && hex(stamp, 8))
}

/// `map_<NAME>` and `link_<program>`: the entries csm pins in a pin folder.
fn is_pin_name(name: &str) -> bool {
    let rest = name
        .strip_prefix("map_")
        .or_else(|| name.strip_prefix("link_"));
    rest.is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

/// Names of the pin folders in csm's bpffs folder (none if it is missing or unsafe).
fn pin_folder_names(csm_folder: &Path) -> Vec<String> {
    let Ok(csm) = open_csm_folder(csm_folder, Create::No) else {
        return Vec::new();
    };
    let Ok(dir) = Dir::read_from(&csm) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .flatten()
        .filter(|e| e.file_type() == FileType::Directory)
        .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
        .filter(|n| is_pin_folder_name(n))
        .collect();
    names.sort();
    names
}

fn owner_file_name(pin_dir_name: &str) -> String {
    format!("{pin_dir_name}.owner")
}

/// `/run/csm`, opened and checked (created root-owned 0755 when asked).
fn open_owners(create: Create) -> io::Result<OwnedFd> {
    let run = Path::new(OWNERS).parent().unwrap_or(Path::new("/"));
    let parent = rfs::open(run, FOLDER, Mode::empty()).map_err(|err| io_error(err, "open", run))?;
    open_root_folder(&parent, run, "csm", OWNERS_MODE, create)
}

/// `/run/csm/pending`, where a stop whose last flush failed keeps the rows its data dir
/// could not take (see `daemon/pending.rs`): opened and checked like `/run/csm` itself
/// (root's, writable by no one else, never through a link), created 0700 when asked.
pub fn open_pending_root(create: bool) -> io::Result<OwnedFd> {
    let create = if create { Create::Yes } else { Create::No };
    let owners = open_owners(create)?;
    open_root_folder(&owners, Path::new(OWNERS), "pending", PENDING_MODE, create)
}

/// Replaces an owner note: a fresh file (never one planted in its place), 0644 whatever
/// the umask.
fn write_owner_file(name: &str, text: &[u8]) -> io::Result<()> {
    let owners = open_owners(Create::Yes)?;
    match rfs::unlinkat(&owners, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(err) => return Err(err.into()),
    }
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rfs::openat(&owners, name, flags, Mode::from_raw_mode(OWNER_FILE_MODE))?;
    rfs::fchmod(&fd, Mode::from_raw_mode(OWNER_FILE_MODE))?;
    fs::File::from(fd).write_all(text)
}

/// An owner note's text: a regular file, read up to [`OWNER_FILE_MAX`] bytes.
fn read_owner_file(name: &str) -> Option<String> {
    let owners = open_owners(Create::No).ok()?;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rfs::openat(&owners, name, flags, Mode::empty()).ok()?;
    let stat = rfs::fstat(&fd).ok()?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return None;
    }
    let mut text = String::new();
    fs::File::from(fd)
        .take(OWNER_FILE_MAX)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

fn forget_owner(pin_dir_name: &str) {
    if let Ok(owners) = open_owners(Create::No) {
        let _ = rfs::unlinkat(&owners, owner_file_name(pin_dir_name), AtFlags::empty());
    }
}

/// Unlinks every pin in a pin folder (a pinned link that goes away detaches its program
/// once no process holds it) and the folder itself, and forgets its owner note.
///
/// Only what csm creates is removed: the folder must be named as csm names them and sit
/// in csm's checked bpffs folder; inside it only `map_*` and `link_*` entries go. Every
/// step is relative to an opened folder and follows no link, so a link planted under a
/// pin folder's name is refused, and a link inside one is removed itself, never its target.
pub fn remove_pin_dir(dir: &Path) -> io::Result<()> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !is_pin_folder_name(&name) {
        return Err(io::Error::other(format!(
            "{} is not named like a csm pin folder: left alone",
            dir.display()
        )));
    }
    let csm_folder = dir.parent().unwrap_or(Path::new(BPFFS));
    let csm = match open_csm_folder(csm_folder, Create::No) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    let pins = match rfs::openat(&csm, &name, FOLDER, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => {
            forget_owner(&name);
            return Ok(());
        }
        Err(Errno::LOOP | Errno::NOTDIR) => {
            return Err(io::Error::other(format!(
                "{} is not a folder (a symbolic link or a file): left alone",
                dir.display()
            )))
        }
        Err(err) => return Err(io_error(err, "open", dir)),
    };
    for entry in Dir::read_from(&pins).map_err(|err| io_error(err, "read", dir))? {
        let entry = entry.map_err(|err| io_error(err, "read", dir))?;
        let Ok(pin) = entry.file_name().to_str() else {
            continue;
        };
        if is_pin_name(pin) {
            rfs::unlinkat(&pins, pin, AtFlags::empty())
                .map_err(|err| io_error(err, "remove", &dir.join(pin)))?;
        }
    }
    // Anything not csm's keeps the folder: the error names it.
    rfs::unlinkat(&csm, &name, AtFlags::REMOVEDIR).map_err(|err| match err {
        Errno::NOTEMPTY => io::Error::other(format!(
            "{} holds entries csm did not create: left in place",
            dir.display()
        )),
        err => io_error(err, "remove", dir),
    })?;
    forget_owner(&name);
    Ok(())
}

/// Mounts bpffs at /sys/fs/bpf where it is missing (as root). True when usable.
pub fn ensure_bpffs() -> bool {
    if is_bpffs(Path::new(BPFFS)) {
        return true;
    }
    let _ = fs::create_dir_all(BPFFS);
    match crate::sources::mounts::mount_pseudo_fs(c"bpf", c"/sys/fs/bpf") {
        Ok(()) => {
            info!("mounted bpffs at {BPFFS}");
            true
        }
        Err(err) => {
            debug!("cannot mount bpffs: {err}");
            false
        }
    }
}

/// BPF_FS_MAGIC
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

pub fn is_bpffs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid C string and a zeroed statfs buffer.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

/// One pin folder as `csm check` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct PinReport {
    pub dir: PathBuf,
    pub data_dir: Option<String>,
    pub pid: Option<u32>,
    /// No live process owns it: a crashed daemon left it (the next start with the same
    /// data dir adopts it), or it belongs to another build.
    pub stale: bool,
    pub compatible: bool,
}

/// Every csm pin folder under `root` (normally /sys/fs/bpf); none when csm's folder
/// there is missing or unsafe ([`pin_root_problem`] says why).
pub fn list_pins(root: &Path) -> Vec<PinReport> {
    let csm_folder = root.join("csm");
    let stamp = build_stamp();
    pin_folder_names(&csm_folder)
        .into_iter()
        .map(|name| {
            let owner = read_owner_file(&owner_file_name(&name)).unwrap_or_default();
            let field = |k: &str| {
                owner
                    .lines()
                    .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
            };
            let pid: Option<u32> = field("pid ").and_then(|p| p.parse().ok());
            let alive = pid.is_some_and(process_alive);
            PinReport {
                dir: csm_folder.join(&name),
                data_dir: field("data_dir "),
                pid,
                stale: !alive,
                compatible: name.ends_with(&format!("-{stamp}")),
            }
        })
        .collect()
}

/// Why csm's folder under `root` cannot hold pins (another user's, writable by others,
/// a link), or None when it is fine or simply missing.
pub fn pin_root_problem(root: &Path) -> Option<String> {
    match open_csm_folder(&root.join("csm"), Create::No) {
        Ok(_) => None,
        // Missing: created at the next start. Unreadable: not root, nothing to tell.
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
            ) =>
        {
            None
        }
        Err(err) => Some(err.to_string()),
    }
}

/// A live (not zombie) process; pids are reused, so it must also be a csm.
fn process_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": the state follows the last ')'.
    let Some((comm, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let state = rest.trim_start().chars().next();
    state != Some('Z') && comm.ends_with("(csm")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_dirs_differ_per_data_dir_and_name_the_build() {
        let root = Path::new("/sys/fs/bpf");
        let a = PinDir::for_data_dir(root, Path::new("/nonexistent/a"));
        let b = PinDir::for_data_dir(root, Path::new("/nonexistent/b"));
        assert_ne!(a, b);
        assert!(a.name().ends_with(&format!("-{}", build_stamp())));
        assert_eq!(a.map("CPU_NS"), a.path.join("map_CPU_NS"));
    }

    #[test]
    fn siblings_of_other_builds_are_found() {
        let root = tempfile::tempdir().unwrap();
        let pins = PinDir::for_data_dir(root.path(), Path::new("/nonexistent/x"));
        let key = data_dir_key(Path::new("/nonexistent/x"));
        fs::create_dir_all(&pins.path).unwrap();
        fs::create_dir_all(root.path().join("csm").join(format!("{key}-0badbeef"))).unwrap();
        fs::create_dir_all(root.path().join("csm").join("ffffffffffffffff-0badbeef")).unwrap();
        let siblings = pins.incompatible_siblings();
        assert_eq!(siblings.len(), 1);
        assert!(siblings[0].ends_with(format!("{key}-0badbeef")));
    }

    /// A csm folder in a temporary bpffs stand-in, as `prepare_pin_root` leaves it.
    fn csm_folder() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        prepare_pin_root(root.path()).unwrap();
        let csm = root.path().join("csm");
        (root, csm)
    }

    fn victim() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("precious");
        fs::write(&file, "keep me").unwrap();
        (dir, file)
    }

    #[test]
    fn names_csm_gives_are_told_apart() {
        assert!(is_pin_folder_name("0123456789abcdef-0badbeef"));
        assert!(!is_pin_folder_name("0123456789abcdef-0badbeef-x"));
        assert!(!is_pin_folder_name("0123456789abcdef"));
        assert!(!is_pin_folder_name("../etc-0badbeef"));
        assert!(is_pin_name("map_NET_UID") && is_pin_name("link_net_uid_egress"));
        assert!(!is_pin_name("map_") && !is_pin_name("notes") && !is_pin_name("map_../x"));
    }

    #[test]
    fn the_csm_folder_is_made_private_and_one_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let (root, csm) = csm_folder();
        let mode = || fs::metadata(&csm).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(), PIN_FOLDER_MODE);
        fs::set_permissions(&csm, fs::Permissions::from_mode(0o755)).unwrap();
        prepare_pin_root(root.path()).unwrap();
        assert_eq!(mode(), PIN_FOLDER_MODE, "too readable: tightened");
        fs::set_permissions(&csm, fs::Permissions::from_mode(0o1777)).unwrap();
        let err = prepare_pin_root(root.path()).unwrap_err().to_string();
        assert!(err.contains("writable by other users"), "{err}");
        assert_eq!(mode(), 0o1777, "refused, not repaired");
        assert!(pin_root_problem(root.path()).is_some());
    }

    #[test]
    fn a_link_as_the_csm_folder_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let (elsewhere, _) = victim();
        std::os::unix::fs::symlink(elsewhere.path(), root.path().join("csm")).unwrap();
        let err = prepare_pin_root(root.path()).unwrap_err().to_string();
        assert!(err.contains("not a folder"), "{err}");
    }

    #[test]
    fn a_link_named_like_a_pin_folder_is_not_followed() {
        let (_root, csm) = csm_folder();
        let (victim_dir, precious) = victim();
        let link = csm.join("0123456789abcdef-0badbeef");
        std::os::unix::fs::symlink(victim_dir.path(), &link).unwrap();
        let err = remove_pin_dir(&link).unwrap_err().to_string();
        assert!(err.contains("left alone"), "{err}");
        assert!(precious.exists(), "nothing removed through the link");
    }

    #[test]
    fn only_pins_csm_made_are_removed_and_links_are_not_followed() {
        let (_root, csm) = csm_folder();
        let (_victim_dir, precious) = victim();
        let dir = csm.join("0123456789abcdef-0badbeef");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("map_CPU_NS"), "").unwrap();
        std::os::unix::fs::symlink(&precious, dir.join("link_net_uid_egress")).unwrap();
        fs::write(dir.join("notes"), "not csm's").unwrap();
        let err = remove_pin_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("did not create"), "{err}");
        assert!(precious.exists(), "a link's target is never removed");
        assert!(
            !dir.join("map_CPU_NS").exists()
                && fs::symlink_metadata(dir.join("link_net_uid_egress")).is_err()
        );
        assert!(dir.join("notes").exists(), "what csm did not create stays");
        fs::remove_file(dir.join("notes")).unwrap();
        remove_pin_dir(&dir).unwrap();
        assert!(!dir.exists());
        assert!(remove_pin_dir(&csm.join("not-a-pin-folder")).is_err());
    }
}
