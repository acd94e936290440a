//! The threads that keep time run above every user's processes. A local user who keeps
//! both cores busy (a dozen busy loops: no privilege needed) otherwise delays their
//! wake-ups: with 24 busy loops on 2 cores, 4 to 7 intervals in 58 stretched past the 10 %
//! bound (the worst to 1.36 s, the next one as short), and a ping measured then would carry
//! the delay in its RTT.
//!
//! Two levels, by how much work a wake-up does:
//! - [`Level::Ticks`], the traffic collector, whose work per interval is small and bounded
//!   (the eBPF maps or `/proc/net/dev`), and ping: `SCHED_RR` at priority 1, the lowest
//!   real-time one. Measured with a timer probe among 24 busy loops: woken 0.14 ms late at
//!   the median, 0.5 ms at worst, against 2.8 ms and 47 ms at nice −10. The kernel's
//!   real-time throttling (95 % of each second by default) bounds what a runaway thread
//!   could take, and `SCHED_RESET_ON_FORK` keeps threads they start (ping's name lookups)
//!   out of it.
//! - [`Level::Walks`], the memory collector, which walks every process (at 10,000
//!   processes a walk takes a large part of a second, which at a real-time priority would
//!   hold a core from every user): nice −10.
//!
//! The CPU collector, eBPF or /proc, keeps the daemon's priority (see `tasks::spawn_all`
//! for why): its ticks can still be delayed by busy loops; its rows stay exact.
//!
//! The writer, the roll-ups and the flushes stay at the daemon's own priority: their timing
//! does not matter, and a flood that makes them busy must not take the users' CPU first.
//! None of this gives csm more CPU than it asks for.

use std::sync::Once;

use rustix::process::{getpriority_process, setpriority_process};

/// The nice value of [`Level::Walks`], and of [`Level::Ticks`] where real-time is refused.
pub const WALKS_NICE: i32 = -10;
/// The real-time priority of [`Level::Ticks`]: the lowest, below any real-time work of
/// the host's own (audio, chrony, watchdogs).
pub const TICKS_RT_PRIORITY: i32 = 1;

/// How far to raise a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Ticks,
    Walks,
}

/// The calling thread raised for as long as this lives, then put back: the thread comes
/// from tokio's blocking pool and may run a flush next.
pub struct TimeKeeping {
    real_time: bool,
    nice_before: Option<i32>,
}

impl TimeKeeping {
    /// Raises the calling thread (Linux's nice and scheduling policy are per thread:
    /// `who` 0 is the calling thread). Without CAP_SYS_NICE it stays as it is, said once
    /// per run; where real-time is refused (a container, `RestrictRealtime=`), ticks get
    /// nice −10.
    pub fn raise(level: Level) -> TimeKeeping {
        let real_time = level == Level::Ticks && set_round_robin();
        let nice_before = if real_time { None } else { set_nice() };
        TimeKeeping {
            real_time,
            nice_before,
        }
    }
}

impl Drop for TimeKeeping {
    fn drop(&mut self) {
        if self.real_time {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: a valid sched_param for the calling thread; leaving real-time needs
            // no privilege.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
        }
        if let Some(nice) = self.nice_before {
            // Raising the nice value needs no privilege.
            let _ = setpriority_process(None, nice);
        }
    }
}

/// `SCHED_RR` at [`TICKS_RT_PRIORITY`] for the calling thread; false when refused.
fn set_round_robin() -> bool {
    let param = libc::sched_param {
        sched_priority: TICKS_RT_PRIORITY,
    };
    let policy = libc::SCHED_RR | libc::SCHED_RESET_ON_FORK;
    // SAFETY: a valid sched_param; pid 0 is the calling thread.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } == 0 {
        return true;
    }
    let err = std::io::Error::last_os_error();
    warn_once(&format!(
        "collector ticks at nice {WALKS_NICE} instead of real-time priority {TICKS_RT_PRIORITY} \
         (refused: {err}); a busy host may delay them by tens of ms"
    ));
    false
}

/// Nice [`WALKS_NICE`] for the calling thread; the nice it had, when changed.
fn set_nice() -> Option<i32> {
    let before = getpriority_process(None).ok()?;
    if before <= WALKS_NICE {
        return None;
    }
    match setpriority_process(None, WALKS_NICE) {
        Ok(()) => Some(before),
        Err(err) => {
            warn_once(&format!(
                "collector threads keep the default priority (nice {WALKS_NICE} refused: {err}); \
                 a busy host may delay their ticks"
            ));
            None
        }
    }
}

/// One line per run: every collector thread would say the same.
fn warn_once(line: &str) {
    static WARNED: Once = Once::new();
    WARNED.call_once(|| tracing::warn!("{line}"));
}

/// The calling thread's scheduling policy (without the reset-on-fork flag).
pub fn current_policy() -> i32 {
    // SAFETY: no preconditions; pid 0 is the calling thread.
    unsafe { libc::sched_getscheduler(0) & !libc::SCHED_RESET_ON_FORK }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    /// Raises a fresh thread at `level`, checks `raised` there and that another thread
    /// is untouched meanwhile, then that the thread is put back.
    fn check_level(level: Level, raised: fn() -> bool) {
        let before = (getpriority_process(None).unwrap(), current_policy());
        let (ask, asked) = channel::<()>();
        let (tell, told) = channel();
        let other = std::thread::spawn(move || {
            asked.recv().unwrap();
            tell.send((getpriority_process(None).unwrap(), current_policy()))
                .unwrap();
        });
        std::thread::spawn(move || {
            {
                let _raised = TimeKeeping::raise(level);
                if is_root() {
                    assert!(raised(), "{level:?} not raised");
                } else {
                    // Without CAP_SYS_NICE the calls are refused and nothing changes.
                    assert_eq!(
                        (getpriority_process(None).unwrap(), current_policy()),
                        before
                    );
                }
                ask.send(()).unwrap();
                assert_eq!(told.recv().unwrap(), before, "another thread is not raised");
                // A thread this one starts does not inherit real-time.
                let child = std::thread::spawn(current_policy).join().unwrap();
                assert_eq!(child, libc::SCHED_OTHER);
            }
            let after = (getpriority_process(None).unwrap(), current_policy());
            assert_eq!(after, before, "put back");
        })
        .join()
        .unwrap();
        other.join().unwrap();
    }

    #[test]
    fn ticks_run_round_robin_on_the_calling_thread_only() {
        check_level(Level::Ticks, || current_policy() == libc::SCHED_RR);
    }

    #[test]
    fn walks_run_at_nice_minus_10_on_the_calling_thread_only() {
        check_level(Level::Walks, || {
            getpriority_process(None).unwrap() == WALKS_NICE
                && current_policy() == libc::SCHED_OTHER
        });
    }
}
