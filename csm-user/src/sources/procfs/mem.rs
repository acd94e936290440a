//! Memory per process: uid, RSS and swap from `status`, PSS from `smaps_rollup`.
//!
//! Cost: two small reads per process per sample; `smaps_rollup` walks the process's page
//! tables in the kernel, which is why memory has its own, longer interval (10 s).

use std::collections::HashSet;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use anyhow::{Context, Result};

use super::pid::parse_status;
use super::smaps::parse_smaps_rollup;
use super::{read_process_file, read_text, WarnOnce};
use crate::model::mem::ProcessMem;
use crate::sources::host::HostPaths;

pub struct ProcMemSampler {
    paths: HostPaths,
    /// Whether this kernel has smaps_rollup (4.14+); found out once, at the first process
    /// that has a status with memory.
    has_rollup: Option<bool>,
    warnings: WarnOnce,
}

impl ProcMemSampler {
    pub fn new(paths: HostPaths) -> Self {
        ProcMemSampler {
            paths,
            has_rollup: None,
            warnings: WarnOnce::default(),
        }
    }

    /// RSS and swap only, without PSS (`csm top`: smaps_rollup walks page tables, too
    /// costly every second).
    pub fn rss_only(paths: HostPaths) -> Self {
        ProcMemSampler {
            has_rollup: Some(false),
            ..ProcMemSampler::new(paths)
        }
    }

    /// Every user-space process now (kernel threads and zombies have no memory).
    pub fn sample(&mut self) -> Result<Vec<ProcessMem>> {
        self.processes(&HashSet::new(), true)
    }

    /// RSS and swap (no PSS) of the processes not in `seen`: what the eBPF iterator did
    /// not report. A task it cannot see (on the sandbox VM this was written on, pid 1 and
    /// its threads were never visited) is still counted, at the price of a listing of
    /// /proc and a `status` read per such process.
    pub fn status_except(&mut self, seen: &HashSet<u32>) -> Result<Vec<ProcessMem>> {
        self.processes(seen, false)
    }

    /// RSS and swap (no PSS) of these processes (those that still exist).
    pub fn status_of(&mut self, pids: &[u32]) -> Vec<ProcessMem> {
        let root = self.paths.proc_root.clone();
        pids.iter()
            .filter_map(|&pid| self.process(&root.join(pid.to_string()), pid, false))
            .collect()
    }

    /// The number of tasks (threads, kernel threads included) the kernel has now:
    /// `nr_threads`, the denominator of /proc/loadavg's fourth field.
    pub fn tasks(&self) -> Option<u64> {
        let path = self.paths.proc_root.join("loadavg");
        let text = read_text(&path).ok()?;
        let field = text.split_whitespace().nth(3)?;
        field.split_once('/')?.1.parse().ok()
    }

    fn processes(&mut self, skip: &HashSet<u32>, with_pss: bool) -> Result<Vec<ProcessMem>> {
        let root = self.paths.proc_root.clone();
        let entries =
            fs::read_dir(&root).with_context(|| format!("cannot list {}", root.display()))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let pid = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok());
            if let Some(pid) = pid.filter(|pid| !skip.contains(pid)) {
                if let Some(mem) = self.process(&entry.path(), pid, with_pss) {
                    out.push(mem);
                }
            }
        }
        Ok(out)
    }

    fn process(&mut self, dir: &Path, pid: u32, with_pss: bool) -> Option<ProcessMem> {
        let path = dir.join("status");
        let text = read_process_file(&path, &mut self.warnings)?;
        let (status, warnings) = parse_status(&text);
        self.warnings.lines(&path, &warnings);
        let (uid, rss) = (status.ruid?, status.rss_bytes?);
        Some(ProcessMem {
            pid,
            uid,
            rss,
            pss: if with_pss { self.pss(dir) } else { None },
            swap: status.swap_bytes,
        })
    }

    fn pss(&mut self, dir: &Path) -> Option<u64> {
        if self.has_rollup == Some(false) {
            return None;
        }
        let path = dir.join("smaps_rollup");
        match read_text(&path) {
            Ok(text) => {
                self.has_rollup = Some(true);
                let (rollup, warnings) = parse_smaps_rollup(&text);
                self.warnings.lines(&path, &warnings);
                rollup.pss_bytes
            }
            Err(err) if err.kind() == ErrorKind::NotFound => {
                // Absent for the first process looked at: the kernel has none. Later, a
                // process that exited meanwhile.
                self.has_rollup.get_or_insert(false);
                None
            }
            Err(err) if err.kind() == ErrorKind::PermissionDenied => {
                // Once, not per process: reading another process's smaps needs
                // CAP_SYS_PTRACE over it.
                self.warnings.keyed(
                    "smaps_rollup EACCES".into(),
                    format!(
                        "some smaps_rollup files are unreadable ({}: {err}): pss is null for \
                     their users",
                        path.display()
                    ),
                );
                None
            }
            Err(err) => {
                self.warnings.warn(format!("{}: {err}", path.display()));
                None
            }
        }
    }
}
