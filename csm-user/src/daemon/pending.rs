//! Rows a stop's last flush could not write (disk full, read-only, I/O errors), kept so
//! that the pins can go: a stopped daemon leaves no program attached, and loses no row.
//!
//! At such a stop every table's unwritten rows are spilled (`csm_store::spill`) to the
//! first place that takes them:
//! 1. `<data dir>/.csm-pending/`, through the held data dir descriptor;
//! 2. `/run/csm/pending/<data dir key>/`, when the data dir itself cannot be written:
//!    `/run/csm` and `pending` are root's, writable by no one else and opened without
//!    following links (checked like the pin folder), so no other user can plant there;
//!    `/run` is a tmpfs that lasts exactly as long as the pins it stands in for (a
//!    reboot ends both).
//!
//! A spill is written in `<name>.new` and renamed into place whole, so a crash mid-spill
//! leaves the previous state (pins still there) rather than half the rows. Only then are
//! the pins removed. If no place takes the rows the pins stay, as before: the next start
//! adopts them and recovers the counters from the state file.
//!
//! The next start takes both places' rows into its store before anything else and removes
//! a spill once a flush has written its rows. A spill folder that is a link, is not
//! root's, or holds a file that is not a regular file of a sane size is refused with one
//! line (and an `events` row), never followed, and left for the administrator.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use tracing::{info, warn};

use crate::sources::ebpf::pins;
use csm_store::beneath::remove_tree_at;
use csm_store::{Event, Store};

/// The spill's name in the data dir.
pub const IN_DATA_DIR: &str = ".csm-pending";

const FOLDER: OFlags = OFlags::DIRECTORY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC)
    .union(OFlags::RDONLY);

/// Where this data dir's rows may be spilled, in order of preference.
#[derive(Clone, Debug)]
pub struct Places {
    /// The held data dir (`/proc/self/fd/<n>`).
    held: PathBuf,
    /// The data dir as named, for messages.
    named: PathBuf,
    /// Its key (as the pin folder's name has it), computed at start: the fallback's name.
    key: String,
}

/// One place: the folder it is in, and its name there.
struct Place {
    parent: io::Result<OwnedFd>,
    parent_path: PathBuf,
    name: String,
}

impl Place {
    fn path(&self) -> PathBuf {
        self.parent_path.join(&self.name)
    }
}

/// A spill taken in at start, removed once a flush wrote its rows.
pub struct Merged {
    parent: OwnedFd,
    name: String,
    path: PathBuf,
}

impl Places {
    pub fn new(held: &Path, named: &Path) -> Places {
        Places {
            held: held.to_path_buf(),
            named: named.to_path_buf(),
            key: pins::data_dir_key(named),
        }
    }

    fn list(&self, create: bool) -> [Place; 2] {
        [
            Place {
                parent: csm_store::beneath::open_root(&self.held),
                parent_path: self.named.clone(),
                name: IN_DATA_DIR.into(),
            },
            Place {
                parent: pins::open_pending_root(create),
                parent_path: Path::new(pins::OWNERS).join("pending"),
                name: self.key.clone(),
            },
        ]
    }

    /// The fallback place's path (for tests and messages).
    pub fn fallback(&self) -> PathBuf {
        Path::new(pins::OWNERS).join("pending").join(&self.key)
    }
}

/// Spills the store's unwritten rows to the first place that takes them: that place and
/// how many rows, or why none did.
pub fn spill(store: &Store, places: &Places) -> Result<(PathBuf, usize), String> {
    let mut refused = Vec::new();
    for place in places.list(true) {
        let path = place.path();
        let written = place
            .parent
            .and_then(|parent| spill_at(store, &parent, &place.name));
        match written {
            Ok(rows) => return Ok((path, rows)),
            Err(err) => refused.push(format!("{}: {err}", path.display())),
        }
    }
    Err(refused.join("; "))
}

/// Writes the spill as `<name>.new`, then puts it in place of `<name>` whole; a spill
/// that fails halfway is removed.
fn spill_at(store: &Store, parent: &OwnedFd, name: &str) -> io::Result<usize> {
    let staging = staging_name(name);
    remove_if_present(parent, &staging)?;
    let spilled = spill_staged(store, parent, name, &staging);
    if spilled.is_err() {
        let _ = remove_if_present(parent, &staging);
    }
    spilled
}

fn spill_staged(store: &Store, parent: &OwnedFd, name: &str, staging: &str) -> io::Result<usize> {
    rfs::mkdirat(parent, staging, Mode::from_raw_mode(0o700))?;
    let dir = rfs::openat(parent, staging, FOLDER, Mode::empty())?;
    let rows = store.spill_unwritten(&dir)?;
    rfs::fsync(&dir)?;
    // An older spill (taken in at start and not written since) is in the new one too:
    // swap them, then remove the older one.
    match rfs::renameat_with(parent, staging, parent, name, RenameFlags::EXCHANGE) {
        Ok(()) => remove_if_present(parent, staging)?,
        Err(Errno::NOENT) => rfs::renameat(parent, staging, parent, name)?,
        Err(err) => return Err(err.into()),
    }
    rfs::fsync(parent)?;
    Ok(rows)
}

fn staging_name(name: &str) -> String {
    format!("{name}.new")
}

fn remove_if_present(parent: &OwnedFd, name: &str) -> io::Result<()> {
    match remove_tree_at(parent, name.as_ref()) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Takes in the rows every place holds. Returns the spills taken in, to remove once a
/// flush wrote them, and the `pins` events that say what was taken or refused (the
/// caller writes them, so that the endpoint counts them as every other event).
pub fn merge(store: &mut Store, places: &Places) -> (Vec<Merged>, Vec<Event>) {
    let mut merged = Vec::new();
    let mut events = Vec::new();
    for place in places.list(false) {
        let path = place.path();
        let parent = match place.parent {
            Ok(parent) => parent,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => {
                events.push(refuse(&path, &err.to_string()));
                continue;
            }
        };
        // An interrupted spill: the stop that wrote it kept its pins, which this start
        // recovers from.
        let _ = remove_if_present(&parent, &staging_name(&place.name));
        match merge_from(store, &parent, &path, &place.name) {
            Ok(None) => {}
            Ok(Some(rows)) => {
                info!(
                    "{rows} rows a stop could not write taken in from {}",
                    path.display()
                );
                events.push(Event::Pins(format!(
                    "{rows} rows the last stop could not write taken in from {}",
                    path.display()
                )));
                merged.push(Merged {
                    parent,
                    name: place.name,
                    path,
                });
            }
            Err(err) => events.push(refuse(&path, &err)),
        }
    }
    (merged, events)
}

/// `None` when there is no spill there.
fn merge_from(
    store: &mut Store,
    parent: &OwnedFd,
    path: &Path,
    name: &str,
) -> Result<Option<usize>, String> {
    let dir = match rfs::openat(parent, name, FOLDER, Mode::empty()) {
        Ok(dir) => dir,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
            return Err("not a folder (a symbolic link or a file): not followed".into())
        }
        Err(err) => return Err(err.to_string()),
    };
    let stat = rfs::fstat(&dir).map_err(|err| err.to_string())?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if stat.st_uid != me || stat.st_mode & 0o022 != 0 {
        return Err(format!(
            "owned by uid {} with mode {:o}, not csm's (uid {me}, 0700): not read",
            stat.st_uid,
            stat.st_mode & 0o7777
        ));
    }
    (store.merge_spilled(&dir, path))
        .map(Some)
        .map_err(|err| err.to_string())
}

fn refuse(path: &Path, why: &str) -> Event {
    let line = format!(
        "{}: {why}; rows kept there are not taken in (remove it once checked)",
        path.display()
    );
    warn!("{line}");
    Event::Pins(line)
}

/// After the first flush that wrote the rows taken in: their spills go.
pub fn remove_merged(merged: &mut Vec<Merged>) {
    for spill in merged.drain(..) {
        match remove_tree_at(&spill.parent, spill.name.as_ref()) {
            Ok(()) => info!("{} written: removed", spill.path.display()),
            Err(err) => warn!(
                "cannot remove {} ({err}): its rows are written; remove it, or the next start takes them in again",
                spill.path.display()
            ),
        }
    }
}
