//! Mounting the kernel's pseudo file systems (bpffs, tracefs) where a host lacks them,
//! so that `csm run` sets itself up on a host whose init did not (systemd mounts both at
//! boot; sysvinit, OpenRC and containers often do not).
//!
//! Under the packaged service (packaging/csm.service) this usually never runs: the
//! service has no CAP_SYS_ADMIN, and systemd mounted both already.

use std::ffi::CStr;
use std::io;

/// Mount options per file system. bpffs gets mode 0700 (1700 with the sticky bit the
/// kernel adds), as systemd mounts it: pinned maps and programs are reachable by path,
/// and a bpffs root that anyone can write (1777, the kernel's default for a bare `mount
/// -t bpf`) lets any user pin objects there and fill it. tracefs keeps the kernel's
/// default mode.
fn options(fstype: &CStr) -> Option<&'static CStr> {
    (fstype == c"bpf").then_some(c"mode=0700")
}

/// `mount -t <fstype> <fstype> <dir>` (as root), with the options above.
pub fn mount_pseudo_fs(fstype: &CStr, dir: &CStr) -> io::Result<()> {
    let data = options(fstype).map_or(std::ptr::null(), |o| o.as_ptr().cast());
    // SAFETY: NUL-terminated strings; data is NULL or a NUL-terminated option string.
    let rc = unsafe { libc::mount(fstype.as_ptr(), dir.as_ptr(), fstype.as_ptr(), 0, data) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpffs_is_private_to_root() {
        assert_eq!(options(c"bpf"), Some(c"mode=0700"));
        assert_eq!(options(c"tracefs"), None);
    }

    /// A real mount in a private mount namespace (root only; elsewhere there is nothing
    /// to check here): bpffs comes up with no access for group and others.
    #[test]
    fn mounted_bpffs_is_mode_0700() {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: the mount itself is exercised by the root tests");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = std::ffi::CString::new(dir.path().to_str().unwrap()).unwrap();
        // A thread of our own in its own mount namespace: the mount is gone with it.
        let mode = std::thread::spawn(move || {
            // SAFETY: unshare of this thread's mount namespace (CLONE_FS is not shared
            // with threads spawned by std, which use CLONE_FS: unshare it too).
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNS | libc::CLONE_FS) };
            assert_eq!(rc, 0, "unshare: {}", io::Error::last_os_error());
            // Keep the mount out of the parent namespace.
            let rc = unsafe {
                libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                )
            };
            assert_eq!(rc, 0, "make / private: {}", io::Error::last_os_error());
            mount_pseudo_fs(c"bpf", &path).unwrap();
            let mode = std::fs::metadata(path.to_str().unwrap())
                .unwrap()
                .permissions()
                .mode();
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
            mode
        })
        .join()
        .unwrap();
        // The kernel always adds the sticky bit to bpffs's root (1700, as systemd's
        // mount shows): what matters is that only root can enter it.
        assert_eq!(mode & 0o777, 0o700, "bpffs mode {mode:o}");
    }
}
