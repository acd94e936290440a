//! Replacing a file so that a reader, or a crash, only ever sees the old or the new
//! whole: write a temporary beside it, fsync, rename over, fsync the folder. Serves the
//! hourly Parquet files, the daemon's state files and the charts alike.
//!
//! csm runs as root in folders other users may write to: the temporary is created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW`, so a symlink (or anything else) planted under its
//! name is never followed or truncated; it is unlinked (which removes the link, not what
//! it points to) and the create retried once.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::beneath;

/// Writes `name` in the folder `dir` whole through the temporary `temp` (both plain
/// names in that folder, opened relative to its descriptor): `fill` writes the contents
/// into the new file, which gets `mode` (whatever the umask) and is fsynced, renamed
/// over `name`, and the folder fsynced. On failure the temporary is removed and `name`
/// is unchanged.
pub fn replace_file_at<T>(
    dir: &OwnedFd,
    name: &str,
    temp: &str,
    mode: u32,
    fill: impl FnOnce(File) -> io::Result<(File, T)>,
) -> io::Result<T> {
    let file = create_exclusive(dir, temp, mode)?;
    let result = (|| {
        let (file, value) = fill(file)?;
        put_in_place(dir, temp, name, &file)?;
        Ok(value)
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir, temp, AtFlags::empty());
    }
    result
}

/// Fsyncs the filled temporary, renames it over `name` and fsyncs the folder.
fn put_in_place(dir: &OwnedFd, temp: &str, name: &str, file: &File) -> io::Result<()> {
    file.sync_all()?;
    rustix::fs::renameat(dir, temp, dir, name)?;
    Ok(rustix::fs::fsync(dir)?)
}

/// [`replace_file_at`] over several calls: the temporary is created at [`begin`](
/// Self::begin), filled through [`file`](Self::file) for as long as it takes, and put in
/// place by [`commit`](Self::commit). Dropped before that (a failed write, a daemon that
/// stops mid-way), it removes the temporary and leaves `name` unchanged.
pub struct Replacement {
    dir: OwnedFd,
    name: String,
    temp: String,
    file: File,
    committed: bool,
}

impl Replacement {
    /// Creates the temporary `temp` in `dir` (new, never through a link), mode `mode`.
    pub fn begin(dir: OwnedFd, name: &str, temp: &str, mode: u32) -> io::Result<Replacement> {
        let file = create_exclusive(&dir, temp, mode)?;
        Ok(Replacement {
            dir,
            name: name.to_string(),
            temp: temp.to_string(),
            file,
            committed: false,
        })
    }

    /// The temporary, open for writing.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Puts the filled temporary in place of `name` (see [`replace_file_at`]).
    pub fn commit(mut self) -> io::Result<()> {
        put_in_place(&self.dir, &self.temp, &self.name, &self.file)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Replacement {
    fn drop(&mut self) {
        if !self.committed {
            let _ = rustix::fs::unlinkat(&self.dir, self.temp.as_str(), AtFlags::empty());
        }
    }
}

/// Writes `path` whole (see [`replace_file_at`]) through `temp`, a name in the same
/// folder. The folder is opened as named; `path`'s and `temp`'s own names are never
/// followed.
pub fn replace_file<T>(
    path: &Path,
    temp: &Path,
    mode: u32,
    fill: impl FnOnce(File) -> io::Result<(File, T)>,
) -> io::Result<T> {
    let dir = beneath::open_root(parent_of(path))?;
    replace_file_at(&dir, &file_name(path)?, &file_name(temp)?, mode, fill)
}

/// [`replace_file`] with bytes, through the default temporary (see [`temp_beside`]).
pub fn write_file(path: &Path, mode: u32, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    replace_file(path, &temp_beside(path), mode, |mut file| {
        file.write_all(bytes)?;
        Ok((file, ()))
    })
}

/// `.<name>.tmp` beside `path`: hidden, and not ending in the real file's suffix.
pub fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn file_name(path: &Path) -> io::Result<String> {
    path.file_name()
        .and_then(OsStr::to_str)
        .map(str::to_string)
        .ok_or_else(|| io::Error::other(format!("{}: no file name", path.display())))
}

/// Creates `temp` in `dir` new, never through a link; whatever has its name is unlinked
/// first (a link is removed, not what it points to).
fn create_exclusive(dir: &OwnedFd, temp: &str, mode: u32) -> io::Result<File> {
    let open = || {
        rustix::fs::openat(
            dir,
            temp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
    };
    let fd = match open() {
        Err(rustix::io::Errno::EXIST) => {
            rustix::fs::unlinkat(dir, temp, AtFlags::empty())?;
            open()?
        }
        other => other?,
    };
    // The umask may have taken bits away; the mode is what was asked for.
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    Ok(File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_whole_with_the_mode_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        write_file(&path, 0o640, b"one").unwrap();
        write_file(&path, 0o640, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert!(!temp_beside(&path).exists());
    }

    #[test]
    fn a_symlink_planted_as_the_temporary_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let path = dir.path().join("chart.svg");
        std::os::unix::fs::symlink(&victim, temp_beside(&path)).unwrap();
        write_file(&path, 0o600, b"<svg/>").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read(&path).unwrap(), b"<svg/>");
        let mode = fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
        assert_ne!(mode, 0o600, "the link's target was not chmod-ed");
    }

    #[test]
    fn a_failed_fill_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_file(&path, 0o640, b"old").unwrap();
        let err = replace_file(
            &path,
            &temp_beside(&path),
            0o640,
            |_| -> io::Result<(File, ())> { Err(io::Error::other("disk full")) },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert!(!temp_beside(&path).exists());
    }
}
