//! Paths below a folder csm owns (the data dir, `csm-plot --out`) opened relative to that
//! folder's descriptor, one component at a time with `O_NOFOLLOW`: a link planted under a
//! table folder's name (`mem` → `/etc`) makes the operation fail instead of letting root
//! create, write or delete outside. The folder itself is named by the administrator and
//! opened as given (links in its own path are the administrator's).
//!
//! Files read here are opened `O_NONBLOCK` and must be regular files, read with a size
//! bound: a FIFO or `/dev/zero` planted under a state file's name neither hangs nor
//! exhausts memory.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};

/// The mode of every folder csm creates (the data's owner and group only).
pub const DIR_MODE: u32 = 0o750;

/// Opens `dir` itself (links in its path followed: the administrator named it).
pub fn open_root(dir: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens the folder `rel` below `root`, never through a link; creates missing folders
/// with [`DIR_MODE`] (whatever the umask) when `create`. A component that is a link or
/// not a folder fails with an error naming it.
pub fn open_dir(root: &Path, rel: &Path, create: bool) -> io::Result<OwnedFd> {
    let mut fd = open_root(root)?;
    let mut walked = root.to_path_buf();
    for component in rel.components() {
        let name = match component {
            Component::Normal(name) => name,
            Component::CurDir => continue,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{}: not a plain path below {}",
                        rel.display(),
                        root.display()
                    ),
                ))
            }
        };
        walked.push(name);
        fd = open_child_dir(&fd, name, create).map_err(|err| name_error(&walked, err))?;
    }
    Ok(fd)
}

/// Opens (and, when `create`, makes) the folder `name` in `parent`, never through a link.
fn open_child_dir(parent: &OwnedFd, name: &OsStr, create: bool) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(parent, name, flags, Mode::empty()) {
        Err(rustix::io::Errno::NOENT) if create => {
            match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(DIR_MODE)) {
                Ok(()) => {
                    let fd = rustix::fs::openat(parent, name, flags, Mode::empty())?;
                    // The umask may have taken bits away; the mode is what csm asks for.
                    rustix::fs::fchmod(&fd, Mode::from_raw_mode(DIR_MODE))?;
                    Ok(fd)
                }
                // Created meanwhile (by a flush of another table): open what is there.
                Err(rustix::io::Errno::EXIST) => {
                    Ok(rustix::fs::openat(parent, name, flags, Mode::empty())?)
                }
                Err(err) => Err(err.into()),
            }
        }
        other => Ok(other?),
    }
}

/// ELOOP/ENOTDIR from `O_NOFOLLOW | O_DIRECTORY` means a link or a file is where a folder
/// should be: say so, naming it.
fn name_error(path: &Path, err: io::Error) -> io::Error {
    let refused = matches!(err.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR));
    if refused {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is a link or not a folder: csm never follows links below the folder it writes to",
                path.display()
            ),
        )
    } else {
        io::Error::new(err.kind(), format!("{}: {err}", path.display()))
    }
}

/// Opens `name` in `dir` for reading: never through a link, never blocking (a FIFO),
/// and only if it is a regular file.
pub fn open_regular_at(dir: impl AsFd, name: &OsStr) -> io::Result<File> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    ensure_regular(&fd)?;
    Ok(File::from(fd))
}

/// Opens `path` for reading without blocking (links followed: for files the administrator
/// names, such as `/etc/csm.toml`, and for /proc, whose `net` is a link) and only if it is
/// a regular file. /proc and /sys files say `S_IFREG` in fstat (with size 0 or 4096); a
/// FIFO, a character device (`/dev/zero`) or a folder is refused.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let fd = rustix::fs::openat(
        CWD,
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    ensure_regular(&fd)?;
    Ok(File::from(fd))
}

/// Opens `path` for reading without following a link at its last component, without
/// blocking, and only if it is a regular file: for data files found by listing a folder.
pub fn open_regular_nofollow(path: &Path) -> io::Result<File> {
    let fd = rustix::fs::openat(
        CWD,
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    ensure_regular(&fd)?;
    Ok(File::from(fd))
}

fn ensure_regular(fd: &OwnedFd) -> io::Result<()> {
    let stat = rustix::fs::fstat(fd)?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => Ok(()),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a regular file ({})", file_type_name(other)),
        )),
    }
}

fn file_type_name(kind: FileType) -> &'static str {
    match kind {
        FileType::Fifo => "a FIFO",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Directory => "a folder",
        FileType::Socket => "a socket",
        FileType::Symlink => "a link",
        _ => "of an unknown type",
    }
}

/// Reads all of `file`, failing if it holds more than `max` bytes (nothing beyond
/// `max + 1` bytes is ever read into memory).
pub fn read_at_most(file: File, max: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {max} bytes: not read"),
        ));
    }
    Ok(bytes)
}

/// The text of `path` (a regular file, at most `max` bytes; see [`open_regular`]); errors
/// name the file. Invalid UTF-8 is replaced, not refused.
pub fn read_text(path: &Path, max: u64) -> io::Result<String> {
    let named = |err: io::Error| io::Error::new(err.kind(), format!("{}: {err}", path.display()));
    let bytes = read_at_most(open_regular(path).map_err(named)?, max).map_err(named)?;
    Ok(String::from_utf8(bytes)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned()))
}

/// The text of `name` in the folder `root` (a state file in the data dir): not through a
/// link, a regular file, at most `max` bytes. `Ok(None)` when there is no such file.
pub fn read_text_in(root: &Path, name: &str, max: u64) -> io::Result<Option<String>> {
    let path = root.join(name);
    let named = |err: io::Error| io::Error::new(err.kind(), format!("{}: {err}", path.display()));
    let dir = open_root(root).map_err(named)?;
    let file = match open_regular_at(&dir, OsStr::new(name)) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        other => other.map_err(named)?,
    };
    let bytes = read_at_most(file, max).map_err(named)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Names of the entries of `dir` (without `.` and `..`), with their type as the folder
/// says it (`None` when the file system does not say).
pub fn entries(dir: impl AsFd) -> io::Result<Vec<(std::ffi::OsString, Option<FileType>)>> {
    let mut out = Vec::new();
    let listing = rustix::fs::Dir::read_from(dir)?;
    for entry in listing {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let kind = match entry.file_type() {
            FileType::Unknown => None,
            kind => Some(kind),
        };
        out.push((OsStr::from_bytes(name).to_owned(), kind));
    }
    Ok(out)
}

/// Whether `name` in `dir` is a folder (not a link to one).
pub fn is_dir_at(dir: impl AsFd, name: &OsStr) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
        .unwrap_or(false)
}

/// Removes `name` in `parent` and, if it is a folder, everything in it: never through a
/// link (a link is removed, not what it points to).
pub fn remove_tree_at(parent: &OwnedFd, name: &OsStr) -> io::Result<()> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let dir = match rustix::fs::openat(parent, name, flags, Mode::empty()) {
        Ok(dir) => dir,
        // A link or a file: unlink the name itself.
        Err(rustix::io::Errno::LOOP) | Err(rustix::io::Errno::NOTDIR) => {
            return Ok(rustix::fs::unlinkat(parent, name, AtFlags::empty())?)
        }
        Err(err) => return Err(err.into()),
    };
    for (child, _) in entries(&dir)? {
        remove_tree_at(&dir, &child)?;
    }
    Ok(rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn folders_are_created_with_their_mode_and_links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        open_dir(dir.path(), Path::new("cpu/host=h/date=x"), true).unwrap();
        let made = dir.path().join("cpu/host=h/date=x");
        assert_eq!(
            fs::metadata(&made).unwrap().permissions().mode() & 0o777,
            0o750
        );

        std::os::unix::fs::symlink(outside.path(), dir.path().join("mem")).unwrap();
        let err = open_dir(dir.path(), Path::new("mem/host=h"), true).unwrap_err();
        assert!(
            err.to_string().contains("mem is a link or not a folder"),
            "{err}"
        );
        assert_eq!(
            fs::read_dir(outside.path()).unwrap().count(),
            0,
            "nothing made outside"
        );
        assert!(open_dir(dir.path(), Path::new("../x"), true).is_err());
    }

    #[test]
    fn special_files_and_big_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let err = read_text(&fifo, 10).unwrap_err();
        assert!(
            err.to_string().ends_with("not a regular file (a FIFO)"),
            "{err}"
        );
        let err = read_text(Path::new("/dev/zero"), 10).unwrap_err();
        assert!(err.to_string().contains("a character device"), "{err}");
        fs::write(dir.path().join("big"), [b'x'; 11]).unwrap();
        let err = read_text(&dir.path().join("big"), 10).unwrap_err();
        assert!(
            err.to_string().ends_with("larger than 10 bytes: not read"),
            "{err}"
        );
        assert_eq!(read_text(&dir.path().join("big"), 11).unwrap().len(), 11);
        // Real /proc files are regular files to fstat, of size 0.
        assert!(read_text(Path::new("/proc/self/status"), 1 << 20)
            .unwrap()
            .contains("Uid:"));
        assert!(read_text(Path::new("/proc/net/dev"), 1 << 20).is_ok());
    }

    #[test]
    fn a_state_file_link_is_not_followed_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_text_in(dir.path(), "s", 100).unwrap().is_none());
        fs::write(dir.path().join("victim"), b"secret").unwrap();
        std::os::unix::fs::symlink(dir.path().join("victim"), dir.path().join("s")).unwrap();
        assert!(read_text_in(dir.path(), "s", 100).is_err());
    }

    #[test]
    fn a_tree_is_removed_but_not_what_its_links_point_to() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("keep"), b"x").unwrap();
        fs::create_dir_all(dir.path().join("t/a/b")).unwrap();
        fs::write(dir.path().join("t/a/b/f"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("t/a/link")).unwrap();
        let root = open_root(dir.path()).unwrap();
        remove_tree_at(&root, OsStr::new("t")).unwrap();
        assert!(!dir.path().join("t").exists());
        assert!(outside.path().join("keep").exists());
    }
}
