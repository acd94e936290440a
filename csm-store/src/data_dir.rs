//! The data dir as the daemon holds it: refused when another user could plant files in it,
//! and locked before anything in it is touched, so that a second daemon (or a refused one)
//! never removes or rewrites the running one's files.

use std::fs::{self, File};

use rustix::fs::{Mode, OFlags};
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The lock file, in the data dir; holds the pid of the daemon that has it.
pub const LOCK_FILE: &str = ".csm.lock";

/// Refuses a data dir whose owner is not this process's user, or that group or others may
/// write to: such a user could plant links or special files under the names csm writes
/// (PostgreSQL refuses its data directory for the same reason). `allow_unsafe` overrides
/// it, for a data dir the administrator shares on purpose.
pub fn check_ownership(dir: &Path, allow_unsafe: bool) -> io::Result<()> {
    check_folder(dir, allow_unsafe, "--allow-unsafe-data-dir")
}

/// [`check_ownership`] for any folder csm writes to; `override_flag` is the flag that
/// allows an unsafe one (named in the error with the fix).
pub fn check_folder(dir: &Path, allow_unsafe: bool, override_flag: &str) -> io::Result<()> {
    let meta = fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other("not a directory"));
    }
    if allow_unsafe {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let mode = meta.permissions().mode() & 0o7777;
    let fix = format!(
        "use a folder owned by uid {euid} that only it can write (chown {euid} {0} && chmod 0750 {0}), \
         or pass {override_flag}",
        dir.display()
    );
    if meta.uid() != euid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "owned by uid {}, not {euid}: that user could plant links where csm writes; {fix}",
                meta.uid()
            ),
        ));
    }
    if mode & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "mode {mode:04o} lets other users write in it and plant links where csm writes; {fix}"
            ),
        ));
    }
    Ok(())
}

/// The data dir opened once, at start, and held until stop: every later path into it goes
/// through [`HeldDir::path`], `/proc/self/fd/<n>`, which the kernel resolves to the folder
/// this descriptor holds (not to whatever has the data dir's name by then). A user who
/// owns the data dir's parent may rename the folder and plant a link under its name
/// mid-run: csm's writes (tables, roll-ups, retention, state files, lock) still land in
/// the folder it opened, never in the link's target.
#[derive(Debug)]
pub struct HeldDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl HeldDir {
    /// Opens `dir` (links in its path followed: the administrator named it) and checks
    /// that `/proc/self/fd` leads back to it (it does not where /proc is not mounted).
    pub fn open(dir: &Path) -> io::Result<HeldDir> {
        let fd = crate::beneath::open_root(dir)?;
        let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        let held = rustix::fs::fstat(&fd)?;
        let via_proc = rustix::fs::stat(&path).map_err(|err| {
            io::Error::other(format!("{}: {err} (is /proc mounted?)", path.display()))
        })?;
        if (via_proc.st_dev, via_proc.st_ino) != (held.st_dev, held.st_ino) {
            return Err(io::Error::other(format!(
                "{} does not lead to the folder csm opened (is /proc mounted?)",
                path.display()
            )));
        }
        Ok(HeldDir { fd, path })
    }

    /// The path through the held descriptor: `/proc/self/fd/<n>`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}

/// The data dir's lock, held for as long as this value lives.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock without waiting; fails naming the pid that holds it. The lock file
    /// is never opened through a link.
    pub fn acquire(dir: &Path) -> io::Result<DataDirLock> {
        let path = dir.join(LOCK_FILE);
        let named =
            |err: io::Error| io::Error::new(err.kind(), format!("{}: {err}", path.display()));
        // Opened relative to the data dir's descriptor, never through a link, never
        // blocking on a FIFO planted under its name.
        let root = crate::beneath::open_root(dir).map_err(named)?;
        let fd = rustix::fs::openat(
            &root,
            LOCK_FILE,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o640),
        )
        .map_err(|err| named(err.into()))?;
        let mut file = File::from(fd);
        if !file.metadata()?.is_file() {
            return Err(io::Error::other(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut holder = String::new();
            let _ = (&mut file).take(32).read_to_string(&mut holder);
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("in use by another csm (pid {})", holder.trim()),
            ));
        }
        file.set_permissions(fs::Permissions::from_mode(0o640))?;
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        Ok(DataDirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(dir.path()).unwrap();
        let err = DataDirLock::acquire(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("in use by another csm (pid {})", std::process::id())
        );
        drop(held);
        DataDirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_planted_lock_link_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(LOCK_FILE)).unwrap();
        assert!(DataDirLock::acquire(dir.path()).is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn a_data_dir_others_can_write_is_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        check_ownership(dir.path(), false).unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_ownership(dir.path(), false).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("mode 0777 lets other users write"),
            "{err}"
        );
        assert!(err.to_string().contains("--allow-unsafe-data-dir"), "{err}");
        check_ownership(dir.path(), true).unwrap();
    }

    #[test]
    fn the_held_dir_stays_the_folder_opened_when_its_name_is_swapped() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        let elsewhere = parent.path().join("elsewhere");
        fs::create_dir(&dir).unwrap();
        fs::create_dir(&elsewhere).unwrap();
        let held = HeldDir::open(&dir).unwrap();
        fs::rename(&dir, parent.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &dir).unwrap();
        fs::write(held.path().join("rows"), b"1").unwrap();
        assert_eq!(fs::read(parent.path().join("moved/rows")).unwrap(), b"1");
        assert!(!elsewhere.join("rows").exists());
    }

    /// Needs root (only root can hand a folder to another user), as every csm test does.
    #[test]
    fn a_data_dir_owned_by_another_user_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(dir.path(), Some(65534), None).unwrap();
        let err = check_ownership(dir.path(), false).unwrap_err();
        assert!(
            err.to_string().starts_with("owned by uid 65534, not 0"),
            "{err}"
        );
    }
}
