//! Opening a running daemon's pinned maps read only, for `csm top`: the kernel refuses
//! every update and delete through such a descriptor (EPERM), so an observer cannot
//! change what the daemon counts and writes, whatever code path it takes.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result};
use aya::maps::{Map, MapData};

/// `BPF_OBJ_GET` (include/uapi/linux/bpf.h, `enum bpf_cmd`).
const BPF_OBJ_GET: libc::c_long = 7;
/// `BPF_F_RDONLY`: the descriptor may look maps up, never update or delete.
const BPF_F_RDONLY: u32 = 1 << 3;

/// The `BPF_OBJ_GET` member of `union bpf_attr` (its older, path-only layout; the kernel
/// takes a shorter attribute and zero-fills the rest).
#[repr(C)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// A pinned map, opened through a read-only descriptor. A link planted under the pin's
/// name is refused (bpffs pins are never links).
pub fn open_pinned_map_read_only(path: &Path) -> Result<Map> {
    let meta = fs::symlink_metadata(path)
        .with_context(|| format!("open pinned map {}", path.display()))?;
    anyhow::ensure!(
        !meta.file_type().is_symlink(),
        "{} is a link, not a pinned map: not followed",
        path.display()
    );
    let fd = obj_get_read_only(path)
        .with_context(|| format!("open pinned map {} read only", path.display()))?;
    let data = MapData::from_fd(fd)
        .with_context(|| format!("open pinned map {} read only", path.display()))?;
    Map::from_map_data(data)
        .with_context(|| format!("pinned map {} has an unknown type", path.display()))
}

fn obj_get_read_only(path: &Path) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    let attr = ObjGetAttr {
        pathname: c_path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: BPF_F_RDONLY,
    };
    // SAFETY: a valid attribute of the size passed, whose path outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &attr as *const ObjGetAttr,
            std::mem::size_of::<ObjGetAttr>() as u32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: BPF_OBJ_GET returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
