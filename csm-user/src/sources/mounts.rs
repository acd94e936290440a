//! Mounting the kernel's pseudo file systems (bpffs, tracefs) where a host lacks them.

use std::ffi::CStr;
use std::io;

/// `mount -t <fstype> <fstype> <dir>` (as root).
pub fn mount_pseudo_fs(fstype: &CStr, dir: &CStr) -> io::Result<()> {
    // SAFETY: NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            dir.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
