//! Replacing a file so that a reader, or a crash, only ever sees the old or the new
//! whole: write a temporary beside it, fsync, rename over, fsync the folder. Serves the
//! hourly Parquet files, the daemon's state files and the charts alike.
//!
//! csm runs as root in folders other users may write to: the temporary is created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW`, so a symlink (or anything else) planted under its
//! name is never followed or truncated; it is unlinked (which removes the link, not what
//! it points to) and the create retried once.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Writes `path` whole through `temp`: `fill` writes the contents into the new file,
/// which gets `mode` (whatever the umask) and is fsynced, renamed over `path`, and the
/// folder fsynced. On failure the temporary is removed and `path` is unchanged.
pub fn replace_file<T>(
    path: &Path,
    temp: &Path,
    mode: u32,
    fill: impl FnOnce(File) -> io::Result<(File, T)>,
) -> io::Result<T> {
    let file = create_exclusive(temp, mode)?;
    let result = (|| {
        let (file, value) = fill(file)?;
        file.sync_all()?;
        fs::rename(temp, path)?;
        sync_dir(path)?;
        Ok(value)
    })();
    if result.is_err() {
        let _ = fs::remove_file(temp);
    }
    result
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

/// Creates `temp` new, never through a link; whatever has its name is unlinked first.
fn create_exclusive(temp: &Path, mode: u32) -> io::Result<File> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(mode)
            .open(temp)
    };
    let file = match open() {
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(temp)?;
            open()?
        }
        other => other?,
    };
    // The umask may have taken bits away; the mode is what was asked for.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(file)
}

fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

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
