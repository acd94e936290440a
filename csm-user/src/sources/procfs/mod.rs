//! The /proc and /sys backend: small parsers that take a file's text and return typed
//! values, and samplers that read them through [`HostPaths`] (so `--proc-root` and
//! `--sys-root` redirect every read to a fixture tree).
//!
//! Why hand-written parsers and not the `procfs` crate: `procfs` honours a custom root for
//! per-process files (`Process::new_with_root`), but it has no `user_beancounters` reader,
//! its `/proc/net/dev` reader rejects the whole file on one bad line and knows only the
//! current format, and its `status` parser builds a map of every field. We need a warning
//! that names the file and the line while the rest of the sample survives, the old Xen
//! `/proc/net/dev` layout, and only five fields of `stat`/`status` per process, thousands of
//! times a second; a few dozen lines per format do that and are fuzzed (proptest).
//!
//! One file per concern: [`pid`] (`/proc/<pid>/stat`, `/proc/<pid>/status`), [`smaps`]
//! (`smaps_rollup`), [`netdev`] (`/proc/net/dev`), [`beancounters`]
//! (`/proc/user_beancounters`), [`platform`] (OpenVZ, Xen, kernel version), and the samplers
//! [`cpu`], [`mem`], [`net`] and [`ubc`].

pub mod acct;
pub mod beancounters;
pub mod cpu;
pub mod mem;
pub mod net;
pub mod netdev;
pub mod pid;
pub mod platform;
pub mod smaps;
pub mod ubc;

use std::collections::HashSet;
use std::io::{self, ErrorKind};
use std::path::Path;

use tracing::warn;

/// A problem in one line of a /proc file. The line is skipped; the rest is used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineWarning {
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

impl LineWarning {
    pub fn new(line: usize, message: impl Into<String>) -> Self {
        LineWarning {
            line,
            message: message.into(),
        }
    }
}

/// A parsed file: what could be read, and what could not.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed<T> {
    pub value: T,
    pub warnings: Vec<LineWarning>,
}

/// Logs each distinct warning once: a malformed file is read again every interval and
/// would otherwise flood the log.
#[derive(Default)]
pub struct WarnOnce {
    seen: HashSet<String>,
}

/// Past this many distinct warnings, stop remembering (and logging) new ones.
const MAX_REMEMBERED: usize = 1000;

impl WarnOnce {
    /// Logs `<file>:<line>: <message>` unless it was already logged.
    pub fn lines(&mut self, path: &Path, warnings: &[LineWarning]) {
        for w in warnings {
            self.warn(format!("{}:{}: {}", path.display(), w.line, w.message));
        }
    }

    /// Logs `message` unless it was already logged.
    pub fn warn(&mut self, message: String) {
        self.keyed(message.clone(), message);
    }

    /// Logs `message` unless something was already logged under `key`.
    pub fn keyed(&mut self, key: String, message: String) {
        if self.seen.len() < MAX_REMEMBERED && self.seen.insert(key) {
            warn!("{message}");
        }
    }
}

/// Most bytes csm reads from one /proc or /sys file: far above any real one (a
/// `/proc/net/dev` of 100,000 interfaces is about 13 MB).
pub const MAX_PROC_FILE_BYTES: u64 = 32 << 20;

/// Reads a /proc file as text. Unlike `fs::read_to_string`, it does not ask for the size
/// first (procfs says 0), and it replaces invalid UTF-8 instead of failing: a command name
/// can hold any bytes. The file is opened without blocking and must be a regular file
/// (what fstat says of every /proc and /sys file), read up to [`MAX_PROC_FILE_BYTES`]:
/// a FIFO or `/dev/zero` under `--proc-root` neither hangs the daemon nor fills memory.
pub fn read_text(path: &Path) -> io::Result<String> {
    let file = csm_store::beneath::open_regular(path)?;
    let bytes = csm_store::beneath::read_at_most(file, MAX_PROC_FILE_BYTES)?;
    Ok(String::from_utf8(bytes)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned()))
}

/// A process's file; `None` if the process has exited meanwhile (ENOENT, ESRCH), and a
/// warning (once) for any other failure.
pub fn read_process_file(path: &Path, warnings: &mut WarnOnce) -> Option<String> {
    match read_text(path) {
        Ok(text) => Some(text),
        Err(err)
            if err.kind() == ErrorKind::NotFound || err.raw_os_error() == Some(libc::ESRCH) =>
        {
            None
        }
        Err(err) => {
            warnings.warn(format!("{}: {err}", path.display()));
            None
        }
    }
}

/// Parses a decimal counter, naming the field in the error.
pub(crate) fn number(field: &str, text: &str) -> Result<u64, String> {
    text.parse::<u64>()
        .map_err(|_| format!("{field}: `{}` is not a number", clip(text)))
}

/// At most 40 characters of `text`, so a garbage line cannot bloat a log message.
pub(crate) fn clip(text: &str) -> String {
    let mut out: String = text.chars().take(40).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}
