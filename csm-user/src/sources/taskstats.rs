//! Task exit notifications over generic netlink (taskstats): the kernel sends, for every
//! task that exits on the registered CPUs, its real uid and its user and system time in
//! µs. Unlike /proc it sees processes that live and die between two samples, with their
//! own uid. Needs root (CAP_NET_ADMIN) and CONFIG_TASKSTATS; absent on many old kernels.
//!
//! Measured against eBPF in tests/tests/proc_vs_ebpf.rs. The /proc CPU sampler charges
//! each record to its own uid (see `procfs/cpu.rs`); telling a thread's record from a
//! process's needs `ac_tgid`, version 12+ (Linux 5.18). A record is sent in do_exit
//! before the address space is torn down, so it misses that part of the task's time.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::SourceError;

/// One exited task (a thread; for single-threaded processes, the process).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskExit {
    /// The task: a thread's own id, the process id for a single-threaded process.
    pub pid: u32,
    /// The process the task belongs to (`ac_tgid`), from taskstats version 12 (Linux
    /// 5.18) on; `None` before, when a thread's record cannot be told from a process's.
    pub tgid: Option<u32>,
    /// The parent (its tgid) when the task exited; a thread's is its process's parent.
    pub ppid: u32,
    pub uid: u32,
    pub utime_us: u64,
    pub stime_us: u64,
    /// `cpu_run_real_total`: utime + stime in ns, as the ticks sampled them; 0 unless
    /// delay accounting is on (`kernel.task_delayacct`, off by default since 5.14).
    pub run_real_ns: u64,
    /// `cpu_run_virtual_total`: the scheduler's `sum_exec_runtime` in ns, exact (what
    /// /proc's utime + stime are scaled to and wait4 reports), where `cpu_run_real_total`
    /// is utime + stime as the ticks sampled them (kernel/delayacct.c). 0 when delay
    /// accounting is off for the task: on by default up to 5.13, off since 5.14
    /// (`kernel.task_delayacct`).
    pub sum_exec_ns: u64,
}

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const TASKSTATS_CMD_GET: u8 = 1;
const TASKSTATS_CMD_ATTR_REGISTER_CPUMASK: u16 = 3;
const TASKSTATS_TYPE_STATS: u16 = 3;
const TASKSTATS_TYPE_AGGR_PID: u16 = 4;
const NLMSG_HDR: usize = 16;
const GENL_HDR: usize = 4;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;

// Offsets in `struct taskstats` (linux/taskstats.h), stable since version 1/2, but
// `ac_tgid` (version 12, Linux 5.18).
const TS_VERSION: usize = 0;
const TS_CPU_RUN_REAL_TOTAL: usize = 64;
const TS_CPU_RUN_VIRTUAL_TOTAL: usize = 72;
const TS_AC_UID: usize = 120;
const TS_AC_PID: usize = 128;
const TS_AC_PPID: usize = 132;
const TS_AC_UTIME: usize = 152;
const TS_AC_STIME: usize = 160;
const TS_AC_TGID: usize = 368;
const TS_VERSION_WITH_TGID: u16 = 12;

pub struct ExitListener {
    fd: OwnedFd,
    family: u16,
    /// Times the socket's buffer overflowed (ENOBUFS: the kernel dropped records).
    overflows: u64,
}

impl ExitListener {
    /// Registers for exits on `cpumask` (e.g. "0-1", as in /sys/devices/system/cpu/possible),
    /// with a receive buffer of 8 MiB: 13,107 exit records between two drains (measured on
    /// 6.18: 10,000 exits all arrived; 20,000 gave 13,107 records and an overflow).
    pub fn open(cpumask: &str) -> Result<Self, SourceError> {
        Self::open_with_buffer(cpumask, 8 << 20)
    }

    /// As [`ExitListener::open`], with a receive buffer of `bytes` (the kernel doubles
    /// it for its bookkeeping and raises it to its minimum). A small one lets a test
    /// make the kernel drop records.
    pub fn open_with_buffer(cpumask: &str, bytes: u32) -> Result<Self, SourceError> {
        let unsupported = |why: String| SourceError::unsupported("taskstats", why);
        // SAFETY: plain socket(2); the fd is owned right away.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_GENERIC,
            )
        };
        if raw < 0 {
            return Err(unsupported(format!(
                "netlink socket: {}",
                io::Error::last_os_error()
            )));
        }
        // SAFETY: raw is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let big = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: valid pointer and length; failure only leaves the default buffer.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&big as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        let mut listener = ExitListener {
            fd,
            family: 0,
            overflows: 0,
        };
        listener.family = listener
            .family_id()
            .map_err(|err| unsupported(format!("no TASKSTATS netlink family: {err}")))?;
        let mut payload = cpumask.as_bytes().to_vec();
        payload.push(0);
        listener
            .request(
                listener.family,
                TASKSTATS_CMD_GET,
                TASKSTATS_CMD_ATTR_REGISTER_CPUMASK,
                &payload,
            )
            .map_err(|err| unsupported(format!("register cpumask {cpumask}: {err}")))?;
        Ok(listener)
    }

    /// Exits received since the last call (never blocks). An overflow of the socket's
    /// buffer (more exits than it holds between two drains: the kernel dropped some)
    /// is counted and logged (the 1st, 10th, 100th… time), and draining goes on.
    pub fn drain(&mut self) -> Vec<TaskExit> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            // SAFETY: buf is valid for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
                self.overflowed();
                continue;
            }
            if n <= 0 {
                return out;
            }
            out.extend(parse_exits(&buf[..n as usize], self.family));
        }
    }

    /// Times the socket's buffer overflowed since it was opened (each time, the kernel
    /// dropped at least one exit record).
    pub fn overflows(&self) -> u64 {
        self.overflows
    }

    fn overflowed(&mut self) {
        self.overflows += 1;
        if is_power_of_ten(self.overflows) {
            tracing::warn!(
                "taskstats: exit records dropped by the kernel (socket buffer full, {} time(s) so far): \
                 /proc CPU figures of this interval may be short for processes that exited in it",
                self.overflows
            );
        }
    }

    fn family_id(&mut self) -> io::Result<u16> {
        self.request(
            GENL_ID_CTRL,
            CTRL_CMD_GETFAMILY,
            CTRL_ATTR_FAMILY_NAME,
            b"TASKSTATS\0",
        )?;
        let mut buf = vec![0u8; 8192];
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let msg = &buf[..n as usize];
        if u16_at(msg, 4) == Some(NLMSG_ERROR) {
            let errno = msg
                .get(16..20)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            return Err(io::Error::from_raw_os_error(-errno.unwrap_or(-libc::EIO)));
        }
        let id = attributes(msg.get(NLMSG_HDR + GENL_HDR..).unwrap_or(&[]))
            .find(|(kind, _)| *kind == CTRL_ATTR_FAMILY_ID)
            .and_then(|(_, value)| u16_at(value, 0));
        id.ok_or_else(|| io::Error::other("reply without a family id"))
    }

    /// Sends one generic netlink request carrying one attribute.
    fn request(&self, kind: u16, cmd: u8, attr: u16, value: &[u8]) -> io::Result<()> {
        let attr_len = 4 + value.len();
        let total = NLMSG_HDR + GENL_HDR + align4(attr_len);
        let mut msg = vec![0u8; total];
        msg[0..4].copy_from_slice(&(total as u32).to_ne_bytes());
        msg[4..6].copy_from_slice(&kind.to_ne_bytes());
        msg[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        msg[16] = cmd;
        msg[17] = 1; // genl version
        msg[20..22].copy_from_slice(&(attr_len as u16).to_ne_bytes());
        msg[22..24].copy_from_slice(&attr.to_ne_bytes());
        msg[24..24 + value.len()].copy_from_slice(value);
        // SAFETY: zeroed sockaddr_nl addresses the kernel (pid 0).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: msg and addr are valid for their lengths.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// 1, 10, 100…: the overflows worth a log line (a flood of them stays a few lines).
fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(i..i + 8)?.try_into().ok()?))
}

/// Netlink attributes (type without the nested/byte-order flags, value).
fn attributes(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u16_at(b, 0)? as usize;
        let kind = u16_at(b, 2)? & 0x3fff;
        let value = b.get(4..len)?;
        b = b.get(align4(len).min(b.len())..)?;
        Some((kind, value))
    })
}

/// Exit events in one datagram of the taskstats family (per-task `AGGR_PID` only: a
/// thread group's `AGGR_TGID` total would count its threads twice).
pub fn parse_exits(mut buf: &[u8], family: u16) -> Vec<TaskExit> {
    let mut out = Vec::new();
    while let (Some(len), Some(kind)) = (u32_at(buf, 0), u16_at(buf, 4)) {
        let len = len as usize;
        let Some(msg) = buf.get(..len).filter(|_| len >= NLMSG_HDR) else {
            break;
        };
        if kind == family {
            let body = msg.get(NLMSG_HDR + GENL_HDR..).unwrap_or(&[]);
            for (_, aggr) in attributes(body).filter(|(k, _)| *k == TASKSTATS_TYPE_AGGR_PID) {
                let stats = attributes(aggr).find(|(k, _)| *k == TASKSTATS_TYPE_STATS);
                if let Some(exit) = stats.and_then(|(_, s)| task_exit(s)) {
                    out.push(exit);
                }
            }
        }
        buf = buf.get(align4(len).min(buf.len())..).unwrap_or(&[]);
    }
    out
}

fn task_exit(stats: &[u8]) -> Option<TaskExit> {
    let tgid = match u16_at(stats, TS_VERSION)? {
        v if v >= TS_VERSION_WITH_TGID => Some(u32_at(stats, TS_AC_TGID)?),
        _ => None,
    };
    Some(TaskExit {
        pid: u32_at(stats, TS_AC_PID)?,
        tgid,
        ppid: u32_at(stats, TS_AC_PPID)?,
        uid: u32_at(stats, TS_AC_UID)?,
        utime_us: u64_at(stats, TS_AC_UTIME)?,
        stime_us: u64_at(stats, TS_AC_STIME)?,
        run_real_ns: u64_at(stats, TS_CPU_RUN_REAL_TOTAL)?,
        sum_exec_ns: u64_at(stats, TS_CPU_RUN_VIRTUAL_TOTAL)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        a.resize(align4(a.len()), 0);
        a
    }

    /// One taskstats exit datagram of family 30 carrying `stats`.
    fn exit_message(pid: u32, stats: &[u8]) -> Vec<u8> {
        let mut inner = attr(1, &pid.to_ne_bytes());
        inner.extend(attr(TASKSTATS_TYPE_STATS, stats));
        let body = attr(TASKSTATS_TYPE_AGGR_PID | 0x8000, &inner);
        let total = NLMSG_HDR + GENL_HDR + body.len();
        let mut msg = (total as u32).to_ne_bytes().to_vec();
        msg.extend_from_slice(&30u16.to_ne_bytes());
        msg.resize(NLMSG_HDR + GENL_HDR, 0);
        msg.extend(body);
        msg
    }

    fn put<const N: usize>(stats: &mut [u8], at: usize, bytes: [u8; N]) {
        stats[at..at + N].copy_from_slice(&bytes);
    }

    #[test]
    fn parses_an_exit_message_and_survives_garbage() {
        let mut stats = vec![0u8; 200];
        put(&mut stats, TS_VERSION, 10u16.to_ne_bytes());
        put(&mut stats, TS_AC_UID, 1000u32.to_ne_bytes());
        put(&mut stats, TS_AC_PID, 4242u32.to_ne_bytes());
        put(&mut stats, TS_AC_PPID, 4200u32.to_ne_bytes());
        put(&mut stats, TS_AC_UTIME, 7000u64.to_ne_bytes());
        put(&mut stats, TS_AC_STIME, 300u64.to_ne_bytes());
        put(
            &mut stats,
            TS_CPU_RUN_VIRTUAL_TOTAL,
            7_412_345u64.to_ne_bytes(),
        );
        let msg = exit_message(4242, &stats);
        let exits = parse_exits(&msg, 30);
        assert_eq!(
            exits,
            vec![TaskExit {
                pid: 4242,
                tgid: None,
                ppid: 4200,
                uid: 1000,
                utime_us: 7000,
                stime_us: 300,
                run_real_ns: 0,
                sum_exec_ns: 7_412_345,
            }]
        );
        assert!(parse_exits(&msg, 31).is_empty());
        for cut in 0..msg.len() {
            let _ = parse_exits(&msg[..cut], 30);
        }
    }

    #[test]
    fn overflows_are_logged_at_powers_of_ten() {
        let logged: Vec<u64> = (0..=1000).filter(|n| is_power_of_ten(*n)).collect();
        assert_eq!(logged, [1, 10, 100, 1000]);
    }

    #[test]
    fn a_version_12_record_names_the_thread_group() {
        // A thread 4243 of process 4242 (struct taskstats of version 14: 6.18's is longer).
        let mut stats = vec![0u8; 432];
        put(&mut stats, TS_VERSION, 14u16.to_ne_bytes());
        put(&mut stats, TS_AC_PID, 4243u32.to_ne_bytes());
        put(&mut stats, TS_AC_TGID, 4242u32.to_ne_bytes());
        let exits = parse_exits(&exit_message(4243, &stats), 30);
        assert_eq!((exits[0].pid, exits[0].tgid), (4243, Some(4242)));
        // A version 12 record cut before its tgid is no record.
        let short = exit_message(4243, &stats[..TS_AC_TGID + 2]);
        assert!(parse_exits(&short, 30).is_empty());
    }
}
