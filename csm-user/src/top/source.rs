//! Where `csm top`'s figures come from: the running daemon's pinned eBPF maps, opened
//! read only, or /proc sampled by `top` itself. Nothing here writes: not a map, not the
//! data dir, and the daemon's lock is only looked at (in /proc/locks), never taken.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::Context;
use csm_store::data_dir::LOCK_FILE;

use super::error::TopError;
use crate::daemon::backend::exit_listener;
use crate::sources::ebpf::pins::{self, PinDir};
use crate::sources::ebpf::{self, CpuReader, NetReader};
use crate::sources::host::HostPaths;
use crate::sources::procfs::cpu::{ChildTimes, ProcCpuSampler};
use crate::sources::procfs::net::ProcNetSampler;

/// `csm top --backend`: where the figures come from.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopBackend {
    /// The daemon's eBPF counters when it runs with them, else /proc sampled here.
    Auto,
    /// Only the daemon's pinned eBPF maps.
    Ebpf,
    /// Sample /proc here (no daemon needed; no per-user traffic).
    Proc,
}

/// The counters `top` reads.
pub enum Counters {
    /// The daemon's maps (read-only descriptors) and the readers it uses itself.
    Ebpf {
        cpu: Box<CpuReader>,
        net: Option<Box<NetReader>>,
        daemon_pid: u32,
    },
    /// /proc, sampled here: CPU per uid and `/proc/net/dev` of this network namespace.
    Proc {
        cpu: Box<ProcCpuSampler>,
        net: ProcNetSampler,
        why: String,
    },
}

impl Counters {
    /// What the header line says about where the figures come from.
    pub fn describe(&self) -> String {
        match self {
            Counters::Ebpf { daemon_pid, .. } => {
                format!("ebpf: csm pid {daemon_pid}'s maps, read only")
            }
            Counters::Proc { why, .. } => format!("proc ({why})"),
        }
    }
}

/// The message when no daemon runs for the data dir.
pub fn no_daemon_message(data_dir: &Path) -> String {
    format!(
        "no csm daemon is running for {}: start one with `systemctl start csm` (or \
         `cargo xtask run` in a checkout), or sample /proc here with `csm top --backend proc`",
        data_dir.display()
    )
}

/// Opens the counters `backend` asks for.
pub fn open(data_dir: &Path, backend: TopBackend) -> Result<Counters, TopError> {
    let paths = HostPaths::default();
    if backend == TopBackend::Proc {
        return Ok(proc_counters(paths, "--backend proc"));
    }
    let daemon_pid = daemon_pid(data_dir)
        .map_err(|err| TopError::runtime(format!("{err:#}")))?
        .ok_or_else(|| TopError::runtime(no_daemon_message(data_dir)))?;
    let pin_dir = PinDir::for_data_dir(Path::new(pins::BPFFS), data_dir);
    let pinned = fs::symlink_metadata(&pin_dir.path).is_ok_and(|m| m.is_dir());
    match (pinned, backend) {
        (true, _) => ebpf_counters(&pin_dir, paths, daemon_pid).map_err(|err| {
            TopError::runtime(format!("cannot read the daemon's counters: {err:#}"))
        }),
        (false, TopBackend::Ebpf) => Err(TopError::runtime(format!(
            "csm pid {daemon_pid} has no pinned eBPF maps for {} (it runs the /proc backend, \
             or could not pin): use `csm top --backend proc`",
            data_dir.display()
        ))),
        (false, _) => Ok(proc_counters(
            paths,
            &format!("csm pid {daemon_pid} runs without pinned eBPF maps"),
        )),
    }
}

fn proc_counters(paths: HostPaths, why: &str) -> Counters {
    // The daemon's exit records too (a process's time after its last sample, short
    // processes to their own uid); without them, a warning and the cutime recovery alone.
    let mut cpu = ProcCpuSampler::new(paths.clone(), ChildTimes::Recover);
    if let Some(listener) = exit_listener(&paths) {
        cpu = cpu.with_exit_records(listener);
    }
    Counters::Proc {
        cpu: Box::new(cpu),
        net: ProcNetSampler::new(paths),
        why: why.to_string(),
    }
}

/// The daemon's maps through read-only descriptors, read by the daemon's own readers
/// (its open-slice folding and consistency checks included).
fn ebpf_counters(pin_dir: &PinDir, paths: HostPaths, daemon_pid: u32) -> anyhow::Result<Counters> {
    let mut loaded = ebpf::open_pinned_read_only(pin_dir)?;
    let cpu = CpuReader::new(&mut loaded, paths)?.never_writing();
    // Traffic maps are there when the daemon counts traffic.
    let net = NetReader::new(&mut loaded).ok().map(Box::new);
    Ok(Counters::Ebpf {
        cpu: Box::new(cpu),
        net,
        daemon_pid,
    })
}

/// The pid of the daemon holding `data_dir`'s lock, from /proc/locks (taking the lock,
/// even to test it, could make a starting daemon fail). `None` when nobody holds it.
pub fn daemon_pid(data_dir: &Path) -> anyhow::Result<Option<u32>> {
    let lock = data_dir.join(LOCK_FILE);
    let meta = match fs::symlink_metadata(&lock) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            fs::symlink_metadata(data_dir)
                .with_context(|| format!("cannot read the data dir {}", data_dir.display()))?;
            return Ok(None);
        }
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", lock.display())),
    };
    if !meta.is_file() {
        return Ok(None);
    }
    let locks = fs::read_to_string("/proc/locks").context("cannot read /proc/locks")?;
    Ok(lock_holder(&locks, meta.dev(), meta.ino()))
}

/// The pid holding an exclusive flock on the file (device, inode), from the text of
/// /proc/locks: `1: FLOCK  ADVISORY  WRITE 1234 fe:00:6103135 0 EOF`.
pub fn lock_holder(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let (major, minor) = (libc::major(dev) as u64, libc::minor(dev) as u64);
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A blocked waiter's line starts with "->": it holds nothing.
        if fields.get(1) != Some(&"FLOCK") || fields.get(3) != Some(&"WRITE") {
            return None;
        }
        let mut id = fields.get(5)?.split(':');
        let file_major = u64::from_str_radix(id.next()?, 16).ok()?;
        let file_minor = u64::from_str_radix(id.next()?, 16).ok()?;
        let file_ino: u64 = id.next()?.parse().ok()?;
        (file_major == major && file_minor == minor && file_ino == ino)
            .then(|| fields.get(4)?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_holder_is_found_by_device_and_inode() {
        let locks = "1: FLOCK  ADVISORY  WRITE 18549 fe:00:6103135 0 EOF\n\
                     2: FLOCK  ADVISORY  READ 777 fe:00:42 0 EOF\n\
                     3: POSIX  ADVISORY  WRITE 888 fe:01:42 0 EOF\n\
                     4: FLOCK  ADVISORY  WRITE 999 fe:01:42 0 EOF\n\
                     4: -> FLOCK  ADVISORY  WRITE 1000 fe:01:42 0 EOF\n";
        let dev = libc::makedev(0xfe, 0);
        assert_eq!(lock_holder(locks, dev, 6103135), Some(18549));
        assert_eq!(
            lock_holder(locks, dev, 42),
            None,
            "a shared lock is not the daemon's"
        );
        assert_eq!(lock_holder(locks, libc::makedev(0xfe, 1), 42), Some(999));
        assert_eq!(lock_holder(locks, dev, 1), None);
    }

    #[test]
    fn a_real_lock_is_seen_and_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(daemon_pid(dir.path()).unwrap(), None);
        let held = csm_store::data_dir::DataDirLock::acquire(dir.path()).unwrap();
        assert_eq!(daemon_pid(dir.path()).unwrap(), Some(std::process::id()));
        drop(held);
        assert_eq!(daemon_pid(dir.path()).unwrap(), None);
        assert!(daemon_pid(Path::new("/nonexistent/csm")).is_err());
    }
}
