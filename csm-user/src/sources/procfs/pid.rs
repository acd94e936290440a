//! `/proc/<pid>/stat` and `/proc/<pid>/status`: the few fields csm needs.

use super::{clip, number, LineWarning};

/// Fields of `/proc/<pid>/stat` (proc(5)); times are in clock ticks (USER_HZ).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PidStat {
    pub ppid: u32,
    pub utime: u64,
    pub stime: u64,
    /// CPU time of waited-for children (and, through them, their descendants).
    pub cutime: u64,
    pub cstime: u64,
    /// Start time after boot, in ticks: with the pid, it identifies one process (pids
    /// are reused).
    pub starttime: u64,
    /// Threads now: a single-threaded process's exit record (taskstats) is its whole time.
    pub num_threads: u64,
    /// State `Z`: exited, not yet reaped (its exit record has been sent).
    pub zombie: bool,
}

impl PidStat {
    pub fn own_ticks(&self) -> u64 {
        self.utime.saturating_add(self.stime)
    }
    pub fn child_ticks(&self) -> u64 {
        self.cutime.saturating_add(self.cstime)
    }
}

/// Parses the one line of `/proc/<pid>/stat`. The command name sits in parentheses and
/// may itself hold spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat(text: &str) -> Result<PidStat, LineWarning> {
    let err = |message: String| LineWarning::new(1, message);
    let close = text
        .rfind(')')
        .ok_or_else(|| err("no `)` closing the command name".into()))?;
    // After ")": state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
    // utime stime cutime cstime priority nice num_threads itrealvalue starttime …
    let fields: Vec<&str> = text[close + 1..].split_whitespace().take(20).collect();
    if fields.len() < 20 {
        return Err(err(format!(
            "truncated: {} fields after the command name, 20 needed",
            fields.len()
        )));
    }
    let field = |i: usize, name: &str| number(name, fields[i]).map_err(err);
    // cutime and cstime are signed in the kernel's format (%ld); never negative in practice.
    let signed = |i: usize, name: &str| {
        fields[i]
            .parse::<i64>()
            .map(|v| v.max(0) as u64)
            .map_err(|_| err(format!("{name}: `{}` is not a number", clip(fields[i]))))
    };
    Ok(PidStat {
        ppid: u32::try_from(field(1, "ppid")?).map_err(|_| err("ppid out of range".into()))?,
        utime: field(11, "utime")?,
        stime: field(12, "stime")?,
        cutime: signed(13, "cutime")?,
        cstime: signed(14, "cstime")?,
        starttime: field(19, "starttime")?,
        num_threads: field(17, "num_threads")?,
        zombie: fields[0] == "Z",
    })
}

/// Fields of `/proc/<pid>/status`. Memory is in bytes; `None` when the line is absent
/// (kernel threads have no `VmRSS`; kernels before 2.6.34 have no `VmSwap`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PidStatus {
    /// Real uid: the one eBPF's `bpf_get_current_uid_gid` charges.
    pub ruid: Option<u32>,
    pub euid: Option<u32>,
    pub rss_bytes: Option<u64>,
    pub swap_bytes: Option<u64>,
}

/// Parses `/proc/<pid>/status`; a malformed line of interest is a warning, the others
/// are ignored.
pub fn parse_status(text: &str) -> (PidStatus, Vec<LineWarning>) {
    let mut status = PidStatus::default();
    let mut warnings = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let result = match key {
            "Uid" => parse_uids(value).map(|(r, e)| {
                status.ruid = Some(r);
                status.euid = Some(e);
            }),
            "VmRSS" => kb_value(value).map(|v| status.rss_bytes = Some(v)),
            "VmSwap" => kb_value(value).map(|v| status.swap_bytes = Some(v)),
            _ => Ok(()),
        };
        if let Err(message) = result {
            warnings.push(LineWarning::new(i + 1, format!("{key}: {message}")));
        }
    }
    (status, warnings)
}

/// `Uid:\t<real>\t<effective>\t<saved>\t<fs>`
fn parse_uids(value: &str) -> Result<(u32, u32), String> {
    let mut ids = value.split_whitespace().map(|v| v.parse::<u32>());
    match (ids.next(), ids.next()) {
        (Some(Ok(real)), Some(Ok(effective))) => Ok((real, effective)),
        _ => Err(format!("`{}` is not two uids", clip(value.trim()))),
    }
}

/// `   1234 kB` → bytes.
pub(crate) fn kb_value(value: &str) -> Result<u64, String> {
    let mut parts = value.split_whitespace();
    let n = parts.next().ok_or("empty value")?;
    let kb = number("value", n)?;
    match parts.next() {
        Some("kB") | None => Ok(kb.saturating_mul(1024)),
        Some(unit) => Err(format!("unknown unit `{}`", clip(unit))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (my (odd) cmd) R 1 4242 4242 0 -1 4194304 100 0 0 0 \
                        150 50 7 3 20 0 1 0 123456 10000000 300 18446744073709551615";

    #[test]
    fn stat_fields_after_an_odd_command_name() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(
            s,
            PidStat {
                ppid: 1,
                utime: 150,
                stime: 50,
                cutime: 7,
                cstime: 3,
                starttime: 123456,
                num_threads: 1,
                zombie: false,
            }
        );
        assert!(parse_stat(&STAT.replace(") R ", ") Z ")).unwrap().zombie);
        assert_eq!(s.own_ticks(), 200);
        assert_eq!(s.child_ticks(), 10);
    }

    #[test]
    fn truncated_or_garbled_stat_is_an_error_naming_the_field() {
        let err = parse_stat("4242 (x) R 1 2 3").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.message.contains("truncated"), "{err:?}");
        let garbled = STAT.replace(" 150 ", " 15x ");
        let err = parse_stat(&garbled).unwrap_err();
        assert!(err.message.contains("utime"), "{err:?}");
        assert!(parse_stat("no parenthesis").is_err());
    }

    #[test]
    fn status_fields_and_a_bad_line() {
        let text = "Name:\tbash\nUid:\t1000\t1001\t1000\t1000\nVmRSS:\t    2048 kB\n\
                    VmSwap:\t  oops kB\n";
        let (s, w) = parse_status(text);
        assert_eq!(s.ruid, Some(1000));
        assert_eq!(s.euid, Some(1001));
        assert_eq!(s.rss_bytes, Some(2048 * 1024));
        assert_eq!(s.swap_bytes, None);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].line, 4);
        assert!(w[0].message.starts_with("VmSwap"), "{w:?}");
    }

    #[test]
    fn kernel_thread_has_no_memory_lines() {
        let (s, w) = parse_status("Name:\tkworker/0:1\nUid:\t0\t0\t0\t0\n");
        assert_eq!((s.ruid, s.rss_bytes, s.swap_bytes), (Some(0), None, None));
        assert!(w.is_empty());
    }
}
